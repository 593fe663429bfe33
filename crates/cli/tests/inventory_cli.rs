//! Guards `cairn inventory ...` end to end: every subcommand against a real `cairn serve`, its
//! human and `--json` output, and its exit codes (0 success, 1 refused with `error: <code>` on
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

    /// `cairn inventory ARGS` against this server with the admin token.
    fn inventory(&self, args: &[&str]) -> Outcome {
        self.inventory_with_token(TOKEN, args)
    }

    fn inventory_with_token(&self, token: &str, args: &[&str]) -> Outcome {
        let mut command = cairn();
        command
            .arg("inventory")
            .args(args)
            .env("CAIRN_URL", &self.base)
            .env("CAIRN_TOKEN", token)
            .env("CAIRN_TIMEOUT_MS", "10000");
        finish(command)
    }

    /// `cairn market ARGS` against this server with the admin token.
    fn market(&self, args: &[&str]) -> Outcome {
        let mut command = cairn();
        command
            .arg("market")
            .args(args)
            .env("CAIRN_URL", &self.base)
            .env("CAIRN_TOKEN", TOKEN)
            .env("CAIRN_TIMEOUT_MS", "10000");
        finish(command)
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

/// The reservation id from `reservation ID: state (...)`.
fn reservation_id(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("reservation "))
        .unwrap_or_else(|| panic!("no reservation line: {stdout}"));
    let id = line["reservation ".len()..]
        .split(':')
        .next()
        .expect("an id");
    id.to_string()
}

/// The table row of a location in `get`'s output, split on whitespace.
fn row<'a>(stdout: &'a str, location: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&location))
        .unwrap_or_else(|| panic!("no row for {location}: {stdout}"))
}

