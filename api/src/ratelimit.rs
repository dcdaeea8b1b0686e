//! Fixed-window request limits per client (auth endpoints) or per user (API).
//!
//! A limiter's keys fall into classes, each with a bucket per key and an allowance of
//! its own: the auth endpoints are counted per [`AuthClass`], so refreshing tokens does
//! not use up the attempts a user has to log in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an auth endpoint is for. Logins of every contract share one class: they try
/// the same credentials of the one identity, and an attacker must not get five tries
/// per contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthClass {
    Login,
    Register,
    PasswordReset,
    Refresh,
}

impl AuthClass {
    /// The class of an auth-limited route (its path as mounted, without a trailing
    /// slash). A route not named here counts as a login: the strictest bucket.
    pub fn of(route: &str) -> Self {
        let route = route.trim_end_matches('/');
        if route.ends_with("/token/refresh") {
            AuthClass::Refresh
        } else if route.ends_with("/password-reset") || route.ends_with("/password-reset/confirm") {
            AuthClass::PasswordReset
        } else if route.ends_with("/register") {
            AuthClass::Register
        } else {
            AuthClass::Login
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthClass::Login => "login",
            AuthClass::Register => "register",
            AuthClass::PasswordReset => "password_reset",
            AuthClass::Refresh => "refresh",
        }
    }
}

/// A bucket: the class and the key (a client address, a user id).
type Bucket = (&'static str, String);

pub struct RateLimiter {
    per_window: u32,
    /// Classes whose allowance differs from `per_window`.
    allowances: HashMap<&'static str, u32>,
    window: Duration,
    /// Each bucket's window start and count.
    counters: Mutex<HashMap<Bucket, (Instant, u32)>>,
}

impl RateLimiter {
    /// `per_window == 0` turns the limit off.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window, allowances: HashMap::new(), window, counters: Mutex::new(HashMap::new()) }
    }

    /// Gives keys of `class` an allowance of their own (0: no limit for them).
    pub fn with_class(mut self, class: &'static str, per_window: u32) -> Self {
        self.allowances.insert(class, per_window);
        self
    }

    /// The allowance per window (0: no limit).
    pub fn per_window(&self) -> u32 {
        self.per_window
    }

    /// `Err(seconds until the window resets)` once the key has used its allowance.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_in("", key)
    }

    /// `check` for `key` in `class`: a bucket apart from the same key in other classes.
    pub fn check_in(&self, class: &'static str, key: &str) -> Result<(), u64> {
        let allowance = self.allowances.get(class).copied().unwrap_or(self.per_window);
        if allowance == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let Ok(mut counters) = self.counters.lock() else { return Ok(()) };
        if counters.len() > 100_000 {
            counters.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = counters.entry((class, key.to_string())).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= allowance {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_then_refusal_with_retry_after() {
        let l = RateLimiter::new(2, Duration::from_secs(60));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let retry = l.check("a").unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(l.check("b").is_ok(), "keys are independent");
    }

    #[test]
    fn classes_have_their_own_buckets_and_allowances() {
        let l = RateLimiter::new(1, Duration::from_secs(60)).with_class("refresh", 2);
        assert!(l.check_in("login", "1.2.3.4").is_ok());
        assert!(l.check_in("login", "1.2.3.4").is_err());
        assert!(l.check_in("refresh", "1.2.3.4").is_ok(), "another class, another bucket");
        assert!(l.check_in("refresh", "1.2.3.4").is_ok(), "with its own allowance");
        assert!(l.check_in("refresh", "1.2.3.4").is_err());
        let off = RateLimiter::new(1, Duration::from_secs(60)).with_class("refresh", 0);
        assert!((0..100).all(|_| off.check_in("refresh", "a").is_ok()));
    }

    #[test]
    fn every_auth_route_has_its_class() {
        for login in ["/api/auth/login", "/api/v1/auth/login", "/auth/login", "/oauth/login", "/login", "/something/new"] {
            assert_eq!(AuthClass::of(login), AuthClass::Login, "{login}");
        }
        assert_eq!(AuthClass::of("/api/auth/register"), AuthClass::Register);
        assert_eq!(AuthClass::of("/register/"), AuthClass::Register);
        assert_eq!(AuthClass::of("/api/auth/password-reset"), AuthClass::PasswordReset);
        assert_eq!(AuthClass::of("/api/auth/password-reset/confirm"), AuthClass::PasswordReset);
        assert_eq!(AuthClass::of("/api/auth/token/refresh/"), AuthClass::Refresh);
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::new(0, Duration::from_secs(60));
        assert!((0..1000).all(|_| l.check("a").is_ok()));
    }
}
