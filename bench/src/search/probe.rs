//! Engine time without HTTP: the latency mix run in-process against an existing catalog
//! index directory (`--probe-index DIR`, e.g. one kept by `--keep`). Separates the search
//! itself from the server, the read-model fetch and the load generator.

use std::path::Path;
use std::time::{Duration, Instant};

use medledger_projections::catalog::index::{CatalogIndex, SearchFilters, SearchRequest, Semantics};

use crate::load::Request;

fn engine_request(r: &Request) -> SearchRequest {
    match r {
        Request::Search { text, filters } => SearchRequest {
            text: text.clone(),
            filters: SearchFilters {
                modality: filters.modality.clone(),
                area: filters.area.iter().cloned().collect(),
                task_types: filters.task_types.clone(),
                tags: Vec::new(),
            },
            semantics: Semantics::Ranked,
            limit: 20,
            offset: 0,
            facets: false,
        },
        Request::List { text, modality } => SearchRequest {
            text: text.clone(),
            filters: SearchFilters { modality: modality.iter().cloned().collect(), ..Default::default() },
            semantics: Semantics::AllConcepts,
            limit: 20,
            offset: 0,
            facets: false,
        },
    }
}

/// Runs the mix `passes` times (after one warm-up pass) and prints percentiles and the
/// slowest requests (median over the passes).
pub fn run(dir: &Path, mix: &[Request], passes: usize) -> anyhow::Result<()> {
    let index = CatalogIndex::open(dir)?;
    if std::env::var_os("PROBE_COMPACT").is_some() {
        let started = Instant::now();
        index.compact()?;
        eprintln!("probe: compacted in {:.2} s", started.elapsed().as_secs_f64());
    }
    eprintln!("probe: {} documents in {}", index.num_docs(), dir.display());
    // PROBE_ONLY=text keeps the requests whose description contains it (for profiling one).
    let only = std::env::var("PROBE_ONLY").ok();
    let mut mix: Vec<Request> = mix.iter().filter(|r| only.as_ref().is_none_or(|o| r.describe().contains(o.as_str()))).cloned().collect();
    // PROBE_QUERY=text: that text alone, ranked, without filters.
    if let Ok(text) = std::env::var("PROBE_QUERY") {
        mix = vec![Request::Search { text, filters: Default::default() }];
    }
    let mix = mix.as_slice();
    let requests: Vec<SearchRequest> = mix.iter().map(engine_request).collect();
    for r in &requests {
        index.search(r)?;
    }
    let mut per_request: Vec<Vec<Duration>> = vec![Vec::with_capacity(passes); requests.len()];
    for _ in 0..passes.max(1) {
        for (i, r) in requests.iter().enumerate() {
            let started = Instant::now();
            index.search(r)?;
            per_request[i].push(started.elapsed());
        }
    }
    let mut all: Vec<Duration> = per_request.iter().flatten().copied().collect();
    all.sort();
    let at = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "engine, {} requests x {} passes: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
        requests.len(),
        passes,
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        all.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / all.len() as f64
    );
    let mut medians: Vec<(Duration, usize)> = per_request
        .iter_mut()
        .enumerate()
        .map(|(i, t)| {
            t.sort();
            (t[t.len() / 2], i)
        })
        .collect();
    medians.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (d, i) in medians.iter().take(15) {
        println!("  {:.2} ms  {}", d.as_secs_f64() * 1000.0, mix[*i].describe());
    }
    Ok(())
}
