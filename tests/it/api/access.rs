//! Every request is judged on the caller's current state (issue 15, item 1): a token
//! outlives neither a demotion, a deactivation, a logout nor a password change, on
//! every contract's extractor, and nobody changes their own roles or activation.
//! The 001 browser session is an opaque cookie bound to a session in the history
//! (item 4).

use medledger_domain::identity::role::{Role, Roles};
use medledger_tests::app::{PASSWORD, TestApp, spawn_app, spawn_with, test_config};
use medledger_tests::{Kind, temp_dir};
use reqwest::Response;
use serde_json::{Value, json};

use super::expect;
use crate::on_both;

async fn my_id(app: &TestApp, token: &str) -> i64 {
    expect(app.myo(token).me().await, 200).await["id"].as_i64().expect("id")
}

on_both!(a_demoted_then_deactivated_admin_loses_every_right_at_once, a_demoted_then_deactivated_admin_loses_every_right_at_once_);
async fn a_demoted_then_deactivated_admin_loses_every_right_at_once_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let root = app.admin().await;
    let root_id = my_id(&app, &root).await;
    let mallory = app.user_with("mallory@example.org", Roles::new([Role::Admin])).await;
    let mallory_id = my_id(&app, &mallory).await;
    expect(app.myo(&mallory).users("").await, 200).await;
    // Someone's inference task, which an admin may open (004).
    let (_, owner, _) = app.register("owner@example.org").await;
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference/fixture_2_street_2obj.png")).unwrap();
    let task = app.inference(&owner).create_task(1, 3, Some("image/png"), png).await;
    let task = expect(task, 200).await["id"].as_i64().unwrap();
    expect(app.inference(&mallory).status(task).await, 200).await;

    expect(app.myo(&root).update_user(mallory_id, &json!({"roles": ["doctor"]})).await, 200).await;
    // The token she holds still says admin; the history says doctor.
    expect(app.myo(&mallory).users("").await, 403).await;
    expect(app.myo(&mallory).update_user(root_id, &json!({"roles": ["doctor"]})).await, 403).await;
    let undo = json!({"roles": ["admin"], "isActive": true});
    expect(app.myo(&mallory).update_user(mallory_id, &undo).await, 403).await;
    let dataset = json!({"slug": "taken-over", "title": "Taken over", "modality": ["CT"], "area": "chest"});
    expect(app.medagg(&mallory).create_dataset(&dataset).await, 403).await;
    expect(app.ops(&mallory).events("").await, 403).await;
    expect(app.inference(&mallory).status(task).await, 404).await;
    let me = expect(app.myo(&mallory).me().await, 200).await;
    assert_eq!(me["role"], "doctor");
    let root_row = expect(app.myo(&root).user(root_id).await, 200).await;
    assert_eq!(root_row["role"], "admin", "the demoted admin changed nothing");

    expect(app.myo(&root).update_user(mallory_id, &json!({"isActive": false})).await, 200).await;
    let b = expect(app.myo(&mallory).me().await, 401).await;
    assert_eq!(b["code"], "user_inactive", "{b}");
    expect(app.medagg(&mallory).datasets("").await, 401).await;
    assert_eq!(expect(app.inference(&mallory).tasks("").await, 401).await, json!({"detail": "Not authenticated"}));
}

#[tokio::test]
async fn nobody_changes_their_own_roles_or_activation() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let root = app.admin().await;
    let root_id = my_id(&app, &root).await;
    for change in [json!({"roles": ["doctor"]}), json!({"role": "technician"}), json!({"isActive": false})] {
        let b = expect(app.myo(&root).update_user(root_id, &change).await, 403).await;
        assert_eq!(b["detail"], "You cannot change your own roles or activation.", "{b}");
    }
    // Sending back what is already there changes nothing, and is no attempt.
    let same =
        expect(app.myo(&root).update_user(root_id, &json!({"roles": ["admin"], "isActive": true, "clinicName": "HQ"})).await, 200).await;
    assert_eq!((same["role"].as_str(), same["isActive"].as_bool(), same["clinicName"].as_str()), (Some("admin"), Some(true), Some("HQ")));
    expect(app.myo(&root).users("").await, 200).await;
}

on_both!(logging_out_ends_the_access_token_on_every_contract, logging_out_ends_the_access_token_on_every_contract_);
async fn logging_out_ends_the_access_token_on_every_contract_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (_, access, refresh) = app.register("lou@example.org").await;
    expect(app.myo(&access).me().await, 200).await;
    expect(app.medagg(&access).datasets("").await, 200).await;
    expect(app.inference(&access).tasks("").await, 200).await;
    expect(app.myo(&access).logout(&refresh).await, 200).await;
    let b = expect(app.myo(&access).me().await, 401).await;
    assert_eq!(b["code"], "token_not_valid", "{b}");
    expect(app.medagg(&access).datasets("").await, 401).await;
    assert_eq!(expect(app.inference(&access).tasks("").await, 401).await, json!({"detail": "Not authenticated"}));
}

