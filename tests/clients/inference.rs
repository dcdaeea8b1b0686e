//! Contract 004 (inference tasks): the OAuth2 password login, models and tasks.

use serde::Serialize;
use serde_json::Value;

use super::{Call, contract_client, with_query};

contract_client!(
    /// A caller of contract 004.
    Inference
);

impl Inference<'_> {
    /// `POST /oauth/login` as an `application/x-www-form-urlencoded` form.
    pub fn oauth_login(&self, form: &(impl Serialize + ?Sized)) -> Call {
        self.0.post_form("/oauth/login", form)
    }

    /// `POST /oauth/login` with a body of the given content type (none when `None`):
    /// multipart forms, or what a confused client sends.
    pub fn oauth_login_raw(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Call {
        self.0.post_raw("/oauth/login", content_type, body)
    }

    /// `POST /oauth/login` with a JSON body, as the seed's example writes it.
    pub fn oauth_login_json(&self, body: &Value) -> Call {
        self.0.post("/oauth/login", body)
    }

    /// `GET /api/models`.
    pub fn models(&self) -> Call {
        self.0.get("/api/models")
    }

    /// `POST /api/models`: a model's manifest and ONNX file as a multipart form (admins).
    pub fn register_model(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Call {
        self.0.post_raw("/api/models", Some(content_type), body)
    }

    /// `POST /api/tasks?detection_model_id=…&classification_model_id=…` with the image as
    /// the body, or a form holding it, under `content_type` (none when `None`).
    pub fn create_task(&self, detection: i64, classification: i64, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Call {
        let query = format!("detection_model_id={detection}&classification_model_id={classification}");
        self.create_task_with_query(&query, content_type, body)
    }

    /// `POST /api/tasks?{query}`: for model ids that are missing or not numbers.
    pub fn create_task_with_query(&self, query: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Call {
        self.0.post_raw(&with_query("/api/tasks", query), content_type, body)
    }

    /// `GET /api/tasks?{query}` (`all=true` for an admin).
    pub fn tasks(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/tasks", query))
    }

    /// `GET /api/tasks/{id}/status`.
    pub fn status(&self, id: i64) -> Call {
        self.0.get(&format!("/api/tasks/{id}/status"))
    }

    /// `GET /api/tasks/{id}/result?{query}` (`wait=30` holds the answer until it settles).
    pub fn result(&self, id: i64, query: &str) -> Call {
        self.0.get(&with_query(&format!("/api/tasks/{id}/result"), query))
    }

    /// `GET /tasks/{id}/result`: the seed's path without `/api`.
    pub fn result_without_api_prefix(&self, id: i64) -> Call {
        self.0.get(&format!("/tasks/{id}/result"))
    }

    /// `GET /api/tasks/{id}/input`: the image as sent.
    pub fn input(&self, id: i64) -> Call {
        self.0.get(&format!("/api/tasks/{id}/input"))
    }

    /// `DELETE /api/tasks/{id}`.
    pub fn delete_task(&self, id: i64) -> Call {
        self.0.delete(&format!("/api/tasks/{id}"))
    }
}
