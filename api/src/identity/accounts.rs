//! Contract 002 (MyoMetrics): accounts, users, audit logs, health. Mounted at `/api`.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use medledger_application::identity::accounts::{ProfileChange, Registration};
use medledger_application::inference::InferenceTasks;
use medledger_domain::identity::role::{Role, Roles};
use medledger_domain::identity::user::self_registration_roles;
use medledger_projections::identity::queries::{self, AuditFilter, AuditRow, UserFilter, UserRow};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Myo};
use crate::extract::{Admin, Auth, Ctx, JsonBody};
use crate::openapi::{Api, Op};
use crate::schemas::myo as wire;
use crate::state::AppState;

type Res<T> = ApiResult<T, Myo>;

pub fn routes(api: Api) -> Api {
    api.post(
        "/api/auth/login",
        login,
        Op::public("002 accounts", "Log in with email and password")
            .auth_limited()
            .json::<LoginBody>()
            .returns::<wire::SessionTokens>()
            .error(401, "Wrong email or password")
            .error(403, "The account is disabled"),
    )
    .post(
        "/api/auth/register",
        register,
        Op::public("002 accounts", "Register (role doctor)")
            .auth_limited()
            .status(201)
            .json::<RegisterBody>()
            .returns::<wire::SessionTokens>()
            .error(409, "The email is taken")
            .link("GetUser", "get_api_users_id", "id", "$response.body#/user/id"),
    )
    .post(
        "/api/auth/logout",
        logout,
        Op::user("002 accounts", "Log out: revoke the refresh token").json::<RefreshBody>().returns::<wire::Message>(),
    )
    .get("/api/auth/user", me, Op::user("002 accounts", "The current user's profile").returns::<wire::User>())
    .put(
        "/api/auth/user",
        update_me,
        Op::user("002 accounts", "Update the current user's profile").json::<ProfileBody>().returns::<wire::User>(),
    )
    .patch(
        "/api/auth/user",
        update_me,
        Op::user("002 accounts", "Partly update the current user's profile").json::<ProfileBody>().returns::<wire::User>(),
    )
    .post(
        "/api/auth/change-password",
        change_password,
        Op::user("002 accounts", "Change password").json::<ChangePasswordBody>().returns::<wire::Message>(),
    )
    .post(
        "/api/auth/password-reset",
        password_reset,
        Op::public("002 accounts", "Mail a password-reset token").auth_limited().json::<ResetBody>().returns::<wire::Message>(),
    )
    .post(
        "/api/auth/password-reset/confirm",
        password_reset_confirm,
        Op::public("002 accounts", "Set a new password with a reset token")
            .auth_limited()
            .json::<ResetConfirmBody>()
            .returns::<wire::Message>(),
    )
    .post(
        "/api/auth/token/refresh",
        refresh,
        Op::public("002 accounts", "Rotate a refresh token")
            .auth_limited()
            .json::<RefreshBody>()
            .returns::<wire::TokenPair>()
            .error(401, "The refresh token is invalid, expired, or was used already (the session is revoked)"),
    )
    .get(
        "/api/users",
        list_users,
        Op::admin("002 users", "List users (DRF pagination)")
            .query::<UserQuery>()
            .returns::<wire::Page<wire::User>>()
            .error(404, "Invalid page."),
    )
    .get("/api/users/{id}", get_user, Op::admin("002 users", "A user").returns::<wire::User>())
    .put(
        "/api/users/{id}",
        update_user,
        Op::admin("002 users", "Update a user, roles and activation included").json::<AdminUserBody>().returns::<wire::User>(),
    )
    .post(
        "/api/audit-logs",
        create_audit_entry,
        Op::user("002 audit", "Record an audit entry").status(201).json::<AuditBody>().returns::<AuditRow>(),
    )
    .get(
        "/api/audit-logs",
        list_audit_log,
        Op::admin("002 audit", "The audit log (every event in the history)")
            .query::<AuditQuery>()
            .returns::<wire::Page<AuditRow>>()
            .error(404, "Invalid page."),
    )
    .get(
        "/api/health",
        health,
        Op::public("002 health", "Service health").returns::<wire::Health>().answers::<wire::Health>(503, "The database is down"),
    )
}

