//! Text analysis: the same chain for indexing and for queries, one per language.

use tantivy::Index;
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};

pub const ENGLISH: &str = "medledger_en";
pub const RUSSIAN: &str = "medledger_ru";

fn analyzer(language: Language) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    match StopWordFilter::new(language) {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(language)).build(),
        None => builder.filter(Stemmer::new(language)).build(),
    }
}

pub fn register(index: &mut Index) {
    index.tokenizers().register(ENGLISH, analyzer(Language::English));
    index.tokenizers().register(RUSSIAN, analyzer(Language::Russian));
}

/// The terms `text` becomes in a field analysed for `language`.
pub fn terms(language: Language, text: &str) -> Vec<String> {
    let mut analyzer = analyzer(language);
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}
