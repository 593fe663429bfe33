//! The matching operations over gRPC (`cairn.matching.v1.Matching`), and `OrderStream`, a
//! bidirectional stream for pipelined order entry by high-rate clients. Built exactly like the
//! inventory service of [`crate::grpc`], whose helpers it shares: bearer auth, [`status`] error
//! mapping (`cairn-error-code` and `cairn-error-details` metadata), the bounded-in-flight
//! `Pipe`, `observe` metrics and closing on shutdown.
//!
//! Both transports share one code path: a call is decoded into the HTTP layer's request body and
//! runs the same `*_op` function of `crate::matching` (role and account checks, validation,
//! idempotency key, engine command), so an order sent over HTTP and retried over gRPC with the
//! same `request_id` and content is the same request.

use crate::App;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::grpc::{MESSAGE_BYTES_MAX, Pending, Pipe, caller, observe, status, status_code};
use crate::matching::{
    self, AmendBody, BOOK_DEPTH_DEFAULT, MarketBody, OrderBody, OrderWritten, TRADES_LIMIT_DEFAULT,
};
use crate::session::{Caller, authenticate};
use cairn_matching::{LevelView, OrderView, Trade};
use cairn_types::ErrorCode;
use futures_util::stream::Stream;
use proto::matching_server::{Matching, MatchingServer};
use proto::order_stream_request::Request as Call;
use proto::order_stream_response::Reply;
use serde_json::Value;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status, Streaming};

/// The generated messages, server and client of `cairn.matching.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("cairn.matching.v1");
}

/// The matching service with its limits, to mount on a tonic server.
#[must_use]
pub fn service(app: App) -> MatchingServer<MatchingService> {
    MatchingServer::new(MatchingService { app }).max_decoding_message_size(MESSAGE_BYTES_MAX)
}

/// The implementation of `cairn.matching.v1.Matching`.
#[derive(Clone)]
pub struct MatchingService {
    app: App,
}

fn error_reply(error: &ApiError) -> proto::Error {
    proto::Error {
        code: error.code.to_string(),
        message: error.message.clone(),
        details_json: error.details.to_string(),
        grpc_code: status_code(error) as i32,
    }
}

// Requests in, the HTTP layer's bodies out.

fn market_body(request: proto::CreateMarketRequest) -> MarketBody {
    MarketBody {
        request_id: request.request_id,
        symbol: request.symbol,
        tick_size: request.tick_size,
        lot_size: request.lot_size,
        min_price: request.min_price,
        max_price: request.max_price,
        min_qty: request.min_qty,
        max_qty: request.max_qty,
    }
}

fn order_body(request: proto::PlaceOrderRequest) -> (String, OrderBody) {
    let body = OrderBody {
        request_id: request.request_id,
        account: request.account,
        side: request.side,
        order_type: request.r#type,
        price: request.price,
        qty: request.qty,
        time_in_force: request.time_in_force,
        post_only: request.post_only,
        stp: request.stp,
    };
    (request.symbol, body)
}

fn amend_body(request: proto::AmendOrderRequest) -> (String, u64, AmendBody) {
    let body = AmendBody {
        request_id: request.request_id,
        price: request.price,
        qty: request.qty,
    };
    (request.symbol, request.order_id, body)
}

// Results in, replies out.

fn order_reply(written: OrderWritten) -> proto::OrderReply {
    let reply = written.reply;
    proto::OrderReply {
        order_id: reply.order_id,
        status: reply.status.as_str().to_string(),
        filled_qty: reply.filled_qty,
        remaining_qty: reply.remaining_qty,
        reject_reason: reply.reject_reason.map(|r| r.as_str().to_string()),
        cancel_reason: reply.cancel_reason.map(|r| r.as_str().to_string()),
        trades: reply
            .trades
            .into_iter()
            .map(|trade| proto::Fill {
                trade_id: trade.trade_id,
                price: trade.price,
                qty: trade.qty,
                maker_order_id: trade.maker_order_id,
                taker_order_id: trade.taker_order_id,
            })
            .collect(),
        lsn: written.lsn,
    }
}

/// A field of an op's JSON result, decoded.
fn field<T: serde::de::DeserializeOwned>(value: &mut Value, name: &str) -> Result<T, ApiError> {
    serde_json::from_value(value[name].take())
        .map_err(|e| ApiError::internal(format!("the result's {name} does not decode: {e}")))
}