#[tokio::test]
async fn a_password_change_ends_the_access_tokens_of_earlier_sessions() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, first, _) = app.register("pia@example.org").await;
    let second = app.login("pia@example.org").await;
    let change = json!({"old_password": PASSWORD, "new_password": "a stronger secret"});
    expect(app.myo(&first).change_password(&change).await, 200).await;
    for token in [&first, &second] {
        expect(app.myo(token).me().await, 401).await;
    }
    let fresh = expect(app.myo(None).login(&json!({"email": "pia@example.org", "password": "a stronger secret"})).await, 200).await;
    expect(app.myo(fresh["access"].as_str()).me().await, 200).await;
}

/// Two servers on one PostgreSQL database: what one records, the other judges by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_on_one_server_holds_on_the_other() {
    let Some(config) = test_config(Kind::Postgres).await else { return };
    let mut second = config.clone();
    second.data_dir = temp_dir("second-server");
    let one = spawn_with(config, Kind::Postgres).await;
    let two = spawn_with(second, Kind::Postgres).await;
    let root = one.admin().await;
    let eve = one.user_with("eve@example.org", Roles::new([Role::Admin])).await;
    let eve_id = my_id(&one, &eve).await;
    // A token issued by one server an instant ago is good on the other.
    let login = json!({"username": "eve@example.org", "password": PASSWORD});
    let from_two = expect(two.medagg(None).login(&login).await, 200).await;
    expect(one.myo(from_two["access_token"].as_str()).users("").await, 200).await;

    expect(two.myo(&root).update_user(eve_id, &json!({"roles": ["doctor"]})).await, 200).await;
    let demoted_at = two.head().await;
    let reached = one.state.progress.wait_for_one("access", demoted_at, std::time::Duration::from_secs(3)).await;
    assert!(reached, "the other server did not read the demotion");
    expect(one.myo(&eve).users("").await, 403).await;
}

fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().and_then(|kv| kv.split_once('=')).map(|(_, v)| v.to_string()).unwrap_or_default()
}

/// A browser's login through 001: the CSRF cookie from `GET /login/`, then the form.
/// Returns (session cookie header value `name=value`, CSRF token after login).
async fn browser_login(app: &TestApp, user: &str, session_name: &str) -> (String, String) {
    let page = app.scans(None).login_page().await;
    let csrf = cookie_value(&set_cookie(&page, "csrftoken").expect("csrftoken"));
    let form = [("username", user), ("password", PASSWORD), ("csrfmiddlewaretoken", csrf.as_str())];
    let r = app.scans(None).login(&form).header("cookie", format!("csrftoken={csrf}")).await;
    let session = set_cookie(&r, session_name).expect("session cookie");
    let csrf_after = cookie_value(&set_cookie(&r, "csrftoken").expect("rotated csrftoken"));
    expect(r, 200).await;
    (format!("{session_name}={}", cookie_value(&session)), csrf_after)
}

async fn health(app: &TestApp, cookie: &str) -> Response {
    app.scans(None).processing_health().header("cookie", cookie).await
}

#[tokio::test]
async fn the_browser_session_is_an_opaque_cookie_bound_to_a_session() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let root = app.admin().await;
    let (kim_id, _, _) = app.register("kim@example.org").await;
    let (session, csrf) = browser_login(&app, "kim@example.org", "sessionid").await;
    let value = session.split_once('=').map(|(_, v)| v.to_string()).unwrap();
    assert!(!value.contains('.'), "the session cookie is not a token: {value}");
    let b = expect(app.myo(None).refresh(&value).await, 401).await;
    assert_eq!(b["code"], "token_not_valid");
    let b = expect(health(&app, &session).await, 200).await;
    assert_eq!((b["success"].as_bool(), b["pending_jobs"].as_i64()), (Some(true), Some(0)), "{b}");
    assert_eq!(expect(health(&app, "sessionid=made-up").await, 401).await, json!({"error": "Authentication required"}));
    assert_eq!(expect(app.scans(None).processing_health().await, 401).await, json!({"error": "Authentication required"}));

    // Logout needs the CSRF token of this session; then the cookie is dead.
    let other = app.scans(None).login_page().await;
    let anonymous = cookie_value(&set_cookie(&other, "csrftoken").unwrap());
    let logout =
        |token: String| app.scans(None).logout().header("cookie", format!("{session}; csrftoken={token}")).header("x-csrftoken", token);
    expect(logout(anonymous).await, 403).await;
    expect(logout(csrf).await, 200).await;
    expect(health(&app, &session).await, 401).await;

    // A password change ends a browser session too.
    let (session, _) = browser_login(&app, "kim@example.org", "sessionid").await;
    let token = app.login("kim@example.org").await;
    let change = json!({"old_password": PASSWORD, "new_password": PASSWORD.repeat(2)});
    expect(app.myo(&token).change_password(&change).await, 200).await;
    expect(health(&app, &session).await, 401).await;
    let back = json!({"old_password": PASSWORD.repeat(2), "new_password": PASSWORD});
    let token =
        expect(app.myo(None).login(&json!({"email": "kim@example.org", "password": PASSWORD.repeat(2)})).await, 200).await["access"]
            .as_str()
            .unwrap()
            .to_string();
    expect(app.myo(&token).change_password(&back).await, 200).await;

    // A deactivation ends a live browser session at once.
    let (session, _) = browser_login(&app, "kim@example.org", "sessionid").await;
    expect(health(&app, &session).await, 200).await;
    expect(app.myo(&root).update_user(kim_id, &json!({"isActive": false})).await, 200).await;
    expect(health(&app, &session).await, 401).await;
}

