//! Contract 000 as its real clients use it: lists read to the end through `Link`
//! headers, the seed's own dataset example, codes and ids in filters and bodies,
//! repeated query parameters, form logins and anonymous browsing.

use std::collections::BTreeSet;

use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, TestApp, spawn_app, spawn_with, test_config};
use medledger_tests::clients::Call;
use serde_json::{Value, json};

use super::catalog::{import, slugs};
use super::expect;
use crate::on_both;

/// The seed's dataset example (§2, `GET /datasets/`), verbatim.
const SEED_DATASET: &str = r#"{
    "id": 1,
    "title": "Chest X-ray Pneumonia Dataset",
    "source_url": "https://example.com/datasets/pneumonia",
    "modality": ["XR"],
    "area": "chest",
    "task_types": ["classification"],
    "num_images": 5863,
    "size_mb": 1200,
    "tags": ["pneumonia", "thorax"]
  }"#;

fn seed_dataset() -> Value {
    serde_json::from_str(SEED_DATASET).unwrap()
}

/// `X-Total-Count` of a response.
fn total(r: &reqwest::Response) -> i64 {
    r.headers().get("x-total-count").expect("X-Total-Count").to_str().unwrap().parse().unwrap()
}

/// The target of the `Link` header's `rel` entry, as a client parses RFC 8288.
fn link(r: &reqwest::Response, rel: &str) -> Option<String> {
    let header = r.headers().get("link")?.to_str().unwrap().to_string();
    header.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == format!("rel=\"{rel}\""))
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// Reads a list as a client that follows `rel="next"` does, from the `first` page's
/// call; every page's rows, in order, and the total each page announced.
async fn follow(app: &TestApp, token: Option<&str>, first: Call) -> (Vec<Value>, Vec<i64>) {
    let (mut rows, mut totals) = (Vec::new(), Vec::new());
    let mut r = first.await;
    loop {
        totals.push(total(&r));
        let next = link(&r, "next");
        rows.extend(expect(r, 200).await.as_array().unwrap().clone());
        assert!(totals.len() <= 300, "the links never end");
        let Some(url) = next else { break };
        assert!(url.starts_with(&app.base), "an absolute link to this server: {url}");
        let mut req = app.client.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        r = req.send().await.unwrap();
    }
    (rows, totals)
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|d| d["id"].as_i64().unwrap()).collect()
}

fn once_each(ids: &[i64]) -> BTreeSet<i64> {
    let set: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "a row came twice: {ids:?}");
    set
}

on_both!(a_client_following_link_reads_the_whole_catalog_once, a_client_following_link_reads_the_whole_catalog_once_);
async fn a_client_following_link_reads_the_whole_catalog_once_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    import(&app).await;
    let token = app.register("reader@example.org").await.1;

    // A client written from the seed asks without paging and gets the whole catalog.
    let r = app.medagg(&token).datasets("").await;
    assert_eq!(total(&r), 283);
    assert_eq!(link(&r, "next"), None);
    let everything = expect(r, 200).await;
    assert_eq!(everything.as_array().unwrap().len(), 283, "the default answers every dataset");
    let all = once_each(&ids(everything.as_array().unwrap()));

    // A client that pages follows rel="next" and gets every dataset exactly once.
    let (rows, totals) = follow(&app, Some(&token), app.medagg(&token).datasets("limit=50")).await;
    assert_eq!(totals, vec![283; 6]);
    assert_eq!(once_each(&ids(&rows)), all);

    let second = app.medagg(&token).datasets("limit=50&offset=50").await;
    let prev = link(&second, "prev").expect("rel=prev");
    assert!(prev.ends_with("/api/v1/datasets/?limit=50&offset=0"), "{prev}");
    assert_eq!(link(&app.medagg(&token).datasets("limit=50").await, "prev"), None);

    // Filters, repeated keys and free text travel in the links.
    let ct = ids(expect(app.medagg(&token).datasets("modality=CT").await, 200).await.as_array().unwrap());
    let mr = ids(expect(app.medagg(&token).datasets("modality=MR").await, 200).await.as_array().unwrap());
    let either: BTreeSet<i64> = ct.iter().chain(&mr).copied().collect();
    let (rows, totals) = follow(&app, Some(&token), app.medagg(&token).datasets("modality=CT&modality=MR&limit=7")).await;
    assert_eq!(once_each(&ids(&rows)), either);
    assert!(totals.iter().all(|t| *t == either.len() as i64), "{totals:?}");
    let chest = ids(expect(app.medagg(&token).datasets("q=chest").await, 200).await.as_array().unwrap());
    let (rows, totals) = follow(&app, Some(&token), app.medagg(&token).datasets("q=chest&limit=9")).await;
    assert_eq!(ids(&rows), chest, "the pages of a text query, best first, are the whole answer in order");
    assert_eq!(totals[0], chest.len() as i64);
    let (rows, _) = follow(&app, Some(&token), app.medagg(&token).datasets("q=chest&ordering=-year&limit=9")).await;
    assert_eq!(once_each(&ids(&rows)), chest.iter().copied().collect());

    // Past the largest page: a clear 400, not a shorter list.
    let b = expect(app.medagg(&token).datasets("limit=1001").await, 400).await;
    assert_eq!(b["detail"], "limit: must be a whole number from 1 to 1000");
    expect(app.medagg(&token).datasets("limit=0").await, 400).await;
    expect(app.medagg(&token).datasets("offset=x").await, 400).await;
    // Past the end: nothing, and the way back.
    let r = app.medagg(&token).datasets("limit=100&offset=1000").await;
    assert_eq!(total(&r), 283);
    assert!(link(&r, "prev").unwrap().ends_with("limit=100&offset=200"));
    assert_eq!(expect(r, 200).await, json!([]));
}

