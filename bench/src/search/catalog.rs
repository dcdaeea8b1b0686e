//! The catalog as JSONL, and the 100k catalog grown from the real one.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Map, Value, json};

/// The real catalog expanded to `total` datasets: the originals, then rounds of variants
/// ("-v{n}" slugs, a variant word in the title, the description's sentences shuffled
/// and mixed with a sentence of another dataset of the same area, a subset of the tags,
/// year and sizes jittered; modality, area and task types kept).
pub fn expand(real: &[Map<String, Value>], total: usize) -> Vec<Map<String, Value>> {
    const WORDS: [&str; 12] = [
        "Extension",
        "Cohort",
        "Release",
        "Subset",
        "Multicentre",
        "External Validation",
        "Follow-up",
        "Benchmark",
        "Challenge",
        "Archive",
        "Replication",
        "Pilot",
    ];
    let mut rng = StdRng::seed_from_u64(3);
    let mut by_area: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in real.iter().enumerate() {
        by_area.entry(d.get("area").and_then(Value::as_str).unwrap_or("")).or_default().push(i);
    }
    let sentences = |d: &Map<String, Value>| -> Vec<String> {
        let text = d.get("description").and_then(Value::as_str).unwrap_or("");
        text.split(". ").map(|s| s.trim().trim_end_matches('.').to_string()).filter(|s| !s.is_empty()).collect()
    };
    let mut out: Vec<Map<String, Value>> = real.iter().take(total).cloned().collect();
    let mut round = 1;
    while out.len() < total {
        for (i, d) in real.iter().enumerate() {
            if out.len() == total {
                break;
            }
            let mut v = d.clone();
            let area = d.get("area").and_then(Value::as_str).unwrap_or("");
            let partner = &real[*by_area[area].choose(&mut rng).unwrap_or(&i)];
            let slug = d.get("slug").and_then(Value::as_str).unwrap_or("dataset");
            let title = d.get("title").and_then(Value::as_str).unwrap_or("");
            v.insert("slug".into(), json!(format!("{slug}-v{round}")));
            v.insert("title".into(), json!(format!("{title} ({} {round})", WORDS[rng.random_range(0..WORDS.len())])));
            let mut text = sentences(d);
            text.shuffle(&mut rng);
            if let Some(extra) = sentences(partner).choose(&mut rng).filter(|_| rng.random_bool(0.5)) {
                text.push(extra.clone());
            }
            if !text.is_empty() {
                v.insert("description".into(), json!(format!("{}.", text.join(". "))));
            }
            let mut tags: Vec<Value> = d.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
            tags.retain(|_| rng.random_bool(0.75));
            if let Some(t) = partner.get("tags").and_then(Value::as_array).and_then(|t| t.choose(&mut rng))
                && rng.random_bool(0.3)
                && !tags.contains(t)
            {
                tags.push(t.clone());
            }
            v.insert("tags".into(), Value::Array(tags));
            if let Some(y) = d.get("year").and_then(Value::as_i64) {
                v.insert("year".into(), json!((y + rng.random_range(-3..=3)).min(2026)));
            }
            for k in ["num_images", "size_mb"] {
                if let Some(n) = d.get(k).and_then(Value::as_i64) {
                    v.insert(k.into(), json!(((n as f64) * rng.random_range(0.5..1.5)).round().max(1.0) as i64));
                }
            }
            out.push(v);
        }
        round += 1;
    }
    out
}

pub fn read_catalog(path: &Path) -> anyhow::Result<Vec<Map<String, Value>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), n + 1)))
        .collect()
}

pub fn write_catalog(path: &Path, datasets: &[Map<String, Value>]) -> anyhow::Result<()> {
    let mut text = String::new();
    for d in datasets {
        text.push_str(&serde_json::to_string(d)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
