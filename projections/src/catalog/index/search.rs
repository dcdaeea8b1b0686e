//! Ranked, bilingual, typo-tolerant search over the catalog index.
//!
//! A query becomes concept groups (`vocabulary::expand`: Russian or English words → the
//! English terms the catalog is written in). Each group matches a dataset through its
//! English terms (stemmed, title weighted double), the original Russian word (Russian
//! stemming) for words the vocabulary does not know, a fuzzy match for words the index
//! has never seen (typos), and the modality/area fields when the group names a modality
//! or an area (a soft filter: it raises those datasets without excluding the others).
//!
//! Ranking: datasets matching more concept groups come first (one about "pneumonia"
//! *and* "chest" *and* "CT" before one about CT alone), then by BM25, then by id. The
//! order is exact over every match; `tiers` finds it while scoring only the datasets of
//! the tiers the page reaches.

use std::collections::BTreeMap;

use medledger_domain::catalog::vocabulary::{self, area_code, modality_code, typo_budget};
use serde::Serialize;
use tantivy::collector::{Count, FacetCollector};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::Value as _;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::Language;
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use super::tiers::{self, Candidate, Concept, Plan};
use super::{CatalogIndex, IndexError, analysis};
use crate::catalog::queries::DatasetRow;

/// Hard filters: a dataset must match one value of every non-empty list.
#[derive(Debug, Clone, Default)]
pub struct SearchFilters {
    pub modality: Vec<String>,
    pub area: Vec<String>,
    pub task_types: Vec<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Every concept of the query must match (the list endpoint's `q`: a filter).
    AllConcepts,
    /// Any concept may match; more matched concepts rank higher (the search endpoint).
    Ranked,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub text: String,
    pub filters: SearchFilters,
    pub semantics: Semantics,
    pub limit: usize,
    pub offset: usize,
    pub facets: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: i64,
    pub relevance: f32,
    /// The dataset as the index holds it (the version that was ranked).
    pub dataset: DatasetRow,
}

/// Counts per value, per dimension (modality, area, task_type, tags).
pub type Facets = BTreeMap<&'static str, BTreeMap<String, u64>>;

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHits {
    /// The requested page, best first.
    pub hits: Vec<SearchHit>,
    /// How many datasets match in all (every page together).
    pub total: usize,
    /// Only when asked for: counting every match costs time.
    pub facets: Option<Faceted>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Faceted {
    /// How many datasets match in all.
    pub total: usize,
    pub counts: Facets,
}

/// How many concept groups of a query are used; the rest of a very long query is ignored.
pub const MAX_GROUPS: usize = 20;
/// How much a concept's other wordings count relative to the preferred one.
const SYNONYM_WEIGHT: f32 = 0.6;
const FACET_DIMENSIONS: [&str; 4] = ["modality", "area", "task_type", "tags"];
/// Tags are open-ended: only the most frequent are counted.
const MAX_TAG_FACETS: usize = 30;

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::WithFreqs))
}

fn is_cyrillic(word: &str) -> bool {
    word.chars().any(|c| matches!(c, 'а'..='я' | 'ё' | 'А'..='Я' | 'Ё'))
}

/// One way a concept can match, before it becomes a tantivy query: comparable, so that
/// wordings sharing a stem ("lesion", "lesions") count once, at their highest weight.
#[derive(Debug, Clone, PartialEq)]
enum Clause {
    Term { field: Field, text: String },
    Phrase { field: Field, terms: Vec<String> },
    Fuzzy { field: Field, text: String, distance: u8 },
}

impl Clause {
    fn query(&self, boost: f32) -> Box<dyn Query> {
        let inner: Box<dyn Query> = match self {
            Clause::Term { field, text } => term_query(*field, text),
            Clause::Phrase { field, terms } => Box::new(PhraseQuery::new(terms.iter().map(|t| Term::from_field_text(*field, t)).collect())),
            Clause::Fuzzy { field, text, distance } => Box::new(FuzzyTermQuery::new(Term::from_field_text(*field, text), *distance, true)),
        };
        if boost == 1.0 { inner } else { Box::new(BoostQuery::new(inner, boost)) }
    }

