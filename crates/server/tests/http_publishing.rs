//! End-to-end over real HTTP against a server started in the test: the publishing endpoints of
//! API.md, their error codes and roles, atomic multi-dataset releases under concurrent reads,
//! gray rules, scheduled go-live and revert on the engine's clock, rollback, and a restart that
//! serves the same values.

use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ManualClock, ShardConfig};
use cairn_log::storage::{CrashMode, MemStorage, Storage};
use cairn_server::session::Role;
use cairn_server::{AdminToken, App};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-admin-token";
const NOW: u64 = 1_800_000_000_000;

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

    async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request, token).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_as(TOKEN, path).await
    }

    async fn dataset(&self, name: &str, guardrails: Option<Value>) {
        let mut body = json!({"request_id": format!("ds-{name}"), "name": name});
        if let Some(guardrails) = guardrails {
            body["guardrails"] = guardrails;
        }
        let (status, reply) = self.post("/v1/datasets", body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        assert_eq!(reply["name"], name);
    }

    /// A draft of `changes` ([dataset, key, value]); returns its id.
    async fn draft(&self, request_id: &str, changes: &[(&str, &str, Value)]) -> u64 {
        let changes: Vec<Value> = changes
            .iter()
            .map(|(d, k, v)| json!({"dataset": d, "key": k, "value": v}))
            .collect();
        let (status, reply) = self
            .post(
                "/v1/drafts",
                json!({"request_id": request_id, "note": "test", "changes": changes}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        reply["draft_id"].as_u64().expect("draft id")
    }

    /// Releases a draft with `extra` merged into the body.
    async fn release(&self, request_id: &str, draft_id: u64, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"request_id": request_id, "draft_id": draft_id});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        self.post("/v1/releases", body).await
    }

    /// Drafts and releases at once; returns the release id.
    async fn publish(&self, request_id: &str, changes: &[(&str, &str, Value)]) -> u64 {
        let draft = self.draft(&format!("{request_id}-draft"), changes).await;
        let (status, reply) = self.release(request_id, draft, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        assert_eq!(reply["state"], "live");
        reply["release_id"].as_u64().expect("release id")
    }

    async fn value(&self, dataset: &str, key: &str, query: &str) -> (StatusCode, Value) {
        self.get(&format!("/v1/datasets/{dataset}/keys/{key}{query}"))
            .await
    }

    fn hashes(&self) -> Vec<[u8; 32]> {
        self.app
            .engine
            .shards()
            .iter()
            .map(|s| s.state_hash().expect("hash").1)
            .collect()
    }
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_with_its_errors_and_roles() {
    let clock = ManualClock::new(NOW);
    let server = Server::start(Arc::new(MemStorage::new()), &clock, 2).await;
    let tokens = &server.app.admin.tokens;
    let viewer = tokens.create("v", Role::Viewer, None).expect("token");
    let client = tokens.create("c", Role::Client, None).expect("token");
    let operator = tokens.create("op", Role::Operator, None).expect("token");

    // Datasets.
    let (status, reply) = server
        .post(
            "/v1/datasets",
            json!({"request_id": "d0", "name": "prices",
            "guardrails": {"numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 1000}],
                "max_change_pct": [{"pointer": "/amount", "pct": 50}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert!(reply["lsn"].as_u64().is_some());
    let (status, again) = server
        .post(
            "/v1/datasets",
            json!({"request_id": "d0", "name": "prices",
            "guardrails": {"numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 1000}],
                "max_change_pct": [{"pointer": "/amount", "pct": 50}]}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a repeat returns the first outcome"
    );
    assert_eq!(again, reply);
    let (status, reply) = server
        .post("/v1/datasets", json!({"request_id": "d0", "name": "other"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&reply), "request_id_reused");
    let (status, reply) = server
        .post(
            "/v1/datasets",
            json!({"request_id": "d1", "name": "prices"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&reply), "already_exists");
    for bad in [
        json!({"request_id": "d2", "name": ""}),
        json!({"request_id": "d2", "name": "a\nb"}),
        json!({"request_id": "", "name": "x"}),
        json!({"request_id": "d2", "name": "x", "guardrails": {"numeric_bounds": [{"pointer": "amount"}]}}),
        json!({"request_id": "d2", "name": "x", "unknown": 1}),
        json!({"name": "x"}),
    ] {
        let (status, reply) = server.post("/v1/datasets", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {reply}");
        assert_eq!(code(&reply), "invalid_argument");
    }
    let (status, _) = server
        .post_as(
            &viewer,
            "/v1/datasets",
            json!({"request_id": "d3", "name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .post_as(
            &client,
            "/v1/datasets",
            json!({"request_id": "d3", "name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .post_as(
            "nope",
            "/v1/datasets",
            json!({"request_id": "d3", "name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = server
        .client
        .get(format!("{}/v1/releases", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = server
        .post_as(
            &operator,
            "/v1/datasets",
            json!({"request_id": "d4", "name": "flags"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Drafts, their diff, and a first release.
    let (status, _) = server
        .post_as(
            &viewer,
            "/v1/drafts",
            json!({"request_id": "x", "note": "n", "changes": []}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reply) = server
        .post("/v1/drafts", json!({"request_id": "dr0", "note": "n", "changes": [{"dataset": "nope", "key": "k", "value": 1}]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    let (status, reply) = server
        .post("/v1/drafts", json!({"request_id": "dr0", "note": "n", "changes": [{"dataset": "prices", "key": "", "value": 1}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let draft = server
        .draft(
            "dr1",
            &[
                ("prices", "sku/1", json!({"amount": 100, "name": "a"})),
                ("flags", "dark", json!(true)),
            ],
        )
        .await;
    let (status, appended) = server
        .post(
            &format!("/v1/drafts/{draft}/changes"),
            json!({"request_id": "ap1", "changes": [{"dataset": "prices", "key": "sku/2", "value": {"amount": 200}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{appended}");
    assert_eq!(appended["changes_total"], 3);
    let (status, info) = server.get_as(&viewer, &format!("/v1/drafts/{draft}")).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["changes_total"], 3);
    assert_eq!(info["release_id"], Value::Null);
    let (status, _) = server.get("/v1/drafts/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/v1/drafts/abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, diff) = server
        .get_as(&viewer, &format!("/v1/drafts/{draft}/diff"))
        .await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(diff["changes"].as_array().map(Vec::len), Some(3));
    let first = &diff["changes"][0];
    assert_eq!(first["dataset"], "flags");
    assert_eq!(first["before"], Value::Null);
    assert_eq!(first["after"], json!(true), "values are raw JSON");
    assert_eq!(
        diff["changes"][1]["after"],
        json!({"amount": 100, "name": "a"})
    );
    assert_eq!(diff["violations"], json!([]));
    let (status, page) = server
        .get(&format!("/v1/drafts/{draft}/diff?limit=1"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        page["next_after"],
        json!({"dataset": "flags", "key": "dark"})
    );
    let (status, page) = server
        .get(&format!(
            "/v1/drafts/{draft}/diff?limit=5&after_dataset=flags&after_key=dark"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(2));
    let (status, _) = server
        .get(&format!("/v1/drafts/{draft}/diff?limit=0"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, released) = server.release("r1", draft, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{released}");
    assert_eq!(released["state"], "live");
    let first_release = released["release_id"].as_u64().expect("id");
    let (status, again) = server.release("r1", draft, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        again, released,
        "a repeated request_id returns the first outcome"
    );
    let (status, reply) = server.release("r1b", draft, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&reply), "draft_already_released");
    let (status, reply) = server.get(&format!("/v1/drafts/{draft}/diff")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&reply), "draft_already_released");
    let (status, reply) = server.release("r404", 999, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");

    // Key reads: raw JSON, 404 for a missing key or dataset, ETag and 304.
    let (status, value) = server.value("prices", "sku%2F1", "").await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["value"], json!({"amount": 100, "name": "a"}));
    assert_eq!(value["release_id"], first_release);
    let (status, value) = server.get_as(&viewer, "/v1/datasets/flags/keys/dark").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["value"], json!(true));
    let (status, reply) = server.value("prices", "missing", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&reply), "not_found");
    let (status, _) = server.value("nothing", "k", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.value("prices", "sku%2F1", "?segments=a,,b").await;
    assert_eq!(status, StatusCode::OK);
    let url = format!("{}/v1/datasets/prices/keys/sku%2F1", server.base);
    let response = server
        .client
        .get(&url)
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("sent");
    let etag = response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .expect("text")
        .to_string();
    let response = server
        .client
        .get(&url)
        .bearer_auth(&viewer)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = server
        .client
        .get(&url)
        .bearer_auth(&viewer)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);

    // Batch reads: every role, null for a missing key.
    let (status, reads) = server
        .post_as(
            &viewer,
            "/v1/reads",
            json!({"keys": [{"dataset": "prices", "key": "sku/2"}, {"dataset": "prices", "key": "gone"}, {"dataset": "flags", "key": "dark"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reads}");
    assert_eq!(reads["values"][0]["value"], json!({"amount": 200}));
    assert_eq!(reads["values"][0]["key"], "sku/2");
    assert_eq!(reads["values"][1]["value"], Value::Null);
    assert_eq!(reads["values"][2]["release_id"], first_release);
    // A key of an unknown dataset is missing, like any other: the batch still answers.
    let (status, reads) = server
        .post_as(
            &viewer,
            "/v1/reads",
            json!({"keys": [{"dataset": "nothing", "key": "k"}, {"dataset": "flags", "key": "dark"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reads}");
    assert_eq!(
        reads["values"][0],
        json!({"dataset": "nothing", "key": "k", "value": null, "release_id": null})
    );
    assert_eq!(reads["values"][1]["value"], json!(true));
    assert_eq!(reads["values"][1]["release_id"], first_release);
    let (status, reply) = server
        .post_as(
            &viewer,
            "/v1/reads",
            json!({"keys": [{"dataset": "", "key": "k"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(code(&reply), "invalid_argument");
    let (status, _) = server
        .post_as(
            &viewer,
            "/v1/reads",
            json!({"context": {"user_id": ""}, "keys": []}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Guardrails: 422 with violations; forcing is the admin's alone.
    let breaking = server
        .draft("dr2", &[("prices", "sku/1", json!({"amount": 5000}))])
        .await;
    let (status, diff) = server.get(&format!("/v1/drafts/{breaking}/diff")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(diff["violations_total"].as_u64() >= Some(1), "{diff}");
    let (status, reply) = server.release("r2", breaking, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(code(&reply), "guardrail_violation");
    let violations = reply["error"]["details"]["violations"]
        .as_array()
        .expect("violations");
    assert!(!violations.is_empty());
    assert_eq!(violations[0]["dataset"], "prices");
    assert_eq!(violations[0]["key"], "sku/1");
    let (status, reply) = server
        .post_as(
            &operator,
            "/v1/releases",
            json!({"request_id": "r3", "draft_id": breaking, "force_reason": "urgent"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    let (status, forced) = server
        .release("r4", breaking, json!({"force_reason": "urgent fix"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{forced}");
    let forced_id = forced["release_id"].as_u64().expect("id");
    let (_, value) = server.value("prices", "sku%2F1", "").await;
    assert_eq!(value["value"], json!({"amount": 5000}));

    // Gray: release_in_progress, promote, abort, bad percent.
    let gray_draft = server
        .draft("dr3", &[("flags", "dark", json!(false))])
        .await;
    for bad in [
        json!({"gray": {"percent": 0}}),
        json!({"gray": {"percent": 100.5}}),
        json!({"gray": {"percent": 0.001}}),
        json!({"gray": {"percent": "10"}}),
        json!({"gray": {}}),
    ] {
        let (status, reply) = server.release("bad-gray", gray_draft, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {reply}");
    }
    let (status, gray) = server
        .release("r5", gray_draft, json!({"gray": {"users": ["u1"]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gray}");
    assert_eq!(gray["state"], "gray");
    let gray_id = gray["release_id"].as_u64().expect("id");
    let other = server.draft("dr4", &[("flags", "dark", json!(null))]).await;
    let (status, reply) = server.release("r6", other, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&reply), "release_in_progress");
    let (status, reply) = server
        .post_as(
            &viewer,
            &format!("/v1/releases/{gray_id}/promote"),
            json!({"request_id": "p0"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    let (status, promoted) = server
        .post(
            &format!("/v1/releases/{gray_id}/promote"),
            json!({"request_id": "p1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["state"], "live");
    let (_, value) = server.value("flags", "dark", "").await;
    assert_eq!(value["value"], json!(false));
    let (status, reply) = server
        .post(
            &format!("/v1/releases/{gray_id}/abort"),
            json!({"request_id": "a0"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&reply), "invalid_release_state");
    let (status, gray) = server
        .release("r7", other, json!({"gray": {"percent": 12.5}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gray}");
    let aborted_id = gray["release_id"].as_u64().expect("id");
    let (status, aborted) = server
        .post(
            &format!("/v1/releases/{aborted_id}/abort"),
            json!({"request_id": "a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{aborted}");
    assert_eq!(aborted["state"], "aborted");
    let (status, _) = server
        .post("/v1/releases/999/promote", json!({"request_id": "p9"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Rollback.
    let (status, reply) = server
        .post(
            "/v1/rollbacks",
            json!({"request_id": "rb0", "to_release_id": aborted_id, "reason": "no"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(code(&reply), "not_a_rollback_target");
    let (status, reply) = server
        .post_as(
            &client,
            "/v1/rollbacks",
            json!({"request_id": "rb1", "to_release_id": first_release, "reason": "bad"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    let (status, rolled) = server
        .post(
            "/v1/rollbacks",
            json!({"request_id": "rb2", "to_release_id": first_release, "reason": "bad prices"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    let restore_id = rolled["release_id"].as_u64().expect("id");
    assert!(restore_id > aborted_id);
    let (_, value) = server.value("prices", "sku%2F1", "").await;
    assert_eq!(value["value"], json!({"amount": 100, "name": "a"}));
    assert_eq!(value["release_id"], restore_id);
    let (_, value) = server.value("flags", "dark", "").await;
    assert_eq!(value["value"], json!(true));

    // The history, oldest first.
    let (status, listed) = server.get_as(&viewer, "/v1/releases").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let releases = listed["releases"].as_array().expect("releases");
    let ids: Vec<u64> = releases
        .iter()
        .filter_map(|r| r["release_id"].as_u64())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    let state = |id: u64| {
        releases
            .iter()
            .find(|r| r["release_id"] == id)
            .map(|r| r["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(state(forced_id), "rolled_back");
    assert_eq!(state(aborted_id), "aborted");
    assert_eq!(state(restore_id), "live");
    let forced = releases
        .iter()
        .find(|r| r["release_id"] == forced_id)
        .expect("forced");
    assert_eq!(forced["force_reason"], "urgent fix");
    assert_eq!(forced["author"], "admin");
    assert_eq!(releases[0]["note"], "test");
    let (status, page) = server
        .get(&format!(
            "/v1/releases?after_release_id={first_release}&limit=1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["releases"].as_array().map(Vec::len), Some(1));

    // The document lists the routes and the shapes match.
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
        "/v1/datasets",
        "/v1/drafts",
        "/v1/drafts/{id}",
        "/v1/drafts/{id}/changes",
        "/v1/drafts/{id}/diff",
        "/v1/releases",
        "/v1/releases/{id}/promote",
        "/v1/releases/{id}/abort",
        "/v1/rollbacks",
        "/v1/datasets/{name}/keys/{key}",
        "/v1/reads",
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
    assert_eq!(keys(&rolled), properties("ReleaseReplyDoc"));
    assert_eq!(keys(&releases[0]), properties("ReleaseDoc"));
    assert_eq!(keys(&listed), properties("ReleasesDoc"));
    assert_eq!(keys(&reads), properties("ReadsDoc"));
    assert_eq!(keys(&reads["values"][0]), properties("ReadValueDoc"));
    assert_eq!(keys(&value), properties("KeyValueDoc"));
    assert_eq!(keys(&diff), properties("DiffDoc"));
    assert_eq!(keys(&info), properties("DraftDoc"));
    assert_eq!(keys(&appended), properties("DraftCreatedDoc"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gray_rules_choose_readers_by_user_and_channel() {
    let clock = ManualClock::new(NOW);
    let server = Server::start(Arc::new(MemStorage::new()), &clock, 1).await;
    server.dataset("banner", None).await;
    let base = server
        .publish("base", &[("banner", "home", json!("old"))])
        .await;
    let draft = server.draft("g", &[("banner", "home", json!("new"))]).await;
    let (status, gray) = server
        .release(
            "gray",
            draft,
            json!({"gray": {"users": ["alice"], "channels": ["app"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gray}");
    let gray_id = gray["release_id"].as_u64().expect("id");
    for (query, expected, release) in [
        ("", "old", base),
        ("?user_id=alice", "new", gray_id),
        ("?user_id=bob", "old", base),
        ("?user_id=bob&channel=app", "new", gray_id),
        ("?channel=web", "old", base),
        ("?region=eu&segments=vip", "old", base),
    ] {
        let (status, value) = server.value("banner", "home", query).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value["value"], expected, "{query}");
        assert_eq!(value["release_id"], release, "{query}");
    }
    let (_, reads) = server
        .post(
            "/v1/reads",
            json!({"context": {"user_id": "bob", "channel": "app", "segments": []}, "keys": [{"dataset": "banner", "key": "home"}]}),
        )
        .await;
    assert_eq!(reads["values"][0]["value"], "new");
    let (status, _) = server
        .post(
            &format!("/v1/releases/{gray_id}/abort"),
            json!({"request_id": "abort"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, value) = server.value("banner", "home", "?user_id=alice").await;
    assert_eq!(value["value"], "old");

    // A percentage: stable per user; 100 % is everyone with a user id.
    let draft = server.draft("p", &[("banner", "home", json!("pct"))]).await;
    let (status, gray) = server
        .release("pct", draft, json!({"gray": {"percent": 100}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gray}");
    let (_, value) = server.value("banner", "home", "?user_id=zed").await;
    assert_eq!(value["value"], "pct");
    let (_, value) = server.value("banner", "home", "").await;
    assert_eq!(value["value"], "old", "no user id, no percent match");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_half_a_release() {
    let clock = ManualClock::new(NOW);
    let server = Arc::new(Server::start(Arc::new(MemStorage::new()), &clock, 2).await);
    server.dataset("a", None).await;
    server.dataset("b", None).await;
    server
        .publish("v0", &[("a", "k", json!(0)), ("b", "k", json!(0))])
        .await;
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let server = Arc::clone(&server);
        let done = Arc::clone(&done);
        let reads = Arc::clone(&reads);
        readers.push(tokio::spawn(async move {
            let mut last = 0;
            while !done.load(Ordering::SeqCst) {
                let (status, reply) = server
                    .post(
                        "/v1/reads",
                        json!({"keys": [{"dataset": "a", "key": "k"}, {"dataset": "b", "key": "k"}]}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{reply}");
                let a = reply["values"][0]["value"].as_u64().expect("a");
                let b = reply["values"][1]["value"].as_u64().expect("b");
                assert_eq!(a, b, "one release, seen whole: {reply}");
                assert!(a >= last, "never goes back");
                last = a;
                reads.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for n in 1..=30u64 {
        server
            .publish(
                &format!("v{n}"),
                &[("a", "k", json!(n)), ("b", "k", json!(n))],
            )
            .await;
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.expect("reader");
    }
    assert!(reads.load(Ordering::SeqCst) > 30);
    let (_, reply) = server
        .post(
            "/v1/reads",
            json!({"keys": [{"dataset": "a", "key": "k"}, {"dataset": "b", "key": "k"}]}),
        )
        .await;
    assert_eq!(reply["values"][0]["value"], 30);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
}

/// Polls a key until `expected` is served, at most 10 s.
async fn wait_for(server: &Server, dataset: &str, key: &str, expected: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, value) = server.value(dataset, key, "").await;
        if &value["value"] == expected {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{dataset}/{key} never became {expected}: {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_go_live_and_revert_follow_the_clock() {
    let clock = ManualClock::new(NOW);
    let server = Server::start(Arc::new(MemStorage::new()), &clock, 1).await;
    server.dataset("menu", None).await;
    let base = server
        .publish("base", &[("menu", "dish", json!({"price": 10}))])
        .await;
    let draft = server
        .draft("s", &[("menu", "dish", json!({"price": 12}))])
        .await;
    let (status, scheduled) = server
        .release(
            "sched",
            draft,
            json!({"go_live_at_ms": NOW + 60_000, "revert_at_ms": NOW + 120_000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scheduled}");
    assert_eq!(scheduled["state"], "scheduled");
    let id = scheduled["release_id"].as_u64().expect("id");
    let (_, value) = server.value("menu", "dish", "").await;
    assert_eq!(value["value"], json!({"price": 10}));

    // No request touches the server between the clock moving and the value changing: the
    // timer's record reaches the served view by itself.
    clock.advance_ms(60_000);
    let live = wait_for(&server, "menu", "dish", &json!({"price": 12})).await;
    assert_eq!(live["release_id"], id);
    clock.advance_ms(60_000);
    let reverted = wait_for(&server, "menu", "dish", &json!({"price": 10})).await;
    assert_ne!(reverted["release_id"], base, "a revert is a new release");
    let (_, listed) = server.get("/v1/releases").await;
    let releases = listed["releases"].as_array().expect("releases");
    let state = releases
        .iter()
        .find(|r| r["release_id"] == id)
        .map(|r| r["state"].clone());
    assert_eq!(state, Some(json!("rolled_back")));
    assert_eq!(
        releases.last().map(|r| r["kind"].clone()),
        Some(json!("revert"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_same_values_and_state() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(NOW);
    let server = Server::start(Arc::new(memory.clone()), &clock, 2).await;
    server.dataset("a", None).await;
    server.dataset("b", None).await;
    let first = server
        .publish(
            "p1",
            &[("a", "x", json!({"n": 1})), ("b", "y", json!([1, 2]))],
        )
        .await;
    server
        .publish("p2", &[("a", "x", json!({"n": 2})), ("a", "z", json!("z"))])
        .await;
    let draft = server.draft("g", &[("b", "y", json!(null))]).await;
    let (status, _) = server
        .release("g-release", draft, json!({"gray": {"users": ["u"]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .post(
            "/v1/rollbacks",
            json!({"request_id": "rb", "to_release_id": first, "reason": "r"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let batch = json!({"keys": [{"dataset": "a", "key": "x"}, {"dataset": "a", "key": "z"}, {"dataset": "b", "key": "y"}]});
    let gray_batch = json!({"context": {"user_id": "u"}, "keys": [{"dataset": "b", "key": "y"}]});
    let (_, before) = server.post("/v1/reads", batch.clone()).await;
    let (_, before_gray) = server.post("/v1/reads", gray_batch.clone()).await;
    let (_, releases_before) = server.get("/v1/releases").await;
    let hashes = server.hashes();
    server.stop().await;

    memory.crash(CrashMode::DropUnsynced);
    let server = Server::start(Arc::new(memory), &clock, 2).await;
    let (status, after) = server.post("/v1/reads", batch).await;
    assert_eq!(status, StatusCode::OK);
    let strip = |mut v: Value| {
        v.as_object_mut().map(|o| o.remove("lsn"));
        v
    };
    assert_eq!(strip(after), strip(before));
    let (_, after_gray) = server.post("/v1/reads", gray_batch).await;
    assert_eq!(strip(after_gray), strip(before_gray));
    let (_, releases_after) = server.get("/v1/releases").await;
    assert_eq!(strip(releases_after), strip(releases_before));
    assert_eq!(server.hashes(), hashes);
    // A repeated request after the restart returns its first outcome.
    let (status, repeated) = server
        .post(
            "/v1/rollbacks",
            json!({"request_id": "rb", "to_release_id": first, "reason": "r"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{repeated}");
    server.stop().await;
}
