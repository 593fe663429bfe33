//! The inventory endpoints of API.md: requests in, engine commands out, replies back.

use crate::App;
use crate::body::JsonBody;
use crate::error::{ApiError, bad};
use crate::session::{Caller, claimed, outcome_error, request_key, submit};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_engine::cairn::{Cairn, CairnCommand, CairnError, CairnReply};
use cairn_engine::txn::{TxnKind, TxnState};
use cairn_engine::{EngineError, RequestKey};
use cairn_inventory::{
    Actor, HistoryEntry, InventoryCommand, InventoryReply, ItemView, LineRequest,
    RESERVATION_TTL_MS_DEFAULT, ReservationState, ReservationView, validate,
};
use cairn_types::{ErrorCode, ShardId, TxnId, shard_for_key};
use futures_util::TryFutureExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/inventory/adjustments", post(adjust))
        .route("/v1/inventory/counts", post(count))
        .route("/v1/inventory/policies", post(policy))
        .route("/v1/inventory/reservations", post(reserve))
        .route("/v1/inventory/reservations/{id}", get(get_reservation))
        .route("/v1/inventory/reservations/{id}/confirm", post(confirm))
        .route("/v1/inventory/reservations/{id}/release", post(release))
        .route("/v1/inventory/items/{sku}", get(get_item))
        .route("/v1/inventory/items/{sku}/history", get(history))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct AdjustBody {
    pub(crate) request_id: String,
    pub(crate) sku: String,
    pub(crate) location: String,
    pub(crate) delta: i64,
    pub(crate) reason: String,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct CountBody {
    pub(crate) request_id: String,
    pub(crate) sku: String,
    pub(crate) location: String,
    pub(crate) on_hand: i64,
    pub(crate) expected_on_hand: Option<i64>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyBody {
    pub(crate) request_id: String,
    pub(crate) sku: String,
    pub(crate) location: String,
    pub(crate) safety_stock: Option<i64>,
    pub(crate) backorder_limit: Option<i64>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct LineBody {
    pub(crate) sku: String,
    pub(crate) location: Option<String>,
    pub(crate) qty: i64,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct ReserveBody {
    pub(crate) request_id: String,
    pub(crate) order_id: String,
    pub(crate) lines: Vec<LineBody>,
    pub(crate) ttl_ms: Option<u64>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct FinishBody {
    pub(crate) request_id: String,
}

fn actor(caller: &Caller, request_id: &str) -> Actor {
    Actor {
        name: caller.name.clone(),
        request_id: Some(request_id.to_string()),
    }
}

fn item_shard(app: &App, sku: &str) -> ShardId {
    shard_for_key(sku.as_bytes(), app.engine.shard_count())
}

// The operations, shared by the HTTP and gRPC transports: role check, validation, idempotency
// key, command, engine. Each transport only decodes its request into the body and renders the
// typed result, so both apply the same rules and compute the same request fingerprint.

/// An item after a write.
pub(crate) struct ItemWritten {
    /// The log position of the write's last event.
    pub(crate) lsn: u64,
    /// The item.
    pub(crate) item: ItemView,
}

/// A reservation after a write (or a read, without `lsn`).
pub(crate) struct ReservationOutcome {
    /// The shard that holds it.
    pub(crate) shard: ShardId,
    /// The reservation.
    pub(crate) view: ReservationView,
    /// The log position of the write's last event.
    pub(crate) lsn: Option<u64>,
    /// The transaction that made it, for a reservation across shards (`shard` is then its
    /// coordinator, and `view` the parts put together).
    pub(crate) txn: Option<TxnId>,
}

impl ReservationOutcome {
    /// Its public id: `"{shard}-{number}"`, or `"{coordinator}-t{number}"` across shards.
    pub(crate) fn public_id(&self) -> String {
        match self.txn {
            Some(txn) => txn.to_string(),
            None => public_id(self.shard, self.view.reservation_id),
        }
    }
}

/// A SKU at every location.
pub(crate) struct ItemsRead {
    pub(crate) sku: String,
    pub(crate) total_available: i64,
    pub(crate) locations: Vec<ItemView>,
    pub(crate) lsn: u64,
}

/// A SKU's recent history.
pub(crate) struct HistoryRead {
    pub(crate) sku: String,
    /// The shard of the SKU (reservation ids in entries are numbers on it).
    pub(crate) shard: ShardId,
    pub(crate) entries: Vec<HistoryEntry>,
}

async fn item_command(
    app: &App,
    caller: &Caller,
    sku: &str,
    key: RequestKey,
    command: InventoryCommand,
) -> Result<ItemWritten, ApiError> {
    let shard = item_shard(app, sku);
    let request_id = key.id.clone();
    let command = CairnCommand::Inventory {
        actor: actor(caller, &request_id),
        command,
    };
    let committed = submit(app, shard, command, Some(key)).await?;
    match committed.reply {
        CairnReply::Inventory(InventoryReply::Item(item)) => Ok(ItemWritten {
            lsn: committed.lsn.0,
            item,
        }),
        CairnReply::Inventory(InventoryReply::Reservation(_) | InventoryReply::Txn(_))
        | CairnReply::Matching(_)
        | CairnReply::Publishing(_)
        | CairnReply::Txn(_) => Err(ApiError::internal(
            "an item command replied with something else",
        )),
    }
}

/// An adjustment (operator).
pub(crate) async fn adjust_op(
    app: &App,
    caller: &Caller,
    body: AdjustBody,
) -> Result<ItemWritten, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "adjust", &body)?;
    validate::identifier("sku", &body.sku).map_err(bad)?;
    validate::identifier("location", &body.location).map_err(bad)?;
    validate::delta(body.delta).map_err(bad)?;
    validate::reason(&body.reason).map_err(bad)?;
    let command = InventoryCommand::Adjust {
        sku: body.sku.clone(),
        location: body.location,
        delta: body.delta,
        reason: body.reason,
    };
    item_command(app, caller, &body.sku, key, command).await
}

/// A count (operator).
pub(crate) async fn count_op(
    app: &App,
    caller: &Caller,
    body: CountBody,
) -> Result<ItemWritten, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "count", &body)?;
    validate::identifier("sku", &body.sku).map_err(bad)?;
    validate::identifier("location", &body.location).map_err(bad)?;
    validate::level("on_hand", body.on_hand).map_err(bad)?;
    if let Some(expected) = body.expected_on_hand {
        validate::level("expected_on_hand", expected).map_err(bad)?;
    }
    let command = InventoryCommand::Count {
        sku: body.sku.clone(),
        location: body.location,
        on_hand: body.on_hand,
        expected_on_hand: body.expected_on_hand,
    };
    item_command(app, caller, &body.sku, key, command).await
}

/// A policy change (operator).
pub(crate) async fn policy_op(
    app: &App,
    caller: &Caller,
    body: PolicyBody,
) -> Result<ItemWritten, ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "policy", &body)?;
    validate::identifier("sku", &body.sku).map_err(bad)?;
    validate::identifier("location", &body.location).map_err(bad)?;
    for (field, value) in [
        ("safety_stock", body.safety_stock),
        ("backorder_limit", body.backorder_limit),
    ] {
        if let Some(value) = value {
            validate::level(field, value).map_err(bad)?;
        }
    }
    let command = InventoryCommand::SetPolicy {
        sku: body.sku.clone(),
        location: body.location,
        safety_stock: body.safety_stock,
        backorder_limit: body.backorder_limit,
    };
    item_command(app, caller, &body.sku, key, command).await
}

