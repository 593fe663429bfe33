//! Routes: health, readiness, metrics and the OpenAPI document.

use crate::App;
use crate::auth::bearer;
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_types::ErrorCode;
use serde_json::json;

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::inventory::routes())
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::body::BODY_BYTES_MAX,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: every shard accepts writes. A shard that stopped after a storage failure makes the
/// node unready, with the reason.
async fn readyz(State(app): State<App>) -> Response {
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

async fn metrics(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = bearer(&headers)?;
    if !app.admin.matches(token) {
        return Err(ApiError::new(ErrorCode::Unauthenticated, "unknown token"));
    }
    let shards: Vec<(u16, &cairn_engine::metrics::ShardMetrics)> = app
        .engine
        .shards()
        .iter()
        .map(|s| (s.id().0, s.metrics()))
        .collect();
    let mut text = String::new();
    cairn_engine::metrics::write_prometheus(&mut text, &shards);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi() -> Json<serde_json::Value> {
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Cairn", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness: every shard accepts writes", "responses": {
                "200": {"description": "ready"}, "503": {"description": "a shard stopped after a storage failure"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{"bearer": []}], "responses": {
                "200": {"description": "Prometheus text"}, "401": {"description": "no or unknown token"}}}}
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
    }))
}
