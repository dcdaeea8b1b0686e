//! The OpenAPI document as a client generator reads it, real answers checked against
//! it, and the interactive documentation a newcomer opens in a browser.

use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, spawn_app};
use serde_json::{Value, json};

use super::expect;

/// The schema a `$ref` points to (refs inside the document only).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let target = doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(doc, target)
        }
        None => schema,
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}

/// Whether `value` matches `schema`, for the JSON Schema keywords the document uses;
/// the error names where it does not.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(allowed) = schema.as_bool() {
        return if allowed { Ok(()) } else { Err(format!("{at}: nothing is allowed here")) };
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type keyword at {at}"),
        };
        if !names.iter().any(|n| has_type(value, n)) {
            return Err(format!("{at}: {value} is not {names:?}"));
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: {value} is not {constant}"));
    }
    if let Some(Value::Array(values)) = schema.get("enum")
        && !values.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {values:?}"));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(key) {
            let matching = branches.iter().filter(|b| conforms(doc, b, value, at).is_ok()).count();
            if matching == 0 || (key == "oneOf" && matching > 1) {
                return Err(format!("{at}: {value} matches {matching} of the {key} branches"));
            }
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && value.as_f64().is_some_and(|v| v < min)
    {
        return Err(format!("{at}: {value} is below {min}"));
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema.get("properties").and_then(Value::as_object)) {
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Err(format!("{at}: `{name}` is missing"));
            }
        }
        for (name, field) in object {
            match (properties.get(name), schema.get("additionalProperties")) {
                (Some(property), _) => conforms(doc, property, field, &format!("{at}.{name}"))?,
                (None, Some(Value::Bool(false))) => return Err(format!("{at}: `{name}` is not documented")),
                (None, Some(extra)) => conforms(doc, extra, field, &format!("{at}.{name}"))?,
                (None, None) => {}
            }
        }
    } else if let (Some(object), Some(extra)) = (value.as_object(), schema.get("additionalProperties")) {
        for (name, field) in object {
            conforms(doc, extra, field, &format!("{at}.{name}"))?;
        }
    }
    if let (Some(items), Some(each)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, each, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Sends a request and checks its answer against what the document says `template`
/// answers with that status.
async fn check(doc: &Value, request: reqwest::RequestBuilder, template: &str, status: u16) -> Value {
    let response = request.send().await.expect("request");
    let path = response.url().path().to_string();
    let got = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(got, status, "{path} answered {got}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let operations = doc["paths"].get(template).unwrap_or_else(|| panic!("{template} is not documented"));
    let answers: Vec<&Value> =
        operations.as_object().expect("operations").values().filter_map(|op| op["responses"].get(status.to_string())).collect();
    assert!(!answers.is_empty(), "{template} does not document {status}");
    let failures: Vec<String> = answers
        .iter()
        .map(|answer| {
            let schema = answer
                .pointer("/content/application~1json/schema")
                .unwrap_or_else(|| panic!("{template} {status} has no JSON schema: {answer}"));
            conforms(doc, schema, &body, "$")
        })
        .filter_map(Result::err)
        .collect();
    // Several methods of one path may answer the same status: one must fit.
    assert!(failures.len() < answers.len(), "{template} {status}: {body} breaks its schema: {failures:?}");
    body
}

#[tokio::test]
async fn the_document_types_every_operation_with_its_contracts_error_shape() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let doc = expect(app.ops(None).openapi().await, 200).await;
    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            operations += 1;
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses {
                // Every answer but 204 says what its body is (a code generator needs a type).
                if status != "204" {
                    let content = response["content"].as_object().unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
                    assert!(content.values().all(|c| c.get("schema").is_some()), "{method} {path} {status}: no schema");
                }
            }
            for parameter in op["parameters"].as_array().expect("parameters") {
                if parameter["in"] == "path" && parameter["name"] == "id" {
                    assert_eq!(parameter["schema"]["type"], "integer", "{method} {path}: ids are integers");
                }
            }
            // 400 only where the client sends something the server can refuse.
            let takes_input =
                op.get("requestBody").is_some() || op["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            assert_eq!(responses.contains_key("400"), takes_input, "{method} {path}: 400 listed without input, or missing");
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path}: a protected operation documents 401");
            }
        }
    }
    assert!(operations > 40, "{operations} operations");
    // Links (what a created resource can be read and changed with) name real operations.
    let ids: Vec<&Value> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|ops| ops.as_object().expect("ops").values())
        .map(|op| &op["operationId"])
        .collect();
    let links: Vec<&Value> = doc
        .pointer("/paths/~1api~1v1~1admin~1datasets/post/responses/201/links")
        .and_then(Value::as_object)
        .expect("links")
        .values()
        .collect();
    assert!(!links.is_empty());
    for path in doc["paths"].as_object().expect("paths").values() {
        for op in path.as_object().expect("ops").values() {
            for response in op["responses"].as_object().expect("responses").values() {
                for link in response.get("links").and_then(Value::as_object).into_iter().flat_map(|l| l.values()) {
                    assert!(ids.contains(&&link["operationId"]), "a link to {}", link["operationId"]);
                }
            }
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    // The bodies clients send, typed from the handlers' own request types.
    let body_schema = |path: &str, method: &str, media: &str| {
        let pointer = format!("/paths/{}/{method}/requestBody/content/{}/schema", path.replace('/', "~1"), media.replace('/', "~1"));
        resolve(&doc, doc.pointer(&pointer).unwrap_or_else(|| panic!("{method} {path}: no {media} body"))).clone()
    };
    let login = body_schema("/api/auth/login", "post", "application/json");
    assert_eq!(login["required"], json!(["email", "password"]));
    let grant = body_schema("/oauth/login", "post", "application/x-www-form-urlencoded");
    assert!(grant["required"].as_array().expect("required").contains(&json!("username")));
    let task = doc.pointer("/paths/~1api~1tasks/post/requestBody/content").expect("task body");
    for media in ["image/jpeg", "image/png", "multipart/form-data"] {
        assert!(task.get(media).is_some(), "POST /api/tasks takes {media}");
    }
    let dataset = body_schema("/api/v1/admin/datasets", "post", "application/json");
    assert!(dataset["properties"]["title"].is_object() && dataset["required"] == json!(["title"]), "{dataset}");

    // Query parameters with their types.
    let parameter = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("GET {path}: no parameter {name}"))["schema"]
            .clone()
    };
    assert_eq!(parameter("/api/users", "page_size")["type"], "integer");
    assert_eq!(parameter("/api/tasks/{id}/result", "wait")["type"], "number");
    assert_eq!(parameter("/api/tasks", "all")["type"], "boolean");

    // Each contract's own error body.
    let error = |path: &str, method: &str, status: &str| {
        resolve(&doc, &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]).clone()
    };
    assert_eq!(error("/api/users", "get", "401")["required"], json!(["detail", "code", "field_errors"]));
    assert_eq!(error("/api/models", "get", "401")["required"], json!(["detail"]));
    assert_eq!(error("/api/processing/health", "get", "401")["required"], json!(["error"]));
    let unprocessable = error("/oauth/login", "post", "422");
    assert!(unprocessable.to_string().contains("ValidationError"), "FastAPI's list: {unprocessable}");
    // (and the checker the next test uses tells a body that breaks them)
    let myo = error("/api/users", "get", "401");
    assert!(conforms(&doc, &myo, &json!({"detail": "x", "code": "y", "field_errors": {}}), "$").is_ok());
    assert!(conforms(&doc, &myo, &json!({"detail": "x"}), "$").is_err());
    assert!(conforms(&doc, &myo, &json!({"detail": 1, "code": "y", "field_errors": {}}), "$").is_err());
    let list = &doc["components"]["schemas"]["ValidationError"]["properties"]["detail"];
    assert_eq!(list["type"], "array", "{list}");
    assert_eq!(resolve(&doc, &list["items"])["required"], json!(["type", "loc", "msg", "input"]));
}

