//! Guards `cairn publish ...` end to end: every subcommand against a real `cairn serve`, its
//! readable and `--json` output, and its exit codes (0 success, 1 refused with `error: <code>` on
//! stderr, 2 usage). Every wait is bounded.

mod support;

use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Served, TOKEN, cairn, serve};

/// The longest one CLI invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the server may take to stop after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command printed, and how it exited.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn ok(self) -> Outcome {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn refused(self, code: &str) -> Outcome {
        assert_eq!(
            self.code,
            Some(1),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        let prefix = format!("error: {code}: ");
        assert!(
            self.stderr.lines().any(|line| line.starts_with(&prefix)),
            "expected '{prefix}...' on stderr: {}",
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs a command to its end, killing it after `COMMAND_TIMEOUT`.
fn finish(mut command: Command) -> Outcome {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn starts");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let code = wait_bounded(&mut child, COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("a cairn command ran longer than {COMMAND_TIMEOUT:?}"));
    Outcome {
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The exit code, or `None` (after killing the child) when it outlives `timeout`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<Option<i32>> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.code());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A running server that is stopped however the test ends.
struct Server {
    served: Option<Served>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let served = serve(&dir.path().join("data"), &[]).expect("cairn serve starts");
        let base = served.base.clone();
        Server {
            served: Some(served),
            base,
            _dir: dir,
        }
    }

    /// `cairn publish ARGS` against this server with the admin token.
    fn publish(&self, args: &[&str]) -> Outcome {
        self.publish_with_token(TOKEN, args)
    }

    fn publish_with_token(&self, token: &str, args: &[&str]) -> Outcome {
        let mut command = cairn();
        command
            .arg("publish")
            .args(args)
            .env("CAIRN_URL", &self.base)
            .env("CAIRN_TOKEN", token)
            .env("CAIRN_TIMEOUT_MS", "10000");
        finish(command)
    }

    /// A new token of `role`, made with the admin token (bounded by the client's timeout).
    fn token(&self, role: &str, name: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let response = client
                .post(format!("{}/v1/tokens", self.base))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"role": role, "name": name}))
                .send()
                .await
                .expect("token request");
            assert!(response.status().is_success(), "{}", response.status());
            let body: Value = response.json().await.expect("token body");
            body["token"].as_str().expect("a token").to_string()
        })
    }

    /// SIGTERM and a bounded wait for a clean exit.
    fn stop(mut self) {
        let Some(mut served) = self.served.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &served.child.id().to_string()])
            .status();
        let code = wait_bounded(&mut served.child, SHUTDOWN_TIMEOUT);
        assert_eq!(code, Some(Some(0)), "the server stops cleanly");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.kill();
        }
    }
}

