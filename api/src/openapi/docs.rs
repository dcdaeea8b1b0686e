//! The interactive documentation (`/docs`): Swagger UI over `/openapi.json`, and the
//! landing page at `/`.
//!
//! Swagger UI's files are compiled into the binary from `api/static/swagger-ui/`
//! (swagger-ui-dist from the npm registry, version in `VERSION`; refetch with
//! `scripts/fetch-swagger-ui.sh`): the page loads nothing from anywhere else, works
//! offline and cannot be missing from an installation.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const SWAGGER_UI_VERSION: &str = include_str!("../../static/swagger-ui/VERSION");

/// The files `/docs/{asset}` serves: name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    ("swagger-ui-bundle.js", "text/javascript; charset=utf-8", include_bytes!("../../static/swagger-ui/swagger-ui-bundle.js")),
    ("swagger-ui.css", "text/css; charset=utf-8", include_bytes!("../../static/swagger-ui/swagger-ui.css")),
    ("swagger-initializer.js", "text/javascript; charset=utf-8", INITIALIZER.as_bytes()),
    ("LICENSE", "text/plain; charset=utf-8", include_bytes!("../../static/swagger-ui/LICENSE")),
];

/// The names `/docs/{asset}` answers, for the document.
pub const ASSET_NAMES: [&str; 4] = [ASSETS[0].0, ASSETS[1].0, ASSETS[2].0, ASSETS[3].0];

/// Scripts from this server only; Swagger UI sets inline styles and draws its icons
/// from `data:` URIs. Requests from "Try it out" go to this server (`connect-src`).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medledger API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<noscript>This page needs JavaScript. The document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"#;

/// `validatorUrl: null`: Swagger UI would otherwise load a badge from
/// validator.swagger.io. Tokens are not persisted: a page reload forgets them.
const INITIALIZER: &str = r#"window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    docExpansion: 'list',
    filter: true,
    displayRequestDuration: true,
    showExtensions: false,
    tryItOutEnabled: true,
    persistAuthorization: false,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout'
  });
});
"#;

fn with_headers(content_type: &'static str, cache: &'static str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

/// `/docs`: Swagger UI.
pub fn page() -> Response {
    with_headers("text/html; charset=utf-8", "no-cache", PAGE)
}

/// `/docs/{asset}`: Swagger UI's files.
pub fn asset(name: &str) -> Option<Response> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    // The files change only with the binary; an hour keeps a reload fast.
    Some(with_headers(content_type, "public, max-age=3600", *bytes))
}

/// `/`: what this server is, where its documentation and health are.
pub fn landing(ready: bool) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let (state, class) = if ready { ("ready", "ok") } else { ("the event store is unreachable", "down") };
    let contracts = [
        ("000", "MedAgg: dataset catalog, search, collections", "/api/v1", "000 catalog"),
        ("001", "ToothFairy4M: dental scans (browser session + CSRF)", "/", "001 scans"),
        ("002", "MyoMetrics: accounts, users, audit log", "/api", "002 accounts"),
        ("003", "Labeling platform", "/", "003 labeling"),
        ("004", "Inference tasks and models", "/api/tasks, /api/models", "004 inference"),
    ];
    let rows: String = contracts
        .iter()
        .map(|(n, what, base, tag)| {
            format!(
                "<tr><td>{n}</td><td>{what}</td><td><code>{base}</code></td><td><a href=\"/docs#/{}\">operations</a></td></tr>",
                tag.replace(' ', "%20")
            )
        })
        .collect();
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>medledger {version}</title>
<style>
body{{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:860px;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eee}}
.ok{{color:#0a7}}.down{{color:#c22}}code{{font-size:14px}}
</style></head><body>
<h1>medledger <small>{version}</small></h1>
<p>Five API contracts served from one event-sourced history.</p>
<p><a href="/docs"><strong>Interactive API documentation</strong></a> (try every operation with a bearer token)
· <a href="/openapi.json">OpenAPI 3.1 document</a></p>
<h2>Contracts</h2>
<table><tr><th>#</th><th>what</th><th>base</th><th></th></tr>{rows}</table>
<h2>Health</h2>
<p>Now: <strong class="{class}">{state}</strong>.
<a href="/healthz"><code>/healthz</code></a> (liveness) · <a href="/readyz"><code>/readyz</code></a> (readiness)
· <a href="/api/health"><code>/api/health</code></a> (002's service health)</p>
</body></html>
"#
    );
    let status = StatusCode::OK;
    (status, with_headers("text/html; charset=utf-8", "no-cache", html)).into_response()
}
