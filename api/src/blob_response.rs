//! A blob from the [`BlobStore`] port as an HTTP response, answering as tower-http's
//! `ServeFile` did when downloads were read from the disk directly: one `Range` (206;
//! 416 with `Content-Range: bytes */size` for one past the end, a malformed one or
//! several), `Accept-Ranges`, `Last-Modified` and `ETag`, and the conditional requests
//! they allow (304, 412). The body streams from the store; nothing is held whole.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_range_header::{EndPosition, StartPosition};
use httpdate::HttpDate;
use medledger_application::ports::{BlobError, BlobRead, BlobStore, ByteRange};

/// What the `Range` header asks for.
enum Wanted {
    Range(ByteRange),
    /// Malformed: refused with 416, as before.
    Malformed,
    /// Several ranges: refused with 416 (no multipart answers), as before.
    Several,
}

fn wanted(headers: &HeaderMap) -> Wanted {
    let Some(value) = headers.get(header::RANGE) else { return Wanted::Range(ByteRange::Full) };
    let Ok(parsed) = value.to_str().map_err(|_| ()).and_then(|v| http_range_header::parse_range_header(v).map_err(|_| ())) else {
        return Wanted::Malformed;
    };
    match parsed.ranges.as_slice() {
        [one] => Wanted::Range(match (one.start, one.end) {
            (StartPosition::Index(first), EndPosition::Index(last)) => ByteRange::Span { first, last },
            (StartPosition::Index(first), EndPosition::LastByte) => ByteRange::From(first),
            (StartPosition::FromLast(n), _) => ByteRange::Last(n),
        }),
        _ => Wanted::Several,
    }
}

