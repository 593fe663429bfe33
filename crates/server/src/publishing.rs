//! The publishing endpoints of API.md: datasets, drafts, releases (gray, scheduled, promote,
//! abort), rollbacks, and reads of released values.
//!
//! The whole publishing domain lives on shard 0: every command and state read is routed there.
//!
//! # Reads never wait for a publish
//! Value reads (`GET /v1/datasets/{name}/keys/{key}`, `POST /v1/reads`) are answered from an
//! immutable [`View`] held in an [`arc_swap::ArcSwap`] in the [`App`] (`publishing_view`, with the
//! shard-0 LSN it was taken at): a load is lock-free and never touches the shard. The view is
//! replaced (never with an older one)
//! - after every successful publishing write the server makes, before it answers (so a writer
//!   reads its own release), by reading `state.publishing.view()` on shard 0, which answers once
//!   that state is durable;
//! - by a follower task ([`spawn_follower`], started by [`crate::run`]) that follows shard 0's
//!   durable records and refreshes after each record holding publishing events, so timer-driven
//!   go-lives and reverts become visible without traffic;
//! - lazily, before the first read after start (a view never loaded).
//!
//! A view is one state of shard 0, so every key of one batch read comes from one release per
//! dataset, and a release across several datasets is seen whole or not at all.

use crate::App;
use crate::body::{ApiQuery, JsonBody};
use crate::error::{ApiError, bad};
use crate::session::{Caller, Role, read, submit};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_engine::RequestKey;
use cairn_engine::SubscriptionError;
use cairn_engine::cairn::{Cairn, CairnCommand, CairnEvent, CairnReply};
use cairn_engine::core::EnvelopeOf;
use cairn_engine::envelope::{self, RECORD_TYPE_REFUSAL};
use cairn_log::Record;
use cairn_publishing::{
    Actor, Change, DraftDiff, DraftInfo, GrayRule, GuardrailsSpec, JsonText, PublishingCommand,
    PublishingReply, ReadContext, ReleaseInfo, Served, View, validate,
};
use cairn_types::{ErrorCode, Lsn, ShardId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// The shard that holds the publishing domain.
pub const PUBLISHING_SHARD: ShardId = ShardId(0);
/// Changes a diff page returns when `limit` is not given.
pub const DIFF_LIMIT_DEFAULT: usize = 100;
/// Most changes in one diff page.
pub const DIFF_LIMIT_MAX: usize = 1000;
/// Releases a list returns when `limit` is not given.
pub const RELEASES_LIMIT_DEFAULT: usize = 1000;
/// Most releases in one list page.
pub const RELEASES_LIMIT_MAX: usize = 10_000;

/// The served view and the shard-0 LSN it was taken at.
pub type ServedView = (View, u64);

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/datasets", post(create_dataset))
        .route("/v1/datasets/{name}/keys/{key}", get(get_key))
        .route("/v1/drafts", post(create_draft))
        .route("/v1/drafts/{id}", get(get_draft))
        .route("/v1/drafts/{id}/changes", post(append_to_draft))
        .route("/v1/drafts/{id}/diff", get(draft_diff))
        .route("/v1/releases", post(create_release).get(list_releases))
        .route("/v1/releases/{id}/promote", post(promote))
        .route("/v1/releases/{id}/abort", post(abort))
        .route("/v1/rollbacks", post(rollback))
        .route("/v1/reads", post(batch_read))
}

// ---------------------------------------------------------------------------------------------
// The view.

/// Takes shard 0's publishing view (answered once durable) and installs it unless a newer one
/// is installed already; returns the installed one.
pub(crate) async fn refresh(app: &App) -> Result<Arc<ServedView>, ApiError> {
    let (view, lsn) = read(app, PUBLISHING_SHARD, |state: &Cairn, lsn| {
        (state.publishing.view(), lsn.0)
    })
    .await?;
    let fresh = Arc::new((view, lsn));
    app.publishing_view.rcu(|current| {
        if current.1 > lsn {
            Arc::clone(current)
        } else {
            Arc::clone(&fresh)
        }
    });
    Ok(app.publishing_view.load_full())
}

