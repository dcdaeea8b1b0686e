//! The dataset catalog (contract 000): datasets created, updated and retired by admins
//! or imported from a JSONL file.

pub mod vocabulary;

pub use vocabulary::expand as expand_query;

/// The catalog's event enums.
pub const EVENTS: &[crate::events::EventEnum] = &[crate::events::EventEnum::of::<DatasetEvent>("DatasetEvent")];

use serde::{Deserialize, Serialize};

use crate::collections::{DatasetItem, parse_item_path};
use crate::{Aggregate, DomainError, DomainEvent, EventNames};

pub type DatasetId = i64;

pub fn stream_id(id: DatasetId) -> String {
    format!("dataset-{id}")
}

/// The stream that claims a slug for one dataset, so an import never creates twins.
pub fn slug_stream_id(slug: &str) -> String {
    format!("dataset_slug-{slug}")
}

/// Imaging modality codes used across the catalog.
/// A code's id is its 1-based position here ([`one_of`]): only ever append.
pub const MODALITIES: [&str; 14] = ["CT", "MR", "XR", "US", "PT", "MG", "OCT", "CBCT", "IOS", "PATH", "FUNDUS", "ENDO", "DERM", "OTHER"];

/// Body areas used across the catalog.
/// A code's id is its 1-based position here ([`one_of`]): only ever append.
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
/// A code's id is its 1-based position here ([`one_of`]): only ever append.
pub const TASK_TYPES: [&str; 9] =
    ["classification", "detection", "segmentation", "regression", "report-generation", "reconstruction", "vqa", "registration", "other"];

/// A value of a fixed list, by its code (any case) or its id: the contract lets
/// clients send either ("modality code / ID"). The id is the code's 1-based position
/// in its list, so these lists only ever grow at the end.
fn one_of(field: &'static str, value: &str, allowed: &[&str]) -> Result<String, DomainError> {
    let value = value.trim();
    let by_id = || value.parse::<usize>().ok().and_then(|id| id.checked_sub(1)).and_then(|i| allowed.get(i));
    allowed.iter().find(|a| a.eq_ignore_ascii_case(value)).or_else(by_id).map(|a| a.to_string()).ok_or_else(|| {
        DomainError::invalid(field, format!("unknown value '{value}'; allowed: {} (or their ids 1-{})", allowed.join(", "), allowed.len()))
    })
}

/// The id a client may send instead of `code` (see [`one_of`]).
pub fn code_id(allowed: &[&str], code: &str) -> Option<usize> {
    allowed.iter().position(|a| *a == code).map(|i| i + 1)
}

/// A tag's id, which a client may send instead of its name. Tags are free text with no
/// registry to number them, so the id is a function of the (normalised) name: stable
/// across servers, restarts and rebuilds, and never reused for another tag. FNV-1a,
/// cut to 53 bits so that JavaScript clients read it exactly.
pub fn tag_id(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash >> 11) as i64
}

/// The longest slug a dataset may have.
pub const MAX_SLUG_CHARS: usize = 100;

/// A slug made from a title when the admin gives none, as Django's `slugify` makes
/// one (the seed's backend): lower case, spaces and hyphens become one hyphen, other
/// punctuation is dropped ("Alzheimer's" → "alzheimers"); Cyrillic and accented Latin
/// letters are transliterated, other scripts dropped. Short enough to take a `-N` suffix.
pub fn slug_from_title(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c);
        } else if let Some(ascii) = transliterate(c) {
            slug.push_str(ascii);
        } else if (c.is_whitespace() || c == '-') && !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut slug = slug.trim_end_matches('-').to_string();
    // Room for "-NNNN"; cut at a word boundary when there is one.
    const ROOM: usize = MAX_SLUG_CHARS - 10;
    if slug.len() > ROOM {
        slug.truncate(ROOM);
        if let Some(cut) = slug.rfind('-').filter(|i| *i > ROOM / 2) {
            slug.truncate(cut);
        }
        slug = slug.trim_end_matches('-').to_string();
    }
    if slug.is_empty() { "dataset".to_string() } else { slug }
}

