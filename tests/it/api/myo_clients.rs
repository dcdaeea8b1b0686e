//! What a real 002 (MyoMetrics) client does, and what every contract's clients do behind
//! a reverse proxy: a Next.js frontend on another origin (CORS preflights, with
//! credentials), a client written from the seed that keeps its first refresh token, a
//! DRF client paging a list, and the auth rate limit per client and endpoint class.

use std::time::Duration;

use base64::Engine as _;
use medledger_domain::identity::role::{Role, Roles};
use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, TestApp, spawn_app, spawn_with, test_config};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::expect;
use crate::on_both;

/// The seed's frontend (`FRONTEND_URL`, `CORS_ALLOWED_ORIGINS`).
const FRONTEND: &str = "http://localhost:3000";

async fn app_with(kind: Kind, configure: impl FnOnce(&mut medledger_api::Config)) -> Option<TestApp> {
    let mut config = test_config(kind).await?;
    configure(&mut config);
    Some(spawn_with(config, kind).await)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The comma-separated list of a header, lower-cased.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name).split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

/// What a browser sends before a cross-origin request with a bearer token and JSON.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn a_browser_preflight_from_the_frontend_origin_is_answered_with_credentials() {
    let Some(app) = app_with(Kind::Sqlite, |c| c.cors_origins = vec![FRONTEND.into(), "https://myometrics.com".into()]).await else {
        return;
    };
    for (path, method) in [("/api/auth/login/", "POST"), ("/api/users/", "POST"), ("/api/users/", "GET"), ("/api/users/1/", "PUT")] {
        let r = preflight(&app, path, FRONTEND, method).await;
        assert!(matches!(r.status().as_u16(), 200 | 204), "{method} {path}: {}", r.status());
        let h = r.headers();
        assert_eq!(header(h, "access-control-allow-origin"), FRONTEND, "{method} {path}");
        assert_eq!(header(h, "access-control-allow-credentials"), "true");
        assert!(list(h, "access-control-allow-methods").contains(&method.to_ascii_lowercase()), "{method} {path}: {h:?}");
        let allowed = list(h, "access-control-allow-headers");
        assert!(allowed.contains(&"authorization".into()) && allowed.contains(&"content-type".into()), "{h:?}");
        // Answered before authentication, and with the headers every answer carries.
        assert_eq!(header(h, "x-content-type-options"), "nosniff");
        assert!(!header(h, "x-request-id").is_empty());
    }
    // A page on any other origin gets nothing that lets its script read the answer.
    let r = preflight(&app, "/api/auth/login/", "http://evil.example", "POST").await;
    assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
    assert!(r.headers().get("access-control-allow-credentials").is_none());

    // The request itself, from the frontend: its answer is readable there, a refusal too.
    let r = app.myo(None).login(&json!({"email": "nobody@example.org", "password": "wrong password"})).header("origin", FRONTEND).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), FRONTEND);
    assert_eq!(header(r.headers(), "access-control-allow-credentials"), "true");
    assert!(list(r.headers(), "vary").contains(&"origin".into()));
    let exposed = list(r.headers(), "access-control-expose-headers");
    for name in ["x-total-count", "link", "retry-after", "x-request-id", "idempotent-replayed"] {
        assert!(exposed.contains(&name.into()), "{name} not exposed: {exposed:?}");
    }
    let (_, access, _) = app.register("frontend@example.org").await;
    let r = app.myo(&access).me().header("origin", "https://myometrics.com").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), "https://myometrics.com");
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let r = preflight(&app, "/api/auth/login/", FRONTEND, "POST").await;
    assert!(r.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", r.headers());
    let r = app.myo(None).health().header("origin", FRONTEND).await;
    assert!(r.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", r.headers());
}

#[tokio::test]
async fn a_configured_origin_that_is_not_an_origin_stops_the_server_from_starting() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.cors_origins = vec!["*".into()];
    let err = medledger_api::build(config.clone()).await.err().expect("a wildcard with credentials is refused");
    assert!(err.to_string().contains("MEDLEDGER_CORS_ORIGINS"), "{err}");
    config.cors_origins = vec![];
    config.trusted_proxies = vec!["proxy.internal".into()];
    let err = medledger_api::build(config).await.err().expect("a proxy that is no address is refused");
    assert!(err.to_string().contains("MEDLEDGER_TRUSTED_PROXIES"), "{err}");
}

/// The `jti` of a refresh token: which token it is, whatever its signature bytes.
fn token_id(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    claims["jti"].as_str().expect("jti").to_string()
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.myo(None).refresh(token).await
}