#[tokio::test]
async fn answers_match_the_schemas_the_document_gives_them() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let doc = expect(app.ops(None).openapi().await, 200).await;
    let http = &app.client;
    let url = |path: &str| app.url(path);

    // 002, as its Next.js frontend calls it.
    let session = check(
        &doc,
        http.post(url("/api/auth/register/")).json(&json!({"email": "doc@example.org", "password": PASSWORD, "firstName": "D"})),
        "/api/auth/register",
        201,
    )
    .await;
    let user = session["access"].as_str().expect("access").to_string();
    let user_id = session["user"]["id"].as_i64().expect("id");
    check(&doc, http.get(url("/api/auth/user/")).bearer_auth(&user), "/api/auth/user", 200).await;
    check(&doc, http.patch(url("/api/auth/user/")).bearer_auth(&user).json(&json!({"clinicName": "North"})), "/api/auth/user", 200).await;
    check(&doc, http.get(url("/api/auth/user/")), "/api/auth/user", 401).await;
    check(&doc, http.post(url("/api/auth/token/refresh/")).json(&json!({"refresh": session["refresh"]})), "/api/auth/token/refresh", 200)
        .await;
    check(
        &doc,
        http.post(url("/api/audit-logs/")).bearer_auth(&user).json(&json!({"action": "view", "resource_type": "report", "resource_id": 7})),
        "/api/audit-logs",
        201,
    )
    .await;
    check(&doc, http.get(url("/api/health/")), "/api/health", 200).await;
    let admin = app.admin().await;
    check(&doc, http.get(url("/api/users/?page_size=1")).bearer_auth(&admin), "/api/users", 200).await;
    check(&doc, http.get(url("/api/users/?page=99")).bearer_auth(&admin), "/api/users", 404).await;
    check(&doc, http.get(url(&format!("/api/users/{user_id}/"))).bearer_auth(&admin), "/api/users/{id}", 200).await;
    check(&doc, http.get(url("/api/users/")).bearer_auth(&user), "/api/users", 403).await;
    check(&doc, http.get(url("/api/audit-logs/")).bearer_auth(&admin), "/api/audit-logs", 200).await;

    // 000, as its DRF client calls it.
    let token = check(
        &doc,
        http.post(url("/api/v1/auth/login/")).json(&json!({"username": "doc@example.org", "password": PASSWORD})),
        "/api/v1/auth/login",
        200,
    )
    .await;
    let catalog = token["access_token"].as_str().expect("token").to_string();
    let fields = json!({"title": "Chest CT", "modality": ["CT"], "area": "chest", "task_types": ["segmentation"], "tags": ["lung"]});
    let dataset =
        check(&doc, http.post(url("/api/v1/admin/datasets/")).bearer_auth(&admin).json(&fields), "/api/v1/admin/datasets", 201).await;
    let dataset_id = dataset["id"].as_i64().expect("id");
    check(&doc, http.get(url("/api/v1/datasets/")).bearer_auth(&catalog), "/api/v1/datasets", 200).await;
    check(&doc, http.get(url(&format!("/api/v1/datasets/{dataset_id}/"))).bearer_auth(&catalog), "/api/v1/datasets/{id}", 200).await;
    check(&doc, http.get(url("/api/v1/datasets/999999/")).bearer_auth(&catalog), "/api/v1/datasets/{id}", 404).await;
    check(&doc, http.get(url("/api/v1/vocabulary/")).bearer_auth(&catalog), "/api/v1/vocabulary", 200).await;
    let search = json!({"query_text": "chest", "filters": {"modality": ["CT"]}});
    check(&doc, http.post(url("/api/v1/search/datasets/")).bearer_auth(&catalog).json(&search), "/api/v1/search/datasets", 200).await;
    let faceted = json!({"query_text": "chest", "facets": true});
    check(&doc, http.post(url("/api/v1/search/datasets/")).bearer_auth(&catalog).json(&faceted), "/api/v1/search/datasets", 200).await;
    let request = json!({"dataset_ids": [dataset_id], "limit_per_dataset": 5});
    let collection =
        check(&doc, http.post(url("/api/v1/collections/")).bearer_auth(&catalog).json(&request), "/api/v1/collections", 201).await;
    let collection_id = collection["id"].as_i64().expect("id");
    check(&doc, http.get(url(&format!("/api/v1/collections/{collection_id}/"))).bearer_auth(&catalog), "/api/v1/collections/{id}", 200)
        .await;
    check(&doc, http.get(url("/api/v1/admin/requests/")).bearer_auth(&admin), "/api/v1/admin/requests", 200).await;
    check(&doc, http.post(url("/api/v1/admin/datasets/")).bearer_auth(&admin).json(&json!({})), "/api/v1/admin/datasets", 400).await;

    // 004, as a FastAPI client (requests) calls it.
    let form = [("username", "doc@example.org"), ("password", PASSWORD)];
    let token = check(&doc, http.post(url("/oauth/login")).form(&form), "/oauth/login", 200).await;
    let inference = token["access_token"].as_str().expect("token").to_string();
    check(&doc, http.post(url("/oauth/login")).form(&[("username", "doc@example.org")]), "/oauth/login", 422).await;
    let wrong = [("username", "doc@example.org"), ("password", "not the password")];
    check(&doc, http.post(url("/oauth/login")).form(&wrong), "/oauth/login", 422).await;
    check(&doc, http.get(url("/api/models")).bearer_auth(&inference), "/api/models", 200).await;
    check(&doc, http.get(url("/api/models")), "/api/models", 401).await;
    check(&doc, http.get(url("/api/tasks")).bearer_auth(&inference), "/api/tasks", 200).await;
    check(&doc, http.get(url("/api/tasks/424242/status")).bearer_auth(&inference), "/api/tasks/{id}/status", 404).await;

    // 003, 001 and medledger's own.
    let labeling = json!({"username": "doc@example.org", "password": PASSWORD});
    check(&doc, http.post(url("/auth/login")).json(&labeling), "/auth/login", 200).await;
    check(&doc, http.get(url("/login/")), "/login", 200).await;
    check(&doc, http.get(url("/api/processing/health/")), "/api/processing/health", 401).await;
    check(&doc, http.get(url("/api/processing/health/")).bearer_auth(&user), "/api/processing/health", 200).await;
    check(&doc, http.get(url("/api/verify")).bearer_auth(&admin), "/api/verify", 200).await;
    check(&doc, http.get(url("/healthz")), "/healthz", 200).await;
    check(&doc, http.get(url("/readyz")), "/readyz", 200).await;
}