/// The view to answer a read from: lock-free, loaded once after start.
async fn current_view(app: &App) -> Result<Arc<ServedView>, ApiError> {
    let current = app.publishing_view.load_full();
    if current.1 == 0
        && app
            .engine
            .shard(PUBLISHING_SHARD)
            .map(|s| s.durable_lsn().0)
            != Some(0)
    {
        return refresh(app).await;
    }
    Ok(current)
}

/// Starts the task that follows shard 0's durable records and refreshes the view after
/// publishing events (scheduled go-lives and reverts included). It ends when the server closes.
pub(crate) fn spawn_follower(app: &App) {
    let app = app.clone();
    tokio::spawn(async move {
        let closing = app.closing.closed();
        tokio::select! {
            () = closing => {}
            () = follow(&app) => {}
        }
    });
}

fn holds_publishing_events(record: &Record) -> bool {
    if record.record_type == RECORD_TYPE_REFUSAL {
        return false;
    }
    match envelope::decode::<EnvelopeOf<Cairn>>(&record.payload) {
        Ok(decoded) => decoded
            .events()
            .iter()
            .any(|event| matches!(event, CairnEvent::Publishing(_))),
        // Unknown content: refreshing is always safe.
        Err(_) => true,
    }
}

async fn follow(app: &App) {
    let Some(shard) = app.engine.shard(PUBLISHING_SHARD) else {
        return;
    };
    loop {
        // Start live, after what is durable now: the refresh below covers everything before.
        let mut subscription = shard.subscribe(Lsn(shard.durable_lsn().0 + 1));
        let _ = refresh(app).await;
        loop {
            match subscription.next().await {
                Ok(record) => {
                    let mut changed = holds_publishing_events(&record);
                    // Whatever else is ready now is covered by one refresh.
                    while let Ok(Some(record)) = subscription.poll() {
                        changed |= holds_publishing_events(&record);
                    }
                    if changed && refresh(app).await.is_err() {
                        break;
                    }
                }
                Err(SubscriptionError::Closed) => return,
                // Fell behind or a log error: start again from what is durable.
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies.

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatasetBody {
    pub(crate) request_id: String,
    pub(crate) name: String,
    /// `{json_schema?, numeric_bounds?: [{pointer, min?, max?}], max_change_pct?: [{pointer, pct}], max_changed_keys?}`.
    #[schema(value_type = Option<Object>)]
    pub(crate) guardrails: Option<GuardrailsSpec>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeBody {
    pub(crate) dataset: String,
    pub(crate) key: String,
    /// Any JSON value; `null` (or absent) deletes the key.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub(crate) value: Option<Value>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DraftBody {
    pub(crate) request_id: String,
    #[serde(default)]
    pub(crate) note: String,
    #[serde(default)]
    pub(crate) changes: Vec<ChangeBody>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendBody {
    pub(crate) request_id: String,
    pub(crate) changes: Vec<ChangeBody>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrayBody {
    /// A number in (0, 100] with at most 2 decimals.
    #[schema(value_type = Option<f64>)]
    pub(crate) percent: Option<serde_json::Number>,
    #[serde(default)]
    pub(crate) users: Vec<String>,
    #[serde(default)]
    pub(crate) channels: Vec<String>,
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    #[serde(default)]
    pub(crate) segments: Vec<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    pub(crate) request_id: String,
    pub(crate) draft_id: u64,
    pub(crate) gray: Option<GrayBody>,
    pub(crate) go_live_at_ms: Option<u64>,
    pub(crate) revert_at_ms: Option<u64>,
    /// Admin only: release despite guardrail violations.
    pub(crate) force_reason: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestIdBody {
    pub(crate) request_id: String,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackBody {
    pub(crate) request_id: String,
    pub(crate) to_release_id: u64,
    pub(crate) reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextBody {
    pub(crate) user_id: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) region: Option<String>,
    #[serde(default)]
    pub(crate) segments: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadKeyBody {
    pub(crate) dataset: String,
    pub(crate) key: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadsBody {
    pub(crate) context: Option<ContextBody>,
    pub(crate) keys: Vec<ReadKeyBody>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct KeyQuery {
    /// The reader, for gray rules.
    user_id: Option<String>,
    channel: Option<String>,
    region: Option<String>,
    /// Comma-separated segments.
    segments: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct DiffQuery {
    /// Page after this dataset (with `after_key`).
    pub(crate) after_dataset: Option<String>,
    pub(crate) after_key: Option<String>,
    /// At most this many changes (default 100, at most 1000).
    pub(crate) limit: Option<usize>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ReleasesQuery {
    /// Only releases with a larger id.
    pub(crate) after_release_id: Option<u64>,
    /// At most this many (default 1000, at most 10000).
    pub(crate) limit: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The idempotency key of a publishing request (operations are prefixed `publishing.`).
fn request_key(
    request_id: &str,
    operation: &str,
    body: &impl Serialize,
) -> Result<RequestKey, ApiError> {
    crate::session::request_key(request_id, &format!("publishing.{operation}:"), body)
}

fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    validate::identifier(field, value).map_err(bad)
}

fn changes(body: Vec<ChangeBody>) -> Result<Vec<Change>, ApiError> {
    let changes: Vec<Change> = body
        .into_iter()
        .map(|c| Change {
            dataset: c.dataset,
            key: c.key,
            value: c.value,
        })
        .collect();
    validate::changes(&changes).map_err(|(message, too_large)| {
        if too_large {
            ApiError::new(ErrorCode::PayloadTooLarge, message)
        } else {
            bad(message)
        }
    })?;
    Ok(changes)
}

fn parse_id(what: &str, value: &str) -> Result<u64, ApiError> {
    value.parse::<u64>().map_err(|_| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("{what} {value} not found ({what} ids are positive integers)"),
        )
    })
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// Stored JSON text as a JSON value in a response (parsed: bounded pages only).
fn raw_value(text: Option<&JsonText>) -> Result<Value, ApiError> {
    match text {
        None => Ok(Value::Null),
        Some(text) => text.to_value().map_err(ApiError::internal),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Submits a publishing command on shard 0; after success, refreshes the served view so the
/// caller (and everyone after) reads what it wrote.
async fn publish(
    app: &App,
    caller: &Caller,
    request_id: &str,
    key: RequestKey,
    command: PublishingCommand,
) -> Result<(PublishingReply, u64), ApiError> {
    let command = CairnCommand::Publishing {
        actor: Actor {
            name: caller.name.clone(),
            request_id: Some(request_id.to_string()),
        },
        command,
    };
    let committed = submit(app, PUBLISHING_SHARD, command, Some(key)).await?;
    // The write is durable whatever happens to the refresh; the follower catches up if it fails.
    let _ = refresh(app).await;
    match committed.reply {
        CairnReply::Publishing(reply) => Ok((reply, committed.lsn.0)),
        _ => Err(ApiError::internal("a publishing command got another reply")),
    }
}

fn release_reply(reply: &PublishingReply, lsn: u64) -> Result<Value, ApiError> {
    match reply {
        PublishingReply::Release { release_id, state } => {
            Ok(json!({"release_id": release_id, "state": state.as_str(), "lsn": lsn}))
        }
        _ => Err(ApiError::internal("a release command got another reply")),
    }
}

// ---------------------------------------------------------------------------------------------
// Operations (transport-independent).

/// Creates a dataset (operator).
pub(crate) async fn create_dataset_op(
    app: &App,
    caller: &Caller,
    body: DatasetBody,
) -> Result<Value, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "dataset", &body)?;
    identifier("name", &body.name)?;
    if let Some(guardrails) = &body.guardrails {
        validate::guardrails(guardrails).map_err(bad)?;
    }
    let command = PublishingCommand::CreateDataset {
        name: body.name.clone(),
        guardrails: body.guardrails,
        json_schema: None,
    };
    let (_, lsn) = publish(app, caller, &body.request_id, key, command).await?;
    Ok(json!({"name": body.name, "lsn": lsn}))
}

/// Creates a draft (operator).
pub(crate) async fn create_draft_op(
    app: &App,
    caller: &Caller,
    body: DraftBody,
) -> Result<Value, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "draft", &body)?;
    validate::note(&body.note).map_err(bad)?;
    let request_id = body.request_id;
    let command = PublishingCommand::CreateDraft {
        note: body.note,
        changes: changes(body.changes)?,
    };
    let (reply, lsn) = publish(app, caller, &request_id, key, command).await?;
    match reply {
        PublishingReply::Draft {
            draft_id,
            changes_total,
        } => Ok(json!({"draft_id": draft_id, "changes_total": changes_total, "lsn": lsn})),
        _ => Err(ApiError::internal("a draft command got another reply")),
    }
}

/// Adds changes to an unreleased draft (operator).
pub(crate) async fn append_to_draft_op(
    app: &App,
    caller: &Caller,
    draft_id: u64,
    body: AppendBody,
) -> Result<Value, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, &format!("append:{draft_id}"), &body)?;
    let request_id = body.request_id;
    let command = PublishingCommand::AppendToDraft {
        draft_id,
        changes: changes(body.changes)?,
    };
    let (reply, lsn) = publish(app, caller, &request_id, key, command).await?;
    match reply {
        PublishingReply::Draft {
            draft_id,
            changes_total,
        } => Ok(json!({"draft_id": draft_id, "changes_total": changes_total, "lsn": lsn})),
        _ => Err(ApiError::internal("a draft command got another reply")),
    }
}

/// A draft's summary and the LSN it was read at (viewer).
pub(crate) async fn draft_read_op(
    app: &App,
    caller: &Caller,
    draft_id: u64,
) -> Result<(DraftInfo, u64), ApiError> {
    caller.require_viewer()?;
    let found = read(app, PUBLISHING_SHARD, move |state: &Cairn, lsn| {
        state.publishing.draft(draft_id).map(|d| (d, lsn.0))
    })
    .await?;
    found.ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, format!("draft {draft_id} not found"))
            .with_details(json!({"draft_id": draft_id}))
    })
}

/// A draft's summary (viewer).
pub(crate) async fn draft_op(app: &App, caller: &Caller, draft_id: u64) -> Result<Value, ApiError> {
    let (draft, lsn) = draft_read_op(app, caller, draft_id).await?;
    Ok(json!({
        "draft_id": draft.draft_id,
        "note": draft.note,
        "author": draft.author.name,
        "created_at_ms": draft.created_at_ms,
        "changes_total": draft.changes_total,
        "datasets": draft.datasets,
        "release_id": draft.release_id,
        "lsn": lsn,
    }))
}

/// A page of a draft's diff against what is live, the violations of the whole draft, and the
/// LSN it was read at (viewer).
pub(crate) async fn draft_diff_read_op(
    app: &App,
    caller: &Caller,
    draft_id: u64,
    query: DiffQuery,
) -> Result<(DraftDiff, u64), ApiError> {
    caller.require_viewer()?;
    let limit = query.limit.unwrap_or(DIFF_LIMIT_DEFAULT);
    if limit == 0 || limit > DIFF_LIMIT_MAX {
        return Err(bad(format!(
            "limit must be in 1..={DIFF_LIMIT_MAX}, got {limit}"
        )));
    }
    let after = match (query.after_dataset, query.after_key) {
        (Some(dataset), Some(key)) => Some((dataset, key)),
        (None, None) => None,
        _ => return Err(bad("after_dataset and after_key go together")),
    };
    let diff = read(app, PUBLISHING_SHARD, move |state: &Cairn, lsn| {
        let after = after.as_ref().map(|(d, k)| (d.as_str(), k.as_str()));
        state
            .publishing
            .draft_diff(draft_id, after, limit)
            .map(|diff| (diff, lsn.0))
    })
    .await?;
    diff.map_err(|refusal| {
        crate::session::outcome_error(cairn_engine::EngineError::Refused(
            cairn_engine::cairn::CairnError::Publishing(refusal),
        ))
    })
}

/// A page of a draft's diff against what is live, and the violations of the whole draft
/// (viewer).
pub(crate) async fn draft_diff_op(
    app: &App,
    caller: &Caller,
    draft_id: u64,
    query: DiffQuery,
) -> Result<Value, ApiError> {
    let (diff, lsn) = draft_diff_read_op(app, caller, draft_id, query).await?;
    let changes = diff
        .changes
        .iter()
        .map(|entry| {
            Ok(json!({
                "dataset": entry.dataset,
                "key": entry.key,
                "before": raw_value(entry.before.as_ref())?,
                "after": raw_value(entry.after.as_ref())?,
            }))
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    let next_after = diff
        .next_after
        .map(|(dataset, key)| json!({"dataset": dataset, "key": key}));
    Ok(json!({
        "draft_id": diff.draft_id,
        "changes": changes,
        "changes_total": diff.changes_total,
        "next_after": next_after,
        "violations": diff.violations,
        "violations_total": diff.violations_total,
        "lsn": lsn,
    }))
}

/// Releases a draft (operator; `force_reason` admin only).
pub(crate) async fn create_release_op(
    app: &App,
    caller: &Caller,
    body: ReleaseBody,
) -> Result<Value, ApiError> {
    caller.require_operator()?;
    if body.force_reason.is_some() && caller.role != Role::Admin {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "only an admin may give force_reason",
        ));
    }
    let key = request_key(&body.request_id, "release", &body)?;
    if let Some(reason) = &body.force_reason {
        validate::reason("force_reason", reason).map_err(bad)?;
    }
    let gray = match &body.gray {
        None => None,
        Some(gray) => {
            let percent_bp = match &gray.percent {
                None => None,
                Some(number) => {
                    Some(validate::percent_basis_points(&number.to_string()).map_err(bad)?)
                }
            };
            let rule = GrayRule {
                percent_bp,
                users: gray.users.clone(),
                channels: gray.channels.clone(),
                regions: gray.regions.clone(),
                segments: gray.segments.clone(),
            };
            validate::gray(&rule).map_err(bad)?;
            Some(rule)
        }
    };
    let command = PublishingCommand::CreateRelease {
        draft_id: body.draft_id,
        gray,
        go_live_at_ms: body.go_live_at_ms,
        revert_at_ms: body.revert_at_ms,
        force_reason: body.force_reason.clone(),
    };
    let (reply, lsn) = publish(app, caller, &body.request_id, key, command).await?;
    release_reply(&reply, lsn)
}

/// Promotes or aborts a gray or scheduled release (operator).
pub(crate) async fn release_step_op(
    app: &App,
    caller: &Caller,
    release_id: u64,
    promote: bool,
    body: RequestIdBody,
) -> Result<Value, ApiError> {
    caller.require_operator()?;
    let operation = if promote { "promote" } else { "abort" };
    let key = request_key(
        &body.request_id,
        &format!("{operation}:{release_id}"),
        &body,
    )?;
    let command = if promote {
        PublishingCommand::Promote { release_id }
    } else {
        PublishingCommand::Abort { release_id }
    };
    let (reply, lsn) = publish(app, caller, &body.request_id, key, command).await?;
    release_reply(&reply, lsn)
}

/// Rolls back to a release (operator).
pub(crate) async fn rollback_op(
    app: &App,
    caller: &Caller,
    body: RollbackBody,
) -> Result<Value, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "rollback", &body)?;
    validate::reason("reason", &body.reason).map_err(bad)?;
    let command = PublishingCommand::Rollback {
        to_release_id: body.to_release_id,
        reason: body.reason.clone(),
    };
    let (reply, lsn) = publish(app, caller, &body.request_id, key, command).await?;
    release_reply(&reply, lsn)
}

/// Releases, oldest first, and the LSN they were read at (viewer).
pub(crate) async fn releases_read_op(
    app: &App,
    caller: &Caller,
    query: ReleasesQuery,
) -> Result<(Vec<ReleaseInfo>, u64), ApiError> {
    caller.require_viewer()?;
    let limit = query.limit.unwrap_or(RELEASES_LIMIT_DEFAULT);
    if limit == 0 || limit > RELEASES_LIMIT_MAX {
        return Err(bad(format!(
            "limit must be in 1..={RELEASES_LIMIT_MAX}, got {limit}"
        )));
    }
    let after = query.after_release_id;
    read(app, PUBLISHING_SHARD, move |state: &Cairn, lsn| {
        (state.publishing.releases(after, limit), lsn.0)
    })
    .await
}

/// Releases, oldest first (viewer).
pub(crate) async fn releases_op(
    app: &App,
    caller: &Caller,
    query: ReleasesQuery,
) -> Result<Value, ApiError> {
    let (releases, lsn) = releases_read_op(app, caller, query).await?;
    let releases: Vec<Value> = releases
        .into_iter()
        .map(|release| {
            let percent = release
                .gray
                .as_ref()
                .and_then(|g| g.percent_bp)
                .map(|bp| f64::from(bp) / 100.0);
            let gray = release.gray.as_ref().map(|g| {
                json!({"percent": percent, "users": g.users, "channels": g.channels,
                    "regions": g.regions, "segments": g.segments})
            });
            json!({
                "release_id": release.release_id,
                "state": release.state.as_str(),
                "kind": release.kind,
                "draft_id": release.draft_id,
                "restores": release.restores,
                "datasets": release.datasets,
                "author": release.author.name,
                "request_id": release.author.request_id,
                "note": release.note,
                "created_at_ms": release.created_at_ms,
                "go_live_at_ms": release.go_live_at_ms,
                "revert_at_ms": release.revert_at_ms,
                "live_at_ms": release.live_at_ms,
                "ended_at_ms": release.ended_at_ms,
                "gray": gray,
                "force_reason": release.force_reason,
                "forced_violations_total": release.forced_violations_total,
                "changes_total": release.changes_total,
                "content_retained": release.content_retained,
                "pinned": release.pinned,
            })
        })
        .collect();
    Ok(json!({"releases": releases, "lsn": lsn}))
}

fn context(
    user_id: Option<String>,
    channel: Option<String>,
    region: Option<String>,
    segments: Vec<String>,
) -> Result<ReadContext, ApiError> {
    let context = ReadContext {
        user_id,
        channel,
        region,
        segments,
    };
    validate::read_context(&context).map_err(bad)?;
    Ok(context)
}

fn dataset_not_found(dataset: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("dataset {dataset} not found"))
        .with_details(json!({"dataset": dataset}))
}

/// The ETag of a key read: the serving release and the view's LSN.
fn etag(release_id: Option<u64>, lsn: u64) -> String {
    match release_id {
        Some(release_id) => format!("\"r{release_id}-l{lsn}\""),
        None => format!("\"r-l{lsn}\""),
    }
}

fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == tag || v == "*")
}

/// A key's value as served: the raw JSON text, the release that served it and the view's LSN.
pub(crate) struct KeyRead {
    pub(crate) value: JsonText,
    pub(crate) release_id: Option<u64>,
    pub(crate) lsn: u64,
}

/// One key as a reader with `context` is served it (viewer); 404 for an unknown dataset or a key
/// not in the served release.
pub(crate) async fn key_value_op(
    app: &App,
    caller: &Caller,
    dataset: &str,
    key: &str,
    reader: ContextBody,
) -> Result<KeyRead, ApiError> {
    caller.require_viewer()?;
    identifier("dataset", dataset)?;
    identifier("key", key)?;
    let context = context(
        reader.user_id,
        reader.channel,
        reader.region,
        reader.segments,
    )?;
    let served_view = current_view(app).await?;
    let (view, lsn) = (&served_view.0, served_view.1);
    let served = view
        .get(dataset, key, &context)
        .ok_or_else(|| dataset_not_found(dataset))?;
    let Some(value) = served.value else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("key {key} is not in the release served for dataset {dataset}"),
        )
        .with_details(json!({"dataset": dataset, "key": key, "release_id": served.release_id})));
    };
    Ok(KeyRead {
        value,
        release_id: served.release_id,
        lsn,
    })
}

