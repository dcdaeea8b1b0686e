//! Accounts across contracts: register, the five logins, profile, passwords, sessions.

use medledger_tests::Kind;
use medledger_tests::app::{PASSWORD, TestApp, spawn_app};
use serde_json::json;

use super::expect;
use crate::on_both;

on_both!(register_then_log_in_on_every_contract, register_then_log_in_on_every_contract_);
async fn register_then_log_in_on_every_contract_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let body = expect(
        app.myo(None).register(&json!({"email": "Ann@Example.org", "password": PASSWORD, "firstName": "Ann", "lastName": "Lee", "clinicName": "Heart Clinic"}))
        .await,
        201,
    )
    .await;
    assert_eq!(body["user"]["email"], "ann@example.org");
    assert_eq!(body["user"]["role"], "doctor");
    assert_eq!(body["user"]["clinicName"], "Heart Clinic");
    assert!(body["access"].as_str().is_some_and(|t| t.split('.').count() == 3));

    let b = expect(app.myo(None).login(&json!({"email": "ann@example.org", "password": PASSWORD})).await, 200).await;
    assert_eq!(b["user"]["firstName"], "Ann");
    let b = expect(app.medagg(None).login(&json!({"username": "ann@example.org", "password": PASSWORD})).await, 200).await;
    assert_eq!(b["token_type"], "bearer");
    let b = expect(app.labeling(None).login(&json!({"username": "ann@example.org", "password": PASSWORD})).await, 200).await;
    assert_eq!(b["role"], "customer", "a doctor is neither labeler nor admin");
    let r = app.inference(None).oauth_login(&[("grant_type", "password"), ("username", "ann@example.org"), ("password", PASSWORD)]).await;
    let b = expect(r, 200).await;
    assert_eq!(b["token_type"], "Bearer");
    // Every contract's token works on every contract.
    let token = b["access_token"].as_str().unwrap();
    let me = expect(app.myo(token).me().await, 200).await;
    assert_eq!(me["email"], "ann@example.org");
}

#[tokio::test]
async fn wrong_credentials_answer_each_contracts_shape() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("bob@example.org").await;
    let b = expect(app.myo(None).login(&json!({"email": "bob@example.org", "password": "nope-nope"})).await, 401).await;
    assert_eq!(b["detail"], "Invalid credentials");
    assert!(b["code"].is_string() && b["field_errors"].is_object(), "002 shape: {b}");
    let b = expect(app.medagg(None).login(&json!({"username": "nobody@example.org", "password": "x"})).await, 401).await;
    assert_eq!(b, json!({"detail": "Invalid credentials"}));
    let b = expect(app.labeling(None).login(&json!({"username": "bob@example.org", "password": "wrong"})).await, 401).await;
    assert_eq!(b, json!({"detail": "Invalid credentials"}));
    let r = app.inference(None).oauth_login(&[("username", "bob@example.org"), ("password", "bad")]).await;
    assert_eq!(expect(r, 422).await, json!({"detail": "Incorrect username or password"}));
}

#[tokio::test]
async fn duplicate_email_is_refused_case_insensitively_and_writes_nothing() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("dup@example.org").await;
    let head = app.head().await;
    let b = expect(app.myo(None).register(&json!({"email": "DUP@example.org", "password": PASSWORD})).await, 400).await;
    assert!(b["field_errors"]["email"][0].as_str().unwrap().contains("already exists"), "{b}");
    assert_eq!(app.head().await, head, "a refused registration appends nothing");
}

#[tokio::test]
async fn concurrent_registrations_with_one_email_make_one_account() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let body = json!({"email": "race@example.org", "password": PASSWORD});
    let attempts = (0..6).map(|_| app.myo(None).register(&body));
    let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 400), "{statuses:?}");
}

on_both!(profile_and_password_changes, profile_and_password_changes_);
async fn profile_and_password_changes_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (_, access, _) = app.register("carol@example.org").await;
    let b = expect(app.myo(&access).update_me(&json!({"firstName": "Caroline", "clinicName": "Updated Clinic"})).await, 200).await;
    assert_eq!(
        (b["firstName"].as_str(), b["lastName"].as_str(), b["clinicName"].as_str()),
        (Some("Caroline"), Some("User"), Some("Updated Clinic"))
    );
    let b = expect(app.myo(&access).change_password(&json!({"old_password": "wrong-old", "new_password": "another good one"})).await, 400)
        .await;
    assert!(b["field_errors"]["old_password"].is_array(), "{b}");
    expect(app.myo(&access).change_password(&json!({"old_password": PASSWORD, "new_password": "another good one"})).await, 200).await;
    expect(app.myo(None).login(&json!({"email": "carol@example.org", "password": PASSWORD})).await, 401).await;
    expect(app.myo(None).login(&json!({"email": "carol@example.org", "password": "another good one"})).await, 200).await;
}

