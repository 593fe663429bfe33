//! Routes: health, readiness, metrics and the OpenAPI document.

use crate::App;
use crate::body::JsonBody;
use crate::error::{ApiError, bad};
use crate::session::{Caller, Role};
use crate::tokens::{TOKEN_ACCOUNTS_MAX, TokenError};
use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::routing::{delete, post};
use cairn_types::ErrorCode;
use serde_json::json;
use std::sync::Arc;

pub(crate) fn router(app: App) -> Router {
    let http = Arc::clone(&app.http);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::inventory::routes())
        .merge(crate::matching::routes())
        .merge(crate::publishing::routes())
        .merge(crate::feed::routes())
        .merge(token_routes())
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::body::BODY_BYTES_MAX,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            http,
            crate::http_metrics::record,
        ))
        .with_state(app)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        "this method is not allowed on this route",
    )
    .with_status(405)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")), security(()))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: every shard accepts writes. A shard that stopped after a storage failure makes the
/// node unready, with the reason.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "every shard accepts writes"), (status = 503, description = "a shard stopped after a storage failure")), security(()))]
pub(crate) async fn readyz(State(app): State<App>) -> Response {
    let stopped = app.engine.stopped();
    if stopped.is_empty() {
        return Json(json!({"status": "ready", "shards": app.engine.shard_count()}))
            .into_response();
    }
    let shards: Vec<_> = stopped
        .iter()
        .map(|(shard, reason)| json!({"shard": shard.0, "reason": reason}))
        .collect();
    let body = json!({"status": "unavailable", "stopped_shards": shards});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", content_type = "text/plain"), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc)))]
pub(crate) async fn metrics(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_viewer()?;
    let shards: Vec<(u16, &cairn_engine::metrics::ShardMetrics)> = app
        .engine
        .shards()
        .iter()
        .map(|s| (s.id().0, s.metrics()))
        .collect();
    let mut text = String::new();
    cairn_engine::metrics::write_prometheus(&mut text, &shards);
    app.http.write_prometheus(&mut text);
    app.grpc.write_prometheus(&mut text);
    write_disk_usage(&mut text, &app);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "this document")), security(()))]
pub(crate) async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

fn token_routes() -> Router<App> {
    Router::new()
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{name}", delete(revoke_token))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct CreateToken {
    role: String,
    name: String,
    accounts: Option<Vec<String>>,
}

/// `POST /v1/tokens` (admin): a named token with a role; its secret is shown once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateToken, responses((status = 201, description = "created", body = crate::openapi::TokenDoc), (status = 409, description = "conflict", body = crate::openapi::ErrorDoc), (status = 403, description = "not allowed", body = crate::openapi::ErrorDoc)))]
pub(crate) async fn create_token(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    cairn_inventory::validate::identifier("name", &body.name).map_err(bad)?;
    let role = match body.role.as_str() {
        "viewer" => Role::Viewer,
        "client" => Role::Client,
        "operator" => Role::Operator,
        other => {
            return Err(bad(format!(
                "role must be operator, client or viewer, got '{other}'"
            )));
        }
    };
    if let Some(accounts) = &body.accounts {
        if accounts.len() > TOKEN_ACCOUNTS_MAX {
            return Err(bad(format!(
                "at most {TOKEN_ACCOUNTS_MAX} accounts per token"
            )));
        }
        for account in accounts {
            cairn_inventory::validate::identifier("account", account).map_err(bad)?;
        }
    }
    let secret = app
        .admin
        .tokens
        .create(&body.name, role, body.accounts.clone())
        .map_err(token_error)?;
    let reply = json!({"token": secret, "name": body.name, "role": role.as_str(), "accounts": body.accounts});
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

/// `GET /v1/tokens` (admin): names, roles and accounts, never secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", responses((status = 200, description = "{tokens: [token]} without secrets")))]
pub(crate) async fn list_tokens(
    State(app): State<App>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let tokens: Vec<_> = app
        .admin
        .tokens
        .list()
        .into_iter()
        .map(|t| json!({"name": t.name, "role": t.role.as_str(), "accounts": t.accounts}))
        .collect();
    Ok(Json(json!({"tokens": tokens})).into_response())
}

/// `DELETE /v1/tokens/{name}` (admin): revoked at once and for good.
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "tokens", params(("name" = String, Path)), responses((status = 200, description = "revoked"), (status = 404, description = "unknown", body = crate::openapi::ErrorDoc)))]
pub(crate) async fn revoke_token(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    app.admin.tokens.revoke(&name).map_err(token_error)?;
    Ok(Json(json!({"name": name, "revoked": true})).into_response())
}

fn token_error(error: TokenError) -> ApiError {
    match error {
        TokenError::AlreadyExists => {
            ApiError::new(ErrorCode::AlreadyExists, "a token with this name exists")
        }
        TokenError::NotFound => ApiError::new(ErrorCode::NotFound, "no token has this name"),
        TokenError::Full => ApiError::new(
            ErrorCode::InvalidArgument,
            format!("at most {} tokens", crate::tokens::TOKENS_MAX),
        )
        .with_code("limit_exceeded")
        .with_status(409),
        TokenError::Storage(reason) => {
            ApiError::internal(format!("the token store could not be written: {reason}"))
        }
    }
}

/// Bytes of log segments and snapshots on disk per shard (listed at scrape time: a few files).
fn write_disk_usage(out: &mut String, app: &App) {
    use std::fmt::Write as _;
    let dir_bytes = |dir: std::path::PathBuf| -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let _ = writeln!(
        out,
        "# HELP cairn_log_size_bytes Bytes of log segments on disk.\n# TYPE cairn_log_size_bytes gauge"
    );
    for shard in app.engine.shards() {
        let dir = cairn_engine::shard_dir(app.engine.data_dir(), shard.id()).join("log");
        let _ = writeln!(
            out,
            "cairn_log_size_bytes{{shard=\"{}\"}} {}",
            shard.id().0,
            dir_bytes(dir)
        );
    }
    let _ = writeln!(
        out,
        "# HELP cairn_snapshots_size_bytes Bytes of snapshots on disk.\n# TYPE cairn_snapshots_size_bytes gauge"
    );
    for shard in app.engine.shards() {
        let dir = cairn_engine::shard_dir(app.engine.data_dir(), shard.id()).join("snapshots");
        let _ = writeln!(
            out,
            "cairn_snapshots_size_bytes{{shard=\"{}\"}} {}",
            shard.id().0,
            dir_bytes(dir)
        );
    }
}
