//! Contract 000's collections: items uploaded by admins, a ZIP built by the saga,
//! Range downloads, owner-only visibility, expiry, failures, and a restart mid-build.

use std::io::Read;
use std::time::Duration;

use medledger_application::metadata::CommandContext;
use medledger_domain::collections::collection::CollectionRequest;
use medledger_tests::Kind;
use medledger_tests::app::{TestApp, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};

use super::expect;
use crate::on_both;

const BOUNDARY: &str = "medledger-test-boundary";

/// A multipart body by hand: the file part plus plain fields.
fn multipart(filename: &str, bytes: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(bytes);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub(super) async fn upload(
    app: &TestApp,
    admin: &str,
    dataset: i64,
    filename: &str,
    bytes: &[u8],
    fields: &[(&str, &str)],
) -> reqwest::Response {
    app.medagg(admin).add_item(dataset, &format!("multipart/form-data; boundary={BOUNDARY}"), multipart(filename, bytes, fields)).await
}

async fn dataset(app: &TestApp, admin: &str, slug: &str) -> i64 {
    let body = json!({"slug": slug, "title": format!("{slug} chest radiographs"), "description": "Chest X-rays.",
                      "source_url": "https://example.org/data", "license": "CC BY 4.0", "modality": ["XR"], "area": "chest"});
    expect(app.medagg(admin).create_dataset(&body).await, 201).await["id"].as_i64().unwrap()
}

pub(super) async fn wait_until_settled(app: &TestApp, token: &str, id: i64) -> Value {
    for _ in 0..200 {
        let c = expect(app.medagg(token).collection(id).await, 200).await;
        if c["status"] != "pending" {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("collection {id} still pending after 10 s");
}

fn zip_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid ZIP");
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().map(|n| n.to_string()).unwrap_or_default(), data)
        })
        .collect()
}

