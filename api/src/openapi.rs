//! Routes are registered through [`Api`], which records each one in the OpenAPI
//! document as it mounts it: a route cannot exist without being documented.

use std::collections::BTreeMap;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use serde_json::{Value, json};

use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    User,
    Admin,
}

/// What the document says about one operation.
#[derive(Debug, Clone)]
pub struct Op {
    pub tag: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub status: u16,
    pub auth_limited: bool,
    /// A larger request body limit than the JSON default (uploads).
    pub body_limit: Option<usize>,
}

impl Op {
    fn new(tag: &'static str, summary: &'static str, access: Access) -> Self {
        Self { tag, summary, access, status: 200, auth_limited: false, body_limit: None }
    }

    pub fn public(tag: &'static str, summary: &'static str) -> Self {
        Self::new(tag, summary, Access::Public)
    }

    pub fn user(tag: &'static str, summary: &'static str) -> Self {
        Self::new(tag, summary, Access::User)
    }

    pub fn admin(tag: &'static str, summary: &'static str) -> Self {
        Self::new(tag, summary, Access::Admin)
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Counts against the per-client auth rate limit.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    pub fn auth_limited(mut self) -> Self {
        self.auth_limited = true;
        self
    }
}

pub struct Api {
    pub router: Router<AppState>,
    /// Auth endpoints: the same router, but behind the per-client rate limit.
    pub limited: Router<AppState>,
    ops: Vec<(String, &'static str, Op)>,
}

impl Default for Api {
    fn default() -> Self {
        Self { router: Router::new(), limited: Router::new(), ops: Vec::new() }
    }
}

macro_rules! method {
    ($name:ident, $filter:expr, $verb:literal) => {
        pub fn $name<H, T>(self, path: &str, handler: H, op: Op) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.add($filter, $verb, path, handler, op)
        }
    };
}

impl Api {
    method!(get, MethodFilter::GET, "get");
    method!(post, MethodFilter::POST, "post");
    method!(put, MethodFilter::PUT, "put");
    method!(patch, MethodFilter::PATCH, "patch");
    method!(delete, MethodFilter::DELETE, "delete");

    fn add<H, T>(mut self, filter: MethodFilter, verb: &'static str, path: &str, handler: H, op: Op) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let mut route = on(filter, handler);
        if let Some(bytes) = op.body_limit {
            route = route.layer(axum::extract::DefaultBodyLimit::max(bytes));
        }
        if op.auth_limited {
            self.limited = self.limited.route(path, route);
        } else {
            self.router = self.router.route(path, route);
        }
        self.ops.push((path.to_string(), verb, op));
        self
    }

    /// The OpenAPI 3.1 document for every mounted route.
    pub fn document(&self) -> Value {
        let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        for (path, verb, op) in &self.ops {
            let params: Vec<Value> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            let mut responses = serde_json::Map::new();
            responses.insert(op.status.to_string(), json!({"description": "Success"}));
            responses.insert("400".into(), json!({"description": "Invalid input, in the contract's error shape"}));
            if op.access != Access::Public {
                responses.insert("401".into(), json!({"description": "Missing, expired or forged token"}));
            }
            if op.access == Access::Admin {
                responses.insert("403".into(), json!({"description": "Not an admin"}));
            }
            if op.auth_limited {
                responses.insert("429".into(), json!({"description": "Rate limited; see Retry-After"}));
            }
            let mut operation = json!({
                "tags": [op.tag],
                "summary": op.summary,
                "operationId": format!("{verb}_{}", path.trim_matches('/').replace(['/', '{', '}', '-'], "_")),
                "parameters": params,
                "responses": responses,
            });
            if op.access != Access::Public {
                operation["security"] = json!([{"bearer": []}]);
            }
            paths.entry(path.clone()).or_default().insert(verb.to_string(), operation);
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "medledger",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Five API contracts on one event-sourced history. Paths are shown without a trailing slash; the slashed form answers too.",
            },
            "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        })
    }
}

/// `/docs`: renders `/openapi.json` with no script from anywhere else.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medledger API</title>
<style>
body{font:14px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:980px;color:#222}
h2{border-bottom:1px solid #ddd;margin-top:2rem}
.op{display:flex;gap:.8rem;padding:.25rem 0;border-bottom:1px dotted #eee}
.m{font:600 12px monospace;width:4.5rem;text-transform:uppercase}
.get{color:#0a7}.post{color:#06c}.put{color:#a60}.patch{color:#a0a}.delete{color:#c22}
code{font-size:13px}.lock{color:#888}
</style></head><body>
<h1>medledger API</h1><p id="desc"></p><div id="ops">Loading /openapi.json…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  document.getElementById('desc').textContent=doc.info.description;
  const byTag={};
  for(const [path,ops] of Object.entries(doc.paths)) for(const [m,op] of Object.entries(ops))
    (byTag[op.tags[0]]=byTag[op.tags[0]]||[]).push([m,path,op]);
  const root=document.getElementById('ops'); root.textContent='';
  for(const tag of Object.keys(byTag).sort()){
    const h=document.createElement('h2'); h.textContent=tag; root.appendChild(h);
    for(const [m,path,op] of byTag[tag]){
      const row=document.createElement('div'); row.className='op';
      const a=document.createElement('span'); a.className='m '+m; a.textContent=m;
      const b=document.createElement('code'); b.textContent=path;
      const c=document.createElement('span'); c.textContent=op.summary+(op.security?' 🔒':'');
      row.append(a,b,c); root.appendChild(row);
    }
  }
});
</script></body></html>"#;
