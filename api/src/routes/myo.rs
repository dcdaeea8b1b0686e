//! Contract 002 (MyoMetrics): accounts, users, audit logs, health. Mounted at `/api`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use medledger_application::accounts::{ProfileChange, Registration};
use medledger_domain::role::{Role, Roles};
use medledger_domain::user::self_registration_roles;
use medledger_projections::queries::{self, AuditFilter, UserFilter, UserRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Myo};
use crate::extract::{Admin, Auth, Ctx, JsonBody};
use crate::openapi::{Api, Op};
use crate::state::AppState;

type Res<T> = ApiResult<T, Myo>;

pub fn routes(api: Api) -> Api {
    api.post("/api/auth/login", login, Op::public("002 accounts", "Log in with email and password").auth_limited())
        .post("/api/auth/register", register, Op::public("002 accounts", "Register (role doctor)").auth_limited().status(201))
        .post("/api/auth/logout", logout, Op::user("002 accounts", "Log out: revoke the refresh token"))
        .get("/api/auth/user", me, Op::user("002 accounts", "The current user's profile"))
        .put("/api/auth/user", update_me, Op::user("002 accounts", "Update the current user's profile"))
        .patch("/api/auth/user", update_me, Op::user("002 accounts", "Partly update the current user's profile"))
        .post("/api/auth/change-password", change_password, Op::user("002 accounts", "Change password"))
        .post("/api/auth/password-reset", password_reset, Op::public("002 accounts", "Mail a password-reset token").auth_limited())
        .post(
            "/api/auth/password-reset/confirm",
            password_reset_confirm,
            Op::public("002 accounts", "Set a new password with a reset token").auth_limited(),
        )
        .post("/api/auth/token/refresh", refresh, Op::public("002 accounts", "Rotate a refresh token").auth_limited())
        .get("/api/users", list_users, Op::admin("002 users", "List users (DRF pagination)"))
        .get("/api/users/{id}", get_user, Op::admin("002 users", "A user"))
        .put("/api/users/{id}", update_user, Op::admin("002 users", "Update a user, roles and activation included"))
        .post("/api/audit-logs", create_audit_entry, Op::user("002 audit", "Record an audit entry").status(201))
        .get("/api/audit-logs", list_audit_log, Op::admin("002 audit", "The audit log (every event in the history)"))
        .get("/api/health", health, Op::public("002 health", "Service health"))
}

fn user_json(u: &UserRow, admin_view: bool) -> Value {
    let mut v = json!({
        "id": u.id,
        "email": u.email,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "role": u.primary_role,
        "roles": u.roles,
        "clinicName": u.clinic_name,
        "dateJoined": u.date_joined,
    });
    if admin_view {
        v["lastLogin"] = json!(u.last_login);
        v["isActive"] = json!(u.is_active);
    }
    v
}

