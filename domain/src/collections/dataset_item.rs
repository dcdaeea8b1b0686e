//! Dataset items: the files a dataset is made of, each with its own metadata. Items are
//! what collections bundle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::DomainError;

pub type ItemId = i64;

/// Each item's `DatasetItemAdded` is the one event of its own stream (issue 17), so
/// uploads to one dataset never conflict; older histories hold it on the dataset's.
pub fn stream_id(id: ItemId) -> String {
    format!("dataset_item-{id}")
}

/// An item as recorded: where its bytes are, what they are, and how they are labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetItem {
    pub item_id: ItemId,
    /// A safe relative path (see [`parse_item_path`]); unique within a collection archive
    /// only together with the item id.
    pub filename: String,
    pub blob_key: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub content_type: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub caption: String,
    /// Patient-free identifiers (study, series, split...): never names or record numbers.
    #[serde(default)]
    pub identifiers: BTreeMap<String, String>,
}

/// Accepts a relative path of plain components: no `..`, no absolute path or drive
/// letter, no backslash, NUL or control character. Archives are built from these names,
/// so this is what keeps a file from escaping the archive root (zip-slip).
pub fn parse_item_path(raw: &str) -> Result<String, DomainError> {
    let bad = |why: &str| Err(DomainError::invalid("filename", format!("{why}: {raw:?}")));
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.len() > 255 {
        return bad("a file name of 1-255 bytes is required");
    }
    if trimmed.chars().any(|c| c == '\0' || c == '\\' || c.is_control()) {
        return bad("NUL, control characters and backslashes are not allowed in file names");
    }
    if trimmed.starts_with('/') || trimmed.as_bytes().get(1) == Some(&b':') {
        return bad("file names must be relative");
    }
    let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        return bad("file names may not climb out of their folder");
    }
    Ok(parts.join("/"))
}

/// An item's labels, caption and identifiers, checked and trimmed.
pub type ItemMetadata = (Vec<String>, String, BTreeMap<String, String>);

/// Labels and caption as given by an admin, cleaned and bounded.
pub fn clean_item_metadata(
    labels: Vec<String>,
    caption: String,
    identifiers: BTreeMap<String, String>,
) -> Result<ItemMetadata, DomainError> {
    let mut clean: Vec<String> = labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    clean.dedup();
    if clean.len() > 100 || clean.iter().any(|l| l.chars().count() > 100) {
        return Err(DomainError::invalid("labels", "at most 100 labels of at most 100 characters"));
    }
    let caption = caption.trim().to_string();
    if caption.chars().count() > 5_000 {
        return Err(DomainError::invalid("caption", "at most 5000 characters"));
    }
    if identifiers.len() > 20 || identifiers.iter().any(|(k, v)| k.is_empty() || k.len() > 50 || v.len() > 200) {
        return Err(DomainError::invalid("identifiers", "at most 20 keys (1-50 bytes) with values of at most 200 bytes"));
    }
    Ok((clean, caption, identifiers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_are_kept_and_normalised() {
        assert_eq!(parse_item_path("scan.dcm").unwrap(), "scan.dcm");
        assert_eq!(parse_item_path("./series/1/./img.png").unwrap(), "series/1/img.png");
        assert_eq!(parse_item_path("a//b.txt").unwrap(), "a/b.txt");
        assert_eq!(parse_item_path("снимок 1.png").unwrap(), "снимок 1.png");
    }

    #[test]
    fn paths_that_could_escape_an_archive_are_refused() {
        for evil in ["../etc/passwd", "a/../../b", "/etc/passwd", "C:/windows/x", "a\\..\\b", "nul\0byte", "..", "", "  ", "a\nb"] {
            assert!(parse_item_path(evil).is_err(), "{evil:?} must be refused");
        }
        assert!(parse_item_path(&"x".repeat(256)).is_err());
    }

    #[test]
    fn metadata_is_trimmed_and_bounded() {
        let (labels, caption, _) = clean_item_metadata(vec![" a ".into(), "".into(), "b".into()], " c ".into(), BTreeMap::new()).unwrap();
        assert_eq!(labels, ["a", "b"]);
        assert_eq!(caption, "c");
        assert!(clean_item_metadata(vec!["x".repeat(101)], String::new(), BTreeMap::new()).is_err());
        assert!(clean_item_metadata(vec![], "x".repeat(5001), BTreeMap::new()).is_err());
        let ids = BTreeMap::from([(String::new(), "v".to_string())]);
        assert!(clean_item_metadata(vec![], String::new(), ids).is_err());
    }
}
