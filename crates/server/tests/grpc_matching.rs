//! End-to-end over real gRPC (HTTP/2) against a server started in the test, through the generated
//! client of `cairn.matching.v1`: every RPC, the error codes and their metadata, auth, roles and
//! accounts, idempotent retries (also across HTTP and gRPC), and the `OrderStream` pipeline (500
//! pipelined orders from several accounts whose trades and final book are consistent, every tag
//! answered once, shutdown). Every wait is bounded.

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::MemStorage;
use cairn_server::grpc_matching::proto::matching_client::MatchingClient;
use cairn_server::grpc_matching::proto::order_stream_request::Request as Call;
use cairn_server::grpc_matching::proto::order_stream_response::Reply;
use cairn_server::grpc_matching::proto::{
    AmendOrderRequest, CancelOrderRequest, CreateMarketRequest, GetBookRequest, GetOrderRequest,
    GetTradesRequest, OrderStreamRequest, OrderStreamResponse, PlaceOrderRequest,
};
use cairn_server::session::Role;
use cairn_server::{AdminToken, App};
use futures_util::StreamExt as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const TOKEN: &str = "test-admin-token";
const WAIT: Duration = Duration::from_secs(20);

/// Waits for `future`, failing the test after [`WAIT`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

struct Server {
    app: App,
    client: MatchingClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(shards: u16) -> Server {
        let clock = ManualClock::new(1_800_000_000_000);
        let shard = ShardConfig {
            clock: Arc::new(clock),
            ..ShardConfig::default()
        };
        let config = EngineConfig {
            data_dir: PathBuf::from("/srv"),
            shard_count: Some(shards),
            shard,
        };
        let engine = Arc::new(
            Engine::<Cairn>::open_on(Arc::new(MemStorage::new()), config)
                .expect("engine opens")
                .0,
        );
        let app = App::new(engine, Arc::new(AdminToken::from_secret(TOKEN)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(cairn_server::run_grpc(listener, app.clone(), async move {
            let _ = stopped.await;
        }));
        let channel = bounded(
            "connect",
            tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .expect("endpoint")
                .connect(),
        )
        .await
        .expect("connects");
        Server {
            app,
            client: MatchingClient::new(channel),
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            bounded("shutdown", task)
                .await
                .expect("server task")
                .expect("server ran");
        }
    }

    fn client(&self) -> MatchingClient<Channel> {
        self.client.clone()
    }

    async fn market(&self, symbol: &str, tick: i64, lot: i64) {
        let request = market(&format!("m-{symbol}"), symbol, tick, lot);
        bounded(
            "market",
            self.client().create_market(authed(TOKEN, request)),
        )
        .await
        .expect("market created");
    }

    fn token(&self, name: &str, role: Role, accounts: Option<Vec<String>>) -> String {
        self.app
            .admin
            .tokens
            .create(name, role, accounts)
            .expect("token created")
    }
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

fn error_code(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("cairn-error-code")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn market(request_id: &str, symbol: &str, tick: i64, lot: i64) -> CreateMarketRequest {
    CreateMarketRequest {
        request_id: request_id.into(),
        symbol: symbol.into(),
        tick_size: tick,
        lot_size: lot,
        ..CreateMarketRequest::default()
    }
}

fn limit(
    request_id: &str,
    symbol: &str,
    account: &str,
    side: &str,
    price: i64,
    qty: i64,
) -> PlaceOrderRequest {
    PlaceOrderRequest {
        request_id: request_id.into(),
        symbol: symbol.into(),
        account: account.into(),
        side: side.into(),
        r#type: "limit".into(),
        price: Some(price),
        qty,
        time_in_force: "gtc".into(),
        post_only: None,
        stp: None,
    }
}

fn get_order(symbol: &str, order_id: u64) -> GetOrderRequest {
    GetOrderRequest {
        symbol: symbol.into(),
        order_id,
    }
}

fn cancel(symbol: &str, order_id: u64, request_id: Option<&str>) -> CancelOrderRequest {
    CancelOrderRequest {
        symbol: symbol.into(),
        order_id,
        request_id: request_id.map(Into::into),
    }
}

fn book(symbol: &str) -> GetBookRequest {
    GetBookRequest {
        symbol: symbol.into(),
        depth: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_follows_the_contract() {
    let server = Server::start(2).await;
    let mut client = server.client();
    let created = bounded(
        "create_market",
        client.create_market(authed(TOKEN, market("m1", "BTC-USD", 5, 1))),
    )
    .await
    .expect("created")
    .into_inner();
    assert_eq!(created.symbol, "BTC-USD");
    assert!(created.lsn > 0);

    let sell = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("o1", "BTC-USD", "a", "sell", 100, 5))),
    )
    .await
    .expect("placed")
    .into_inner();
    assert_eq!(
        (sell.status.as_str(), sell.filled_qty, sell.remaining_qty),
        ("new", 0, 5)
    );
    assert!(sell.trades.is_empty());
    let buy = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("o2", "BTC-USD", "b", "buy", 105, 2))),
    )
    .await
    .expect("placed")
    .into_inner();
    assert_eq!((buy.status.as_str(), buy.filled_qty), ("filled", 2));
    assert_eq!(buy.trades.len(), 1);
    let fill = &buy.trades[0];
    assert_eq!(
        (
            fill.price,
            fill.qty,
            fill.maker_order_id,
            fill.taker_order_id
        ),
        (100, 2, sell.order_id, buy.order_id),
        "the maker's price"
    );
    assert!(buy.lsn > sell.lsn);