/// The public id of a reservation: its shard and its number there, `"{shard}-{number}"`.
pub(crate) fn public_id(shard: ShardId, reservation_id: u64) -> String {
    format!("{}-{reservation_id}", shard.0)
}

/// What a public reservation id names.
enum Target {
    /// A reservation on one shard: `"{shard}-{number}"`.
    Local(ShardId, u64),
    /// A reservation across shards, by the transaction that made it: `"{coordinator}-t{number}"`.
    Txn(TxnId),
}

fn parse_id(app: &App, id: &str) -> Result<Target, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("reservation {id} not found"));
    let (shard, number) = id.split_once('-').ok_or_else(not_found)?;
    let shard: u16 = shard.parse().map_err(|_| not_found())?;
    if shard >= app.engine.shard_count() {
        return Err(not_found());
    }
    let shard = ShardId(shard);
    match number.strip_prefix('t') {
        Some(number) => {
            let number: u64 = number.parse().map_err(|_| not_found())?;
            Ok(Target::Txn(TxnId {
                coordinator: shard,
                number,
            }))
        }
        None => {
            let number: u64 = number.parse().map_err(|_| not_found())?;
            Ok(Target::Local(shard, number))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reservations across shards: two-phase commit run by the engine (`cairn_engine::txn_run`).

/// How often the transaction resolver looks for undecided transactions and waiting holds.
const RESOLVE_INTERVAL_MS: u64 = 250;

/// Starts the task that finishes transactions whose orchestrator is gone (a crash, a deadline):
/// its first pass runs at once, so that holds left by an earlier process are resolved right
/// after a restart. It ends when the server closes.
pub(crate) fn spawn_txn_resolver(app: &App) {
    if app.engine.shard_count() < 2 {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let closing = app.closing.closed();
        tokio::pin!(closing);
        loop {
            match app.engine.resolve_txns().await {
                Ok(report) if report != cairn_engine::txn_run::ResolveReport::default() => {
                    tracing::info!(?report, "transactions resolved");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(?error, "transaction resolver pass failed"),
            }
            tokio::select! {
                () = &mut closing => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(RESOLVE_INTERVAL_MS)) => {}
            }
        }
    });
}

/// Reserves lines that live on several shards, all or nothing.
async fn reserve_across(
    app: &App,
    caller: &Caller,
    key: RequestKey,
    body: &ReserveBody,
    lines: Vec<LineRequest>,
    ttl_ms: u64,
) -> Result<ReservationOutcome, ApiError> {
    let mut by_shard: std::collections::BTreeMap<ShardId, Vec<LineRequest>> =
        std::collections::BTreeMap::new();
    for line in lines {
        by_shard
            .entry(item_shard(app, &line.sku))
            .or_default()
            .push(line);
    }
    // The order's shard coordinates: a retry of the same request finds the same coordinator.
    let coordinator = shard_for_key(body.order_id.as_bytes(), app.engine.shard_count());
    let request_id = key.id.clone();
    let outcome = claimed(
        app,
        coordinator,
        &request_id,
        app.engine.reserve_across(
            coordinator,
            key,
            &caller.name,
            &body.order_id,
            by_shard.into_iter().collect(),
            ttl_ms,
        ),
    )
    .await?;
    txn_reservation(app, outcome.txn, Some(outcome.lsn.0)).await
}

/// Confirms or releases a reservation across shards, on every shard at once.
async fn finish_across(
    app: &App,
    caller: &Caller,
    key: RequestKey,
    txn: TxnId,
    confirm: bool,
) -> Result<ReservationOutcome, ApiError> {
    let request_id = key.id.clone();
    let outcome = claimed(
        app,
        txn.coordinator,
        &request_id,
        app.engine
            .finish_across(txn, key, &caller.name, confirm)
            .map_err(|error| match error {
                // The coordinator knows no such reservation.
                EngineError::Refused(CairnError::Txn(_)) => EngineError::Refused(
                    CairnError::Inventory(cairn_inventory::InventoryError::ReservationNotFound {
                        reservation_id: txn.number,
                    }),
                ),
                other => other,
            }),
    )
    .await?;
    txn_reservation(app, txn, Some(outcome.lsn.0)).await
}

/// A reservation across shards, put together from its parts.
async fn txn_reservation(
    app: &App,
    txn: TxnId,
    lsn: Option<u64>,
) -> Result<ReservationOutcome, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("reservation {txn} not found"));
    let number = txn.number;
    let record = app
        .engine
        .read_from(txn.coordinator, move |state: &Cairn, _| {
            state.txns.get(number).cloned()
        })
        .await?
        .ok_or_else(not_found)?;
    let (
        TxnKind::Reserve {
            order_id,
            expires_at_ms,
            ..
        },
        TxnState::Committed,
    ) = (&record.kind, record.state)
    else {
        return Err(not_found());
    };
    let mut lines = Vec::new();
    let mut states = Vec::with_capacity(record.pieces.len());
    for piece in &record.pieces {
        let reservation_id = piece.reservation_id;
        let part = app
            .engine
            .read_from(piece.shard, move |state: &Cairn, _| {
                state.inventory.reservation_view(reservation_id)
            })
            .await?;
        // A part forgotten after its retention counts as finished like the others.
        if let Some(part) = part {
            states.push(part.state);
        }
        lines.extend(piece.lines.iter().cloned());
    }
    Ok(ReservationOutcome {
        shard: txn.coordinator,
        view: ReservationView {
            reservation_id: txn.number,
            order_id: order_id.clone(),
            state: combined_state(&states),
            expires_at_ms: *expires_at_ms,
            lines,
        },
        lsn,
        txn: Some(txn),
    })
}

