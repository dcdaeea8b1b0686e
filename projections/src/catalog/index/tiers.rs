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
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SeekDangerResult, SegmentReader, TERMINATED};

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

    /// The first member at or after `from`.
    fn next_from(&self, from: DocId) -> Option<DocId> {
        let mut i = from as usize / 64;
        let mut word = *self.0.get(i)? & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                return Some(i as DocId * 64 + word.trailing_zeros());
            }
            i += 1;
            word = *self.0.get(i)?;
        }
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

/// How a clause finds and scores its matches.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    /// One term: its posting list is cheap to walk and to seek.
    Term,
    /// Several terms in a row: every candidate costs a look at positions, so it is
    /// looked at only where the filters allow, and scored by checking each candidate
    /// alone. `matches` is false when a term clause of the same concept and field
    /// already finds every document it could match (the phrase then only scores).
    Phrase { matches: bool },
    /// Every match scores the same (a fuzzy match: tantivy's automaton weight is a
    /// constant scorer); scored from the first pass instead of running it again.
    Constant(Score),
}

/// One way a concept (or a filter value) matches, ready to run.
pub(super) struct Clause {
    /// Finds the matching documents without scoring them.
    matching: Box<dyn Weight>,
    /// Scores them (BM25 with the clause's boost).
    scoring: Box<dyn Weight>,
    kind: Kind,
}

impl Clause {
    pub fn new(searcher: &Searcher, query: &dyn Query, kind: Kind) -> Result<Self, IndexError> {
        Ok(Self {
            matching: query.weight(EnableScoring::disabled_from_searcher(searcher))?,
            scoring: query.weight(EnableScoring::enabled_from_searcher(searcher))?,
            kind,
        })
    }

    /// Adds the clause's matches to `into`; with `within`, only those among it (others
    /// may or may not be added).
    fn collect(&self, reader: &SegmentReader, within: Option<&Bits>, into: &mut Bits) -> Result<(), IndexError> {
        let Some(within) = within.filter(|_| matches!(self.kind, Kind::Phrase { .. })) else {
            self.matching.for_each_no_score(reader, &mut |docs| {
                for doc in docs {
                    into.insert(*doc);
                }
            })?;
            return Ok(());
        };
        let mut scorer = self.matching.scorer(reader, 1.0)?;
        let mut doc = scorer.doc();
        while doc != TERMINATED {
            if within.contains(doc) {
                into.insert(doc);
                doc = scorer.advance();
            } else {
                match within.next_from(doc + 1) {
                    Some(next) => doc = scorer.seek(next),
                    None => break,
                }
            }
        }
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
    pub address: DocAddress,
}

/// Up to this many candidates, a phrase the first pass skipped is checked on each.
const FEW_CANDIDATES: usize = 256;

struct SegmentPass {
    /// Passing the filters and every required concept.
    allowed: Bits,
    /// Matching at least one concept.
    any: Bits,
    counts: Vec<u8>,
    /// The matches of each phrase and constant clause the first pass ran (within
    /// `allowed`), by (concept, clause).
    clause_bits: Vec<((usize, usize), Bits)>,
}

impl Plan {
    /// Every dataset on the page, and every other one of the lowest tier the page
    /// reaches (the tier's best score places each hit within its tier); and how many
    /// datasets match in all, which the first pass counts anyway.
    pub fn candidates(&self, searcher: &Searcher) -> Result<(Vec<Candidate>, usize), IndexError> {
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
        for (segment_ord, (pass, reader)) in passes.iter().zip(searcher.segment_readers()).enumerate() {
            let docs: Vec<DocId> = pass.allowed.iter().filter(|d| pass.counts[*d as usize] as usize >= lowest).collect();
            let scores = if self.concepts.is_empty() { vec![0.0; docs.len()] } else { self.score(reader, pass, &docs)? };
            let ids = reader.fast_fields().i64("id")?;
            for (doc, score) in docs.into_iter().zip(scores) {
                let id = ids
                    .first(doc)
                    .ok_or_else(|| IndexError::Tantivy(tantivy::TantivyError::InternalError("document without id".into())))?;
                let address = DocAddress::new(segment_ord as u32, doc);
                out.push(Candidate { matched: pass.counts[doc as usize] as usize, score, id, address });
            }
        }
        Ok((out, per_tier.iter().sum()))
    }