async fn user_row(state: &AppState, id: i64) -> Res<UserRow> {
    queries::user(&state.dbs.read, id).await?.ok_or_else(|| ApiError::not_found("Not found."))
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(State(state): State<AppState>, Ctx(ctx): Ctx, JsonBody(body, ..): JsonBody<LoginBody, Myo>) -> Res<Json<Value>> {
    let done = state.accounts.login(&body.email, &body.password, &ctx).await?;
    state.caught_up(done.position).await;
    let user = user_row(&state, done.user_id).await?;
    Ok(Json(json!({"access": done.tokens.access, "refresh": done.tokens.refresh, "user": user_json(&user, false)})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    email: String,
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    clinic_name: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<RegisterBody, Myo>,
) -> Res<(StatusCode, Json<Value>)> {
    let form = Registration {
        email: body.email,
        username: None,
        password: body.password,
        first_name: body.first_name,
        last_name: body.last_name,
        clinic_name: body.clinic_name.unwrap_or_default(),
        roles: self_registration_roles(),
    };
    let done = state.accounts.register_and_login(form, &ctx).await?;
    state.caught_up(done.position).await;
    let row = user_row(&state, done.user_id).await?;
    Ok((StatusCode::CREATED, Json(json!({"access": done.tokens.access, "refresh": done.tokens.refresh, "user": user_json(&row, false)}))))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh: String,
}

async fn logout(
    State(state): State<AppState>,
    auth: Auth<Myo>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<RefreshBody, Myo>,
) -> Res<Json<Value>> {
    if let Some(position) = state.accounts.logout(&body.refresh, auth.user_id(), &ctx).await? {
        // The access token dies with the session: on this process, from the answer on.
        state.caught_up_on("access", position).await;
    }
    Ok(Json(json!({"detail": "Successfully logged out"})))
}

async fn refresh(State(state): State<AppState>, Ctx(ctx): Ctx, JsonBody(body, ..): JsonBody<RefreshBody, Myo>) -> Res<Json<Value>> {
    let tokens = state.accounts.refresh(&body.refresh, &ctx).await?;
    Ok(Json(json!({"access": tokens.access, "refresh": tokens.refresh})))
}

async fn me(State(state): State<AppState>, auth: Auth<Myo>) -> Res<Json<Value>> {
    Ok(Json(user_json(&user_row(&state, auth.user_id()).await?, false)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileBody {
    first_name: Option<String>,
    last_name: Option<String>,
    clinic_name: Option<String>,
}

async fn update_me(
    State(state): State<AppState>,
    auth: Auth<Myo>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<ProfileBody, Myo>,
) -> Res<Json<Value>> {
    let change =
        ProfileChange { first_name: body.first_name, last_name: body.last_name, clinic_name: body.clinic_name, ..Default::default() };
    let ctx = ctx.with_actor(auth.user_id());
    if let Some(p) = state.accounts.update_user(auth.user_id(), change, &ctx).await? {
        state.caught_up(p).await;
    }
    me(State(state), auth).await
}

#[derive(Deserialize)]
struct ChangePasswordBody {
    old_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    auth: Auth<Myo>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<ChangePasswordBody, Myo>,
) -> Res<Json<Value>> {
    let position = state.accounts.change_password(auth.user_id(), &body.old_password, &body.new_password, &ctx).await?;
    // Every session from before the change is over, on this process from the answer on.
    state.caught_up_on("access", position).await;
    Ok(Json(json!({"detail": "Password changed successfully"})))
}

#[derive(Deserialize)]
struct ResetBody {
    email: String,
}

async fn password_reset(State(state): State<AppState>, Ctx(ctx): Ctx, JsonBody(body, ..): JsonBody<ResetBody, Myo>) -> Res<Json<Value>> {
    state.accounts.request_password_reset(&body.email, &ctx).await?;
    Ok(Json(json!({"detail": "Password reset email sent"})))
}

#[derive(Deserialize)]
struct ResetConfirmBody {
    token: String,
    new_password: String,
}

async fn password_reset_confirm(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<ResetConfirmBody, Myo>,
) -> Res<Json<Value>> {
    state.accounts.confirm_password_reset(&body.token, &body.new_password, &ctx).await?;
    Ok(Json(json!({"detail": "Password has been reset"})))
}

#[derive(Deserialize)]
struct Page {
    page: Option<String>,
    page_size: Option<String>,
}

/// Far beyond any real list; keeps `page * page_size` well inside an i64.
const MAX_PAGE: i64 = 1_000_000;

/// DRF page-number pagination: `(limit, offset, page)`, 400 for junk.
fn paging(p: &Page) -> Res<(i64, i64, i64)> {
    let page: i64 = match &p.page {
        None => 1,
        Some(v) => v.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| ApiError::field("page", "Invalid page."))?,
    };
    let size: i64 = match &p.page_size {
        None => 20,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::field("page_size", "Must be an integer between 1 and 200."))?,
    };
    Ok((size, (page - 1) * size, page))
}

fn page_links(headers: &HeaderMap, path: &str, page: i64, size: i64, count: i64, extra: &[(&str, String)]) -> (Value, Value) {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let link = |p: i64| {
        let mut q: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        q.push(("page".into(), p.to_string()));
        if size != 20 {
            q.push(("page_size".into(), size.to_string()));
        }
        let query = serde_urlencoded::to_string(&q).unwrap_or_default();
        json!(format!("http://{host}{path}?{query}"))
    };
    let next = if page * size < count { link(page + 1) } else { Value::Null };
    let previous = if page > 1 { link(page - 1) } else { Value::Null };
    (next, previous)
}

#[derive(Deserialize)]
struct UserQuery {
    #[serde(flatten)]
    page: Page,
    search: Option<String>,
    role: Option<String>,
}

async fn list_users(State(state): State<AppState>, _admin: Admin<Myo>, headers: HeaderMap, Query(q): Query<UserQuery>) -> Res<Json<Value>> {
    let (limit, offset, page) = paging(&q.page)?;
    if let Some(role) = q.role.as_deref().filter(|r| !r.is_empty()) {
        role.parse::<Role>()?;
    }
    let filter = UserFilter { search: q.search.clone(), role: q.role.clone().filter(|r| !r.is_empty()) };
    let (count, rows) = queries::users(&state.dbs.read, &filter, limit, offset).await?;
    let mut extra = Vec::new();
    if let Some(s) = q.search {
        extra.push(("search", s));
    }
    if let Some(r) = q.role {
        extra.push(("role", r));
    }
    let (next, previous) = page_links(&headers, "/api/users/", page, limit, count, &extra);
    let results: Vec<Value> = rows.iter().map(|u| user_json(u, true)).collect();
    Ok(Json(json!({"count": count, "next": next, "previous": previous, "results": results})))
}

fn parse_id(raw: &str) -> Res<i64> {
    raw.parse().map_err(|_| ApiError::not_found("Not found."))
}

async fn get_user(State(state): State<AppState>, _admin: Admin<Myo>, Path(id): Path<String>) -> Res<Json<Value>> {
    Ok(Json(user_json(&user_row(&state, parse_id(&id)?).await?, true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminUserBody {
    first_name: Option<String>,
    last_name: Option<String>,
    clinic_name: Option<String>,
    role: Option<String>,
    roles: Option<Vec<String>>,
    is_active: Option<bool>,
}

async fn update_user(
    State(state): State<AppState>,
    admin: Admin<Myo>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    JsonBody(body, ..): JsonBody<AdminUserBody, Myo>,
) -> Res<Json<Value>> {
    let id = parse_id(&id)?;
    user_row(&state, id).await?;
    let roles = match (body.roles, body.role) {
        (Some(list), _) => Some(Roles::new(list.iter().map(|r| r.parse::<Role>()).collect::<Result<Vec<_>, _>>()?)),
        (None, Some(one)) => Some(Roles::new([one.parse::<Role>()?])),
        (None, None) => None,
    };
    let change = ProfileChange {
        first_name: body.first_name,
        last_name: body.last_name,
        clinic_name: body.clinic_name,
        roles,
        active: body.is_active,
    };
    if let Some(p) = state.accounts.update_user(id, change, &ctx.with_actor(admin.0.user_id)).await? {
        state.caught_up(p).await;
    }
    Ok(Json(user_json(&user_row(&state, id).await?, true)))
}

#[derive(Deserialize)]
struct AuditBody {
    action: String,
    resource_type: String,
    #[serde(default)]
    resource_id: Option<Value>,
    #[serde(default = "empty_object")]
    details: Value,
}

fn empty_object() -> Value {
    json!({})
}

async fn create_audit_entry(
    State(state): State<AppState>,
    auth: Auth<Myo>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<AuditBody, Myo>,
) -> Res<(StatusCode, Json<Value>)> {
    let resource_id = match body.resource_id {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ApiError::field("resource_id", "Expected a string or a number.")),
    };
    let ctx = ctx.with_actor(auth.user_id());
    let position =
        medledger_application::audit::record(&state.ledger, &body.action, &body.resource_type, &resource_id, body.details, &ctx).await?;
    state.caught_up(position).await;
    let row = queries::audit_entry(&state.dbs.read, position).await?.ok_or_else(ApiError::<Myo>::internal)?;
    Ok((StatusCode::CREATED, Json(json!(row))))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(flatten)]
    page: Page,
    user_id: Option<String>,
    action: Option<String>,
    resource_type: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

fn date(field: &str, v: Option<String>) -> Res<Option<String>> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map(|_| Some(s))
            .map_err(|_| ApiError::field(field, "Enter a valid date (YYYY-MM-DD).")),
    }
}

async fn list_audit_log(
    State(state): State<AppState>,
    _admin: Admin<Myo>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Res<Json<Value>> {
    let (limit, offset, page) = paging(&q.page)?;
    let user_id = match q.user_id.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| ApiError::field("user_id", "Enter a whole number."))?),
    };
    let filter = AuditFilter {
        user_id,
        action: q.action.clone().filter(|s| !s.is_empty()),
        resource_type: q.resource_type.clone().filter(|s| !s.is_empty()),
        start_date: date("start_date", q.start_date.clone())?,
        end_date: date("end_date", q.end_date.clone())?,
    };
    let (count, rows) = queries::audit_log(&state.dbs.read, &filter, limit, offset).await?;
    let mut extra = Vec::new();
    for (k, v) in [
        ("user_id", q.user_id),
        ("action", q.action),
        ("resource_type", q.resource_type),
        ("start_date", q.start_date),
        ("end_date", q.end_date),
    ] {
        if let Some(v) = v {
            extra.push((k, v));
        }
    }
    let (next, previous) = page_links(&headers, "/api/audit-logs/", page, limit, count, &extra);
    Ok(Json(json!({"count": count, "next": next, "previous": previous, "results": rows})))
}

/// Read models this far behind the head count as down.
const PROJECTION_LAG_LIMIT: i64 = 10_000;

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.dbs.store.ping().await.is_ok();
    let head = *state.dbs.store.watch().borrow();
    // A runner still loading its checkpoint (position -1) is starting, not failing; a
    // database it cannot reach shows as "database": "down".
    let projections = state.progress.positions().iter().all(|(_, p)| *p < 0 || head - *p < PROJECTION_LAG_LIMIT);
    let outbox = state.config.outbox_dir();
    let email = std::fs::create_dir_all(&outbox).is_ok() && std::fs::metadata(&outbox).is_ok_and(|m| !m.permissions().readonly());
    let up = |ok: bool| if ok { "up" } else { "down" };
    let healthy = db && projections && email;
    let status = if db { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "services": {
                "database": up(db),
                "email": up(email),
                "projections": up(projections),
            },
            "last_check": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })),
    )
}