/// One key as a reader with the query's context is served it (viewer); 304 when it matches
/// `If-None-Match`.
pub(crate) async fn key_op(
    app: &App,
    caller: &Caller,
    dataset: &str,
    key: &str,
    query: KeyQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let segments = query
        .segments
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let reader = ContextBody {
        user_id: query.user_id,
        channel: query.channel,
        region: query.region,
        segments,
    };
    let read = key_value_op(app, caller, dataset, key, reader).await?;
    let tag = etag(read.release_id, read.lsn);
    let tag_header = HeaderValue::from_str(&tag).map_err(|e| ApiError::internal(e.to_string()))?;
    if etag_matches(headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag_header)]).into_response());
    }
    let release = read
        .release_id
        .map_or_else(|| "null".to_string(), |id| id.to_string());
    let body = format!(
        "{{\"value\":{},\"release_id\":{release},\"lsn\":{}}}",
        read.value.as_str(),
        read.lsn
    );
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(header::ETAG, tag_header);
    Ok(response)
}

/// Keys read from one view, in the order asked, and the view's LSN.
pub(crate) struct BatchRead {
    /// Each key with what it was served: a key of an unknown dataset is served no value and no
    /// release, as a missing key is.
    pub(crate) values: Vec<(ReadKeyBody, Served)>,
    pub(crate) lsn: u64,
}

