//! End-to-end over real HTTP against a server started in the test: the matching endpoints of
//! API.md, their error codes, roles and accounts, idempotency, bad input that never reaches the
//! log, the OpenAPI shapes, and a restart that rebuilds the same books.

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::{CrashMode, MemStorage, Storage};
use cairn_server::session::Role;
use cairn_server::{AdminToken, App};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

const TOKEN: &str = "test-admin-token";

struct Server {
    base: String,
    client: reqwest::Client,
    app: App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(storage: Arc<dyn Storage>, clock: &ManualClock, shards: u16) -> Server {
        let config = EngineConfig {
            data_dir: PathBuf::from("/srv"),
            shard_count: Some(shards),
            shard: ShardConfig {
                clock: Arc::new(clock.clone()),
                ..ShardConfig::default()
            },
        };
        let engine = Arc::new(
            Engine::<Cairn>::open_on(storage, config)
                .expect("engine opens")
                .0,
        );
        let app = App::new(engine, Arc::new(AdminToken::from_secret(TOKEN)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = app.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            cairn_server::run(listener, served, shutdown)
                .await
                .expect("server runs");
        });
        Server {
            base,
            client: reqwest::Client::new(),
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, token: &str) -> (StatusCode, Value) {
        let response = request.bearer_auth(token).send().await.expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let request = self.client.post(format!("{}{path}", self.base)).json(&body);
        self.send(request, token).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post_as(TOKEN, path, body).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request, TOKEN).await
    }

