//! Exact tiered ranking that scores only the datasets that can reach the page.
//!
//! The ranking is "more concepts matched first, then BM25". Scoring every match through
//! nested boolean queries costs in proportion to the matches (a common concept under a
//! filter: thousands of datasets, 10+ ms). Instead, a first pass walks each clause's
//! posting list into bitsets (no BM25, no heap): the filters narrow an allowed set, each
//! concept adds one to the count of the datasets it matches. The counts say which tiers
//! the page reaches; only the datasets in those tiers are scored, by seeking each
//! clause's scorer to them. The scores are tantivy's own (the same weights and boosts a
//! `BooleanQuery` of the clauses would sum), so nothing about the order is approximate.

use tantivy::fastfield::AliveBitSet;
use tantivy::query::{EnableScoring, Query, Weight};
use tantivy::{DocId, Score, Searcher, SegmentReader, TERMINATED};

use super::IndexError;

/// A set of documents of one segment.
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn empty(max_doc: DocId) -> Self {
        Bits(vec![0; (max_doc as usize).div_ceil(64)])
    }

    fn alive(max_doc: DocId, alive: Option<&AliveBitSet>) -> Self {
        let mut bits = Bits(vec![u64::MAX; (max_doc as usize).div_ceil(64)]);
        let tail = max_doc % 64;
        if let (Some(last), true) = (bits.0.last_mut(), tail != 0) {
            *last = (1u64 << tail) - 1;
        }
        if let Some(alive) = alive {
            for doc in 0..max_doc {
                if !alive.is_alive(doc) {
                    bits.remove(doc);
                }
            }
        }
        bits
    }

    fn insert(&mut self, doc: DocId) {
        if let Some(word) = self.0.get_mut(doc as usize / 64) {
            *word |= 1 << (doc % 64);
        }
    }

    fn remove(&mut self, doc: DocId) {
        if let Some(word) = self.0.get_mut(doc as usize / 64) {
            *word &= !(1 << (doc % 64));
        }
    }

    fn contains(&self, doc: DocId) -> bool {
        self.0.get(doc as usize / 64).is_some_and(|word| word & (1 << (doc % 64)) != 0)
    }

    fn intersect(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    fn union(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    fn clear(&mut self) {
        self.0.fill(0);
    }

    fn iter(&self) -> impl Iterator<Item = DocId> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    i as DocId * 64 + bit
                })
            })
        })
    }
}

/// One way a concept (or a filter value) matches, ready to run.
pub(super) struct Clause {
    /// Finds the matching documents without scoring them.
    matching: Box<dyn Weight>,
    /// Scores them (BM25 with the clause's boost).
    scoring: Box<dyn Weight>,
    /// A clause whose every match scores the same (a fuzzy match): scored from the
    /// first pass's bitset instead of running the automaton again.
    constant: Option<Score>,
}

impl Clause {
    pub fn new(searcher: &Searcher, query: &dyn Query, constant: Option<Score>) -> Result<Self, IndexError> {
        Ok(Self {
            matching: query.weight(EnableScoring::disabled_from_searcher(searcher))?,
            scoring: query.weight(EnableScoring::enabled_from_searcher(searcher))?,
            constant,
        })
    }

    fn collect(&self, reader: &SegmentReader, into: &mut Bits) -> Result<(), IndexError> {
        self.matching.for_each_no_score(reader, &mut |docs| {
            for doc in docs {
                into.insert(*doc);
            }
        })?;
        Ok(())
    }
}

/// A concept of the query: any of its clauses.
pub(super) struct Concept {
    pub clauses: Vec<Clause>,
    /// Every match must have it (the list's `q`), rather than only rank higher.
    pub required: bool,
}

/// What to find: datasets passing every filter (any value of each) that match the
/// required concepts, or at least one concept when none is required.
pub(super) struct Plan {
    pub concepts: Vec<Concept>,
    /// Per filter dimension, its values: a dataset must match one value of each.
    pub filters: Vec<Vec<Clause>>,
    pub page_end: usize,
}

/// A ranked candidate: how many concepts it matches, its BM25 score, its id.
pub(super) struct Candidate {
    pub matched: usize,
    pub score: Score,
    pub id: i64,
}

struct SegmentPass {
    allowed: Bits,
    /// Matching at least one concept.
    any: Bits,
    counts: Vec<u8>,
    /// The bitset of each constant-score clause, by (concept, clause).
    constant_bits: Vec<((usize, usize), Bits)>,
}

