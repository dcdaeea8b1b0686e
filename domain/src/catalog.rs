//! The dataset catalog (contract 000): datasets created, updated and retired by admins
//! or imported from a JSONL file.

use serde::{Deserialize, Serialize};

use crate::dataset_item::{DatasetItem, parse_item_path};
use crate::{Aggregate, DomainError, DomainEvent};

pub type DatasetId = i64;

pub fn stream_id(id: DatasetId) -> String {
    format!("dataset-{id}")
}

/// The stream that claims a slug for one dataset, so an import never creates twins.
pub fn slug_stream_id(slug: &str) -> String {
    format!("dataset_slug-{slug}")
}

/// Imaging modality codes used across the catalog.
pub const MODALITIES: [&str; 14] = ["CT", "MR", "XR", "US", "PT", "MG", "OCT", "CBCT", "IOS", "PATH", "FUNDUS", "ENDO", "DERM", "OTHER"];

/// Body areas used across the catalog.
pub const AREAS: [&str; 21] = [
    "abdomen",
    "blood",
    "bone",
    "brain",
    "breast",
    "cell",
    "chest",
    "colon",
    "eye",
    "heart",
    "kidney",
    "knee",
    "liver",
    "lung",
    "other",
    "pelvis",
    "prostate",
    "skin",
    "spine",
    "teeth",
    "whole-body",
];

/// Machine-learning task types.
pub const TASK_TYPES: [&str; 9] =
    ["classification", "detection", "segmentation", "regression", "report-generation", "reconstruction", "vqa", "registration", "other"];

fn one_of(field: &'static str, value: &str, allowed: &[&str]) -> Result<String, DomainError> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value.trim()))
        .map(|a| a.to_string())
        .ok_or_else(|| DomainError::invalid(field, format!("unknown value '{}'; allowed: {}", value.trim(), allowed.join(", "))))
}

pub fn parse_modality(value: &str) -> Result<String, DomainError> {
    one_of("modality", value, &MODALITIES)
}

pub fn parse_area(value: &str) -> Result<String, DomainError> {
    one_of("area", value, &AREAS)
}

pub fn parse_task_type(value: &str) -> Result<String, DomainError> {
    one_of("task_type", value, &TASK_TYPES)
}

/// Missing and `null` read as empty: the public catalog files use both.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// Everything a dataset says about itself, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFields {
    pub slug: String,
    pub title: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub source_url: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub modality: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub area: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub task_types: Vec<String>,
    #[serde(default)]
    pub num_images: Option<i64>,
    #[serde(default)]
    pub size_mb: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub license: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub year: Option<i32>,
}