on_both!(a_collection_is_built_downloaded_and_private, a_collection_is_built_);
async fn a_collection_is_built_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    let b = dataset(&app, &admin, "ward-b").await;
    let p1 = b"PNEUMONIA-1".repeat(1000);
    let r =
        upload(&app, &admin, a, "scans/p1.png", &p1, &[("labels", "pneumonia,left lobe"), ("caption", "right lower lobe consolidation")])
            .await;
    let item = expect(r, 201).await;
    assert_eq!(item["filename"], "scans/p1.png");
    assert_eq!(item["labels"], json!(["pneumonia", "left lobe"]));
    expect(upload(&app, &admin, a, "n1.png", b"NORMAL", &[("caption", "normal study")]).await, 201).await;
    expect(upload(&app, &admin, a, "p2.png", b"PNEUMONIA-2", &[("labels", "pneumonia")]).await, 201).await;
    expect(upload(&app, &admin, b, "b1.png", b"B-PNEUMONIA", &[("caption", "pneumonia")]).await, 201).await;
    let items = expect(app.medagg(&admin).items(a).await, 200).await;
    assert_eq!(items.as_array().unwrap().len(), 3);

    // Zip-slip: names that could leave the archive root never become items.
    for evil in ["../../etc/passwd", "/etc/passwd", "a/../../b.png", "C:/x.png", "bad\\..\\x.png"] {
        let r = upload(&app, &admin, a, evil, b"x", &[]).await;
        assert_eq!(r.status().as_u16(), 400, "{evil}");
    }
    let user = app.register("owner@example.org").await.1;
    expect(upload(&app, &user, a, "x.png", b"x", &[]).await, 403).await;

    let body = json!({"query_text": "pneumonia", "dataset_ids": [a, b], "limit_per_dataset": 1});
    let created = expect(app.medagg(&user).request_collection(&body).await, 201).await;
    assert!(created["status"] == "pending" || created["status"] == "ready", "{created}");
    assert!(created["created_at"].is_string());
    let id = created["id"].as_i64().unwrap();
    let ready = wait_until_settled(&app, &user, id).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["progress"], 100);
    assert_eq!(ready["download_url"], format!("/api/v1/collections/{id}/download/"));

    let r = app.medagg(&user).download(id).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains(&format!("collection-{id}.zip")));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, ready["archive_size"].as_i64().unwrap());
    let entries = zip_entries(&bytes);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().all(|n| !n.contains("..") && !n.starts_with('/')), "{names:?}");
    let files: Vec<&(String, Vec<u8>)> = entries.iter().filter(|(n, _)| !n.starts_with("manifest")).collect();
    assert_eq!(files.len(), 2, "one item per dataset: {names:?}");
    let from_a = files.iter().find(|(n, _)| n.starts_with("ward-a/")).expect("an item of ward-a");
    assert_eq!(from_a.1, p1, "the best match (labels and caption) with its exact bytes");
    assert!(files.iter().any(|(n, d)| n.starts_with("ward-b/") && d == b"B-PNEUMONIA"));
    let manifest: Value = serde_json::from_slice(&entries.iter().find(|(n, _)| n == "manifest.json").unwrap().1).unwrap();
    assert_eq!(manifest["items"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["items"][0]["license"], "CC BY 4.0");
    assert_eq!(manifest["items"][0]["source_url"], "https://example.org/data");
    assert_eq!(manifest["items"][0]["sha256"].as_str().unwrap().len(), 64);
    let csv = String::from_utf8(entries.iter().find(|(n, _)| n == "manifest.csv").unwrap().1.clone()).unwrap();
    assert!(csv.starts_with("dataset,item,path,source_url,license,labels,sha256\n") && csv.lines().count() == 3, "{csv}");

    // Range requests.
    let r = app.medagg(&user).download(id).header("range", "bytes=0-9").await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap(), bytes.slice(0..10));

    // Only the owner and admins see it; others get the same 404 as for nothing at all.
    let other = app.register("other@example.org").await.1;
    let others = app.medagg(&other);
    for call in [others.collection(id), others.download(id), others.collection(999999)] {
        let b = expect(call.await, 404).await;
        assert!(b["detail"].is_string());
    }
    assert_eq!(expect(app.medagg(&other).collections("").await, 200).await, json!([]));
    assert_eq!(expect(app.medagg(&user).collections("").await, 200).await[0]["id"], id);
    expect(app.medagg(&admin).collection(id).await, 200).await;
    expect(app.medagg(&user).requests("").await, 403).await;
    let all = expect(app.medagg(&admin).requests("").await, 200).await;
    assert_eq!(all[0]["owner"]["email"], "owner@example.org");
    assert_eq!(all[0]["status"], "ready");

    // Nothing matches: failed with a reason, and the download says so.
    let body = json!({"query_text": "zzzqqq", "dataset_ids": [a], "limit_per_dataset": 5});
    let failed = expect(app.medagg(&user).request_collection(&body).await, 201).await["id"].as_i64().unwrap();
    let settled = wait_until_settled(&app, &user, failed).await;
    assert_eq!(settled["status"], "failed");
    assert!(settled["failure_reason"].as_str().unwrap().contains("match"));
    let b = expect(app.medagg(&user).download(failed).await, 409).await;
    assert!(b["detail"].as_str().unwrap().contains("could not be built"));
}

#[tokio::test]
async fn bad_collection_requests_name_what_is_wrong() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    let retired = dataset(&app, &admin, "old-ward").await;
    let r = app.medagg(&admin).retire_dataset(retired).await;
    assert_eq!(r.status().as_u16(), 204);
    let user = app.register("u@example.org").await.1;
    let head = app.head().await;
    let post = |body: Value| {
        let (app, user) = (&app, &user);
        async move { app.medagg(user).request_collection(&body).await }
    };
    let b = expect(post(json!({"query_text": "", "dataset_ids": [a, 424242, retired], "limit_per_dataset": 5})).await, 400).await;
    let detail = b.to_string();
    assert!(detail.contains("424242") && detail.contains(&retired.to_string()), "{b}");
    for limit in [0, -1, 1_000_000_000] {
        let b = expect(post(json!({"dataset_ids": [a], "limit_per_dataset": limit})).await, 400).await;
        assert!(b.to_string().contains("limit_per_dataset"), "{b}");
    }
    expect(post(json!({"dataset_ids": [], "limit_per_dataset": 5})).await, 400).await;
    expect(post(json!({"dataset_ids": ["one"], "limit_per_dataset": 5})).await, 400).await;
    expect(post(json!({"query_text": "x".repeat(1001), "dataset_ids": [a], "limit_per_dataset": 5})).await, 400).await;
    expect(app.medagg(None).request_collection(&json!({"dataset_ids": [a], "limit_per_dataset": 5})).await, 401).await;
    assert_eq!(app.head().await, head, "nothing recorded for refused requests");
}