on_both!(a_client_that_keeps_its_first_refresh_token_gets_a_grace_window, keeps_first_refresh_token);
async fn keeps_first_refresh_token(kind: Kind) {
    let grace = Duration::from_secs(3);
    let Some(app) = app_with(kind, |c| c.contexts.identity.refresh_grace = grace).await else { return };
    let (user_id, _, first) = app.register("seed@example.org").await;
    // Two tabs refresh at once, or one retries: both with the token from the login.
    let a = expect(refresh(&app, &first).await, 200).await;
    let b = expect(refresh(&app, &first).await, 200).await;
    // The same answer: the refresh token the rotation made, and a working access token.
    assert_eq!(token_id(a["refresh"].as_str().unwrap()), token_id(b["refresh"].as_str().unwrap()));
    assert_ne!(token_id(&first), token_id(a["refresh"].as_str().unwrap()));
    for answer in [&a, &b] {
        expect(app.myo(answer["access"].as_str()).me().await, 200).await;
    }
    let access = b["access"].as_str().unwrap().to_string();
    // After the window the old token is reuse again: the session ends.
    tokio::time::sleep(grace + Duration::from_millis(300)).await;
    expect(refresh(&app, &first).await, 401).await;
    expect(app.myo(&access).me().await, 401).await;
    expect(refresh(&app, a["refresh"].as_str().unwrap()).await, 401).await;
    let admin = app.admin().await;
    for (action, n) in [("refresh_token_reissued", 1), ("refresh_token_reuse_detected", 1)] {
        let log = expect(app.myo(&admin).audit_logs(&format!("action={action}&user_id={user_id}")).await, 200).await;
        assert_eq!(log["count"], n, "{action}: {log}");
    }
}

#[tokio::test]
async fn health_keeps_the_seeds_services_and_adds_its_own() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let h = expect(app.myo(None).health().await, 200).await;
    let services = h["services"].as_object().expect("services");
    let keys: Vec<&str> = services.keys().map(String::as_str).collect();
    for key in ["database", "redis", "email", "microservice", "projections"] {
        assert!(keys.contains(&key), "{key} missing: {h}");
    }
    assert_eq!(h["services"]["redis"], "not_used");
    assert_eq!(h["services"]["database"], "up");
    let engine =
        if app.state.get::<medledger_application::inference::InferenceTasks>().unwrap().engine_available() { "up" } else { "down" };
    assert_eq!(h["services"]["microservice"], engine, "{h}");
}

on_both!(drf_pages_past_the_end_are_404_and_links_follow_the_client, drf_pages);
async fn drf_pages(kind: Kind) {
    let Some(app) = app_with(kind, |c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await else { return };
    let admin = app.admin().await;
    for i in 0..4 {
        app.register(&format!("u{i}@example.org")).await;
    }
    // Five users, two a page: pages 1..=3; `last` is 3; 4 is past the end.
    let b = expect(app.myo(&admin).users("page_size=2&page=last").await, 200).await;
    assert_eq!((b["count"].as_i64(), b["results"].as_array().map(Vec::len)), (Some(5), Some(1)));
    assert!(b["next"].is_null());
    for page in ["4", "9223372036854775807"] {
        let b = expect(app.myo(&admin).users(&format!("page_size=2&page={page}")).await, 404).await;
        assert_eq!(b, json!({"detail": "Invalid page.", "code": "not_found", "field_errors": {}}), "page {page}");
    }
    // A page that is no page number at all names the field.
    let b = expect(app.myo(&admin).users("page=abc").await, 400).await;
    assert!(b["field_errors"]["page"].is_array(), "{b}");
    // An empty list still has its first page.
    let b = expect(app.myo(&admin).audit_logs("action=nothing_like_this").await, 200).await;
    assert_eq!((b["count"].as_i64(), b["next"].is_null(), b["previous"].is_null()), (Some(0), true, true));
    expect(app.myo(&admin).audit_logs("action=nothing_like_this&page=2").await, 404).await;

    // Links name the host the client used...
    let users = |query: &str| app.myo(&admin).users(query);
    let b = expect(users("page_size=2&page=2").header("host", "myometrics.test:8001").await, 200).await;
    assert_eq!(b["next"], "http://myometrics.test:8001/api/users/?page=3&page_size=2");
    assert_eq!(b["previous"], "http://myometrics.test:8001/api/users/?page=1&page_size=2");
    // ...and, through a trusted proxy, the scheme and host it forwards.
    let b = expect(
        users("page_size=2&search=example")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "myometrics.com")
            .header("x-forwarded-for", "198.51.100.7")
            .await,
        200,
    )
    .await;
    assert_eq!(b["next"], "https://myometrics.com/api/users/?search=example&page=2&page_size=2");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_do_not_change_links() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    for i in 0..2 {
        app.register(&format!("v{i}@example.org")).await;
    }
    let r = app.myo(&admin).users("page_size=1").header("x-forwarded-proto", "https").header("x-forwarded-host", "evil.example").await;
    let b = expect(r, 200).await;
    assert_eq!(b["next"], format!("{}/api/users/?page=2&page_size=1", app.base));
}