    /// How the clause runs within its concept: a phrase one of whose words is itself a
    /// clause of the concept in the same field matches nothing that word does not.
    fn kind(&self, boost: f32, concept: &Weighted) -> tiers::Kind {
        match self {
            Clause::Term { .. } => tiers::Kind::Term,
            Clause::Phrase { field, terms } => {
                let subsumed =
                    concept.0.iter().any(|(c, _)| matches!(c, Clause::Term { field: f, text } if f == field && terms.contains(text)));
                tiers::Kind::Phrase { matches: !subsumed }
            }
            Clause::Fuzzy { .. } => tiers::Kind::Constant(boost),
        }
    }
}

/// The clauses of one concept with their weights, each clause once.
#[derive(Default)]
struct Weighted(Vec<(Clause, f32)>);

impl Weighted {
    fn add(&mut self, clause: Clause, weight: f32) {
        match self.0.iter_mut().find(|(c, _)| *c == clause) {
            Some((_, w)) => *w = w.max(weight),
            None => self.0.push((clause, weight)),
        }
    }
}

impl CatalogIndex {
    /// Clauses matching one alternative wording of a concept in a pair of (title, body)
    /// fields analysed for `language`. Only a wording the user typed may be a typo: the
    /// vocabulary's synonyms are spelt right, and one the catalog never uses matches nothing.
    #[expect(clippy::too_many_arguments, reason = "one call site; the arguments are the clause's parts, not a bundle")]
    fn text_clauses(
        &self,
        searcher: &Searcher,
        language: Language,
        (title, body): (Field, Field),
        alt: &str,
        typed: bool,
        weight: f32,
        out: &mut Weighted,
    ) {
        let terms = analysis::terms(language, alt);
        match terms.as_slice() {
            [] => {}
            [one] => {
                out.add(Clause::Term { field: title, text: one.clone() }, 2.0 * weight);
                out.add(Clause::Term { field: body, text: one.clone() }, weight);
                // A word the index has never seen is probably misspelt: let it match
                // indexed words within its typo budget, at a discount.
                let distance = typo_budget(alt.chars().count()) as u8;
                let unseen =
                    || [title, body].iter().all(|f| searcher.doc_freq(&Term::from_field_text(*f, one)).map(|n| n == 0).unwrap_or(true));
                // Walking the term dictionary with a Levenshtein automaton is the most
                // expensive step of a query; pointless when no indexed word is written
                // in the word's alphabet (a Russian word against an English catalog).
                if typed && distance > 0 && unseen() && script_present(searcher, [title, body], one) {
                    out.add(Clause::Fuzzy { field: title, text: one.clone(), distance }, weight);
                    out.add(Clause::Fuzzy { field: body, text: one.clone(), distance }, 0.5 * weight);
                }
            }
            many => {
                out.add(Clause::Phrase { field: title, terms: many.to_vec() }, 2.0 * weight);
                out.add(Clause::Phrase { field: body, terms: many.to_vec() }, weight);
            }
        }
    }

    /// One concept: any of its wordings, in either language's fields, or its modality
    /// or area as a soft filter. `typed`: the first wording is the user's own word (not
    /// one the vocabulary put in its place).
    fn group_clauses(&self, searcher: &Searcher, group: &[String], typed: bool) -> Weighted {
        let f = self.fields;
        let mut clauses = Weighted::default();
        for (i, alt) in group.iter().enumerate() {
            // The preferred wording counts fully, synonyms less: "echocardiography" should
            // favour echo datasets over every dataset that merely says "ultrasound".
            let weight = if i == 0 { 1.0 } else { SYNONYM_WEIGHT };
            if is_cyrillic(alt) {
                self.text_clauses(searcher, Language::Russian, (f.title_ru, f.text_ru), alt, typed && i == 0, weight, &mut clauses);
            } else {
                self.text_clauses(searcher, Language::English, (f.title_en, f.text_en), alt, typed && i == 0, weight, &mut clauses);
            }
            if let Some(code) = modality_code(alt) {
                clauses.add(Clause::Term { field: f.modality, text: code.to_string() }, 1.5 * weight);
            }
            if let Some(area) = area_code(alt) {
                clauses.add(Clause::Term { field: f.area, text: area.to_string() }, 1.5 * weight);
            }
        }
        clauses
    }