/// Many keys from one view (every role).
pub(crate) async fn read_values_op(
    app: &App,
    caller: &Caller,
    body: ReadsBody,
) -> Result<BatchRead, ApiError> {
    caller.require_viewer()?;
    if body.keys.len() > cairn_publishing::READ_KEYS_MAX {
        return Err(bad(format!(
            "at most {} keys per read, got {}",
            cairn_publishing::READ_KEYS_MAX,
            body.keys.len()
        )));
    }
    for key in &body.keys {
        identifier("dataset", &key.dataset)?;
        identifier("key", &key.key)?;
    }
    let context = match body.context {
        None => ReadContext::default(),
        Some(c) => context(c.user_id, c.channel, c.region, c.segments)?,
    };
    let served_view = current_view(app).await?;
    let (view, lsn) = (&served_view.0, served_view.1);
    let served = view.get_many(
        body.keys
            .iter()
            .map(|k| (k.dataset.as_str(), k.key.as_str())),
        &context,
    );
    // API.md: "a missing key has `value: null`" — a key of a dataset that does not exist is
    // missing too, so one unknown name does not fail the whole batch.
    let values = body
        .keys
        .into_iter()
        .zip(served)
        .map(|(key, served)| {
            let served = served.unwrap_or(Served {
                value: None,
                release_id: None,
            });
            (key, served)
        })
        .collect();
    Ok(BatchRead { values, lsn })
}

