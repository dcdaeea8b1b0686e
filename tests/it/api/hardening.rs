//! Issue 15's deployment hardening: who may read `/metrics` and where, no credentials in
//! the idempotency table, private files, security headers, slow clients, passwords.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use medledger_api::Config;
use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, spawn_app, spawn_with, test_config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::expect;

#[tokio::test]
async fn metrics_on_the_main_port_are_for_admins_only() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let user = app.register("m@example.org").await.1;
    let r = expect(app.ops(None).metrics().await, 401).await;
    assert!(r["detail"].is_string(), "{r}");
    expect(app.ops(&user).metrics().await, 403).await;
    let r = app.ops(&app.admin().await).metrics().await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("medledger_http_requests_total"), "{text}");
}

/// A server built by hand: the harness does not expose the metrics listener.
async fn serve(config: Config) -> (String, Option<SocketAddr>, tokio::sync::oneshot::Sender<()>, medledger_api::state::AppState) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = medledger_api::build(config).await.unwrap();
    let metrics = app.metrics_addr();
    let state = app.state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.serve(listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (base, metrics, tx, state)
}

#[tokio::test]
async fn with_a_metrics_address_metrics_are_served_there_without_login_and_not_on_the_main_port() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.metrics_bind = Some("127.0.0.1:0".into());
    let (base, metrics, _stop, state) = serve(config).await;
    let metrics = metrics.expect("a metrics listener");
    let form = medledger_application::identity::accounts::Registration {
        email: "root@example.org".into(),
        password: PASSWORD.into(),
        roles: medledger_domain::identity::role::Roles::new([medledger_domain::identity::role::Role::Admin]),
        ..Default::default()
    };
    let (_, position) =
        state.accounts.register(form, &medledger_application::metadata::CommandContext::system()).await.expect("create the admin");
    state.caught_up(position).await;
    let http = reqwest::Client::new();
    let login = http.post(format!("{base}/api/auth/login/")).json(&json!({"email": "root@example.org", "password": PASSWORD}));
    let admin = expect(login.send().await.unwrap(), 200).await["access"].as_str().unwrap().to_string();

    let r = http.get(format!("http://{metrics}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.text().await.unwrap().contains("medledger_head_position"));
    // Nothing else is served there.
    assert_eq!(http.get(format!("http://{metrics}/api/verify")).bearer_auth(&admin).send().await.unwrap().status(), 404);
    // And the main port does not serve metrics at all, not even to an admin.
    assert_eq!(http.get(format!("{base}/metrics")).bearer_auth(&admin).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 404);
    let doc: Value = http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"].get("/metrics").is_none(), "the document does not list what the port does not serve");
}

#[tokio::test]
async fn a_refresh_with_an_idempotency_key_leaves_no_token_in_the_idempotency_table() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, refresh) = app.register("idem@example.org").await;
    let r = app.myo(&access).refresh(&refresh).header("idempotency-key", "refresh-once").await;
    assert_eq!(r.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    let tokens = expect(r, 200).await;
    let (new_access, new_refresh) = (tokens["access"].as_str().unwrap(), tokens["refresh"].as_str().unwrap());
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM idempotency_keys").fetch_all(&app.state.dbs.aux).await.unwrap();
    for body in &bodies {
        assert!(!body.contains(new_access) && !body.contains(new_refresh), "a live token was stored: {body}");
    }
    assert!(bodies.is_empty(), "a response with credentials was recorded: {bodies:?}");

    // An ordinary command with a key is still recorded and replayed.
    let entry = json!({"action": "viewed", "resource_type": "study", "resource_id": "s1", "details": {}});
    let post = || app.myo(&access).create_audit_log(&entry).header("idempotency-key", "audit-1");
    expect(post().await, 201).await;
    let again = post().await;
    assert_eq!(again.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
}

#[tokio::test]
async fn every_response_that_hands_out_credentials_says_no_store() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let r = app.myo(None).register(&json!({"email": "ns@example.org", "password": PASSWORD})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store", "002 register");
    let creds = json!({"email": "ns@example.org", "username": "ns@example.org", "password": PASSWORD});
    for (login, call) in [
        ("002 login", app.myo(None).login(&creds)),
        ("000 login", app.medagg(None).login(&creds)),
        ("003 login", app.labeling(None).login(&creds)),
    ] {
        let r = call.await;
        assert_eq!(r.status(), 200, "{login}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{login}");
    }
    let r = app.inference(None).oauth_login(&[("username", "ns@example.org"), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store", "004 login");
    // 001's cookie login, refused here for want of a CSRF token, is marked all the same
    // (at its slash-less path, as a client may write it).
    let r = app.client.post(app.url("/login")).form(&[("username", "ns@example.org"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store", "001 login ({})", r.status());
    // Ordinary reads are not.
    assert!(app.ops(None).healthz().await.headers().get("cache-control").is_none());
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Every file and directory under `dir`, itself included.
fn tree(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { tree(&path, out) } else { out.push(path) }
    }
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_the_server_users_alone() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    // The secret generated into the data directory, as a default install has it.
    config.secret_key = None;
    let dir = config.data_dir.clone();
    // A directory that exists already, readable by all (an older version made it so).
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let app = spawn_with(config, Kind::Sqlite).await;
    let admin = app.admin().await;
    let dataset = json!({"slug": "ward", "title": "Ward", "modality": ["XR"], "area": "chest"});
    let dataset = expect(app.medagg(&admin).create_dataset(&dataset).await, 201).await["id"].as_i64().unwrap();
    expect(super::collections::upload(&app, &admin, dataset, "scan.png", b"PIXELS", &[]).await, 201).await;
    app.register("mail@example.org").await;
    expect(app.myo(None).password_reset("mail@example.org").await, 200).await;
    let outbox = dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&outbox).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no reset mail arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(mode(&dir), 0o700, "the data directory");
    for file in ["events.db", "read.db", "secret.key"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let mut paths = Vec::new();
    for sub in ["blobs", "outbox"] {
        tree(&dir.join(sub), &mut paths);
    }
    paths.extend(std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(".db-")));
    assert!(paths.iter().any(|p| p.extension().is_some_and(|e| e == "eml")), "{paths:?}");
    assert!(paths.iter().filter(|p| p.is_file()).count() >= 4, "a blob, a mail and the journals: {paths:?}");
    for path in paths {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_hsts_only_over_https() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let responses = [
        (200, app.ops(None).healthz().await),
        (404, app.get("/no/such/route", None).await),
        (401, app.myo(None).me().await),
        (405, app.client.delete(app.url("/healthz")).send().await.unwrap()),
    ];
    for (status, r) in &responses {
        assert_eq!(r.status().as_u16(), *status);
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{status}");
        assert_eq!(h["x-frame-options"], "DENY", "{status}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{status}");
        assert!(h.get("strict-transport-security").is_none(), "no HSTS over plain HTTP ({status})");
    }

    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.https = true;
    let app = spawn_with(config, Kind::Sqlite).await;
    for path in ["/healthz", "/no/such/route", "/api/auth/user/"] {
        let r = app.get(path, None).await;
        let hsts = r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_string());
        assert!(hsts.as_deref().is_some_and(|v| v.starts_with("max-age=")), "{path}: {hsts:?}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
}

/// Small limits so that the slow clients below are found out in about a second.
async fn impatient_config() -> Option<Config> {
    let mut config = test_config(Kind::Sqlite).await?;
    config.header_timeout = Duration::from_secs(1);
    config.body_timeout = Duration::from_secs(1);
    config.body_min_rate = 100;
    Some(config)
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Writes `bytes` one a second while reading whatever the server says; returns what it
/// said and when the connection ended (None: still open after `give_up`).
async fn dribble(base: &str, head: &[u8], bytes: &[u8], give_up: Duration) -> (String, Option<Duration>) {
    let stream = TcpStream::connect(addr(base)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    write.write_all(head).await.unwrap();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        for b in bytes {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Stay open: only the server may end this connection.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = loop {
        let left = give_up.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(n)) => said.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    writer.abort();
    (String::from_utf8_lossy(&said).into_owned(), ended)
}

#[tokio::test]
async fn headers_sent_one_byte_a_second_lose_the_connection() {
    let Some(config) = impatient_config().await else { return };
    let app = spawn_with(config, Kind::Sqlite).await;
    let (said, ended) = dribble(&app.base, b"", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", Duration::from_secs(8)).await;
    let ended = ended.expect("the server still held the connection after 8 s");
    assert!(ended < Duration::from_secs(4), "closed only after {ended:?}");
    assert!(!said.contains("200 OK"), "the dribbled request was served: {said}");
    // A client at normal speed is served.
    expect(app.ops(None).healthz().await, 200).await;
}

#[tokio::test]
async fn a_body_sent_one_byte_a_second_gets_408_in_the_contracts_shape() {
    let Some(config) = impatient_config().await else { return };
    let app = spawn_with(config, Kind::Sqlite).await;
    let head = b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n";
    let (said, ended) = dribble(&app.base, head, &[b' '; 60], Duration::from_secs(8)).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said:?} (ended {ended:?})");
    assert!(said.to_ascii_lowercase().contains("connection: close"), "{said}");
    let body = said.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {said}"));
    assert_eq!(body, json!({"detail": "The request body was not received in time."}));
    let ended = ended.expect("the connection stayed open");
    assert!(ended < Duration::from_secs(5), "answered only after {ended:?}");

    // Bodies at normal speed, large ones included, still arrive.
    let admin = app.admin().await;
    let dataset = json!({"slug": "big", "title": "Big", "modality": ["XR"], "area": "chest"});
    let dataset = expect(app.medagg(&admin).create_dataset(&dataset).await, 201).await["id"].as_i64().unwrap();
    let big = vec![7u8; 8 * 1024 * 1024];
    expect(super::collections::upload(&app, &admin, dataset, "big.png", &big, &[]).await, 201).await;
    expect(app.medagg(None).login(&json!({"username": "admin@example.org", "password": PASSWORD})).await, 200).await;
}

#[tokio::test]
async fn passwords_need_twelve_characters() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let eleven = "elevenchars";
    let twelve = "twelve chars";
    assert_eq!((eleven.len(), twelve.len()), (11, 12));
    let b = expect(app.myo(None).register(&json!({"email": "p@example.org", "password": eleven})).await, 400).await;
    let why = b["field_errors"]["password"][0].as_str().unwrap_or_default();
    assert!(why.contains("at least 12 characters"), "{b}");
    let b = expect(app.myo(None).register(&json!({"email": "p@example.org", "password": twelve})).await, 201).await;
    let access = b["access"].as_str().unwrap().to_string();

    let change = |new: &str| json!({"old_password": twelve, "new_password": new});
    let b = expect(app.myo(&access).change_password(&change(eleven)).await, 400).await;
    assert!(b["field_errors"]["new_password"][0].as_str().unwrap_or_default().contains("at least 12 characters"), "{b}");
    expect(app.myo(&access).change_password(&change("another twelve")).await, 200).await;

    // The minimum is a setting.
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    config.contexts.identity.min_password_length = 16;
    let app = spawn_with(config, Kind::Sqlite).await;
    let b = expect(app.myo(None).register(&json!({"email": "q@example.org", "password": "fifteen chars!!"})).await, 400).await;
    assert!(b["field_errors"]["password"][0].as_str().unwrap_or_default().contains("at least 16 characters"), "{b}");
}

#[tokio::test]
async fn an_admin_set_up_before_the_twelve_character_rule_still_starts_the_server() {
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    let old = "ten chars!";
    (config.contexts.identity.admin_email, config.contexts.identity.admin_password, config.contexts.identity.min_password_length) =
        (Some("old@example.org".into()), Some(old.into()), 8);
    let mut config = spawn_with(config, Kind::Sqlite).await.stop().await;
    config.contexts.identity.min_password_length = 12;
    let app = spawn_with(config, Kind::Sqlite).await;
    expect(app.myo(None).login(&json!({"email": "old@example.org", "password": old})).await, 200).await;

    // A new admin with such a password is refused, saying why.
    let Some(mut config) = test_config(Kind::Sqlite).await else { return };
    (config.contexts.identity.admin_email, config.contexts.identity.admin_password) = (Some("new@example.org".into()), Some(old.into()));
    let refused = medledger_api::build(config).await.err().expect("a short admin password is refused").to_string();
    assert!(refused.contains("at least 12 characters"), "{refused}");
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    for i in 0..3 {
        let mut conn = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
        conn.write_all(format!("MADEUP{i} /api/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    }
    let metrics = app.ops(&admin).metrics().await.text().await.unwrap();
    assert!(!metrics.contains("MADEUP"), "a label per made-up method");
    assert!(metrics.contains("method=\"other\""), "made-up methods are counted as other");
}

#[tokio::test]
async fn an_upload_with_an_idempotency_key_streams_to_its_handler() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let token = app.admin().await;
    // Larger than any JSON command (1 MiB): the middleware must not try to keep it.
    let image = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference/fixture_2_street_2obj.png")).unwrap();
    let mut body = image.clone();
    body.resize(image.len().max(1024 * 1024 + 1), 0);
    let r = app.inference(&token).create_task(1, 3, Some("image/png"), body).header("idempotency-key", "upload-1").await;
    assert_ne!(r.status().as_u16(), 413, "the idempotency layer refused an upload larger than a JSON body");
    assert!(r.headers().get("idempotent-replayed").is_none());
}
