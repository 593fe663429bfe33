//! End-to-end over real gRPC (HTTP/2) against a server started in the test, through the generated
//! client of `cairn.publishing.v1`: the whole flow from a dataset to a rollback, gray readers,
//! guardrail refusals with their violations, roles, idempotent retries (also across HTTP and
//! gRPC), bad input refused before anything is logged, batch reads that see one release, the
//! `WatchReleases` stream, and the call counts of `/metrics`. Every wait is bounded.

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::MemStorage;
use cairn_server::grpc_publishing::proto::publishing_client::PublishingClient;
use cairn_server::grpc_publishing::proto::{
    AppendToDraftRequest, Change, CreateDatasetRequest, CreateDraftRequest, CreateReleaseRequest,
    DraftDiffRequest, GetDraftRequest, GetKeyRequest, Gray, ListReleasesRequest, ReadContext,
    ReadKey, ReadReply, ReadRequest, ReleaseEvent, ReleaseStepRequest, RollbackRequest,
    WatchReleasesRequest,
};
use cairn_server::session::Role;
use cairn_server::{AdminToken, App};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    client: PublishingClient<Channel>,
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
            client: PublishingClient::new(channel),
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

    fn client(&self) -> PublishingClient<Channel> {
        self.client.clone()
    }

    fn token(&self, name: &str, role: Role) -> String {
        self.app
            .admin
            .tokens
            .create(name, role, None)
            .expect("token created")
    }

    /// The publishing shard's durable LSN: it moves only when something is logged.
    fn logged_lsn(&self) -> u64 {
        self.app
            .engine
            .shard(cairn_types::ShardId(0))
            .expect("shard 0")
            .durable_lsn()
            .0
    }

    async fn dataset(&self, name: &str, guardrails: Option<Value>) {
        let request = CreateDatasetRequest {
            request_id: format!("ds-{name}"),
            name: name.into(),
            guardrails_json: guardrails.map(|g| g.to_string()),
        };
        let reply = bounded(
            "dataset",
            self.client().create_dataset(authed(TOKEN, request)),
        )
        .await
        .expect("dataset created")
        .into_inner();
        assert_eq!(reply.name, name);
    }

    /// A draft of `changes`; returns its id.
    async fn draft(&self, request_id: &str, changes: &[(&str, &str, Value)]) -> u64 {
        let request = CreateDraftRequest {
            request_id: request_id.into(),
            note: "test".into(),
            changes: changes.iter().map(|(d, k, v)| change(d, k, v)).collect(),
        };
        bounded("draft", self.client().create_draft(authed(TOKEN, request)))
            .await
            .expect("draft created")
            .into_inner()
            .draft_id
    }

    /// Drafts and releases for everyone at once; returns the release id.
    async fn publish(&self, request_id: &str, changes: &[(&str, &str, Value)]) -> u64 {
        let draft_id = self.draft(&format!("{request_id}-draft"), changes).await;
        let reply = bounded(
            "release",
            self.client()
                .create_release(authed(TOKEN, release(request_id, draft_id))),
        )
        .await
        .expect("released")
        .into_inner();
        assert_eq!(reply.state, "live");
        reply.release_id
    }

    async fn read(&self, context: Option<ReadContext>, keys: &[(&str, &str)]) -> ReadReply {
        let request = ReadRequest {
            context,
            keys: keys
                .iter()
                .map(|(dataset, key)| ReadKey {
                    dataset: (*dataset).into(),
                    key: (*key).into(),
                })
                .collect(),
        };
        bounded("read", self.client().read(authed(TOKEN, request)))
            .await
            .expect("read")
            .into_inner()
    }

    fn metrics(&self) -> String {
        let mut metrics = String::new();
        self.app.grpc.write_prometheus(&mut metrics);
        metrics
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

fn change(dataset: &str, key: &str, value: &Value) -> Change {
    Change {
        dataset: dataset.into(),
        key: key.into(),
        value_json: Some(value.to_string()),
    }
}

fn release(request_id: &str, draft_id: u64) -> CreateReleaseRequest {
    CreateReleaseRequest {
        request_id: request_id.into(),
        draft_id,
        ..CreateReleaseRequest::default()
    }
}

fn step(request_id: &str, release_id: u64) -> ReleaseStepRequest {
    ReleaseStepRequest {
        request_id: request_id.into(),
        release_id,
    }
}

fn user(user_id: &str) -> Option<ReadContext> {
    Some(ReadContext {
        user_id: Some(user_id.into()),
        ..ReadContext::default()
    })
}

fn key(dataset: &str, key: &str, context: Option<ReadContext>) -> GetKeyRequest {
    GetKeyRequest {
        dataset: dataset.into(),
        key: key.into(),
        context,
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON text")
}

fn prices_guardrails() -> Value {
    json!({"numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 100000}],
        "max_change_pct": [{"pointer": "/amount", "pct": 50}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_goes_from_draft_to_gray_to_live_and_rolls_back() {
    let server = Server::start(2).await;
    let mut client = server.client();
    server.dataset("prices", Some(prices_guardrails())).await;
    let first = server
        .publish(
            "r1",
            &[
                ("prices", "sku/1", json!({"amount": 100})),
                ("prices", "sku/2", json!({"amount": 200})),
            ],
        )
        .await;

    // A draft in two requests, then its summary and diff against what is live.
    let created = bounded(
        "draft",
        client.create_draft(authed(
            TOKEN,
            CreateDraftRequest {
                request_id: "d2".into(),
                note: "sale".into(),
                changes: vec![change("prices", "sku/1", &json!({"amount": 80}))],
            },
        )),
    )
    .await
    .expect("draft")
    .into_inner();
    assert_eq!(created.changes_total, 1);
    assert!(created.lsn > 0);
    let appended = bounded(
        "append",
        client.append_to_draft(authed(
            TOKEN,
            AppendToDraftRequest {
                request_id: "a2".into(),
                draft_id: created.draft_id,
                changes: vec![
                    change("prices", "sku/3", &json!({"amount": 300})),
                    Change {
                        dataset: "prices".into(),
                        key: "sku/2".into(),
                        value_json: None,
                    },
                ],
            },
        )),
    )
    .await
    .expect("appended")
    .into_inner();
    assert_eq!(appended.draft_id, created.draft_id);
    assert_eq!(appended.changes_total, 3);
    let draft = bounded(
        "get draft",
        client.get_draft(authed(
            TOKEN,
            GetDraftRequest {
                draft_id: created.draft_id,
            },
        )),
    )
    .await
    .expect("draft")
    .into_inner();
    assert_eq!(draft.note, "sale");
    assert_eq!(draft.author, "admin");
    assert_eq!(draft.datasets, vec!["prices".to_string()]);
    assert_eq!(draft.release_id, None);
    let diff = bounded(
        "diff",
        client.draft_diff(authed(
            TOKEN,
            DraftDiffRequest {
                draft_id: created.draft_id,
                limit: Some(2),
                ..DraftDiffRequest::default()
            },
        )),
    )
    .await
    .expect("diff")
    .into_inner();
    assert_eq!(diff.changes_total, 3);
    assert_eq!(diff.changes.len(), 2, "a page of the limit");
    assert_eq!(diff.changes[0].key, "sku/1");
    assert_eq!(
        diff.changes[0].before_json.as_deref().map(json_of),
        Some(json!({"amount": 100}))
    );
    assert_eq!(
        diff.changes[0].after_json.as_deref().map(json_of),
        Some(json!({"amount": 80}))
    );
    assert_eq!(diff.changes[1].key, "sku/2");
    assert_eq!(diff.changes[1].after_json, None, "a deletion");
    assert_eq!(diff.violations_total, 0);
    let cursor = diff.next_after.expect("a next page");
    let rest = bounded(
        "diff page 2",
        client.draft_diff(authed(
            TOKEN,
            DraftDiffRequest {
                draft_id: created.draft_id,
                after_dataset: Some(cursor.dataset),
                after_key: Some(cursor.key),
                limit: None,
            },
        )),
    )
    .await
    .expect("diff")
    .into_inner();
    assert_eq!(rest.changes.len(), 1);
    assert_eq!(rest.changes[0].key, "sku/3");
    assert_eq!(rest.changes[0].before_json, None, "a new key");
    assert!(rest.next_after.is_none());

    // Gray to 12.5 % of users: the same users every time, about 12.5 % of them.
    let gray = bounded(
        "gray release",
        client.create_release(authed(
            TOKEN,
            CreateReleaseRequest {
                gray: Some(Gray {
                    percent: Some("12.5".into()),
                    ..Gray::default()
                }),
                ..release("r2", created.draft_id)
            },
        )),
    )
    .await
    .expect("released")
    .into_inner();
    assert_eq!(gray.state, "gray");
    assert!(gray.release_id > first);
    let mut in_gray = Vec::new();
    for n in 0..1000 {
        let served = bounded(
            "get key",
            client.get_key(authed(
                TOKEN,
                key("prices", "sku/1", user(&format!("u{n}"))),
            )),
        )
        .await
        .expect("served")
        .into_inner();
        if served.release_id == Some(gray.release_id) {
            assert_eq!(json_of(&served.value_json), json!({"amount": 80}));
            in_gray.push(n);
        } else {
            assert_eq!(served.release_id, Some(first));
            assert_eq!(json_of(&served.value_json), json!({"amount": 100}));
        }
    }
    assert!(
        (80..=170).contains(&in_gray.len()),
        "{} of 1000 users in a 12.5 % gray",
        in_gray.len()
    );
    let chosen = format!("u{}", in_gray[0]);
    let again = server
        .read(user(&chosen), &[("prices", "sku/1"), ("prices", "sku/2")])
        .await;
    assert_eq!(again.values[0].release_id, Some(gray.release_id), "stable");
    assert_eq!(
        again.values[1].value_json, None,
        "deleted in the gray release"
    );
    let listed = bounded(
        "list",
        client.list_releases(authed(
            TOKEN,
            ListReleasesRequest {
                after_release_id: Some(first),
                limit: None,
            },
        )),
    )
    .await
    .expect("releases")
    .into_inner();
    assert_eq!(listed.releases.len(), 1);
    let listed_gray = &listed.releases[0];
    assert_eq!(listed_gray.state, "gray");
    assert_eq!(listed_gray.kind, "draft");
    assert_eq!(listed_gray.draft_id, Some(created.draft_id));
    assert_eq!(listed_gray.request_id.as_deref(), Some("r2"));
    assert_eq!(
        listed_gray.gray.as_ref().and_then(|g| g.percent.as_deref()),
        Some("12.5")
    );

    // Promote: everyone reads it, in one release for every key.
    let promoted = bounded(
        "promote",
        client.promote(authed(TOKEN, step("p2", gray.release_id))),
    )
    .await
    .expect("promoted")
    .into_inner();
    assert_eq!(promoted.release_id, gray.release_id);
    assert_eq!(promoted.state, "live");
    let read = server
        .read(
            None,
            &[
                ("prices", "sku/1"),
                ("prices", "sku/2"),
                ("prices", "sku/3"),
            ],
        )
        .await;
    assert!(read.lsn >= promoted.lsn, "a writer reads its own release");
    let values: Vec<Option<Value>> = read
        .values
        .iter()
        .map(|v| v.value_json.as_deref().map(json_of))
        .collect();
    assert_eq!(
        values,
        vec![
            Some(json!({"amount": 80})),
            None,
            Some(json!({"amount": 300}))
        ]
    );
    assert!(
        read.values
            .iter()
            .all(|v| v.release_id == Some(gray.release_id))
    );
    assert_eq!(read.values[2].key, "sku/3");

    // Roll back to the first release: its content, as a new release.
    let rolled = bounded(
        "rollback",
        client.rollback(authed(
            TOKEN,
            RollbackRequest {
                request_id: "rb".into(),
                to_release_id: first,
                reason: "wrong prices".into(),
            },
        )),
    )
    .await
    .expect("rolled back")
    .into_inner();
    assert!(rolled.release_id > gray.release_id);
    assert_eq!(rolled.state, "live");
    let read = server
        .read(
            None,
            &[
                ("prices", "sku/1"),
                ("prices", "sku/2"),
                ("prices", "sku/3"),
            ],
        )
        .await;
    let values: Vec<Option<Value>> = read
        .values
        .iter()
        .map(|v| v.value_json.as_deref().map(json_of))
        .collect();
    assert_eq!(
        values,
        vec![
            Some(json!({"amount": 100})),
            Some(json!({"amount": 200})),
            None
        ]
    );
    assert!(
        read.values
            .iter()
            .all(|v| v.release_id == Some(rolled.release_id))
    );
    let listed = bounded(
        "list",
        client.list_releases(authed(TOKEN, ListReleasesRequest::default())),
    )
    .await
    .expect("releases")
    .into_inner()
    .releases;
    let states: Vec<(u64, &str, &str)> = listed
        .iter()
        .map(|r| (r.release_id, r.state.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![
            // Every key it set was replaced by the gray release before the rollback.
            (first, "superseded", "draft"),
            (gray.release_id, "rolled_back", "draft"),
            (rolled.release_id, "live", "rollback"),
        ]
    );
    assert_eq!(listed[2].restores, Some(first));
    assert_eq!(listed[2].note, "wrong prices");

    // A key not in the served release, or of an unknown dataset: NOT_FOUND, as over HTTP.
    let missing = bounded(
        "get key",
        client.get_key(authed(TOKEN, key("prices", "sku/3", None))),
    )
    .await
    .expect_err("not in the release");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_code(&missing), "not_found");
    let missing = bounded(
        "get key",
        client.get_key(authed(TOKEN, key("nothing", "k", None))),
    )
    .await
    .expect_err("no such dataset");
    assert_eq!(missing.code(), Code::NotFound);

    // Every call is counted for /metrics.
    let metrics = server.metrics();
    for line in [
        r#"cairn_grpc_requests_total{transport="unary",method="CreateDataset",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="CreateDraft",code="0"} 2"#,
        r#"cairn_grpc_requests_total{transport="unary",method="AppendToDraft",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="GetDraft",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="DraftDiff",code="0"} 2"#,
        r#"cairn_grpc_requests_total{transport="unary",method="CreateRelease",code="0"} 2"#,
        r#"cairn_grpc_requests_total{transport="unary",method="Promote",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="Rollback",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="ListReleases",code="0"} 2"#,
        r#"cairn_grpc_requests_total{transport="unary",method="GetKey",code="0"} 1000"#,
        r#"cairn_grpc_requests_total{transport="unary",method="GetKey",code="5"} 2"#,
        r#"cairn_grpc_requests_total{transport="unary",method="Read",code="0"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let latencies = r#"cairn_grpc_request_seconds_count{transport="unary",method="Read"} 3"#;
    assert!(metrics.contains(latencies), "{latencies} not in\n{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrails_refuse_with_their_violations_and_only_an_admin_forces() {
    let server = Server::start(1).await;
    let mut client = server.client();
    let operator = server.token("op", Role::Operator);
    let viewer = server.token("v", Role::Viewer);
    server.dataset("prices", Some(prices_guardrails())).await;
    let live = server
        .publish("r1", &[("prices", "sku/1", json!({"amount": 100}))])
        .await;

    // A drop over 50 % and an amount out of bounds: the diff shows both, the release is refused.
    let breaking = server
        .draft(
            "d2",
            &[
                ("prices", "sku/1", json!({"amount": 10})),
                ("prices", "sku/2", json!({"amount": 0})),
            ],
        )
        .await;
    let diff = bounded(
        "diff",
        client.draft_diff(authed(
            &viewer,
            DraftDiffRequest {
                draft_id: breaking,
                ..DraftDiffRequest::default()
            },
        )),
    )
    .await
    .expect("diff")
    .into_inner();
    assert_eq!(diff.violations_total, 2);
    let rules: Vec<(&str, Option<&str>, &str)> = diff
        .violations
        .iter()
        .map(|v| (v.dataset.as_str(), v.key.as_deref(), v.rule.as_str()))
        .collect();
    assert!(
        rules.contains(&("prices", Some("sku/1"), "max_change_pct")),
        "{rules:?}"
    );
    assert!(
        rules.contains(&("prices", Some("sku/2"), "numeric_bounds")),
        "{rules:?}"
    );
    let refused = bounded(
        "release",
        client.create_release(authed(&operator, release("r2", breaking))),
    )
    .await
    .expect_err("guardrails refuse it");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&refused), "guardrail_violation");
    assert!(refused.message().starts_with("guardrail_violation: "));
    let details = error_details(&refused);
    assert_eq!(details["violations_total"], 2, "{details}");
    let violations = details["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), 2);
    assert!(
        violations
            .iter()
            .any(|v| v["key"] == "sku/1" && v["rule"] == "max_change_pct"),
        "{details}"
    );
    // A refusal decided against state is remembered: its retry is the same refusal.
    let again = bounded(
        "release",
        client.create_release(authed(&operator, release("r2", breaking))),
    )
    .await
    .expect_err("the same refusal");
    assert_eq!(error_code(&again), "guardrail_violation");

    // force_reason is the admin's alone; the operator is refused before anything is decided.
    let forced = CreateReleaseRequest {
        force_reason: Some("sale starts now".into()),
        ..release("r3", breaking)
    };
    let logged = server.logged_lsn();
    let denied = bounded(
        "forced by an operator",
        client.create_release(authed(&operator, forced.clone())),
    )
    .await
    .expect_err("not an admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(error_code(&denied), "permission_denied");
    assert_eq!(server.logged_lsn(), logged, "nothing logged");
    let released = bounded(
        "forced by the admin",
        client.create_release(authed(TOKEN, forced)),
    )
    .await
    .expect("an admin forces it")
    .into_inner();
    assert_eq!(released.state, "live");
    let listed = bounded(
        "list",
        client.list_releases(authed(
            &viewer,
            ListReleasesRequest {
                after_release_id: Some(live),
                limit: Some(10),
            },
        )),
    )
    .await
    .expect("releases")
    .into_inner();
    assert_eq!(
        listed.releases[0].force_reason.as_deref(),
        Some("sale starts now")
    );
    assert_eq!(listed.releases[0].forced_violations_total, 2);

    // Roles: a viewer reads but may not write; no token is UNAUTHENTICATED.
    let denied = bounded(
        "dataset by a viewer",
        client.create_dataset(authed(
            &viewer,
            CreateDatasetRequest {
                request_id: "dv".into(),
                name: "x".into(),
                guardrails_json: None,
            },
        )),
    )
    .await
    .expect_err("a viewer");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = bounded(
        "read without a token",
        client.read(tonic::Request::new(ReadRequest::default())),
    )
    .await
    .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let read = bounded(
        "read by a viewer",
        client.get_key(authed(&viewer, key("prices", "sku/2", None))),
    )
    .await
    .expect("a viewer reads")
    .into_inner();
    assert_eq!(json_of(&read.value_json), json!({"amount": 0}));

    // Other conflicts: a draft releases once; promoting a live release is refused.
    let twice = bounded(
        "release again",
        client.create_release(authed(TOKEN, release("r4", breaking))),
    )
    .await
    .expect_err("released already");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(error_code(&twice), "draft_already_released");
    let live_again = bounded(
        "promote a live release",
        client.promote(authed(TOKEN, step("p", released.release_id))),
    )
    .await
    .expect_err("not gray");
    assert_eq!(live_again.code(), Code::FailedPrecondition);
    let exists = bounded(
        "dataset again",
        client.create_dataset(authed(
            TOKEN,
            CreateDatasetRequest {
                request_id: "again".into(),
                name: "prices".into(),
                guardrails_json: None,
            },
        )),
    )
    .await
    .expect_err("taken");
    assert_eq!(exists.code(), Code::AlreadyExists);

    let metrics = server.metrics();
    for line in [
        r#"cairn_grpc_requests_total{transport="unary",method="CreateRelease",code="9"} 3"#,
        r#"cairn_grpc_requests_total{transport="unary",method="CreateRelease",code="7"} 1"#,
        r#"cairn_grpc_requests_total{transport="unary",method="Read",code="16"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_request_id_returns_the_first_reply_on_either_transport() {
    let server = Server::start(1).await;
    let mut client = server.client();
    let dataset = CreateDatasetRequest {
        request_id: "ds".into(),
        name: "flags".into(),
        guardrails_json: Some(r#"{"max_changed_keys": 10}"#.into()),
    };
    let first = bounded(
        "dataset",
        client.create_dataset(authed(TOKEN, dataset.clone())),
    )
    .await
    .expect("created")
    .into_inner();
    let again = bounded(
        "dataset",
        client.create_dataset(authed(TOKEN, dataset.clone())),
    )
    .await
    .expect("the first outcome, not already_exists")
    .into_inner();
    assert_eq!(first, again);

    let draft = CreateDraftRequest {
        request_id: "dr".into(),
        note: "n".into(),
        changes: vec![change("flags", "dark", &json!(true))],
    };
    let drafted = bounded("draft", client.create_draft(authed(TOKEN, draft.clone())))
        .await
        .expect("draft")
        .into_inner();
    let redrafted = bounded("draft", client.create_draft(authed(TOKEN, draft.clone())))
        .await
        .expect("draft")
        .into_inner();
    assert_eq!(drafted, redrafted, "one draft");
    let gray = CreateReleaseRequest {
        gray: Some(Gray {
            users: vec!["alice".into()],
            ..Gray::default()
        }),
        ..release("rel", drafted.draft_id)
    };
    let released = bounded(
        "release",
        client.create_release(authed(TOKEN, gray.clone())),
    )
    .await
    .expect("released")
    .into_inner();
    let logged = server.logged_lsn();
    let rereleased = bounded(
        "release",
        client.create_release(authed(TOKEN, gray.clone())),
    )
    .await
    .expect("the first outcome, not draft_already_released")
    .into_inner();
    assert_eq!(released, rereleased);
    assert_eq!(server.logged_lsn(), logged, "a replay logs nothing");
    let promoted = bounded(
        "promote",
        client.promote(authed(TOKEN, step("pr", released.release_id))),
    )
    .await
    .expect("promoted")
    .into_inner();
    let repromoted = bounded(
        "promote",
        client.promote(authed(TOKEN, step("pr", released.release_id))),
    )
    .await
    .expect("the first outcome, not invalid_release_state")
    .into_inner();
    assert_eq!(promoted, repromoted);
    assert_eq!(promoted.state, "live");

    // The same id with other content: ABORTED `request_id_reused`.
    let reused = bounded(
        "release",
        client.create_release(authed(
            TOKEN,
            CreateReleaseRequest {
                go_live_at_ms: Some(1),
                ..gray
            },
        )),
    )
    .await
    .expect_err("other content");
    assert_eq!(reused.code(), Code::Aborted);
    assert_eq!(error_code(&reused), "request_id_reused");

    // Both transports share one fingerprint: a rollback sent over gRPC and retried over HTTP is
    // the same request.
    let rollback = RollbackRequest {
        request_id: "rb".into(),
        to_release_id: promoted.release_id,
        reason: "again".into(),
    };
    let rolled = bounded("rollback", client.rollback(authed(TOKEN, rollback.clone())))
        .await
        .expect("rolled back")
        .into_inner();
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
    let response = bounded(
        "HTTP rollback",
        reqwest::Client::new()
            .post(format!("{http}/v1/rollbacks"))
            .bearer_auth(TOKEN)
            .json(&json!({"request_id": "rb", "to_release_id": promoted.release_id, "reason": "again"}))
            .send(),
    )
    .await
    .expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let over_http: Value = bounded("HTTP body", response.json()).await.expect("json");
    assert_eq!(
        over_http,
        json!({"release_id": rolled.release_id, "state": rolled.state, "lsn": rolled.lsn})
    );
    // And an HTTP draft retried over gRPC, with a value and a deletion.
    let response = bounded(
        "HTTP draft",
        reqwest::Client::new()
            .post(format!("{http}/v1/drafts"))
            .bearer_auth(TOKEN)
            .json(&json!({"request_id": "cross", "note": "x", "changes": [
                {"dataset": "flags", "key": "a", "value": {"on": true, "pct": 12.5}},
                {"dataset": "flags", "key": "b", "value": null}]}))
            .send(),
    )
    .await
    .expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let over_http: Value = bounded("HTTP body", response.json()).await.expect("json");
    let over_grpc = bounded(
        "draft",
        client.create_draft(authed(
            TOKEN,
            CreateDraftRequest {
                request_id: "cross".into(),
                note: "x".into(),
                changes: vec![
                    change("flags", "a", &json!({"pct": 12.5, "on": true})),
                    Change {
                        dataset: "flags".into(),
                        key: "b".into(),
                        value_json: Some("null".into()),
                    },
                ],
            },
        )),
    )
    .await
    .expect("the same request")
    .into_inner();
    assert_eq!(
        over_http,
        json!({"draft_id": over_grpc.draft_id, "changes_total": over_grpc.changes_total, "lsn": over_grpc.lsn})
    );
    let _ = stop_http.send(());
    bounded("HTTP shutdown", http_task)
        .await
        .expect("task")
        .expect("served");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_and_logs_nothing() {
    let server = Server::start(1).await;
    let mut client = server.client();
    server.dataset("prices", None).await;
    let draft_id = server
        .draft("d1", &[("prices", "k", json!({"amount": 1}))])
        .await;
    let logged = server.logged_lsn();

    let mut refusals = Vec::new();
    for request in [
        CreateDatasetRequest {
            request_id: "bad".into(),
            name: String::new(),
            guardrails_json: None,
        },
        CreateDatasetRequest {
            request_id: "bad".into(),
            name: "x".into(),
            guardrails_json: Some("{not json".into()),
        },
        CreateDatasetRequest {
            request_id: "bad".into(),
            name: "x".into(),
            guardrails_json: Some(r#"{"numeric_bounds": [{"pointer": "amount"}]}"#.into()),
        },
        CreateDatasetRequest {
            request_id: "bad".into(),
            name: "x".into(),
            guardrails_json: Some(r#"{"unknown": 1}"#.into()),
        },
        CreateDatasetRequest {
            request_id: String::new(),
            name: "x".into(),
            guardrails_json: None,
        },
    ] {
        refusals.push(
            bounded("dataset", client.create_dataset(authed(TOKEN, request)))
                .await
                .expect_err("bad dataset"),
        );
    }
    for changes in [
        vec![Change {
            dataset: "prices".into(),
            key: "k".into(),
            value_json: Some("{\"amount\":".into()),
        }],
        vec![change("prices", "a\u{7}b", &json!(1))],
        vec![change("", "k", &json!(1))],
    ] {
        let request = CreateDraftRequest {
            request_id: "bad".into(),
            note: String::new(),
            changes,
        };
        refusals.push(
            bounded("draft", client.create_draft(authed(TOKEN, request)))
                .await
                .expect_err("bad draft"),
        );
    }
    for percent in ["abc", "0", "100.5", "12.345", "\"10\""] {
        let request = CreateReleaseRequest {
            gray: Some(Gray {
                percent: Some(percent.into()),
                ..Gray::default()
            }),
            ..release("bad", draft_id)
        };
        refusals.push(
            bounded("release", client.create_release(authed(TOKEN, request)))
                .await
                .expect_err(percent),
        );
    }
    refusals.push(
        bounded(
            "rollback",
            client.rollback(authed(
                TOKEN,
                RollbackRequest {
                    request_id: "bad".into(),
                    to_release_id: 1,
                    reason: String::new(),
                },
            )),
        )
        .await
        .expect_err("no reason"),
    );
    for request in [
        DraftDiffRequest {
            draft_id,
            limit: Some(0),
            ..DraftDiffRequest::default()
        },
        DraftDiffRequest {
            draft_id,
            after_dataset: Some("prices".into()),
            ..DraftDiffRequest::default()
        },
    ] {
        refusals.push(
            bounded("diff", client.draft_diff(authed(TOKEN, request)))
                .await
                .expect_err("bad diff"),
        );
    }
    refusals.push(
        bounded(
            "list",
            client.list_releases(authed(
                TOKEN,
                ListReleasesRequest {
                    after_release_id: None,
                    limit: Some(10_001),
                },
            )),
        )
        .await
        .expect_err("limit too large"),
    );
    refusals.push(
        bounded(
            "read",
            client.read(authed(
                TOKEN,
                ReadRequest {
                    context: user(""),
                    keys: Vec::new(),
                },
            )),
        )
        .await
        .expect_err("empty user id"),
    );
    refusals.push(
        bounded(
            "read",
            client.read(authed(
                TOKEN,
                ReadRequest {
                    context: None,
                    keys: vec![ReadKey {
                        dataset: String::new(),
                        key: "k".into(),
                    }],
                },
            )),
        )
        .await
        .expect_err("empty dataset"),
    );
    refusals.push(
        bounded(
            "get key",
            client.get_key(authed(TOKEN, key("prices", "", None))),
        )
        .await
        .expect_err("empty key"),
    );
    let count = refusals.len();
    for (index, refused) in refusals.into_iter().enumerate() {
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "#{index}: {refused:?}"
        );
        assert_eq!(error_code(&refused), "invalid_argument", "#{index}");
        assert!(
            refused.message().starts_with("invalid_argument: "),
            "#{index}: {}",
            refused.message()
        );
    }
    assert_eq!(server.logged_lsn(), logged, "no refusal was logged");

    // Not remembered either: the same request id with a good body goes through.
    let created = bounded(
        "dataset",
        client.create_dataset(authed(
            TOKEN,
            CreateDatasetRequest {
                request_id: "bad".into(),
                name: "x".into(),
                guardrails_json: None,
            },
        )),
    )
    .await
    .expect("created");
    assert_eq!(created.into_inner().name, "x");
    assert!(server.logged_lsn() > logged);

    let metrics = server.metrics();
    let invalid: u64 = metrics
        .lines()
        .filter(|line| {
            line.starts_with("cairn_grpc_requests_total{") && line.contains(r#"code="3""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(invalid, count as u64, "every refusal counted:\n{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_read_sees_one_release_for_all_its_keys() {
    let server = Arc::new(Server::start(2).await);
    server.dataset("a", None).await;
    server.dataset("b", None).await;
    server
        .publish("r0", &[("a", "k", json!(0)), ("b", "k", json!(0))])
        .await;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let server = Arc::clone(&server);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            for n in 1..=30 {
                server
                    .publish(
                        &format!("r{n}"),
                        &[("a", "k", json!(n)), ("b", "k", json!(n))],
                    )
                    .await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut reads = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let read = server
            .read(
                None,
                &[("a", "k"), ("nothing", "k"), ("b", "k"), ("a", "gone")],
            )
            .await;
        let [a, nothing, b, gone] = read.values.as_slice() else {
            panic!("four values: {read:?}");
        };
        assert_eq!(a.value_json, b.value_json, "one release for both datasets");
        assert_eq!(a.release_id, b.release_id);
        assert!(a.release_id.is_some());
        assert_eq!(
            (nothing.value_json.as_deref(), nothing.release_id),
            (None, None),
            "a key of an unknown dataset is missing"
        );
        assert_eq!(nothing.dataset, "nothing");
        assert_eq!(gone.value_json, None);
        assert_eq!(gone.release_id, a.release_id);
        seen.insert(a.release_id);
        reads += 1;
        if finished {
            break;
        }
    }
    bounded("writer", writer).await.expect("writer ran");
    let last = server.read(None, &[("a", "k"), ("b", "k")]).await;
    assert_eq!(last.values[0].value_json.as_deref(), Some("30"));
    assert!(reads > 1 && seen.len() > 1, "{reads} reads saw {seen:?}");
    match Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => panic!("the server is still shared"),
    }
}

/// The next event of a watch, bounded.
async fn next_event(events: &mut tonic::Streaming<ReleaseEvent>) -> ReleaseEvent {
    bounded("watch event", events.next())
        .await
        .expect("an event")
        .expect("not an error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_releases_streams_release_promote_and_rollback_until_shutdown() {
    let server = Server::start(1).await;
    let mut client = server.client();
    let viewer = server.token("v", Role::Viewer);
    server.dataset("banner", None).await;
    let base = server
        .publish("r1", &[("banner", "home", json!("a"))])
        .await;
    let mut events = bounded(
        "watch",
        client.watch_releases(authed(&viewer, WatchReleasesRequest {})),
    )
    .await
    .expect("watching")
    .into_inner();

    // What came before the watch is not replayed; what follows arrives in log order.
    let draft_id = server.draft("d2", &[("banner", "home", json!("b"))]).await;
    let gray = bounded(
        "gray",
        client.create_release(authed(
            TOKEN,
            CreateReleaseRequest {
                gray: Some(Gray {
                    channels: vec!["app".into()],
                    ..Gray::default()
                }),
                ..release("r2", draft_id)
            },
        )),
    )
    .await
    .expect("released")
    .into_inner();
    let created = next_event(&mut events).await;
    assert_eq!(created.r#type, "release_created");
    assert_eq!(created.release_id, gray.release_id);
    assert_eq!(created.state.as_deref(), Some("gray"));
    assert_eq!(created.draft_id, Some(draft_id));
    assert_eq!(created.actor.as_deref(), Some("admin"));
    assert_eq!(created.lsn, gray.lsn);
    bounded(
        "promote",
        client.promote(authed(TOKEN, step("p2", gray.release_id))),
    )
    .await
    .expect("promoted");
    let promoted = next_event(&mut events).await;
    assert_eq!(promoted.r#type, "release_promoted");
    assert_eq!(promoted.release_id, gray.release_id);
    assert!(promoted.lsn > created.lsn);
    let rolled = bounded(
        "rollback",
        client.rollback(authed(
            TOKEN,
            RollbackRequest {
                request_id: "rb".into(),
                to_release_id: base,
                reason: "undo".into(),
            },
        )),
    )
    .await
    .expect("rolled back")
    .into_inner();
    let rolled_back = next_event(&mut events).await;
    assert_eq!(rolled_back.r#type, "rolled_back");
    assert_eq!(rolled_back.release_id, rolled.release_id);
    assert_eq!(rolled_back.to_release_id, Some(base));

    // A watch needs a token; shutting the server down ends an open watch.
    let anonymous = bounded(
        "watch",
        client.watch_releases(tonic::Request::new(WatchReleasesRequest {})),
    )
    .await
    .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let metrics = server.metrics();
    for line in [
        r#"cairn_grpc_requests_total{transport="stream",method="WatchReleases",code="0"} 1"#,
        r#"cairn_grpc_requests_total{transport="stream",method="WatchReleases",code="16"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await;
    let end = bounded("the watch ends", events.next()).await;
    assert!(
        matches!(end, None | Some(Err(_))),
        "no more events: {end:?}"
    );
}
