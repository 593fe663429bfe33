//! The matching endpoints of API.md: markets, orders, cancels, amends, the book and trades.
//!
//! A market lives on the shard its symbol hashes to; every order of it is decided there, in
//! arrival order, and answered once its event is durable. Like inventory, each operation is a
//! transport-independent `*_op` function (role and account checks, validation, idempotency key,
//! engine command) that the HTTP handlers here wrap.

use crate::App;
use crate::body::{ApiQuery, JsonBody};
use crate::error::{ApiError, bad};
use crate::session::{Caller, Role, read, request_key, submit};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_engine::RequestKey;
use cairn_engine::cairn::{Cairn, CairnCommand, CairnReply};
use cairn_matching::{
    Actor, MatchingCommand, MatchingReply, OrderReply, OrderType, Side, StpMode, TimeInForce,
};
use cairn_types::{ErrorCode, ShardId, shard_for_key};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Depth levels a book read returns when `depth` is not given.
pub const BOOK_DEPTH_DEFAULT: usize = 20;
/// Trades a trades read returns when `limit` is not given.
pub const TRADES_LIMIT_DEFAULT: usize = 100;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/markets", post(create_market).get(list_markets))
        .route("/v1/markets/{symbol}", get(get_market))
        .route("/v1/markets/{symbol}/orders", post(place_order))
        .route(
            "/v1/markets/{symbol}/orders/{order_id}",
            get(get_order).delete(cancel_order).patch(amend_order),
        )
        .route("/v1/markets/{symbol}/book", get(book))
        .route("/v1/markets/{symbol}/trades", get(trades))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct MarketBody {
    pub(crate) request_id: String,
    pub(crate) symbol: String,
    pub(crate) tick_size: i64,
    pub(crate) lot_size: i64,
    pub(crate) min_price: Option<i64>,
    pub(crate) max_price: Option<i64>,
    pub(crate) min_qty: Option<i64>,
    pub(crate) max_qty: Option<i64>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct OrderBody {
    pub(crate) request_id: String,
    pub(crate) account: String,
    /// `buy` or `sell`.
    pub(crate) side: String,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    pub(crate) order_type: String,
    pub(crate) price: Option<i64>,
    pub(crate) qty: i64,
    /// `gtc`, `ioc` or `fok`.
    pub(crate) time_in_force: String,
    pub(crate) post_only: Option<bool>,
    /// Self-trade prevention: `cancel_incoming` (default), `cancel_resting`, `cancel_both`.
    pub(crate) stp: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct AmendBody {
    pub(crate) request_id: String,
    /// The new limit price.
    pub(crate) price: Option<i64>,
    /// The new total quantity (including what already filled).
    pub(crate) qty: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct BookQuery {
    /// Levels per side (default 20, at most 1000).
    depth: Option<usize>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct TradesQuery {
    /// Only trades with a larger id (default 0: from the oldest retained).
    after_trade_id: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct CancelQuery {
    /// Idempotency key of the cancel (optional: a repeated cancel is 409 `order_not_open`).
    request_id: Option<String>,
}

fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    cairn_inventory::validate::identifier(field, value).map_err(bad)
}

fn amount(field: &str, value: i64) -> Result<(), ApiError> {
    if value <= 0 || value > cairn_matching::AMOUNT_MAX {
        return Err(bad(format!("{field} must be in 1..=2^53, got {value}")));
    }
    Ok(())
}

/// The shard that holds a market.
pub(crate) fn market_shard(app: &App, symbol: &str) -> ShardId {
    shard_for_key(symbol.as_bytes(), app.engine.shard_count())
}

fn actor(caller: &Caller, request_id: Option<&str>) -> Actor {
    Actor {
        name: caller.name.clone(),
        request_id: request_id.map(str::to_string),
    }
}

/// A client token with `accounts` trades only for those.
fn check_account(caller: &Caller, account: &str) -> Result<(), ApiError> {
    if caller.role != Role::Client {
        return Ok(());
    }
    match &caller.accounts {
        Some(accounts) if !accounts.iter().any(|a| a == account) => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("this token may not trade for account {account}"),
        )),
        _ => Ok(()),
    }
}

fn parse_side(value: &str) -> Result<Side, ApiError> {
    match value {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(bad(format!("side must be buy or sell, got '{other}'"))),
    }
}

fn parse_type(value: &str) -> Result<OrderType, ApiError> {
    match value {
        "limit" => Ok(OrderType::Limit),
        "market" => Ok(OrderType::Market),
        other => Err(bad(format!("type must be limit or market, got '{other}'"))),
    }
}

fn parse_tif(value: &str) -> Result<TimeInForce, ApiError> {
    match value {
        "gtc" => Ok(TimeInForce::Gtc),
        "ioc" => Ok(TimeInForce::Ioc),
        "fok" => Ok(TimeInForce::Fok),
        other => Err(bad(format!(
            "time_in_force must be gtc, ioc or fok, got '{other}'"
        ))),
    }
}

fn parse_stp(value: &str) -> Result<StpMode, ApiError> {
    match value {
        "cancel_incoming" => Ok(StpMode::CancelIncoming),
        "cancel_resting" => Ok(StpMode::CancelResting),
        "cancel_both" => Ok(StpMode::CancelBoth),
        other => Err(bad(format!(
            "stp must be cancel_incoming, cancel_resting or cancel_both, got '{other}'"
        ))),
    }
}

/// An order command's durable outcome.
pub(crate) struct OrderWritten {
    pub(crate) reply: OrderReply,
    pub(crate) lsn: u64,
}

async fn order_command(
    app: &App,
    symbol: &str,
    key: Option<RequestKey>,
    command: CairnCommand,
) -> Result<OrderWritten, ApiError> {
    let committed = submit(app, market_shard(app, symbol), command, key).await?;
    match committed.reply {
        CairnReply::Matching(MatchingReply::Order(reply)) => Ok(OrderWritten {
            reply,
            lsn: committed.lsn.0,
        }),
        _ => Err(ApiError::internal("an order command got another reply")),
    }
}

/// Opens a market (operator).
pub(crate) async fn create_market_op(
    app: &App,
    caller: &Caller,
    body: MarketBody,
) -> Result<(String, u64), ApiError> {
    caller.require_operator()?;
    let key = request_key(&body.request_id, "market", &body)?;
    identifier("symbol", &body.symbol)?;
    amount("tick_size", body.tick_size)?;
    amount("lot_size", body.lot_size)?;
    for (field, value) in [
        ("min_price", body.min_price),
        ("max_price", body.max_price),
        ("min_qty", body.min_qty),
        ("max_qty", body.max_qty),
    ] {
        if let Some(value) = value {
            amount(field, value)?;
        }
    }
    let command = CairnCommand::Matching {
        actor: actor(caller, Some(&body.request_id)),
        command: MatchingCommand::CreateMarket {
            symbol: body.symbol.clone(),
            tick_size: body.tick_size,
            lot_size: body.lot_size,
            min_price: body.min_price,
            max_price: body.max_price,
            min_qty: body.min_qty,
            max_qty: body.max_qty,
        },
    };
    let committed = submit(app, market_shard(app, &body.symbol), command, Some(key)).await?;
    Ok((body.symbol, committed.lsn.0))
}

/// Places an order (client; a client token with accounts only for those).
pub(crate) async fn place_order_op(
    app: &App,
    caller: &Caller,
    symbol: &str,
    body: OrderBody,
) -> Result<OrderWritten, ApiError> {
    caller.require_client()?;
    identifier("symbol", symbol)?;
    let key = request_key(&body.request_id, &format!("order:{symbol}"), &body)?;
    identifier("account", &body.account)?;
    check_account(caller, &body.account)?;
    let side = parse_side(&body.side)?;
    let order_type = parse_type(&body.order_type)?;
    let time_in_force = parse_tif(&body.time_in_force)?;
    let stp = body.stp.as_deref().map(parse_stp).transpose()?;
    amount("qty", body.qty)?;
    if let Some(price) = body.price {
        amount("price", price)?;
    }
    let command = CairnCommand::Matching {
        actor: actor(caller, Some(&body.request_id)),
        command: MatchingCommand::PlaceOrder {
            symbol: symbol.to_string(),
            account: body.account,
            side,
            order_type,
            price: body.price,
            qty: body.qty,
            time_in_force,
            post_only: body.post_only.unwrap_or(false),
            stp,
        },
    };
    order_command(app, symbol, Some(key), command).await
}

/// The account of an order, for the account check of cancels and amends.
async fn order_account(app: &App, symbol: &str, order_id: u64) -> Result<String, ApiError> {
    let lookup = symbol.to_string();
    let found = read(app, market_shard(app, symbol), move |state: &Cairn, _| {
        state
            .matching
            .market(&lookup)
            .map(|_| state.matching.order(&lookup, order_id).map(|o| o.account))
    })
    .await?;
    match found {
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("market {symbol} not found"),
        )),
        Some(None) => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("order {order_id} not found in {symbol}"),
        )),
        Some(Some(account)) => Ok(account),
    }
}

