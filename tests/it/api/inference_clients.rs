//! Issue 16, contract 004: what FastAPI clients and browsers send. Multipart bodies are
//! built byte for byte as `requests.post(files=...)` builds them (a 32-hex boundary,
//! `Content-Disposition: form-data; name="file"; filename="x.png"`, the part's
//! `Content-Type` when the tuple names one) or as Chromium's `FormData` does.

use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, TestApp, spawn_app};
use serde_json::{Value, json};

use super::expect;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/inference");
/// The largest image the route keeps (api::routes::inference::MAX_IMAGE_BYTES).
const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// One part of a form: its name, `(filename, content type)` for a file (content type
/// `None`: requests' `("x.png", data)` tuple sends none), and its bytes.
type Part<'a> = (&'a str, Option<(&'a str, Option<&'a str>)>, &'a [u8]);

/// A `multipart/form-data` body as requests' `encode_multipart_formdata` lays it out.
fn multipart(boundary: &str, parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some((filename, content_type)) = file {
            body.extend(format!("; filename=\"{filename}\"").as_bytes());
            if let Some(ct) = content_type {
                body.extend(format!("\r\nContent-Type: {ct}").as_bytes());
            }
        }
        body.extend(b"\r\n\r\n");
        body.extend(*data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// requests' boundary: 32 hex digits.
const REQUESTS_BOUNDARY: &str = "a6cdf97f70ad159df7a1a0e1e33294be";

/// A task of detection model 2 and classification model 3 from a form.
async fn create_from_form(app: &TestApp, token: &str, (content_type, body): (String, Vec<u8>)) -> reqwest::Response {
    app.inference(token).create_task(2, 3, Some(&content_type), body).await
}

async fn upload(app: &TestApp, token: &str, parts: &[Part<'_>]) -> reqwest::Response {
    create_from_form(app, token, multipart(REQUESTS_BOUNDARY, parts)).await
}

/// `POST /oauth/login` with a form of another encoding than urlencoded.
async fn oauth_form(app: &TestApp, (content_type, body): (String, Vec<u8>)) -> reqwest::Response {
    app.inference(None).oauth_login_raw(Some(&content_type), body).await
}

async fn settled(app: &TestApp, token: &str, id: i64) -> Value {
    let r = expect(app.inference(token).result(id, "wait=30").await, 200).await;
    assert_eq!(r["status"], "done", "{r}");
    r
}

fn missing(place: &str, field: &str) -> Value {
    json!({"type": "missing", "loc": [place, field], "msg": "Field required", "input": null})
}

/// `requests.post(url, files={"file": ("x.png", data, "image/png")})`, a FastAPI
/// client's upload, and a browser's `FormData` with an `image` field: each makes a task
/// of that image, as the raw body does.
#[tokio::test]
async fn fastapi_clients_and_browsers_upload_the_image_as_a_form_file() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, token, _) = app.register("doctor@example.org").await;

    let png = fixture("fixture_3_kitchen_3obj.png");
    let created = expect(upload(&app, &token, &[("file", Some(("x.png", Some("image/png"))), &png)]).await, 200).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(settled(&app, &token, id).await["result"]["image_class"], "kitchen");
    let input = app.inference(&token).input(id).await;
    assert_eq!(input.headers()["content-type"], "image/png");
    assert_eq!(input.bytes().await.unwrap().to_vec(), png, "the file's bytes, not the form's");

    // `files={"file": open("street.jpg", "rb")}` names no content type.
    let jpeg = fixture("large_1_street_640x480.jpg");
    let created = expect(upload(&app, &token, &[("file", Some(("street.jpg", None)), &jpeg)]).await, 200).await;
    assert_eq!(settled(&app, &token, created["id"].as_i64().unwrap()).await["result"]["image_class"], "street");

    // Chromium's FormData: `form.append("note", "...")`, `form.append("image", file)`.
    let kitchen = fixture("large_2_kitchen_400x300.jpg");
    let form = multipart(
        "----WebKitFormBoundary7MA4YWxkTrZu0gW",
        &[("note", None, "first visit".as_bytes()), ("image", Some(("kitchen.jpg", Some("image/jpeg"))), &kitchen)],
    );
    let created = expect(create_from_form(&app, &token, form).await, 200).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(settled(&app, &token, id).await["result"]["image_class"], "kitchen");

    let list = expect(app.inference(&token).tasks("").await, 200).await;
    let paths: Vec<&str> = list["tasks"].as_array().unwrap().iter().map(|t| t["input_path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 3);
    assert_eq!(paths[2], format!("img_{id}.jpeg"), "stored under the contract's name, not the client's");
}

/// A form without exactly one image is FastAPI's 422 list, an image that is not one
/// names the file, and an image over the limit is refused while it streams in; none of
/// it records anything.
#[tokio::test]
async fn a_form_without_one_image_is_refused_as_fastapi_refuses_it() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, token, _) = app.register("doctor@example.org").await;
    let png = fixture("fixture_1_office_1obj.png");
    let head = app.head().await;

    let no_file = json!({"detail": [missing("body", "file")]});
    // Only text fields; a file under another name (FastAPI reads no `file` either).
    for parts in [
        vec![("note", None, "hello".as_bytes())],
        vec![("upload", Some(("x.png", Some("image/png"))), png.as_slice())],
        vec![("files", Some(("x.png", Some("image/png"))), png.as_slice())],
    ] {
        assert_eq!(expect(upload(&app, &token, &parts).await, 422).await, no_file, "{:?}", parts[0].0);
    }
    // An empty form.
    assert_eq!(expect(upload(&app, &token, &[]).await, 422).await, no_file);

    // Two files: which one was meant cannot be told.
    for (first, second) in [("file", "file"), ("file", "image"), ("image", "thumbnail")] {
        let r = expect(
            upload(&app, &token, &[(first, Some(("a.png", Some("image/png"))), &png), (second, Some(("b.png", Some("image/png"))), &png)])
                .await,
            422,
        )
        .await;
        let entry = &r["detail"][0];
        assert_eq!(
            (&entry["type"], &entry["loc"], &entry["input"]),
            (&json!("value_error"), &json!(["body", "file"]), &Value::Null),
            "{r}"
        );
        let msg = entry["msg"].as_str().unwrap();
        assert!(msg.starts_with("Value error, send one image") && msg.contains(second), "{msg}");
    }

    // Files that are not images: 400 naming the file and the reason.
    let r = expect(upload(&app, &token, &[("file", Some(("notes.txt", Some("text/plain"))), b"just some text")]).await, 400).await;
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.starts_with("notes.txt: ") && detail.contains("not an image"), "{detail}");
    let r = expect(upload(&app, &token, &[("file", Some(("empty.png", Some("image/png"))), b"")]).await, 400).await;
    assert_eq!(r, json!({"detail": "empty.png: the file is empty: send a JPEG or PNG image."}));
    // A browser's file input left empty: `filename=""`, no bytes.
    let r = expect(upload(&app, &token, &[("image", Some(("", Some("application/octet-stream"))), b"")]).await, 400).await;
    assert_eq!(r, json!({"detail": "part \"image\": the file is empty: send a JPEG or PNG image."}));

    // One byte over the image limit, inside the room the route leaves for the form.
    let mut big = png.clone();
    big.resize(MAX_IMAGE_BYTES + 1, 0);
    let r = expect(upload(&app, &token, &[("file", Some(("big.png", Some("image/png"))), &big)]).await, 413).await;
    assert_eq!(r, json!({"detail": "The image is larger than the 20 MiB accepted."}));
    // A form far over it is stopped by the route's limit.
    big.resize(MAX_IMAGE_BYTES + 256 * 1024, 0);
    expect(upload(&app, &token, &[("file", Some(("big.png", Some("image/png"))), &big)]).await, 413).await;

    // A body that claims to be a form and is not one.
    let broken = (format!("multipart/form-data; boundary={REQUESTS_BOUNDARY}"), b"garbage".to_vec());
    let r = expect(create_from_form(&app, &token, broken).await, 400).await;
    assert!(r["detail"].as_str().unwrap().starts_with("Invalid multipart data"), "{r}");
    let no_boundary = ("multipart/form-data".to_string(), png.clone());
    expect(create_from_form(&app, &token, no_boundary).await, 400).await;

    assert_eq!(app.head().await, head, "nothing was recorded");
    assert_eq!(expect(app.inference(&token).tasks("").await, 200).await, json!({"tasks": []}));

    // The model ids are still checked first, and the raw body still works.
    let (content_type, form) = multipart(REQUESTS_BOUNDARY, &[("file", Some(("x.png", Some("image/png"))), &png)]);
    let r = expect(app.inference(&token).create_task_with_query("classification_model_id=3", Some(&content_type), form).await, 400).await;
    assert!(r["detail"].as_str().unwrap().starts_with("detection_model_id is required"), "{r}");
    let raw = app.inference(&token).create_task(2, 3, None, png).await;
    expect(raw, 200).await;
}