    /// Per filter dimension with values: (field, value) for each value.
    fn filter_terms(&self, filters: &SearchFilters) -> Vec<(Field, Vec<String>)> {
        let f = self.fields;
        [(f.modality, &filters.modality), (f.area, &filters.area), (f.task, &filters.task_types), (f.tag, &filters.tags)]
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(field, values)| (field, values.clone()))
            .collect()
    }

    pub fn search(&self, request: &SearchRequest) -> Result<SearchHits, IndexError> {
        let searcher = self.reader.searcher();
        let mut concepts: Vec<(Weighted, bool)> = Vec::new();
        let text = request.text.to_lowercase();
        for group in vocabulary::expand(&request.text).iter().take(MAX_GROUPS) {
            let typed = group.first().is_some_and(|first| text.contains(first.as_str()));
            let clauses = self.group_clauses(&searcher, group, typed);
            if clauses.0.is_empty() {
                continue;
            }
            // The catalog is written in English: a Russian word the vocabulary does not
            // know can only match the rare Russian text, so even a filter-like query
            // ("МРТ коленного сустава") must not require it.
            let unknown_russian = matches!(group.as_slice(), [word] if is_cyrillic(word));
            let required = request.semantics == Semantics::AllConcepts && !unknown_russian;
            concepts.push((clauses, required));
        }
        let filters = self.filter_terms(&request.filters);
        let plan = Plan {
            concepts: concepts
                .iter()
                .map(|(clauses, required)| {
                    let clauses = clauses
                        .0
                        .iter()
                        .map(|(c, w)| tiers::Clause::new(&searcher, c.query(*w).as_ref(), c.kind(*w, clauses)))
                        .collect::<Result<_, _>>()?;
                    Ok(Concept { clauses, required: *required })
                })
                .collect::<Result<_, IndexError>>()?,
            filters: filters
                .iter()
                .map(|(field, values)| {
                    values.iter().map(|v| tiers::Clause::new(&searcher, term_query(*field, v).as_ref(), tiers::Kind::Term)).collect()
                })
                .collect::<Result<_, _>>()?,
            page_end: request.offset.saturating_add(request.limit),
        };
        let (candidates, total) = plan.candidates(&searcher)?;
        let hits = rank(candidates, concepts.len(), request)
            .into_iter()
            .map(|(relevance, c)| Ok(SearchHit { id: c.id, relevance, dataset: self.stored_row(&searcher, c.address)? }))
            .collect::<Result<_, IndexError>>()?;
        let facets = if request.facets { Some(self.facets(&searcher, &concepts, &filters)?) } else { None };
        Ok(SearchHits { hits, total, facets })
    }

    fn stored_row(&self, searcher: &Searcher, address: DocAddress) -> Result<DatasetRow, IndexError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let json = doc.get_first(self.fields.row).and_then(|v| v.as_str()).unwrap_or_default();
        serde_json::from_str(json).map_err(|e| IndexError::Tantivy(tantivy::TantivyError::InternalError(format!("stored dataset: {e}"))))
    }

    /// How many datasets match in all, and per facet value. A separate pass with
    /// tantivy's collectors: only asked for by clients that show facets.
    fn facets(&self, searcher: &Searcher, concepts: &[(Weighted, bool)], filters: &[(Field, Vec<String>)]) -> Result<Faceted, IndexError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = filters
            .iter()
            .map(|(field, values)| {
                let any: Box<dyn Query> =
                    Box::new(BooleanQuery::new(values.iter().map(|v| (Occur::Should, term_query(*field, v))).collect()));
                (Occur::Must, any)
            })
            .collect();
        if concepts.is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        } else {
            let text = concepts.iter().map(|(weighted, required)| {
                let group: Box<dyn Query> =
                    Box::new(BooleanQuery::new(weighted.0.iter().map(|(c, w)| (Occur::Should, c.query(*w))).collect()));
                (if *required { Occur::Must } else { Occur::Should }, group)
            });
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(text.collect()))));
        }
        let mut facets = FacetCollector::for_field("facets");
        for d in FACET_DIMENSIONS {
            facets.add_facet(format!("/{d}").as_str());
        }
        let (total, counts) = searcher.search(&BooleanQuery::new(clauses), &(Count, facets))?;
        Ok(Faceted { total, counts: facet_map(&counts) })
    }
}