/// The state of a reservation across shards from its parts': they end together, except that
/// each part expires by its own shard's timer, so for a moment some may be expired while others
/// are still active.
fn combined_state(states: &[ReservationState]) -> ReservationState {
    let any = |wanted: ReservationState| states.contains(&wanted);
    if any(ReservationState::Confirmed) {
        ReservationState::Confirmed
    } else if any(ReservationState::Released) {
        ReservationState::Released
    } else if any(ReservationState::Expired) || states.is_empty() {
        ReservationState::Expired
    } else {
        ReservationState::Active
    }
}

fn reservation_json(outcome: &ReservationOutcome) -> serde_json::Value {
    let view = &outcome.view;
    let mut reply = json!({
        "reservation_id": outcome.public_id(),
        "order_id": view.order_id,
        "state": view.state,
        "expires_at_ms": view.expires_at_ms,
        "lines": view.lines,
    });
    if let Some(lsn) = outcome.lsn {
        reply["lsn"] = json!(lsn);
    }
    reply
}

/// A reservation (client).
pub(crate) async fn reserve_op(
    app: &App,
    caller: &Caller,
    body: ReserveBody,
) -> Result<ReservationOutcome, ApiError> {
    caller.require_client()?;
    let key = request_key(&body.request_id, "reserve", &body)?;
    validate::identifier("order_id", &body.order_id).map_err(bad)?;
    validate::line_count(body.lines.len()).map_err(bad)?;
    let ttl_ms = body.ttl_ms.unwrap_or(RESERVATION_TTL_MS_DEFAULT);
    validate::ttl_ms(ttl_ms).map_err(bad)?;
    let mut lines = Vec::with_capacity(body.lines.len());
    for line in &body.lines {
        validate::identifier("sku", &line.sku).map_err(bad)?;
        if let Some(location) = &line.location {
            validate::identifier("location", location).map_err(bad)?;
        }
        validate::positive_qty("qty", line.qty).map_err(bad)?;
        lines.push(LineRequest {
            sku: line.sku.clone(),
            location: line.location.clone(),
            qty: line.qty,
        });
    }
    let shard = item_shard(app, &lines[0].sku);
    if lines.iter().any(|line| item_shard(app, &line.sku) != shard) {
        return reserve_across(app, caller, key, &body, lines, ttl_ms).await;
    }
    let command = InventoryCommand::Reserve {
        order_id: body.order_id.clone(),
        lines,
        ttl_ms,
    };
    let command = CairnCommand::Inventory {
        actor: actor(caller, &body.request_id),
        command,
    };
    let committed = submit(app, shard, command, Some(key)).await?;
    let CairnReply::Inventory(InventoryReply::Reservation(view)) = committed.reply else {
        return Err(ApiError::internal("a reservation replied with an item"));
    };
    Ok(ReservationOutcome {
        shard,
        view,
        lsn: Some(committed.lsn.0),
        txn: None,
    })
}

