//! Bilingual query expansion: Russian (or English) query words become the English terms
//! the catalog is written in, from a curated vocabulary (`data/medical_vocabulary.txt`).

const VOCABULARY: &str = include_str!("../data/medical_vocabulary.txt");

struct Concept {
    english: Vec<String>,
    /// Each alternative is a sequence of stems matching consecutive query words.
    russian: Vec<Vec<String>>,
}

/// Parsed once per process.
fn concepts() -> &'static [Concept] {
    static CONCEPTS: std::sync::OnceLock<Vec<Concept>> = std::sync::OnceLock::new();
    CONCEPTS.get_or_init(parse)
}

fn parse() -> Vec<Concept> {
    VOCABULARY
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(';'))
        .map(|(en, ru)| Concept {
            english: en.split(',').map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty()).collect(),
            russian: ru
                .split(',')
                .map(|t| t.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
                .filter(|t| !t.is_empty())
                .collect(),
        })
        .collect()
}

fn clean(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric() && c != '-').to_lowercase()
}

/// How many query words starting at `at` a concept consumes, if it matches there.
fn matches(concept: &Concept, words: &[String], at: usize) -> usize {
    let mut best = 0;
    for stems in &concept.russian {
        let fits = stems.len() <= words.len() - at
            && stems.iter().zip(&words[at..]).all(|(stem, word)| word.starts_with(stem.as_str()));
        if fits {
            best = best.max(stems.len());
        }
    }
    if best == 0 && concept.english.iter().any(|t| !t.contains(' ') && *t == words[at]) {
        best = 1;
    }
    best
}

/// Splits a free-text query into groups: a document matches the query when it contains
/// at least one term of every group. Known words (either language) become their
/// concept's English terms; other words stay as they are.
pub fn expand(query: &str) -> Vec<Vec<String>> {
    let words: Vec<String> = query.split_whitespace().map(clean).filter(|w| !w.is_empty()).collect();
    let concepts = concepts();
    let mut groups = Vec::new();
    let mut at = 0;
    while at < words.len() {
        let best = concepts
            .iter()
            .map(|c| (matches(c, &words, at), c))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, concept)) => {
                let mut group = concept.english.clone();
                if !group.contains(&words[at]) && n == 1 && words[at].is_ascii() {
                    group.push(words[at].clone());
                }
                groups.push(group);
                at += n;
            }
            None => {
                groups.push(vec![words[at].clone()]);
                at += 1;
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(groups: &[Vec<String>], term: &str) -> bool {
        groups.iter().any(|g| g.iter().any(|t| t == term))
    }

    #[test]
    fn the_seeds_russian_query_becomes_english_concepts() {
        let g = expand("пневмония грудная клетка КТ");
        assert_eq!(g.len(), 3, "{g:?}");
        assert!(g[0].contains(&"pneumonia".to_string()));
        assert!(g[1].contains(&"chest".to_string()) && g[1].contains(&"thorax".to_string()));
        assert!(g[2].contains(&"ct".to_string()));
    }

    #[test]
    fn inflected_russian_words_match_by_stem() {
        assert!(has(&expand("опухолей мозга"), "tumor"));
        assert!(has(&expand("опухолей мозга"), "brain"));
        assert!(has(&expand("сегментации печени"), "segmentation"));
        assert!(has(&expand("сегментации печени"), "liver"));
        assert!(has(&expand("снимки лёгких"), "lung"));
    }

    #[test]
    fn english_words_expand_to_their_synonyms_and_unknown_words_stay() {
        let g = expand("Tumour segmentation foo");
        assert!(g[0].contains(&"tumor".to_string()) && g[0].contains(&"cancer".to_string()));
        assert_eq!(g[2], ["foo"]);
    }

    #[test]
    fn the_vocabulary_file_parses_into_concepts() {
        let c = concepts();
        assert!(c.len() >= 40);
        assert!(c.iter().all(|c| !c.english.is_empty() && !c.russian.is_empty()));
    }
}