/// Cancels an order (client; a client token with accounts only theirs).
pub(crate) async fn cancel_order_op(
    app: &App,
    caller: &Caller,
    symbol: &str,
    order_id: u64,
    request_id: Option<String>,
) -> Result<OrderWritten, ApiError> {
    caller.require_client()?;
    identifier("symbol", symbol)?;
    let key = match &request_id {
        Some(id) => Some(request_key(
            id,
            &format!("cancel:{symbol}:{order_id}"),
            &(),
        )?),
        None => None,
    };
    if caller.role == Role::Client && caller.accounts.is_some() {
        let account = order_account(app, symbol, order_id).await?;
        check_account(caller, &account)?;
    }
    let command = CairnCommand::Matching {
        actor: actor(caller, request_id.as_deref()),
        command: MatchingCommand::CancelOrder {
            symbol: symbol.to_string(),
            order_id,
        },
    };
    order_command(app, symbol, key, command).await
}

/// Amends an order's price and/or total quantity (client; accounts as for cancels).
pub(crate) async fn amend_order_op(
    app: &App,
    caller: &Caller,
    symbol: &str,
    order_id: u64,
    body: AmendBody,
) -> Result<OrderWritten, ApiError> {
    caller.require_client()?;
    identifier("symbol", symbol)?;
    let key = request_key(
        &body.request_id,
        &format!("amend:{symbol}:{order_id}"),
        &body,
    )?;
    if body.price.is_none() && body.qty.is_none() {
        return Err(bad("an amend needs a price, a qty or both"));
    }
    for (field, value) in [("price", body.price), ("qty", body.qty)] {
        if let Some(value) = value {
            amount(field, value)?;
        }
    }
    if caller.role == Role::Client && caller.accounts.is_some() {
        let account = order_account(app, symbol, order_id).await?;
        check_account(caller, &account)?;
    }
    let command = CairnCommand::Matching {
        actor: actor(caller, Some(&body.request_id)),
        command: MatchingCommand::AmendOrder {
            symbol: symbol.to_string(),
            order_id,
            price: body.price,
            qty: body.qty,
        },
    };
    order_command(app, symbol, Some(key), command).await
}