    fn first_pass(&self, reader: &SegmentReader) -> Result<SegmentPass, IndexError> {
        let max_doc = reader.max_doc();
        let mut allowed = Bits::alive(max_doc, reader.alive_bitset());
        let mut scratch = Bits::empty(max_doc);
        for values in &self.filters {
            scratch.clear();
            for value in values {
                value.collect(reader, None, &mut scratch)?;
            }
            allowed.intersect(&scratch);
        }
        let mut counts = vec![0u8; max_doc as usize];
        let mut any = Bits::empty(max_doc);
        let mut clause_bits = Vec::new();
        // Required concepts first: each narrows where the others need looking.
        let order = self
            .concepts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.required)
            .chain(self.concepts.iter().enumerate().filter(|(_, c)| !c.required));
        for (c, concept) in order {
            scratch.clear();
            for (k, clause) in concept.clauses.iter().enumerate() {
                match clause.kind {
                    Kind::Term => clause.collect(reader, Some(&allowed), &mut scratch)?,
                    Kind::Phrase { matches: false } => {}
                    Kind::Phrase { matches: true } | Kind::Constant(_) => {
                        let mut own = Bits::empty(max_doc);
                        clause.collect(reader, Some(&allowed), &mut own)?;
                        own.intersect(&allowed);
                        scratch.union(&own);
                        clause_bits.push(((c, k), own));
                    }
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
        Ok(SegmentPass { allowed, any, counts, clause_bits })
    }

    /// The BM25 score of each of `docs` (ascending): the sum over the clauses it
    /// matches, filters included, as the equivalent boolean query would score it.
    fn score(&self, reader: &SegmentReader, pass: &SegmentPass, docs: &[DocId]) -> Result<Vec<Score>, IndexError> {
        let mut scores = vec![0.0; docs.len()];
        for clause in self.filters.iter().flatten() {
            add_scores(reader, clause.scoring.as_ref(), docs, &mut scores)?;
        }
        let mut candidates: Option<Bits> = None;
        for (c, concept) in self.concepts.iter().enumerate() {
            for (k, clause) in concept.clauses.iter().enumerate() {
                let known = pass.clause_bits.iter().find(|(at, _)| *at == (c, k)).map(|(_, bits)| bits);
                match (clause.kind, known) {
                    (Kind::Term, _) => add_scores(reader, clause.scoring.as_ref(), docs, &mut scores)?,
                    (Kind::Constant(score), Some(bits)) => {
                        for (i, doc) in docs.iter().enumerate() {
                            if bits.contains(*doc) {
                                scores[i] += score;
                            }
                        }
                    }
                    (Kind::Phrase { .. }, Some(bits)) => add_phrase_scores(reader, clause.scoring.as_ref(), docs, Some(bits), &mut scores)?,
                    // A phrase the first pass skipped: checking a few candidates one by
                    // one is cheapest; for many, find its matches among them first.
                    (Kind::Phrase { .. }, None) if docs.len() > FEW_CANDIDATES => {
                        let within = candidates.get_or_insert_with(|| {
                            let mut bits = Bits::empty(reader.max_doc());
                            docs.iter().for_each(|d| bits.insert(*d));
                            bits
                        });
                        let mut matched = Bits::empty(reader.max_doc());
                        clause.collect(reader, Some(within), &mut matched)?;
                        add_phrase_scores(reader, clause.scoring.as_ref(), docs, Some(&matched), &mut scores)?;
                    }
                    (Kind::Phrase { .. }, None) => add_phrase_scores(reader, clause.scoring.as_ref(), docs, None, &mut scores)?,
                    (Kind::Constant(_), None) => {}
                }
            }
        }
        Ok(scores)
    }
}

/// Adds a term clause's score to each of `docs` (ascending) it matches.
fn add_scores(reader: &SegmentReader, weight: &dyn Weight, docs: &[DocId], scores: &mut [Score]) -> Result<(), IndexError> {
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
}

/// Adds a phrase's score to each of `docs` (ascending) it matches; with `only`, to
/// those of them it is known to match. Seeking a phrase scorer reads positions all the
/// way to its next match; `seek_danger` checks only the document asked about.
fn add_phrase_scores(
    reader: &SegmentReader,
    weight: &dyn Weight,
    docs: &[DocId],
    only: Option<&Bits>,
    scores: &mut [Score],
) -> Result<(), IndexError> {
    let mut wanted = docs.iter().enumerate().filter(|(_, d)| only.is_none_or(|bits| bits.contains(**d)));
    let Some((mut i, &first)) = wanted.next() else { return Ok(()) };
    let (mut found, mut scorer) = weight.scorer_danger(reader, first, 1.0)?;
    let mut bound = 0;
    loop {
        match found {
            SeekDangerResult::Found => scores[i] += scorer.score(),
            // Nothing before `lower` matches: the candidates below it are skipped.
            SeekDangerResult::SeekLowerBound(lower) => bound = lower,
        }
        let Some((next, &doc)) = wanted.find(|(_, d)| **d >= bound) else { return Ok(()) };
        i = next;
        found = scorer.seek_danger(doc);
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
        assert_eq!(bits.next_from(1), Some(64));
        assert_eq!(bits.next_from(64), Some(64));
        assert_eq!(bits.next_from(65), Some(129));
        assert_eq!(bits.next_from(130), None);
    }
}