impl Plan {
    /// Every dataset on the page, and every other one of the lowest tier the page
    /// reaches (the tier's best score places each hit within its tier).
    pub fn candidates(&self, searcher: &Searcher) -> Result<Vec<Candidate>, IndexError> {
        let needs_one = !self.concepts.is_empty() && self.concepts.iter().all(|c| !c.required);
        let mut passes = Vec::with_capacity(searcher.segment_readers().len());
        let mut per_tier = vec![0usize; self.concepts.len() + 1];
        for reader in searcher.segment_readers() {
            let mut pass = self.first_pass(reader)?;
            // Whatever the tier cut below, a dataset matching no concept of a ranked
            // query is not a match at all.
            if needs_one {
                pass.allowed.intersect(&pass.any);
            }
            for doc in pass.allowed.iter() {
                per_tier[pass.counts[doc as usize] as usize] += 1;
            }
            passes.push(pass);
        }
        // The lowest tier the page reaches: the tiers above it together hold fewer
        // datasets than the page, so all of them are on it.
        let mut lowest = 0;
        let mut above = 0;
        for tier in (0..per_tier.len()).rev() {
            above += per_tier[tier];
            if above >= self.page_end {
                lowest = tier;
                break;
            }
        }
        let mut out = Vec::new();
        for (pass, reader) in passes.iter().zip(searcher.segment_readers()) {
            let docs: Vec<DocId> = pass.allowed.iter().filter(|d| pass.counts[*d as usize] as usize >= lowest).collect();
            let scores = if self.concepts.is_empty() { vec![0.0; docs.len()] } else { self.score(reader, pass, &docs)? };
            let ids = reader.fast_fields().i64("id")?;
            for (doc, score) in docs.into_iter().zip(scores) {
                let id = ids
                    .first(doc)
                    .ok_or_else(|| IndexError::Tantivy(tantivy::TantivyError::InternalError("document without id".into())))?;
                out.push(Candidate { matched: pass.counts[doc as usize] as usize, score, id });
            }
        }
        Ok(out)
    }

    fn first_pass(&self, reader: &SegmentReader) -> Result<SegmentPass, IndexError> {
        let max_doc = reader.max_doc();
        let mut allowed = Bits::alive(max_doc, reader.alive_bitset());
        let mut scratch = Bits::empty(max_doc);
        for values in &self.filters {
            scratch.clear();
            for value in values {
                value.collect(reader, &mut scratch)?;
            }
            allowed.intersect(&scratch);
        }
        let mut counts = vec![0u8; max_doc as usize];
        let mut any = Bits::empty(max_doc);
        let mut constant_bits = Vec::new();
        for (c, concept) in self.concepts.iter().enumerate() {
            scratch.clear();
            for (k, clause) in concept.clauses.iter().enumerate() {
                if clause.constant.is_some() {
                    let mut own = Bits::empty(max_doc);
                    clause.collect(reader, &mut own)?;
                    scratch.union(&own);
                    constant_bits.push(((c, k), own));
                } else {
                    clause.collect(reader, &mut scratch)?;
                }
            }
            if concept.required {
                allowed.intersect(&scratch);
            }
            any.union(&scratch);
            for doc in scratch.iter() {
                if let Some(n) = counts.get_mut(doc as usize) {
                    *n = n.saturating_add(1);
                }
            }
        }
        Ok(SegmentPass { allowed, any, counts, constant_bits })
    }

    /// The BM25 score of each of `docs` (ascending): the sum over the clauses it
    /// matches, filters included, as the equivalent boolean query would score it.
    fn score(&self, reader: &SegmentReader, pass: &SegmentPass, docs: &[DocId]) -> Result<Vec<Score>, IndexError> {
        let mut scores = vec![0.0; docs.len()];
        let mut add = |weight: &dyn Weight| -> Result<(), IndexError> {
            let mut scorer = weight.scorer(reader, 1.0)?;
            for (i, &doc) in docs.iter().enumerate() {
                let at = if scorer.doc() < doc { scorer.seek(doc) } else { scorer.doc() };
                if at == TERMINATED {
                    break;
                }
                if at == doc {
                    scores[i] += scorer.score();
                }
            }
            Ok(())
        };
        for clause in self.concepts.iter().flat_map(|c| &c.clauses) {
            if clause.constant.is_none() {
                add(clause.scoring.as_ref())?;
            }
        }
        for values in &self.filters {
            for value in values {
                add(value.scoring.as_ref())?;
            }
        }
        for ((c, k), bits) in &pass.constant_bits {
            let Some(score) = self.concepts.get(*c).and_then(|concept| concept.clauses.get(*k)).and_then(|clause| clause.constant) else {
                continue;
            };
            for (i, doc) in docs.iter().enumerate() {
                if bits.contains(*doc) {
                    scores[i] += score;
                }
            }
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_hold_exactly_what_was_inserted() {
        let mut bits = Bits::empty(130);
        for doc in [0, 63, 64, 129] {
            bits.insert(doc);
        }
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![0, 63, 64, 129]);
        bits.remove(63);
        assert!(!bits.contains(63) && bits.contains(64));
        let all = Bits::alive(130, None);
        assert_eq!(all.iter().count(), 130);
        let mut both = all.clone();
        both.intersect(&bits);
        assert_eq!(both.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
    }
}