/// A confirm (`confirm`) or release of reservation `id` (client).
pub(crate) async fn finish_op(
    app: &App,
    caller: &Caller,
    id: &str,
    body: &FinishBody,
    confirm: bool,
) -> Result<ReservationOutcome, ApiError> {
    caller.require_client()?;
    let operation = if confirm { "confirm" } else { "release" };
    let key = request_key(&body.request_id, &format!("{operation}:{id}"), body)?;
    let (shard, reservation_id) = match parse_id(app, id)? {
        Target::Local(shard, reservation_id) => (shard, reservation_id),
        Target::Txn(txn) => return finish_across(app, caller, key, txn, confirm).await,
    };
    let command = if confirm {
        InventoryCommand::Confirm { reservation_id }
    } else {
        InventoryCommand::Release { reservation_id }
    };
    let command = CairnCommand::Inventory {
        actor: actor(caller, &body.request_id),
        command,
    };
    let committed = submit(app, shard, command, Some(key)).await?;
    let CairnReply::Inventory(InventoryReply::Reservation(view)) = committed.reply else {
        return Err(ApiError::internal(
            "a reservation command replied with an item",
        ));
    };
    Ok(ReservationOutcome {
        shard,
        view,
        lsn: Some(committed.lsn.0),
        txn: None,
    })
}