#[tokio::test]
async fn archives_expire_after_their_time_to_live() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    // Long enough for a loaded machine to see the archive ready before it expires.
    config.contexts.collections.ttl = chrono::Duration::seconds(3);
    let app = spawn_with(config, Kind::Sqlite).await;
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    expect(upload(&app, &admin, a, "p.png", b"bytes", &[]).await, 201).await;
    let id = expect(app.medagg(&admin).request_collection(&json!({"dataset_ids": [a], "limit_per_dataset": 1})).await, 201).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(wait_until_settled(&app, &admin, id).await["status"], "ready");
    let archive = app.data_dir().join(format!("blobs/collections/{id}.zip"));
    assert!(archive.is_file());
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let c = expect(app.medagg(&admin).collection(id).await, 200).await;
    assert_eq!(c["status"], "expired");
    assert_eq!(c["download_url"], Value::Null);
    let b = expect(app.medagg(&admin).download(id).await, 410).await;
    assert!(b["detail"].as_str().unwrap().contains("expired"));
    for _ in 0..100 {
        if !archive.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the expired archive was not deleted");
}

/// A server that stopped before building a requested collection (killed mid-build: the
/// saga had not recorded a result) builds it on restart; a half-written file from the
/// dead build is never what gets served.
#[tokio::test]
async fn a_build_interrupted_by_a_crash_completes_after_restart() {
    let Some(config) = test_config(Kind::Sqlite).await else { return };
    let app = spawn_with(config.clone(), Kind::Sqlite).await;
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    expect(upload(&app, &admin, a, "p.png", b"REAL-BYTES", &[]).await, 201).await;
    let config = app.stop().await;

    // The request is recorded while no saga runs (as if the server died right after).
    let core = medledger_api::core(&config).await.unwrap();
    let request = CollectionRequest { owner_id: 1, query_text: String::new(), dataset_ids: vec![a], limit_per_dataset: 5 };
    let (id, _) =
        core.get::<medledger_application::collections::Collections>().unwrap().request(request, &CommandContext::system()).await.unwrap();
    let dir = config.blob_dir().join("collections");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{id}.zip.partial")), b"half an archive").unwrap();
    drop(core);

    let app = spawn_with(config, Kind::Sqlite).await;
    let token = app.login("admin@example.org").await;
    let c = wait_until_settled(&app, &token, id).await;
    assert_eq!(c["status"], "ready");
    let bytes = app.medagg(&token).download(id).await.bytes().await.unwrap();
    let entries = zip_entries(&bytes);
    assert!(entries.iter().any(|(n, d)| n.starts_with("ward-a/") && d == b"REAL-BYTES"));
    assert!(!dir.join(format!("{id}.zip.partial")).exists());
}

#[tokio::test]
async fn one_collection_holds_a_bounded_number_of_items() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.contexts.collections.max_items = 2;
    let app = spawn_with(config, Kind::Sqlite).await;
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    for name in ["1.png", "2.png", "3.png"] {
        expect(upload(&app, &admin, a, name, b"bytes", &[]).await, 201).await;
    }
    let user = app.register("many@example.org").await.1;
    let head = app.head().await;
    let b = expect(app.medagg(&user).request_collection(&json!({"dataset_ids": [a], "limit_per_dataset": 3})).await, 400).await;
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("matches 3 items") && detail.contains("at most 2"), "{b}");
    assert_eq!(app.head().await, head, "nothing recorded for a refused request");
    expect(app.medagg(&user).request_collection(&json!({"dataset_ids": [a], "limit_per_dataset": 2})).await, 201).await;
    // What counts is what the request matches, not its limit.
    let b = dataset(&app, &admin, "ward-b").await;
    expect(upload(&app, &admin, b, "only.png", b"bytes", &[]).await, 201).await;
    expect(app.medagg(&user).request_collection(&json!({"dataset_ids": [b], "limit_per_dataset": 100_000})).await, 201).await;
}

