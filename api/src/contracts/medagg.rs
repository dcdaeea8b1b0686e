//! Contract 000 (MedAgg): what its routes share, whichever context serves them (the
//! catalog's datasets and search, collections' items and archives), mounted at `/api/v1`.
//!
//! Every list keeps the seed's bare array and never drops rows silently: `limit` and
//! `offset` page it, `X-Total-Count` says how many rows there are in all, and an
//! RFC 8288 `Link` header points at the next and previous pages (absolute URLs, the
//! request's own query with another offset). Lists answer everything up to their largest
//! page by default, as the seed's unpaginated DRF views do; the ranked search answers a
//! page of its best hits.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use medledger_domain::catalog::{parse_area, parse_modality, parse_task_type, tag_id};
use medledger_projections::catalog::index::SearchFilters;
use medledger_projections::catalog::queries;

use crate::error::{ApiError, ApiResult, Detail};
use crate::extract::{MaybeAuth, Refusal};
use crate::openapi::Op;
use crate::state::AppState;

pub(crate) type Res<T> = ApiResult<T, Detail>;

/// A list operation's paging headers, in the API document.
pub(crate) fn paged(op: Op) -> Op {
    op.returns_header::<i64>("X-Total-Count", "How many rows there are in all pages together.").returns_header::<String>(
        "Link",
        "RFC 8288 links to the next and previous pages (`rel=\"next\"`, `rel=\"prev\"`): this request with another offset.",
    )
}

/// Longest free-text query accepted, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 1_000;

pub(crate) fn check_query_text(field: &str, text: &str) -> Res<()> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::field(field, format!("at most {MAX_QUERY_CHARS} characters")));
    }
    Ok(())
}

/// Who reads the catalog (datasets, a dataset, its items, the search, the vocabulary):
/// anyone when `MEDLEDGER_CATALOG_PUBLIC` is on, else a signed-in user. A token that is
/// sent must be good either way.
pub(crate) struct CatalogReader;

impl FromRequestParts<AppState> for CatalogReader {
    type Rejection = ApiError<Detail>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let MaybeAuth(caller, _) = MaybeAuth::<Detail>::from_request_parts(parts, state).await?;
        if caller.is_none() && !state.config.contexts.catalog.public {
            return Err(Refusal::Missing.into());
        }
        Ok(Self)
    }
}

/// A tag as a client names it: the seed allows "tag IDs or names".
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TagRef {
    /// A JSON number: must be a known tag's id ([`tag_id`]).
    Id(i64),
    /// A JSON string: a name.
    Name(String),
    /// A query-string value: a known tag's id when it is one, else a name.
    IdOrName(String),
}

/// Tag references as names; ids are looked up among the catalog's tags only when some
/// reference could be one.
pub(crate) async fn resolve_tags(state: &AppState, refs: Vec<TagRef>) -> Res<Vec<String>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let may_be_id = refs.iter().any(|r| match r {
        TagRef::Id(_) => true,
        TagRef::IdOrName(s) => digits(s.trim()),
        TagRef::Name(_) => false,
    });
    let known: HashMap<i64, String> = if may_be_id {
        queries::dataset_tags(&state.dbs.read).await?.into_iter().map(|(name, _)| (tag_id(&name), name)).collect()
    } else {
        HashMap::new()
    };
    let name = |s: &str| s.trim().to_lowercase();
    let mut out = Vec::new();
    for r in refs {
        let tag = match r {
            TagRef::Id(id) => known.get(&id).cloned().ok_or_else(|| ApiError::field("tags", format!("no tag has the id {id}")))?,
            TagRef::Name(s) => name(&s),
            TagRef::IdOrName(s) => s.trim().parse::<i64>().ok().and_then(|id| known.get(&id).cloned()).unwrap_or_else(|| name(&s)),
        };
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// Filter values as the user gave them (one or several per dimension, codes or their
/// ids), checked against the catalog's allowed values: an unknown one is a 400 that
/// lists them.
#[derive(Default)]
pub(crate) struct RawFilters {
    pub(crate) modality: Vec<String>,
    pub(crate) area: Vec<String>,
    pub(crate) task_types: Vec<String>,
    pub(crate) tags: Vec<TagRef>,
}

impl RawFilters {
    pub(crate) async fn parse(self, state: &AppState) -> Res<SearchFilters> {
        let all = |values: Vec<String>, parse: fn(&str) -> Result<String, medledger_domain::DomainError>| {
            let mut out: Vec<String> = Vec::new();
            for v in values.iter().map(|v| parse(v.trim())) {
                let v = v?;
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok::<_, medledger_domain::DomainError>(out)
        };
        Ok(SearchFilters {
            modality: all(self.modality, parse_modality)?,
            area: all(self.area, parse_area)?,
            task_types: all(self.task_types, parse_task_type)?,
            tags: resolve_tags(state, self.tags).await?,
        })
    }
}

/// What a list request asked for: its query as pairs (a repeated key is a list, as
/// `?modality=CT&modality=MR` means; serde's struct reading refuses repeats) and where
/// the client reached the server, for the `Link` header.
pub(crate) struct ListRequest {
    pairs: Vec<(String, String)>,
    origin: String,
}

impl FromRequestParts<AppState> for ListRequest {
    type Rejection = ApiError<Detail>;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let pairs = serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        let origin = crate::proxy::origin(&parts.headers, &parts.extensions, state.config.https);
        Ok(Self { pairs, origin })
    }
}

/// A page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) limit: i64,
    pub(crate) offset: i64,
}

/// The largest page of a plain list, and its default: everything up to that many in one
/// answer, as the seed's unpaginated views give it (`X-Total-Count` and `Link` say the
/// rest). The ranked search pages differently.
pub(crate) const MAX_LIST_LIMIT: i64 = 1_000;