/// The blob under `key` answered for `headers`; None when there is no such blob.
pub async fn serve(blobs: &dyn BlobStore, key: &str, headers: &HeaderMap) -> Result<Option<Response>, BlobError> {
    let wanted = wanted(headers);
    let (read, refused) = match wanted {
        Wanted::Range(range) => match blobs.open(key, range).await {
            Ok(read) => (read, None),
            // The whole blob's validators still go with the 416, and preconditions come
            // first: open it whole, read nothing.
            Err(BlobError::RangeNotSatisfiable { .. }) => (blobs.open(key, ByteRange::Full).await?, Some("")),
            Err(e) => return Err(e),
        },
        Wanted::Malformed => (blobs.open(key, ByteRange::Full).await?, Some("")),
        Wanted::Several => (blobs.open(key, ByteRange::Full).await?, Some("Cannot serve multipart range requests")),
    };
    let Some(read) = read else { return Ok(None) };
    let etag = read.version.as_ref().and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok());
    let modified = read.modified.map(HttpDate::from);
    if let Some(status) = precondition(headers, etag.as_ref(), modified) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        if status == StatusCode::NOT_MODIFIED {
            set_validators(response.headers_mut(), etag, modified);
        }
        return Ok(Some(response));
    }
    let BlobRead { size, range, body, .. } = read;
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set_validators(&mut out, etag, modified);
    let (status, body) = if let Some(why) = refused {
        out.insert(header::CONTENT_RANGE, number(format!("bytes */{size}")));
        (StatusCode::RANGE_NOT_SATISFIABLE, Body::from(why))
    } else {
        let status = if headers.contains_key(header::RANGE) {
            out.insert(header::CONTENT_RANGE, number(format!("bytes {}-{}/{size}", range.start, range.end.saturating_sub(1))));
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        out.insert(header::CONTENT_LENGTH, number((range.end - range.start).to_string()));
        (status, Body::from_stream(body))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = out;
    Ok(Some(response))
}

/// A header value made of digits and ASCII punctuation only.
fn number(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn set_validators(out: &mut HeaderMap, etag: Option<HeaderValue>, modified: Option<HttpDate>) {
    if let Some(modified) = modified {
        out.insert(header::LAST_MODIFIED, number(modified.to_string()));
    }
    if let Some(etag) = etag {
        out.insert(header::ETAG, etag);
    }
}

/// RFC 9110 §13.2.2's order: `If-Match` (else `If-Unmodified-Since`) may refuse with
/// 412, then `If-None-Match` (else `If-Modified-Since`) may answer 304.
fn precondition(headers: &HeaderMap, etag: Option<&HeaderValue>, modified: Option<HttpDate>) -> Option<StatusCode> {
    let date = |name| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<HttpDate>().ok());
    let list = |name| headers.get(name).map(HeaderValue::as_bytes).filter(|v| !v.is_empty());
    if let Some(wanted) = list(header::IF_MATCH) {
        let strong = |tag: &[u8]| !tag.starts_with(b"W/") && etag.is_some_and(|e| e.as_bytes() == tag);
        if !etag.is_some_and(|_| wanted == b"*" || any_tag(wanted, strong)) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let (Some(since), Some(modified)) = (date(header::IF_UNMODIFIED_SINCE), modified)
        && since < modified
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    if let Some(cached) = list(header::IF_NONE_MATCH) {
        let weak = |tag: &[u8]| {
            let bare = |t: &[u8]| t.strip_prefix(b"W/").map(<[u8]>::to_vec).unwrap_or_else(|| t.to_vec());
            etag.is_some_and(|e| bare(e.as_bytes()) == bare(tag))
        };
        if etag.is_some() && (cached == b"*" || any_tag(cached, weak)) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let (Some(since), Some(modified)) = (date(header::IF_MODIFIED_SINCE), modified)
        && since >= modified
    {
        return Some(StatusCode::NOT_MODIFIED);
    }
    None
}

/// Whether any entity tag of a comma-separated list (commas inside quotes belong to
/// the tag) satisfies `matches`.
fn any_tag(list: &[u8], matches: impl Fn(&[u8]) -> bool) -> bool {
    let mut start = 0;
    let mut quoted = false;
    for (i, byte) in list.iter().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                let tag = list[start..i].trim_ascii();
                if !tag.is_empty() && matches(tag) {
                    return true;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let tag = list[start..].trim_ascii();
    !tag.is_empty() && matches(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tag_lists_split_outside_quotes() {
        let found = |list: &str, tag: &str| any_tag(list.as_bytes(), |t| t == tag.as_bytes());
        assert!(found("\"a\", \"b,c\"", "\"b,c\""));
        assert!(found(" \"a\" ", "\"a\""));
        assert!(!found("\"a\", \"b\"", "\"c\""));
        assert!(!found(" , ", ""));
    }

    #[test]
    fn conditional_requests_answer_as_before() {
        let etag = HeaderValue::from_static("\"1.0-a\"");
        let modified: HttpDate = "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap();
        let ask = |name: header::HeaderName, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            precondition(&h, Some(&etag), Some(modified))
        };
        assert_eq!(ask(header::IF_NONE_MATCH, "W/\"1.0-a\""), Some(StatusCode::NOT_MODIFIED));
        assert_eq!(ask(header::IF_NONE_MATCH, "\"other\""), None);
        assert_eq!(ask(header::IF_MATCH, "\"other\""), Some(StatusCode::PRECONDITION_FAILED));
        assert_eq!(ask(header::IF_MATCH, "W/\"1.0-a\""), Some(StatusCode::PRECONDITION_FAILED), "If-Match compares strongly");
        assert_eq!(ask(header::IF_MATCH, "*"), None);
        assert_eq!(ask(header::IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT"), Some(StatusCode::NOT_MODIFIED));
        assert_eq!(ask(header::IF_MODIFIED_SINCE, "Sat, 05 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(ask(header::IF_UNMODIFIED_SINCE, "Sat, 05 Nov 1994 08:49:37 GMT"), Some(StatusCode::PRECONDITION_FAILED));
    }
}
