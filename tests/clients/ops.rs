//! medledger's own endpoints: the auditors' event stream and chain check, liveness and
//! readiness, metrics, and the OpenAPI document with its interactive docs.

use super::{Call, contract_client, with_query};

contract_client!(
    /// A caller of medledger's own endpoints.
    Ops
);

impl Ops<'_> {
    /// `GET /api/events?{query}` (`stream`, `type`, `from`, `until`): NDJSON (admins).
    pub fn events(&self, query: &str) -> Call {
        self.0.get(&with_query("/api/events", query))
    }

    /// `GET /api/verify`: the hash chain checked (admins).
    pub fn verify(&self) -> Call {
        self.0.get("/api/verify")
    }

    /// `GET /healthz`.
    pub fn healthz(&self) -> Call {
        self.0.get("/healthz")
    }

    /// `GET /readyz`.
    pub fn readyz(&self) -> Call {
        self.0.get("/readyz")
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> Call {
        self.0.get("/metrics")
    }

    /// `GET /openapi.json`.
    pub fn openapi(&self) -> Call {
        self.0.get("/openapi.json")
    }

    /// `GET /docs`.
    pub fn docs(&self) -> Call {
        self.0.get("/docs")
    }
}