on_both!(a_user_keeps_a_bounded_number_of_live_archives, a_user_keeps_a_bounded_number_of_live_archives_);
async fn a_user_keeps_a_bounded_number_of_live_archives_(kind: Kind) {
    let Some(mut config) = test_config(kind).await else { return };
    config.contexts.collections.per_user = 2;
    let app = spawn_with(config, kind).await;
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    expect(upload(&app, &admin, a, "p.png", b"pneumonia", &[("labels", "pneumonia")]).await, 201).await;
    let user = app.register("keeper@example.org").await.1;
    let other = app.register("other@example.org").await.1;
    let request = |query: &str| json!({"query_text": query, "dataset_ids": [a], "limit_per_dataset": 1});

    // A failed collection holds no archive and does not count.
    let failed = expect(app.medagg(&user).request_collection(&request("zzzqqq")).await, 201).await["id"].as_i64().unwrap();
    assert_eq!(wait_until_settled(&app, &user, failed).await["status"], "failed");
    let first = expect(app.medagg(&user).request_collection(&request("")).await, 201).await["id"].as_i64().unwrap();
    assert_eq!(wait_until_settled(&app, &user, first).await["status"], "ready");
    expect(app.medagg(&user).request_collection(&request("pneumonia")).await, 201).await;
    let b = expect(app.medagg(&user).request_collection(&request("")).await, 429).await;
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("at most 2"), "{b}");
    // The quota is per user.
    expect(app.medagg(&other).request_collection(&request("")).await, 201).await;

    // Parallel requests cannot all slip past one count.
    let everything = request("");
    let burst = (0..5).map(|_| app.medagg(&other).request_collection(&everything));
    let statuses: Vec<u16> = futures::future::join_all(burst).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 4, "{statuses:?}");
}