/// Reservation `id` (viewer).
pub(crate) async fn reservation_op(
    app: &App,
    caller: &Caller,
    id: &str,
) -> Result<ReservationOutcome, ApiError> {
    caller.require_viewer()?;
    let (shard, reservation_id) = match parse_id(app, id)? {
        Target::Local(shard, reservation_id) => (shard, reservation_id),
        Target::Txn(txn) => return txn_reservation(app, txn, None).await,
    };
    let found = crate::session::read(app, shard, move |state: &Cairn, _| {
        state.inventory.reservation_view(reservation_id)
    })
    .await?;
    let view = found
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("reservation {id} not found")))?;
    Ok(ReservationOutcome {
        shard,
        view,
        lsn: None,
        txn: None,
    })
}

/// A SKU at every location (viewer).
pub(crate) async fn item_op(
    app: &App,
    caller: &Caller,
    sku: String,
) -> Result<ItemsRead, ApiError> {
    caller.require_viewer()?;
    validate::identifier("sku", &sku).map_err(bad)?;
    let shard = item_shard(app, &sku);
    let lookup = sku.clone();
    let found = crate::session::read(app, shard, move |state: &Cairn, lsn| {
        state
            .inventory
            .item_views(&lookup)
            .map(|items| (items, state.inventory.total_available(&lookup), lsn))
    })
    .await?;
    let (locations, total_available, lsn) = found
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("SKU {sku} was never seen")))?;
    Ok(ItemsRead {
        sku,
        total_available,
        locations,
        lsn: lsn.0,
    })
}

/// A SKU's recent history (viewer).
pub(crate) async fn history_op(
    app: &App,
    caller: &Caller,
    sku: String,
) -> Result<HistoryRead, ApiError> {
    caller.require_viewer()?;
    validate::identifier("sku", &sku).map_err(bad)?;
    let shard = item_shard(app, &sku);
    let lookup = sku.clone();
    let entries = crate::session::read(app, shard, move |state: &Cairn, _| {
        state
            .inventory
            .item_views(&lookup)
            .map(|_| state.inventory.history(&lookup))
    })
    .await?
    .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("SKU {sku} was never seen")))?;
    Ok(HistoryRead {
        sku,
        shard,
        entries,
    })
}

fn item_response(written: ItemWritten) -> Response {
    Json(json!({"lsn": written.lsn, "item": written.item})).into_response()
}

#[utoipa::path(post, path = "/v1/inventory/adjustments", tag = "inventory", request_body = AdjustBody, responses((status = 200, description = "success", body = crate::openapi::ItemReplyDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed", body = crate::openapi::ErrorDoc), (status = 409, description = "conflict with the current state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn adjust(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<AdjustBody>,
) -> Result<Response, ApiError> {
    adjust_op(&app, &caller, body).await.map(item_response)
}

#[utoipa::path(post, path = "/v1/inventory/counts", tag = "inventory", request_body = CountBody, responses((status = 200, description = "success", body = crate::openapi::ItemReplyDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed", body = crate::openapi::ErrorDoc), (status = 409, description = "conflict with the current state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn count(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<CountBody>,
) -> Result<Response, ApiError> {
    count_op(&app, &caller, body).await.map(item_response)
}