#[test]
fn every_inventory_subcommand_round_trips_against_a_real_server() {
    let server = Server::start();

    // --reason is required: a usage error, exit 2, before any request.
    let missing = server.inventory(&[
        "adjust",
        "--sku",
        "TEE/RED",
        "--location",
        "W1",
        "--delta",
        "1",
    ]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);

    let adjusted = server
        .inventory(&[
            "adjust",
            "--sku",
            "TEE/RED",
            "--location",
            "W1",
            "--delta",
            "10",
            "--reason",
            "receipt",
            "--request-id",
            "adj-1",
        ])
        .ok();
    assert!(
        adjusted.stdout.starts_with("adjusted TEE/RED at W1 (lsn "),
        "{}",
        adjusted.stdout
    );
    assert!(
        adjusted.stdout.contains("request_id adj-1"),
        "{}",
        adjusted.stdout
    );
    assert_eq!(
        row(&adjusted.stdout, "W1"),
        ["W1", "10", "0", "0", "0", "10", "no"]
    );

    // The same request id and body is the first outcome again; a negative delta parses.
    let again = server
        .inventory(&[
            "adjust",
            "--sku",
            "TEE/RED",
            "--location",
            "W1",
            "--delta",
            "10",
            "--reason",
            "receipt",
            "--request-id",
            "adj-1",
            "--json",
        ])
        .ok();
    assert_eq!(again.json()["item"]["on_hand"], 10);
    let removed = server
        .inventory(&[
            "--json",
            "adjust",
            "--sku",
            "TEE/RED",
            "--location",
            "W2",
            "--delta",
            "5",
            "--reason",
            "receipt",
        ])
        .ok();
    assert_eq!(removed.json()["item"]["location"], "W2");
    let removed = server
        .inventory(&[
            "adjust",
            "--sku",
            "TEE/RED",
            "--location",
            "W2",
            "--delta",
            "-1",
            "--reason",
            "damaged",
            "--json",
        ])
        .ok();
    assert_eq!(removed.json()["item"]["on_hand"], 4);

    let policy = server
        .inventory(&[
            "policy",
            "--sku",
            "TEE/RED",
            "--location",
            "W1",
            "--safety-stock",
            "2",
        ])
        .ok();
    assert!(
        policy.stdout.starts_with("policy set for TEE/RED at W1"),
        "{}",
        policy.stdout
    );
    assert_eq!(
        row(&policy.stdout, "W1"),
        ["W1", "10", "0", "2", "0", "8", "no"]
    );

    let counted = server
        .inventory(&[
            "count",
            "--sku",
            "TEE/RED",
            "--location",
            "W1",
            "--on-hand",
            "12",
            "--expected-on-hand",
            "10",
        ])
        .ok();
    assert_eq!(
        row(&counted.stdout, "W1"),
        ["W1", "12", "0", "2", "0", "10", "no"]
    );

    // W1: 12 on hand, 2 safety; W2: 4. Reserve 3 at W1, then 5 anywhere.
    let placed = server
        .inventory(&["reserve", "--order-id", "order-1", "--line", "TEE/RED@W1:3"])
        .ok();
    let first = reservation_id(&placed.stdout);
    assert!(
        placed.stdout.contains(": active (order order-1"),
        "{}",
        placed.stdout
    );
    assert!(
        row(&placed.stdout, "TEE/RED").ends_with(&["W1", "3"]),
        "{}",
        placed.stdout
    );

    let anywhere = server
        .inventory(&[
            "reserve",
            "--order-id",
            "order-2",
            "--line",
            "TEE/RED:5",
            "--ttl-ms",
            "600000",
            "--json",
        ])
        .ok()
        .json();
    let second = anywhere["reservation_id"]
        .as_str()
        .expect("an id")
        .to_string();
    assert_eq!(anywhere["state"], "active");
    let allocated: i64 = anywhere["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|line| line["qty"].as_i64().expect("qty"))
        .sum();
    assert_eq!(allocated, 5, "{anywhere}");

    let table = server.inventory(&["get", "TEE/RED"]).ok();
    assert!(
        table.stdout.starts_with("TEE/RED: total available "),
        "{}",
        table.stdout
    );
    let header = table.stdout.lines().nth(1).expect("a header");
    for column in [
        "LOCATION",
        "ON_HAND",
        "RESERVED",
        "SAFETY_STOCK",
        "AVAILABLE",
        "OVERSOLD",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let json = server.inventory(&["get", "TEE/RED", "--json"]).ok().json();
    let reserved: i64 = json["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|item| item["reserved"].as_i64().expect("reserved"))
        .sum();
    assert_eq!(reserved, 8, "{json}");
    assert_eq!(json["sku"], "TEE/RED");

    let shown = server.inventory(&["get", "--reservation", &first]).ok();
    assert_eq!(reservation_id(&shown.stdout), first);

    let confirmed = server.inventory(&["confirm", &first]).ok();
    assert!(
        confirmed
            .stdout
            .contains(&format!("reservation {first}: confirmed")),
        "{}",
        confirmed.stdout
    );
    let released = server
        .inventory(&["release", &second, "--json"])
        .ok()
        .json();
    assert_eq!(released["state"], "released");
    server
        .inventory(&["release", &second])
        .refused("reservation_not_active");
    server
        .inventory(&["confirm", "0-999999"])
        .refused("not_found");

    // Confirming shipped 3 from W1; releasing gave the 5 back.
    let after = server.inventory(&["get", "TEE/RED"]).ok();
    assert_eq!(
        row(&after.stdout, "W1"),
        ["W1", "9", "0", "2", "0", "7", "no"]
    );

    let history = server.inventory(&["history", "TEE/RED"]).ok();
    for kind in [
        "adjusted",
        "policy_set",
        "counted",
        "reserved",
        "confirmed",
        "released",
    ] {
        assert!(history.stdout.contains(kind), "{kind}: {}", history.stdout);
    }
    assert!(history.stdout.contains("adj-1"), "{}", history.stdout);
    let history = server
        .inventory(&["history", "TEE/RED", "--json"])
        .ok()
        .json();
    assert!(
        history["events"].as_array().expect("events").len() >= 7,
        "{history}"
    );

    server
        .inventory(&["get", "NEVER-SEEN"])
        .refused("not_found");
    server.stop();
}

#[test]
fn a_count_that_expected_other_stock_exits_1_with_count_conflict() {
    let server = Server::start();
    server
        .inventory(&[
            "count",
            "--sku",
            "MUG",
            "--location",
            "W1",
            "--on-hand",
            "4",
        ])
        .ok();
    let conflict = server
        .inventory(&[
            "count",
            "--sku",
            "MUG",
            "--location",
            "W1",
            "--on-hand",
            "9",
            "--expected-on-hand",
            "5",
        ])
        .refused("count_conflict");
    assert!(conflict.stdout.is_empty(), "{}", conflict.stdout);
    // Nothing changed.
    let json = server.inventory(&["get", "MUG", "--json"]).ok().json();
    assert_eq!(json["locations"][0]["on_hand"], 4);
    server.stop();
}

#[test]
fn a_short_reservation_exits_1_with_insufficient_stock_and_its_details() {
    let server = Server::start();
    server
        .inventory(&[
            "adjust",
            "--sku",
            "CAP",
            "--location",
            "W1",
            "--delta",
            "2",
            "--reason",
            "r",
        ])
        .ok();
    let short = server
        .inventory(&["reserve", "--order-id", "o", "--line", "CAP@W1:3"])
        .refused("insufficient_stock");
    assert!(short.stderr.contains("details:"), "{}", short.stderr);
    assert!(
        short.stderr.contains("\"requested\": 3"),
        "{}",
        short.stderr
    );
    server.stop();
}

#[test]
fn a_count_below_reserved_shows_oversold_in_the_table() {
    let server = Server::start();
    server
        .inventory(&[
            "adjust",
            "--sku",
            "HAT",
            "--location",
            "W1",
            "--delta",
            "5",
            "--reason",
            "r",
        ])
        .ok();
    server
        .inventory(&["reserve", "--order-id", "o", "--line", "HAT@W1:4"])
        .ok();
    let counted = server
        .inventory(&[
            "count",
            "--sku",
            "HAT",
            "--location",
            "W1",
            "--on-hand",
            "1",
        ])
        .ok();
    assert_eq!(
        row(&counted.stdout, "W1"),
        ["W1", "1", "4", "0", "0", "-3", "yes"]
    );
    server.stop();
}

#[test]
fn a_bad_token_exits_1_unauthenticated() {
    let server = Server::start();
    let refused = server
        .inventory_with_token("not-the-token", &["get", "ANY"])
        .refused("unauthenticated");
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    server
        .inventory_with_token(
            "not-the-token",
            &[
                "adjust",
                "--sku",
                "A",
                "--location",
                "W1",
                "--delta",
                "1",
                "--reason",
                "r",
            ],
        )
        .refused("unauthenticated");
    server.stop();
}

#[test]
fn without_a_token_the_data_dirs_admin_token_is_used() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("admin.token"), format!("{TOKEN}\n")).expect("write");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        let mut command = cairn();
        command
            .arg("inventory")
            .args(args)
            .env("CAIRN_URL", &server.base)
            .env_remove("CAIRN_TOKEN");
        finish(command)
    };
    run(&[
        "adjust",
        "--data-dir",
        dir_arg,
        "--sku",
        "A",
        "--location",
        "W1",
        "--delta",
        "1",
        "--reason",
        "r",
    ])
    .ok();
    // No token and no data directory: a usage error, before any request.
    let missing = run(&["get", "A"]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(missing.stderr.contains("no token"), "{}", missing.stderr);
    server.stop();
}

#[test]
fn usage_errors_exit_2_without_a_server() {
    let unreachable = "http://127.0.0.1:9";
    for args in [
        &["reserve", "--order-id", "o", "--line", "no-quantity"][..],
        &["reserve", "--order-id", "o"][..],
        &["get"][..],
        &["get", ".."][..],
        &[
            "adjust",
            "--sku",
            "A",
            "--location",
            "W1",
            "--delta",
            "x",
            "--reason",
            "r",
        ][..],
        &["--url", "127.0.0.1:8080", "get", "A"][..],
    ] {
        let mut command = cairn();
        command
            .arg("inventory")
            .args(args)
            .env("CAIRN_URL", unreachable)
            .env("CAIRN_TOKEN", TOKEN);
        let outcome = finish(command);
        assert_eq!(outcome.code, Some(2), "{args:?}: {}", outcome.stderr);
    }
}

#[test]
fn an_unreachable_server_exits_1_naming_the_url() {
    let mut command = cairn();
    // Port 9 (discard) on loopback: nothing listens there in a test environment.
    command
        .args(["inventory", "get", "A", "--url", "http://127.0.0.1:9"])
        .env("CAIRN_TOKEN", TOKEN)
        .env("CAIRN_TIMEOUT_MS", "5000");
    let outcome = finish(command);
    assert_eq!(outcome.code, Some(1), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("cannot reach http://127.0.0.1:9"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn market_subcommands_trade_and_show_the_book_against_a_real_server() {
    let server = Server::start();
    server
        .market(&["create", "BTC/USD", "--tick-size", "5", "--lot-size", "1"])
        .ok();
    server
        .market(&["create", "BTC/USD", "--tick-size", "5", "--lot-size", "1"])
        .refused("already_exists");
    let sell = server
        .market(&[
            "order",
            "BTC/USD",
            "--account",
            "maker",
            "--side",
            "sell",
            "--qty",
            "3",
            "--price",
            "100",
        ])
        .ok();
    assert!(sell.stdout.contains("order 1 new"), "{}", sell.stdout);
    let buy = server
        .market(&[
            "order",
            "BTC/USD",
            "--account",
            "taker",
            "--side",
            "buy",
            "--qty",
            "2",
            "--price",
            "100",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(buy["status"], "filled");
    assert_eq!(buy["trades"][0]["price"], 100);
    let book = server.market(&["book", "BTC/USD"]).ok();
    assert!(book.stdout.contains("100"), "{}", book.stdout);
    let book = server.market(&["book", "BTC/USD", "--json"]).ok().json();
    assert_eq!(book["asks"][0]["qty"], 1);
    let trades = server.market(&["trades", "BTC/USD", "--json"]).ok().json();
    assert_eq!(trades["trades"].as_array().map(Vec::len), Some(1));
    server
        .market(&[
            "order",
            "BTC/USD",
            "--account",
            "a",
            "--side",
            "buy",
            "--qty",
            "1",
            "--price",
            "7",
        ])
        .refused("invalid_argument");
    server.market(&["cancel", "BTC/USD", "1"]).ok();
    server
        .market(&["cancel", "BTC/USD", "1"])
        .refused("order_not_open");
    let order = server
        .market(&["get", "BTC/USD", "1", "--json"])
        .ok()
        .json();
    assert_eq!(order["status"], "cancelled");
    server.market(&["book", "NOPE"]).refused("not_found");
    server.stop();
}