/// Orders candidates by how many concepts they match, then by BM25, then by id. The
/// relevance score keeps that order in [0, 1]: a dataset matching m of n concepts scores
/// between (m − 1)/n and m/n, placed by its BM25 relative to the best of its tier.
fn rank(candidates: Vec<Candidate>, concepts: usize, request: &SearchRequest) -> Vec<(f32, Candidate)> {
    let tier = |c: &Candidate| c.matched.max(1);
    let mut best_of_tier = vec![0.0f32; concepts + 2];
    for c in &candidates {
        if let Some(best) = best_of_tier.get_mut(tier(c)) {
            *best = best.max(c.score);
        }
    }
    let mut ranked: Vec<(f32, Candidate)> = candidates
        .into_iter()
        .map(|c| {
            let relevance = if concepts == 0 {
                1.0
            } else {
                let best = best_of_tier.get(tier(&c)).copied().filter(|b| *b > 0.0).unwrap_or(1.0);
                ((tier(&c) as f32 - 1.0 + (c.score / best).clamp(0.0, 1.0)) / concepts as f32).clamp(0.0, 1.0)
            };
            ((relevance * 10_000.0).round() / 10_000.0, c)
        })
        .collect();
    let order = |a: &(f32, Candidate), b: &(f32, Candidate)| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id));
    // The lowest tier may hold thousands of candidates: order only the page's worth.
    let page_end = request.offset.saturating_add(request.limit);
    if page_end == 0 {
        return Vec::new();
    }
    if ranked.len() > page_end {
        ranked.select_nth_unstable_by(page_end - 1, order);
        ranked.truncate(page_end);
    }
    ranked.sort_by(order);
    ranked.into_iter().skip(request.offset).take(request.limit).collect()
}

/// Whether any segment holds, in one of `fields`, a term in the same alphabet (Latin
/// or Cyrillic) as `word`.
fn script_present(searcher: &Searcher, fields: [Field; 2], word: &str) -> bool {
    let (from, to) = if is_cyrillic(word) { ("\u{400}", "\u{530}") } else { ("", "\u{250}") };
    searcher.segment_readers().iter().any(|segment| {
        fields.iter().any(|field| {
            let Ok(inverted) = segment.inverted_index(*field) else { return true };
            inverted.terms().range().ge(from).lt(to).into_stream().map(|mut stream| stream.advance()).unwrap_or(true)
        })
    })
}

fn facet_map(counts: &tantivy::collector::FacetCounts) -> Facets {
    let mut out = Facets::new();
    for d in FACET_DIMENSIONS {
        let root = format!("/{d}");
        let entries: Vec<(&tantivy::schema::Facet, u64)> =
            if d == "tags" { counts.top_k(root.as_str(), MAX_TAG_FACETS) } else { counts.get(root.as_str()).collect() };
        let values = entries.into_iter().filter_map(|(facet, n)| facet.to_path().last().map(|v| (v.to_string(), n))).collect();
        out.insert(d, values);
    }
    out
}