/// Many keys from one view (every role), as JSON.
pub(crate) async fn reads_op(
    app: &App,
    caller: &Caller,
    body: ReadsBody,
) -> Result<Response, ApiError> {
    let read = read_values_op(app, caller, body).await?;
    let mut out = String::with_capacity(64 + read.values.len() * 64);
    out.push_str("{\"values\":[");
    for (index, (key, served)) in read.values.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let value = served.value.as_ref().map_or("null", JsonText::as_str);
        let release = served
            .release_id
            .map_or_else(|| "null".to_string(), |id| id.to_string());
        let _ = write!(
            out,
            "{{\"dataset\":{},\"key\":{},\"value\":{value},\"release_id\":{release}}}",
            quoted(&key.dataset),
            quoted(&key.key),
        );
    }
    let _ = write!(out, "],\"lsn\":{}}}", read.lsn);
    Ok(json_response(StatusCode::OK, out))
}

// ---------------------------------------------------------------------------------------------
// HTTP handlers.

#[utoipa::path(post, path = "/v1/datasets", tag = "publishing", request_body = DatasetBody, responses((status = 201, description = "created", body = crate::openapi::DatasetCreatedDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed", body = crate::openapi::ErrorDoc), (status = 409, description = "already_exists", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn create_dataset(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<DatasetBody>,
) -> Result<Response, ApiError> {
    let reply = create_dataset_op(&app, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

#[utoipa::path(post, path = "/v1/drafts", tag = "publishing", request_body = DraftBody, responses((status = 201, description = "created", body = crate::openapi::DraftCreatedDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 404, description = "unknown dataset", body = crate::openapi::ErrorDoc), (status = 413, description = "too large for one request: use appends", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn create_draft(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<DraftBody>,
) -> Result<Response, ApiError> {
    let reply = create_draft_op(&app, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

#[utoipa::path(post, path = "/v1/drafts/{id}/changes", tag = "publishing", params(("id" = u64, Path)), request_body = AppendBody, responses((status = 200, description = "appended", body = crate::openapi::DraftCreatedDoc), (status = 404, description = "unknown draft or dataset", body = crate::openapi::ErrorDoc), (status = 409, description = "draft_already_released", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn append_to_draft(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AppendBody>,
) -> Result<Response, ApiError> {
    let draft_id = parse_id("draft", &id)?;
    Ok(Json(append_to_draft_op(&app, &caller, draft_id, body).await?).into_response())
}

#[utoipa::path(get, path = "/v1/drafts/{id}", tag = "publishing", params(("id" = u64, Path)), responses((status = 200, description = "the draft", body = crate::openapi::DraftDoc), (status = 404, description = "unknown draft", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn get_draft(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let draft_id = parse_id("draft", &id)?;
    Ok(Json(draft_op(&app, &caller, draft_id).await?).into_response())
}

#[utoipa::path(get, path = "/v1/drafts/{id}/diff", tag = "publishing", params(("id" = u64, Path), DiffQuery), responses((status = 200, description = "a page of changes against the live values, and the violations of the whole draft", body = crate::openapi::DiffDoc), (status = 404, description = "unknown draft", body = crate::openapi::ErrorDoc), (status = 409, description = "draft_already_released", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn draft_diff(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Response, ApiError> {
    let draft_id = parse_id("draft", &id)?;
    Ok(Json(draft_diff_op(&app, &caller, draft_id, query).await?).into_response())
}