/// The roles a user row holds (names the domain no longer knows are skipped).
fn roles_of(u: &UserRow) -> Roles {
    Roles::new(u.roles.iter().filter_map(|r| r.parse::<Role>().ok()))
}

fn user_of(u: &UserRow, admin_view: bool) -> wire::User {
    wire::User {
        id: u.id,
        email: u.email.clone(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        // 002 documents admin|doctor|technician: a user with roles of other contracts
        // shows the nearest of those, and every role held in `roles`.
        role: roles_of(u).myo_role().as_str().to_string(),
        roles: u.roles.clone(),
        clinic_name: u.clinic_name.clone(),
        date_joined: u.date_joined.clone(),
        admin_view: admin_view.then(|| wire::AdminView { last_login: u.last_login.clone(), is_active: u.is_active }),
    }
}

fn user_json(u: &UserRow, admin_view: bool) -> Value {
    json!(user_of(u, admin_view))
}

/// A confirmation sentence, as 002 words it.
fn message(detail: &str) -> Value {
    json!(wire::Message { detail: detail.to_string() })
}

/// A login or registration answers with the user (`users`), and the next request
/// carries its token (`access`).
const SIGNED_IN: &[&str] = &[medledger_projections::identity::USERS, medledger_projections::identity::ACCESS];

/// SimpleJWT's answer to a login or registration.
fn session_tokens(tokens: medledger_application::identity::accounts::Tokens, user: &UserRow) -> Value {
    json!(wire::SessionTokens { access: tokens.access, refresh: tokens.refresh, user: user_of(user, false) })
}

async fn user_row(state: &AppState, id: i64) -> Res<UserRow> {
    queries::user(&state.dbs.read, id).await?.ok_or_else(|| ApiError::not_found("Not found."))
}

#[derive(Deserialize, JsonSchema)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(State(state): State<AppState>, Ctx(ctx): Ctx, JsonBody(body, ..): JsonBody<LoginBody, Myo>) -> Res<Json<Value>> {
    let done = state.accounts.login(&body.email, &body.password, &ctx).await?;
    state.caught_up_on(SIGNED_IN, done.position).await;
    let user = user_row(&state, done.user_id).await?;
    Ok(Json(session_tokens(done.tokens, &user)))
}

#[derive(Deserialize, JsonSchema)]
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
    state.caught_up_on(SIGNED_IN, done.position).await;
    let row = user_row(&state, done.user_id).await?;
    Ok((StatusCode::CREATED, Json(session_tokens(done.tokens, &row))))
}

#[derive(Deserialize, JsonSchema)]
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
        state.caught_up_on(&[medledger_projections::identity::ACCESS], position).await;
    }
    Ok(Json(message("Successfully logged out")))
}

async fn refresh(State(state): State<AppState>, Ctx(ctx): Ctx, JsonBody(body, ..): JsonBody<RefreshBody, Myo>) -> Res<Json<Value>> {
    let tokens = state.accounts.refresh(&body.refresh, &ctx).await?;
    Ok(Json(json!(wire::TokenPair { access: tokens.access, refresh: tokens.refresh })))
}

async fn me(State(state): State<AppState>, auth: Auth<Myo>) -> Res<Json<Value>> {
    Ok(Json(user_json(&user_row(&state, auth.user_id()).await?, false)))
}

#[derive(Deserialize, JsonSchema)]
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
    auth.still(&state)?;
    let change =
        ProfileChange { first_name: body.first_name, last_name: body.last_name, clinic_name: body.clinic_name, ..Default::default() };
    let ctx = ctx.with_actor(auth.user_id());
    if let Some(p) = state.accounts.update_user(auth.user_id(), change, &ctx).await? {
        state.caught_up_on(&[medledger_projections::identity::USERS], p).await;
    }
    me(State(state), auth).await
}

