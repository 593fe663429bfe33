//! The event feed of API.md: `GET /v1/events?from_lsn=N[&types=...][&market=S]` as server-sent
//! events, catch-up from `N` and then live.
//!
//! Each shard's log is followed with a [`Subscription`] (catch-up from the segment files, then the
//! live stream), which only ever yields durable records: the feed never shows an event before it
//! is durable (DESIGN.md, principle 5). Records are decoded, refusals and records without events
//! are skipped, each event is rendered as one JSON object, and the shards' streams are merged as
//! their events arrive (each event carries its `shard`; order is per shard).
//!
//! # The cursor
//!
//! Every event's `id:` is a cursor with the resume position of every shard, comma-separated:
//! `s{shard}:{lsn}` or `s{shard}:{lsn}.{skip}`, for example `s0:13,s1:7.2,s2:1`. For each shard it
//! names the next record to read and, when the last event sent was in the middle of a record (one
//! record may hold several events, such as the expiries of one tick), how many of that record's
//! events were already sent. Sending it back as `Last-Event-ID` resumes exactly after that event,
//! with no repeat and no gap, and takes precedence over `from_lsn`. Clients treat it as opaque.
//!
//! # Bounds
//!
//! At most [`FEED_CONNECTIONS_MAX`] feeds are open at once (`429 overloaded` beyond). Catch-up
//! reads run on the blocking pool in batches of at most [`CATCH_UP_BATCH_RECORDS_MAX`] records or
//! [`CATCH_UP_BATCH_BYTES_MAX`] bytes. A slow reader is never buffered for: the live stream is
//! bounded by the shard's subscription buffer, and a reader that falls behind it is caught up from
//! the files again, transparently. A keep-alive comment goes out every
//! [`KEEP_ALIVE_INTERVAL`].

use crate::App;
use crate::error::{ApiError, bad};
use crate::session::Caller;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_engine::cairn::{Cairn, CairnEvent};
use cairn_engine::core::EnvelopeOf;
use cairn_engine::envelope::{self, RECORD_TYPE_REFUSAL};
use cairn_engine::{Shard, Subscription, SubscriptionError};
use cairn_inventory::{InventoryEvent, validate};
use cairn_log::Record;
use cairn_matching::{MatchingEvent, Side};
use cairn_types::{ErrorCode, Lsn, ShardId};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Most feed connections open at once; one more is `429 overloaded`.
pub const FEED_CONNECTIONS_MAX: usize = 1024;

/// How often an idle feed sends a keep-alive comment.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Most records one catch-up read takes from the files before they are sent.
pub const CATCH_UP_BATCH_RECORDS_MAX: usize = 256;

/// Most payload bytes one catch-up read takes from the files (at least one record is taken).
pub const CATCH_UP_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Longest cursor accepted in `Last-Event-ID`, in bytes (256 shards fit with room to spare).
const CURSOR_BYTES_MAX: usize = 16 * 1024;

/// Largest LSN accepted in `from_lsn` or a cursor (integers on the wire stay within 2^53).
const LSN_MAX: u64 = 1 << 53;

/// Feeds open now, across the process.
static OPEN_FEEDS: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn routes() -> Router<App> {
    Router::new().route("/v1/events", get(events))
}

/// `GET /v1/events` (viewer and up): the feed, as `text/event-stream`.
#[utoipa::path(get, path = "/v1/events", tag = "feed",
    params(
        ("from_lsn" = Option<u64>, Query, description = "first LSN of every shard to show (inclusive; 0, the default, is the beginning)"),
        ("types" = Option<String>, Query, description = "comma-separated domains: inventory, matching, publishing (default all)"),
        ("market" = Option<String>, Query, description = "only events about this market"),
        ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received: resume exactly after it (wins over from_lsn)"),
    ),
    responses(
        (status = 200, description = "server-sent events: `id:` an opaque cursor, `data:` JSON with lsn, shard, index, type (e.g. inventory.reserved), at_ms and the event's fields; a keep-alive comment every 15 s", content_type = "text/event-stream", body = String),
        (status = 400, description = "malformed from_lsn, types, market or Last-Event-ID", body = crate::openapi::ErrorDoc),
        (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc),
        (status = 429, description = "feed_connections_max feeds are open", body = crate::openapi::ErrorDoc),
    ),
    security(("bearer" = [])))]