#[utoipa::path(post, path = "/v1/inventory/policies", tag = "inventory", request_body = PolicyBody, responses((status = 200, description = "success", body = crate::openapi::ItemReplyDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn policy(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<PolicyBody>,
) -> Result<Response, ApiError> {
    policy_op(&app, &caller, body).await.map(item_response)
}

#[utoipa::path(post, path = "/v1/inventory/reservations", tag = "inventory", request_body = ReserveBody, responses((status = 201, description = "created", body = crate::openapi::ReservationDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed", body = crate::openapi::ErrorDoc), (status = 409, description = "conflict with the current state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn reserve(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<ReserveBody>,
) -> Result<Response, ApiError> {
    let outcome = reserve_op(&app, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(reservation_json(&outcome))).into_response())
}

#[utoipa::path(post, path = "/v1/inventory/reservations/{id}/confirm", tag = "inventory", params(("id" = String, Path)), request_body = FinishBody, responses((status = 200, description = "success", body = crate::openapi::ReservationDoc), (status = 404, description = "unknown resource", body = crate::openapi::ErrorDoc), (status = 409, description = "conflict with the current state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn confirm(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FinishBody>,
) -> Result<Response, ApiError> {
    let outcome = finish_op(&app, &caller, &id, &body, true).await?;
    Ok(Json(reservation_json(&outcome)).into_response())
}

#[utoipa::path(post, path = "/v1/inventory/reservations/{id}/release", tag = "inventory", params(("id" = String, Path)), request_body = FinishBody, responses((status = 200, description = "success", body = crate::openapi::ReservationDoc), (status = 404, description = "unknown resource", body = crate::openapi::ErrorDoc), (status = 409, description = "conflict with the current state", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn release(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FinishBody>,
) -> Result<Response, ApiError> {
    let outcome = finish_op(&app, &caller, &id, &body, false).await?;
    Ok(Json(reservation_json(&outcome)).into_response())
}

#[utoipa::path(get, path = "/v1/inventory/reservations/{id}", tag = "inventory", params(("id" = String, Path)), responses((status = 200, description = "success", body = crate::openapi::ReservationDoc), (status = 404, description = "unknown resource", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn get_reservation(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let outcome = reservation_op(&app, &caller, &id).await?;
    Ok(Json(reservation_json(&outcome)).into_response())
}

#[utoipa::path(get, path = "/v1/inventory/items/{sku}", tag = "inventory", params(("sku" = String, Path, description = "percent-encoded")), responses((status = 200, description = "success", body = crate::openapi::ItemsDoc), (status = 404, description = "unknown resource", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn get_item(
    State(app): State<App>,
    caller: Caller,
    Path(sku): Path<String>,
) -> Result<Response, ApiError> {
    let read = item_op(&app, &caller, sku).await?;
    Ok(Json(json!({"sku": read.sku, "total_available": read.total_available, "locations": read.locations, "lsn": read.lsn})).into_response())
}

#[utoipa::path(get, path = "/v1/inventory/items/{sku}/history", tag = "inventory", params(("sku" = String, Path)), responses((status = 200, description = "success", body = crate::openapi::HistoryDoc), (status = 404, description = "unknown resource", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn history(
    State(app): State<App>,
    caller: Caller,
    Path(sku): Path<String>,
) -> Result<Response, ApiError> {
    let read = history_op(&app, &caller, sku).await?;
    let events: Vec<serde_json::Value> = read
        .entries
        .iter()
        .map(|entry| {
            let actor = entry.actor.as_ref();
            json!({
                "lsn": entry.lsn,
                "at_ms": entry.at_ms,
                "type": entry.kind,
                "request_id": actor.and_then(|a| a.request_id.clone()),
                "actor": actor.map(|a| a.name.clone()),
                "location": entry.location,
                "qty": entry.qty,
                "reservation_id": entry.reservation_id.map(|id| public_id(read.shard, id)),
                "reason": entry.reason,
            })
        })
        .collect();
    Ok(Json(json!({"sku": read.sku, "events": events})).into_response())
}

impl From<cairn_engine::EngineError<cairn_engine::cairn::CairnError>> for ApiError {
    fn from(error: cairn_engine::EngineError<cairn_engine::cairn::CairnError>) -> ApiError {
        outcome_error(error)
    }
}
