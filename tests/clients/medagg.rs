//! Contract 000 (MedAgg): the catalog, its search, collections and the admin's CRUD,
//! under `/api/v1`. Queries are the query string without its `?` (`"limit=10"`), sent
//! as written so tests keep control of the encoding.

use serde::Serialize;
use serde_json::Value;

use super::{Call, contract_client, with_query};

contract_client!(
    /// A caller of contract 000.
    MedAgg
);

impl MedAgg<'_> {
    /// `POST /api/v1/auth/login/` with a JSON body.
    pub fn login(&self, body: &Value) -> Call {
        self.0.post("/api/v1/auth/login/", body)
    }

    /// `POST /api/v1/auth/login/` as an HTML form (`username`, `password`).
    pub fn login_form(&self, form: &(impl Serialize + ?Sized)) -> Call {
        self.0.post_form("/api/v1/auth/login/", form)
    }

    /// `POST /api/v1/auth/login/` with a body of the given content type (a multipart
    /// form, or what a confused client sends).
    pub fn login_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Call {
        self.0.post_raw("/api/v1/auth/login/", Some(content_type), body)
    }

    /// `GET /api/v1/datasets/?{query}`.
    pub fn datasets(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/v1/datasets/", query))
    }

    /// `GET /api/v1/datasets/{id}/`.
    pub fn dataset(&self, id: i64) -> Call {
        self.0.get(&format!("/api/v1/datasets/{id}/"))
    }

    /// `GET /api/v1/datasets/{id}/items/`: the files a dataset holds.
    pub fn items(&self, dataset: i64) -> Call {
        self.0.get(&format!("/api/v1/datasets/{dataset}/items/"))
    }

    /// `GET /api/v1/vocabulary/`: modalities, areas, task types and tags with their ids.
    pub fn vocabulary(&self) -> Call {
        self.0.get("/api/v1/vocabulary/")
    }

    /// `POST /api/v1/search/datasets/`.
    pub fn search(&self, body: &Value) -> Call {
        self.search_with_query("", body)
    }

    /// `POST /api/v1/search/datasets/?{query}` (`facets=true`, `limit`, `offset`).
    pub fn search_with_query(&self, query: &str, body: &Value) -> Call {
        self.0.post(&with_query("/api/v1/search/datasets/", query), body)
    }

    /// `POST /api/v1/admin/datasets/`.
    pub fn create_dataset(&self, body: &Value) -> Call {
        self.0.post("/api/v1/admin/datasets/", body)
    }

    /// `PUT /api/v1/admin/datasets/{id}/`.
    pub fn update_dataset(&self, id: i64, body: &Value) -> Call {
        self.0.put(&format!("/api/v1/admin/datasets/{id}/"), body)
    }

    /// `DELETE /api/v1/admin/datasets/{id}/`: the dataset leaves the catalog, its
    /// history stays.
    pub fn retire_dataset(&self, id: i64) -> Call {
        self.0.delete(&format!("/api/v1/admin/datasets/{id}/"))
    }

    /// `POST /api/v1/admin/datasets/{id}/items/` with a body of the given content type
    /// (a multipart form).
    pub fn add_item(&self, dataset: i64, content_type: &str, body: impl Into<reqwest::Body>) -> Call {
        self.0.post_raw(&format!("/api/v1/admin/datasets/{dataset}/items/"), Some(content_type), body)
    }

    /// `GET /api/v1/collections/?{query}`: the caller's collections.
    pub fn collections(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/v1/collections/", query))
    }

    /// `GET /api/v1/collections/{id}/`.
    pub fn collection(&self, id: i64) -> Call {
        self.0.get(&format!("/api/v1/collections/{id}/"))
    }

    /// `POST /api/v1/collections/`: ask for a collection to be built.
    pub fn request_collection(&self, body: &Value) -> Call {
        self.0.post("/api/v1/collections/", body)
    }

    /// `GET /api/v1/collections/{id}/download/`: the built ZIP.
    pub fn download(&self, id: i64) -> Call {
        self.0.get(&format!("/api/v1/collections/{id}/download/"))
    }

    /// `GET /api/v1/admin/requests/?{query}`: every user's collection requests.
    pub fn requests(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/v1/admin/requests/", query))
    }
}
