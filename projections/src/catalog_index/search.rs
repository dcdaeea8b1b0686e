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
//! *and* "chest" *and* "CT" before one about CT alone), then by BM25. When the datasets
//! matching every group fill the page they are found by an intersection; otherwise BM25
//! picks candidates from every partial match and they are sorted by that tier order.

use std::collections::BTreeMap;

use medledger_domain::vocabulary::{self, area_code, modality_code, typo_budget};
use serde::Serialize;
use tantivy::collector::{Count, FacetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, EnableScoring, FuzzyTermQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::Language;
use tantivy::{DocAddress, DocSet, Searcher, Term};

use super::{CatalogIndex, IndexError, analysis};

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

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: i64,
    pub relevance: f32,
}

/// Counts per value, per dimension (modality, area, task_type, tags).
pub type Facets = BTreeMap<&'static str, BTreeMap<String, u64>>;

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHits {
    /// The requested page, best first.
    pub hits: Vec<SearchHit>,
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
/// Candidates re-ranked beyond the requested page.
const RERANK_DEPTH: usize = 100;
const FACET_DIMENSIONS: [&str; 4] = ["modality", "area", "task_type", "tags"];
/// Tags are open-ended: only the most frequent are counted.
const MAX_TAG_FACETS: usize = 30;

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::WithFreqs))
}

