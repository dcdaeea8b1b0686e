//! Contract 002 (MyoMetrics): accounts, sessions, users and the audit log under `/api`.
//! Queries are the query string without its `?`, sent as written.

use serde_json::{Value, json};

use super::{Call, contract_client, with_query};

contract_client!(
    /// A caller of contract 002.
    Myo
);

impl Myo<'_> {
    /// `POST /api/auth/register/`.
    pub fn register(&self, body: &Value) -> Call {
        self.0.post("/api/auth/register/", body)
    }

    /// `POST /api/auth/login/` (`email`, `password`).
    pub fn login(&self, body: &Value) -> Call {
        self.0.post("/api/auth/login/", body)
    }

    /// `POST /api/auth/token/refresh/` with `{"refresh": refresh}`.
    pub fn refresh(&self, refresh: &str) -> Call {
        self.0.post("/api/auth/token/refresh/", &json!({"refresh": refresh}))
    }

    /// `POST /api/auth/logout/` with `{"refresh": refresh}`.
    pub fn logout(&self, refresh: &str) -> Call {
        self.0.post("/api/auth/logout/", &json!({"refresh": refresh}))
    }

    /// `GET /api/auth/user/`: the caller's profile.
    pub fn me(&self) -> Call {
        self.0.get("/api/auth/user/")
    }

    /// `PUT /api/auth/user/`.
    pub fn update_me(&self, body: &Value) -> Call {
        self.0.put("/api/auth/user/", body)
    }

    /// `POST /api/auth/change-password/` (`old_password`, `new_password`).
    pub fn change_password(&self, body: &Value) -> Call {
        self.0.post("/api/auth/change-password/", body)
    }

    /// `POST /api/auth/password-reset/` with `{"email": email}`.
    pub fn password_reset(&self, email: &str) -> Call {
        self.0.post("/api/auth/password-reset/", &json!({"email": email}))
    }

    /// `POST /api/auth/password-reset/confirm/` (`token`, `new_password`).
    pub fn confirm_password_reset(&self, body: &Value) -> Call {
        self.0.post("/api/auth/password-reset/confirm/", body)
    }

    /// `GET /api/users/?{query}` (admins).
    pub fn users(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/users/", query))
    }

    /// `GET /api/users/{id}/`.
    pub fn user(&self, id: i64) -> Call {
        self.0.get(&format!("/api/users/{id}/"))
    }

    /// `PUT /api/users/{id}/`.
    pub fn update_user(&self, id: i64, body: &Value) -> Call {
        self.0.put(&format!("/api/users/{id}/"), body)
    }

    /// `GET /api/audit-logs/?{query}` (admins).
    pub fn audit_logs(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/audit-logs/", query))
    }

    /// `POST /api/audit-logs/`: an entry the client records.
    pub fn create_audit_log(&self, body: &Value) -> Call {
        self.0.post("/api/audit-logs/", body)
    }

    /// `GET /api/health/`.
    pub fn health(&self) -> Call {
        self.0.get("/api/health/")
    }
}