pub(crate) async fn events(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_viewer()?;
    let Query(pairs) =
        query.map_err(|rejection| bad(format!("invalid query: {}", rejection.body_text())))?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| bad("Last-Event-ID must be a cursor sent by this feed"))?,
        ),
    };
    let request =
        FeedRequest::parse(&pairs, last_event_id, app.engine.shard_count()).map_err(bad)?;
    let permit = FeedPermit::acquire(&OPEN_FEEDS, FEED_CONNECTIONS_MAX).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Overloaded,
            format!("feed_connections_max ({FEED_CONNECTIONS_MAX}) feeds are open; retry shortly"),
        )
        .with_details(json!({"limit": "feed_connections_max", "max": FEED_CONNECTIONS_MAX}))
    })?;
    let events = feed(&app, request, permit);
    let keep_alive = KeepAlive::new()
        .interval(KEEP_ALIVE_INTERVAL)
        .text("keep-alive");
    let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
    // Proxies must pass events on as they come.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The merged stream of every shard's events, ending when a shard cannot go on (the client
/// reconnects with its last id and resumes).
fn feed(
    app: &App,
    request: FeedRequest,
    permit: FeedPermit,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let filter = Arc::new(request.filter);
    let followers = app
        .engine
        .shards()
        .iter()
        .zip(&request.cursor.positions)
        .map(|(shard, &start)| Follower::new(shard, start, Arc::clone(&filter)).into_stream())
        .collect::<Vec<_>>();
    let mut cursor = request.cursor;
    let closed = app.closing.closed();
    stream::select_all(followers)
        .take_until(closed)
        .scan(permit, move |_permit, item| {
            let event = match item {
                Ok(event) => {
                    cursor.positions[usize::from(event.shard.0)] = event.after;
                    Some(Ok(Event::default()
                        .id(cursor.encode())
                        .data(event.data.to_string())))
                }
                Err(reason) => {
                    tracing::warn!(%reason, "closing an event feed");
                    None
                }
            };
            std::future::ready(event)
        })
}

/// A slot among the open feeds, given back when the feed's stream is dropped.
struct FeedPermit(&'static AtomicUsize);

impl FeedPermit {
    fn acquire(open: &'static AtomicUsize, max: usize) -> Option<FeedPermit> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| FeedPermit(open))
    }
}

impl Drop for FeedPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a shard's feed resumes: the next record, and how many of its events were already sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    lsn: u64,
    skip: u32,
}

impl Position {
    fn at(lsn: u64) -> Position {
        Position {
            lsn: lsn.max(1),
            skip: 0,
        }
    }
}

/// Every shard's position; the `id:` of each event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    positions: Vec<Position>,
}

impl Cursor {
    fn from_lsn(lsn: u64, shard_count: u16) -> Cursor {
        Cursor {
            positions: vec![Position::at(lsn); usize::from(shard_count)],
        }
    }

    fn encode(&self) -> String {
        let mut text = String::with_capacity(self.positions.len() * 12);
        for (shard, position) in self.positions.iter().enumerate() {
            if shard > 0 {
                text.push(',');
            }
            text.push_str(&format!("s{shard}:{}", position.lsn));
            if position.skip > 0 {
                text.push_str(&format!(".{}", position.skip));
            }
        }
        text
    }