fn any_of(field: Field, values: &[String]) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(values.iter().map(|v| (Occur::Should, term_query(field, v))).collect()))
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
            Clause::Phrase { field, terms } => {
                Box::new(PhraseQuery::new(terms.iter().map(|t| Term::from_field_text(*field, t)).collect()))
            }
            Clause::Fuzzy { field, text, distance } => {
                Box::new(FuzzyTermQuery::new(Term::from_field_text(*field, text), *distance, true))
            }
        };
        if boost == 1.0 { inner } else { Box::new(BoostQuery::new(inner, boost)) }
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
    /// fields analysed for `language`.
    fn text_clauses(&self, searcher: &Searcher, language: Language, title: Field, body: Field, alt: &str, weight: f32, out: &mut Weighted) {
        let terms = analysis::terms(language, alt);
        match terms.as_slice() {
            [] => {}
            [one] => {
                out.add(Clause::Term { field: title, text: one.clone() }, 2.0 * weight);
                out.add(Clause::Term { field: body, text: one.clone() }, weight);
                // A word the index has never seen is probably misspelt: let it match
                // indexed words within its typo budget, at a discount.
                let distance = typo_budget(alt.chars().count()) as u8;
                let unseen = || {
                    [title, body].iter().all(|f| searcher.doc_freq(&Term::from_field_text(*f, one)).map(|n| n == 0).unwrap_or(true))
                };
                // Walking the term dictionary with a Levenshtein automaton is the most
                // expensive step of a query; pointless when no indexed word is written
                // in the word's alphabet (a Russian word against an English catalog).
                if distance > 0 && unseen() && script_present(searcher, [title, body], one) {
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
    /// or area as a soft filter.
    fn group_query(&self, searcher: &Searcher, group: &[String]) -> Option<Box<dyn Query>> {
        let f = self.fields;
        let mut clauses = Weighted::default();
        for (i, alt) in group.iter().enumerate() {
            // The preferred wording counts fully, synonyms less: "echocardiography" should
            // favour echo datasets over every dataset that merely says "ultrasound".
            let weight = if i == 0 { 1.0 } else { SYNONYM_WEIGHT };
            if is_cyrillic(alt) {
                self.text_clauses(searcher, Language::Russian, f.title_ru, f.text_ru, alt, weight, &mut clauses);
            } else {
                self.text_clauses(searcher, Language::English, f.title_en, f.text_en, alt, weight, &mut clauses);
            }
            if let Some(code) = modality_code(alt) {
                clauses.add(Clause::Term { field: f.modality, text: code.to_string() }, 1.5 * weight);
            }
            if let Some(area) = area_code(alt) {
                clauses.add(Clause::Term { field: f.area, text: area.to_string() }, 1.5 * weight);
            }
        }
        (!clauses.0.is_empty()).then(|| {
            Box::new(BooleanQuery::new(clauses.0.iter().map(|(c, w)| (Occur::Should, c.query(*w))).collect())) as _
        })
    }

    fn filter_clauses(&self, filters: &SearchFilters) -> Vec<(Occur, Box<dyn Query>)> {
        let f = self.fields;
        [(f.modality, &filters.modality), (f.area, &filters.area), (f.task, &filters.task_types), (f.tag, &filters.tags)]
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(field, values)| (Occur::Must, any_of(field, values)))
            .collect()
    }

    pub fn search(&self, request: &SearchRequest) -> Result<SearchHits, IndexError> {
        let searcher = self.reader.searcher();
        let mut groups: Vec<Box<dyn Query>> = Vec::new();
        let mut occurs: Vec<Occur> = Vec::new();
        for group in vocabulary::expand(&request.text).iter().take(MAX_GROUPS) {
            let Some(query) = self.group_query(&searcher, group) else { continue };
            // The catalog is written in English: a Russian word the vocabulary does not
            // know can only match the rare Russian text, so even a filter-like query
            // ("МРТ коленного сустава") must not require it.
            let unknown_russian = matches!(group.as_slice(), [word] if is_cyrillic(word));
            occurs.push(match request.semantics {
                Semantics::AllConcepts if !unknown_russian => Occur::Must,
                _ => Occur::Should,
            });
            groups.push(query);
        }
        let query_of = |occurs: &[Occur]| {
            let mut clauses = self.filter_clauses(&request.filters);
            if groups.is_empty() {
                clauses.push((Occur::Must, Box::new(AllQuery) as Box<dyn Query>));
            } else {
                let text = BooleanQuery::new(occurs.iter().zip(&groups).map(|(o, g)| (*o, g.box_clone())).collect());
                clauses.push((Occur::Must, Box::new(text)));
            }
            BooleanQuery::new(clauses)
        };
        let page_end = request.offset.saturating_add(request.limit);
        // Datasets matching every concept rank above all others. When there are enough
        // of them to fill the page, finding them is an intersection, which skips most of
        // the catalog; only otherwise does the search score every partial match.
        if request.semantics == Semantics::Ranked && !request.facets && groups.len() > 1 {
            let all = query_of(&vec![Occur::Must; groups.len()]);
            let top = searcher.search(&all, &TopDocs::with_limit(page_end).order_by_score())?;
            if top.len() >= page_end {
                let coverage = vec![1.0; top.len()];
                return Ok(SearchHits { hits: self.rank(&searcher, &top, &coverage, groups.len(), request)?, facets: None });
            }
        }
        let query = query_of(&occurs);
        let top_docs = TopDocs::with_limit(page_end.max(RERANK_DEPTH)).order_by_score();
        // Counting visits every match; without facets nobody asks for the total.
        let (top, facets) = if request.facets {
            let mut facets = FacetCollector::for_field("facets");
            for d in FACET_DIMENSIONS {
                facets.add_facet(format!("/{d}").as_str());
            }
            let (top, total, counts) = searcher.search(&query, &(top_docs, Count, facets))?;
            (top, Some(Faceted { total, counts: facet_map(&counts) }))
        } else {
            (searcher.search(&query, &top_docs)?, None)
        };
        let coverage = self.coverage(&searcher, &groups, &top)?;
        Ok(SearchHits { hits: self.rank(&searcher, &top, &coverage, groups.len(), request)?, facets })
    }

    /// Orders candidates by how many concepts they match, then by BM25. The relevance
    /// score keeps that order in [0, 1]: a dataset matching m of n concepts scores
    /// between (m − 1)/n and m/n, placed by its BM25 relative to the best of its tier.
    fn rank(
        &self,
        searcher: &Searcher,
        top: &[(f32, DocAddress)],
        coverage: &[f32],
        groups: usize,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let matched = |covered: f32| (covered * groups as f32).round().max(1.0);
        let mut best_of_tier: BTreeMap<u32, f32> = BTreeMap::new();
        for ((score, _), covered) in top.iter().zip(coverage) {
            let best = best_of_tier.entry(matched(*covered) as u32).or_insert(0.0);
            *best = best.max(*score);
        }
        // Opening a fast-field column is not free: once per segment, not per hit.
        let mut ids = Vec::with_capacity(searcher.segment_readers().len());
        for segment in searcher.segment_readers() {
            ids.push(segment.fast_fields().i64("id")?);
        }
        let mut ranked = Vec::with_capacity(top.len());
        for ((score, address), covered) in top.iter().zip(coverage) {
            let id = ids
                .get(address.segment_ord as usize)
                .and_then(|column| column.first(address.doc_id))
                .ok_or_else(|| IndexError::Tantivy(tantivy::TantivyError::InternalError("document without id".into())))?;
            let relevance = if groups == 0 {
                1.0
            } else {
                let m = matched(*covered);
                let best = best_of_tier.get(&(m as u32)).copied().filter(|b| *b > 0.0).unwrap_or(1.0);
                ((m - 1.0 + (score / best).clamp(0.0, 1.0)) / groups as f32).clamp(0.0, 1.0)
            };
            ranked.push(SearchHit { id, relevance: (relevance * 10_000.0).round() / 10_000.0 });
        }
        ranked.sort_by(|a, b| b.relevance.total_cmp(&a.relevance).then(a.id.cmp(&b.id)));
        Ok(ranked.into_iter().skip(request.offset).take(request.limit).collect())
    }

    /// For each hit, the share of concept groups it matches.
    fn coverage(&self, searcher: &Searcher, groups: &[Box<dyn Query>], top: &[(f32, DocAddress)]) -> Result<Vec<f32>, IndexError> {
        let mut matched = vec![0usize; top.len()];
        if groups.is_empty() {
            return Ok(vec![1.0; top.len()]);
        }
        // Visit hits segment by segment in doc order so each group's scorer only moves forward.
        let mut order: Vec<usize> = (0..top.len()).collect();
        order.sort_by_key(|i| (top[*i].1.segment_ord, top[*i].1.doc_id));
        for group in groups {
            let weight = group.weight(EnableScoring::disabled_from_searcher(searcher))?;
            let mut current: Option<(u32, Box<dyn tantivy::query::Scorer>)> = None;
            for &i in &order {
                let address = top[i].1;
                if current.as_ref().map(|(s, _)| *s) != Some(address.segment_ord) {
                    let reader = searcher.segment_reader(address.segment_ord);
                    current = Some((address.segment_ord, weight.scorer(reader, 1.0)?));
                }
                if let Some((_, scorer)) = current.as_mut() {
                    let at = if scorer.doc() < address.doc_id { scorer.seek(address.doc_id) } else { scorer.doc() };
                    if at == address.doc_id {
                        matched[i] += 1;
                    }
                }
            }
        }
        Ok(matched.into_iter().map(|m| m as f32 / groups.len() as f32).collect())
    }
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
        let values = entries
            .into_iter()
            .filter_map(|(facet, n)| facet.to_path().last().map(|v| (v.to_string(), n)))
            .collect();
        out.insert(d, values);
    }
    out
}
