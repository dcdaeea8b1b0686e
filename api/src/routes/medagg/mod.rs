//! Contract 000 (MedAgg): the dataset catalog, its search and user collections.
//! Mounted at `/api/v1`.

mod collections;
mod datasets;
pub mod items;
mod search;

use medledger_domain::catalog::{parse_area, parse_modality, parse_task_type};
use medledger_projections::catalog_index::SearchFilters;

use crate::error::{ApiError, ApiResult, Detail};
use crate::openapi::Api;

type Res<T> = ApiResult<T, Detail>;

pub fn routes(api: Api) -> Api {
    collections::routes(items::routes(search::routes(datasets::routes(api))))
}

/// Longest free-text query accepted, in characters.
const MAX_QUERY_CHARS: usize = 1_000;

fn check_query_text(field: &str, text: &str) -> Res<()> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::field(field, format!("at most {MAX_QUERY_CHARS} characters")));
    }
    Ok(())
}

/// Filter values as the user gave them (one or several per dimension), checked against
/// the catalog's allowed values: an unknown one is a 400 that lists them.
#[derive(Default)]
struct RawFilters {
    modality: Vec<String>,
    area: Vec<String>,
    task_types: Vec<String>,
    tags: Vec<String>,
}

impl RawFilters {
    fn parse(self) -> Res<SearchFilters> {
        let all = |values: Vec<String>, parse: fn(&str) -> Result<String, medledger_domain::DomainError>| {
            values.iter().map(|v| parse(v.trim())).collect::<Result<Vec<_>, _>>()
        };
        Ok(SearchFilters {
            modality: all(self.modality, parse_modality)?,
            area: all(self.area, parse_area)?,
            task_types: all(self.task_types, parse_task_type)?,
            tags: self.tags.iter().map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty()).collect(),
        })
    }
}

fn comma_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