    fn parse(text: &str, shard_count: u16) -> Result<Cursor, String> {
        let malformed = |why: &str| format!("Last-Event-ID is not a cursor of this feed: {why}");
        if text.len() > CURSOR_BYTES_MAX {
            return Err(malformed(&format!("longer than {CURSOR_BYTES_MAX} bytes")));
        }
        let mut positions: Vec<Option<Position>> = vec![None; usize::from(shard_count)];
        for part in text.split(',') {
            let (shard, position) = part
                .strip_prefix('s')
                .and_then(|rest| rest.split_once(':'))
                .ok_or_else(|| malformed(&format!("'{part}' is not s<shard>:<lsn>")))?;
            let shard = number(shard, u64::from(shard_count.saturating_sub(1)))
                .and_then(|shard| usize::try_from(shard).ok())
                .ok_or_else(|| malformed(&format!("no shard '{shard}' among {shard_count}")))?;
            let (lsn, skip) = match position.split_once('.') {
                Some((lsn, skip)) => (lsn, Some(skip)),
                None => (position, None),
            };
            let lsn = number(lsn, LSN_MAX).ok_or_else(|| malformed(&format!("bad LSN '{lsn}'")))?;
            let skip = match skip {
                None => 0,
                Some(skip) => number(skip, u64::from(u32::MAX))
                    .and_then(|skip| u32::try_from(skip).ok())
                    .ok_or_else(|| malformed(&format!("bad event index '{skip}'")))?,
            };
            if positions[shard].is_some() {
                return Err(malformed(&format!("shard {shard} appears twice")));
            }
            positions[shard] = Some(Position {
                lsn: lsn.max(1),
                skip,
            });
        }
        let positions = positions
            .into_iter()
            .enumerate()
            .map(|(shard, position)| {
                position.ok_or_else(|| malformed(&format!("no position for shard {shard}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cursor { positions })
    }
}

/// A decimal number without sign or spaces, at most `max`.
fn number(text: &str, max: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|&n| n <= max)
}

/// A domain of events, as named in `types=` and in each event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Domain {
    Inventory,
    Matching,
    Publishing,
}

impl Domain {
    const ALL: [Domain; 3] = [Domain::Inventory, Domain::Matching, Domain::Publishing];

    fn name(self) -> &'static str {
        match self {
            Domain::Inventory => "inventory",
            Domain::Matching => "matching",
            Domain::Publishing => "publishing",
        }
    }

    fn parse(name: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|domain| domain.name() == name)
    }
}

/// Which events a feed shows.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Filter {
    domains: Vec<Domain>,
    market: Option<String>,
}

impl Filter {
    /// Whether an event of `domain`, about `market` if it concerns one, is shown.
    fn admits(&self, domain: Domain, market: Option<&str>) -> bool {
        self.domains.contains(&domain)
            && self
                .market
                .as_deref()
                .is_none_or(|wanted| market == Some(wanted))
    }
}

/// A feed request, checked.
#[derive(Debug)]
struct FeedRequest {
    cursor: Cursor,
    filter: Filter,
}

impl FeedRequest {
    fn parse(
        pairs: &[(String, String)],
        last_event_id: Option<&str>,
        shard_count: u16,
    ) -> Result<FeedRequest, String> {
        let mut from_lsn = None;
        let mut domains = None;
        let mut market = None;
        for (name, value) in pairs {
            let repeated = match name.as_str() {
                "from_lsn" => {
                    let lsn = number(value, LSN_MAX).ok_or_else(|| {
                        format!("from_lsn must be an integer in 0..=2^53, got '{value}'")
                    })?;
                    from_lsn.replace(lsn).is_some()
                }
                "types" => domains.replace(parse_types(value)?).is_some(),
                "market" => {
                    validate::identifier("market", value)?;
                    market.replace(value.clone()).is_some()
                }
                other => {
                    return Err(format!(
                        "unknown query parameter '{other}' (from_lsn, types and market are known)"
                    ));
                }
            };
            if repeated {
                return Err(format!("query parameter '{name}' is given twice"));
            }
        }
        let cursor = match last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
            Some(id) => Cursor::parse(id, shard_count)?,
            None => Cursor::from_lsn(from_lsn.unwrap_or(0), shard_count),
        };
        let filter = Filter {
            domains: domains.unwrap_or_else(|| Domain::ALL.to_vec()),
            market,
        };
        Ok(FeedRequest { cursor, filter })
    }
}