#[derive(Deserialize, JsonSchema)]
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
    auth.still(&state)?;
    let position = state.accounts.change_password(auth.user_id(), &body.old_password, &body.new_password, &ctx).await?;
    // Every session from before the change is over, on this process from the answer on.
    state.caught_up_on(&[medledger_projections::identity::ACCESS], position).await;
    Ok(Json(message("Password changed successfully")))
}

#[derive(Deserialize, JsonSchema)]
struct ResetBody {
    email: String,
}

async fn password_reset(State(state): State<AppState>, Ctx(ctx): Ctx, JsonBody(body, ..): JsonBody<ResetBody, Myo>) -> Res<Json<Value>> {
    state.accounts.request_password_reset(&body.email, &ctx).await?;
    Ok(Json(message("Password reset email sent")))
}

#[derive(Deserialize, JsonSchema)]
struct ResetConfirmBody {
    token: String,
    new_password: String,
}

async fn password_reset_confirm(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    JsonBody(body, ..): JsonBody<ResetConfirmBody, Myo>,
) -> Res<Json<Value>> {
    if let Some(position) = state.accounts.confirm_password_reset(&body.token, &body.new_password, &ctx).await? {
        // Every session from before the reset is over, on this process from the answer on.
        state.caught_up_on(&[medledger_projections::identity::ACCESS], position).await;
    }
    Ok(Json(message("Password has been reset")))
}

#[derive(Deserialize, JsonSchema)]
struct Page {
    #[schemars(with = "Option<wire::PageParam>")]
    page: Option<String>,
    /// 1 to 200; 20 when not given.
    #[schemars(with = "Option<u8>", range(min = 1, max = 200))]
    page_size: Option<String>,
}

/// Which page was asked for: a number, or DRF's `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageNumber {
    Number(i64),
    Last,
}

/// DRF's answer to a page past the end of the list.
fn invalid_page() -> ApiError<Myo> {
    ApiError::not_found("Invalid page.")
}

/// DRF page-number pagination: `(page_size, page)`; `page=last` as in DRF. A page or
/// page size that is no positive number (or a size over 200) is 400 naming the field.
fn paging(p: &Page) -> Res<(i64, PageNumber)> {
    let page = match p.page.as_deref().map(str::trim) {
        None => PageNumber::Number(1),
        Some("last") => PageNumber::Last,
        Some(v) => PageNumber::Number(v.parse().ok().filter(|n: &i64| *n >= 1).ok_or_else(|| ApiError::field("page", "Invalid page."))?),
    };
    let size: i64 = match &p.page_size {
        None => 20,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::field("page_size", "Must be an integer between 1 and 200."))?,
    };
    Ok((size, page))
}

/// The last page of `count` rows; an empty list has one (empty) page, as in DRF.
fn last_page(count: i64, size: i64) -> i64 {
    (count.max(0) + size - 1).div_euclid(size).max(1)
}

/// One page of a list, from `fetch(limit, offset) -> (count, rows)`: `(page, count,
/// rows)`, or 404 "Invalid page." past the last page.
async fn page_of<T, F, Fut>(number: PageNumber, size: i64, fetch: F) -> Res<(i64, i64, Vec<T>)>
where
    F: Fn(i64, i64) -> Fut,
    Fut: std::future::Future<Output = Res<(i64, Vec<T>)>>,
{
    let page = match number {
        PageNumber::Number(n) => n,
        PageNumber::Last => last_page(fetch(0, 0).await?.0, size),
    };
    // A page whose offset does not fit is past the end of any list.
    let offset = (page - 1).checked_mul(size).ok_or_else(invalid_page)?;
    let (count, rows) = fetch(size, offset).await?;
    if page > last_page(count, size) {
        return Err(invalid_page());
    }
    Ok((page, count, rows))
}