    let order = bounded(
        "get_order",
        client.get_order(authed(TOKEN, get_order("BTC-USD", sell.order_id))),
    )
    .await
    .expect("order")
    .into_inner();
    assert_eq!(order.symbol, "BTC-USD");
    assert_eq!(order.account, "a");
    assert_eq!(
        (order.side.as_str(), order.r#type.as_str()),
        ("sell", "limit")
    );
    assert_eq!(order.price, Some(100));
    assert_eq!(
        (
            order.qty,
            order.filled_qty,
            order.remaining_qty,
            order.cancelled_qty
        ),
        (5, 2, 3, 0)
    );
    assert_eq!(order.status, "partially_filled");
    assert_eq!(order.time_in_force, "gtc");
    assert_eq!(order.stp, "cancel_incoming");
    assert!(!order.post_only);
    assert_eq!(order.trade_count, 1);
    assert_eq!(order.created_at_ms, 1_800_000_000_000);
    assert!(order.lsn >= buy.lsn);

    let amended = bounded(
        "amend",
        client.amend_order(authed(
            TOKEN,
            AmendOrderRequest {
                request_id: "a1".into(),
                symbol: "BTC-USD".into(),
                order_id: sell.order_id,
                price: None,
                qty: Some(4),
            },
        )),
    )
    .await
    .expect("amended")
    .into_inner();
    assert_eq!((amended.filled_qty, amended.remaining_qty), (2, 2));

    let depth = bounded("book", client.get_book(authed(TOKEN, book("BTC-USD"))))
        .await
        .expect("book")
        .into_inner();
    assert_eq!(depth.symbol, "BTC-USD");
    assert!(depth.bids.is_empty());
    assert_eq!(depth.asks.len(), 1);
    assert_eq!(
        (depth.asks[0].price, depth.asks[0].qty, depth.asks[0].orders),
        (100, 2, 1)
    );
    assert!(depth.lsn >= amended.lsn);

    let trades = bounded(
        "trades",
        client.get_trades(authed(
            TOKEN,
            GetTradesRequest {
                symbol: "BTC-USD".into(),
                after_trade_id: None,
                limit: None,
            },
        )),
    )
    .await
    .expect("trades")
    .into_inner();
    assert_eq!(trades.symbol, "BTC-USD");
    assert_eq!(trades.trades.len(), 1);
    let trade = &trades.trades[0];
    assert_eq!(trade.trade_id, fill.trade_id);
    assert_eq!((trade.price, trade.qty), (100, 2));
    assert_eq!(trade.taker_side, "buy");
    assert_eq!(
        (trade.maker_order_id, trade.taker_order_id),
        (sell.order_id, buy.order_id)
    );
    let later = bounded(
        "trades",
        client.get_trades(authed(
            TOKEN,
            GetTradesRequest {
                symbol: "BTC-USD".into(),
                after_trade_id: Some(trade.trade_id),
                limit: Some(10),
            },
        )),
    )
    .await
    .expect("trades")
    .into_inner();
    assert!(later.trades.is_empty());

    let cancelled = bounded(
        "cancel",
        client.cancel_order(authed(TOKEN, cancel("BTC-USD", sell.order_id, None))),
    )
    .await
    .expect("cancelled")
    .into_inner();
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("requested"));
    let depth = bounded("book", client.get_book(authed(TOKEN, book("BTC-USD"))))
        .await
        .expect("book")
        .into_inner();
    assert!(depth.asks.is_empty() && depth.bids.is_empty());