#[utoipa::path(post, path = "/v1/releases", tag = "publishing", request_body = ReleaseBody, responses((status = 201, description = "released (live, gray or scheduled)", body = crate::openapi::ReleaseReplyDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed, or force_reason by a non-admin", body = crate::openapi::ErrorDoc), (status = 404, description = "unknown draft", body = crate::openapi::ErrorDoc), (status = 409, description = "draft_already_released or release_in_progress", body = crate::openapi::ErrorDoc), (status = 422, description = "guardrail_violation with details.violations", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn create_release(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<ReleaseBody>,
) -> Result<Response, ApiError> {
    let reply = create_release_op(&app, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

#[utoipa::path(get, path = "/v1/releases", tag = "publishing", params(ReleasesQuery), responses((status = 200, description = "releases, oldest first", body = crate::openapi::ReleasesDoc)), security(("bearer" = [])))]
pub(crate) async fn list_releases(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ReleasesQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(releases_op(&app, &caller, query).await?).into_response())
}

#[utoipa::path(post, path = "/v1/releases/{id}/promote", tag = "publishing", params(("id" = u64, Path)), request_body = RequestIdBody, responses((status = 200, description = "live for everyone", body = crate::openapi::ReleaseReplyDoc), (status = 404, description = "unknown release", body = crate::openapi::ErrorDoc), (status = 409, description = "invalid_release_state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn promote(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RequestIdBody>,
) -> Result<Response, ApiError> {
    let release_id = parse_id("release", &id)?;
    Ok(Json(release_step_op(&app, &caller, release_id, true, body).await?).into_response())
}

