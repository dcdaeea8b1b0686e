//! Settings that must not reach a log: `Debug` (how a `Config` is logged or shown in a
//! panic) prints "[redacted]" in their place.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// A key or password from the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// `smtp://[user:password@]host[:port]`: shown with its password redacted, the rest
/// kept (which relay and which user is what one looks for in a log).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        let authority_at = url.find("://").map_or(0, |i| i + 3);
        let authority_end = url[authority_at..].find(['/', '?', '#']).map_or(url.len(), |i| authority_at + i);
        let authority = &url[authority_at..authority_end];
        let password = authority.rfind('@').and_then(|at| authority[..at].find(':').map(|colon| (colon + 1, at)));
        match password {
            Some((from, to)) => write!(f, "\"{}{}[redacted]{}\"", &url[..authority_at], &authority[..from], &url[authority_at + to..]),
            None => write!(f, "{url:?}"),
        }
    }
}

impl FromStr for SmtpUrl {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl From<String> for SmtpUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_and_the_urls_password_only() {
        assert_eq!(format!("{:?}", Secret::from("hunter2")), "[redacted]");
        let shown = |url: &str| format!("{:?}", SmtpUrl::from(url.to_string()));
        assert_eq!(shown("smtp://user:pa:ss@relay.example:25"), "\"smtp://user:[redacted]@relay.example:25\"");
        assert_eq!(shown("smtp://relay.example:25"), "\"smtp://relay.example:25\"");
        assert_eq!(shown("smtp://user@relay.example"), "\"smtp://user@relay.example\"");
    }
}