/// The number after `prefix` in the first line that starts with it (`draft 3: ...` -> 3).
fn id_after(stdout: &str, prefix: &str) -> String {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with '{prefix}': {stdout}"));
    line[prefix.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no id in '{line}'"))
        .to_string()
}

/// `draft --note NOTE --set ...`, returning the draft id.
fn draft(server: &Server, note: &str, sets: &[&str]) -> String {
    let mut args = vec!["draft", "--note", note];
    for set in sets {
        args.extend(["--set", set]);
    }
    id_after(&server.publish(&args).ok().stdout, "draft ")
}

/// The value of `prices/KEY` as `get --json` with `extra` reads it.
fn amount(server: &Server, key: &str, extra: &[&str]) -> i64 {
    let mut args = vec!["get", "prices", key, "--json"];
    args.extend(extra);
    let answer = server.publish(&args).ok().json();
    answer["value"]["amount"]
        .as_i64()
        .unwrap_or_else(|| panic!("no amount: {answer}"))
}

#[test]
fn every_publish_subcommand_round_trips_against_a_real_server() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");

    // Usage errors exit 2 before any request.
    assert_eq!(server.publish(&["draft", "--note", "x"]).code, Some(2));
    assert_eq!(
        server
            .publish(&["draft", "--note", "x", "--set", "prices/k"])
            .code,
        Some(2)
    );
    assert_eq!(server.publish(&["release", "seven"]).code, Some(2));
    assert_eq!(server.publish(&["rollback", "--to", "1"]).code, Some(2));
    let no_token = finish({
        let mut command = cairn();
        command
            .args(["publish", "history", "--url", &server.base])
            .env_remove("CAIRN_TOKEN");
        command
    });
    assert_eq!(no_token.code, Some(2), "{}", no_token.stderr);

    // A dataset with guardrails; a second with the same name is refused.
    let guardrails = dir.path().join("guardrails.json");
    std::fs::write(
        &guardrails,
        r#"{"numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 1000}],
            "max_change_pct": [{"pointer": "/amount", "pct": 50}]}"#,
    )
    .expect("writes");
    let guardrails = guardrails.to_str().expect("utf-8");
    let created = server
        .publish(&["dataset", "create", "prices", "--guardrails", guardrails])
        .ok();
    assert!(
        created.stdout.starts_with("dataset prices created"),
        "{}",
        created.stdout
    );
    server
        .publish(&["dataset", "create", "prices"])
        .refused("already_exists");

    // Draft, diff, release live, read.
    let first = draft(
        &server,
        "launch",
        &[
            r#"prices/sku1={"amount":100}"#,
            r#"prices/sku2={"amount":200}"#,
        ],
    );
    let diff = server.publish(&["diff", &first]).ok();
    assert!(diff.stdout.contains("2 changes"), "{}", diff.stdout);
    assert!(diff.stdout.contains("sku1"), "{}", diff.stdout);
    assert!(diff.stdout.contains("(absent)"), "{}", diff.stdout);
    assert!(diff.stdout.contains("guardrails: ok"), "{}", diff.stdout);
    let diff_json = server.publish(&["diff", &first, "--json"]).ok().json();
    assert_eq!(diff_json["changes"].as_array().map(Vec::len), Some(2));
    let released = server.publish(&["release", &first]).ok();
    assert!(released.stdout.contains(": live"), "{}", released.stdout);
    let launch = id_after(&released.stdout, "release ");
    assert_eq!(amount(&server, "sku1", &[]), 100);
    let read = server.publish(&["get", "prices", "sku2"]).ok();
    assert!(
        read.stdout.starts_with(&format!(
            "prices/sku2 = {{\"amount\":200}} (release {launch}"
        )),
        "{}",
        read.stdout
    );
    server
        .publish(&["get", "prices", "nothing"])
        .refused("not_found");
    server
        .publish(&["release", &first])
        .refused("draft_already_released");

    // A guardrail violation: shown by diff, refused by release (exit 1, details), forced only
    // by an admin.
    let wild = draft(&server, "typo", &[r#"prices/sku1={"amount":5000}"#]);
    let diff = server.publish(&["diff", &wild]).ok();
    assert!(diff.stdout.contains("violations"), "{}", diff.stdout);
    let refused = server
        .publish(&["release", &wild])
        .refused("guardrail_violation");
    assert!(refused.stderr.contains("details:"), "{}", refused.stderr);
    assert!(refused.stderr.contains("sku1"), "{}", refused.stderr);
    let operator = server.token("operator", "ops");
    server
        .publish_with_token(&operator, &["release", &wild, "--force-reason", "sale"])
        .refused("permission_denied");
    let viewer = server.token("viewer", "looker");
    server
        .publish_with_token(&viewer, &["draft", "--note", "n", "--set", "prices/k=1"])
        .refused("permission_denied");
    let forced = server
        .publish(&["release", &wild, "--force-reason", "flash sale", "--json"])
        .ok()
        .json();
    assert_eq!(forced["state"], "live", "{forced}");
    let forced_id = forced["release_id"].as_u64().expect("an id").to_string();
    assert_eq!(amount(&server, "sku1", &[]), 5000);

    // Roll back to the launch: sku1 is 100 again. The operator may do it.
    let rolled = server
        .publish_with_token(
            &operator,
            &["rollback", "--to", &launch, "--reason", "typo"],
        )
        .ok();
    assert!(
        rolled
            .stdout
            .contains(&format!("restores release {launch}")),
        "{}",
        rolled.stdout
    );
    assert_eq!(amount(&server, "sku1", &[]), 100);

    // Gray to one user (by an operator), then promote.
    let gray = draft(&server, "gray", &[r#"prices/sku1={"amount":120}"#]);
    let released = server
        .publish_with_token(&operator, &["release", &gray, "--users", "alice,bob"])
        .ok();
    assert!(released.stdout.contains(": gray"), "{}", released.stdout);
    let gray_id = id_after(&released.stdout, "release ");
    assert_eq!(amount(&server, "sku1", &["--user-id", "alice"]), 120);
    assert_eq!(amount(&server, "sku1", &["--user-id", "carol"]), 100);
    let other = draft(&server, "queued", &[r#"prices/sku2={"amount":210}"#]);
    server
        .publish(&["release", &other])
        .refused("release_in_progress");
    let promoted = server.publish(&["promote", &gray_id]).ok();
    assert!(promoted.stdout.contains(": live"), "{}", promoted.stdout);
    assert_eq!(amount(&server, "sku1", &["--user-id", "carol"]), 120);
    server
        .publish(&["promote", &gray_id])
        .refused("invalid_release_state");

    // Gray by percent and segments, then abort.
    let released = server
        .publish(&["release", &other, "--percent", "12.5", "--segments", "vip"])
        .ok();
    let aborted_id = id_after(&released.stdout, "release ");
    assert_eq!(amount(&server, "sku2", &["--segments", "vip,new"]), 210);
    let aborted = server.publish(&["abort", &aborted_id]).ok();
    assert!(aborted.stdout.contains(": aborted"), "{}", aborted.stdout);
    assert_eq!(amount(&server, "sku2", &["--segments", "vip"]), 200);
    server.publish(&["abort", "999"]).refused("not_found");

    // History: every release, oldest first, with its state.
    let history = server.publish(&["history", "--json"]).ok().json();
    let releases = history["releases"].as_array().expect("releases");
    let state = |id: &str| {
        releases
            .iter()
            .find(|r| r["release_id"].as_u64().map(|n| n.to_string()).as_deref() == Some(id))
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no release {id}: {history}"))
    };
    assert_eq!(state(&forced_id), "rolled_back");
    assert_eq!(state(&aborted_id), "aborted");
    assert_eq!(state(&gray_id), "live");
    let table = server.publish(&["history"]).ok();
    assert!(table.stdout.starts_with("RELEASE"), "{}", table.stdout);
    assert!(table.stdout.contains("flash sale"), "{}", table.stdout);
    assert!(table.stdout.contains("rolled_back"), "{}", table.stdout);

    server.stop();
}

#[test]
fn a_large_change_file_goes_in_chunks_and_can_be_repeated() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    server.publish(&["dataset", "create", "bulk"]).ok();

    let changes: Vec<Value> = (0..25_000)
        .map(|i| serde_json::json!({"dataset": "bulk", "key": format!("k{i}"), "value": i}))
        .collect();
    let file = dir.path().join("changes.json");
    std::fs::write(&file, serde_json::to_vec(&changes).expect("encodes")).expect("writes");
    let file = file.to_str().expect("utf-8");
    let args = [
        "draft",
        "--note",
        "bulk load",
        "--file",
        file,
        "--request-id",
        "bulk-load-1",
    ];
    let out = server.publish(&args).ok();
    assert!(
        out.stdout.contains("25000 changes (3 requests"),
        "{}",
        out.stdout
    );
    let id = id_after(&out.stdout, "draft ");
    // The same request id again: the same draft, nothing added.
    let again = server.publish(&args).ok();
    assert_eq!(id_after(&again.stdout, "draft "), id);
    assert!(again.stdout.contains("25000 changes"), "{}", again.stdout);

    let diff = server.publish(&["diff", &id, "--max-changes", "10"]).ok();
    assert!(diff.stdout.contains("24990 more"), "{}", diff.stdout);
    server.publish(&["release", &id]).ok();
    let read = server
        .publish(&["get", "bulk", "k24999", "--json"])
        .ok()
        .json();
    assert_eq!(read["value"], 24999);

    // A file that is not changes is a usage error.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"nope\": 1}").expect("writes");
    let bad = server.publish(&[
        "draft",
        "--note",
        "x",
        "--file",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);

    server.stop();
}