/// `POST /oauth/login` as FastAPI's `OAuth2PasswordRequestForm` reads it: urlencoded,
/// multipart (`requests.post(files={"username": (None, ...)})`, a browser's
/// `FormData`), and the seed's JSON; missing fields are FastAPI's 422 list, word for word.
#[tokio::test]
async fn the_oauth_login_reads_its_form_as_fastapi_does() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("ann@example.org").await;
    let user = "ann@example.org".as_bytes();

    let form = multipart(REQUESTS_BOUNDARY, &[("username", None, user), ("password", None, PASSWORD.as_bytes())]);
    let b = expect(oauth_form(&app, form).await, 200).await;
    assert_eq!(b["token_type"], "Bearer");
    expect(app.inference(b["access_token"].as_str()).models().await, 200).await;
    let browser = multipart(
        "----WebKitFormBoundaryx8dZqLs1cK2mB0pQ",
        &[("grant_type", None, b"password"), ("username", None, user), ("password", None, PASSWORD.as_bytes()), ("scope", None, b"")],
    );
    expect(oauth_form(&app, browser).await, 200).await;
    let seed = json!({"grant_type": "password", "username": "ann@example.org", "password": PASSWORD, "scope": "", "client_id": "", "client_secret": ""});
    expect(app.inference(None).oauth_login_json(&seed).await, 200).await;

    // Missing fields, in each encoding; an empty form field is missing, as in FastAPI.
    let both = json!({"detail": [missing("body", "username"), missing("body", "password")]});
    let form = |pairs: &[(&str, &str)]| app.inference(None).oauth_login(pairs);
    assert_eq!(expect(form(&[("username", "ann@example.org")]).await, 422).await, json!({"detail": [missing("body", "password")]}));
    assert_eq!(
        expect(form(&[("username", ""), ("password", PASSWORD)]).await, 422).await,
        json!({"detail": [missing("body", "username")]})
    );
    assert_eq!(expect(form(&[]).await, 422).await, both);
    let only_user = multipart(REQUESTS_BOUNDARY, &[("username", None, user)]);
    assert_eq!(expect(oauth_form(&app, only_user).await, 422).await, json!({"detail": [missing("body", "password")]}));
    // Starlette reads a body of another type as an empty form.
    let r = app.inference(None).oauth_login_raw(None, "username=ann@example.org").await;
    assert_eq!(expect(r, 422).await, both);
    assert_eq!(
        expect(app.inference(None).oauth_login_json(&json!({"username": "ann@example.org"})).await, 422).await,
        json!({"detail": [missing("body", "password")]})
    );

    // Another grant: pydantic's pattern error, with its ctx.
    let r = form(&[("grant_type", "client_credentials"), ("username", "ann@example.org"), ("password", PASSWORD)]).await;
    assert_eq!(
        expect(r, 422).await,
        json!({"detail": [{"type": "string_pattern_mismatch", "loc": ["body", "grant_type"], "msg": "String should match pattern '^password$'",
                           "input": "client_credentials", "ctx": {"pattern": "^password$"}}]})
    );
    // Wrong credentials keep the seed's own sentence.
    let wrong = multipart(REQUESTS_BOUNDARY, &[("username", None, user), ("password", None, b"not the password")]);
    assert_eq!(expect(oauth_form(&app, wrong).await, 422).await, json!({"detail": "Incorrect username or password"}));
}

