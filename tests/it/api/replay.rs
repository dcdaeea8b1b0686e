//! Every read model rebuilt from zero equals the live one, row for row.

use medledger_domain::identity::role::{Role, Roles};
use medledger_projections::{rebuild, table_snapshot};
use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, spawn_app};
use serde_json::json;

use super::collections::{upload, wait_until_settled};
use super::expect;
use crate::on_both;

on_both!(rebuilt_read_models_equal_the_live_ones, rebuilt_read_models_equal_the_live_ones_);
async fn rebuilt_read_models_equal_the_live_ones_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let admin = app.admin().await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(app.register(&format!("r{i}@example.org")).await);
    }
    app.user_with("labeler@example.org", Roles::new([Role::Labeler, Role::Customer])).await;
    for (i, (uid, access, refresh)) in users.iter().enumerate() {
        expect(app.myo(access).update_me(&json!({"lastName": format!("Name{i}")})).await, 200).await;
        expect(app.myo(access).create_audit_log(&json!({"action": "viewed", "resource_type": "scan", "resource_id": i})).await, 201).await;
        if i % 2 == 0 {
            expect(app.myo(None).refresh(refresh).await, 200).await;
            expect(app.myo(None).refresh(refresh).await, 401).await;
        }
        if i % 3 == 0 {
            expect(app.myo(&admin).update_user(*uid, &json!({"role": "technician", "isActive": i != 0})).await, 200).await;
        }
    }
    expect(app.myo(None).password_reset("r1@example.org").await, 200).await;
    let mut live_datasets = Vec::new();
    for (slug, modality) in [("a-ct", "CT"), ("b-mr", "MR"), ("c-xr", "XR")] {
        let d = json!({"slug": slug, "title": slug, "modality": [modality], "area": "chest"});
        let created = expect(app.medagg(&admin).create_dataset(&d).await, 201).await;
        let id = created["id"].as_i64().unwrap();
        if slug == "b-mr" {
            app.medagg(&admin).retire_dataset(id).await;
        } else {
            live_datasets.push(id);
            expect(upload(&app, &admin, id, "one.png", b"1", &[("labels", "nodule")]).await, 201).await;
            expect(upload(&app, &admin, id, "two.png", b"2", &[("caption", "normal")]).await, 201).await;
        }
    }
    let owner = &users[3].1;
    for query in ["nodule", "nothing-matches-this"] {
        let body = json!({"query_text": query, "dataset_ids": live_datasets, "limit_per_dataset": 1});
        let id = expect(app.medagg(owner).request_collection(&body).await, 201).await["id"].as_i64().unwrap();
        wait_until_settled(&app, owner, id).await;
    }
    // Inference tasks: one done, one deleted after it ran.
    let image = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference/fixture_2_street_2obj.png")).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let r = app.inference(owner).create_task(1, 3, None, image.clone()).await;
        tasks.push(expect(r, 200).await["id"].as_i64().unwrap());
    }
    for id in &tasks {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while expect(app.inference(owner).status(*id).await, 200).await["status"] != "done" {
            assert!(std::time::Instant::now() < deadline, "task {id} did not finish");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    expect(app.inference(owner).delete_task(tasks[1]).await, 200).await;
    expect(app.myo(None).login(&json!({"email": "r2@example.org", "password": PASSWORD})).await, 200).await;
    let head = app.head().await;
    assert!(app.state.progress.wait_for(head, std::time::Duration::from_secs(10)).await);

    let read = &app.state.dbs.read;
    for projection in medledger_api::contexts::read_models(&Default::default()) {
        let mut live = Vec::new();
        for table in projection.tables() {
            live.push(table_snapshot(read, table).await.unwrap());
        }
        assert!(live.iter().all(|rows| !rows.is_empty()), "{} has rows", projection.name());
        let name = projection.name();
        let reached = rebuild(projection.clone(), &*app.state.dbs.store, app.state.ledger.codec(), read, |_, _| {}).await.unwrap();
        assert_eq!(reached, head);
        for (table, before) in projection.tables().iter().zip(live) {
            let after = table_snapshot(read, table).await.unwrap();
            assert_eq!(before, after, "{name}.{table} differs after replay");
        }
    }
}