#[tokio::test]
async fn the_search_pages_through_links_that_take_the_same_body() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    import(&app).await;
    let token = app.register("reader@example.org").await.1;
    let seed = json!({"query_text": "пневмония грудная клетка КТ", "filters": {"area": "chest"}, "limit": 5});

    let whole =
        expect(app.medagg(&token).search(&json!({"query_text": seed["query_text"], "filters": seed["filters"], "limit": 100})).await, 200)
            .await;
    let (mut hits, mut pages) = (Vec::new(), 0);
    let mut r = app.medagg(&token).search(&seed).await;
    loop {
        assert_eq!(total(&r), whole.as_array().unwrap().len() as i64);
        let next = link(&r, "next");
        hits.extend(expect(r, 200).await.as_array().unwrap().clone());
        pages += 1;
        let Some(u) = next else { break };
        r = app.client.post(&u).bearer_auth(&token).json(&seed).send().await.unwrap();
    }
    assert!(pages > 1, "the answer spans pages of 5");
    let slugs_of = |v: &[Value]| v.iter().map(|h| h["dataset"]["slug"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(slugs_of(&hits), slugs_of(whole.as_array().unwrap()), "every hit once, in rank order");

    // The default is still a page of the best 20, and the headers say there is more.
    let r = app.medagg(&token).search(&json!({"query_text": "segmentation"})).await;
    assert!(total(&r) > 20);
    assert!(link(&r, "next").unwrap().ends_with("/api/v1/search/datasets/?limit=20&offset=20"));
    assert_eq!(expect(r, 200).await.as_array().unwrap().len(), 20);
    let b = expect(app.medagg(&token).search_with_query("limit=101", &json!({"query_text": "ct"})).await, 400).await;
    assert!(b["detail"].as_str().unwrap().starts_with("limit: "), "{b}");
}

#[tokio::test]
async fn collection_lists_say_their_total_and_link_their_pages() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let user = app.register("u@example.org").await.1;
    let other = app.register("o@example.org").await.1;
    let a = expect(app.medagg(&admin).create_dataset(&seed_dataset()).await, 201).await["id"].as_i64().unwrap();
    let request = json!({"query_text": "pneumonia chest xray", "dataset_ids": [a], "limit_per_dataset": 1});
    for token in [&user, &user, &user, &other] {
        expect(app.medagg(token).request_collection(&request).await, 201).await;
    }
    let (rows, totals) = follow(&app, Some(&user), app.medagg(&user).collections("limit=2")).await;
    assert_eq!((rows.len(), totals), (3, vec![3, 3]));
    once_each(&ids(&rows));
    let (rows, totals) = follow(&app, Some(&admin), app.medagg(&admin).requests("limit=3")).await;
    assert_eq!((rows.len(), totals), (4, vec![4, 4]));
    let r = app.medagg(&user).collections("").await;
    assert_eq!((total(&r), link(&r, "next")), (3, None));
    expect(app.medagg(&user).collections("limit=1001").await, 400).await;
}

