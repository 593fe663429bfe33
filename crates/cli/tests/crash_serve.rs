//! The crash test: a server under concurrent reservation load is SIGKILLed several times. After
//! each restart every acknowledged reservation is there, nothing unacknowledged is half-applied,
//! and no unit is oversold.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{TOKEN, serve};

const UNITS: i64 = 400;
const SKUS: usize = 4;

async fn reserve_until_stopped(
    base: String,
    worker: usize,
    round: usize,
    stop: Arc<AtomicBool>,
) -> Vec<(String, i64, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sku = format!("S{}", (worker + n) % SKUS);
        let qty = 1 + (n % 3) as i64;
        let body = json!({"request_id": format!("r{round}-{worker}-{n}"), "order_id": format!("o{round}-{worker}-{n}"),
            "lines": [{"sku": sku, "qty": qty}], "ttl_ms": 86_400_000});
        let Ok(response) = client
            .post(format!("{base}/v1/inventory/reservations"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
        else {
            break;
        };
        if response.status().as_u16() != 201 {
            continue;
        }
        if let Ok(reply) = response.json::<Value>().await {
            let id = reply["reservation_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            acknowledged.push((id, qty, sku));
        }
    }
    acknowledged
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_reservation_and_never_oversells() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = serve(&data, &[]).expect("serves");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for sku in 0..SKUS {
            let body = json!({"request_id": format!("stock-{sku}"), "sku": format!("S{sku}"), "location": "W", "delta": UNITS, "reason": "stock"});
            let response = client.post(format!("{}/v1/inventory/adjustments", server.base)).bearer_auth(TOKEN).json(&body).send().await;
            assert!(response.expect("sent").status().is_success());
        }
    });
    let mut server = Some(server);
    let mut acknowledged: Vec<(String, i64, String)> = Vec::new();
    for round in 0..4 {
        let running = server
            .take()
            .unwrap_or_else(|| serve(&data, &[]).expect("restarts"));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..16)
            .map(|worker| {
                runtime.spawn(reserve_until_stopped(
                    running.base.clone(),
                    worker,
                    round,
                    Arc::clone(&stop),
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 150 * round as u64));
        running.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            acknowledged.extend(runtime.block_on(worker).expect("worker"));
        }
        let restarted = serve(&data, &[]).expect("restarts after SIGKILL");
        check(&runtime, &restarted.base, &acknowledged);
        server = Some(restarted);
    }
    assert!(
        acknowledged.len() > 50,
        "the load was real: {} acknowledged",
        acknowledged.len()
    );
    if let Some(server) = server {
        assert!(server.terminate().success());
    }
}

fn check(runtime: &tokio::runtime::Runtime, base: &str, acknowledged: &[(String, i64, String)]) {
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for (id, qty, sku) in acknowledged {
            let view: Value = client
                .get(format!("{base}/v1/inventory/reservations/{id}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            assert_eq!(
                view["state"], "active",
                "acknowledged reservation {id} is missing: {view}"
            );
            assert_eq!(view["lines"][0]["qty"].as_i64(), Some(*qty));
            assert_eq!(view["lines"][0]["sku"].as_str(), Some(sku.as_str()));
        }
        let mut held_by_acknowledged: BTreeMap<String, i64> = BTreeMap::new();
        for (_, qty, sku) in acknowledged {
            *held_by_acknowledged.entry(sku.clone()).or_default() += qty;
        }
        for sku in 0..SKUS {
            let item: Value = client
                .get(format!("{base}/v1/inventory/items/S{sku}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            let location = &item["locations"][0];
            let reserved = location["reserved"].as_i64().expect("reserved");
            let on_hand = location["on_hand"].as_i64().expect("on_hand");
            assert_eq!(on_hand, UNITS, "nothing shipped");
            assert!(reserved <= UNITS, "S{sku} oversold: {item}");
            let acknowledged = held_by_acknowledged
                .get(&format!("S{sku}"))
                .copied()
                .unwrap_or(0);
            // Reservations that were durable but whose reply was lost in the kill may exist too,
            // each whole: reserved is at least what was acknowledged.
            assert!(
                reserved >= acknowledged,
                "S{sku}: reserved {reserved} < acknowledged {acknowledged}"
            );
        }
    });
}

/// An acknowledged order: its market, id, what had filled when it was answered, and the trades
/// its reply listed (trade id, price, qty, maker, taker).
type AckedOrder = (String, u64, i64, Vec<(u64, i64, i64, u64, u64)>);

const MARKETS: [&str; 2] = ["M-A", "M-B"];

async fn trade_until_stopped(
    base: String,
    worker: usize,
    round: usize,
    stop: Arc<AtomicBool>,
) -> Vec<AckedOrder> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut acknowledged = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let symbol = MARKETS[(worker + n) % MARKETS.len()];
        let side = if (worker + n / 2).is_multiple_of(2) {
            "buy"
        } else {
            "sell"
        };
        // Both sides on both markets (the side does not follow the market's parity), prices
        // around 100 so that orders cross often; some IOC.
        let price = 95 + ((worker * 7 + n * 3) % 11) as i64;
        let tif = if n.is_multiple_of(5) { "ioc" } else { "gtc" };
        let body = json!({"request_id": format!("o{round}-{worker}-{n}"), "account": format!("acct{}", worker % 5),
            "side": side, "type": "limit", "price": price, "qty": 1 + (n % 4) as i64, "time_in_force": tif});
        let Ok(response) = client
            .post(format!("{base}/v1/markets/{symbol}/orders"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
        else {
            break;
        };
        if response.status().as_u16() != 201 {
            continue;
        }
        let Ok(reply) = response.json::<Value>().await else {
            continue;
        };
        let trades = reply["trades"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let field = |name: &str| t[name].as_i64().unwrap_or(-1);
                (
                    field("trade_id") as u64,
                    field("price"),
                    field("qty"),
                    field("maker_order_id") as u64,
                    field("taker_order_id") as u64,
                )
            })
            .collect();
        acknowledged.push((
            symbol.to_string(),
            reply["order_id"].as_u64().unwrap_or(0),
            reply["filled_qty"].as_i64().unwrap_or(-1),
            trades,
        ));
    }
    acknowledged
}

