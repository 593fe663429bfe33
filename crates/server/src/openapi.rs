//! The OpenAPI 3 document at `/openapi.json`, generated from the handlers' annotations and the
//! request types. Response shapes are described by the `*Doc` types below; a test compares them
//! with live responses so the document cannot drift from what the server sends.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An item: stock of one SKU at one location.
#[derive(Serialize, ToSchema)]
pub struct ItemDoc {
    sku: String,
    location: String,
    on_hand: i64,
    reserved: i64,
    safety_stock: i64,
    backorder_limit: i64,
    /// `on_hand - reserved - safety_stock`.
    available: i64,
    /// True while `on_hand < reserved`.
    oversold: bool,
}

/// Reply to an adjustment, count or policy change.
#[derive(Serialize, ToSchema)]
pub struct ItemReplyDoc {
    /// Log position of the change.
    lsn: u64,
    item: ItemDoc,
}

/// Where units of a reservation come from.
#[derive(Serialize, ToSchema)]
pub struct LineDoc {
    sku: String,
    location: String,
    qty: i64,
}

/// A reservation.
#[derive(Serialize, ToSchema)]
pub struct ReservationDoc {
    /// `"{shard}-{number}"`.
    reservation_id: String,
    order_id: String,
    /// `active`, `confirmed`, `released` or `expired`.
    state: String,
    expires_at_ms: u64,
    lines: Vec<LineDoc>,
    /// Log position (on writes only).
    lsn: Option<u64>,
}

/// A SKU across its locations.
#[derive(Serialize, ToSchema)]
pub struct ItemsDoc {
    sku: String,
    total_available: i64,
    locations: Vec<ItemDoc>,
    lsn: u64,
}

/// One entry of a SKU's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryEventDoc {
    lsn: u64,
    at_ms: u64,
    /// `adjusted`, `counted`, `policy_set`, `reserved`, `confirmed`, `released`, `expired`.
    #[serde(rename = "type")]
    kind: String,
    request_id: Option<String>,
    actor: Option<String>,
    location: Option<String>,
    qty: Option<i64>,
    reservation_id: Option<String>,
    reason: Option<String>,
}

/// A SKU's recent history (the last 256 entries; the full history is in the log).
#[derive(Serialize, ToSchema)]
pub struct HistoryDoc {
    sku: String,
    events: Vec<HistoryEventDoc>,
}

/// The body of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDoc {
    error: ErrorInnerDoc,
}

/// The error itself.
#[derive(Serialize, ToSchema)]
pub struct ErrorInnerDoc {
    /// Stable machine-readable code, e.g. `insufficient_stock`.
    code: String,
    message: String,
    /// Code-specific details, e.g. `lines` for `insufficient_stock`.
    details: serde_json::Value,
}

/// A token as created (the secret is shown once) or listed (never the secret).
#[derive(Serialize, ToSchema)]
pub struct TokenDoc {
    token: Option<String>,
    name: String,
    role: String,
    accounts: Option<Vec<String>>,
}

/// Reply to a market creation.
#[derive(Serialize, ToSchema)]
pub struct MarketCreatedDoc {
    symbol: String,
    lsn: u64,
}

/// A market's rules.
#[derive(Serialize, ToSchema)]
pub struct MarketSpecDoc {
    tick_size: i64,
    lot_size: i64,
    min_price: i64,
    max_price: i64,
    min_qty: i64,
    max_qty: i64,
    /// Closed orders kept queryable.
    closed_orders_max: u64,
    /// Trades kept queryable.
    trades_max: u64,
}

/// A market: rules and counters.
#[derive(Serialize, ToSchema)]
pub struct MarketDoc {
    symbol: String,
    spec: MarketSpecDoc,
    created_at_ms: u64,
    next_order_id: u64,
    next_trade_id: u64,
    /// The `seq` of the market's last event (feed events of the market carry consecutive `seq`).
    seq: u64,
    open_orders: u64,
    bid_levels: u64,
    ask_levels: u64,
    /// Highest bid price, when there is one.
    best_bid: Option<i64>,
    /// Lowest ask price, when there is one.
    best_ask: Option<i64>,
    /// Log position of the read (absent in lists).
    lsn: Option<u64>,
}

/// Every market.
#[derive(Serialize, ToSchema)]
pub struct MarketsDoc {
    markets: Vec<MarketDoc>,
}