fn market_not_found(symbol: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("market {symbol} not found"))
}

/// One order, open or recently closed (viewer).
pub(crate) async fn order_op(
    app: &App,
    caller: &Caller,
    symbol: &str,
    order_id: u64,
) -> Result<Value, ApiError> {
    caller.require_viewer()?;
    identifier("symbol", symbol)?;
    let lookup = symbol.to_string();
    let found = read(app, market_shard(app, symbol), move |state: &Cairn, lsn| {
        state
            .matching
            .market(&lookup)
            .map(|_| (state.matching.order(&lookup, order_id), lsn))
    })
    .await?;
    let (order, lsn) = found.ok_or_else(|| market_not_found(symbol))?;
    let order = order.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("order {order_id} not found in {symbol} (never placed, or past retention)"),
        )
    })?;
    let mut value = serde_json::to_value(&order)
        .map_err(|e| ApiError::internal(format!("order does not encode: {e}")))?;
    if let Value::Object(map) = &mut value {
        // API.md names it `type`, as in the order body.
        if let Some(order_type) = map.remove("order_type") {
            map.insert("type".into(), order_type);
        }
    }
    value["lsn"] = json!(lsn.0);
    Ok(value)
}

/// L2 depth, best first (viewer).
pub(crate) async fn book_op(
    app: &App,
    caller: &Caller,
    symbol: &str,
    depth: usize,
) -> Result<Value, ApiError> {
    caller.require_viewer()?;
    identifier("symbol", symbol)?;
    if depth == 0 || depth > cairn_matching::DEPTH_LEVELS_MAX {
        return Err(bad(format!(
            "depth must be in 1..={}, got {depth}",
            cairn_matching::DEPTH_LEVELS_MAX
        )));
    }
    let lookup = symbol.to_string();
    let found = read(app, market_shard(app, symbol), move |state: &Cairn, lsn| {
        let seq = state.matching.market_seq(&lookup)?;
        state.matching.depth(&lookup, depth).map(|d| (d, seq, lsn))
    })
    .await?;
    let (depth, seq, lsn) = found.ok_or_else(|| market_not_found(symbol))?;
    // `seq` is the market's last event in this depth: a consumer applies feed events of the
    // market with a larger `seq` on top of it.
    Ok(json!({"symbol": symbol, "bids": depth.bids, "asks": depth.asks, "seq": seq, "lsn": lsn.0}))
}