#[test]
fn sigkill_under_order_load_keeps_every_acknowledged_order_and_trade_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = serve(&data, &["--shards", "2"]).expect("serves");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for symbol in MARKETS {
            let body = json!({"request_id": format!("m-{symbol}"), "symbol": symbol, "tick_size": 1, "lot_size": 1});
            let response = client
                .post(format!("{}/v1/markets", server.base))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await;
            assert_eq!(response.expect("sent").status().as_u16(), 201);
        }
    });
    let mut server = Some(server);
    let mut acknowledged: Vec<AckedOrder> = Vec::new();
    for round in 0..3 {
        let running = server
            .take()
            .unwrap_or_else(|| serve(&data, &["--shards", "2"]).expect("restarts"));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..12)
            .map(|worker| {
                runtime.spawn(trade_until_stopped(
                    running.base.clone(),
                    worker,
                    round,
                    Arc::clone(&stop),
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 200 * round as u64));
        running.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            acknowledged.extend(runtime.block_on(worker).expect("worker"));
        }
        let restarted = serve(&data, &["--shards", "2"]).expect("restarts after SIGKILL");
        check_orders(&runtime, &restarted.base, &acknowledged);
        server = Some(restarted);
    }
    assert!(
        acknowledged.len() > 50,
        "the load was real: {} acknowledged",
        acknowledged.len()
    );
    assert!(
        acknowledged
            .iter()
            .any(|(_, _, _, trades)| !trades.is_empty()),
        "orders crossed and traded"
    );
    if let Some(server) = server {
        assert!(server.terminate().success());
    }
    // The books rebuilt from zero hash like the books rebuilt from a snapshot.
    let snapshot = support::run(&["snapshot", "--data-dir", &data.display().to_string()]);
    assert!(snapshot.status.success(), "{snapshot:?}");
    let hashes = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["replay", "--json", "--data-dir"];
        let dir = data.display().to_string();
        args.push(&dir);
        args.extend_from_slice(extra);
        let output = support::run(&args);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).expect("json line");
                value["state_hash"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    };
    let from_snapshot = hashes(&[]);
    assert_eq!(from_snapshot.len(), 2);
    assert_eq!(from_snapshot, hashes(&["--from-zero"]));
}

fn check_orders(runtime: &tokio::runtime::Runtime, base: &str, acknowledged: &[AckedOrder]) {
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let get = |path: String| {
            let client = client.clone();
            async move {
                let response = client
                    .get(format!("{base}{path}"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(response.status().as_u16(), 200, "{path}");
                response.json::<Value>().await.expect("json")
            }
        };
        let mut trades_by_market: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
        for symbol in MARKETS {
            let mut after = 0u64;
            let trades = trades_by_market.entry(symbol.to_string()).or_default();
            loop {
                let page = get(format!(
                    "/v1/markets/{symbol}/trades?after_trade_id={after}&limit=1000"
                ))
                .await;
                let list = page["trades"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    break;
                }
                for trade in list {
                    let id = trade["trade_id"].as_u64().expect("trade id");
                    assert!(id > after, "trades in execution order");
                    after = id;
                    assert!(trades.insert(id, trade).is_none(), "trade {id} twice");
                }
            }
            // Trade ids are dense: no trade lost in the middle, none duplicated.
            let ids: Vec<u64> = trades.keys().copied().collect();
            let expected: Vec<u64> = (1..=ids.len() as u64).collect();
            assert_eq!(ids, expected, "{symbol}: trade ids have a gap");
            let book = get(format!("/v1/markets/{symbol}/book?depth=1")).await;
            if let (Some(bid), Some(ask)) = (
                book["bids"][0]["price"].as_i64(),
                book["asks"][0]["price"].as_i64(),
            ) {
                assert!(bid < ask, "{symbol}: the book is crossed: {book}");
            }
        }
        for (symbol, order_id, filled, trades) in acknowledged {
            let order = get(format!("/v1/markets/{symbol}/orders/{order_id}")).await;
            assert!(
                order["filled_qty"].as_i64().unwrap_or(-1) >= *filled,
                "acknowledged order {symbol}/{order_id} lost fills: {order}"
            );
            for (trade_id, price, qty, maker, taker) in trades {
                let logged = &trades_by_market[symbol][trade_id];
                assert_eq!(
                    (
                        logged["price"].as_i64(),
                        logged["qty"].as_i64(),
                        logged["maker_order_id"].as_u64(),
                        logged["taker_order_id"].as_u64()
                    ),
                    (Some(*price), Some(*qty), Some(*maker), Some(*taker)),
                    "acknowledged trade {symbol}/{trade_id} differs after restart"
                );
            }
        }
    });
}
