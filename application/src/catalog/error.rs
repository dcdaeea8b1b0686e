/// The catalog's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("a dataset with this slug already exists")]
    SlugTaken,
    /// A slug derived from the title, and its next `tries` numbered forms, are taken.
    #[error("the slug '{slug}' and its next {tries} numbered forms are taken")]
    NoFreeSlug { slug: String, tries: usize },
}