    // A market-outcome rejection is a reply, not an error.
    let rejected = bounded(
        "place",
        client.place_order(authed(
            TOKEN,
            PlaceOrderRequest {
                r#type: "market".into(),
                price: None,
                time_in_force: "ioc".into(),
                ..limit("o3", "BTC-USD", "b", "buy", 0, 1)
            },
        )),
    )
    .await
    .expect("answered")
    .into_inner();
    assert_eq!(rejected.status, "rejected");
    assert_eq!(rejected.reject_reason.as_deref(), Some("no_liquidity"));

    // Every call is counted for /metrics.
    let mut metrics = String::new();
    server.app.grpc.write_prometheus(&mut metrics);
    for line in [
        r#"cairn_grpc_requests_total{transport="unary",method="CreateMarket",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="PlaceOrder",code="0"} 3"#,
        r#"cairn_grpc_requests_total{transport="unary",method="GetBook",code="0"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_stable_code() {
    let server = Server::start(1).await;
    let mut client = server.client();
    server.market("ETH", 5, 2).await;

    // Off the tick: INVALID_ARGUMENT, and nothing placed.
    let refused = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("bad", "ETH", "a", "buy", 7, 2))),
    )
    .await
    .expect_err("off the tick");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(error_code(&refused), "invalid_argument");
    assert!(refused.message().starts_with("invalid_argument: "));
    assert!(refused.metadata().get("cairn-error-details").is_some());
    let refused = bounded(
        "place",
        client.place_order(authed(
            TOKEN,
            PlaceOrderRequest {
                side: "up".into(),
                ..limit("bad2", "ETH", "a", "buy", 10, 2)
            },
        )),
    )
    .await
    .expect_err("bad side");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = bounded(
        "book",
        client.get_book(authed(
            TOKEN,
            GetBookRequest {
                symbol: "ETH".into(),
                depth: Some(0),
            },
        )),
    )
    .await
    .expect_err("depth 0");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // Unknown markets and orders: NOT_FOUND.
    let missing = bounded(
        "get_order",
        client.get_order(authed(TOKEN, get_order("ETH", 999))),
    )
    .await
    .expect_err("no such order");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_code(&missing), "not_found");
    let missing = bounded("book", client.get_book(authed(TOKEN, book("NOPE"))))
        .await
        .expect_err("no such market");
    assert_eq!(missing.code(), Code::NotFound);
    let missing = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("p", "NOPE", "a", "buy", 5, 2))),
    )
    .await
    .expect_err("no such market");
    assert_eq!(missing.code(), Code::NotFound);

    // A closed order cannot be cancelled or amended: FAILED_PRECONDITION `order_not_open`.
    let placed = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("ok", "ETH", "a", "buy", 10, 2))),
    )
    .await
    .expect("placed")
    .into_inner();
    bounded(
        "cancel",
        client.cancel_order(authed(TOKEN, cancel("ETH", placed.order_id, None))),
    )
    .await
    .expect("cancelled");
    let again = bounded(
        "cancel",
        client.cancel_order(authed(TOKEN, cancel("ETH", placed.order_id, None))),
    )
    .await
    .expect_err("not open");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&again), "order_not_open");
    let amend = bounded(
        "amend",
        client.amend_order(authed(
            TOKEN,
            AmendOrderRequest {
                request_id: "am".into(),
                symbol: "ETH".into(),
                order_id: placed.order_id,
                price: Some(15),
                qty: None,
            },
        )),
    )
    .await
    .expect_err("not open");
    assert_eq!(error_code(&amend), "order_not_open");

    // A second market of the same symbol: ALREADY_EXISTS.
    let exists = bounded(
        "create_market",
        client.create_market(authed(TOKEN, market("m-again", "ETH", 1, 1))),
    )
    .await
    .expect_err("exists");
    assert_eq!(exists.code(), Code::AlreadyExists);
    assert_eq!(error_code(&exists), "already_exists");

    // No token, an unknown token: UNAUTHENTICATED.
    let anonymous = bounded("book", client.get_book(tonic::Request::new(book("ETH"))))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let unknown = bounded("book", client.get_book(authed("nope", book("ETH"))))
        .await
        .expect_err("unknown token");
    assert_eq!(unknown.code(), Code::Unauthenticated);
    let stream = bounded(
        "order_stream",
        client.order_stream(authed("nope", futures_util::stream::iter(Vec::new()))),
    )
    .await
    .expect_err("unknown token");
    assert_eq!(stream.code(), Code::Unauthenticated);

    // Roles and accounts: PERMISSION_DENIED.
    let viewer = server.token("v", Role::Viewer, None);
    let desk = server.token("desk", Role::Client, Some(vec!["acct-1".into()]));
    bounded("book", client.get_book(authed(&viewer, book("ETH"))))
        .await
        .expect("a viewer reads");
    let denied = bounded(
        "place",
        client.place_order(authed(&viewer, limit("v1", "ETH", "acct-1", "buy", 10, 2))),
    )
    .await
    .expect_err("a viewer cannot trade");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(error_code(&denied), "permission_denied");
    let denied = bounded(
        "create_market",
        client.create_market(authed(&desk, market("m-desk", "SOL", 1, 1))),
    )
    .await
    .expect_err("a client cannot open markets");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = bounded(
        "place",
        client.place_order(authed(&desk, limit("d1", "ETH", "acct-2", "buy", 10, 2))),
    )
    .await
    .expect_err("not its account");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mine = bounded(
        "place",
        client.place_order(authed(&desk, limit("d2", "ETH", "acct-1", "buy", 10, 2))),
    )
    .await
    .expect("its own account")
    .into_inner();
    let other = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("d3", "ETH", "acct-2", "buy", 10, 2))),
    )
    .await
    .expect("placed")
    .into_inner();
    let denied = bounded(
        "cancel",
        client.cancel_order(authed(&desk, cancel("ETH", other.order_id, None))),
    )
    .await
    .expect_err("another account's order");
    assert_eq!(denied.code(), Code::PermissionDenied);
    bounded(
        "cancel",
        client.cancel_order(authed(&desk, cancel("ETH", mine.order_id, None))),
    )
    .await
    .expect("its own order");

    // On a stream, a failure is an Error reply carrying what the unary status would have been.
    let requests = vec![
        OrderStreamRequest {
            tag: 1,
            request: Some(Call::PlaceOrder(limit("s1", "ETH", "acct-1", "buy", 7, 2))),
        },
        OrderStreamRequest {
            tag: 2,
            request: Some(Call::GetOrder(get_order("ETH", 999))),
        },
        OrderStreamRequest {
            tag: 3,
            request: Some(Call::PlaceOrder(limit("s3", "ETH", "acct-2", "buy", 10, 2))),
        },
        OrderStreamRequest {
            tag: 4,
            request: None,
        },
    ];
    let answered = order_stream(&mut client, &desk, requests).await;
    let error = |tag: u64| match answered[&tag].as_slice() {
        [
            OrderStreamResponse {
                reply: Some(Reply::Error(error)),
                ..
            },
        ] => (error.code.clone(), Code::from_i32(error.grpc_code)),
        other => panic!("tag {tag}: {other:?}"),
    };
    assert_eq!(
        error(1),
        ("invalid_argument".to_string(), Code::InvalidArgument)
    );
    assert_eq!(error(2), ("not_found".to_string(), Code::NotFound));
    assert_eq!(
        error(3),
        ("permission_denied".to_string(), Code::PermissionDenied)
    );
    assert_eq!(
        error(4),
        ("invalid_argument".to_string(), Code::InvalidArgument)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_first_outcome_on_either_transport() {
    let server = Server::start(2).await;
    let mut client = server.client();
    server.market("SOL", 1, 1).await;
    let request = limit("same", "SOL", "a", "sell", 10, 3);
    let first = bounded("place", client.place_order(authed(TOKEN, request.clone())))
        .await
        .expect("placed")
        .into_inner();
    let again = bounded("place", client.place_order(authed(TOKEN, request.clone())))
        .await
        .expect("the retry succeeds")
        .into_inner();
    assert_eq!(first, again, "the first outcome");
    let depth = bounded("book", client.get_book(authed(TOKEN, book("SOL"))))
        .await
        .expect("book")
        .into_inner();
    assert_eq!(depth.asks[0].qty, 3, "the retry placed nothing more");
    let reused = bounded(
        "place",
        client.place_order(authed(TOKEN, PlaceOrderRequest { qty: 4, ..request })),
    )
    .await
    .expect_err("same id, other content");
    assert_eq!(reused.code(), Code::Aborted);
    assert_eq!(error_code(&reused), "request_id_reused");

    // A cancel with a key: its retry is the first outcome, not `order_not_open`.
    let cancelled = bounded(
        "cancel",
        client.cancel_order(authed(TOKEN, cancel("SOL", first.order_id, Some("c1")))),
    )
    .await
    .expect("cancelled")
    .into_inner();
    let retried = bounded(
        "cancel",
        client.cancel_order(authed(TOKEN, cancel("SOL", first.order_id, Some("c1")))),
    )
    .await
    .expect("the retry succeeds")
    .into_inner();
    assert_eq!(cancelled, retried);

    // Both transports share one fingerprint: an order sent over HTTP and retried over gRPC is the
    // same request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http = format!("http://{}", listener.local_addr().expect("address"));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(cairn_server::run(
        listener,
        server.app.clone(),
        async move {
            let _ = http_stopped.await;
        },
    ));
    let body = serde_json::json!({"request_id": "cross", "account": "b", "side": "buy", "type": "limit", "price": 9, "qty": 2, "time_in_force": "gtc"});
    let response = bounded(
        "HTTP order",
        reqwest::Client::new()
            .post(format!("{http}/v1/markets/SOL/orders"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send(),
    )
    .await
    .expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let over_http: Value = bounded("HTTP body", response.json()).await.expect("json");
    let over_grpc = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("cross", "SOL", "b", "buy", 9, 2))),
    )
    .await
    .expect("the gRPC retry gets the first outcome")
    .into_inner();
    assert_eq!(over_http["order_id"], over_grpc.order_id);
    assert_eq!(over_http["lsn"], over_grpc.lsn);
    assert_eq!(over_http["status"], over_grpc.status.as_str());
    let depth = bounded("book", client.get_book(authed(TOKEN, book("SOL"))))
        .await
        .expect("book")
        .into_inner();
    assert_eq!(depth.bids.len(), 1);
    assert_eq!(
        (depth.bids[0].qty, depth.bids[0].orders),
        (2, 1),
        "one order"
    );

    // And the other way round: placed over gRPC, retried over HTTP.
    let placed = bounded(
        "place",
        client.place_order(authed(TOKEN, limit("back", "SOL", "c", "buy", 8, 1))),
    )
    .await
    .expect("placed")
    .into_inner();
    let body = serde_json::json!({"request_id": "back", "account": "c", "side": "buy", "type": "limit", "price": 8, "qty": 1, "time_in_force": "gtc"});
    let response = bounded(
        "HTTP order",
        reqwest::Client::new()
            .post(format!("{http}/v1/markets/SOL/orders"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send(),
    )
    .await
    .expect("sent");
    let over_http: Value = bounded("HTTP body", response.json()).await.expect("json");
    assert_eq!(over_http["order_id"], placed.order_id);
    assert_eq!(over_http["lsn"], placed.lsn);

    let _ = stop_http.send(());
    bounded("HTTP shutdown", http_task)
        .await
        .expect("task")
        .expect("HTTP ran");
    server.stop().await;
}

/// Sends `requests` on one order stream and collects every response by tag.
async fn order_stream(
    client: &mut MatchingClient<Channel>,
    token: &str,
    requests: Vec<OrderStreamRequest>,
) -> BTreeMap<u64, Vec<OrderStreamResponse>> {
    let mut responses = bounded(
        "order_stream",
        client.order_stream(authed(token, futures_util::stream::iter(requests))),
    )
    .await
    .expect("the stream opens")
    .into_inner();
    let mut by_tag: BTreeMap<u64, Vec<OrderStreamResponse>> = BTreeMap::new();
    while let Some(response) = bounded("order stream response", responses.message())
        .await
        .expect("the stream does not fail")
    {
        by_tag.entry(response.tag).or_default().push(response);
    }
    by_tag
}

/// A deterministic pseudo-random sequence (xorshift).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_pipelined_orders_trade_consistently() {
    let server = Server::start(2).await;
    server.market("XRP", 1, 1).await;
    let accounts = ["acct-0", "acct-1", "acct-2", "acct-3", "acct-4"];
    // Two desks, each limited to its accounts, on two concurrent streams.
    let desks = [
        (
            server.token(
                "desk-a",
                Role::Client,
                Some(vec!["acct-0".into(), "acct-1".into(), "acct-2".into()]),
            ),
            &accounts[..3],
        ),
        (
            server.token(
                "desk-b",
                Role::Client,
                Some(vec!["acct-3".into(), "acct-4".into()]),
            ),
            &accounts[3..],
        ),
    ];
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut streams = Vec::new();
    for (desk, (token, mine)) in desks.iter().enumerate() {
        let mut requests = Vec::new();
        for n in 0..250u64 {
            let tag = (desk as u64) * 1000 + n;
            let account = mine[usize::try_from(dice.roll(mine.len() as u64)).expect("fits")];
            let side = if dice.roll(2) == 0 { "buy" } else { "sell" };
            let price = 95 + i64::try_from(dice.roll(11)).expect("fits");
            let qty = 1 + i64::try_from(dice.roll(10)).expect("fits");
            let mut order = limit(&format!("p-{tag}"), "XRP", account, side, price, qty);
            if dice.roll(5) == 0 {
                order.time_in_force = "ioc".into();
            }
            requests.push(OrderStreamRequest {
                tag,
                request: Some(Call::PlaceOrder(order)),
            });
        }
        let mut client = server.client();
        let token = token.clone();
        streams.push(tokio::spawn(async move {
            order_stream(&mut client, &token, requests).await
        }));
    }
    let mut order_ids = Vec::new();
    let mut reply_trade_qty = 0;
    for (desk, stream) in streams.into_iter().enumerate() {
        let answered = bounded("stream", stream).await.expect("stream task");
        let expected: Vec<u64> = (0..250).map(|n| desk as u64 * 1000 + n).collect();
        assert_eq!(
            answered.keys().copied().collect::<Vec<_>>(),
            expected,
            "every tag answered"
        );
        for (tag, responses) in answered {
            let [response] = responses.as_slice() else {
                panic!("tag {tag} answered {} times", responses.len());
            };
            match &response.reply {
                Some(Reply::PlaceOrder(reply)) => {
                    order_ids.push(reply.order_id);
                    reply_trade_qty += reply.trades.iter().map(|t| t.qty).sum::<i64>();
                }
                other => panic!("tag {tag}: {other:?}"),
            }
        }
    }
    order_ids.sort_unstable();
    order_ids.dedup();
    assert_eq!(order_ids.len(), 500, "500 distinct orders");

    // Read every order back, pipelined too.
    let mut client = server.client();
    let reads = order_ids
        .iter()
        .map(|&order_id| OrderStreamRequest {
            tag: order_id,
            request: Some(Call::GetOrder(get_order("XRP", order_id))),
        })
        .collect();
    let read = order_stream(&mut client, TOKEN, reads).await;
    assert_eq!(read.len(), 500);
    let (mut bought, mut sold) = (0, 0);
    let (mut resting_bids, mut resting_asks) = (0, 0);
    for (order_id, responses) in &read {
        let [
            OrderStreamResponse {
                reply: Some(Reply::GetOrder(order)),
                ..
            },
        ] = responses.as_slice()
        else {
            panic!("order {order_id}: {responses:?}");
        };
        assert_eq!(order.order_id, *order_id);
        assert_eq!(
            order.qty,
            order.filled_qty + order.remaining_qty + order.cancelled_qty
        );
        if order.side == "buy" {
            bought += order.filled_qty;
            resting_bids += order.remaining_qty;
        } else {
            sold += order.filled_qty;
            resting_asks += order.remaining_qty;
        }
    }
    assert_eq!(bought, sold, "every unit bought was sold");

    // The trades add up to the fills.
    let mut traded = 0;
    let mut after = 0;
    loop {
        let page = bounded(
            "trades",
            client.get_trades(authed(
                TOKEN,
                GetTradesRequest {
                    symbol: "XRP".into(),
                    after_trade_id: Some(after),
                    limit: Some(1000),
                },
            )),
        )
        .await
        .expect("trades")
        .into_inner();
        let Some(last) = page.trades.last() else {
            break;
        };
        after = last.trade_id;
        traded += page.trades.iter().map(|t| t.qty).sum::<i64>();
    }
    assert!(traded > 0, "the orders crossed");
    assert_eq!(traded, bought);
    assert_eq!(
        traded, reply_trade_qty,
        "the replies' trades are the trades"
    );

    // The book holds exactly what rests, and is not crossed.
    let depth = bounded(
        "book",
        client.get_book(authed(
            TOKEN,
            GetBookRequest {
                symbol: "XRP".into(),
                depth: Some(1000),
            },
        )),
    )
    .await
    .expect("book")
    .into_inner();
    assert_eq!(depth.bids.iter().map(|l| l.qty).sum::<i64>(), resting_bids);
    assert_eq!(depth.asks.iter().map(|l| l.qty).sum::<i64>(), resting_asks);
    if let (Some(bid), Some(ask)) = (depth.bids.first(), depth.asks.first()) {
        assert!(bid.price < ask.price, "crossed book: {bid:?} {ask:?}");
    }

    let mut metrics = String::new();
    server.app.grpc.write_prometheus(&mut metrics);
    for line in [
        r#"cairn_grpc_requests_total{transport="pipeline",method="PlaceOrder",code="0"} 500"#,
        r#"cairn_grpc_requests_total{transport="pipeline",method="GetOrder",code="0"} 500"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_an_open_order_stream_after_answering_it() {
    let server = Server::start(1).await;
    server.market("ADA", 1, 1).await;
    let mut client = server.client();
    let (requests, inbound) = tokio::sync::mpsc::channel::<OrderStreamRequest>(16);
    let inbound = futures_util::stream::unfold(inbound, |mut inbound| async move {
        inbound.recv().await.map(|request| (request, inbound))
    });
    let mut responses = bounded(
        "order_stream",
        client.order_stream(authed(TOKEN, inbound.boxed())),
    )
    .await
    .expect("opens")
    .into_inner();
    requests
        .send(OrderStreamRequest {
            tag: 7,
            request: Some(Call::PlaceOrder(limit("s", "ADA", "a", "buy", 5, 1))),
        })
        .await
        .expect("sent");
    let first = bounded("response", responses.message())
        .await
        .expect("ok")
        .expect("a response");
    assert_eq!(first.tag, 7);
    assert!(matches!(first.reply, Some(Reply::PlaceOrder(_))));
    // The client keeps its side open; shutting down ends the stream anyway.
    let stopping = tokio::spawn(server.stop());
    assert!(
        bounded("end", responses.message())
            .await
            .expect("ends cleanly")
            .is_none()
    );
    drop(requests);
    bounded("stopped", stopping).await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_answers_beyond_its_in_flight_bound() {
    let server = Server::start(1).await;
    server.market("DOT", 1, 1).await;
    let mut client = server.client();
    let count = 2 * cairn_server::grpc::PIPELINE_IN_FLIGHT_MAX as u64 + 100;
    // Bids below asks: nothing crosses, every order rests.
    let requests = (0..count)
        .map(|tag| {
            let (side, price) = if tag % 2 == 0 {
                ("buy", 10 + i64::try_from(tag % 7).expect("fits"))
            } else {
                ("sell", 50 + i64::try_from(tag % 7).expect("fits"))
            };
            OrderStreamRequest {
                tag,
                request: Some(Call::PlaceOrder(limit(
                    &format!("b-{tag}"),
                    "DOT",
                    "a",
                    side,
                    price,
                    1,
                ))),
            }
        })
        .collect();
    let answered = order_stream(&mut client, TOKEN, requests).await;
    assert_eq!(answered.len() as u64, count);
    for (tag, responses) in &answered {
        assert!(
            matches!(
                responses.as_slice(),
                [OrderStreamResponse {
                    reply: Some(Reply::PlaceOrder(_)),
                    ..
                }]
            ),
            "tag {tag}: {responses:?}"
        );
    }
    let depth = bounded("book", client.get_book(authed(TOKEN, book("DOT"))))
        .await
        .expect("book")
        .into_inner();
    let resting: i64 = depth
        .bids
        .iter()
        .chain(&depth.asks)
        .map(|level| level.qty)
        .sum();
    assert_eq!(resting, i64::try_from(count).expect("fits"));
    server.stop().await;
}