/// DRF's `next` / `previous`: absolute URLs with the scheme and host the client used
/// (through a trusted proxy: the ones it forwards).
fn page_links(origin: &str, path: &str, page: i64, size: i64, count: i64, extra: &[(&str, String)]) -> (Option<String>, Option<String>) {
    let link = |p: i64| {
        let mut q: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        q.push(("page".into(), p.to_string()));
        if size != 20 {
            q.push(("page_size".into(), size.to_string()));
        }
        let query = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("{origin}{path}?{query}")
    };
    let next = (page * size < count).then(|| link(page + 1));
    let previous = (page > 1).then(|| link(page - 1));
    (next, previous)
}

#[derive(Deserialize, JsonSchema)]
struct UserQuery {
    #[serde(flatten)]
    page: Page,
    search: Option<String>,
    role: Option<String>,
}

/// The scheme and host the client addressed, for DRF's absolute `next`/`previous`.
struct LinkOrigin(String);

impl FromRequestParts<AppState> for LinkOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(crate::proxy::origin(&parts.headers, &parts.extensions, state.config.https)))
    }
}

async fn list_users(
    State(state): State<AppState>,
    _admin: Admin<Myo>,
    LinkOrigin(origin): LinkOrigin,
    Query(q): Query<UserQuery>,
) -> Res<Json<Value>> {
    let role = match q.role.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(r.parse::<Role>()?),
    };
    let (size, number) = paging(&q.page)?;
    // 002's doctor and technician filter by the role a user shows, which depends on
    // every role held; admin, and the other contracts' roles, by a role held (the same
    // thing for admin).
    let shown = role.filter(|r| matches!(r, Role::Doctor | Role::Technician));
    let filter = UserFilter { search: q.search.clone(), role: role.filter(|_| shown.is_none()).map(|r| r.as_str().to_string()) };
    let read = &state.dbs.read;
    let (page, count, rows) = page_of(number, size, |limit, offset| {
        let filter = filter.clone();
        async move {
            let Some(shown) = shown else { return Ok(queries::users(read, &filter, limit, offset).await?) };
            // Filtered here rather than in SQL: an admin's list of accounts, not a hot path.
            let (_, all) = queries::users(read, &filter, i64::MAX, 0).await?;
            let matching: Vec<UserRow> = all.into_iter().filter(|u| roles_of(u).myo_role() == shown).collect();
            let count = matching.len() as i64;
            let page = matching.into_iter().skip(usize::try_from(offset).unwrap_or(usize::MAX));
            Ok((count, page.take(usize::try_from(limit).unwrap_or(usize::MAX)).collect()))
        }
    })
    .await?;
    let mut extra = Vec::new();
    if let Some(s) = q.search {
        extra.push(("search", s));
    }
    if let Some(r) = q.role {
        extra.push(("role", r));
    }
    let (next, previous) = page_links(&origin, "/api/users/", page, size, count, &extra);
    let results = rows.iter().map(|u| user_of(u, true)).collect();
    Ok(Json(json!(wire::Page { count, next, previous, results })))
}

fn parse_id(raw: &str) -> Res<i64> {
    raw.parse().map_err(|_| ApiError::not_found("Not found."))
}

async fn get_user(State(state): State<AppState>, _admin: Admin<Myo>, Path(id): Path<String>) -> Res<Json<Value>> {
    Ok(Json(user_json(&user_row(&state, parse_id(&id)?).await?, true)))
}

#[derive(Deserialize, JsonSchema)]
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
    admin.still(&state)?;
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
    // Roles and activation take effect through the access model, from the answer on.
    if let Some(p) = state.accounts.update_user(id, change, &ctx.with_actor(admin.0.user_id)).await? {
        state.caught_up_on(&[medledger_projections::identity::USERS, medledger_projections::identity::ACCESS], p).await;
    }
    Ok(Json(user_json(&user_row(&state, id).await?, true)))
}