/// The `n`-th slug tried for a derived one: `base`, then `base-2`, `base-3`, ...
pub fn numbered_slug(base: &str, n: usize) -> String {
    if n <= 1 { base.to_string() } else { format!("{base}-{n}") }
}

/// Lower-case Cyrillic (Russian, Ukrainian, Belarusian) and Latin letters with
/// diacritics in plain ASCII; `Some("")` for letters that are dropped, `None` for
/// anything that is not a letter we know.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' => "g",
        'ґ' => "g",
        'д' => "d",
        'е' | 'ё' | 'э' | 'є' => "e",
        'ж' => "zh",
        'з' => "z",
        'и' | 'і' | 'ї' => "i",
        'й' => "y",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' | 'ў' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ы' => "y",
        'ю' => "yu",
        'я' => "ya",
        'ъ' | 'ь' => "",
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' | 'ľ' | 'ĺ' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' | 'ŕ' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ß' => "ss",
        'ť' | 'ţ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
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

/// Codes as clients send them: one, a list, or none; each a code or its numeric id
/// (`validate` checks them).
fn codes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let one = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let expected = || serde::de::Error::custom("expected a code, its id, or a list of them");
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(values)) => values.iter().map(|v| one(v).ok_or_else(expected)).collect(),
        Some(v) => one(&v).map(|s| vec![s]).ok_or_else(expected),
    }
}

/// One code or its numeric id; none reads as empty.
fn code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match codes(d)?.as_slice() {
        [] => Ok(String::new()),
        [one] => Ok(one.clone()),
        _ => Err(serde::de::Error::custom("expected one code or id, not a list")),
    }
}

/// Everything a dataset says about itself, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DatasetFields {
    /// Empty when a client leaves it out: creating derives one from the title
    /// ([`slug_from_title`]), updating keeps the dataset's own.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{0,100}$"))]
    pub slug: String,
    #[schemars(length(min = 1, max = 300), regex(pattern = r"\S"))]
    pub title: String,
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(length(max = 20000))]
    pub description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(regex(pattern = r"^(https?://\S{1,1990})?$"))]
    pub source_url: String,
    #[serde(default, deserialize_with = "codes")]
    #[schemars(schema_with = "modality_codes")]
    pub modality: Vec<String>,
    #[serde(default, deserialize_with = "code")]
    #[schemars(schema_with = "area_code")]
    pub area: String,
    #[serde(default, deserialize_with = "codes")]
    #[schemars(schema_with = "task_type_codes")]
    pub task_types: Vec<String>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub num_images: Option<i64>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub size_mb: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub license: String,
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(length(max = 100), inner(length(max = 100)))]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schemars(range(min = 1900, max = 2100))]
    pub year: Option<i32>,
}

/// For the API document: one code of `allowed`, or its id (its 1-based position).
fn code_schema(allowed: &[&str]) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{"type": "string", "enum": allowed}, {"type": "integer", "minimum": 1, "maximum": allowed.len()}]
    })
}

fn code_list_schema(allowed: &[&str]) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": code_schema(allowed)})
}

fn modality_codes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    code_list_schema(&MODALITIES)
}

fn area_code(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    code_schema(&AREAS)
}

fn task_type_codes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    code_list_schema(&TASK_TYPES)
}

impl DatasetFields {
    /// Normalises and checks every field, reporting all problems at once.
    pub fn validate(mut self) -> Result<Self, DomainError> {
        let mut errors = std::collections::BTreeMap::<String, Vec<String>>::new();
        let mut fail = |field: &str, message: String| errors.entry(field.to_string()).or_default().push(message);
        self.slug = self.slug.trim().to_lowercase();
        if self.slug.is_empty()
            || self.slug.len() > MAX_SLUG_CHARS
            || !self.slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            fail("slug", format!("1-{MAX_SLUG_CHARS} characters: lower-case letters, digits, '-' and '_'"));
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
        let mut tags: Vec<String> = Vec::new();
        for tag in self.tags.iter().map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty()) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        self.tags = tags;
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, EventNames)]
#[serde(tag = "type", content = "data")]
pub enum DatasetEvent {
    DatasetCreated { dataset_id: DatasetId, fields: DatasetFields },
    DatasetUpdated { dataset_id: DatasetId, fields: DatasetFields },
    DatasetRetired { dataset_id: DatasetId },
    DatasetSlugClaimed { dataset_id: DatasetId },
    DatasetItemAdded { dataset_id: DatasetId, item: DatasetItem },
}