    async fn delete_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let request = self.client.delete(format!("{}{path}", self.base));
        self.send(request, token).await
    }

    async fn market(&self, symbol: &str, tick: i64, lot: i64) {
        let body = json!({"request_id": format!("m-{symbol}"), "symbol": symbol, "tick_size": tick, "lot_size": lot});
        let (status, reply) = self.post("/v1/markets", body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }

    /// Places an order; `spec` is merged into a GTC limit buy of account "a".
    async fn order(&self, symbol: &str, id: &str, spec: Value) -> (StatusCode, Value) {
        let mut body = json!({"request_id": id, "account": "a", "side": "buy", "type": "limit",
            "qty": 1, "time_in_force": "gtc"});
        if let (Value::Object(body), Value::Object(spec)) = (&mut body, spec) {
            body.extend(spec);
        }
        self.post(&format!("/v1/markets/{symbol}/orders"), body)
            .await
    }

    fn durable_lsns(&self) -> Vec<u64> {
        self.app
            .engine
            .shards()
            .iter()
            .map(|s| s.durable_lsn().0)
            .collect()
    }
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_match_by_price_and_time_at_the_makers_price() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock, 2).await;
    server.market("BTC-USD", 5, 2).await;
    let (status, again) = server
        .post(
            "/v1/markets",
            json!({"request_id": "m2", "symbol": "BTC-USD", "tick_size": 1, "lot_size": 1}),
        )
        .await;
    assert_eq!(
        (status, code(&again)),
        (StatusCode::CONFLICT, "already_exists")
    );

    // Asks at 100 (two orders, time priority) and 105.
    for (id, account, price, qty) in [
        ("s1", "m1", 100, 4),
        ("s2", "m2", 100, 4),
        ("s3", "m1", 105, 6),
    ] {
        let (status, placed) = server
            .order(
                "BTC-USD",
                id,
                json!({"account": account, "side": "sell", "price": price, "qty": qty}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        assert_eq!(placed["status"], "new");
        assert_eq!(placed["remaining_qty"], qty);
    }
    let (_, book) = server.get("/v1/markets/BTC-USD/book?depth=5").await;
    assert_eq!(
        book["asks"],
        json!([{"price": 100, "qty": 8, "orders": 2}, {"price": 105, "qty": 6, "orders": 1}])
    );
    assert_eq!(book["bids"], json!([]));

    // A buy at 105 for 10 sweeps 100 (s1 then s2) and takes 2 at 105, at the makers' prices.
    let (status, taker) = server
        .order(
            "BTC-USD",
            "b1",
            json!({"account": "t", "price": 105, "qty": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{taker}");
    assert_eq!(taker["status"], "filled");
    assert_eq!(taker["filled_qty"], 10);
    assert_eq!(taker["remaining_qty"], 0);
    let trades = taker["trades"].as_array().expect("trades");
    let summary: Vec<(i64, i64, u64)> = trades
        .iter()
        .map(|t| {
            (
                t["price"].as_i64().unwrap_or(0),
                t["qty"].as_i64().unwrap_or(0),
                t["maker_order_id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(summary, vec![(100, 4, 1), (100, 4, 2), (105, 2, 3)]);
    let ids: Vec<u64> = trades
        .iter()
        .filter_map(|t| t["trade_id"].as_u64())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "trade ids increase per market");
    assert!(trades.iter().all(|t| t["taker_order_id"] == 4));

    let (_, maker) = server.get("/v1/markets/BTC-USD/orders/3").await;
    assert_eq!(
        (
            maker["status"].as_str(),
            maker["remaining_qty"].as_i64(),
            maker["filled_qty"].as_i64()
        ),
        (Some("partially_filled"), Some(4), Some(2))
    );
    let (_, history) = server
        .get("/v1/markets/BTC-USD/trades?after_trade_id=1&limit=1")
        .await;
    assert_eq!(history["trades"].as_array().map(Vec::len), Some(1));
    assert_eq!(history["trades"][0]["trade_id"], 2);

    // IOC partial: cancelled with its fill; FOK unfillable: rejected, 201, nothing changes.
    let (_, ioc) = server
        .order(
            "BTC-USD",
            "b2",
            json!({"account": "t", "price": 105, "qty": 6, "time_in_force": "ioc"}),
        )
        .await;
    assert_eq!(
        (
            ioc["status"].as_str(),
            ioc["filled_qty"].as_i64(),
            ioc["remaining_qty"].as_i64()
        ),
        (Some("cancelled"), Some(4), Some(0))
    );
    let (status, fok) = server
        .order(
            "BTC-USD",
            "b3",
            json!({"account": "t", "price": 105, "qty": 2, "time_in_force": "fok"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(fok["status"], "rejected", "{fok}");
    assert!(
        matches!(
            fok["reject_reason"].as_str(),
            Some("fok_not_fillable" | "no_liquidity")
        ),
        "{fok}"
    );
    let (_, market) = server
        .order("BTC-USD", "b4", json!({"account": "t", "type": "market", "qty": 2, "time_in_force": "ioc", "price": null}))
        .await;
    assert_eq!(
        (market["status"].as_str(), market["reject_reason"].as_str()),
        (Some("rejected"), Some("no_liquidity"))
    );

    // Post-only that would cross is rejected; resting bids then a crossing ask.
    server
        .order(
            "BTC-USD",
            "b5",
            json!({"account": "x", "price": 95, "qty": 2}),
        )
        .await;
    let (_, post_only) = server
        .order(
            "BTC-USD",
            "s4",
            json!({"account": "y", "side": "sell", "price": 95, "qty": 2, "post_only": true}),
        )
        .await;
    assert_eq!(post_only["reject_reason"], "post_only_would_cross");

    // Self-trade prevention: account x never trades with itself.
    let (_, own) = server
        .order(
            "BTC-USD",
            "s5",
            json!({"account": "x", "side": "sell", "price": 95, "qty": 2}),
        )
        .await;
    assert_eq!(
        (own["status"].as_str(), own["reject_reason"].as_str()),
        (Some("rejected"), Some("self_trade"))
    );
    assert_eq!(own["trades"], json!([]));

    // Cancel: 200, then 409 order_not_open; unknown ids and markets are 404.
    let (status, cancelled) = server
        .delete_as(TOKEN, "/v1/markets/BTC-USD/orders/8")
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (status, again) = server
        .delete_as(TOKEN, "/v1/markets/BTC-USD/orders/8")
        .await;
    assert_eq!(
        (status, code(&again)),
        (StatusCode::CONFLICT, "order_not_open")
    );
    let (status, _) = server
        .delete_as(TOKEN, "/v1/markets/BTC-USD/orders/999")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.delete_as(TOKEN, "/v1/markets/NOPE/orders/1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/v1/markets/NOPE/book").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, unknown) = server.order("NOPE", "n1", json!({"price": 5})).await;
    assert_eq!(
        (status, code(&unknown)),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // Amend: quantity down keeps priority; the book shows it.
    let (_, rest) = server
        .order(
            "BTC-USD",
            "b6",
            json!({"account": "z", "price": 90, "qty": 8}),
        )
        .await;
    let id = rest["order_id"].as_u64().expect("id");
    let (status, amended) = server
        .send(
            server
                .client
                .patch(format!("{}/v1/markets/BTC-USD/orders/{id}", server.base))
                .json(&json!({"request_id": "amend-1", "qty": 4})),
            TOKEN,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{amended}");
    assert_eq!(amended["remaining_qty"], 4);
    let (_, book) = server.get("/v1/markets/BTC-USD/book").await;
    assert_eq!(book["bids"][0], json!({"price": 90, "qty": 4, "orders": 1}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_are_refused_with_clear_codes_and_never_reach_the_log() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock, 1).await;
    server.market("ETH", 5, 2).await;
    let before = server.durable_lsns();
    for (spec, why) in [
        (json!({"price": 7, "qty": 2}), "price off the tick"),
        (json!({"price": 10, "qty": 3}), "qty off the lot"),
        (json!({"qty": 2}), "limit without a price"),
        (
            json!({"type": "market", "price": 10, "qty": 2, "time_in_force": "ioc"}),
            "market with a price",
        ),
        (json!({"type": "market", "qty": 2}), "market gtc"),
        (
            json!({"price": 10, "qty": 2, "time_in_force": "ioc", "post_only": true}),
            "post_only ioc",
        ),
        (json!({"price": 10, "qty": 0}), "zero qty"),
        (json!({"price": -5, "qty": 2}), "negative price"),
        (json!({"price": 10, "qty": 2, "side": "up"}), "bad side"),
        (
            json!({"price": 10, "qty": 2, "time_in_force": "day"}),
            "bad time in force",
        ),
        (json!({"price": 10.5, "qty": 2}), "a float"),
        (
            json!({"price": 10, "qty": 2, "account": ""}),
            "empty account",
        ),
    ] {
        let (status, reply) = server.order("ETH", "bad", spec).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::BAD_REQUEST, "invalid_argument"),
            "{why}: {reply}"
        );
    }
    assert_eq!(
        server.durable_lsns(),
        before,
        "no refusal of bad input was logged"
    );
    // The id of a request refused as bad input stays free.
    let (status, ok) = server
        .order("ETH", "bad", json!({"price": 10, "qty": 2}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    let (status, retry) = server
        .order("ETH", "bad", json!({"price": 10, "qty": 2}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        retry["order_id"], ok["order_id"],
        "a retry returns the first outcome"
    );
    let (status, reused) = server
        .order("ETH", "bad", json!({"price": 15, "qty": 2}))
        .await;
    assert_eq!(
        (status, code(&reused)),
        (StatusCode::CONFLICT, "request_id_reused")
    );
    let (status, _) = server.get("/v1/markets/ETH/book?depth=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.get("/v1/markets/ETH/book?depth=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.get("/v1/markets/ETH/trades?limit=100000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_accounts_limit_who_trades_for_whom() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock, 1).await;
    server.market("SOL", 1, 1).await;
    let tokens = &server.app.admin.tokens;
    let viewer = tokens.create("v", Role::Viewer, None).expect("token");
    let desk = tokens
        .create("desk", Role::Client, Some(vec!["acct-1".into()]))
        .expect("token");
    let (status, _) = server
        .post_as(&viewer, "/v1/markets/SOL/orders", json!({"request_id": "v1", "account": "acct-1", "side": "buy", "type": "limit", "price": 5, "qty": 1, "time_in_force": "gtc"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer cannot trade");
    let (status, _) = server
        .post_as(
            &desk,
            "/v1/markets",
            json!({"request_id": "m", "symbol": "X", "tick_size": 1, "lot_size": 1}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a client cannot open markets"
    );
    let order = |account: &str, id: &str| json!({"request_id": id, "account": account, "side": "buy", "type": "limit", "price": 5, "qty": 1, "time_in_force": "gtc"});
    let (status, _) = server
        .post_as(&desk, "/v1/markets/SOL/orders", order("acct-2", "d1"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not its account");
    let (status, mine) = server
        .post_as(&desk, "/v1/markets/SOL/orders", order("acct-1", "d2"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, other) = server
        .post("/v1/markets/SOL/orders", order("acct-2", "d3"))
        .await;
    let other_id = other["order_id"].as_u64().expect("id");
    let (status, _) = server
        .delete_as(&desk, &format!("/v1/markets/SOL/orders/{other_id}"))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "cannot cancel another account's order"
    );
    let mine_id = mine["order_id"].as_u64().expect("id");
    let (status, _) = server
        .delete_as(&desk, &format!("/v1/markets/SOL/orders/{mine_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .delete_as("nope", &format!("/v1/markets/SOL/orders/{mine_id}"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_the_same_books_and_the_document_matches_replies() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(memory.clone()), &clock, 2).await;
    for symbol in ["A", "B", "C"] {
        server.market(symbol, 1, 1).await;
    }
    let mut acknowledged = Vec::new();
    for n in 0..60i64 {
        let symbol = ["A", "B", "C"][(n % 3) as usize];
        let side = if n % 2 == 0 { "buy" } else { "sell" };
        let price = 100 + (n * 7) % 11 - 5;
        let (status, placed) = server
            .order(symbol, &format!("o{n}"), json!({"account": format!("acct{}", n % 4), "side": side, "price": price, "qty": 1 + n % 3}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        acknowledged.push((
            symbol,
            placed["order_id"].as_u64().expect("id"),
            placed["filled_qty"].clone(),
        ));
    }
    let mut books = Vec::new();
    for symbol in ["A", "B", "C"] {
        let (_, mut book) = server.get(&format!("/v1/markets/{symbol}/book")).await;
        book.as_object_mut().map(|b| b.remove("lsn"));
        books.push(book);
    }

    // OpenAPI shapes against live replies.
    let document: Value = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    for path in [
        "/v1/markets",
        "/v1/markets/{symbol}/orders",
        "/v1/markets/{symbol}/orders/{order_id}",
        "/v1/markets/{symbol}/book",
        "/v1/markets/{symbol}/trades",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} missing");
    }
    let properties = |schema: &str| -> Vec<String> {
        let mut keys: Vec<String> = document["components"]["schemas"][schema]["properties"]
            .as_object()
            .expect(schema)
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    let keys = |value: &Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    let (_, placed) = server
        .order("A", "shape", json!({"price": 1, "qty": 1}))
        .await;
    assert_eq!(keys(&placed), properties("OrderReplyDoc"));
    let (_, order) = server
        .get(&format!("/v1/markets/A/orders/{}", placed["order_id"]))
        .await;
    assert_eq!(keys(&order), properties("OrderDoc"));
    let (_, book) = server.get("/v1/markets/A/book").await;
    assert_eq!(keys(&book), properties("BookDoc"));
    let (_, trades) = server.get("/v1/markets/A/trades").await;
    assert_eq!(keys(&trades), properties("TradesDoc"));
    if let Some(trade) = trades["trades"].get(0) {
        assert_eq!(keys(trade), properties("TradeDoc"));
    }
    let (_, market) = server.get("/v1/markets/A").await;
    assert_eq!(keys(&market), properties("MarketDoc"));
    let (_, cancelled) = server
        .delete_as(
            TOKEN,
            &format!("/v1/markets/A/orders/{}", placed["order_id"]),
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    // The markets' last event seq before the crash (A moved on since its book was read).
    let mut seqs = Vec::new();
    for symbol in ["A", "B", "C"] {
        let (_, market) = server.get(&format!("/v1/markets/{symbol}")).await;
        seqs.push(market["seq"].clone());
    }
    let hashes: Vec<_> = server
        .app
        .engine
        .shards()
        .iter()
        .map(|s| s.state_hash().expect("hash").1)
        .collect();
    server.stop().await;

    // Power loss: everything acknowledged was synced; the books come back identical.
    memory.crash(CrashMode::DropUnsynced);
    let server = Server::start(Arc::new(memory), &clock, 2).await;
    for ((symbol, expected), seq) in ["A", "B", "C"].iter().zip(&mut books).zip(&seqs) {
        let (_, mut book) = server.get(&format!("/v1/markets/{symbol}/book")).await;
        book.as_object_mut().map(|b| b.remove("lsn"));
        assert!(seq.as_u64().is_some_and(|s| s > 1), "{symbol} has events");
        assert_eq!(&book["seq"], seq, "{symbol}: the seq comes back too");
        expected["seq"] = seq.clone();
        assert_eq!(&book, expected, "{symbol}");
    }
    for (symbol, order_id, filled) in &acknowledged {
        let (status, order) = server
            .get(&format!("/v1/markets/{symbol}/orders/{order_id}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(order["filled_qty"].as_i64() >= filled.as_i64(), "{order}");
    }
    let (_, listed) = server.get("/v1/markets").await;
    assert_eq!(listed["markets"].as_array().map(Vec::len), Some(3));
    // Every shard's state (books, histories, remembered requests) hashes as before the crash.
    let rebuilt: Vec<_> = server
        .app
        .engine
        .shards()
        .iter()
        .map(|s| s.state_hash().expect("hash").1)
        .collect();
    assert_eq!(rebuilt, hashes);
    server.stop().await;
}