/// Trades after a trade id, in execution order (viewer).
pub(crate) async fn trades_op(
    app: &App,
    caller: &Caller,
    symbol: &str,
    after_trade_id: u64,
    limit: usize,
) -> Result<Value, ApiError> {
    caller.require_viewer()?;
    identifier("symbol", symbol)?;
    if limit == 0 || limit > cairn_matching::QUERY_TRADES_MAX {
        return Err(bad(format!(
            "limit must be in 1..={}, got {limit}",
            cairn_matching::QUERY_TRADES_MAX
        )));
    }
    let lookup = symbol.to_string();
    let found = read(app, market_shard(app, symbol), move |state: &Cairn, lsn| {
        state
            .matching
            .trades(&lookup, after_trade_id, limit)
            .map(|t| (t, lsn))
    })
    .await?;
    let (trades, lsn) = found.ok_or_else(|| market_not_found(symbol))?;
    Ok(json!({"symbol": symbol, "trades": trades, "lsn": lsn.0}))
}

/// One market's rules and counters (viewer).
pub(crate) async fn market_op(app: &App, caller: &Caller, symbol: &str) -> Result<Value, ApiError> {
    caller.require_viewer()?;
    identifier("symbol", symbol)?;
    let lookup = symbol.to_string();
    let found = read(app, market_shard(app, symbol), move |state: &Cairn, lsn| {
        state.matching.market(&lookup).map(|m| (m, lsn))
    })
    .await?;
    let (market, lsn) = found.ok_or_else(|| market_not_found(symbol))?;
    let mut value = serde_json::to_value(&market)
        .map_err(|e| ApiError::internal(format!("market does not encode: {e}")))?;
    value["lsn"] = json!(lsn.0);
    Ok(value)
}

fn order_json(written: &OrderWritten) -> Value {
    let reply = &written.reply;
    json!({
        "order_id": reply.order_id,
        "status": reply.status,
        "filled_qty": reply.filled_qty,
        "remaining_qty": reply.remaining_qty,
        "reject_reason": reply.reject_reason,
        "cancel_reason": reply.cancel_reason,
        "trades": reply.trades,
        "lsn": written.lsn,
    })
}

#[utoipa::path(post, path = "/v1/markets", tag = "matching", request_body = MarketBody, responses((status = 201, description = "created", body = crate::openapi::MarketCreatedDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc), (status = 403, description = "role not allowed", body = crate::openapi::ErrorDoc), (status = 409, description = "already_exists", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn create_market(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<MarketBody>,
) -> Result<Response, ApiError> {
    let (symbol, lsn) = create_market_op(&app, &caller, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"symbol": symbol, "lsn": lsn})),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/markets", tag = "matching", responses((status = 200, description = "every market, by symbol", body = crate::openapi::MarketsDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn list_markets(
    State(app): State<App>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_viewer()?;
    let mut markets = Vec::new();
    for shard in app.engine.shards() {
        let found = read(&app, shard.id(), |state: &Cairn, _| {
            state.matching.markets()
        })
        .await?;
        markets.extend(found);
    }
    markets.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(Json(json!({"markets": markets})).into_response())
}

#[utoipa::path(get, path = "/v1/markets/{symbol}", tag = "matching", params(("symbol" = String, Path)), responses((status = 200, description = "the market", body = crate::openapi::MarketDoc), (status = 404, description = "unknown market", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn get_market(
    State(app): State<App>,
    caller: Caller,
    Path(symbol): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(market_op(&app, &caller, &symbol).await?).into_response())
}

