//! End-to-end over real gRPC (HTTP/2) against a server started in the test, through the generated
//! client: every RPC, the error codes and their metadata, auth and roles, idempotent retries (also
//! across HTTP and gRPC), the message size limit, and the `Pipeline` stream (no oversell, every
//! tag answered once, more requests than the in-flight bound, shutdown). Every wait is bounded.

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::MemStorage;
use cairn_server::grpc::proto::inventory_client::InventoryClient;
use cairn_server::grpc::proto::pipeline_request::Request as Call;
use cairn_server::grpc::proto::pipeline_response::Reply;
use cairn_server::grpc::proto::{
    AdjustRequest, ConfirmRequest, CountRequest, GetItemRequest, GetReservationRequest,
    HistoryRequest, LineRequest, PipelineRequest, PipelineResponse, ReleaseRequest, ReserveRequest,
    SetPolicyRequest,
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
    client: InventoryClient<Channel>,
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start() -> Server {
        let clock = ManualClock::new(1_800_000_000_000);
        let shard = ShardConfig {
            clock: Arc::new(clock),
            ..ShardConfig::default()
        };
        let config = EngineConfig {
            data_dir: PathBuf::from("/srv"),
            shard_count: Some(1),
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
            client: InventoryClient::new(channel),
            address,
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

    fn client(&self) -> InventoryClient<Channel> {
        self.client.clone()
    }

    async fn stock(&self, sku: &str, location: &str, delta: i64) {
        let request = AdjustRequest {
            request_id: format!("stock-{sku}-{location}-{delta}"),
            sku: sku.into(),
            location: location.into(),
            delta,
            reason: "receipt".into(),
        };
        bounded("stock", self.client().adjust(authed(TOKEN, request)))
            .await
            .expect("stocked");
    }

    fn token(&self, name: &str, role: Role) -> String {
        self.app
            .admin
            .tokens
            .create(name, role, None)
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

fn error_details(status: &tonic::Status) -> Value {
    let text = status
        .metadata()
        .get("cairn-error-details")
        .and_then(|value| value.to_str().ok())
        .expect("cairn-error-details");
    serde_json::from_str(text).expect("details are JSON")
}

fn line(sku: &str, location: Option<&str>, qty: i64) -> LineRequest {
    LineRequest {
        sku: sku.into(),
        location: location.map(Into::into),
        qty,
    }
}

fn reserve(request_id: &str, order_id: &str, lines: Vec<LineRequest>) -> ReserveRequest {
    ReserveRequest {
        request_id: request_id.into(),
        order_id: order_id.into(),
        lines,
        ttl_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_follows_the_contract() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("SKU/1", "W1", 6).await;
    let adjusted = bounded(
        "adjust",
        client.adjust(authed(
            TOKEN,
            AdjustRequest {
                request_id: "a2".into(),
                sku: "SKU/1".into(),
                location: "W2".into(),
                delta: 4,
                reason: "receipt".into(),
            },
        )),
    )
    .await
    .expect("adjusted")
    .into_inner();
    let item = adjusted.item.expect("item");
    assert_eq!((item.on_hand, item.available), (4, 4));
    assert!(adjusted.lsn > 0);

    let counted = bounded(
        "count",
        client.count(authed(
            TOKEN,
            CountRequest {
                request_id: "c1".into(),
                sku: "SKU/1".into(),
                location: "W2".into(),
                on_hand: 5,
                expected_on_hand: Some(4),
            },
        )),
    )
    .await
    .expect("counted")
    .into_inner();
    assert_eq!(counted.item.expect("item").on_hand, 5);
    assert!(counted.lsn > adjusted.lsn);
    let conflict = bounded(
        "count",
        client.count(authed(
            TOKEN,
            CountRequest {
                request_id: "c2".into(),
                sku: "SKU/1".into(),
                location: "W2".into(),
                on_hand: 7,
                expected_on_hand: Some(1),
            },
        )),
    )
    .await
    .expect_err("a stale count is refused");
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&conflict), "count_conflict");
    assert_eq!(error_details(&conflict)["on_hand"], 5);
    assert!(conflict.message().starts_with("count_conflict: "));

    let policy = bounded(
        "set_policy",
        client.set_policy(authed(
            TOKEN,
            SetPolicyRequest {
                request_id: "p1".into(),
                sku: "SKU/1".into(),
                location: "W2".into(),
                safety_stock: Some(1),
                backorder_limit: None,
            },
        )),
    )
    .await
    .expect("policy set")
    .into_inner()
    .item
    .expect("item");
    assert_eq!((policy.safety_stock, policy.available), (1, 4));

    // 6 at W1 and 4 available at W2: a line without a location takes from both.
    let reserved = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve("r1", "o1", vec![line("SKU/1", None, 8)]),
        )),
    )
    .await
    .expect("reserved")
    .into_inner();
    assert_eq!(reserved.state, "active");
    assert_eq!(reserved.expires_at_ms, 1_800_000_000_000 + 900_000);
    assert_eq!(reserved.lines.iter().map(|l| l.qty).sum::<i64>(), 8);
    assert!(reserved.lsn.is_some_and(|lsn| lsn > counted.lsn));
    assert!(reserved.reservation_id.starts_with("0-"));

    let items = bounded(
        "get_item",
        client.get_item(authed(
            TOKEN,
            GetItemRequest {
                sku: "SKU/1".into(),
            },
        )),
    )
    .await
    .expect("item")
    .into_inner();
    assert_eq!((items.sku.as_str(), items.total_available), ("SKU/1", 2));
    assert_eq!(items.locations.len(), 2);

    let fetched = bounded(
        "get_reservation",
        client.get_reservation(authed(
            TOKEN,
            GetReservationRequest {
                reservation_id: reserved.reservation_id.clone(),
            },
        )),
    )
    .await
    .expect("fetched")
    .into_inner();
    assert_eq!(fetched.order_id, "o1");
    assert_eq!(fetched.lsn, None, "a read carries no lsn");

    let confirmed = bounded(
        "confirm",
        client.confirm(authed(
            TOKEN,
            ConfirmRequest {
                request_id: "k1".into(),
                reservation_id: reserved.reservation_id.clone(),
            },
        )),
    )
    .await
    .expect("confirmed")
    .into_inner();
    assert_eq!(confirmed.state, "confirmed");
    assert!(confirmed.lsn.is_some());
    let late = bounded(
        "release",
        client.release(authed(
            TOKEN,
            ReleaseRequest {
                request_id: "x1".into(),
                reservation_id: reserved.reservation_id.clone(),
            },
        )),
    )
    .await
    .expect_err("a confirmed reservation cannot be released");
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&late), "reservation_not_active");
    assert_eq!(error_details(&late)["state"], "confirmed");

    // A reservation released in time.
    let second = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve("r2", "o2", vec![line("SKU/1", None, 1)]),
        )),
    )
    .await
    .expect("reserved")
    .into_inner();
    let released = bounded(
        "release",
        client.release(authed(
            TOKEN,
            ReleaseRequest {
                request_id: "x2".into(),
                reservation_id: second.reservation_id.clone(),
            },
        )),
    )
    .await
    .expect("released")
    .into_inner();
    assert_eq!(released.state, "released");

    let history = bounded(
        "history",
        client.history(authed(
            TOKEN,
            HistoryRequest {
                sku: "SKU/1".into(),
            },
        )),
    )
    .await
    .expect("history")
    .into_inner();
    let kinds: Vec<&str> = history.events.iter().map(|e| e.r#type.as_str()).collect();
    assert!(
        kinds.contains(&"reserved") && kinds.contains(&"confirmed"),
        "{kinds:?}"
    );
    let reserved_event = history
        .events
        .iter()
        .find(|e| e.r#type == "reserved")
        .expect("a reserved event");
    assert_eq!(reserved_event.request_id.as_deref(), Some("r1"));
    assert_eq!(reserved_event.actor.as_deref(), Some("admin"));
    assert_eq!(
        reserved_event.reservation_id.as_deref(),
        Some(reserved.reservation_id.as_str())
    );

    // Unknown things are NOT_FOUND.
    for id in ["0-999", "7-1", "garbage"] {
        let missing = bounded(
            "get_reservation",
            client.get_reservation(authed(
                TOKEN,
                GetReservationRequest {
                    reservation_id: id.into(),
                },
            )),
        )
        .await
        .expect_err("unknown reservation");
        assert_eq!(
            (missing.code(), error_code(&missing)),
            (Code::NotFound, "not_found")
        );
    }
    let never = bounded(
        "get_item",
        client.get_item(authed(
            TOKEN,
            GetItemRequest {
                sku: "never-seen".into(),
            },
        )),
    )
    .await
    .expect_err("unknown SKU");
    assert_eq!(
        (never.code(), error_code(&never)),
        (Code::NotFound, "not_found")
    );
    let confirm_missing = bounded(
        "confirm",
        client.confirm(authed(
            TOKEN,
            ConfirmRequest {
                request_id: "k9".into(),
                reservation_id: "0-12345".into(),
            },
        )),
    )
    .await
    .expect_err("unknown reservation");
    assert_eq!(confirm_missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_stable_code_and_details() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("A", "W", 3).await;

    let short = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve(
                "s1",
                "o1",
                vec![line("A", None, 5), line("A", Some("W"), 1)],
            ),
        )),
    )
    .await
    .expect_err("short");
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&short), "insufficient_stock");
    assert!(short.message().starts_with("insufficient_stock: "));
    let details = error_details(&short);
    assert_eq!(details["lines"][0]["sku"], "A");
    assert_eq!(details["lines"][0]["requested"], 5);
    assert_eq!(details["lines"][0]["available"], 3);

    // Bad input is INVALID_ARGUMENT and never reaches the log.
    let zero = bounded(
        "reserve",
        client.reserve(authed(TOKEN, reserve("z1", "o2", vec![line("A", None, 0)]))),
    )
    .await
    .expect_err("qty 0");
    assert_eq!(
        (zero.code(), error_code(&zero)),
        (Code::InvalidArgument, "invalid_argument")
    );
    for bad in [
        AdjustRequest {
            request_id: "b1".into(),
            sku: "A".into(),
            location: "W".into(),
            delta: 0,
            reason: "r".into(),
        },
        AdjustRequest {
            request_id: String::new(),
            sku: "A".into(),
            location: "W".into(),
            delta: 1,
            reason: "r".into(),
        },
        AdjustRequest {
            request_id: "b3".into(),
            sku: "x".repeat(129),
            location: "W".into(),
            delta: 1,
            reason: "r".into(),
        },
        AdjustRequest {
            request_id: "b4".into(),
            sku: "A".into(),
            location: "W".into(),
            delta: (1 << 53) + 1,
            reason: "r".into(),
        },
    ] {
        let refused = bounded("adjust", client.adjust(authed(TOKEN, bad)))
            .await
            .expect_err("bad input");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
    let empty = bounded(
        "reserve",
        client.reserve(authed(TOKEN, reserve("e1", "o3", Vec::new()))),
    )
    .await
    .expect_err("no lines");
    assert_eq!(empty.code(), Code::InvalidArgument);

    // The same request_id with another body.
    bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve("same", "o4", vec![line("A", None, 1)]),
        )),
    )
    .await
    .expect("reserved");
    let reused = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve("same", "o4", vec![line("A", None, 2)]),
        )),
    )
    .await
    .expect_err("reused");
    assert_eq!(
        (reused.code(), error_code(&reused)),
        (Code::Aborted, "request_id_reused")
    );

    // Non-ASCII in the details is escaped into valid metadata.
    let unicode = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve("u1", "o5", vec![line("Käse-🧀", None, 1)]),
        )),
    )
    .await
    .expect_err("never stocked");
    assert_eq!(error_code(&unicode), "insufficient_stock");
    assert_eq!(error_details(&unicode)["lines"][0]["sku"], "Käse-🧀");

    // A message over 1 MiB is refused by the transport.
    let huge = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            reserve("h1", &"o".repeat(1 << 20), vec![line("A", None, 1)]),
        )),
    )
    .await
    .expect_err("too large");
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");

    let items = bounded(
        "get_item",
        client.get_item(authed(TOKEN, GetItemRequest { sku: "A".into() })),
    )
    .await
    .expect("item")
    .into_inner();
    assert_eq!(
        items.total_available, 2,
        "only the one reservation took stock"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_checked() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("A", "W", 3).await;
    let viewer = server.token("dashboard", Role::Viewer);
    let shop = server.token("shop", Role::Client);

    let anonymous = bounded(
        "get_item",
        client.get_item(GetItemRequest { sku: "A".into() }),
    )
    .await
    .expect_err("no token");
    assert_eq!(
        (anonymous.code(), error_code(&anonymous)),
        (Code::Unauthenticated, "unauthenticated")
    );
    let unknown = bounded(
        "get_item",
        client.get_item(authed("not-a-token", GetItemRequest { sku: "A".into() })),
    )
    .await
    .expect_err("bad token");
    assert_eq!(unknown.code(), Code::Unauthenticated);
    let mut not_bearer = tonic::Request::new(GetItemRequest { sku: "A".into() });
    not_bearer
        .metadata_mut()
        .insert("authorization", TOKEN.parse().expect("ascii"));
    let malformed = bounded("get_item", client.get_item(not_bearer))
        .await
        .expect_err("not a bearer token");
    assert_eq!(malformed.code(), Code::Unauthenticated);

    // A viewer reads but may not reserve.
    bounded(
        "get_item",
        client.get_item(authed(&viewer, GetItemRequest { sku: "A".into() })),
    )
    .await
    .expect("a viewer reads");
    let denied = bounded(
        "reserve",
        client.reserve(authed(
            &viewer,
            reserve("v1", "o1", vec![line("A", None, 1)]),
        )),
    )
    .await
    .expect_err("viewer reserving");
    assert_eq!(
        (denied.code(), error_code(&denied)),
        (Code::PermissionDenied, "permission_denied")
    );
    // A client reserves but may not adjust.
    let mine = bounded(
        "reserve",
        client.reserve(authed(&shop, reserve("c1", "o2", vec![line("A", None, 1)]))),
    )
    .await
    .expect("a client reserves")
    .into_inner();
    let adjust = AdjustRequest {
        request_id: "c2".into(),
        sku: "A".into(),
        location: "W".into(),
        delta: 1,
        reason: "r".into(),
    };
    let denied = bounded("adjust", client.adjust(authed(&shop, adjust)))
        .await
        .expect_err("client adjusting");
    assert_eq!(denied.code(), Code::PermissionDenied);
    // The history names the token that acted.
    let history = bounded(
        "history",
        client.history(authed(&viewer, HistoryRequest { sku: "A".into() })),
    )
    .await
    .expect("history")
    .into_inner();
    assert!(
        history
            .events
            .iter()
            .any(|e| e.actor.as_deref() == Some("shop")
                && e.reservation_id.as_deref() == Some(mine.reservation_id.as_str())),
        "{history:?}"
    );

    // Revocation applies at once, also to an open pipeline.
    let (requests, inbound) = tokio::sync::mpsc::channel::<PipelineRequest>(4);
    let outbound = futures_util::stream::unfold(inbound, |mut inbound| async move {
        inbound.recv().await.map(|request| (request, inbound))
    });
    let mut responses = bounded("pipeline", client.pipeline(authed(&shop, outbound)))
        .await
        .expect("pipeline opens")
        .into_inner();
    let read = |tag| PipelineRequest {
        tag,
        request: Some(Call::GetItem(GetItemRequest { sku: "A".into() })),
    };
    requests.send(read(1)).await.expect("sent");
    let first = bounded("response", responses.message())
        .await
        .expect("stream")
        .expect("response");
    assert!(matches!(first.reply, Some(Reply::GetItem(_))), "{first:?}");
    server.app.admin.tokens.revoke("shop").expect("revoked");
    requests.send(read(2)).await.expect("sent");
    let second = bounded("response", responses.message())
        .await
        .expect("stream")
        .expect("response");
    match second.reply {
        Some(Reply::Error(error)) => {
            assert_eq!(
                (error.code.as_str(), error.grpc_code),
                ("unauthenticated", Code::Unauthenticated as i32)
            );
        }
        other => panic!("a revoked token still works: {other:?}"),
    }
    drop(requests);
    assert!(
        bounded("end", responses.message())
            .await
            .expect("ends cleanly")
            .is_none()
    );
    let refused = bounded(
        "pipeline",
        client.pipeline(authed(&shop, futures_util::stream::iter(vec![read(3)]))),
    )
    .await
    .expect_err("a revoked token cannot open a pipeline");
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_first_outcome_on_either_transport() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("A", "W", 5).await;
    let request = reserve("same", "o1", vec![line("A", Some("W"), 2)]);
    let first = bounded("reserve", client.reserve(authed(TOKEN, request.clone())))
        .await
        .expect("reserved")
        .into_inner();
    let again = bounded("reserve", client.reserve(authed(TOKEN, request)))
        .await
        .expect("the retry succeeds")
        .into_inner();
    assert_eq!(first.reservation_id, again.reservation_id);
    assert_eq!(first.lsn, again.lsn);
    let items = bounded(
        "get_item",
        client.get_item(authed(TOKEN, GetItemRequest { sku: "A".into() })),
    )
    .await
    .expect("item")
    .into_inner();
    assert_eq!(items.total_available, 3, "the retry reserved nothing more");

    // A refusal decided against state is remembered too.
    let short = reserve("short", "o2", vec![line("A", None, 50)]);
    let refused = bounded("reserve", client.reserve(authed(TOKEN, short.clone())))
        .await
        .expect_err("short");
    assert_eq!(error_code(&refused), "insufficient_stock");
    server.stock("A", "W", 100).await;
    let still = bounded("reserve", client.reserve(authed(TOKEN, short)))
        .await
        .expect_err("the first outcome stands");
    assert_eq!(error_code(&still), "insufficient_stock");

    // Both transports share one fingerprint: a request made over HTTP and retried over gRPC is the
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
    let body = serde_json::json!({"request_id": "cross", "order_id": "o3", "lines": [{"sku": "A", "location": "W", "qty": 1}], "ttl_ms": 60000});
    let response = bounded(
        "HTTP reserve",
        reqwest::Client::new()
            .post(format!("{http}/v1/inventory/reservations"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send(),
    )
    .await
    .expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let over_http: Value = bounded("HTTP body", response.json()).await.expect("json");
    let over_grpc = bounded(
        "reserve",
        client.reserve(authed(
            TOKEN,
            ReserveRequest {
                request_id: "cross".into(),
                order_id: "o3".into(),
                lines: vec![line("A", Some("W"), 1)],
                ttl_ms: Some(60_000),
            },
        )),
    )
    .await
    .expect("the gRPC retry gets the first outcome")
    .into_inner();
    assert_eq!(
        over_http["reservation_id"],
        over_grpc.reservation_id.as_str()
    );
    assert_eq!(over_http["lsn"], over_grpc.lsn.expect("lsn"));
    let _ = stop_http.send(());
    bounded("HTTP shutdown", http_task)
        .await
        .expect("task")
        .expect("HTTP ran");
    server.stop().await;
}

/// Sends `requests` on one pipeline and collects every response by tag.
async fn pipeline(
    client: &mut InventoryClient<Channel>,
    requests: Vec<PipelineRequest>,
) -> BTreeMap<u64, Vec<PipelineResponse>> {
    let mut responses = bounded(
        "pipeline",
        client.pipeline(authed(TOKEN, futures_util::stream::iter(requests))),
    )
    .await
    .expect("pipeline opens")
    .into_inner();
    let mut by_tag: BTreeMap<u64, Vec<PipelineResponse>> = BTreeMap::new();
    while let Some(response) = bounded("pipeline response", responses.message())
        .await
        .expect("the stream does not fail")
    {
        by_tag.entry(response.tag).or_default().push(response);
    }
    by_tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_pipelined_buyers_of_a_hundred_units_get_exactly_a_hundred() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("HOT", "W", 100).await;
    let requests: Vec<PipelineRequest> = (0..500u64)
        .map(|buyer| PipelineRequest {
            tag: 1000 + buyer,
            request: Some(Call::Reserve(reserve(
                &format!("buy-{buyer}"),
                &format!("o-{buyer}"),
                vec![line("HOT", None, 1)],
            ))),
        })
        .collect();
    let by_tag = bounded("pipeline", pipeline(&mut client, requests)).await;
    assert_eq!(by_tag.len(), 500, "every tag is answered");
    let mut reserved = 0;
    let mut short = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (tag, responses) in &by_tag {
        assert!((1000..1500).contains(tag), "unknown tag {tag}");
        assert_eq!(
            responses.len(),
            1,
            "tag {tag} answered {} times",
            responses.len()
        );
        match &responses[0].reply {
            Some(Reply::Reserve(reservation)) => {
                reserved += 1;
                assert!(ids.insert(reservation.reservation_id.clone()));
            }
            Some(Reply::Error(error)) if error.code == "insufficient_stock" => {
                short += 1;
                assert_eq!(error.grpc_code, Code::FailedPrecondition as i32);
                let details: Value = serde_json::from_str(&error.details_json).expect("json");
                assert_eq!(details["lines"][0]["available"], 0);
            }
            other => panic!("unexpected reply for {tag}: {other:?}"),
        }
    }
    assert_eq!((reserved, short), (100, 400));
    let items = bounded(
        "get_item",
        client.get_item(authed(TOKEN, GetItemRequest { sku: "HOT".into() })),
    )
    .await
    .expect("item")
    .into_inner();
    assert_eq!(items.locations[0].reserved, 100);
    assert_eq!(items.total_available, 0);
    // Every call is counted for /metrics, by transport, method and gRPC code.
    let mut metrics = String::new();
    server.app.grpc.write_prometheus(&mut metrics);
    for line in [
        r#"cairn_grpc_requests_total{transport="pipeline",method="Reserve",code="0"} 100"#,
        r#"cairn_grpc_requests_total{transport="pipeline",method="Reserve",code="9"} 400"#,
        r#"cairn_grpc_requests_total{transport="unary",method="Adjust",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="GetItem",code="0"} 1"#,
        r#"cairn_grpc_request_seconds_count{transport="pipeline",method="Reserve"} 500"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_mixes_operations_and_answers_beyond_its_in_flight_bound() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("A", "W", 10).await;
    let mut requests = vec![
        PipelineRequest {
            tag: 1,
            request: Some(Call::Adjust(AdjustRequest {
                request_id: "p-adjust".into(),
                sku: "B".into(),
                location: "W".into(),
                delta: 2,
                reason: "receipt".into(),
            })),
        },
        PipelineRequest {
            tag: 2,
            request: None,
        },
        PipelineRequest {
            tag: 3,
            request: Some(Call::Reserve(reserve(
                "p-zero",
                "o",
                vec![line("A", None, 0)],
            ))),
        },
        PipelineRequest {
            tag: 4,
            request: Some(Call::GetReservation(GetReservationRequest {
                reservation_id: "0-999".into(),
            })),
        },
        PipelineRequest {
            tag: 5,
            request: Some(Call::History(HistoryRequest { sku: "A".into() })),
        },
    ];
    // Far more requests than may be in flight at once: the server pauses reading and resumes.
    let reads = 3 * cairn_server::grpc::PIPELINE_IN_FLIGHT_MAX as u64;
    requests.extend((0..reads).map(|n| PipelineRequest {
        tag: 100 + n,
        request: Some(Call::GetItem(GetItemRequest { sku: "A".into() })),
    }));
    let by_tag = bounded("pipeline", pipeline(&mut client, requests)).await;
    assert_eq!(by_tag.len() as u64, 5 + reads);
    assert!(by_tag.values().all(|responses| responses.len() == 1));
    let reply = |tag: u64| by_tag[&tag][0].reply.clone().expect("a reply");
    assert!(
        matches!(reply(1), Reply::Adjust(item) if item.item.as_ref().is_some_and(|i| i.on_hand == 2))
    );
    assert!(matches!(reply(2), Reply::Error(e) if e.code == "invalid_argument"));
    assert!(
        matches!(reply(3), Reply::Error(e) if e.code == "invalid_argument" && e.grpc_code == Code::InvalidArgument as i32)
    );
    assert!(
        matches!(reply(4), Reply::Error(e) if e.code == "not_found" && e.grpc_code == Code::NotFound as i32)
    );
    assert!(matches!(reply(5), Reply::History(h) if !h.events.is_empty()));
    for n in 0..reads {
        assert!(
            matches!(reply(100 + n), Reply::GetItem(items) if items.total_available == 10),
            "{:?}",
            reply(100 + n)
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_an_open_pipeline_after_answering_it() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("A", "W", 1).await;
    let first = PipelineRequest {
        tag: 7,
        request: Some(Call::GetItem(GetItemRequest { sku: "A".into() })),
    };
    // The client never finishes sending.
    let outbound = futures_util::stream::iter(vec![first]).chain(futures_util::stream::pending());
    let mut responses = bounded("pipeline", client.pipeline(authed(TOKEN, outbound)))
        .await
        .expect("pipeline opens")
        .into_inner();
    let answered = bounded("response", responses.message())
        .await
        .expect("stream")
        .expect("response");
    assert_eq!(answered.tag, 7);
    let address = server.address;
    server.stop().await;
    assert!(
        bounded("end", responses.message())
            .await
            .expect("ends cleanly")
            .is_none()
    );
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_pipelined_message_fails_the_stream_after_answering_what_came_before() {
    let server = Server::start().await;
    let mut client = server.client();
    server.stock("A", "W", 1).await;
    let requests = vec![
        PipelineRequest {
            tag: 1,
            request: Some(Call::GetItem(GetItemRequest { sku: "A".into() })),
        },
        PipelineRequest {
            tag: 2,
            request: Some(Call::Reserve(reserve(
                "big",
                &"o".repeat(1 << 20),
                vec![line("A", None, 1)],
            ))),
        },
    ];
    let mut responses = bounded(
        "pipeline",
        client.pipeline(authed(TOKEN, futures_util::stream::iter(requests))),
    )
    .await
    .expect("pipeline opens")
    .into_inner();
    let first = bounded("response", responses.message())
        .await
        .expect("the first request is answered")
        .expect("a response");
    assert_eq!(first.tag, 1);
    let failed = bounded("end", responses.message())
        .await
        .expect_err("the oversized message fails the stream");
    assert_eq!(failed.code(), Code::OutOfRange, "{failed:?}");
    let items = bounded(
        "get_item",
        client.get_item(authed(TOKEN, GetItemRequest { sku: "A".into() })),
    )
    .await
    .expect("item")
    .into_inner();
    assert_eq!(items.total_available, 1, "nothing was reserved");
    server.stop().await;
}
