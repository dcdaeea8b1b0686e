//! Routes are registered through [`Api`], which records each one in the OpenAPI
//! document as it mounts it: a route cannot exist without being documented.
//!
//! Request bodies, query parameters and responses are described by the Rust types the
//! handlers read and write: each [`Op`] names them (`.json::<LoginBody>()`,
//! `.returns::<User>()`) and their JSON Schemas are derived with `schemars`, which
//! reads the same serde attributes the handlers' (de)serialisation obeys. Request types
//! are described as they are *read* (optional fields, defaults), responses as they are
//! *written* (every field present, `null` where empty).

pub mod docs;

use std::collections::BTreeMap;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::error::ShapeKind;
use crate::schemas::errors::{DjangoError, MyoError, PlainError};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    User,
    Admin,
}

/// Makes the schema of one type, registering the types it names as components.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Bytes of any kind (an image, an archive, a model file).
pub fn binary(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "string", "format": "binary"})
}

/// Text that is not JSON (NDJSON, Prometheus exposition, HTML).
pub fn text(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "string"})
}

/// Any JSON document (this OpenAPI document itself).
pub fn any_object(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "object"})
}

/// A body of one media type, and its schema.
type Media = (&'static str, SchemaFn);

/// One response besides the success: its status, what it means, and its body (the
/// contract's error shape when `body` is None).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    description: &'static str,
    body: Option<Media>,
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
    description: Option<&'static str>,
    /// Accepted request bodies, by media type.
    request: Vec<(&'static str, SchemaFn)>,
    /// Multipart parts with a content type of their own (a JSON manifest).
    encoding: Vec<(&'static str, &'static str)>,
    query: Option<SchemaFn>,
    /// Path parameters that are not integer ids: the values they take.
    path_values: Vec<(&'static str, &'static [&'static str])>,
    /// The success response's bodies, by media type; none: no body (204).
    success: Vec<(&'static str, SchemaFn)>,
    /// Headers of the success response: name, description, schema.
    success_headers: Vec<(&'static str, &'static str, SchemaFn)>,
    answers: Vec<Answer>,
    /// Default errors this operation never answers.
    never: Vec<u16>,
    /// OpenAPI links from the success response: name, operationId, the parameter it
    /// fills, and the runtime expression that fills it.
    links: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    /// The error shape, when it is not the one of the contract the path belongs to.
    shape: Option<ShapeKind>,
    /// Accepts 001's browser session cookie as well as a Bearer token.
    cookie_session: bool,
}

impl Op {
    fn new(tag: &'static str, summary: &'static str, access: Access) -> Self {
        Self {
            tag,
            summary,
            access,
            status: 200,
            auth_limited: false,
            body_limit: None,
            description: None,
            request: Vec::new(),
            encoding: Vec::new(),
            query: None,
            path_values: Vec::new(),
            success: Vec::new(),
            success_headers: Vec::new(),
            answers: Vec::new(),
            never: Vec::new(),
            links: Vec::new(),
            shape: None,
            cookie_session: false,
        }
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

    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Counts against the per-client auth rate limit.
    pub fn auth_limited(mut self) -> Self {
        self.auth_limited = true;
        self
    }

    /// A longer explanation than the summary (Markdown).
    pub fn describe(mut self, text: &'static str) -> Self {
        self.description = Some(text);
        self
    }

    /// A JSON request body read as `T`.
    pub fn json<T: JsonSchema>(self) -> Self {
        self.body("application/json", schema_of::<T>)
    }

    /// An `application/x-www-form-urlencoded` body read as `T`.
    pub fn form<T: JsonSchema>(self) -> Self {
        self.body("application/x-www-form-urlencoded", schema_of::<T>)
    }

    /// A `multipart/form-data` body whose parts `T` describes.
    pub fn multipart<T: JsonSchema>(self) -> Self {
        self.body("multipart/form-data", schema_of::<T>)
    }

    /// A request body of `media`, described by `schema` (see [`binary`]).
    pub fn body(mut self, media: &'static str, schema: SchemaFn) -> Self {
        self.request.push((media, schema));
        self
    }

    /// A multipart part sent with its own content type.
    pub fn part_type(mut self, part: &'static str, content_type: &'static str) -> Self {
        self.encoding.push((part, content_type));
        self
    }

    /// Query parameters: the fields of `T`, as the handler's `Query<T>` reads them.
    pub fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema_of::<T>);
        self
    }

    /// A path parameter that takes one of `values` (path parameters are integer ids
    /// otherwise).
    pub fn path_values(mut self, name: &'static str, values: &'static [&'static str]) -> Self {
        self.path_values.push((name, values));
        self
    }

    /// The success response: JSON written from `T`.
    pub fn returns<T: JsonSchema>(self) -> Self {
        self.returns_as("application/json", schema_of::<T>)
    }

    /// The success response in another media type.
    pub fn returns_as(mut self, media: &'static str, schema: SchemaFn) -> Self {
        self.success.push((media, schema));
        self
    }

    /// A header of the success response.
    pub fn returns_header<T: JsonSchema>(mut self, name: &'static str, description: &'static str) -> Self {
        self.success_headers.push((name, description, schema_of::<T>));
        self
    }

    /// Another response with a JSON body written from `T`.
    pub fn answers<T: JsonSchema>(self, status: u16, description: &'static str) -> Self {
        self.answers_as(status, description, "application/json", schema_of::<T>)
    }

    pub fn answers_as(mut self, status: u16, description: &'static str, media: &'static str, schema: SchemaFn) -> Self {
        self.answers.retain(|a| a.status != status);
        self.answers.push(Answer { status, description, body: Some((media, schema)) });
        self
    }

    /// An error status this operation answers, in its contract's error shape.
    pub fn error(mut self, status: u16, description: &'static str) -> Self {
        self.answers.retain(|a| a.status != status);
        self.answers.push(Answer { status, description, body: None });
        self
    }

    /// The success response names a resource another operation takes: `parameter` of
    /// `operation_id` is `expression` (e.g. `$response.body#/id`).
    pub fn link(mut self, name: &'static str, operation_id: &'static str, parameter: &'static str, expression: &'static str) -> Self {
        self.links.push((name, operation_id, parameter, expression));
        self
    }

    /// Leaves out an error the operation would list by default but never answers.
    pub fn never(mut self, status: u16) -> Self {
        self.never.push(status);
        self
    }

    /// Errors in another shape than the one of the contract the path belongs to.
    pub fn shape(mut self, shape: ShapeKind) -> Self {
        self.shape = Some(shape);
        self
    }

    /// 001's browser session cookie is accepted as well as a Bearer token.
    pub fn cookie_session(mut self) -> Self {
        self.cookie_session = true;
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

/// Where request-side schemas are put while the document is built: a type can be
/// described differently when read and when written (defaults, optional fields), so
/// the two sides are generated apart and merged at the end (see [`merge_components`]).
const REQUEST_DEFS: &str = "/components/x-request-schemas";
const SCHEMAS: &str = "/components/schemas";

fn generator(contract: Contract, definitions_path: &'static str, inline: bool) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = definitions_path.into();
            s.meta_schema = None;
            s.contract = contract;
            s.inline_subschemas = inline;
        })
        .into_generator()
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
        let mut reads = generator(Contract::Deserialize, REQUEST_DEFS, false);
        let mut writes = generator(Contract::Serialize, SCHEMAS, false);
        let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (path, verb, op) in &self.ops {
            let operation = operation(path, verb, op, &mut reads, &mut writes);
            paths.entry(path.clone()).or_default().insert(verb.to_string(), operation);
        }
        let mut document = json!({
            "openapi": "3.1.0",
            "info": {
                "title": "medledger",
                "version": env!("CARGO_PKG_VERSION"),
                "description": DESCRIPTION,
                "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            },
            "tags": tags(&self.ops),
            "paths": paths,
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "An access token from any contract's login (they are interchangeable).",
                    },
                    "session": {
                        "type": "apiKey",
                        "in": "cookie",
                        "name": "sessionid",
                        "description": "001's browser session (`__Host-sessionid` over HTTPS), set by `POST /login`.",
                    },
                },
            },
        });
        merge_components(&mut document, writes.take_definitions(true), reads.take_definitions(true));
        document
    }
}

const DESCRIPTION: &str = "Five API contracts on one event-sourced history: 000 (MedAgg catalog, `/api/v1`), \
001 (ToothFairy4M scans, cookie session + CSRF), 002 (MyoMetrics accounts, `/api`), 003 (labeling), \
004 (inference tasks). Each keeps its own paths, fields and error shape. Paths are shown without a \
trailing slash; the slashed form answers too.\n\nTo try an operation: log in with any contract's \
login (e.g. `POST /oauth/login` or `POST /api/v1/auth/login`), copy the access token, press \
**Authorize** and paste it as the bearer token.";

/// The tags in the order the contracts are numbered, medledger's own last.
fn tags(ops: &[(String, &'static str, Op)]) -> Vec<Value> {
    let mut names: Vec<&str> = ops.iter().map(|(_, _, op)| op.tag).collect();
    names.sort_by_key(|t| (t.starts_with("medledger"), *t));
    names.dedup();
    names.into_iter().map(|name| json!({"name": name})).collect()
}

fn error_schema(shape: ShapeKind, writes: &mut SchemaGenerator) -> Schema {
    match shape {
        ShapeKind::Detail => writes.subschema_for::<PlainError>(),
        ShapeKind::Myo => writes.subschema_for::<MyoError>(),
        ShapeKind::Django => writes.subschema_for::<DjangoError>(),
    }
}

fn content(entries: &[(&'static str, SchemaFn)], generator: &mut SchemaGenerator) -> Value {
    let mut out = Map::new();
    for (media, schema) in entries {
        out.insert(media.to_string(), json!({"schema": schema(generator)}));
    }
    Value::Object(out)
}

fn operation(path: &str, verb: &str, op: &Op, reads: &mut SchemaGenerator, writes: &mut SchemaGenerator) -> Value {
    let shape = op.shape.unwrap_or_else(|| crate::contexts::shape_for(path));
    let path_params: Vec<&str> = path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
    let mut parameters: Vec<Value> = path_params.iter().map(|name| path_parameter(name, op)).collect();
    if let Some(query) = op.query {
        parameters.extend(query_parameters(query));
    }
    let mutating = matches!(verb, "post" | "put" | "patch" | "delete");
    if mutating && op.access != Access::Public {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "With a JSON or form body: a retry with the same key and body gets the first answer again; the same key with another body is refused (422).",
            "schema": {"type": "string", "maxLength": 255},
        }));
    }

    // The errors every operation of this kind can meet, then the operation's own.
    let mut errors: BTreeMap<u16, (&str, Option<Media>)> = BTreeMap::new();
    let has_body = !op.request.is_empty();
    if has_body || op.query.is_some() {
        errors.insert(400, ("Invalid input", None));
    }
    if op.access != Access::Public {
        errors.insert(401, ("Missing, expired or revoked credentials", None));
    }
    if op.access == Access::Admin {
        errors.insert(403, ("Not an admin", None));
    }
    if !path_params.is_empty() {
        errors.insert(404, ("Not found (or not the caller's)", None));
    }
    if has_body {
        errors.insert(408, ("The request body did not arrive in time", None));
        errors.insert(413, ("The request body is too large", None));
        if op.request.iter().any(|(media, _)| !media.starts_with("image/") && *media != "application/octet-stream") {
            errors.insert(415, ("Unsupported media type", None));
        }
    }
    if mutating && op.access != Access::Public {
        // The same key with another body here, or the key of a request to another
        // operation that was applied (the key names the events it recorded).
        errors.insert(409, ("Conflicting change, or this Idempotency-Key was used for another operation", None));
        errors.insert(422, ("This Idempotency-Key was already used with another request", None));
    }
    if op.auth_limited || (shape == ShapeKind::Myo && op.access != Access::Public) {
        errors.insert(429, ("Rate limited; see Retry-After", None));
    }
    for status in &op.never {
        errors.remove(status);
    }
    for answer in &op.answers {
        errors.insert(answer.status, (answer.description, answer.body));
    }

    let mut responses = Map::new();
    let mut success = json!({"description": "Success"});
    if !op.success.is_empty() {
        success["content"] = content(&op.success, writes);
    }
    if !op.success_headers.is_empty() {
        let mut headers = Map::new();
        for (name, description, schema) in &op.success_headers {
            headers.insert(name.to_string(), json!({"description": description, "schema": schema(writes)}));
        }
        success["headers"] = Value::Object(headers);
    }
    if !op.links.is_empty() {
        let mut links = Map::new();
        for (name, operation_id, parameter, expression) in &op.links {
            links.insert(name.to_string(), json!({"operationId": operation_id, "parameters": {*parameter: expression}}));
        }
        success["links"] = Value::Object(links);
    }
    responses.insert(op.status.to_string(), success);
    for (status, (description, body)) in errors {
        let schema = match body {
            Some((media, schema)) => json!({ media: {"schema": schema(writes)} }),
            None => json!({"application/json": {"schema": error_schema(shape, writes)}}),
        };
        let mut response = json!({"description": description, "content": schema});
        if status == 429 {
            response["headers"] = json!({"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}});
        }
        if status == 401 && shape != ShapeKind::Django {
            response["headers"] = json!({"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}});
        }
        responses.insert(status.to_string(), response);
    }

    let mut operation = json!({
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": format!("{verb}_{}", path.trim_matches('/').replace(['{', '}'], "").replace(['/', '-'], "_")),
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(description) = op.description {
        operation["description"] = json!(description);
    }
    if has_body {
        let mut body = json!({"required": true, "content": content(&op.request, reads)});
        for (part, content_type) in &op.encoding {
            if let Some(multipart) = body["content"].get_mut("multipart/form-data") {
                multipart["encoding"][*part] = json!({"contentType": content_type});
            }
        }
        operation["requestBody"] = body;
    }
    match op.access {
        Access::Public => {}
        _ if op.cookie_session => operation["security"] = json!([{"bearer": []}, {"session": []}]),
        _ => operation["security"] = json!([{"bearer": []}]),
    }
    operation
}

/// The path parameters of these contracts are integer ids, but where the operation
/// lists the values one takes.
fn path_parameter(name: &str, op: &Op) -> Value {
    let schema = match op.path_values.iter().find(|(n, _)| *n == name) {
        Some((_, values)) => json!({"type": "string", "enum": values}),
        None => json!({"type": "integer", "format": "int64"}),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

/// The fields of a query type as parameters, each with its own schema. A missing
/// parameter is `None` to the handler, never `null`: `null` is dropped from the types.
fn query_parameters(query: SchemaFn) -> Vec<Value> {
    let mut inline = generator(Contract::Deserialize, SCHEMAS, true);
    let schema = query(&mut inline).to_value();
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            drop_null(&mut property);
            let description = property.as_object_mut().and_then(|p| p.remove("description"));
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": property,
            });
            if let Some(d) = description {
                parameter["description"] = d;
            }
            if parameter["schema"]["type"] == "array" {
                parameter["style"] = json!("form");
                parameter["explode"] = json!(true);
            }
            parameter
        })
        .collect()
}

fn drop_null(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            object.insert("type".into(), only);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = object.get_mut(key) {
            branches.retain(|b| b.get("type").is_none_or(|t| t != "null"));
            if branches.len() == 1 {
                let only = branches.remove(0);
                object.remove(key);
                if let Value::Object(inner) = only {
                    for (k, v) in inner {
                        object.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    if object.get("default").is_some_and(Value::is_null) {
        object.remove("default");
    }
}

/// Puts the request-side schemas beside the response-side ones: a name both sides use
/// for different schemas gets an `Input` suffix on the request side.
fn merge_components(document: &mut Value, written: Map<String, Value>, read: Map<String, Value>) {
    let mut schemas = written;
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    for (name, schema) in &read {
        let target = match schemas.get(name) {
            Some(existing) if existing != schema => format!("{name}Input"),
            _ => name.clone(),
        };
        renames.insert(name.clone(), target);
    }
    for (name, schema) in read {
        if let Some(target) = renames.get(&name) {
            schemas.insert(target.clone(), schema);
        }
    }
    document["components"]["schemas"] = Value::Object(schemas);
    rewrite_refs(document, &renames);
}

fn rewrite_refs(value: &mut Value, renames: &BTreeMap<String, String>) {
    let prefix = format!("#{REQUEST_DEFS}/");
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref")
                && let Some(name) = reference.strip_prefix(&prefix)
            {
                let target = renames.get(name).cloned().unwrap_or_else(|| name.to_string());
                *reference = format!("#{SCHEMAS}/{target}");
            }
            map.values_mut().for_each(|v| rewrite_refs(v, renames));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, renames)),
        _ => {}
    }
}
