//! Bad input gets a clear 4xx in the contract's own shape, and writes nothing.

use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, spawn_app};
use serde_json::{Value, json};

use super::expect;

/// A body as it is under a chosen content type, to any contract's path: bodies no
/// typed client would build, so outside the clients on purpose.
async fn raw(
    app: &medledger_tests::app::TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).header("content-type", content_type).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn is_myo(b: &Value) -> bool {
    b["detail"].is_string() && b["code"].is_string() && b["field_errors"].is_object()
}

#[tokio::test]
async fn malformed_bodies_answer_in_each_contracts_shape_and_write_nothing() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, _) = app.register("ok@example.org").await;
    let head = app.head().await;

    let b = expect(raw(&app, "/api/auth/login/", "application/json", "{\"email\": ", None).await, 400).await;
    assert!(is_myo(&b) && b["detail"].as_str().unwrap().contains("JSON parse error"), "{b}");
    let b = expect(raw(&app, "/api/v1/auth/login/", "application/json", "[1,2", None).await, 400).await;
    assert!(b["detail"].is_string() && b.as_object().unwrap().len() == 1, "{b}");
    let b = expect(raw(&app, "/auth/login", "text/plain", "username=a", None).await, 415).await;
    assert!(b["detail"].as_str().unwrap().contains("text/plain"), "{b}");
    let b = expect(raw(&app, "/api/auth/register/", "application/xml", "<a/>", None).await, 415).await;
    assert!(is_myo(&b), "{b}");
    let b = expect(raw(&app, "/login/", "application/json", "{}", None).await, 415).await;
    assert!(b["error"].is_string(), "001 shape: {b}");

    let b = expect(app.myo(None).register(&json!({"password": PASSWORD})).await, 400).await;
    assert_eq!(b["field_errors"]["email"][0], "This field is required.", "{b}");
    let b = expect(app.myo(None).register(&json!({"email": "not-an-email", "password": "short"})).await, 400).await;
    assert!(b["field_errors"]["email"].is_array() && b["field_errors"]["password"].is_array(), "every bad field is reported: {b}");
    let b = expect(app.myo(None).register(&json!({"email": 42, "password": PASSWORD})).await, 400).await;
    assert!(is_myo(&b), "{b}");

    let huge = format!("{{\"email\": \"{}\", \"password\": \"x\"}}", "a".repeat(2 * 1024 * 1024));
    let b = expect(raw(&app, "/api/auth/login/", "application/json", huge, None).await, 413).await;
    assert!(is_myo(&b), "{b}");

    let b = expect(app.myo(&access).create_audit_log(&json!({"action": "", "resource_type": "x".repeat(60)})).await, 400).await;
    assert!(b["field_errors"]["action"].is_array() && b["field_errors"]["resource_type"].is_array(), "{b}");

    let b = expect(app.client.delete(app.url("/api/auth/login/")).send().await.unwrap(), 405).await;
    assert!(is_myo(&b), "{b}");
    let b = expect(app.get("/api/v1/nothing-here/", None).await, 404).await;
    assert_eq!(b, json!({"detail": "Not found."}));
    let b = expect(app.get("/api/processing/nothing/", None).await, 404).await;
    assert!(b["error"].is_string(), "{b}");

    assert_eq!(app.head().await, head, "no rejected request appended anything");
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, refresh) = app.register("tok@example.org").await;
    expect(app.myo(None).me().await, 401).await;
    expect(app.myo("garbage").me().await, 401).await;
    // A refresh token is not an access token.
    expect(app.myo(&refresh).me().await, 401).await;
    // Signed with another key.
    let foreign =
        medledger_infrastructure::jwt::JwtService::new(b"someone else's key", chrono::Duration::minutes(5), chrono::Duration::days(1));
    use medledger_application::ports::TokenService as _;
    let claims = app.state.accounts.tokens().verify_access(&access).unwrap();
    let forged = foreign.issue_access(&claims).unwrap();
    expect(app.myo(&forged).me().await, 401).await;
    // alg: none with the real claims.
    let mut parts = access.split('.');
    let (_, body) = (parts.next(), parts.next().unwrap());
    use base64::Engine as _;
    let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let b = expect(app.myo(&format!("{none_header}.{body}.")).me().await, 401).await;
    assert!(b["detail"].is_string());
    // Expired.
    let secret = app.config.secret_key.as_ref().unwrap().expose().to_string();
    let key = medledger_infrastructure::crypto::SecretKey::derive(secret.as_bytes(), "jwt-hs256");
    let expired = medledger_infrastructure::jwt::JwtService::new(key.as_bytes(), chrono::Duration::minutes(-5), chrono::Duration::days(1));
    let b = expect(app.myo(&expired.issue_access(&claims).unwrap()).me().await, 401).await;
    assert_eq!(b["detail"], "Token is expired");
    expect(app.myo(&access).me().await, 200).await;
}

#[tokio::test]
async fn sql_metacharacters_are_just_text() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let nasty = "Robert'); DROP TABLE users;--";
    let r = app
        .post(
            "/api/auth/register/",
            &json!({"email": "bobby@example.org", "password": PASSWORD, "firstName": nasty, "lastName": "\" OR 1=1 --"}),
            None,
        )
        .await;
    let b = expect(r, 201).await;
    assert_eq!(b["user"]["firstName"], nasty);
    let admin = app.admin().await;
    for q in ["%", "_", "' OR '1'='1", "\\", "%' --"] {
        let b = expect(app.myo(&admin).users(&format!("search={}", urlencode(q))).await, 200).await;
        assert_eq!(b["count"], 0, "search {q:?} must match literally: {b}");
    }
    // Past the end of any list: DRF's 404 (an offset that does not fit is not computed).
    let b = expect(app.myo(&admin).users("page=9223372036854775807").await, 404).await;
    assert_eq!(b["detail"], "Invalid page.");
    let b = expect(app.myo(&admin).users(&format!("search={}", urlencode("DROP TABLE"))).await, 200).await;
    assert_eq!(b["count"], 1);
    let b = expect(app.myo(&admin).audit_logs(&format!("action={}", urlencode("x' OR 1=1 --"))).await, 200).await;
    assert_eq!(b["count"], 0);
    expect(app.medagg(None).login(&json!({"username": "' OR 1=1 --", "password": "' OR 1=1 --"})).await, 401).await;
    expect(app.get("/api/users/1 OR 1=1/", Some(&admin)).await, 404).await;
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn auth_endpoints_are_rate_limited_per_client() {
    let Some(mut config) = medledger_tests::app::test_config(Kind::Sqlite).await else { return };
    config.auth_rate_limit = 3;
    let app = medledger_tests::app::spawn_with(config, Kind::Sqlite).await;
    for _ in 0..3 {
        expect(app.medagg(None).login(&json!({"username": "x@example.org", "password": "y"})).await, 401).await;
    }
    let r = app.myo(None).login(&json!({"email": "x@example.org", "password": "y"})).await;
    let retry: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry));
    assert!(is_myo(&expect(r, 429).await));
    // Non-auth endpoints are not counted against it.
    expect(app.ops(None).healthz().await, 200).await;
}