/// A trade as an order's reply shows it.
#[derive(Serialize, ToSchema)]
pub struct TradeViewDoc {
    trade_id: u64,
    /// The maker's price.
    price: i64,
    qty: i64,
    maker_order_id: u64,
    taker_order_id: u64,
}

/// Reply to an order, cancel or amend.
#[derive(Serialize, ToSchema)]
pub struct OrderReplyDoc {
    order_id: u64,
    /// `new`, `partially_filled`, `filled`, `cancelled` or `rejected`.
    status: String,
    filled_qty: i64,
    /// What rests on the book.
    remaining_qty: i64,
    /// `fok_not_fillable`, `post_only_would_cross`, `no_liquidity` or `self_trade`.
    reject_reason: Option<String>,
    /// `requested`, `immediate_or_cancel`, `self_trade` or `fills_limit`.
    cancel_reason: Option<String>,
    trades: Vec<TradeViewDoc>,
    lsn: u64,
}

/// An order, open or recently closed.
#[derive(Serialize, ToSchema)]
pub struct OrderDoc {
    symbol: String,
    order_id: u64,
    account: String,
    side: String,
    #[serde(rename = "type")]
    order_type: String,
    price: Option<i64>,
    qty: i64,
    filled_qty: i64,
    remaining_qty: i64,
    cancelled_qty: i64,
    status: String,
    time_in_force: String,
    post_only: bool,
    stp: String,
    reject_reason: Option<String>,
    cancel_reason: Option<String>,
    trade_count: u64,
    created_at_ms: u64,
    updated_at_ms: u64,
    lsn: u64,
}

/// One price level.
#[derive(Serialize, ToSchema)]
pub struct LevelDoc {
    price: i64,
    /// Total resting quantity.
    qty: i64,
    /// Orders at the level.
    orders: u64,
}

/// L2 depth, best first.
#[derive(Serialize, ToSchema)]
pub struct BookDoc {
    symbol: String,
    bids: Vec<LevelDoc>,
    asks: Vec<LevelDoc>,
    /// The `seq` of the market's last event included: apply this market's feed events with a
    /// larger `seq` to keep the book current (a gap in `seq` means take the book again).
    seq: u64,
    /// Apply feed events of this market's shard after this LSN to keep the book current.
    lsn: u64,
}

/// A trade in the history.
#[derive(Serialize, ToSchema)]
pub struct TradeDoc {
    trade_id: u64,
    price: i64,
    qty: i64,
    maker_order_id: u64,
    taker_order_id: u64,
    /// `buy` or `sell`.
    taker_side: String,
    at_ms: u64,
}

/// Trades in execution order.
#[derive(Serialize, ToSchema)]
pub struct TradesDoc {
    symbol: String,
    trades: Vec<TradeDoc>,
    lsn: u64,
}

/// Reply to `POST /v1/datasets`.
#[derive(Serialize, ToSchema)]
pub struct DatasetCreatedDoc {
    name: String,
    lsn: u64,
}

/// Reply to `POST /v1/drafts` and `POST /v1/drafts/{id}/changes`.
#[derive(Serialize, ToSchema)]
pub struct DraftCreatedDoc {
    draft_id: u64,
    /// Distinct changes the draft now holds.
    changes_total: u64,
    lsn: u64,
}

/// A draft.
#[derive(Serialize, ToSchema)]
pub struct DraftDoc {
    draft_id: u64,
    note: String,
    author: String,
    created_at_ms: u64,
    changes_total: u64,
    datasets: Vec<String>,
    /// Its release, once released.
    release_id: Option<u64>,
    lsn: u64,
}

/// One change of a draft against the value live for everyone.
#[derive(Serialize, ToSchema)]
pub struct DiffEntryDoc {
    dataset: String,
    key: String,
    #[schema(value_type = Option<Object>)]
    before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    after: Option<serde_json::Value>,
}

/// A page of a draft's diff, and the guardrail violations of the whole draft.
#[derive(Serialize, ToSchema)]
pub struct DiffDoc {
    draft_id: u64,
    changes: Vec<DiffEntryDoc>,
    changes_total: u64,
    /// `{dataset, key}` to pass as `after_dataset`, `after_key` for the next page.
    #[schema(value_type = Option<Object>)]
    next_after: Option<serde_json::Value>,
    /// `{dataset, key, rule, message}` each.
    #[schema(value_type = Vec<Object>)]
    violations: Vec<serde_json::Value>,
    violations_total: u64,
    lsn: u64,
}

