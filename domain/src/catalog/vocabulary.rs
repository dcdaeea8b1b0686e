//! Bilingual query expansion: Russian (or English) query words become the English terms
//! the catalog is written in, from a curated vocabulary (`data/medical_vocabulary.txt`).

const VOCABULARY: &str = include_str!("../../data/medical_vocabulary.txt");

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

/// Edit distance (insertions, deletions, substitutions, adjacent transpositions) between
/// two short words, counted in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows suffice for transpositions: the one two back, the previous, the current.
    let mut two_back = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(two_back[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut two_back, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Whether `a` and `b` are at most `budget` edits apart; words whose lengths differ by
/// more than the budget are not compared letter by letter.
pub fn within_edits(a: &str, b: &str, budget: usize) -> bool {
    a.chars().count().abs_diff(b.chars().count()) <= budget && edit_distance(a, b) <= budget
}

/// How many typos a word of this length may carry and still be recognised: none in short
/// words (КТ, MRI: a one-letter change makes another real word), one from five letters,
/// two from nine.
pub fn typo_budget(chars: usize) -> usize {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Whether `word` is `stem` plus an ending, allowing the typo budget inside the stem part.
fn fuzzy_stem_match(word: &str, stem: &str) -> bool {
    let stem_len = stem.chars().count();
    let budget = typo_budget(stem_len + 1).min(1);
    if budget == 0 {
        return false;
    }
    // Compare the stem with the word's prefixes of about the same length: the typo may have
    // added or removed a letter.
    (stem_len.saturating_sub(1)..=stem_len + 1).any(|n| {
        let prefix: String = word.chars().take(n).collect();
        prefix.chars().count() == n && within_edits(&prefix, stem, budget)
    })
}

/// How many query words starting at `at` a concept consumes, if it matches there, and
/// whether it took a typo allowance to match.
fn matches(concept: &Concept, words: &[String], at: usize, fuzzy: bool) -> usize {
    let mut best = 0;
    for stems in &concept.russian {
        let fits = stems.len() <= words.len() - at
            && stems
                .iter()
                .zip(&words[at..])
                .all(|(stem, word)| word.starts_with(stem.as_str()) || (fuzzy && stems.len() == 1 && fuzzy_stem_match(word, stem)));
        if fits {
            best = best.max(stems.len());
        }
    }
    let word = &words[at];
    let english = |t: &String| {
        !t.contains(' ') && (t == word || (fuzzy && within_edits(t, word, typo_budget(word.chars().count().min(t.chars().count())))))
    };
    if best == 0 && concept.english.iter().any(english) {
        best = 1;
    }
    best
}

/// Splits a free-text query into groups: a document matches the query when it contains
/// at least one term of every group. Known words (either language) become their
/// concept's English terms, the preferred one first (the English word as typed, else the
/// concept's first term); other words stay as they are.
pub fn expand(query: &str) -> Vec<Vec<String>> {
    let words: Vec<String> = query.split_whitespace().map(clean).filter(|w| !w.is_empty()).collect();
    let concepts = concepts();
    let mut groups = Vec::new();
    let mut at = 0;
    while at < words.len() {
        // An exact match wins; only a word no concept knows is tried as a typo.
        let best_with =
            |fuzzy: bool| concepts.iter().map(|c| (matches(c, &words, at, fuzzy), c)).filter(|(n, _)| *n > 0).max_by_key(|(n, _)| *n);
        let best = best_with(false).or_else(|| best_with(true));
        match best {
            Some((n, concept)) => {
                // The word as typed comes first: it is what the user meant most exactly,
                // and the search weighs the first term of a group above its synonyms.
                let mut group = concept.english.clone();
                if n == 1 && words[at].is_ascii() {
                    group.retain(|t| *t != words[at]);
                    group.insert(0, words[at].clone());
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

/// The modality code a query term names, so that "КТ" or "computed tomography" in free
/// text can favour datasets whose modality is CT even when their text never says so.
pub fn modality_code(term: &str) -> Option<&'static str> {
    const CODES: &[(&str, &[&str])] = &[
        ("CT", &["ct", "computed tomography", "tomography"]),
        ("MR", &["mri", "mr", "magnetic resonance"]),
        ("XR", &["x-ray", "xray", "radiograph", "radiography", "cxr"]),
        ("US", &["ultrasound", "sonography", "echocardiography"]),
        ("PT", &["pet", "positron emission"]),
        ("MG", &["mammography", "mammogram"]),
        ("OCT", &["oct", "optical coherence tomography"]),
        ("CBCT", &["cbct", "cone-beam"]),
        ("PATH", &["histopathology", "pathology", "histology", "whole-slide"]),
        ("FUNDUS", &["fundus", "retinal photograph"]),
        ("ENDO", &["endoscopy", "colonoscopy", "gastroscopy"]),
        ("DERM", &["dermoscopy", "dermatoscopy"]),
    ];
    let term = term.to_lowercase();
    CODES.iter().find(|(_, terms)| terms.contains(&term.as_str())).map(|(code, _)| *code)
}

/// The catalog area a query term names (see [`modality_code`]).
pub fn area_code(term: &str) -> Option<&'static str> {
    const SYNONYMS: &[(&str, &[&str])] = &[
        ("chest", &["thorax", "thoracic"]),
        ("lung", &["pulmonary"]),
        ("brain", &["head", "neuro"]),
        ("heart", &["cardiac", "cardio"]),
        ("abdomen", &["abdominal"]),
        ("liver", &["hepatic"]),
        ("kidney", &["renal"]),
        ("spine", &["spinal", "vertebra"]),
        ("teeth", &["dental", "tooth", "oral"]),
        ("eye", &["retina", "retinal", "ophthalmic"]),
    ];
    let term = term.to_lowercase();
    if let Some(area) = crate::catalog::AREAS.iter().find(|a| **a == term && **a != "other") {
        return Some(area);
    }
    SYNONYMS.iter().find(|(_, terms)| terms.contains(&term.as_str())).map(|(area, _)| *area)
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
    fn typos_in_longer_words_still_find_their_concept() {
        assert!(has(&expand("пневмания"), "pneumonia"));
        assert!(has(&expand("pnemonia"), "pneumonia"));
        assert!(has(&expand("mamography"), "mammography"));
        assert!(has(&expand("сегментацыя печени"), "segmentation"));
    }

    #[test]
    fn short_words_get_no_typo_allowance() {
        // "кт" is CT; "ко" must not become CT, nor "mrx" MRI.
        assert_eq!(expand("ко"), [["ко"]]);
        assert_eq!(expand("mrx"), [["mrx"]]);
    }

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("pneumonia", "pnuemonia"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn soft_filter_terms_map_to_catalog_codes() {
        assert_eq!(modality_code("ct"), Some("CT"));
        assert_eq!(modality_code("x-ray"), Some("XR"));
        assert_eq!(modality_code("magnetic resonance"), Some("MR"));
        assert_eq!(modality_code("pneumonia"), None);
        assert_eq!(area_code("thorax"), Some("chest"));
        assert_eq!(area_code("liver"), Some("liver"));
        assert_eq!(area_code("segmentation"), None);
    }

    #[test]
    fn the_vocabulary_file_parses_into_concepts() {
        let c = concepts();
        assert!(c.len() >= 40);
        assert!(c.iter().all(|c| !c.english.is_empty() && !c.russian.is_empty()));
    }
}