impl DatasetFields {
    /// Normalises and checks every field, reporting all problems at once.
    pub fn validate(mut self) -> Result<Self, DomainError> {
        let mut errors = std::collections::BTreeMap::<String, Vec<String>>::new();
        let mut fail = |field: &str, message: String| errors.entry(field.to_string()).or_default().push(message);
        self.slug = self.slug.trim().to_lowercase();
        if self.slug.is_empty() || self.slug.len() > 100 || !self.slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            fail("slug", "1-100 characters: lower-case letters, digits, '-' and '_'".into());
        }
        self.title = self.title.trim().to_string();
        if self.title.is_empty() || self.title.chars().count() > 300 {
            fail("title", "1-300 characters".into());
        }
        if self.description.chars().count() > 20_000 {
            fail("description", "at most 20000 characters".into());
        }
        let url = self.source_url.trim();
        let http = url.starts_with("https://") || url.starts_with("http://");
        if (!url.is_empty() && !http) || url.len() > 2_000 {
            fail("source_url", "an http(s) URL of at most 2000 characters".into());
        }
        self.source_url = url.to_string();
        let mut check_list = |field: &'static str, values: &mut Vec<String>, parse: fn(&str) -> Result<String, DomainError>| {
            let mut out = Vec::new();
            for v in values.iter() {
                match parse(v) {
                    Ok(v) if !out.contains(&v) => out.push(v),
                    Ok(_) => {}
                    Err(DomainError::InvalidValue { message, .. }) => fail(field, message),
                    Err(e) => fail(field, e.to_string()),
                }
            }
            *values = out;
        };
        check_list("modality", &mut self.modality, parse_modality);
        check_list("task_types", &mut self.task_types, parse_task_type);
        if !self.area.trim().is_empty() {
            match parse_area(&self.area) {
                Ok(a) => self.area = a,
                Err(e) => fail("area", e.to_string()),
            }
        }
        if self.num_images.is_some_and(|n| n < 0) {
            fail("num_images", "must not be negative".into());
        }
        if self.size_mb.is_some_and(|n| n < 0) {
            fail("size_mb", "must not be negative".into());
        }
        if self.year.is_some_and(|y| !(1900..=2100).contains(&y)) {
            fail("year", "between 1900 and 2100".into());
        }
        self.tags = self.tags.iter().map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty()).collect();
        self.tags.dedup();
        if self.tags.len() > 100 || self.tags.iter().any(|t| t.chars().count() > 100) {
            fail("tags", "at most 100 tags of at most 100 characters".into());
        }
        self.license = self.license.trim().to_string();
        if !errors.is_empty() {
            return Err(DomainError::InvalidFields(errors));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DatasetEvent {
    DatasetCreated { dataset_id: DatasetId, fields: DatasetFields },
    DatasetUpdated { dataset_id: DatasetId, fields: DatasetFields },
    DatasetRetired { dataset_id: DatasetId },
    DatasetSlugClaimed { dataset_id: DatasetId },
    DatasetItemAdded { dataset_id: DatasetId, item: DatasetItem },
}

impl DomainEvent for DatasetEvent {
    fn event_type(&self) -> &'static str {
        match self {
            DatasetEvent::DatasetCreated { .. } => "DatasetCreated",
            DatasetEvent::DatasetUpdated { .. } => "DatasetUpdated",
            DatasetEvent::DatasetRetired { .. } => "DatasetRetired",
            DatasetEvent::DatasetSlugClaimed { .. } => "DatasetSlugClaimed",
            DatasetEvent::DatasetItemAdded { .. } => "DatasetItemAdded",
        }
    }
}

#[derive(Debug)]
pub enum DatasetCommand {
    Create {
        dataset_id: DatasetId,
        fields: DatasetFields,
    },
    /// Replaces every field; nothing is written when they are unchanged.
    Update {
        fields: DatasetFields,
    },
    Retire,
    /// Attaches a file; refused once the dataset is retired.
    AddItem {
        item: DatasetItem,
    },
}

#[derive(Debug, Default)]
pub struct Dataset {
    id: Option<DatasetId>,
    fields: Option<DatasetFields>,
    retired: bool,
}

impl Dataset {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn is_retired(&self) -> bool {
        self.retired
    }

    pub fn fields(&self) -> Option<&DatasetFields> {
        self.fields.as_ref()
    }
}

impl Aggregate for Dataset {
    type Command = DatasetCommand;
    type Event = DatasetEvent;
    const CATEGORY: &'static str = "dataset";