fn parse_types(value: &str) -> Result<Vec<Domain>, String> {
    let mut domains = Vec::new();
    for name in value.split(',') {
        let domain = Domain::parse(name).ok_or_else(|| {
            format!("unknown event type '{name}' in types (inventory, matching, publishing)")
        })?;
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    Ok(domains)
}

/// One event, rendered, with the shard's position right after it.
struct FeedEvent {
    shard: ShardId,
    after: Position,
    data: Value,
}

/// The public id of a reservation, as in `inventory.rs`: `"{shard}-{number}"`.
fn public_reservation_id(shard: ShardId, reservation_id: u64) -> String {
    format!("{}-{reservation_id}", shard.0)
}

/// An event's domain, its snake_case name, the market it concerns (if any) and its fields.
fn render(shard: ShardId, event: &CairnEvent) -> (Domain, &'static str, Option<&str>, Value) {
    match event {
        CairnEvent::Inventory(event) => {
            let (kind, fields) = render_inventory(shard, event);
            (Domain::Inventory, kind, None, fields)
        }
        CairnEvent::Matching(event) => (
            Domain::Matching,
            event.kind(),
            Some(event.symbol()),
            render_matching(event),
        ),
        CairnEvent::Publishing(event) => {
            let (kind, fields) = render_tagged(event);
            (Domain::Publishing, kind, None, fields)
        }
        // A coordinator's transaction steps belong to the inventory they change.
        CairnEvent::Txn(event) => {
            let (kind, fields) = render_txn(shard, event);
            (Domain::Inventory, kind, None, fields)
        }
    }
}

fn render_txn(shard: ShardId, event: &cairn_engine::txn::TxnEvent) -> (&'static str, Value) {
    use cairn_engine::txn::TxnEvent;
    let txn = |number: u64| {
        cairn_types::TxnId {
            coordinator: shard,
            number,
        }
        .to_string()
    };
    match event {
        TxnEvent::Begun { number, record } => (
            "txn_begun",
            json!({"txn": txn(*number), "participants": record.participants,
                "deadline_ms": record.deadline_ms, "actor": record.actor}),
        ),
        TxnEvent::Decided {
            number,
            commit,
            pieces,
            ..
        } => (
            "txn_decided",
            json!({"txn": txn(*number), "commit": commit,
                "parts": pieces.iter().map(|p| public_reservation_id(p.shard, p.reservation_id)).collect::<Vec<_>>()}),
        ),
    }
}

/// An externally tagged event (`{"ReleaseCreated": {...}}`) as its snake_case type name and
/// its fields.
fn render_tagged(event: &impl serde::Serialize) -> (&'static str, Value) {
    let Ok(Value::Object(tagged)) = serde_json::to_value(event) else {
        return ("unknown", Value::Null);
    };
    let Some((tag, fields)) = tagged.into_iter().next() else {
        return ("unknown", Value::Null);
    };
    (publishing_kind(&tag), fields)
}

/// The feed's name of a publishing event type (a fixed set, so names are `'static`).
fn publishing_kind(tag: &str) -> &'static str {
    match tag {
        "DatasetCreated" => "dataset_created",
        "GuardrailsSet" => "guardrails_set",
        "DraftCreated" => "draft_created",
        "DraftAppended" => "draft_appended",
        "DraftDiscarded" => "draft_discarded",
        "ReleaseCreated" => "release_created",
        "ReleasePromoted" => "release_promoted",
        "ReleaseAborted" => "release_aborted",
        "ReleaseWentLive" => "release_went_live",
        "ReleaseGoLiveRefused" => "release_go_live_refused",
        "ReleaseReverted" => "release_reverted",
        "RolledBack" => "rolled_back",
        "ReleasePinned" => "release_pinned",
        "RetentionSet" => "retention_set",
        _ => "publishing_event",
    }
}

