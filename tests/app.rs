//! `spawn_app`: a real medledger server on a random port over a fresh store.

use std::path::PathBuf;

use medledger_api::state::AppState;
use medledger_api::{App, Config};
use medledger_application::identity::accounts::Registration;
use medledger_application::metadata::CommandContext;
use medledger_domain::identity::role::Roles;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{Kind, fresh_postgres, temp_dir};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub config: Config,
    pub kind: Kind,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The configuration tests run with: limits off, cheap password hashing, a fixed secret.
pub async fn test_config(kind: Kind) -> Option<Config> {
    let mut config = Config::from_env().expect("the MEDLEDGER_* variables parse");
    config.port = 0;
    config.data_dir = temp_dir("app");
    config.database_url = match kind {
        Kind::Sqlite => None,
        Kind::Postgres => Some(fresh_postgres().await?),
    };
    config.secret_key = Some(format!("test-secret-{}", uuid::Uuid::new_v4()).into());
    config.auth_rate_limit = 0;
    config.api_rate_limit = 0;
    config.contexts.inference.task_rate_limit = 0;
    config.refresh_rate_limit = 0;
    // A second use of a rotated refresh token revokes at once; the grace window has its
    // own tests (myo_clients.rs).
    config.contexts.identity.refresh_grace = std::time::Duration::ZERO;
    config.cors_origins = Vec::new();
    config.trusted_proxies = Vec::new();
    config.contexts.identity.fast_password_hash = true;
    config.contexts.identity.admin_email = None;
    config.contexts.identity.admin_password = None;
    Some(config)
}

pub async fn spawn_app(kind: Kind) -> Option<TestApp> {
    Some(spawn_with(test_config(kind).await?, kind).await)
}

pub async fn spawn_with(config: Config, kind: Kind) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app: App = medledger_api::build(config.clone()).await.expect("build app");
    let state = app.state.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.serve(listener, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    TestApp { base, client, state, config, kind, shutdown: Some(tx), server: Some(server) }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Stops the server gracefully (the runner finishes its page).
    pub async fn stop(mut self) -> Config {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.config.clone()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn put(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut req = self.client.put(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    /// Registers through 002 and returns (user id, access, refresh).
    pub async fn register(&self, email: &str) -> (i64, String, String) {
        let r = self.myo(None).register(&json!({"email": email, "password": PASSWORD, "firstName": "Test", "lastName": "User"})).await;
        assert_eq!(r.status(), StatusCode::CREATED, "register {email}");
        let body: Value = r.json().await.expect("json");
        (
            body["user"]["id"].as_i64().expect("id"),
            body["access"].as_str().expect("access").to_string(),
            body["refresh"].as_str().expect("refresh").to_string(),
        )
    }

    /// Creates a user with the given roles directly (as the CLI does) and logs in.
    pub async fn user_with(&self, email: &str, roles: Roles) -> String {
        let form = Registration { email: email.into(), password: PASSWORD.into(), roles, ..Default::default() };
        let (_, position) = self.state.accounts.register(form, &CommandContext::system()).await.expect("create user");
        self.state.caught_up(position).await;
        self.login(email).await
    }

    pub async fn admin(&self) -> String {
        self.user_with("admin@example.org", Roles::new([medledger_domain::identity::role::Role::Admin])).await
    }

    pub async fn login(&self, email: &str) -> String {
        let r = self.myo(None).login(&json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(r.status(), StatusCode::OK, "login {email}");
        let body: Value = r.json().await.expect("json");
        body["access"].as_str().expect("access").to_string()
    }

    pub async fn head(&self) -> i64 {
        self.state.dbs.store.head().await.expect("head").position
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