    fn handle(&self, command: DatasetCommand) -> Result<Vec<DatasetEvent>, DomainError> {
        match command {
            DatasetCommand::Create { dataset_id, fields } => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists("dataset"));
                }
                Ok(vec![DatasetEvent::DatasetCreated { dataset_id, fields: fields.validate()? }])
            }
            DatasetCommand::Update { fields } => {
                let dataset_id = self.id.ok_or(DomainError::NotFound("dataset"))?;
                if self.retired {
                    return Err(DomainError::NotFound("dataset"));
                }
                let fields = fields.validate()?;
                if self.fields.as_ref().is_some_and(|f| f.slug != fields.slug) {
                    return Err(DomainError::invalid("slug", "a dataset's slug cannot change"));
                }
                if self.fields.as_ref() == Some(&fields) {
                    return Ok(vec![]);
                }
                Ok(vec![DatasetEvent::DatasetUpdated { dataset_id, fields }])
            }
            DatasetCommand::Retire => {
                let dataset_id = self.id.ok_or(DomainError::NotFound("dataset"))?;
                if self.retired {
                    return Ok(vec![]);
                }
                Ok(vec![DatasetEvent::DatasetRetired { dataset_id }])
            }
            DatasetCommand::AddItem { item } => {
                let dataset_id = self.id.ok_or(DomainError::NotFound("dataset"))?;
                if self.retired {
                    return Err(DomainError::NotFound("dataset"));
                }
                let filename = parse_item_path(&item.filename)?;
                Ok(vec![DatasetEvent::DatasetItemAdded { dataset_id, item: DatasetItem { filename, ..item } }])
            }
        }
    }

    fn apply(&mut self, event: &DatasetEvent) {
        match event {
            DatasetEvent::DatasetCreated { dataset_id, fields } => {
                self.id = Some(*dataset_id);
                self.fields = Some(fields.clone());
            }
            DatasetEvent::DatasetUpdated { fields, .. } => self.fields = Some(fields.clone()),
            DatasetEvent::DatasetRetired { .. } => self.retired = true,
            DatasetEvent::DatasetSlugClaimed { .. } | DatasetEvent::DatasetItemAdded { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> DatasetFields {
        DatasetFields {
            slug: "Chest-XRay14".into(),
            title: " NIH ChestX-ray14 ".into(),
            description: "Frontal chest radiographs".into(),
            source_url: "https://nihcc.app.box.com/v/ChestXray-NIHCC".into(),
            modality: vec!["xr".into(), "XR".into()],
            area: "Chest".into(),
            task_types: vec!["classification".into()],
            num_images: Some(112_120),
            size_mb: None,
            license: "CC0 1.0".into(),
            tags: vec!["Pneumonia".into(), " ".into()],
            year: Some(2017),
        }
    }

    fn created() -> Vec<DatasetEvent> {
        Dataset::default().handle(DatasetCommand::Create { dataset_id: 1, fields: fields() }).unwrap()
    }

    #[test]
    fn creation_normalises_fields() {
        let events = created();
        let [DatasetEvent::DatasetCreated { fields, .. }] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(fields.slug, "chest-xray14");
        assert_eq!(fields.title, "NIH ChestX-ray14");
        assert_eq!(fields.modality, ["XR"]);
        assert_eq!(fields.area, "chest");
        assert_eq!(fields.tags, ["pneumonia"]);
    }

    #[test]
    fn unknown_values_are_refused_listing_the_allowed_ones() {
        let mut f = fields();
        f.modality = vec!["XRAY".into()];
        f.area = "moon".into();
        f.year = Some(1066);
        let Err(DomainError::InvalidFields(e)) = f.validate() else { panic!() };
        assert!(e["modality"][0].contains("allowed: CT, MR"), "{e:?}");
        assert!(e.contains_key("area") && e.contains_key("year"));
    }

    #[test]
    fn updating_with_the_same_fields_writes_nothing() {
        let state = Dataset::from_events(&created());
        assert_eq!(state.handle(DatasetCommand::Update { fields: fields() }), Ok(vec![]));
        let mut changed = fields();
        changed.title = "New title".into();
        assert_eq!(state.handle(DatasetCommand::Update { fields: changed }).unwrap().len(), 1);
    }

    #[test]
    fn the_slug_is_fixed_and_retired_datasets_cannot_change() {
        let mut history = created();
        let mut other = fields();
        other.slug = "other".into();
        assert!(Dataset::from_events(&history).handle(DatasetCommand::Update { fields: other }).is_err());
        history.extend(Dataset::from_events(&history).handle(DatasetCommand::Retire).unwrap());
        let state = Dataset::from_events(&history);
        assert!(state.is_retired());
        assert_eq!(state.handle(DatasetCommand::Retire), Ok(vec![]));
        assert_eq!(state.handle(DatasetCommand::Update { fields: fields() }), Err(DomainError::NotFound("dataset")));
    }
}
