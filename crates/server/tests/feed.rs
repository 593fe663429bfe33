//! The event feed over real HTTP against a server started in the test: catch-up then live,
//! resuming exactly after any event with `Last-Event-ID` (also in the middle of a record that
//! holds several events), filters, errors, several shards, and a burst of concurrent writes.

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::MemStorage;
use cairn_server::{AdminToken, App};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

const TOKEN: &str = "test-admin-token";
const T0: u64 = 1_800_000_000_000;
/// How long a test waits for an event that must come.
const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits to be sure that no event comes.
const QUIET: Duration = Duration::from_millis(400);

struct Server {
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(clock: &ManualClock, shard_count: u16, buffer: Option<usize>) -> Server {
        let mut shard = ShardConfig {
            clock: Arc::new(clock.clone()),
            ..ShardConfig::default()
        };
        if let Some(records) = buffer {
            shard.subscription_buffer_records = records;
        }
        let config = EngineConfig {
            data_dir: PathBuf::from("/srv"),
            shard_count: Some(shard_count),
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
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            cairn_server::run(listener, app, shutdown)
                .await
                .expect("server runs");
        });
        Server {
            base,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server. A graceful shutdown waits for open feeds, which never end by
    /// themselves, so the task is aborted if it does not finish soon.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Graceful shutdown must not wait for open feeds: they end when the server closes.
            timeout(Duration::from_secs(5), task)
                .await
                .expect("the server stops with feeds open")
                .expect("task");
        }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = timeout(
            WAIT,
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(TOKEN)
                .json(&body)
                .send(),
        )
        .await
        .expect("answered in time")
        .expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = timeout(
            WAIT,
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(TOKEN)
                .send(),
        )
        .await
        .expect("answered in time")
        .expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn adjust(&self, request_id: &str, sku: &str, delta: i64) -> u64 {
        let body = json!({"request_id": request_id, "sku": sku, "location": "W", "delta": delta, "reason": "receipt"});
        let (status, reply) = self.post("/v1/inventory/adjustments", body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        reply["lsn"].as_u64().expect("lsn")
    }

    async fn reserve(&self, request_id: &str, sku: &str, qty: i64, ttl_ms: u64) -> Value {
        let body = json!({"request_id": request_id, "order_id": format!("order-{request_id}"),
            "lines": [{"sku": sku, "qty": qty}], "ttl_ms": ttl_ms});
        let (status, reply) = self.post("/v1/inventory/reservations", body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        reply
    }

    /// Opens a feed; the response, whatever its status.
    async fn open(
        &self,
        query: &str,
        last_event_id: Option<&str>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.get(format!("{}/v1/events{query}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        timeout(WAIT, request.send())
            .await
            .expect("answered in time")
            .expect("sent")
    }

    /// Opens a feed that must succeed.
    async fn feed(&self, query: &str, last_event_id: Option<&str>) -> Feed {
        let response = self.open(query, last_event_id, Some(TOKEN)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Feed {
            response,
            buffer: Vec::new(),
        }
    }

    async fn refused(&self, query: &str, last_event_id: Option<&str>) -> (StatusCode, Value) {
        let response = self.open(query, last_event_id, Some(TOKEN)).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// One server-sent event.
#[derive(Clone, Debug)]
struct SseEvent {
    id: String,
    data: Value,
}

/// A tiny SSE reader over a streaming response body.
struct Feed {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Feed {
    async fn read_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("UTF-8 events");
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    let field = |name: &str| {
                        line.strip_prefix(name)
                            .map(|v| v.strip_prefix(' ').unwrap_or(v).to_string())
                    };
                    if line.starts_with(':') {
                        continue;
                    } else if let Some(value) = field("id:") {
                        id = Some(value);
                    } else if let Some(value) = field("data:") {
                        data.push_str(&value);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("JSON data");
                return Some(SseEvent {
                    id: id.expect("every event has an id"),
                    data,
                });
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event, which must come.
    async fn next(&mut self) -> SseEvent {
        timeout(WAIT, self.read_event())
            .await
            .expect("an event in time")
            .expect("the feed is still open")
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await);
        }
        events
    }

    /// Asserts that no event comes for a while.
    async fn assert_quiet(&mut self) {
        if let Ok(event) = timeout(QUIET, self.read_event()).await {
            panic!("no event expected, got {event:?}");
        }
    }
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.data["type"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_shows_the_log_in_order_then_live_events_follow() {
    let clock = ManualClock::new(T0);
    let server = Server::start(&clock, 1, None).await;
    let stocked = server.adjust("stock", "A", 5).await;
    let reserved = server.reserve("r1", "A", 2, 60_000).await;
    let id = reserved["reservation_id"].as_str().expect("id").to_string();
    // A refusal remembered for its request_id is a record too, but not an event.
    let (status, refused) = server
        .post(
            "/v1/inventory/reservations",
            json!({"request_id": "short", "order_id": "o2", "lines": [{"sku": "A", "qty": 50}]}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "insufficient_stock")
    );
    let (status, confirmed) = server
        .post(
            &format!("/v1/inventory/reservations/{id}/confirm"),
            json!({"request_id": "c1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");

    let mut feed = server.feed("?from_lsn=0", None).await;
    let events = feed.take(3).await;
    assert_eq!(
        kinds(&events),
        [
            "inventory.adjusted",
            "inventory.reserved",
            "inventory.confirmed"
        ]
    );
    let lsns: Vec<u64> = events
        .iter()
        .filter_map(|e| e.data["lsn"].as_u64())
        .collect();
    assert_eq!(
        lsns,
        vec![
            stocked,
            reserved["lsn"].as_u64().expect("lsn"),
            confirmed["lsn"].as_u64().expect("lsn")
        ]
    );
    assert_eq!(lsns, vec![1, 2, 4], "the refusal at LSN 3 is skipped");
    for event in &events {
        assert_eq!(event.data["shard"], 0);
        assert_eq!(event.data["at_ms"], T0);
        assert_eq!(event.data["index"], 0);
    }
    let adjusted = &events[0].data;
    assert_eq!(
        (
            &adjusted["sku"],
            &adjusted["location"],
            &adjusted["delta"],
            &adjusted["reason"],
            &adjusted["actor"],
            &adjusted["request_id"]
        ),
        (
            &json!("A"),
            &json!("W"),
            &json!(5),
            &json!("receipt"),
            &json!("admin"),
            &json!("stock")
        )
    );
    let reservation = &events[1].data;
    assert_eq!(reservation["reservation_id"], json!(id));
    assert_eq!(reservation["order_id"], "order-r1");
    assert_eq!(
        reservation["lines"],
        json!([{"sku": "A", "location": "W", "qty": 2}])
    );
    assert_eq!(reservation["expires_at_ms"], T0 + 60_000);
    assert_eq!(events[2].data["reservation_id"], json!(id));
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "every event has its own cursor");

    // Live: an event made durable after subscribing arrives.
    feed.assert_quiet().await;
    let live = server.adjust("more", "A", 3).await;
    let event = feed.next().await;
    assert_eq!(
        (
            &event.data["type"],
            &event.data["lsn"],
            &event.data["delta"]
        ),
        (&json!("inventory.adjusted"), &json!(live), &json!(3))
    );

    // from_lsn is inclusive; starting on the refusal starts at the next event.
    let mut from_two = server.feed("?from_lsn=2", None).await;
    assert_eq!(from_two.next().await.data["lsn"], 2);
    let mut from_three = server.feed("?from_lsn=3", None).await;
    assert_eq!(from_three.next().await.data["lsn"], 4);
    drop((feed, from_two, from_three));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_exactly_after_any_event_even_inside_a_record() {
    let clock = ManualClock::new(T0);
    let server = Server::start(&clock, 1, None).await;
    server.adjust("stock", "A", 10).await;
    let mut reservation_ids = BTreeSet::new();
    for n in 0..3 {
        let reply = server.reserve(&format!("r{n}"), "A", 1, 1000).await;
        reservation_ids.insert(reply["reservation_id"].as_str().expect("id").to_string());
    }
    // The three expire at the same time: one timer record holds all three events.
    clock.advance_ms(1000);
    let mut feed = server.feed("?from_lsn=0", None).await;
    let all = feed.take(7).await;
    assert_eq!(
        kinds(&all),
        [
            "inventory.adjusted",
            "inventory.reserved",
            "inventory.reserved",
            "inventory.reserved",
            "inventory.expired",
            "inventory.expired",
            "inventory.expired"
        ]
    );
    let expired = &all[4..];
    let expiry_lsn = &expired[0].data["lsn"];
    assert!(
        expired.iter().all(|e| &e.data["lsn"] == expiry_lsn),
        "one record: {expired:?}"
    );
    let indexes: Vec<&Value> = expired.iter().map(|e| &e.data["index"]).collect();
    assert_eq!(indexes, [&json!(0), &json!(1), &json!(2)]);
    let expired_ids: BTreeSet<String> = expired
        .iter()
        .filter_map(|e| e.data["reservation_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(expired_ids, reservation_ids);
    assert_eq!(expired[0].data["at_ms"], T0 + 1000);

    // Resuming after each event gives exactly the events after it: no repeat, no gap. The
    // header wins over from_lsn.
    for (n, event) in all.iter().enumerate() {
        let mut resumed = server.feed("?from_lsn=0", Some(&event.id)).await;
        let rest = resumed.take(all.len() - n - 1).await;
        let expected: Vec<&Value> = all[n + 1..].iter().map(|e| &e.data).collect();
        let got: Vec<&Value> = rest.iter().map(|e| &e.data).collect();
        assert_eq!(got, expected, "resuming after event {n} ({})", event.id);
        let ids: Vec<&str> = rest.iter().map(|e| e.id.as_str()).collect();
        let expected_ids: Vec<&str> = all[n + 1..].iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, expected_ids, "the cursors are the same too");
    }

    // After the last event, only what is new.
    let mut caught_up = server.feed("", Some(&all[6].id)).await;
    caught_up.assert_quiet().await;
    let live = server.adjust("late", "A", 1).await;
    assert_eq!(caught_up.next().await.data["lsn"], live);
    assert_eq!(feed.next().await.data["lsn"], live);
    drop((feed, caught_up));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_auth_and_bad_input() {
    let clock = ManualClock::new(T0);
    let server = Server::start(&clock, 1, None).await;
    server.adjust("stock", "A", 5).await;

    let mut inventory = server.feed("?from_lsn=0&types=inventory", None).await;
    assert_eq!(inventory.next().await.data["type"], "inventory.adjusted");
    let mut others = server
        .feed("?from_lsn=0&types=matching,publishing", None)
        .await;
    others.assert_quiet().await;
    let mut market = server.feed("?from_lsn=0&market=BTC-USD", None).await;
    market.assert_quiet().await;
    server.adjust("more", "A", 1).await;
    assert_eq!(inventory.next().await.data["delta"], 1);
    others.assert_quiet().await;
    market.assert_quiet().await;
    drop((inventory, others, market));

    for query in [
        "?from_lsn=abc",
        "?from_lsn=-1",
        "?from_lsn=1.5",
        "?from_lsn=",
        "?from_lsn=99999999999999999999999",
        "?from_lsn=0&types=orders",
        "?from_lsn=0&types=",
        "?from_lsn=0&market=",
        "?from_lsn=0&from_lsn=1",
        "?form_lsn=0",
    ] {
        let (status, reply) = server.refused(query, None).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::BAD_REQUEST, "invalid_argument"),
            "{query}: {reply}"
        );
        assert!(reply["error"]["message"].is_string(), "{reply}");
    }
    for id in ["garbage", "s0:x", "s1:1", "s0:1,s0:2", "s0:1.y"] {
        let (status, reply) = server.refused("?from_lsn=0", Some(id)).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::BAD_REQUEST, "invalid_argument"),
            "Last-Event-ID {id}: {reply}"
        );
    }
    for token in [None, Some("wrong")] {
        let response = server.open("?from_lsn=0", None, token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(code(&reply), "unauthenticated");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_every_shard_are_merged_and_resume_per_shard() {
    let clock = ManualClock::new(T0);
    let server = Server::start(&clock, 3, None).await;
    let skus: Vec<String> = (0..12).map(|n| format!("sku-{n}")).collect();
    let shard_of: BTreeMap<String, u16> = skus
        .iter()
        .map(|sku| {
            let shard = cairn_types::shard_for_key(sku.as_bytes(), 3).0;
            (sku.clone(), shard)
        })
        .collect();
    let shards: BTreeSet<u16> = shard_of.values().copied().collect();
    assert!(
        shards.len() >= 2,
        "the SKUs spread over shards: {shard_of:?}"
    );
    for (n, sku) in skus.iter().enumerate() {
        server.adjust(&format!("stock-{n}"), sku, 10).await;
    }

    let mut feed = server.feed("?from_lsn=0", None).await;
    let all = feed.take(skus.len()).await;
    let mut last_lsn: BTreeMap<u64, u64> = BTreeMap::new();
    for event in &all {
        let sku = event.data["sku"].as_str().expect("sku");
        let shard = event.data["shard"].as_u64().expect("shard");
        assert_eq!(shard, u64::from(shard_of[sku]), "{event:?}");
        let lsn = event.data["lsn"].as_u64().expect("lsn");
        let previous = last_lsn.insert(shard, lsn).unwrap_or(0);
        assert!(lsn > previous, "in LSN order per shard: {event:?}");
    }
    let seen: BTreeSet<&str> = all.iter().filter_map(|e| e.data["sku"].as_str()).collect();
    assert_eq!(seen.len(), skus.len(), "every event, once");

    // Resuming in the middle gives exactly the rest, whatever the interleaving was.
    let half = all.len() / 2;
    let mut resumed = server.feed("", Some(&all[half - 1].id)).await;
    let rest = resumed.take(all.len() - half).await;
    let key = |e: &SseEvent| (e.data["shard"].as_u64(), e.data["lsn"].as_u64());
    let expected: BTreeSet<_> = all[half..].iter().map(key).collect();
    let got: BTreeSet<_> = rest.iter().map(key).collect();
    assert_eq!(got, expected);
    resumed.assert_quiet().await;

    // Live, on another shard than shard 0: reservation ids carry their shard.
    let far = skus
        .iter()
        .find(|sku| shard_of[*sku] != 0)
        .expect("a SKU off shard 0");
    let reply = server.reserve("far", far, 1, 60_000).await;
    let id = reply["reservation_id"].as_str().expect("id");
    assert!(id.starts_with(&format!("{}-", shard_of[far])), "{id}");
    for feed in [&mut feed, &mut resumed] {
        let event = feed.next().await;
        assert_eq!(event.data["type"], "inventory.reserved");
        assert_eq!(event.data["reservation_id"], id);
        assert_eq!(event.data["shard"], shard_of[far]);
    }
    drop((feed, resumed));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_writes_arrives_complete_and_in_order() {
    let clock = ManualClock::new(T0);
    let server = Arc::new(Server::start(&clock, 1, Some(16)).await);
    let mut feed = server.feed("?from_lsn=1", None).await;
    feed.assert_quiet().await;
    // Concurrent commands share batches, so records reach the live stream many at once, with a
    // live buffer of only 16 records. (The fall-behind path itself is covered deterministically
    // by the unit test in src/feed.rs: here the socket buffers keep the reader close.)
    let writers = 400;
    let mut tasks = Vec::new();
    for n in 0..writers {
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            server.adjust(&format!("w{n}"), "A", 1).await
        }));
    }
    for task in tasks {
        timeout(WAIT, task).await.expect("in time").expect("task");
    }
    let events = feed.take(writers).await;
    let lsns: Vec<u64> = events
        .iter()
        .filter_map(|e| e.data["lsn"].as_u64())
        .collect();
    let expected: Vec<u64> = (1..=u64::try_from(writers).expect("count")).collect();
    assert_eq!(lsns, expected, "every record once, in order");
    feed.assert_quiet().await;
    drop(feed);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_open_feed_does_not_hold_up_shutdown() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(&clock, 1, None).await;
    server.adjust("a1", "A", 1).await;
    let mut feed = server.feed("?from_lsn=0", None).await;
    let _ = feed.next().await;
    // `stop` fails the test if the server is still running 5 s after the signal.
    server.stop().await;
    drop(feed);
}

/// An L2 book as a feed consumer keeps it: `(side, price) -> qty`.
fn levels_of(book: &Value) -> BTreeMap<(String, i64), i64> {
    let mut levels = BTreeMap::new();
    for side in ["bids", "asks"] {
        for level in book[side].as_array().expect("levels") {
            let key = (
                if side == "bids" { "buy" } else { "sell" }.to_string(),
                level["price"].as_i64().expect("price"),
            );
            levels.insert(key, level["qty"].as_i64().expect("qty"));
        }
    }
    levels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_events_carry_a_consecutive_seq_per_market_and_the_book_says_where_it_stands() {
    let clock = ManualClock::new(T0);
    let server = Server::start(&clock, 2, None).await;
    let symbols = ["BTC-USD", "ETH-USD"];
    for symbol in symbols {
        let body = json!({"request_id": format!("m-{symbol}"), "symbol": symbol,
            "tick_size": 1, "lot_size": 1});
        let (status, reply) = server.post("/v1/markets", body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    // Buys of account a and sells of account b around 100: some rest, some trade.
    let place = |symbol: &'static str, n: u64| {
        let (side, account, price) = if n.is_multiple_of(2) {
            ("buy", "a", 100 + (n % 3) as i64)
        } else {
            ("sell", "b", 101 - (n % 4) as i64)
        };
        let body = json!({"request_id": format!("{symbol}-{n}"), "account": account, "side": side,
            "type": "limit", "price": price, "qty": 1 + n % 3, "time_in_force": "gtc"});
        let server = &server;
        async move {
            let (status, reply) = server
                .post(&format!("/v1/markets/{symbol}/orders"), body)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{reply}");
        }
    };
    let mut feed = server.feed("?from_lsn=0&types=matching", None).await;
    for n in 0..12 {
        for symbol in symbols {
            place(symbol, n).await;
        }
    }
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut traded = 0;
    for event in feed.take(2 + 2 * 12).await {
        let symbol = event.data["symbol"].as_str().expect("symbol").to_string();
        let seq = event.data["seq"]
            .as_u64()
            .expect("every matching event has a seq");
        let previous = last.entry(symbol).or_default();
        assert_eq!(seq, *previous + 1, "consecutive per market: {}", event.data);
        *previous = seq;
        traded += event.data["trades"].as_array().map_or(0, Vec::len);
    }
    assert!(traded > 0, "the orders traded");
    assert_eq!(last.values().copied().collect::<Vec<_>>(), vec![13, 13]);

    // The book says the seq of the last event it includes; events with a larger seq, applied on
    // top of it, give the book as it is later.
    let (status, book) = server.get("/v1/markets/BTC-USD/book").await;
    assert_eq!(status, StatusCode::OK, "{book}");
    assert_eq!(book["seq"], 13);
    let mut levels = levels_of(&book);
    let mut market = server.feed("?from_lsn=0&market=BTC-USD", None).await;
    for n in 12..20 {
        place("BTC-USD", n).await;
    }
    let mut seq = book["seq"].as_u64().expect("seq");
    for event in market.take(13 + 8).await {
        let event_seq = event.data["seq"].as_u64().expect("seq");
        if event_seq <= seq {
            continue;
        }
        assert_eq!(event_seq, seq + 1, "no gap");
        seq = event_seq;
        for change in event.data["book_changes"].as_array().expect("changes") {
            let key = (
                change["side"].as_str().expect("side").to_string(),
                change["price"].as_i64().expect("price"),
            );
            let qty = levels.entry(key.clone()).or_default();
            *qty += change["qty_delta"].as_i64().expect("delta");
            if *qty == 0 {
                levels.remove(&key);
            }
        }
    }
    let (_, now) = server.get("/v1/markets/BTC-USD/book").await;
    assert_eq!(now["seq"], 21);
    assert_eq!(seq, 21);
    assert_eq!(
        levels,
        levels_of(&now),
        "the book plus the events after it is the book now"
    );
    let (_, view) = server.get("/v1/markets/BTC-USD").await;
    assert_eq!(view["seq"], 21);
    drop((feed, market));
    server.stop().await;
}