/// The JSON of [`matching::order_op`] (with `type` and `lsn`) as an order.
fn order(mut value: Value) -> Result<proto::Order, ApiError> {
    let lsn: u64 = field(&mut value, "lsn")?;
    if let Value::Object(map) = &mut value {
        map.remove("lsn");
        if let Some(order_type) = map.remove("type") {
            map.insert("order_type".into(), order_type);
        }
    }
    let view: OrderView = serde_json::from_value(value)
        .map_err(|e| ApiError::internal(format!("the order does not decode: {e}")))?;
    Ok(proto::Order {
        symbol: view.symbol,
        order_id: view.order_id,
        account: view.account,
        side: view.side.as_str().to_string(),
        r#type: view.order_type.as_str().to_string(),
        price: view.price,
        qty: view.qty,
        filled_qty: view.filled_qty,
        remaining_qty: view.remaining_qty,
        cancelled_qty: view.cancelled_qty,
        status: view.status.as_str().to_string(),
        time_in_force: view.time_in_force.as_str().to_string(),
        post_only: view.post_only,
        stp: view.stp.as_str().to_string(),
        reject_reason: view.reject_reason.map(|r| r.as_str().to_string()),
        cancel_reason: view.cancel_reason.map(|r| r.as_str().to_string()),
        trade_count: view.trade_count,
        created_at_ms: view.created_at_ms,
        updated_at_ms: view.updated_at_ms,
        lsn,
    })
}

fn levels(levels: Vec<LevelView>) -> Vec<proto::Level> {
    levels
        .into_iter()
        .map(|level| proto::Level {
            price: level.price,
            qty: level.qty,
            orders: level.orders,
        })
        .collect()
}

/// The JSON of [`matching::book_op`] as a book.
fn book(mut value: Value) -> Result<proto::Book, ApiError> {
    Ok(proto::Book {
        symbol: field(&mut value, "symbol")?,
        bids: levels(field(&mut value, "bids")?),
        asks: levels(field(&mut value, "asks")?),
        lsn: field(&mut value, "lsn")?,
    })
}

/// The JSON of [`matching::trades_op`] as trades.
fn trades(mut value: Value) -> Result<proto::TradesReply, ApiError> {
    let trades: Vec<Trade> = field(&mut value, "trades")?;
    Ok(proto::TradesReply {
        symbol: field(&mut value, "symbol")?,
        trades: trades
            .into_iter()
            .map(|trade| proto::Trade {
                trade_id: trade.trade_id,
                price: trade.price,
                qty: trade.qty,
                maker_order_id: trade.maker_order_id,
                taker_order_id: trade.taker_order_id,
                taker_side: trade.taker_side.as_str().to_string(),
                at_ms: trade.at_ms,
            })
            .collect(),
        lsn: field(&mut value, "lsn")?,
    })
}

/// The RPC name of a call, as a metrics label.
fn call_name(call: &Call) -> &'static str {
    match call {
        Call::CreateMarket(_) => "CreateMarket",
        Call::PlaceOrder(_) => "PlaceOrder",
        Call::CancelOrder(_) => "CancelOrder",
        Call::AmendOrder(_) => "AmendOrder",
        Call::GetOrder(_) => "GetOrder",
        Call::GetBook(_) => "GetBook",
        Call::GetTrades(_) => "GetTrades",
    }
}

/// Runs one call (unary or pipelined) for an authenticated caller.
async fn dispatch(app: &App, caller: &Caller, call: Call) -> Result<Reply, ApiError> {
    Ok(match call {
        Call::CreateMarket(request) => {
            let (symbol, lsn) =
                matching::create_market_op(app, caller, market_body(request)).await?;
            Reply::CreateMarket(proto::CreateMarketReply { symbol, lsn })
        }
        Call::PlaceOrder(request) => {
            let (symbol, body) = order_body(request);
            Reply::PlaceOrder(order_reply(
                matching::place_order_op(app, caller, &symbol, body).await?,
            ))
        }
        Call::CancelOrder(request) => Reply::CancelOrder(order_reply(
            matching::cancel_order_op(
                app,
                caller,
                &request.symbol,
                request.order_id,
                request.request_id,
            )
            .await?,
        )),
        Call::AmendOrder(request) => {
            let (symbol, order_id, body) = amend_body(request);
            Reply::AmendOrder(order_reply(
                matching::amend_order_op(app, caller, &symbol, order_id, body).await?,
            ))
        }
        Call::GetOrder(request) => Reply::GetOrder(order(
            matching::order_op(app, caller, &request.symbol, request.order_id).await?,
        )?),
        Call::GetBook(request) => {
            let depth = request
                .depth
                .map_or(BOOK_DEPTH_DEFAULT, |depth| depth as usize);
            Reply::GetBook(book(
                matching::book_op(app, caller, &request.symbol, depth).await?,
            )?)
        }
        Call::GetTrades(request) => {
            let after = request.after_trade_id.unwrap_or(0);
            let limit = request
                .limit
                .map_or(TRADES_LIMIT_DEFAULT, |limit| limit as usize);
            Reply::GetTrades(trades(
                matching::trades_op(app, caller, &request.symbol, after, limit).await?,
            )?)
        }
    })
}

