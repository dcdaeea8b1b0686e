//! Contract 000's catalog: admin CRUD, the real public catalog imported, filters.

use medledger_application::metadata::CommandContext;
use medledger_tests::Kind;
use medledger_tests::app::{TestApp, spawn_app};
use serde_json::{Value, json};

use super::expect;
use crate::on_both;

const FIXTURE: &str = include_str!("../../fixtures/datasets.jsonl");

pub(super) async fn import(app: &TestApp) -> medledger_application::catalog::ImportReport {
    let datasets = FIXTURE.lines().map(|l| medledger_application::catalog::parse_line(l).unwrap()).collect();
    let report =
        app.state.get::<medledger_application::catalog::Catalog>().unwrap().import(datasets, &CommandContext::system()).await.unwrap();
    if let Some(p) = report.last_position {
        app.state.caught_up(p).await;
    }
    report
}

pub(super) fn slugs(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|d| d["slug"].as_str().unwrap().to_string()).collect()
}

on_both!(the_real_catalog_imports_once_and_filters, the_real_catalog_imports_once_and_filters_);
async fn the_real_catalog_imports_once_and_filters_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let first = import(&app).await;
    assert_eq!((first.created, first.updated, first.unchanged), (283, 0, 0));
    let head = app.head().await;
    let again = import(&app).await;
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 283));
    assert_eq!(app.head().await, head, "re-importing the same file writes nothing");

    let token = app.register("reader@example.org").await.1;
    expect(app.medagg(None).datasets("").await, 401).await;
    let all = expect(app.medagg(&token).datasets("limit=1000").await, 200).await;
    assert_eq!(all.as_array().unwrap().len(), 283);

    let ct_chest = expect(app.medagg(&token).datasets("modality=CT&area=chest").await, 200).await;
    assert!(!ct_chest.as_array().unwrap().is_empty());
    for d in ct_chest.as_array().unwrap() {
        assert!(d["modality"].as_array().unwrap().contains(&json!("CT")) && d["area"] == "chest", "{d}");
    }
    let pneumonia = expect(app.medagg(&token).datasets("q=pneumonia&task_type=classification").await, 200).await;
    assert!(slugs(&pneumonia).iter().any(|s| s == "chest-xray14"), "{:?}", slugs(&pneumonia));
    let tagged = expect(app.medagg(&token).datasets("tags=cxr,thorax").await, 200).await;
    assert!(slugs(&tagged).contains(&"chexpert".to_string()));
    let newest = expect(app.medagg(&token).datasets("ordering=-year&limit=3").await, 200).await;
    let years: Vec<i64> = newest.as_array().unwrap().iter().map(|d| d["year"].as_i64().unwrap_or(0)).collect();
    assert!(years.windows(2).all(|w| w[0] >= w[1]), "{years:?}");
    let page2 = expect(app.medagg(&token).datasets("limit=10&offset=10").await, 200).await;
    assert_eq!(page2[0]["id"], all[10]["id"]);

    // The seed's own Russian query finds English-described chest CT pneumonia datasets.
    let ru = expect(app.medagg(&token).datasets(&format!("q={}", urlencode("пневмония грудная клетка КТ"))).await, 200).await;
    assert!(!ru.as_array().unwrap().is_empty(), "nothing found for the Russian query");
    for d in ru.as_array().unwrap() {
        let text = d.to_string().to_lowercase();
        assert!(text.contains("pneumonia") && (text.contains("chest") || text.contains("thorax")), "{d}");
    }
    let en = expect(app.medagg(&token).datasets("q=pneumonia%20chest%20CT").await, 200).await;
    assert_eq!(slugs(&ru), slugs(&en), "both languages find the same datasets");

    let b = expect(app.medagg(&token).datasets("modality=XRAY").await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("allowed: CT, MR"), "{b}");
    let b = expect(app.medagg(&token).datasets("area=moon").await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("chest"), "{b}");
    expect(app.medagg(&token).datasets("ordering=price").await, 400).await;
    expect(app.medagg(&token).datasets("limit=-1").await, 400).await;
    expect(app.medagg(&token).datasets(&format!("q={}", "x".repeat(1001))).await, 400).await;
    let none = expect(app.medagg(&token).datasets("q=%25%27%20OR%201%3D1").await, 200).await;
    assert_eq!(none, json!([]), "LIKE metacharacters match literally");
}

#[tokio::test]
async fn admins_create_update_and_retire_datasets() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let reader = app.register("r@example.org").await.1;
    let body = json!({"slug": "toy-ct", "title": "Toy CT", "modality": ["CT"], "area": "lung", "task_types": ["segmentation"],
                      "num_images": 10, "license": "CC BY 4.0", "tags": ["Nodule"], "year": 2024, "source_url": "https://example.org/toy"});
    expect(app.medagg(&reader).create_dataset(&body).await, 403).await;
    let created = expect(app.medagg(&admin).create_dataset(&body).await, 201).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["tags"], json!(["nodule"]));
    let b = expect(app.medagg(&admin).create_dataset(&body).await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("slug"), "{b}");
    let b = expect(app.medagg(&admin).create_dataset(&json!({"slug": "x", "title": "", "modality": ["XRAY"]})).await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("title") && b["detail"].as_str().unwrap().contains("modality"), "{b}");

    let mut changed = body.clone();
    changed["title"] = json!("Toy CT v2");
    let updated = expect(app.medagg(&admin).update_dataset(id, &changed).await, 200).await;
    assert_eq!(updated["title"], "Toy CT v2");
    assert_eq!(expect(app.medagg(&reader).dataset(id).await, 200).await["title"], "Toy CT v2");

    let r = app.medagg(&admin).retire_dataset(id).await;
    assert_eq!(r.status(), 204);
    expect(app.medagg(&reader).dataset(id).await, 404).await;
    assert_eq!(expect(app.medagg(&reader).datasets("").await, 200).await, json!([]));
    // The history keeps it.
    let history = app.ops(&admin).events(&format!("stream=dataset-{id}")).await.text().await.unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    expect(app.medagg(&admin).update_dataset(999, &body).await, 404).await;
    // An id that is no number: the raw path.
    expect(app.get("/api/v1/datasets/abc/", Some(&reader)).await, 404).await;
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