/// Reply to a release, promote, abort or rollback.
#[derive(Serialize, ToSchema)]
pub struct ReleaseReplyDoc {
    release_id: u64,
    /// `scheduled`, `gray`, `live`, `superseded`, `aborted` or `rolled_back`.
    state: String,
    lsn: u64,
}

/// A release.
#[derive(Serialize, ToSchema)]
pub struct ReleaseDoc {
    release_id: u64,
    state: String,
    /// `draft`, `rollback` or `revert`.
    kind: String,
    draft_id: Option<u64>,
    /// For a rollback or revert: the release whose content it restores.
    restores: Option<u64>,
    datasets: Vec<String>,
    author: String,
    request_id: Option<String>,
    note: String,
    created_at_ms: u64,
    go_live_at_ms: Option<u64>,
    revert_at_ms: Option<u64>,
    live_at_ms: Option<u64>,
    ended_at_ms: Option<u64>,
    /// `{percent, users, channels, regions, segments}`.
    #[schema(value_type = Option<Object>)]
    gray: Option<serde_json::Value>,
    force_reason: Option<String>,
    forced_violations_total: u64,
    changes_total: u64,
    content_retained: bool,
    pinned: bool,
}

/// Releases, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ReleasesDoc {
    releases: Vec<ReleaseDoc>,
    lsn: u64,
}

/// A value as served.
#[derive(Serialize, ToSchema)]
pub struct KeyValueDoc {
    #[schema(value_type = Object)]
    value: serde_json::Value,
    /// The release that served it.
    release_id: Option<u64>,
    /// The shard-0 LSN of the view that answered.
    lsn: u64,
}

/// One value of a batch read.
#[derive(Serialize, ToSchema)]
pub struct ReadValueDoc {
    dataset: String,
    key: String,
    /// `null` when the key is not in the served release.
    #[schema(value_type = Option<Object>)]
    value: Option<serde_json::Value>,
    release_id: Option<u64>,
}

/// A batch read, all from one view.
#[derive(Serialize, ToSchema)]
pub struct ReadsDoc {
    values: Vec<ReadValueDoc>,
    lsn: u64,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Cairn", description = "Event-sourced consistency engine: inventory, matching, publishing."),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
        crate::routes::openapi,
        crate::routes::create_token,
        crate::routes::list_tokens,
        crate::routes::revoke_token,
        crate::inventory::adjust,
        crate::inventory::count,
        crate::inventory::policy,
        crate::inventory::reserve,
        crate::inventory::get_reservation,
        crate::inventory::confirm,
        crate::inventory::release,
        crate::inventory::get_item,
        crate::inventory::history,
        crate::matching::create_market,
        crate::matching::list_markets,
        crate::matching::get_market,
        crate::matching::place_order,
        crate::matching::get_order,
        crate::matching::cancel_order,
        crate::matching::amend_order,
        crate::matching::book,
        crate::matching::trades,
        crate::feed::events,
        crate::publishing::create_dataset,
        crate::publishing::create_draft,
        crate::publishing::append_to_draft,
        crate::publishing::get_draft,
        crate::publishing::draft_diff,
        crate::publishing::create_release,
        crate::publishing::list_releases,
        crate::publishing::promote,
        crate::publishing::abort,
        crate::publishing::rollback,
        crate::publishing::get_key,
        crate::publishing::batch_read,
    ),
    components(schemas(ItemDoc, ItemReplyDoc, LineDoc, ReservationDoc, ItemsDoc, HistoryDoc, HistoryEventDoc, ErrorDoc, TokenDoc, MarketCreatedDoc, MarketSpecDoc, MarketDoc, MarketsDoc, TradeViewDoc, OrderReplyDoc, OrderDoc, LevelDoc, BookDoc, TradeDoc, TradesDoc, DatasetCreatedDoc, DraftCreatedDoc, DraftDoc, DiffEntryDoc, DiffDoc, ReleaseReplyDoc, ReleaseDoc, ReleasesDoc, KeyValueDoc, ReadValueDoc, ReadsDoc)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The document as JSON.
#[must_use]
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|error| {
        tracing::error!(%error, "the OpenAPI document does not serialize");
        serde_json::json!({})
    })
}
