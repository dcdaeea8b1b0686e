//! How each kind of setting is read, and the message a bad one stops the binary with.

use std::ffi::OsString;
use std::num::ParseIntError;

use clap::Command;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Numbers are read as they always were: whole, at most `u32::MAX`, blanks around
/// them ignored.
fn number(s: &str) -> Result<u32, ParseIntError> {
    s.trim().parse()
}

pub(crate) fn minutes(s: &str) -> Result<chrono::Duration, ParseIntError> {
    number(s).map(|n| chrono::Duration::minutes(n.into()))
}

pub(crate) fn days(s: &str) -> Result<chrono::Duration, ParseIntError> {
    number(s).map(|n| chrono::Duration::days(n.into()))
}

pub(crate) fn seconds(s: &str) -> Result<chrono::Duration, ParseIntError> {
    number(s).map(|n| chrono::Duration::seconds(n.into()))
}

pub(crate) fn secs(s: &str) -> Result<std::time::Duration, ParseIntError> {
    number(s).map(|n| std::time::Duration::from_secs(n.into()))
}

/// A timeout of zero would fail every run: it counts as 1 ms.
pub(crate) fn millis(s: &str) -> Result<std::time::Duration, ParseIntError> {
    number(s).map(|n| std::time::Duration::from_millis(n.max(1).into()))
}

/// Counts of threads, queue places and items, where 0 would stop the work: 0 counts as 1.
pub(crate) fn at_least_one(s: &str) -> Result<usize, ParseIntError> {
    number(s).map(|n| n.max(1) as usize)
}

pub(crate) fn pixels(s: &str) -> Result<u64, ParseIntError> {
    number(s).map(|n| u64::from(n.max(1)))
}

pub(crate) fn password_length(s: &str) -> Result<usize, ParseIntError> {
    use medledger_domain::values::{NewPassword, PasswordPolicy};
    number(s).map(|n| (n as usize).clamp(PasswordPolicy::LOWEST, NewPassword::MAX_CHARS))
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is neither 1, true, 0 nor false")]
pub(crate) struct NotASwitch(String);

/// `1`/`true` turn a setting on, `0`/`false` leave it off.
pub(crate) fn switch(s: &str) -> Result<bool, NotASwitch> {
    match s.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(NotASwitch(other.to_string())),
    }
}

/// A comma-separated list, blanks dropped.
pub(crate) fn comma_list(s: &str) -> Result<Vec<String>, std::convert::Infallible> {
    Ok(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

/// clap names the option a bad value was given for (`--port <PORT>`); a value that
/// came from the environment is named by its variable instead, which is what the
/// person starting the server set.
pub(crate) fn name_the_variable(e: clap::Error, mut command: Command, args: &[OsString]) -> clap::Error {
    if !matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return e;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else { return e };
    command.build();
    let Some(arg) = command.get_arguments().find(|a| a.to_string() == *shown) else { return e };
    let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else { return e };
    let flag = format!("--{long}");
    let on_command_line =
        args.iter().filter_map(|a| a.to_str()).any(|a| a == flag || a.strip_prefix(flag.as_str()).is_some_and(|r| r.starts_with('=')));
    if on_command_line {
        return e;
    }
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let reason = std::error::Error::source(&e).map_or_else(|| "not accepted".to_string(), |s| s.to_string());
    let variable = variable.to_string_lossy();
    command.error(ErrorKind::ValueValidation, format!("{variable}: invalid value '{value}': {reason}"))
}