// Items have streams of their own: uploads to one dataset at once all succeed at the
// first try (none conflicts with another on the dataset's stream), the dataset's stream
// does not grow, and a collection built after them holds every one. A retired dataset
// takes no item.
on_both!(concurrent_uploads_to_one_dataset_do_not_conflict, concurrent_uploads_to_one_dataset_do_not_conflict_);
async fn concurrent_uploads_to_one_dataset_do_not_conflict_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    let dataset_stream = app.state.ledger.store().read_stream(&format!("dataset-{a}")).await.unwrap().len();
    let names: Vec<String> = (0..4).map(|i| format!("scan-{i}.png")).collect();
    let uploads = names.iter().map(|name| upload(&app, &admin, a, name, name.as_bytes(), &[("labels", "pneumonia")]));
    let mut ids = Vec::new();
    for r in futures::future::join_all(uploads).await {
        ids.push(expect(r, 201).await["id"].as_i64().unwrap());
    }
    assert_eq!(app.state.ledger.store().read_stream(&format!("dataset-{a}")).await.unwrap().len(), dataset_stream);
    for id in &ids {
        let events = app.state.ledger.store().read_stream(&format!("dataset_item-{id}")).await.unwrap();
        assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["DatasetItemAdded"]);
    }
    let listed = expect(app.get(&format!("/api/v1/datasets/{a}/items/"), Some(&admin)).await, 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 4);

    let body = json!({"query_text": "pneumonia", "dataset_ids": [a], "limit_per_dataset": 10});
    let id = expect(app.post("/api/v1/collections/", &body, Some(&admin)).await, 201).await["id"].as_i64().unwrap();
    let ready = wait_until_settled(&app, &admin, id).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["items_count"], 4);
    let bytes = app.get(&format!("/api/v1/collections/{id}/download/"), Some(&admin)).await.bytes().await.unwrap();
    let entries = zip_entries(&bytes);
    for name in &names {
        assert!(entries.iter().any(|(n, d)| n.ends_with(&format!("-{name}")) && d == name.as_bytes()), "{name} in the archive");
    }

    let r = app.client.delete(app.url(&format!("/api/v1/admin/datasets/{a}/"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    expect(upload(&app, &admin, a, "late.png", b"late", &[]).await, 404).await;
}

/// Downloads read through the blob store's stream and answer ranges and conditional
/// requests as the file server did: 206 with Content-Range, 416 for a range past the
/// end (and for several or malformed ones), 304 for a cached copy, 412 for a stale one,
/// the same headers throughout.
#[tokio::test]
async fn downloads_answer_ranges_and_conditional_requests() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let a = dataset(&app, &admin, "ward-a").await;
    expect(upload(&app, &admin, a, "p.png", &b"0123456789".repeat(100), &[]).await, 201).await;
    let id = expect(app.post("/api/v1/collections/", &json!({"dataset_ids": [a], "limit_per_dataset": 1}), Some(&admin)).await, 201).await
        ["id"]
        .as_i64()
        .unwrap();
    assert_eq!(wait_until_settled(&app, &admin, id).await["status"], "ready");
    let path = format!("/api/v1/collections/{id}/download/");
    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = app.client.get(app.url(&path)).bearer_auth(&admin);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let whole = get(vec![]).await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    let h = whole.headers().clone();
    assert_eq!(h["content-type"], "application/zip");
    assert_eq!(h["content-disposition"], format!("attachment; filename=\"collection-{id}.zip\"").as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(h.contains_key("last-modified"));
    let etag = h["etag"].to_str().unwrap().to_string();
    let bytes = whole.bytes().await.unwrap();
    let size = bytes.len();
    assert_eq!(h["content-length"], size.to_string().as_str());

    let tail = get(vec![("range", "bytes=-22".into())]).await.unwrap();
    assert_eq!(tail.status().as_u16(), 206);
    assert_eq!(tail.headers()["content-range"], format!("bytes {}-{}/{size}", size - 22, size - 1).as_str());
    assert_eq!(tail.headers()["content-length"], "22");
    assert_eq!(tail.headers()["content-type"], "application/zip");
    assert_eq!(tail.bytes().await.unwrap(), bytes.slice(size - 22..));
    let rest = get(vec![("range", "bytes=100-".into())]).await.unwrap();
    assert_eq!(rest.status().as_u16(), 206);
    assert_eq!(rest.bytes().await.unwrap(), bytes.slice(100..));
    let clamped = get(vec![("range", format!("bytes=10-{}", size * 2))]).await.unwrap();
    assert_eq!(clamped.headers()["content-range"], format!("bytes 10-{}/{size}", size - 1).as_str());

    for range in [format!("bytes={size}-"), "bytes=0-1,5-9".into(), "lines=1-2".into()] {
        let r = get(vec![("range", range.clone())]).await.unwrap();
        // In the contract's error shape, as every client error without a JSON body
        // (`middleware::shape_errors`), so without Content-Range, as before.
        assert_eq!(r.status().as_u16(), 416, "{range}");
    }

    let cached = get(vec![("if-none-match", etag.clone())]).await.unwrap();
    assert_eq!(cached.status().as_u16(), 304);
    assert_eq!(cached.headers()["etag"], etag.as_str());
    let stale = get(vec![("if-match", "\"something-else\"".into())]).await.unwrap();
    assert_eq!(stale.status().as_u16(), 412);
}

/// The file part first, the metadata after it: the file streams into the store as it
/// arrives, and metadata that is refused afterwards leaves neither an item nor bytes.
#[tokio::test]
async fn an_items_metadata_may_follow_its_file_and_a_refused_one_leaves_no_bytes() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let ward = dataset(&app, &admin, "ward-after").await;
    let file_then = |fields: &[(&str, &str)]| {
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend(vec![7u8; 300_000]);
        body.extend(b"\r\n");
        for (name, value) in fields {
            body.extend(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
        }
        body.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    };
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let added = expect(app.medagg(&admin).add_item(ward, &content_type, file_then(&[("caption", "after the file")])).await, 201).await;
    assert_eq!((added["caption"].as_str(), added["size_bytes"].as_i64()), (Some("after the file"), Some(300_000)));

    let refused = app.medagg(&admin).add_item(ward, &content_type, file_then(&[("identifiers", "not json")])).await;
    assert_eq!(refused.status(), 400);
    let items = expect(app.medagg(&admin).items(ward).await, 200).await;
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    let stored: Vec<_> = std::fs::read_dir(app.state.config.blob_dir().join(format!("items/{ward}"))).unwrap().collect();
    assert_eq!(stored.len(), 1, "the refused upload's bytes were removed");
}