#[tokio::test]
async fn the_root_leads_a_browser_to_the_docs() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let r = app.client.get(app.url("/")).header("accept", "text/html,application/xhtml+xml").send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let html = r.text().await.expect("body");
    assert!(html.contains("href=\"/docs\""), "a link to the docs: {html}");
    assert!(html.contains(env!("CARGO_PKG_VERSION")), "the version");
    for contract in ["000", "001", "002", "003", "004"] {
        assert!(html.contains(contract), "names contract {contract}");
    }
    assert!(html.contains("/healthz") && html.contains("ready"), "health");
}

#[tokio::test]
async fn docs_are_swagger_ui_served_from_this_server() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let r = app.ops(None).docs().await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = r.text().await.expect("body");
    // Every script and style the page loads comes from here.
    let assets: Vec<&str> = html.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert_eq!(assets.len(), 3, "{html}");
    for asset in &assets {
        assert!(asset.starts_with("/docs/"), "{asset} is not this server's");
        let r = app.get(asset, None).await;
        assert_eq!(r.status(), 200, "{asset}");
        let kind = r.headers()["content-type"].to_str().expect("type").to_string();
        assert!(kind.starts_with(if asset.ends_with(".js") { "text/javascript" } else { "text/css" }), "{asset}: {kind}");
    }
    let bundle = app.get("/docs/swagger-ui-bundle.js", None).await.text().await.expect("bundle");
    assert!(bundle.len() > 1_000_000 && bundle.contains("SwaggerUIBundle"), "the Swagger UI bundle");
    let init = app.get("/docs/swagger-initializer.js", None).await.text().await.expect("initializer");
    assert!(init.contains("url: '/openapi.json'") && init.contains("validatorUrl: null"), "{init}");
    assert_eq!(app.get("/docs/secret.key", None).await.status(), 404);
}