#[tokio::test]
async fn the_seeds_dataset_example_creates_a_dataset_with_a_slug_from_its_title() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;

    let created = expect(app.medagg(&admin).create_dataset(&seed_dataset()).await, 201).await;
    assert_eq!(created["slug"], "chest-x-ray-pneumonia-dataset");
    assert_eq!((created["num_images"].as_i64(), created["tags"].clone()), (Some(5863), json!(["pneumonia", "thorax"])));
    let again = expect(app.medagg(&admin).create_dataset(&seed_dataset()).await, 201).await;
    assert_eq!(again["slug"], "chest-x-ray-pneumonia-dataset-2");
    assert_ne!(again["id"], created["id"]);

    // The slug is in the history: the dataset's event and its claim.
    let id = again["id"].as_i64().unwrap();
    let history = app.ops(&admin).events(&format!("stream=dataset-{id}")).await.text().await.unwrap();
    let event: Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert!(event.to_string().contains("\"slug\":\"chest-x-ray-pneumonia-dataset-2\""), "{event}");
    let claim = app.ops(&admin).events("stream=dataset_slug-chest-x-ray-pneumonia-dataset-2").await.text().await.unwrap();
    assert_eq!(claim.lines().count(), 1, "{claim}");

    // Admins creating one title at the same moment each get their own slug.
    let mut body = seed_dataset();
    body["title"] = json!("Brain MRI Atlas");
    let creates = (0..4).map(|_| app.medagg(&admin).create_dataset(&body));
    let mut got = BTreeSet::new();
    for r in futures::future::join_all(creates).await {
        got.insert(expect(r, 201).await["slug"].as_str().unwrap().to_string());
    }
    let want = ["brain-mri-atlas", "brain-mri-atlas-2", "brain-mri-atlas-3", "brain-mri-atlas-4"];
    assert_eq!(got, want.iter().map(|s| s.to_string()).collect());

    body["title"] = json!("Пневмония: КТ грудной клетки");
    assert_eq!(expect(app.medagg(&admin).create_dataset(&body).await, 201).await["slug"], "pnevmoniya-kt-grudnoy-kletki");
    // An explicit slug that is taken is still refused, not renamed.
    body["slug"] = json!("brain-mri-atlas");
    let b = expect(app.medagg(&admin).create_dataset(&body).await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("slug"), "{b}");

    // PUT with the example (no slug) replaces the fields and keeps the slug.
    let mut changed = seed_dataset();
    changed["num_images"] = json!(5900);
    let first = created["id"].as_i64().unwrap();
    let updated = expect(app.medagg(&admin).update_dataset(first, &changed).await, 200).await;
    assert_eq!((updated["slug"].as_str(), updated["num_images"].as_i64()), (Some("chest-x-ray-pneumonia-dataset"), Some(5900)));
}

