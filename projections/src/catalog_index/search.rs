//! Ranked, bilingual, typo-tolerant search over the catalog index.
//!
//! A query becomes concept groups (`vocabulary::expand`: Russian or English words → the
//! English terms the catalog is written in). Each group matches a dataset through its
//! English terms (stemmed, title weighted double), the original Russian word (Russian
//! stemming) for words the vocabulary does not know, a fuzzy match for words the index
//! has never seen (typos), and the modality/area fields when the group names a modality
//! or an area (a soft filter: it raises those datasets without excluding the others).
//!
//! Ranking: BM25 picks candidates; they are re-ranked by the share of groups they match
//! (a dataset about "pneumonia" *and* "chest" *and* "CT" before one about CT alone), then
//! by BM25 relative to the best candidate. That blend is the relevance score in [0, 1].

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

#[derive(Debug, Clone)]
pub struct SearchHits {
    /// How many datasets match in all.
    pub total: usize,
    /// The requested page, best first.
    pub hits: Vec<SearchHit>,
    pub facets: Option<Facets>,
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

fn boosted(q: Box<dyn Query>, boost: f32) -> Box<dyn Query> {
    Box::new(BoostQuery::new(q, boost))
}

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::WithFreqs))
}

fn any_of(field: Field, values: &[String]) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(values.iter().map(|v| (Occur::Should, term_query(field, v))).collect()))
}

impl CatalogIndex {
    /// Clauses matching one alternative wording of a concept in a pair of (title, body)
    /// fields analysed for `language`.
    fn text_clauses(&self, searcher: &Searcher, language: Language, title: Field, body: Field, alt: &str) -> Vec<Box<dyn Query>> {
        let terms = analysis::terms(language, alt);
        let mut out: Vec<Box<dyn Query>> = Vec::new();
        match terms.as_slice() {
            [] => {}
            [one] => {
                out.push(boosted(term_query(title, one), 2.0));
                out.push(term_query(body, one));
                // A word the index has never seen is probably misspelt: let it match
                // indexed words within its typo budget, at a discount.
                let budget = typo_budget(alt.chars().count()) as u8;
                let unseen = || {
                    [title, body].iter().all(|f| searcher.doc_freq(&Term::from_field_text(*f, one)).map(|n| n == 0).unwrap_or(true))
                };
                if budget > 0 && unseen() {
                    for (field, weight) in [(title, 1.0), (body, 0.5)] {
                        let fuzzy = FuzzyTermQuery::new(Term::from_field_text(field, one), budget, true);
                        out.push(boosted(Box::new(fuzzy), weight));
                    }
                }
            }
            many => {
                for (field, weight) in [(title, 2.0), (body, 1.0)] {
                    let phrase = PhraseQuery::new(many.iter().map(|t| Term::from_field_text(field, t)).collect());
                    out.push(boosted(Box::new(phrase), weight));
                }
            }
        }
        out
    }

    /// One concept: any of its wordings, in either language's fields, or its modality
    /// or area as a soft filter.
    fn group_query(&self, searcher: &Searcher, group: &[String]) -> Option<Box<dyn Query>> {
        let f = self.fields;
        let mut clauses: Vec<Box<dyn Query>> = Vec::new();
        for (i, alt) in group.iter().enumerate() {
            // The preferred wording counts fully, synonyms less: "echocardiography" should
            // favour echo datasets over every dataset that merely says "ultrasound".
            let weight = if i == 0 { 1.0 } else { SYNONYM_WEIGHT };
            let mut mine = if alt.chars().any(|c| matches!(c, 'а'..='я' | 'ё' | 'А'..='Я' | 'Ё')) {
                self.text_clauses(searcher, Language::Russian, f.title_ru, f.text_ru, alt)
            } else {
                self.text_clauses(searcher, Language::English, f.title_en, f.text_en, alt)
            };
            if let Some(code) = modality_code(alt) {
                mine.push(boosted(term_query(f.modality, code), 1.5));
            }
            if let Some(area) = area_code(alt) {
                mine.push(boosted(term_query(f.area, area), 1.5));
            }
            clauses.extend(mine.into_iter().map(|c| if i == 0 { c } else { boosted(c, weight) }));
        }
        clauses.dedup_by(|a, b| format!("{a:?}") == format!("{b:?}"));
        (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses.into_iter().map(|c| (Occur::Should, c)).collect())) as _)
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
        let groups: Vec<Box<dyn Query>> = vocabulary::expand(&request.text)
            .iter()
            .take(MAX_GROUPS)
            .filter_map(|g| self.group_query(&searcher, g))
            .collect();
        let occur = match request.semantics {
            Semantics::AllConcepts => Occur::Must,
            Semantics::Ranked => Occur::Should,
        };
        let mut clauses = self.filter_clauses(&request.filters);
        if groups.is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        } else {
            let text = BooleanQuery::new(groups.iter().map(|g| (occur, g.box_clone())).collect());
            clauses.push((Occur::Must, Box::new(text)));
        }
        let query = BooleanQuery::new(clauses);
        let page_end = request.offset.saturating_add(request.limit);
        let depth = page_end.max(RERANK_DEPTH);
        let (top, total, facets) = if request.facets {
            let mut facets = FacetCollector::for_field("facets");
            for d in FACET_DIMENSIONS {
                facets.add_facet(format!("/{d}").as_str());
            }
            let (top, total, counts) = searcher.search(&query, &(TopDocs::with_limit(depth).order_by_score(), Count, facets))?;
            (top, total, Some(facet_map(&counts)))
        } else {
            let (top, total) = searcher.search(&query, &(TopDocs::with_limit(depth).order_by_score(), Count))?;
            (top, total, None)
        };
        let coverage = self.coverage(&searcher, &groups, &top)?;
        let best = top.first().map(|(s, _)| *s).filter(|s| *s > 0.0).unwrap_or(1.0);
        let mut ranked = Vec::with_capacity(top.len());
        for ((score, address), covered) in top.iter().zip(coverage) {
            let id = self.id_of(&searcher, *address)?;
            let relevance = if groups.is_empty() { 1.0 } else { 0.7 * covered + 0.3 * (score / best).clamp(0.0, 1.0) };
            ranked.push(SearchHit { id, relevance: (relevance * 10_000.0).round() / 10_000.0 });
        }
        ranked.sort_by(|a, b| b.relevance.total_cmp(&a.relevance).then(a.id.cmp(&b.id)));
        let hits = ranked.into_iter().skip(request.offset).take(request.limit).collect();
        Ok(SearchHits { total, hits, facets })
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

    fn id_of(&self, searcher: &Searcher, address: DocAddress) -> Result<i64, IndexError> {
        let column = searcher.segment_reader(address.segment_ord).fast_fields().i64("id")?;
        column.first(address.doc_id).ok_or_else(|| IndexError::Tantivy(tantivy::TantivyError::InternalError("document without id".into())))
    }
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
