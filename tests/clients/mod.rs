//! Typed clients, one per contract: each method is one of the contract's operations
//! and knows its path and HTTP method, so a path is written once, here, and a test
//! reads in the contract's words (`app.medagg(&token).dataset(id).await`). Every
//! method is a `Call` that answers the `reqwest::Response` itself: tests still assert
//! statuses, headers and bodies as they please. A test that sends a malformed path or an odd method on
//! purpose uses `TestApp::get`/`post`/`put` or `TestApp::client` directly.

mod inference;
mod labeling;
mod medagg;
mod myo;
mod ops;
mod scans;

pub use inference::Inference;
pub use labeling::Labeling;
pub use medagg::MedAgg;
pub use myo::Myo;
pub use ops::Ops;
pub use scans::Scans;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde_json::Value;

use crate::app::TestApp;

/// Who calls: a bearer token (`&str`, `&String`) or nobody (`None`, or an
/// `Option<&str>` as `body["access"].as_str()` gives).
pub trait Bearer<'a> {
    fn bearer(self) -> Option<&'a str>;
}

impl<'a> Bearer<'a> for &'a str {
    fn bearer(self) -> Option<&'a str> {
        Some(self)
    }
}

impl<'a> Bearer<'a> for &'a String {
    fn bearer(self) -> Option<&'a str> {
        Some(self.as_str())
    }
}

impl<'a> Bearer<'a> for Option<&'a str> {
    fn bearer(self) -> Option<&'a str> {
        self
    }
}

/// One caller of the server: the server and the token sent, if any.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    app: &'a TestApp,
    token: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn new(app: &'a TestApp, token: impl Bearer<'a>) -> Self {
        Caller { app, token: token.bearer() }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.app.client.request(method, self.app.url(path));
        match self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn get(&self, path: &str) -> Call {
        Call::new(self.request(Method::GET, path))
    }

    fn delete(&self, path: &str) -> Call {
        Call::new(self.request(Method::DELETE, path))
    }

    fn post(&self, path: &str, body: &Value) -> Call {
        Call::new(self.request(Method::POST, path).json(body))
    }

    fn put(&self, path: &str, body: &Value) -> Call {
        Call::new(self.request(Method::PUT, path).json(body))
    }

    /// A POST without a body.
    fn post_empty(&self, path: &str) -> Call {
        Call::new(self.request(Method::POST, path))
    }

    /// An `application/x-www-form-urlencoded` body.
    fn post_form(&self, path: &str, form: &(impl Serialize + ?Sized)) -> Call {
        Call::new(self.request(Method::POST, path).form(form))
    }

    /// A body sent as it is, under the content type given (none when `None`).
    fn post_raw(&self, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Call {
        let req = self.request(Method::POST, path).body(body);
        Call::new(match content_type {
            Some(ct) => req.header("content-type", ct),
            None => req,
        })
    }
}

/// One request of a contract, ready to go: await it for the `Response`, or add a
/// header first (`.header("cookie", …)`, `Origin`, `X-Forwarded-For`, an idempotency
/// key). It borrows nothing, so a closure may hand it out and `join_all` may run many.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call {
    request: Option<RequestBuilder>,
    sending: Option<BoxFuture<'static, Response>>,
}

impl Call {
    fn new(request: RequestBuilder) -> Self {
        Call { request: Some(request), sending: None }
    }

    /// The same request with one more header.
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.request = self.request.take().map(|r| r.header(name, value.as_ref()));
        self
    }
}

impl Future for Call {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = &mut *self;
        let sending = this.sending.get_or_insert_with(|| {
            let request = this.request.take().expect("a call is sent once");
            Box::pin(async move { request.send().await.expect("request") })
        });
        sending.as_mut().poll(cx)
    }
}

/// `path` with `query` (without its `?`) appended when there is one.
fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_string() } else { format!("{path}?{query}") }
}

/// The wrapper every contract's client is: a `Caller` under the contract's name.
macro_rules! contract_client {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a>(pub(crate) $crate::clients::Caller<'a>);
    };
}
pub(crate) use contract_client;

impl TestApp {
    /// Contract 000, MedAgg's catalog, as `token` (or nobody).
    pub fn medagg<'a>(&'a self, token: impl Bearer<'a>) -> MedAgg<'a> {
        MedAgg(Caller::new(self, token))
    }

    /// Contract 001, ToothFairy4M's scans: a browser session (its cookies through
    /// `Call::header`) or a bearer token.
    pub fn scans<'a>(&'a self, token: impl Bearer<'a>) -> Scans<'a> {
        Scans(Caller::new(self, token))
    }

    /// Contract 002, MyoMetrics' accounts and audit log.
    pub fn myo<'a>(&'a self, token: impl Bearer<'a>) -> Myo<'a> {
        Myo(Caller::new(self, token))
    }

    /// Contract 003, the labeling platform (its login today).
    pub fn labeling<'a>(&'a self, token: impl Bearer<'a>) -> Labeling<'a> {
        Labeling(Caller::new(self, token))
    }

    /// Contract 004, the inference task service.
    pub fn inference<'a>(&'a self, token: impl Bearer<'a>) -> Inference<'a> {
        Inference(Caller::new(self, token))
    }

    /// medledger's own endpoints: the event stream, the chain check, health, metrics, docs.
    pub fn ops<'a>(&'a self, token: impl Bearer<'a>) -> Ops<'a> {
        Ops(Caller::new(self, token))
    }
}