impl DomainEvent for DatasetEvent {}

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
            DatasetCommand::Update { mut fields } => {
                let dataset_id = self.id.ok_or(DomainError::NotFound("dataset"))?;
                if self.retired {
                    return Err(DomainError::NotFound("dataset"));
                }
                // A client that sends the fields without the slug (the seed's example
                // has none) keeps the dataset's.
                if fields.slug.trim().is_empty()
                    && let Some(current) = &self.fields
                {
                    fields.slug = current.slug.clone();
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
    fn codes_are_accepted_by_their_ids_too() {
        assert_eq!(parse_modality("1"), Ok("CT".into()));
        assert_eq!(parse_modality(" 2 "), Ok("MR".into()));
        assert_eq!(parse_area("7"), Ok("chest".into()));
        assert_eq!(code_id(&AREAS, "chest"), Some(7));
        assert_eq!(parse_task_type("1"), Ok("classification".into()));
        for bad in ["0", "15", "-1", "1.0"] {
            assert!(parse_modality(bad).is_err(), "{bad}");
        }
        let json = r#"{"slug": "s", "title": "T", "modality": [1, "mr"], "area": 7, "task_types": "segmentation"}"#;
        let f = serde_json::from_str::<DatasetFields>(json).unwrap().validate().unwrap();
        assert_eq!(
            (f.modality, f.area, f.task_types),
            (vec!["CT".to_string(), "MR".into()], "chest".to_string(), vec!["segmentation".into()])
        );
    }

    #[test]
    fn slugs_come_from_titles_as_django_makes_them() {
        assert_eq!(slug_from_title("Chest X-ray Pneumonia Dataset"), "chest-x-ray-pneumonia-dataset");
        assert_eq!(slug_from_title("  Alzheimer's  MRI (OASIS-3) "), "alzheimers-mri-oasis-3");
        assert_eq!(slug_from_title("Пневмония: КТ грудной клетки"), "pnevmoniya-kt-grudnoy-kletki");
        assert_eq!(slug_from_title("Fundus Ångström Straße"), "fundus-angstrom-strasse");
        assert_eq!(slug_from_title("肺 CT"), "ct");
        assert_eq!(slug_from_title("!!!"), "dataset");
        let long = slug_from_title(&"word ".repeat(60));
        assert!(long.len() <= MAX_SLUG_CHARS - 10 && !long.ends_with('-'), "{long}");
        assert_eq!(numbered_slug("ct", 1), "ct");
        assert_eq!(numbered_slug("ct", 3), "ct-3");
        let mut f = fields();
        f.slug = slug_from_title("Пневмония: КТ грудной клетки");
        assert!(f.validate().is_ok());
    }

    #[test]
    fn tag_ids_are_stable_and_distinct() {
        assert_eq!(tag_id("pneumonia"), tag_id("pneumonia"));
        assert_ne!(tag_id("pneumonia"), tag_id("thorax"));
        assert!((0..1i64 << 53).contains(&tag_id("pneumonia")));
    }

    #[test]
    fn an_update_without_a_slug_keeps_the_datasets_own() {
        let state = Dataset::from_events(&created());
        let mut without = fields();
        without.slug = String::new();
        without.title = "Renamed".into();
        let events = state.handle(DatasetCommand::Update { fields: without }).unwrap();
        let [DatasetEvent::DatasetUpdated { fields, .. }] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(fields.slug, "chest-xray14");
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