#[utoipa::path(post, path = "/v1/releases/{id}/abort", tag = "publishing", params(("id" = u64, Path)), request_body = RequestIdBody, responses((status = 200, description = "aborted", body = crate::openapi::ReleaseReplyDoc), (status = 404, description = "unknown release", body = crate::openapi::ErrorDoc), (status = 409, description = "invalid_release_state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn abort(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RequestIdBody>,
) -> Result<Response, ApiError> {
    let release_id = parse_id("release", &id)?;
    Ok(Json(release_step_op(&app, &caller, release_id, false, body).await?).into_response())
}

#[utoipa::path(post, path = "/v1/rollbacks", tag = "publishing", request_body = RollbackBody, responses((status = 200, description = "the new release that restores", body = crate::openapi::ReleaseReplyDoc), (status = 404, description = "unknown release", body = crate::openapi::ErrorDoc), (status = 409, description = "not_a_rollback_target", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn rollback(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<RollbackBody>,
) -> Result<Response, ApiError> {
    Ok(Json(rollback_op(&app, &caller, body).await?).into_response())
}

#[utoipa::path(get, path = "/v1/datasets/{name}/keys/{key}", tag = "publishing", params(("name" = String, Path), ("key" = String, Path), KeyQuery, ("If-None-Match" = Option<String>, Header, description = "an ETag of an earlier read: 304 when unchanged")), responses((status = 200, description = "the value served to this reader, with an ETag", body = crate::openapi::KeyValueDoc), (status = 304, description = "not modified"), (status = 404, description = "unknown dataset, or the key is not in the served release", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn get_key(
    State(app): State<App>,
    caller: Caller,
    Path((name, key)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<KeyQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    key_op(&app, &caller, &name, &key, query, &headers).await
}

#[utoipa::path(post, path = "/v1/reads", tag = "publishing", request_body = ReadsBody, responses((status = 200, description = "every value from one consistent view; a missing key, or a key of an unknown dataset, has value null and release_id null", body = crate::openapi::ReadsDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn batch_read(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<ReadsBody>,
) -> Result<Response, ApiError> {
    reads_op(&app, &caller, body).await
}