/// A matching event's fields, plus what market-data consumers need without the state:
/// `trades` (each fill as a trade) and `book_changes` (`[{side, price, qty_delta}]`, the L2
/// changes in order). A consumer keeps a book by applying `book_changes` to a depth snapshot
/// (`GET /v1/markets/{symbol}/book`, whose `lsn` says where in the shard's feed it stands).
fn render_matching(event: &MatchingEvent) -> Value {
    let mut fields = match serde_json::to_value(event) {
        // Externally tagged: `{"OrderPlaced": {...}}`.
        Ok(Value::Object(mut tagged)) => tagged
            .values_mut()
            .next()
            .map(Value::take)
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let change = |side: Side, price: i64, qty_delta: i64| json!({"side": side, "price": price, "qty_delta": qty_delta});
    let fills_and_stp = |taker: Side,
                         taker_id: u64,
                         fills: &[cairn_matching::Fill],
                         stp: &[cairn_matching::StpCancel],
                         changes: &mut Vec<Value>| {
        let maker = taker.opposite();
        for fill in fills {
            changes.push(change(maker, fill.price, -fill.qty));
        }
        for cancel in stp {
            changes.push(change(maker, cancel.price, -cancel.remaining_qty));
        }
        fills
            .iter()
            .map(|fill| {
                json!({"trade_id": fill.trade_id, "price": fill.price, "qty": fill.qty,
                    "maker_order_id": fill.maker_order_id, "taker_order_id": taker_id,
                    "taker_side": taker})
            })
            .collect::<Vec<Value>>()
    };
    let mut changes = Vec::new();
    let trades = match event {
        MatchingEvent::MarketCreated { actor, .. } => {
            fields["actor"] = json!(actor.name);
            fields["request_id"] = json!(actor.request_id);
            Vec::new()
        }
        MatchingEvent::OrderPlaced {
            order_id,
            side,
            price,
            fills,
            stp_cancelled,
            resting_qty,
            ..
        } => {
            let trades = fills_and_stp(*side, *order_id, fills, stp_cancelled, &mut changes);
            if let (Some(price), true) = (price, *resting_qty > 0) {
                changes.push(change(*side, *price, *resting_qty));
            }
            trades
        }
        MatchingEvent::OrderAmended {
            order_id,
            side,
            old_price,
            old_remaining_qty,
            price,
            priority_kept,
            fills,
            stp_cancelled,
            resting_qty,
            ..
        } => {
            if *priority_kept {
                changes.push(change(*side, *price, resting_qty - old_remaining_qty));
                Vec::new()
            } else {
                changes.push(change(*side, *old_price, -old_remaining_qty));
                let trades = fills_and_stp(*side, *order_id, fills, stp_cancelled, &mut changes);
                if *resting_qty > 0 {
                    changes.push(change(*side, *price, *resting_qty));
                }
                trades
            }
        }
        MatchingEvent::OrderCancelled {
            side,
            price,
            remaining_qty,
            ..
        } => {
            changes.push(change(*side, *price, -remaining_qty));
            Vec::new()
        }
    };
    if let Value::Object(map) = &mut fields {
        map.insert("trades".into(), Value::Array(trades));
        map.insert("book_changes".into(), Value::Array(changes));
    }
    fields
}

fn render_inventory(shard: ShardId, event: &InventoryEvent) -> (&'static str, Value) {
    match event {
        InventoryEvent::Adjusted {
            sku,
            location,
            delta,
            reason,
            actor,
        } => (
            "adjusted",
            json!({"sku": sku, "location": location, "delta": delta, "reason": reason,
                "actor": actor.name, "request_id": actor.request_id}),
        ),
        InventoryEvent::Counted {
            sku,
            location,
            on_hand,
            previous_on_hand,
            actor,
        } => (
            "counted",
            json!({"sku": sku, "location": location, "on_hand": on_hand,
                "previous_on_hand": previous_on_hand, "actor": actor.name,
                "request_id": actor.request_id}),
        ),
        InventoryEvent::PolicySet {
            sku,
            location,
            safety_stock,
            backorder_limit,
            actor,
        } => (
            "policy_set",
            json!({"sku": sku, "location": location, "safety_stock": safety_stock,
                "backorder_limit": backorder_limit, "actor": actor.name,
                "request_id": actor.request_id}),
        ),
        InventoryEvent::Reserved {
            reservation_id,
            order_id,
            lines,
            expires_at_ms,
            actor,
        } => (
            "reserved",
            json!({"reservation_id": public_reservation_id(shard, *reservation_id),
                "order_id": order_id, "lines": lines, "expires_at_ms": expires_at_ms,
                "actor": actor.name, "request_id": actor.request_id}),
        ),
        InventoryEvent::Confirmed {
            reservation_id,
            actor,
        } => (
            "confirmed",
            json!({"reservation_id": public_reservation_id(shard, *reservation_id),
                "actor": actor.name, "request_id": actor.request_id}),
        ),
        InventoryEvent::Released {
            reservation_id,
            actor,
        } => (
            "released",
            json!({"reservation_id": public_reservation_id(shard, *reservation_id),
                "actor": actor.name, "request_id": actor.request_id}),
        ),
        InventoryEvent::Expired { reservation_id } => (
            "expired",
            json!({"reservation_id": public_reservation_id(shard, *reservation_id)}),
        ),
        // Phase one holds stock (it counts in `reserved` at once); phase two makes it final or
        // gives it back.
        InventoryEvent::TxnPrepared { txn, hold, actor } => {
            let lines = match &hold.op {
                cairn_inventory::HeldOp::Reserve { lines, .. } => lines.clone(),
                cairn_inventory::HeldOp::Finish { .. } => Vec::new(),
            };
            (
                "txn_prepared",
                json!({"txn": txn.to_string(),
                    "reservation_id": public_reservation_id(shard, hold.reservation_id()),
                    "lines": lines, "actor": actor.name, "request_id": actor.request_id}),
            )
        }
        InventoryEvent::TxnCommitted { txn, actor } => (
            "txn_committed",
            json!({"txn": txn.to_string(), "actor": actor.name, "request_id": actor.request_id}),
        ),
        InventoryEvent::TxnAborted { txn } => ("txn_aborted", json!({"txn": txn.to_string()})),
    }
}

/// Appends the events of `record` that `filter` admits, leaving out its first `skip` events.
///
/// # Errors
/// The record does not decode as an envelope of its type.
fn record_events(
    shard: ShardId,
    record: &Record,
    skip: u32,
    filter: &Filter,
    out: &mut VecDeque<FeedEvent>,
) -> Result<(), String> {
    if record.record_type == RECORD_TYPE_REFUSAL {
        return Ok(());
    }
    let where_ = || format!("shard {} record at LSN {}", shard.0, record.lsn);
    let decoded: EnvelopeOf<Cairn> =
        envelope::decode(&record.payload).map_err(|e| format!("{}: {e}", where_()))?;
    if decoded.record_type() != record.record_type {
        return Err(format!(
            "{} has type {} but holds a type {} payload",
            where_(),
            record.record_type,
            decoded.record_type()
        ));
    }
    let events = decoded.events();
    let lsn = record.lsn.0;
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    for (index, event) in events.iter().enumerate().skip(skip) {
        let (domain, kind, market, fields) = render(shard, event);
        if !filter.admits(domain, market) {
            continue;
        }
        let after = if index + 1 >= events.len() {
            Position::at(lsn + 1)
        } else {
            Position {
                lsn,
                skip: u32::try_from(index + 1)
                    .map_err(|_| format!("{}: too many events", where_()))?,
            }
        };
        let mut data = match fields {
            Value::Object(fields) => fields,
            other => Map::from_iter([("value".to_string(), other)]),
        };
        data.insert("lsn".into(), json!(lsn));
        data.insert("shard".into(), json!(shard.0));
        data.insert("index".into(), json!(index));
        data.insert("type".into(), json!(format!("{}.{kind}", domain.name())));
        data.insert("at_ms".into(), json!(record.timestamp_ms));
        out.push_back(FeedEvent {
            shard,
            after,
            data: Value::Object(data),
        });
    }
    Ok(())
}

/// Follows one shard: its records from a position on, as rendered events.
struct Follower {
    shard: ShardId,
    start: Position,
    filter: Arc<Filter>,
    /// `None` only while a catch-up read holds it on the blocking pool.
    subscription: Option<Subscription>,
    /// Reading from the files (at the start and after falling behind the live stream).
    catching_up: bool,
    pending: VecDeque<FeedEvent>,
    ended: bool,
    /// Times it fell behind the live stream and went back to the files.
    fell_behind: u64,
}

impl Follower {
    fn new(shard: &Shard<Cairn>, start: Position, filter: Arc<Filter>) -> Follower {
        Follower {
            shard: shard.id(),
            start,
            filter,
            subscription: Some(shard.subscribe(Lsn(start.lsn))),
            catching_up: true,
            pending: VecDeque::new(),
            ended: false,
            fell_behind: 0,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<FeedEvent, String>> + Send + 'static {
        Box::pin(stream::unfold(self, |mut follower| async move {
            let item = follower.next().await?;
            Some((item, follower))
        }))
    }

    /// The next event; `Err` once when the shard cannot go on, then `None`.
    async fn next(&mut self) -> Option<Result<FeedEvent, String>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            if let Err(reason) = self.fill().await {
                self.ended = true;
                return Some(Err(reason));
            }
        }
    }

    /// Reads at least one record (waiting for one if need be) into `pending`.
    async fn fill(&mut self) -> Result<(), String> {
        let (records, outcome) = if self.catching_up {
            self.read_files().await?
        } else {
            self.read_live().await?
        };
        for record in &records {
            let skip = if record.lsn.0 == self.start.lsn {
                self.start.skip
            } else {
                0
            };
            record_events(self.shard, record, skip, &self.filter, &mut self.pending)?;
        }
        match outcome {
            Ok(()) => Ok(()),
            Err(SubscriptionError::FellBehind { .. }) => {
                self.fell_behind += 1;
                tracing::debug!(
                    shard = self.shard.0,
                    times = self.fell_behind,
                    "an event feed fell behind the live stream; catching up from the files"
                );
                if let Some(subscription) = self.subscription.as_mut() {
                    subscription.resume_from_files();
                }
                self.catching_up = true;
                Ok(())
            }
            Err(SubscriptionError::Closed) => Err(format!("shard {} shut down", self.shard.0)),
            Err(SubscriptionError::Log(reason)) => Err(format!(
                "reading shard {}'s log failed: {reason}",
                self.shard.0
            )),
        }
    }

    /// A batch of records from the files, read on the blocking pool; leaves catch-up once the
    /// files have nothing more that is durable.
    #[allow(clippy::type_complexity)]
    async fn read_files(
        &mut self,
    ) -> Result<(Vec<Arc<Record>>, Result<(), SubscriptionError>), String> {
        let mut subscription = self
            .subscription
            .take()
            .ok_or_else(|| format!("shard {}'s subscription was lost", self.shard.0))?;
        let (subscription, records, drained, outcome) = tokio::task::spawn_blocking(move || {
            let mut records = Vec::new();
            let mut bytes = 0usize;
            let mut drained = false;
            let outcome = loop {
                if records.len() >= CATCH_UP_BATCH_RECORDS_MAX || bytes >= CATCH_UP_BATCH_BYTES_MAX
                {
                    break Ok(());
                }
                match subscription.poll() {
                    Ok(Some(record)) => {
                        bytes += record.payload.len();
                        records.push(record);
                    }
                    Ok(None) => {
                        drained = true;
                        break Ok(());
                    }
                    Err(SubscriptionError::FellBehind { .. }) => subscription.resume_from_files(),
                    Err(error) => break Err(error),
                }
            };
            (subscription, records, drained, outcome)
        })
        .await
        .map_err(|e| format!("shard {}'s catch-up read failed: {e}", self.shard.0))?;
        self.subscription = Some(subscription);
        if drained {
            self.catching_up = false;
        }
        Ok((records, outcome))
    }

    /// The next live record, waiting for it.
    #[allow(clippy::type_complexity)]
    async fn read_live(
        &mut self,
    ) -> Result<(Vec<Arc<Record>>, Result<(), SubscriptionError>), String> {
        let subscription = self
            .subscription
            .as_mut()
            .ok_or_else(|| format!("shard {}'s subscription was lost", self.shard.0))?;
        Ok(match subscription.next().await {
            Ok(record) => (vec![record], Ok(())),
            Err(error) => (Vec::new(), Err(error)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_reject_what_they_do_not_name() {
        let cursor = Cursor {
            positions: vec![
                Position { lsn: 13, skip: 0 },
                Position { lsn: 7, skip: 2 },
                Position::at(0),
            ],
        };
        let text = cursor.encode();
        assert_eq!(text, "s0:13,s1:7.2,s2:1");
        assert_eq!(Cursor::parse(&text, 3), Ok(cursor));
        for bad in [
            "",
            "s0:1",
            "s0:1,s1:1,s2:1,s3:1",
            "s0:1,s0:2,s1:1",
            "0:1,1:1,2:1",
            "s0:+1,s1:1,s2:1",
            "s0:-1,s1:1,s2:1",
            "s0:1.,s1:1,s2:1",
            "s0:1.x,s1:1,s2:1",
            "s0:1,s1:1,s2:99999999999999999999",
            "s0:1;s1:1;s2:1",
        ] {
            assert!(Cursor::parse(bad, 3).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn requests_check_every_parameter() {
        let request = FeedRequest::parse(&pairs(&[("from_lsn", "5")]), None, 2).expect("valid");
        assert_eq!(request.cursor, Cursor::from_lsn(5, 2));
        assert_eq!(request.filter.domains, Domain::ALL.to_vec());
        let resumed =
            FeedRequest::parse(&pairs(&[("from_lsn", "5")]), Some("s0:9.1,s1:3"), 2).expect("ok");
        assert_eq!(
            resumed.cursor.positions,
            vec![Position { lsn: 9, skip: 1 }, Position { lsn: 3, skip: 0 }],
            "Last-Event-ID wins over from_lsn"
        );
        let typed = FeedRequest::parse(
            &pairs(&[("types", "matching,inventory"), ("market", "BTC-USD")]),
            None,
            1,
        )
        .expect("valid");
        assert!(!typed.filter.admits(Domain::Inventory, None));
        assert!(typed.filter.admits(Domain::Matching, Some("BTC-USD")));
        assert!(!typed.filter.admits(Domain::Publishing, Some("BTC-USD")));
        for bad in [
            vec![("from_lsn", "x")],
            vec![("from_lsn", "-1")],
            vec![("from_lsn", "1.5")],
            vec![("from_lsn", "")],
            vec![("from_lsn", "1"), ("from_lsn", "2")],
            vec![("types", "orders")],
            vec![("types", "")],
            vec![("types", "inventory,")],
            vec![("market", "")],
            vec![("nope", "1")],
        ] {
            assert!(
                FeedRequest::parse(&pairs(&bad), None, 1).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    async fn adjust(shard: &Shard<Cairn>, n: i64) {
        use cairn_engine::cairn::CairnCommand;
        use cairn_inventory::{Actor, InventoryCommand};
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let command = CairnCommand::Inventory {
            actor: Actor::default(),
            command: InventoryCommand::Adjust {
                sku: "A".into(),
                location: "W".into(),
                delta: n,
                reason: "test".into(),
            },
        };
        shard.submit(
            command,
            None,
            Box::new(move |outcome| {
                let _ = sender.send(outcome.is_ok());
            }),
        );
        assert_eq!(receiver.await, Ok(true), "the adjustment is durable");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_that_falls_behind_goes_back_to_the_files_and_misses_nothing() {
        use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
        let config = EngineConfig {
            data_dir: std::path::PathBuf::from("/srv"),
            shard_count: Some(1),
            shard: ShardConfig {
                subscription_buffer_records: 16,
                clock: Arc::new(ManualClock::new(1_800_000_000_000)),
                ..ShardConfig::default()
            },
        };
        let storage = Arc::new(cairn_log::storage::MemStorage::new());
        let engine = Engine::<Cairn>::open_on(storage, config)
            .expect("engine opens")
            .0;
        let shard = &engine.shards()[0];
        adjust(shard, 1).await;
        let filter = Arc::new(Filter {
            domains: Domain::ALL.to_vec(),
            market: None,
        });
        let mut follower = Follower::new(shard, Position::at(0), filter);
        let wait = Duration::from_secs(10);
        let first = tokio::time::timeout(wait, follower.next()).await;
        let first = first.expect("in time").expect("open").expect("an event");
        assert_eq!(first.data["lsn"], 1);
        assert!(
            !follower.catching_up,
            "caught up: following the live stream"
        );
        // Far more records than the live buffer holds, while nobody reads.
        for n in 2..=100 {
            adjust(shard, n).await;
        }
        for lsn in 2..=100u64 {
            let event = tokio::time::timeout(wait, follower.next()).await;
            let event = event.expect("in time").expect("open").expect("an event");
            assert_eq!(event.data["lsn"], lsn, "no gap, no repeat");
            assert_eq!(event.data["delta"], lsn);
            let expected = Position::at(lsn + 1);
            assert_eq!(event.after, expected);
        }
        assert!(follower.fell_behind >= 1, "the live buffer overflowed");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), follower.next())
                .await
                .is_err(),
            "nothing more"
        );
        drop(follower);
        engine.shutdown();
    }

    #[test]
    fn permits_are_bounded_and_given_back() {
        static OPEN: AtomicUsize = AtomicUsize::new(0);
        let first = FeedPermit::acquire(&OPEN, 2).expect("first");
        let second = FeedPermit::acquire(&OPEN, 2).expect("second");
        assert!(FeedPermit::acquire(&OPEN, 2).is_none(), "the bound holds");
        drop(first);
        let third = FeedPermit::acquire(&OPEN, 2).expect("a slot was given back");
        drop((second, third));
        assert_eq!(OPEN.load(Ordering::Acquire), 0);
    }
}