on_both!(codes_ids_and_repeated_parameters_filter_alike, codes_ids_and_repeated_parameters_filter_alike_);
async fn codes_ids_and_repeated_parameters_filter_alike_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    import(&app).await;
    let token = app.register("reader@example.org").await.1;
    let admin = app.admin().await;
    let list = |query: String| {
        let (app, token) = (&app, &token);
        async move { slugs(&expect(app.medagg(token).datasets(&query).await, 200).await) }
    };

    let vocabulary = expect(app.medagg(&token).vocabulary().await, 200).await;
    let id_of = |dimension: &str, code: &str| {
        vocabulary[dimension].as_array().unwrap().iter().find(|v| v["code"] == code).map(|v| v["id"].clone()).unwrap()
    };
    assert_eq!(id_of("modality", "CT"), json!(1));
    let cxr = vocabulary["tags"].as_array().unwrap().iter().find(|t| t["name"] == "cxr").unwrap().clone();
    assert!(cxr["datasets"].as_i64().unwrap() > 1, "{cxr}");
    let cxr_id = cxr["id"].as_i64().unwrap();
    let (mr, brain, segmentation) = (id_of("modality", "MR"), id_of("area", "brain"), id_of("task_type", "segmentation"));
    let chest = id_of("area", "chest");

    let by_code = list("modality=MR&area=brain&task_type=segmentation".into()).await;
    assert!(!by_code.is_empty());
    assert_eq!(list(format!("modality={mr}&area={brain}&task_type={segmentation}")).await, by_code);
    assert_eq!(list(format!("tags={cxr_id}")).await, list("tags=cxr".into()).await);

    // A repeated key is a list ("any of"), as a comma-separated value is.
    let ct_or_mr = list("modality=CT&modality=MR".into()).await;
    assert_eq!(ct_or_mr, list("modality=CT,MR".into()).await);
    assert!(ct_or_mr.len() > list("modality=CT".into()).await.len().max(list("modality=MR".into()).await.len()));
    let two_areas = list("area=chest&area=brain".into()).await;
    assert_eq!(two_areas.len(), list("area=chest".into()).await.len() + list("area=brain".into()).await.len());

    // The search body takes ids too: numbers for tags, codes' ids as numbers or strings.
    let search = |filters: Value| {
        let (app, token) = (&app, &token);
        async move {
            let r =
                expect(app.medagg(token).search(&json!({"query_text": "pneumonia", "filters": filters, "limit": 100})).await, 200).await;
            r.as_array().unwrap().iter().map(|h| h["dataset"]["slug"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    let with_codes = search(json!({"modality": ["XR"], "area": "chest", "tags": ["cxr"]})).await;
    assert!(!with_codes.is_empty());
    assert_eq!(search(json!({"modality": [3], "area": chest, "tags": [cxr_id]})).await, with_codes);
    let b = expect(app.medagg(&token).search(&json!({"query_text": "x", "filters": {"tags": [424242]}})).await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("424242"), "{b}");

    // And the admin's create body.
    let body = json!({"title": "Toy CT", "modality": [1], "area": chest, "task_types": [segmentation], "tags": [cxr_id, "New Tag"]});
    let created = expect(app.medagg(&admin).create_dataset(&body).await, 201).await;
    assert_eq!(
        (&created["modality"], &created["area"], &created["task_types"], &created["tags"]),
        (&json!(["CT"]), &json!("chest"), &json!(["segmentation"]), &json!(["cxr", "new tag"]))
    );
    let b = expect(app.medagg(&admin).create_dataset(&json!({"title": "T", "modality": [99]})).await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("allowed: CT, MR"), "{b}");
}

/// A multipart form as a browser's `FormData` sends it.
fn form_data(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn the_login_reads_forms_as_well_as_json() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("ann@example.org").await;
    let credentials = [("username", "ann@example.org"), ("password", PASSWORD)];

    let r = app.medagg(None).login_form(&credentials).await;
    let b = expect(r, 200).await;
    assert_eq!(b["token_type"], "bearer");
    expect(app.medagg(b["access_token"].as_str().unwrap()).collections("").await, 200).await;

    let (content_type, body) = form_data(&credentials);
    let r = app.medagg(None).login_raw(&content_type, body).await;
    assert!(expect(r, 200).await["access_token"].is_string());

    let r = app.medagg(None).login_form(&[("username", "ann@example.org"), ("password", "wrong password")]).await;
    expect(r, 401).await;
    let r = app.medagg(None).login_form(&[("username", "ann@example.org")]).await;
    assert_eq!(expect(r, 400).await["detail"], "password: This field is required.");
    let r = app.medagg(None).login_raw("text/plain", "username=ann").await;
    expect(r, 415).await;
}

#[tokio::test]
async fn anonymous_browsing_follows_the_setting() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.contexts.catalog.public = true;
    let app = spawn_with(config, Kind::Sqlite).await;
    let admin = app.admin().await;
    let id = expect(app.medagg(&admin).create_dataset(&seed_dataset()).await, 201).await["id"].as_i64().unwrap();

    let r = app.medagg(None).datasets("").await;
    assert_eq!(total(&r), 1);
    assert_eq!(slugs(&expect(r, 200).await), ["chest-x-ray-pneumonia-dataset"]);
    expect(app.medagg(None).dataset(id).await, 200).await;
    expect(app.medagg(None).items(id).await, 200).await;
    expect(app.medagg(None).vocabulary().await, 200).await;
    let hits = expect(app.medagg(None).search(&json!({"query_text": "pneumonia"})).await, 200).await;
    assert_eq!(hits.as_array().unwrap().len(), 1);

    // Writes and collections still need a token.
    expect(app.medagg(None).create_dataset(&seed_dataset()).await, 401).await;
    expect(app.medagg(None).collections("").await, 401).await;
    expect(app.medagg(None).request_collection(&json!({"dataset_ids": [id], "limit_per_dataset": 1})).await, 401).await;
    // A token that is sent must be good: a bad or ended one is not read as anonymous.
    expect(app.medagg("not-a-token").datasets("").await, 401).await;
    let (_, access, refresh) = app.register("gone@example.org").await;
    expect(app.myo(&access).logout(&refresh).await, 200).await;
    let b = expect(app.medagg(&access).datasets("").await, 401).await;
    assert_eq!(b["detail"], "Given token not valid for any token type");
}

#[tokio::test]
async fn the_catalog_needs_a_token_by_default() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    assert!(!app.config.contexts.catalog.public);
    let anonymous = app.medagg(None);
    for (what, call) in [
        ("datasets", anonymous.datasets("")),
        ("dataset 1", anonymous.dataset(1)),
        ("items of dataset 1", anonymous.items(1)),
        ("vocabulary", anonymous.vocabulary()),
    ] {
        let b = expect(call.await, 401).await;
        assert_eq!(b["detail"], "Authentication credentials were not provided.", "{what}");
    }
    expect(app.medagg(None).search(&json!({"query_text": "ct"})).await, 401).await;
}