on_both!(users_of_other_contracts_show_the_nearest_002_role, nearest_002_role);
async fn nearest_002_role(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let admin = app.admin().await;
    // As 001's invitations and 003's admin make them.
    let labeler = app.user_with("lab@example.org", Roles::new([Role::Labeler])).await;
    app.user_with("cust@example.org", Roles::new([Role::Customer])).await;
    app.user_with("both@example.org", Roles::new([Role::Technician, Role::Universal])).await;
    let me = expect(app.myo(&labeler).me().await, 200).await;
    assert_eq!((me["role"].as_str(), &me["roles"]), (Some("technician"), &json!(["labeler"])));
    let login = expect(app.myo(None).login(&json!({"email": "cust@example.org", "password": PASSWORD})).await, 200).await;
    assert_eq!((login["user"]["role"].as_str(), &login["user"]["roles"]), (Some("doctor"), &json!(["customer"])));
    let all = expect(app.myo(&admin).users("page_size=50").await, 200).await;
    for u in all["results"].as_array().expect("results") {
        assert!(["admin", "doctor", "technician"].contains(&u["role"].as_str().unwrap_or("")), "{u}");
    }
    // Filtering by a 002 role finds the users who show it.
    let tech = expect(app.myo(&admin).users("role=technician").await, 200).await;
    let emails: Vec<&str> = tech["results"].as_array().expect("results").iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!((tech["count"].as_i64(), emails), (Some(2), vec!["lab@example.org", "both@example.org"]));
    // Another contract's role filters by the role held.
    let held = expect(app.myo(&admin).users("role=universal").await, 200).await;
    assert_eq!(held["count"], 1);
}

/// A failed 002 login from `client` (its address as the proxy forwards it, if any).
async fn failed_login(app: &TestApp, forwarded_for: Option<&str>) -> u16 {
    let mut login = app.myo(None).login(&json!({"email": "who@example.org", "password": "not it"}));
    if let Some(ip) = forwarded_for {
        login = login.header("x-forwarded-for", ip);
    }
    login.await.status().as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_auth_limit_and_address() {
    let Some(app) = app_with(Kind::Sqlite, |c| {
        c.auth_rate_limit = 2;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    else {
        return;
    };
    // Two clients behind the one proxy address.
    assert_eq!(failed_login(&app, Some("198.51.100.1")).await, 401);
    assert_eq!(failed_login(&app, Some("198.51.100.1")).await, 401);
    assert_eq!(failed_login(&app, Some("198.51.100.1")).await, 429);
    assert_eq!(failed_login(&app, Some("203.0.113.5, 198.51.100.2")).await, 401, "the right-most address is the client");
    // The address recorded with what a client does is the forwarded one.
    let r = app
        .myo(None)
        .register(&json!({"email": "proxied@example.org", "password": PASSWORD, "firstName": "P", "lastName": "Q"}))
        .header("x-forwarded-for", "198.51.100.9")
        .await;
    let user_id = expect(r, 201).await["user"]["id"].as_i64().expect("id");
    let admin = app.user_with("boss@example.org", Roles::new([Role::Admin])).await;
    let log = expect(app.myo(&admin).audit_logs(&format!("user_id={user_id}")).await, 200).await;
    let addresses: Vec<&Value> = log["results"].as_array().expect("results").iter().map(|e| &e["ip_address"]).collect();
    assert!(!addresses.is_empty() && addresses.iter().all(|ip| *ip == "198.51.100.9"), "{log}");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_dodge_the_auth_limit_with_forwarded_for() {
    let Some(app) = app_with(Kind::Sqlite, |c| c.auth_rate_limit = 2).await else { return };
    assert_eq!(failed_login(&app, Some("198.51.100.1")).await, 401);
    assert_eq!(failed_login(&app, Some("198.51.100.2")).await, 401);
    assert_eq!(failed_login(&app, Some("198.51.100.3")).await, 429, "a spoofed X-Forwarded-For is not a new client");
}

#[tokio::test]
async fn refreshing_tokens_does_not_use_up_the_logins() {
    let Some(app) = app_with(Kind::Sqlite, |c| {
        c.auth_rate_limit = 2;
        c.refresh_rate_limit = 4;
    })
    .await
    else {
        return;
    };
    let (_, _, mut token) = app.register("busy@example.org").await;
    // A frontend refreshing more often than it may log in.
    for _ in 0..4 {
        let b = expect(refresh(&app, &token).await, 200).await;
        token = b["refresh"].as_str().expect("refresh").to_string();
    }
    let r = refresh(&app, &token).await;
    assert!(r.headers().get("retry-after").is_some());
    expect(r, 429).await;
    // Its user can still log in, twice, and then that bucket is full.
    app.login("busy@example.org").await;
    app.login("busy@example.org").await;
    assert_eq!(failed_login(&app, None).await, 429);
    // And a password reset is a class of its own.
    expect(app.myo(None).password_reset("busy@example.org").await, 200).await;
}