#[tokio::test]
async fn a_password_change_ends_every_earlier_session() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, refresh_before) = app.register("pat@example.org").await;
    let other = expect(app.myo(None).login(&json!({"email": "pat@example.org", "password": PASSWORD})).await, 200).await;
    let other_refresh = other["refresh"].as_str().unwrap().to_string();
    expect(app.myo(&access).change_password(&json!({"old_password": PASSWORD, "new_password": "stolen no more"})).await, 200).await;
    let head = app.head().await;
    expect(app.myo(None).refresh(&refresh_before).await, 401).await;
    expect(app.myo(None).refresh(&other_refresh).await, 401).await;
    assert_eq!(app.head().await, head, "a refused refresh writes nothing");
    let fresh = expect(app.myo(None).login(&json!({"email": "pat@example.org", "password": "stolen no more"})).await, 200).await;
    expect(app.myo(None).refresh(fresh["refresh"].as_str().unwrap()).await, 200).await;
}

#[tokio::test]
async fn a_deactivated_user_cannot_refresh_and_nothing_is_written() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let (uid, _, refresh) = app.register("quinn@example.org").await;
    expect(app.myo(&admin).update_user(uid, &json!({"isActive": false})).await, 200).await;
    let head = app.head().await;
    expect(app.myo(None).refresh(&refresh).await, 401).await;
    assert_eq!(app.head().await, head);
}

on_both!(refresh_rotates_and_reuse_revokes_the_session, refresh_rotates_and_reuse_revokes_the_session_);
async fn refresh_rotates_and_reuse_revokes_the_session_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    let (user_id, _, refresh1) = app.register("dan@example.org").await;
    let b = expect(app.myo(None).refresh(&refresh1).await, 200).await;
    let refresh2 = b["refresh"].as_str().unwrap().to_string();
    assert!(b["access"].is_string());
    assert_ne!(refresh1, refresh2);
    // The rotated token comes back: reuse. Refused, and the whole session dies.
    expect(app.myo(None).refresh(&refresh1).await, 401).await;
    expect(app.myo(None).refresh(&refresh2).await, 401).await;
    // The reuse is in the audit log.
    let admin = app.admin().await;
    let log = expect(app.myo(&admin).audit_logs(&format!("action=refresh_token_reuse_detected&user_id={user_id}")).await, 200).await;
    assert_eq!(log["count"], 1, "{log}");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let (_, access, refresh) = app.register("eve@example.org").await;
    let b = expect(app.myo(&access).logout(&refresh).await, 200).await;
    assert_eq!(b["detail"], "Successfully logged out");
    expect(app.myo(None).refresh(&refresh).await, 401).await;
    // Another user's refresh token cannot log this user out.
    let (_, other_access, _) = app.register("frank@example.org").await;
    let (_, _, eve_refresh) = {
        let b = expect(app.myo(None).login(&json!({"email": "eve@example.org", "password": PASSWORD})).await, 200).await;
        (0, String::new(), b["refresh"].as_str().unwrap().to_string())
    };
    expect(app.myo(&other_access).logout(&eve_refresh).await, 401).await;
    expect(app.myo(None).refresh(&eve_refresh).await, 200).await;
}

async fn read_reset_token(app: &TestApp) -> String {
    let outbox = app.data_dir().join("outbox");
    for _ in 0..200 {
        if let Ok(entries) = std::fs::read_dir(&outbox) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.starts_with("Token: ")) {
                    return line.trim_start_matches("Token: ").trim().to_string();
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no reset mail in {}", outbox.display());
}

on_both!(password_reset_by_mailed_token, password_reset_by_mailed_token_);
async fn password_reset_by_mailed_token_(kind: Kind) {
    let Some(app) = spawn_app(kind).await else { return };
    app.register("gina@example.org").await;
    // Unknown addresses get the same answer and no mail.
    let unknown = expect(app.myo(None).password_reset("nobody@example.org").await, 200).await;
    let known = expect(app.myo(None).password_reset("gina@example.org").await, 200).await;
    assert_eq!(unknown, known);
    let token = read_reset_token(&app).await;
    // The token is in the mail only: not in the history an admin can read.
    let admin = app.admin().await;
    let history = app.ops(&admin).events("").await.text().await.unwrap();
    let secret = token.split_once('.').unwrap().1;
    assert!(!history.contains(secret), "the reset token is readable from the event history");
    let confirm = |t: &str| json!({"token": t, "new_password": "a brand new secret"});
    expect(app.myo(None).confirm_password_reset(&confirm("1.forged")).await, 400).await;
    expect(app.myo(None).confirm_password_reset(&confirm(&token)).await, 200).await;
    expect(app.myo(None).confirm_password_reset(&confirm(&token)).await, 400).await;
    expect(app.myo(None).login(&json!({"email": "gina@example.org", "password": "a brand new secret"})).await, 200).await;
    let mails = std::fs::read_dir(app.data_dir().join("outbox")).unwrap().count();
    assert_eq!(mails, 1);
}

#[tokio::test]
async fn reset_mail_goes_over_smtp_when_configured() {
    let Some(mut config) = medledger_tests::app::test_config(Kind::Sqlite).await else { return };
    let (port, mut inbox) = medledger_tests::smtp_sink().await;
    config.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
    let app = medledger_tests::app::spawn_with(config, Kind::Sqlite).await;
    app.register("sam@example.org").await;
    expect(app.myo(None).password_reset("sam@example.org").await, 200).await;
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), inbox.recv()).await.expect("mail in time").unwrap();
    assert!(message.contains("To: sam@example.org"), "{message}");
    let token = message.lines().find_map(|l| l.strip_prefix("Token: ")).expect("token line").trim().to_string();
    expect(app.myo(None).confirm_password_reset(&json!({"token": token, "new_password": "via smtp now"})).await, 200).await;
    assert!(!app.data_dir().join("outbox").exists(), "nothing went to the outbox");
}

