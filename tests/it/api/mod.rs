//! End-to-end tests through HTTP against a real server (`spawn_app`).

mod access;
mod audit;
mod bad_input;
mod catalog;
mod collections;
mod hardening;
mod identity;
mod image_bombs;
mod inference;
mod inference_clients;
mod medagg_clients;
mod model_safety;
mod myo_clients;
mod openapi_docs;
mod ops;
mod privacy;
mod replay;
mod search;

/// Runs an async test body against SQLite and PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(medledger_tests::Kind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(medledger_tests::Kind::Postgres).await;
            }
        }
    };
}

/// The JSON body of a response, asserting its status first.
pub async fn expect(r: reqwest::Response, status: u16) -> serde_json::Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}
