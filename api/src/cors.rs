//! CORS for browser frontends served from other origins (`MEDLEDGER_CORS_ORIGINS`), such
//! as 002's Next.js app on `http://localhost:3000`, which sends credentials.
//!
//! Only listed origins are answered, each by name (credentials rule out `*`), with the
//! methods and request headers the contracts use and the response headers their clients
//! read. No origins configured: no CORS headers at all, and browsers keep the
//! same-origin policy.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadOrigin {
    #[error("MEDLEDGER_CORS_ORIGINS: '*' cannot be combined with credentials; list the origins (such as http://localhost:3000)")]
    Wildcard,
    #[error("MEDLEDGER_CORS_ORIGINS: '{0}' is not an origin (scheme://host[:port], with no path, such as http://localhost:3000)")]
    Malformed(String),
}

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers the contracts' clients send beyond the CORS-safelisted ones.
const REQUEST_HEADERS: [&str; 6] = ["accept", "authorization", "content-type", "x-csrftoken", "idempotency-key", "x-request-id"];

/// Response headers a script must be able to read: list totals and next pages (000),
/// rate limits, request ids, idempotent replays, and the file name of a download.
const EXPOSED_HEADERS: [&str; 6] = ["x-total-count", "link", "retry-after", "x-request-id", "idempotent-replayed", "content-disposition"];

/// One configured origin, as a browser sends it in `Origin`: lower case, no trailing
/// slash.
fn parse_origin(raw: &str) -> Result<HeaderValue, BadOrigin> {
    let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    if origin == "*" {
        return Err(BadOrigin::Wildcard);
    }
    let malformed = || BadOrigin::Malformed(raw.trim().to_string());
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).ok_or_else(malformed)?;
    if !crate::proxy::is_host(authority) {
        return Err(malformed());
    }
    HeaderValue::from_str(&origin).map_err(|_| malformed())
}

/// The layer for `origins`; `None` when there are none.
pub fn layer(origins: &[String]) -> Result<Option<CorsLayer>, BadOrigin> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allowed: Arc<[HeaderValue]> = origins.iter().map(|o| parse_origin(o)).collect::<Result<Vec<_>, _>>()?.into();
    let names = |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    let for_credentials = allowed.clone();
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed.iter().cloned()))
            // Only to a listed origin: no other page learns that credentials would work.
            .allow_credentials(AllowCredentials::predicate(move |origin, _| for_credentials.contains(origin)))
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers(names(&REQUEST_HEADERS))
            .expose_headers(names(&EXPOSED_HEADERS))
            .max_age(PREFLIGHT_MAX_AGE),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_taken_as_browsers_send_them() {
        assert_eq!(parse_origin("http://localhost:3000"), Ok(HeaderValue::from_static("http://localhost:3000")));
        assert_eq!(parse_origin(" HTTPS://MyoMetrics.com/ "), Ok(HeaderValue::from_static("https://myometrics.com")));
    }

    #[test]
    fn a_wildcard_or_a_url_with_a_path_is_refused() {
        assert_eq!(parse_origin("*"), Err(BadOrigin::Wildcard));
        for bad in ["localhost:3000", "http://", "http://localhost:3000/app", "ftp://x.org", "http://a.org?x", "http://u@a.org"] {
            assert!(matches!(parse_origin(bad), Err(BadOrigin::Malformed(_))), "{bad} accepted");
        }
    }

    #[test]
    fn no_origins_no_layer() {
        assert!(layer(&[]).expect("empty list").is_none());
        assert!(layer(&["http://localhost:3000".into()]).expect("valid").is_some());
    }
}