#[tokio::test]
async fn the_reset_mail_saga_does_not_resend_after_a_restart() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("hal@example.org").await;
    expect(app.myo(None).password_reset("hal@example.org").await, 200).await;
    read_reset_token(&app).await;
    let outbox = app.data_dir().join("outbox");
    let config = app.stop().await;
    std::fs::remove_dir_all(&outbox).unwrap();
    let app = medledger_tests::app::spawn_with(config, Kind::Sqlite).await;
    app.register("ivy@example.org").await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(!outbox.exists() || std::fs::read_dir(&outbox).unwrap().count() == 0, "the saga resent a mail it had sent");
}

#[tokio::test]
async fn admin_manages_users_and_others_cannot() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    let admin = app.admin().await;
    let (jo, jo_access, _) = app.register("jo@example.org").await;
    for i in 0..3 {
        app.register(&format!("user{i}@example.org")).await;
    }
    expect(app.myo(&jo_access).users("").await, 403).await;
    expect(app.myo(None).users("").await, 401).await;
    let page = expect(app.myo(&admin).users("page_size=2").await, 200).await;
    assert_eq!(page["count"], 5);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert!(page["next"].as_str().unwrap().contains("page=2"));
    let found = expect(app.myo(&admin).users("search=JO@").await, 200).await;
    assert_eq!(found["count"], 1);
    let b = expect(app.myo(&admin).update_user(jo, &json!({"role": "technician", "isActive": false})).await, 200).await;
    assert_eq!((b["role"].as_str(), b["isActive"].as_bool()), (Some("technician"), Some(false)));
    // A deactivated account cannot log in.
    expect(app.myo(None).login(&json!({"email": "jo@example.org", "password": PASSWORD})).await, 401).await;
    let b = expect(app.myo(&admin).update_user(jo, &json!({"role": "wizard"})).await, 400).await;
    assert!(b["detail"].as_str().unwrap().contains("allowed"), "{b}");
    expect(app.myo(&admin).user(999999).await, 404).await;
    // An id that is no number: the raw path.
    expect(app.get("/api/users/abc/", Some(&admin)).await, 404).await;
}

#[tokio::test]
async fn scans_cookie_login_requires_csrf() {
    let Some(app) = spawn_app(Kind::Sqlite).await else { return };
    app.register("kim@example.org").await;
    let page = app.scans(None).login_page().await;
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("csrftoken=").map(|v| v.split(';').next().unwrap().to_string()))
        .expect("csrftoken cookie");
    let form = |csrf: &str| {
        vec![("username", "kim@example.org".to_string()), ("password", PASSWORD.to_string()), ("csrfmiddlewaretoken", csrf.to_string())]
    };
    let no_cookie = app.scans(None).login(&form(&cookie)).await;
    assert_eq!(expect(no_cookie, 403).await, json!({"error": "CSRF verification failed. Request aborted."}));
    let ok = app.scans(None).login(&form(&cookie)).header("cookie", format!("csrftoken={cookie}")).await;
    let session = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("sessionid="))
        .map(str::to_string)
        .expect("session cookie");
    assert!(session.contains("HttpOnly"));
    assert_eq!(expect(ok, 200).await["success"], true);
    let bad = app
        .scans(None)
        .login(&[("username", "kim@example.org"), ("password", "wrong"), ("csrfmiddlewaretoken", cookie.as_str())])
        .header("cookie", format!("csrftoken={cookie}"))
        .await;
    assert!(expect(bad, 401).await["error"].is_string());
}