#[tokio::test]
async fn the_login_page_never_adopts_a_csrf_token_the_client_chose() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("lia@example.org").await;
    let chosen = "a".repeat(64);
    let page = app.scans(None).login_page().header("cookie", format!("csrftoken={chosen}")).await;
    let issued = cookie_value(&set_cookie(&page, "csrftoken").unwrap());
    assert_ne!(issued, chosen);
    let form = [("username", "lia@example.org"), ("password", PASSWORD), ("csrfmiddlewaretoken", chosen.as_str())];
    let r = app.scans(None).login(&form).header("cookie", format!("csrftoken={chosen}")).await;
    assert_eq!(expect(r, 403).await, json!({"error": "CSRF verification failed. Request aborted."}));
    // A token the server made is kept on the next visit.
    let again = app.scans(None).login_page().header("cookie", format!("csrftoken={issued}")).await;
    assert_eq!(cookie_value(&set_cookie(&again, "csrftoken").unwrap()), issued);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure_and_host_bound() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.https = true;
    let app = spawn_with(config, Kind::Sqlite).await;
    app.register("max@example.org").await;
    let page = app.scans(None).login_page().await;
    let csrf_cookie = set_cookie(&page, "csrftoken").unwrap();
    assert!(csrf_cookie.contains("; Secure"), "{csrf_cookie}");
    let csrf = cookie_value(&csrf_cookie);
    let form = [("username", "max@example.org"), ("password", PASSWORD), ("csrfmiddlewaretoken", csrf.as_str())];
    let r = app.scans(None).login(&form).header("cookie", format!("csrftoken={csrf}")).await;
    let session = set_cookie(&r, "__Host-sessionid").expect("__Host- session cookie");
    assert!(session.contains("; Secure") && session.contains("HttpOnly") && session.contains("Path=/"), "{session}");
    assert!(!session.contains("Domain="), "{session}");
    assert!(set_cookie(&r, "sessionid").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], true);
    expect(health(&app, &format!("__Host-sessionid={}", cookie_value(&session))).await, 200).await;
}

#[tokio::test]
async fn a_stored_idempotent_answer_is_not_replayed_to_a_deactivated_user() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let root = app.admin().await;
    let (uid, access, _) = app.register("ida@example.org").await;
    let entry = json!({"action": "upload_created", "resource_type": "upload", "resource_id": "u1", "details": {}});
    let send = || app.myo(&access).create_audit_log(&entry).header("idempotency-key", "k-1");
    expect(send().await, 201).await;
    let again = send().await;
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    expect(app.myo(&root).update_user(uid, &json!({"isActive": false})).await, 200).await;
    let refused = send().await;
    assert!(refused.headers().get("idempotent-replayed").is_none());
    assert_eq!(expect(refused, 401).await["code"], "user_inactive");
}

/// A request's credentials are judged again once its body has arrived: a body held back
/// while its sender is demoted changes nothing.
#[tokio::test]
async fn a_slow_body_from_an_admin_demoted_meanwhile_changes_nothing() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let root = app.admin().await;
    let bea = app.user_with("bea@example.org", Roles::new([Role::Admin])).await;
    let bea_id = my_id(&app, &bea).await;
    let (target, _, _) = app.register("target@example.org").await;
    let body = json!({"roles": ["admin"]}).to_string();
    let (head, last) = body.split_at(body.len() - 1);
    let mut conn = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let request = format!(
        "PUT /api/users/{target}/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {bea}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{head}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    expect(app.myo(&root).update_user(bea_id, &json!({"roles": ["doctor"]})).await, 200).await;
    conn.write_all(last.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let row = expect(app.myo(&root).user(target).await, 200).await;
    assert_eq!(row["role"], "doctor", "the demoted admin's request made someone admin");
}

#[tokio::test]
async fn a_cookie_whose_position_was_edited_is_refused_at_once() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("ned@example.org").await;
    let (session, _) = browser_login(&app, "ned@example.org", "sessionid").await;
    expect(health(&app, &session).await, 200).await;
    let (name, value) = session.split_once('=').unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 3, "{value}");
    // A position far past the history would make the server wait for it.
    let edited = format!("{name}={}-{}-{}", parts[0], i64::MAX, parts[2]);
    let started = std::time::Instant::now();
    assert_eq!(expect(health(&app, &edited).await, 401).await, json!({"error": "Authentication required"}));
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "the server waited for a position the client made up");
}

#[tokio::test]
async fn a_bearer_logout_on_001_ends_the_tokens_session() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, _) = app.register("oda@example.org").await;
    let r = app.scans(&access).logout().await;
    assert_eq!(expect(r, 200).await, json!({"success": true}));
    expect(app.myo(&access).me().await, 401).await;
}