impl MatchingService {
    /// A unary call: authenticate, run, unwrap the reply's variant.
    async fn unary<Req, Rep>(
        &self,
        request: Request<Req>,
        call: fn(Req) -> Call,
        reply: fn(Reply) -> Option<Rep>,
    ) -> Result<Response<Rep>, Status> {
        let started = Instant::now();
        let caller = caller(&self.app, &request);
        let call = call(request.into_inner());
        let method = call_name(&call);
        let outcome = match caller {
            Ok(caller) => dispatch(&self.app, &caller, call).await,
            Err(error) => Err(error),
        };
        let outcome = outcome.and_then(|outcome| {
            reply(outcome).ok_or_else(|| ApiError::internal("a call got another call's reply"))
        });
        observe(&self.app, "unary", method, outcome.as_ref().err(), started);
        outcome.map(Response::new).map_err(status)
    }
}

#[tonic::async_trait]
impl Matching for MatchingService {
    async fn create_market(
        &self,
        request: Request<proto::CreateMarketRequest>,
    ) -> Result<Response<proto::CreateMarketReply>, Status> {
        self.unary(request, Call::CreateMarket, |reply| match reply {
            Reply::CreateMarket(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn place_order(
        &self,
        request: Request<proto::PlaceOrderRequest>,
    ) -> Result<Response<proto::OrderReply>, Status> {
        self.unary(request, Call::PlaceOrder, |reply| match reply {
            Reply::PlaceOrder(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn cancel_order(
        &self,
        request: Request<proto::CancelOrderRequest>,
    ) -> Result<Response<proto::OrderReply>, Status> {
        self.unary(request, Call::CancelOrder, |reply| match reply {
            Reply::CancelOrder(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn amend_order(
        &self,
        request: Request<proto::AmendOrderRequest>,
    ) -> Result<Response<proto::OrderReply>, Status> {
        self.unary(request, Call::AmendOrder, |reply| match reply {
            Reply::AmendOrder(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        self.unary(request, Call::GetOrder, |reply| match reply {
            Reply::GetOrder(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn get_book(
        &self,
        request: Request<proto::GetBookRequest>,
    ) -> Result<Response<proto::Book>, Status> {
        self.unary(request, Call::GetBook, |reply| match reply {
            Reply::GetBook(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn get_trades(
        &self,
        request: Request<proto::GetTradesRequest>,
    ) -> Result<Response<proto::TradesReply>, Status> {
        self.unary(request, Call::GetTrades, |reply| match reply {
            Reply::GetTrades(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    type OrderStreamStream =
        Pin<Box<dyn Stream<Item = Result<proto::OrderStreamResponse, Status>> + Send + 'static>>;

    async fn order_stream(
        &self,
        request: Request<Streaming<proto::OrderStreamRequest>>,
    ) -> Result<Response<Self::OrderStreamStream>, Status> {
        // Refuse a bad token at once; the token is checked again for each request, so a token
        // revoked while the stream is open stops working at once.
        let token: Arc<str> = bearer(request.metadata().as_ref()).map_err(status)?.into();
        authenticate(&self.app, &token).map_err(status)?;
        let app = self.app.clone();
        let step = move |request| -> Pending<proto::OrderStreamResponse> {
            Box::pin(pipelined(app.clone(), Arc::clone(&token), request))
        };
        let pipe = Pipe::new(
            request.into_inner(),
            Box::new(step),
            Box::pin(self.app.closing.closed()),
        );
        Ok(Response::new(Box::pin(futures_util::stream::unfold(
            pipe,
            Pipe::next,
        ))))
    }
}

/// One pipelined request, answered with its tag.
async fn pipelined(
    app: App,
    token: Arc<str>,
    request: proto::OrderStreamRequest,
) -> proto::OrderStreamResponse {
    let started = Instant::now();
    let method = request.request.as_ref().map_or("none", call_name);
    let outcome = match (authenticate(&app, &token), request.request) {
        (Err(error), _) => Err(error),
        (Ok(_), None) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "an order stream request needs one of its operations",
        )),
        (Ok(caller), Some(call)) => dispatch(&app, &caller, call).await,
    };
    observe(&app, "pipeline", method, outcome.as_ref().err(), started);
    proto::OrderStreamResponse {
        tag: request.tag,
        reply: Some(outcome.unwrap_or_else(|error| Reply::Error(error_reply(&error)))),
    }
}

/// The gRPC services Cairn serves on one listener (inventory and matching), routed by the
/// service name in the request path (the tonic router is not compiled in).
#[derive(Clone)]
pub struct Services {
    inventory: crate::grpc::proto::inventory_server::InventoryServer<crate::grpc::InventoryService>,
    matching: MatchingServer<MatchingService>,
}

/// Every gRPC service with its limits, to serve on a tonic server.
#[must_use]
pub fn services(app: App) -> Services {
    Services {
        inventory: crate::grpc::service(app.clone()),
        matching: service(app),
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for Services
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both generated servers are always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        let name = <MatchingServer<MatchingService> as tonic::server::NamedService>::NAME;
        let is_matching = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('/'));
        if is_matching {
            self.matching.call(request)
        } else {
            self.inventory.call(request)
        }
    }
}