/// An admin opens any task by id, and lists them all with `?all=true` (each with its
/// owner); anyone else asking for all is refused, and their own list is unchanged.
#[tokio::test]
async fn admins_list_every_task_as_they_open_any() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (owner, token, _) = app.register("owner@example.org").await;
    let (_, other, _) = app.register("other@example.org").await;
    let admin = app.admin().await;
    let png = fixture("fixture_2_street_2obj.png");
    let id = expect(upload(&app, &token, &[("file", Some(("x.png", Some("image/png"))), &png)]).await, 200).await["id"].as_i64().unwrap();
    settled(&app, &token, id).await;

    // By id: the admin sees it.
    assert_eq!(expect(app.inference(&admin).status(id).await, 200).await, json!({"id": id, "status": "done"}));
    // Listed: their own by default, as the seed says; every user's with all=true.
    assert_eq!(expect(app.inference(&admin).tasks("").await, 200).await, json!({"tasks": []}));
    for yes in ["true", "1", "yes", "True"] {
        let all = expect(app.inference(&admin).tasks(&format!("all={yes}")).await, 200).await;
        let rows = all["tasks"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{all}");
        assert_eq!(
            (rows[0]["id"].as_i64(), rows[0]["owner_id"].as_i64(), rows[0]["status"].as_str()),
            (Some(id), Some(owner), Some("done"))
        );
    }
    assert_eq!(expect(app.inference(&admin).tasks("all=false").await, 200).await, json!({"tasks": []}));

    // Anyone else: refused, not handed their own list as if it were everything.
    for user in [&other, &token] {
        let r = expect(app.inference(user).tasks("all=true").await, 403).await;
        assert_eq!(r, json!({"detail": "Only admins may list every user's tasks (all=true)."}));
    }
    let own = expect(app.inference(&token).tasks("all=false").await, 200).await;
    assert_eq!(own["tasks"].as_array().unwrap().len(), 1);
    assert!(own["tasks"][0].get("owner_id").is_none(), "the seed's row: {own}");
    let foreign = expect(app.inference(&other).status(id).await, 404).await;
    assert_eq!(foreign, json!({"detail": format!("Task with id {id} does not exist.")}));

    // A flag that is not a boolean: FastAPI's 422.
    assert_eq!(
        expect(app.inference(&admin).tasks("all=maybe").await, 422).await,
        json!({"detail": [{"type": "bool_parsing", "loc": ["query", "all"], "msg": "Input should be a valid boolean, unable to interpret input", "input": "maybe"}]})
    );
    assert_eq!(expect(app.inference(None).tasks("all=true").await, 401).await, json!({"detail": "Not authenticated"}));
}