#[derive(Deserialize, JsonSchema)]
struct AuditBody {
    #[schemars(length(min = 1, max = 50), regex(pattern = r"\S"))]
    action: String,
    #[schemars(length(min = 1, max = 50), regex(pattern = r"\S"))]
    resource_type: String,
    #[serde(default)]
    #[schemars(with = "Option<wire::ResourceId>")]
    resource_id: Option<Value>,
    #[serde(default = "empty_object")]
    #[schemars(with = "serde_json::Map<String, Value>")]
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
    auth.still(&state)?;
    let resource_id = match body.resource_id {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ApiError::field("resource_id", "Expected a string or a number.")),
    };
    let ctx = ctx.with_actor(auth.user_id());
    let position =
        medledger_application::identity::audit::record(&state.ledger, &body.action, &body.resource_type, &resource_id, body.details, &ctx)
            .await?;
    state.caught_up_on(&[medledger_projections::identity::AUDIT_LOG], position).await;
    let row = queries::audit_entry(&state.dbs.read, position).await?.ok_or_else(ApiError::<Myo>::internal)?;
    Ok((StatusCode::CREATED, Json(json!(row))))
}

#[derive(Deserialize, JsonSchema)]
struct AuditQuery {
    #[serde(flatten)]
    page: Page,
    #[schemars(with = "Option<i64>")]
    user_id: Option<String>,
    action: Option<String>,
    resource_type: Option<String>,
    /// Inclusive, `YYYY-MM-DD`.
    #[schemars(extend("format" = "date"))]
    start_date: Option<String>,
    /// Inclusive, `YYYY-MM-DD`.
    #[schemars(extend("format" = "date"))]
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
    LinkOrigin(origin): LinkOrigin,
    Query(q): Query<AuditQuery>,
) -> Res<Json<Value>> {
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
    // As in DRF: the filters are checked first, then the page.
    let (size, number) = paging(&q.page)?;
    // Commands no longer wait for the audit log (decision #79): an auditor's read waits
    // instead, for everything recorded before it, so the log never looks behind what
    // the auditor has just seen done.
    let head = state.dbs.store.head().await.map_err(medledger_application::AppError::from)?.position;
    state.caught_up_on(&[medledger_projections::identity::AUDIT_LOG], head).await;
    let (read, filter) = (&state.dbs.read, &filter);
    let (page, count, rows) =
        page_of(number, size, |limit, offset| async move { Ok(queries::audit_log(read, filter, limit, offset).await?) }).await?;
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
    let (next, previous) = page_links(&origin, "/api/audit-logs/", page, size, count, &extra);
    Ok(Json(json!(wire::Page { count, next, previous, results: rows })))
}

/// Read models this far behind the head count as down.
const PROJECTION_LAG_LIMIT: i64 = 10_000;

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.dbs.store.ping().await.is_ok();
    let head = *state.dbs.store.watch().borrow();
    // A runner still loading its checkpoint (position -1) is starting, not failing; a
    // database it cannot reach shows as "database": "down".
    let stuck = state.progress.stuck();
    let projections = stuck.is_empty() && state.progress.positions().iter().all(|(_, p)| *p < 0 || head - *p < PROJECTION_LAG_LIMIT);
    let outbox = state.config.outbox_dir();
    let email = std::fs::create_dir_all(&outbox).is_ok() && std::fs::metadata(&outbox).is_ok_and(|m| !m.permissions().readonly());
    let inference = state.get::<InferenceTasks>().is_ok_and(InferenceTasks::engine_available);
    let up = |ok: bool| if ok { "up" } else { "down" };
    let healthy = db && projections && email && inference;
    let status = if db { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            // The seed's keys, then medledger's own. `redis`: nothing here needs it (the
            // event store's notifications are the only bus, the read models the only
            // cache); `microservice`, the analysis service the frontend calls: the
            // inference engine, in process (ONNX Runtime).
            "services": {
                "database": up(db),
                "redis": "not_used",
                "email": up(email),
                "microservice": up(inference),
                "projections": up(projections),
            },
            "last_check": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    // Which read model stopped, where and why: only when one has.
    if !stuck.is_empty() {
        body["stuck"] = json!(stuck);
    }
    (status, Json(body))
}
