//! End-to-end over real HTTP against a server started in the test: the inventory endpoints,
//! their error codes, idempotency, auth, no oversell under concurrency, expiry, and fail-stop
//! on a failed fsync (readiness turns 503 and nothing acknowledged is lost).

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::{CrashMode, FaultPlan, FaultStorage, MemStorage, Storage};
use cairn_server::{AdminToken, App};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-admin-token";

struct Server {
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    engine: Arc<Engine<Cairn>>,
}

impl Server {
    async fn start(storage: Arc<dyn Storage>, clock: &ManualClock) -> Server {
        Server::start_sharded(storage, clock, 1).await
    }

    async fn start_sharded(storage: Arc<dyn Storage>, clock: &ManualClock, shards: u16) -> Server {
        let shard = ShardConfig {
            clock: Arc::new(clock.clone()),
            ..ShardConfig::default()
        };
        let config = EngineConfig {
            data_dir: PathBuf::from("/srv"),
            shard_count: Some(shards),
            shard,
        };
        let engine = Arc::new(
            Engine::<Cairn>::open_on(storage, config)
                .expect("engine opens")
                .0,
        );
        let app = App::new(
            Arc::clone(&engine),
            Arc::new(AdminToken::from_secret(TOKEN)),
        );
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
            engine,
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

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn stock(&self, sku: &str, location: &str, delta: i64) {
        let id = format!("stock-{sku}-{location}-{delta}-{}", self.base);
        let body = json!({"request_id": id, "sku": sku, "location": location, "delta": delta, "reason": "receipt"});
        let (status, reply) = self.post("/v1/inventory/adjustments", body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_confirm_release_and_item_views_follow_the_contract() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock).await;
    server.stock("SKU/1", "W1", 6).await;
    server.stock("SKU/1", "W2", 4).await;

    let (status, reserved) = server
        .post(
            "/v1/inventory/reservations",
            json!({"request_id": "r1", "order_id": "o1", "lines": [{"sku": "SKU/1", "qty": 8}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reserved}");
    assert_eq!(reserved["state"], "active");
    assert_eq!(
        reserved["expires_at_ms"],
        json!(1_800_000_000_000u64 + 900_000)
    );
    let lines = reserved["lines"].as_array().expect("lines");
    let total: i64 = lines.iter().map(|l| l["qty"].as_i64().unwrap_or(0)).sum();
    assert_eq!(total, 8, "every unit is placed: {reserved}");
    assert!(reserved["lsn"].as_u64().is_some_and(|lsn| lsn > 0));
    let id = reserved["reservation_id"].as_str().expect("id").to_string();

    let (status, item) = server.get("/v1/inventory/items/SKU%2F1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["total_available"], 2);
    assert_eq!(item["locations"].as_array().map(Vec::len), Some(2));

    let (status, fetched) = server
        .get(&format!("/v1/inventory/reservations/{id}"))
        .await;
    assert_eq!(
        (status, fetched["order_id"].as_str()),
        (StatusCode::OK, Some("o1"))
    );

    let (status, confirmed) = server
        .post(
            &format!("/v1/inventory/reservations/{id}/confirm"),
            json!({"request_id": "c1"}),
        )
        .await;
    assert_eq!(
        (status, confirmed["state"].as_str()),
        (StatusCode::OK, Some("confirmed"))
    );
    let (status, again) = server
        .post(
            &format!("/v1/inventory/reservations/{id}/release"),
            json!({"request_id": "x1"}),
        )
        .await;
    assert_eq!(
        (status, code(&again)),
        (StatusCode::CONFLICT, "reservation_not_active")
    );
    let (_, item) = server.get("/v1/inventory/items/SKU%2F1").await;
    let on_hand: i64 = item["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| l["on_hand"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(on_hand, 2, "confirming shipped 8 of 10");

    let (status, missing) = server.get("/v1/inventory/reservations/0-999").await;
    assert_eq!(
        (status, code(&missing)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, never) = server.get("/v1/inventory/items/never-seen").await;
    assert_eq!((status, code(&never)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, history) = server.get("/v1/inventory/items/SKU%2F1/history").await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"reserved") && kinds.contains(&"confirmed"),
        "{history}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_first_outcome_and_a_reused_id_is_refused() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock).await;
    server.stock("A", "W", 5).await;
    let body = json!({"request_id": "same", "order_id": "o1", "lines": [{"sku": "A", "location": "W", "qty": 2}]});
    let (first_status, first) = server
        .post("/v1/inventory/reservations", body.clone())
        .await;
    let (again_status, again) = server.post("/v1/inventory/reservations", body).await;
    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(again_status, StatusCode::CREATED);
    assert_eq!(first["reservation_id"], again["reservation_id"]);
    assert_eq!(first["lsn"], again["lsn"]);
    let (_, item) = server.get("/v1/inventory/items/A").await;
    assert_eq!(
        item["total_available"], 3,
        "the retry reserved nothing more"
    );
    let other = json!({"request_id": "same", "order_id": "o1", "lines": [{"sku": "A", "location": "W", "qty": 3}]});
    let (status, reused) = server.post("/v1/inventory/reservations", other).await;
    assert_eq!(
        (status, code(&reused)),
        (StatusCode::CONFLICT, "request_id_reused")
    );
    // A refusal decided against state is remembered too.
    let short =
        json!({"request_id": "short", "order_id": "o2", "lines": [{"sku": "A", "qty": 50}]});
    let (status, refused) = server
        .post("/v1/inventory/reservations", short.clone())
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "insufficient_stock")
    );
    assert_eq!(refused["error"]["details"]["lines"][0]["available"], 3);
    server.stock("A", "W", 100).await;
    let (status, still) = server.post("/v1/inventory/reservations", short).await;
    assert_eq!(
        (status, code(&still)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "the first outcome stands"
    );
    server.stop().await;
}

/// Two SKUs that live on different shards of `shards`.
fn skus_on_two_shards(shards: u16) -> (String, String) {
    let shard = |sku: &str| cairn_types::shard_for_key(sku.as_bytes(), shards);
    let first = "SKU-0".to_string();
    let second = (1..1000)
        .map(|n| format!("SKU-{n}"))
        .find(|sku| shard(sku) != shard(&first))
        .expect("some SKU lands on another shard");
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_one_request_across_every_shard_and_restarts() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start_sharded(Arc::new(memory.clone()), &clock, 4).await;
    let (a, b) = skus_on_two_shards(4);
    let adjust = |sku: &str, id: &str| json!({"request_id": id, "sku": sku, "location": "W", "delta": 5, "reason": "receipt"});
    let (status, first) = server
        .post("/v1/inventory/adjustments", adjust(&a, "once"))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, reused) = server
        .post("/v1/inventory/adjustments", adjust(&b, "once"))
        .await;
    assert_eq!(
        (status, code(&reused)),
        (StatusCode::CONFLICT, "request_id_reused"),
        "the same id on another shard: {reused}"
    );
    let (status, _) = server.get(&format!("/v1/inventory/items/{b}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing reached the other shard"
    );
    let reservation = |sku: &str| json!({"request_id": "cross", "order_id": "o-cross", "lines": [{"sku": sku, "location": "W", "qty": 1}]});
    let (status, _) = server
        .post("/v1/inventory/reservations", reservation(&a))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = server
        .post("/v1/inventory/reservations", reservation(&a))
        .await;
    assert_eq!(status, StatusCode::CREATED, "a retry is fine: {again}");
    // A request refused before a decision is not remembered: the id stays free.
    let (status, _) = server
        .post(
            "/v1/inventory/adjustments",
            json!({"request_id": "free", "sku": a, "location": "W", "delta": 0, "reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;

    // The ids survive a restart (they are in each shard's log and snapshots).
    memory.crash(CrashMode::DropUnsynced);
    let server = Server::start_sharded(Arc::new(memory), &clock, 4).await;
    for (path, body) in [
        ("/v1/inventory/adjustments", adjust(&b, "once")),
        ("/v1/inventory/reservations", reservation(&b)),
    ] {
        let (status, reused) = server.post(path, body).await;
        assert_eq!(
            (status, code(&reused)),
            (StatusCode::CONFLICT, "request_id_reused"),
            "after a restart: {reused}"
        );
    }
    let (status, retried) = server
        .post("/v1/inventory/adjustments", adjust(&a, "once"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retried["item"]["on_hand"], 5, "the retry changed nothing");
    let (status, _) = server
        .post("/v1/inventory/adjustments", adjust(&b, "free"))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an id only ever refused as bad input is free"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_buyers_of_a_hundred_units_get_exactly_a_hundred() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Arc::new(Server::start(Arc::new(MemStorage::new()), &clock).await);
    server.stock("HOT", "W", 100).await;
    let mut tasks = Vec::new();
    for buyer in 0..1000 {
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let body = json!({"request_id": format!("buy-{buyer}"), "order_id": format!("o-{buyer}"), "lines": [{"sku": "HOT", "qty": 1}]});
            server.post("/v1/inventory/reservations", body).await
        }));
    }
    let mut created = 0;
    let mut short = 0;
    for task in tasks {
        let (status, reply) = task.await.expect("task");
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT if code(&reply) == "insufficient_stock" => short += 1,
            other => panic!("unexpected {other}: {reply}"),
        }
    }
    assert_eq!((created, short), (100, 900));
    let (_, item) = server.get("/v1/inventory/items/HOT").await;
    assert_eq!(item["locations"][0]["reserved"], 100);
    assert_eq!(item["total_available"], 0);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_gives_stock_back_without_other_traffic() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock).await;
    server.stock("A", "W", 1).await;
    let body = json!({"request_id": "r", "order_id": "o", "lines": [{"sku": "A", "qty": 1}], "ttl_ms": 1000});
    let (status, reserved) = server.post("/v1/inventory/reservations", body).await;
    assert_eq!(status, StatusCode::CREATED);
    clock.advance_ms(1000);
    let id = reserved["reservation_id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, view) = server
            .get(&format!("/v1/inventory/reservations/{id}"))
            .await;
        if view["state"] == "expired" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not expired within the tick interval: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, item) = server.get("/v1/inventory/items/A").await;
    assert_eq!(item["total_available"], 1);
    let late = json!({"request_id": "late", "order_id": "o", "lines": [{"sku": "A", "qty": 1}]});
    let (status, refused) = server.post("/v1/inventory/reservations", late).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "order_closed")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_missing_tokens_get_clear_errors_and_never_reach_the_log() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock).await;
    let cases = [
        json!({"request_id": "b1", "sku": "A", "location": "W", "delta": 1.5, "reason": "r"}),
        json!({"request_id": "b2", "sku": "A", "location": "W", "delta": 0, "reason": "r"}),
        json!({"request_id": "b3", "sku": "A", "location": "W", "delta": 9_007_199_254_740_993i64, "reason": "r"}),
        json!({"request_id": "b4", "sku": "x".repeat(129), "location": "W", "delta": 1, "reason": "r"}),
        json!({"request_id": "", "sku": "A", "location": "W", "delta": 1, "reason": "r"}),
        json!({"sku": "A", "location": "W", "delta": 1, "reason": "r"}),
        json!({"request_id": "b7", "sku": "A\u{0}", "location": "W", "delta": 1, "reason": "r"}),
    ];
    for body in cases {
        let (status, reply) = server.post("/v1/inventory/adjustments", body.clone()).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::BAD_REQUEST, "invalid_argument"),
            "{body}"
        );
    }
    for lines in [
        json!([]),
        json!([{"sku": "A", "qty": 0}]),
        json!([{"sku": "A", "qty": -1}]),
    ] {
        let body = json!({"request_id": "rr", "order_id": "o", "lines": lines});
        let (status, reply) = server.post("/v1/inventory/reservations", body).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::BAD_REQUEST, "invalid_argument")
        );
    }
    let huge = json!({"request_id": "big", "sku": "A", "location": "W", "delta": 1, "reason": "r".repeat(2 * 1024 * 1024)});
    // On its own connection: the server answers 413 without reading the rest of the body and
    // closes the connection, which a pooled client might otherwise pick for the next request.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/inventory/adjustments", server.base))
        .bearer_auth(TOKEN)
        .json(&huge)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, code(&reply)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let anonymous = server
        .client
        .get(format!("{}/v1/inventory/items/A", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = server
        .client
        .get(format!("{}/metrics", server.base))
        .bearer_auth("nope")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let health = server
        .client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), StatusCode::OK);
    let shard = server.engine.shard(cairn_types::ShardId(0)).expect("shard");
    assert_eq!(
        shard.durable_lsn(),
        cairn_types::Lsn(0),
        "no refused input reached the log"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_makes_the_node_unready_and_loses_nothing_acknowledged() {
    let memory = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(memory.clone()));
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(faulty.clone()), &clock).await;
    server.stock("A", "W", 10).await;
    let (status, _) = server
        .post(
            "/v1/inventory/reservations",
            json!({"request_id": "ok", "order_id": "o1", "lines": [{"sku": "A", "qty": 4}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    faulty.set_plan(FaultPlan {
        fail_sync_from: Some(1),
        ..FaultPlan::default()
    });
    let (status, failed) = server
        .post(
            "/v1/inventory/reservations",
            json!({"request_id": "lost", "order_id": "o2", "lines": [{"sku": "A", "qty": 1}]}),
        )
        .await;
    assert_eq!(
        (status, code(&failed)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{failed}"
    );
    let ready = server
        .client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.expect("json");
    assert!(
        body["stopped_shards"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fdatasync")),
        "{body}"
    );
    server.stop().await;

    memory.crash(CrashMode::DropUnsynced);
    let server = Server::start(Arc::new(memory), &clock).await;
    let (_, item) = server.get("/v1/inventory/items/A").await;
    assert_eq!(
        item["locations"][0]["reserved"], 4,
        "the acknowledged reservation is there, the failed one is not"
    );
    let ready = server
        .client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_nest_and_revoked_tokens_stop_at_once() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock).await;
    let mut secrets = std::collections::BTreeMap::new();
    for role in ["viewer", "client", "operator"] {
        let (status, created) = server
            .post(
                "/v1/tokens",
                json!({"role": role, "name": format!("{role}-1")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["role"], role);
        secrets.insert(role, created["token"].as_str().expect("secret").to_string());
    }
    let (status, taken) = server
        .post("/v1/tokens", json!({"role": "viewer", "name": "viewer-1"}))
        .await;
    assert_eq!(
        (status, code(&taken)),
        (StatusCode::CONFLICT, "already_exists")
    );
    let (status, bad) = server
        .post("/v1/tokens", json!({"role": "admin", "name": "x"}))
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );

    let as_role = |role: &str, method: reqwest::Method, path: &str, body: Value| {
        let request = server
            .client
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(&secrets[role])
            .json(&body);
        async move { request.send().await.expect("sent").status() }
    };
    let adjust =
        json!({"request_id": "adj", "sku": "A", "location": "W", "delta": 5, "reason": "r"});
    let reserve = json!({"request_id": "res", "order_id": "o", "lines": [{"sku": "A", "qty": 1}]});
    assert_eq!(
        as_role(
            "client",
            reqwest::Method::POST,
            "/v1/inventory/adjustments",
            adjust.clone()
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_role(
            "operator",
            reqwest::Method::POST,
            "/v1/inventory/adjustments",
            adjust
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        as_role(
            "viewer",
            reqwest::Method::POST,
            "/v1/inventory/reservations",
            reserve.clone()
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_role(
            "client",
            reqwest::Method::POST,
            "/v1/inventory/reservations",
            reserve
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        as_role(
            "viewer",
            reqwest::Method::GET,
            "/v1/inventory/items/A",
            Value::Null
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        as_role("viewer", reqwest::Method::GET, "/metrics", Value::Null).await,
        StatusCode::OK
    );
    let operator_creates = json!({"role": "viewer", "name": "sneaky"});
    assert_eq!(
        as_role(
            "operator",
            reqwest::Method::POST,
            "/v1/tokens",
            operator_creates
        )
        .await,
        StatusCode::FORBIDDEN
    );

    let revoked = server
        .client
        .delete(format!("{}/v1/tokens/client-1", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        as_role(
            "client",
            reqwest::Method::GET,
            "/v1/inventory/items/A",
            Value::Null
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let (status, listed) = server.get("/v1/tokens").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["operator-1", "viewer-1"]);
    assert!(
        !listed.to_string().contains(&secrets["viewer"]),
        "secrets are never listed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_matches_live_responses() {
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start(Arc::new(MemStorage::new()), &clock).await;
    let document: Value = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/v1/inventory/adjustments",
        "/v1/inventory/counts",
        "/v1/inventory/policies",
        "/v1/inventory/reservations",
        "/v1/inventory/reservations/{id}",
        "/v1/inventory/reservations/{id}/confirm",
        "/v1/inventory/reservations/{id}/release",
        "/v1/inventory/items/{sku}",
        "/v1/inventory/items/{sku}/history",
        "/v1/tokens",
        "/v1/tokens/{name}",
        "/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} is missing from /openapi.json"
        );
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
    let (_, adjusted) = server
        .post(
            "/v1/inventory/adjustments",
            json!({"request_id": "a", "sku": "A", "location": "W", "delta": 3, "reason": "r"}),
        )
        .await;
    assert_eq!(keys(&adjusted), properties("ItemReplyDoc"));
    assert_eq!(keys(&adjusted["item"]), properties("ItemDoc"));
    let (_, reserved) = server
        .post(
            "/v1/inventory/reservations",
            json!({"request_id": "r", "order_id": "o", "lines": [{"sku": "A", "qty": 1}]}),
        )
        .await;
    assert_eq!(keys(&reserved), properties("ReservationDoc"));
    assert_eq!(keys(&reserved["lines"][0]), properties("LineDoc"));
    let (_, item) = server.get("/v1/inventory/items/A").await;
    assert_eq!(keys(&item), properties("ItemsDoc"));
    let (_, history) = server.get("/v1/inventory/items/A/history").await;
    assert_eq!(keys(&history["events"][0]), properties("HistoryEventDoc"));
    let (_, error) = server.get("/v1/inventory/items/none").await;
    assert_eq!(keys(&error["error"]), properties("ErrorInnerDoc"));
    let metrics = server
        .client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains(r#"cairn_http_requests_total{method="POST",route="/v1/inventory/reservations",status="201"} 1"#),
        "request counts by route and status"
    );
    assert!(
        text.contains(
            r#"cairn_http_request_seconds_count{method="GET",route="/v1/inventory/items/{sku}"} 2"#
        ),
        "latencies"
    );
    assert!(
        text.contains("cairn_log_fsync_seconds_bucket"),
        "fsync latency"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_across_shards_is_one_reservation_all_or_nothing() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(1_800_000_000_000);
    let server = Server::start_sharded(Arc::new(memory.clone()), &clock, 4).await;
    let (a, b) = skus_on_two_shards(4);
    server.stock(&a, "W", 10).await;
    server.stock(&b, "W", 10).await;
    let body = |id: &str, order: &str, qty_b: i64| {
        json!({"request_id": id, "order_id": order, "lines": [
            {"sku": a, "location": "W", "qty": 2}, {"sku": b, "qty": qty_b}]})
    };
    let (status, made) = server
        .post("/v1/inventory/reservations", body("x1", "ox1", 3))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["reservation_id"].as_str().expect("an id").to_string();
    assert!(
        id.contains("-t"),
        "a multi-shard id names its transaction: {id}"
    );
    assert_eq!(made["state"], "active");
    assert_eq!(made["order_id"], "ox1");
    assert_eq!(made["lines"].as_array().map(Vec::len), Some(2), "{made}");
    assert!(made["lsn"].as_u64().is_some());
    // A retry answers the same reservation; the same id with another body is refused.
    let (status, again) = server
        .post("/v1/inventory/reservations", body("x1", "ox1", 3))
        .await;
    assert_eq!(
        (status, &again["reservation_id"]),
        (StatusCode::CREATED, &made["reservation_id"])
    );
    let (status, reused) = server
        .post("/v1/inventory/reservations", body("x1", "ox1", 4))
        .await;
    assert_eq!(
        (status, code(&reused)),
        (StatusCode::CONFLICT, "request_id_reused")
    );
    for (sku, reserved) in [(&a, 2), (&b, 3)] {
        let (_, item) = server.get(&format!("/v1/inventory/items/{sku}")).await;
        assert_eq!(item["locations"][0]["reserved"], reserved, "{item}");
    }
    // One shard short: 409 naming only the short line, and nothing held anywhere.
    let (status, short) = server
        .post("/v1/inventory/reservations", body("x2", "ox2", 8))
        .await;
    assert_eq!(
        (status, code(&short)),
        (StatusCode::CONFLICT, "insufficient_stock"),
        "{short}"
    );
    let lines = short["error"]["details"]["lines"]
        .as_array()
        .expect("lines");
    assert_eq!(lines.len(), 1, "{short}");
    assert_eq!(lines[0]["sku"], b.as_str());
    assert_eq!(lines[0]["available"], 7);
    let (_, item) = server.get(&format!("/v1/inventory/items/{a}")).await;
    assert_eq!(
        item["locations"][0]["reserved"], 2,
        "the other shard's hold was released: {item}"
    );
    // The reservation reads as one; its parts cannot be finished alone.
    let (status, read) = server
        .get(&format!("/v1/inventory/reservations/{id}"))
        .await;
    assert_eq!(
        (status, &read["state"]),
        (StatusCode::OK, &json!("active")),
        "{read}"
    );
    let history = server
        .get(&format!("/v1/inventory/items/{a}/history"))
        .await
        .1;
    let part = history["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .rev()
                .filter(|e| e["type"] == "reserved")
                .find_map(|e| e["reservation_id"].as_str())
        })
        .expect("the part appears in the history")
        .to_string();
    let (status, alone) = server
        .post(
            &format!("/v1/inventory/reservations/{part}/confirm"),
            json!({"request_id": "part"}),
        )
        .await;
    assert_eq!(
        (status, code(&alone)),
        (StatusCode::CONFLICT, "part_of_transaction"),
        "{alone}"
    );
    assert_eq!(alone["error"]["details"]["reservation_id"], id.as_str());
    // Confirm ships every line on every shard.
    let (status, confirmed) = server
        .post(
            &format!("/v1/inventory/reservations/{id}/confirm"),
            json!({"request_id": "c-x1"}),
        )
        .await;
    assert_eq!(
        (status, &confirmed["state"]),
        (StatusCode::OK, &json!("confirmed")),
        "{confirmed}"
    );
    let (status, late) = server
        .post(
            &format!("/v1/inventory/reservations/{id}/release"),
            json!({"request_id": "r-x1"}),
        )
        .await;
    assert_eq!(
        (status, code(&late)),
        (StatusCode::CONFLICT, "reservation_not_active"),
        "{late}"
    );
    for (sku, on_hand) in [(&a, 8), (&b, 7)] {
        let (_, item) = server.get(&format!("/v1/inventory/items/{sku}")).await;
        assert_eq!(item["locations"][0]["on_hand"], on_hand, "{item}");
        assert_eq!(item["locations"][0]["reserved"], 0, "{item}");
    }
    // Another one, released after a crash and restart: it is still one reservation.
    let (status, second) = server
        .post("/v1/inventory/reservations", body("x3", "ox3", 1))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let second_id = second["reservation_id"].as_str().expect("id").to_string();
    server.stop().await;
    memory.crash(CrashMode::DropUnsynced);
    let server = Server::start_sharded(Arc::new(memory), &clock, 4).await;
    let (status, read) = server
        .get(&format!("/v1/inventory/reservations/{second_id}"))
        .await;
    assert_eq!(
        (status, &read["state"]),
        (StatusCode::OK, &json!("active")),
        "{read}"
    );
    let (status, released) = server
        .post(
            &format!("/v1/inventory/reservations/{second_id}/release"),
            json!({"request_id": "r-x3"}),
        )
        .await;
    assert_eq!(
        (status, &released["state"]),
        (StatusCode::OK, &json!("released")),
        "{released}"
    );
    for sku in [&a, &b] {
        let (_, item) = server.get(&format!("/v1/inventory/items/{sku}")).await;
        assert_eq!(item["locations"][0]["reserved"], 0, "{item}");
    }
    let (status, missing) = server.get("/v1/inventory/reservations/0-t999").await;
    assert_eq!(
        (status, code(&missing)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    server.stop().await;
}