#[utoipa::path(post, path = "/v1/markets/{symbol}/orders", tag = "matching", params(("symbol" = String, Path)), request_body = OrderBody, responses((status = 201, description = "accepted (also a market-outcome rejection: status rejected with reject_reason)", body = crate::openapi::OrderReplyDoc), (status = 400, description = "invalid input (tick, lot, bounds, type/time-in-force combination)", body = crate::openapi::ErrorDoc), (status = 401, description = "no or unknown token", body = crate::openapi::ErrorDoc), (status = 403, description = "role or account not allowed", body = crate::openapi::ErrorDoc), (status = 404, description = "unknown market", body = crate::openapi::ErrorDoc), (status = 409, description = "a bound is reached", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn place_order(
    State(app): State<App>,
    caller: Caller,
    Path(symbol): Path<String>,
    JsonBody(body): JsonBody<OrderBody>,
) -> Result<Response, ApiError> {
    let written = place_order_op(&app, &caller, &symbol, body).await?;
    Ok((StatusCode::CREATED, Json(order_json(&written))).into_response())
}

fn parse_order_id(value: &str) -> Result<u64, ApiError> {
    value.parse::<u64>().map_err(|_| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("order {value} not found (order ids are positive integers)"),
        )
    })
}

#[utoipa::path(delete, path = "/v1/markets/{symbol}/orders/{order_id}", tag = "matching", params(("symbol" = String, Path), ("order_id" = u64, Path), CancelQuery), responses((status = 200, description = "cancelled", body = crate::openapi::OrderReplyDoc), (status = 404, description = "unknown market or order", body = crate::openapi::ErrorDoc), (status = 409, description = "order_not_open", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn cancel_order(
    State(app): State<App>,
    caller: Caller,
    Path((symbol, order_id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    let written = cancel_order_op(&app, &caller, &symbol, order_id, query.request_id).await?;
    Ok(Json(order_json(&written)).into_response())
}

#[utoipa::path(patch, path = "/v1/markets/{symbol}/orders/{order_id}", tag = "matching", params(("symbol" = String, Path), ("order_id" = u64, Path)), request_body = AmendBody, responses((status = 200, description = "amended", body = crate::openapi::OrderReplyDoc), (status = 400, description = "invalid input", body = crate::openapi::ErrorDoc), (status = 404, description = "unknown market or order", body = crate::openapi::ErrorDoc), (status = 409, description = "order_not_open or post_only_would_cross", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn amend_order(
    State(app): State<App>,
    caller: Caller,
    Path((symbol, order_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<AmendBody>,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    let written = amend_order_op(&app, &caller, &symbol, order_id, body).await?;
    Ok(Json(order_json(&written)).into_response())
}

#[utoipa::path(get, path = "/v1/markets/{symbol}/orders/{order_id}", tag = "matching", params(("symbol" = String, Path), ("order_id" = u64, Path)), responses((status = 200, description = "the order", body = crate::openapi::OrderDoc), (status = 404, description = "unknown market or order", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn get_order(
    State(app): State<App>,
    caller: Caller,
    Path((symbol, order_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    Ok(Json(order_op(&app, &caller, &symbol, order_id).await?).into_response())
}

#[utoipa::path(get, path = "/v1/markets/{symbol}/book", tag = "matching", params(("symbol" = String, Path), BookQuery), responses((status = 200, description = "L2 depth, best first", body = crate::openapi::BookDoc), (status = 400, description = "bad depth", body = crate::openapi::ErrorDoc), (status = 404, description = "unknown market", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn book(
    State(app): State<App>,
    caller: Caller,
    Path(symbol): Path<String>,
    ApiQuery(query): ApiQuery<BookQuery>,
) -> Result<Response, ApiError> {
    let depth = query.depth.unwrap_or(BOOK_DEPTH_DEFAULT);
    Ok(Json(book_op(&app, &caller, &symbol, depth).await?).into_response())
}

#[utoipa::path(get, path = "/v1/markets/{symbol}/trades", tag = "matching", params(("symbol" = String, Path), TradesQuery), responses((status = 200, description = "trades in execution order", body = crate::openapi::TradesDoc), (status = 400, description = "bad limit", body = crate::openapi::ErrorDoc), (status = 404, description = "unknown market", body = crate::openapi::ErrorDoc)), security(("bearer" = [])))]
pub(crate) async fn trades(
    State(app): State<App>,
    caller: Caller,
    Path(symbol): Path<String>,
    ApiQuery(query): ApiQuery<TradesQuery>,
) -> Result<Response, ApiError> {
    let after = query.after_trade_id.unwrap_or(0);
    let limit = query.limit.unwrap_or(TRADES_LIMIT_DEFAULT);
    Ok(Json(trades_op(&app, &caller, &symbol, after, limit).await?).into_response())
}