/// A plain list's paging parameters, for the API document (read by [`ListRequest`]).
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Page {
    /// 1 to 1000; default 1000.
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
    #[schemars(range(min = 0, max = 2147483647))]
    offset: Option<i64>,
}

/// The largest `offset` accepted: far past any catalog, and small enough that
/// `offset + limit` never overflows anywhere.
pub(crate) const MAX_OFFSET: i64 = i32::MAX as i64;

impl ListRequest {
    /// The last value of `key` (DRF's `query_params.get`), if not empty.
    pub(crate) fn last(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// Every value of `key`: repeated keys and comma-separated values alike.
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The structured filters of the query string.
    pub(crate) fn filters(&self) -> RawFilters {
        let mut task_types = self.all("task_type");
        task_types.extend(self.all("task_types"));
        RawFilters {
            modality: self.all("modality"),
            area: self.all("area"),
            task_types,
            tags: self.all("tags").into_iter().map(TagRef::IdOrName).collect(),
        }
    }

    /// `limit` (1 to `max`, `default` when absent) and `offset`; anything else is a 400
    /// that says what is allowed. `body` holds the values a request body gave: the query
    /// string's win, so a client following `Link` may send the same body again.
    pub(crate) fn paging(&self, default: i64, max: i64, body: (Option<i64>, Option<i64>)) -> Res<Paging> {
        let read = |field: &str, from_body: Option<i64>, default: i64, range: std::ops::RangeInclusive<i64>| {
            let message = || format!("must be a whole number from {} to {}", range.start(), range.end());
            let value = match self.last(field) {
                Some(raw) => raw.trim().parse::<i64>().map_err(|_| ApiError::field(field, message()))?,
                None => from_body.unwrap_or(default),
            };
            if !range.contains(&value) {
                return Err(ApiError::field(field, message()));
            }
            Ok(value)
        };
        Ok(Paging { limit: read("limit", body.0, default, 1..=max)?, offset: read("offset", body.1, 0, 0..=MAX_OFFSET)? })
    }

    /// `X-Total-Count` and, where there are other pages, `Link` with `rel="next"` and
    /// `rel="prev"`: the same URL with the same parameters (filters, `q`, `ordering`,
    /// repeated keys) and the other page's `limit` and `offset`.
    pub(crate) fn headers(&self, path: &str, page: Paging, total: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-total-count"), HeaderValue::from(total));
        let link = |offset: i64, rel: &str| {
            let mut pairs: Vec<(&str, String)> =
                self.pairs.iter().filter(|(k, _)| k != "limit" && k != "offset").map(|(k, v)| (k.as_str(), v.clone())).collect();
            pairs.push(("limit", page.limit.to_string()));
            pairs.push(("offset", offset.to_string()));
            let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            format!("<{}{path}?{query}>; rel=\"{rel}\"", self.origin)
        };
        let mut links = Vec::new();
        if page.offset.saturating_add(page.limit) < total {
            links.push(link(page.offset + page.limit, "next"));
        }
        if page.offset > 0 {
            // From past the end, "prev" is the last page that has rows.
            let last_page = ((total - 1).max(0) / page.limit) * page.limit;
            links.push(link((page.offset - page.limit).clamp(0, last_page), "prev"));
        }
        if !links.is_empty()
            && let Ok(value) = HeaderValue::from_str(&links.join(", "))
        {
            headers.insert(axum::http::header::LINK, value);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> ListRequest {
        ListRequest { pairs: serde_urlencoded::from_str(query).unwrap(), origin: "http://h:1".into() }
    }

    fn link(r: &ListRequest, page: Paging, total: i64) -> String {
        r.headers("/p/", page, total).get("link").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }

    #[test]
    fn links_keep_the_query_and_move_the_offset() {
        let r = request("modality=CT&modality=MR&q=chest%20ct&limit=10&offset=10");
        let page = Paging { limit: 10, offset: 10 };
        assert_eq!(r.paging(100, 1000, (None, None)).ok(), Some(page));
        assert_eq!(
            link(&r, page, 25),
            "<http://h:1/p/?modality=CT&modality=MR&q=chest+ct&limit=10&offset=20>; rel=\"next\", \
             <http://h:1/p/?modality=CT&modality=MR&q=chest+ct&limit=10&offset=0>; rel=\"prev\""
        );
        assert_eq!(link(&r, Paging { limit: 10, offset: 0 }, 10), "", "one page: no links");
        assert_eq!(
            link(&r, Paging { limit: 10, offset: 50 }, 25),
            "<http://h:1/p/?modality=CT&modality=MR&q=chest+ct&limit=10&offset=20>; rel=\"prev\""
        );
        assert_eq!(r.headers("/p/", page, 25)["x-total-count"], "25");
        assert_eq!(r.all("modality"), ["CT", "MR"]);
    }

    #[test]
    fn paging_is_bounded_and_the_query_wins_over_the_body() {
        assert_eq!(request("").paging(100, 1000, (None, None)).ok(), Some(Paging { limit: 100, offset: 0 }));
        assert_eq!(request("").paging(20, 100, (Some(5), Some(5))).ok(), Some(Paging { limit: 5, offset: 5 }));
        assert_eq!(request("offset=10").paging(20, 100, (Some(5), Some(5))).ok(), Some(Paging { limit: 5, offset: 10 }));
        for bad in ["limit=1001", "limit=0", "limit=-1", "limit=ten", "offset=-1", "offset=99999999999"] {
            assert!(request(bad).paging(100, 1000, (None, None)).is_err(), "{bad}");
        }
    }
}
