//! Crashes in the middle of two-phase commit: a real `cairn serve --shards 3` under concurrent
//! multi-shard reservations aborts itself (`CAIRN_FAULT`) at each step of the protocol. After a
//! restart without the fault, every acknowledged reservation is whole and active, every order
//! holds the same units on each of its shards (nothing is half-applied), stock is conserved and
//! nothing is oversold.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{TOKEN, serve, serve_with_env};

const SHARDS: u16 = 3;
const PAIRS: usize = 4;
const UNITS: i64 = 10_000;

/// Every fault point, with the hit that aborts (later hits let some transactions finish first).
const FAULTS: [&str; 9] = [
    "txn.before_begin:40",
    "txn.after_begin:40",
    "txn.before_prepare:40",
    "txn.after_prepare:40",
    "txn.before_decide:40",
    "txn.after_decide:40",
    "txn.before_phase_two:81",
    "txn.before_phase_two:82",
    "txn.after_phase_two:40",
];

/// Pairs of SKUs on two different shards; an order always takes one unit of both of a pair.
fn pairs() -> Vec<(String, String)> {
    let shard = |sku: &str| cairn_types::shard_for_key(sku.as_bytes(), SHARDS);
    let skus: Vec<String> = (0..200).map(|n| format!("P{n}")).collect();
    let mut out = Vec::new();
    for first in &skus {
        if out.len() == PAIRS {
            break;
        }
        let used = |sku: &String| {
            out.iter()
                .any(|(a, b): &(String, String)| a == sku || b == sku)
        };
        if used(first) {
            continue;
        }
        if let Some(second) = skus
            .iter()
            .find(|s| !used(s) && *s != first && shard(s) != shard(first))
        {
            out.push((first.clone(), second.clone()));
        }
    }
    out
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Option<(u16, Value)> {
    let response = client
        .post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// Reserves until the server dies; returns the acknowledged ids and their pair.
async fn reserve_until_dead(base: String, worker: usize, tag: String) -> Vec<(String, usize)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let pairs = pairs();
    let mut acknowledged = Vec::new();
    for n in 0..10_000 {
        let pair = (worker + n) % PAIRS;
        let (a, b) = &pairs[pair];
        let body = json!({"request_id": format!("{tag}-{worker}-{n}"), "order_id": format!("{tag}-{worker}-{n}"),
            "lines": [{"sku": a, "location": "W", "qty": 1}, {"sku": b, "location": "W", "qty": 1}],
            "ttl_ms": 86_400_000});
        match post(&client, format!("{base}/v1/inventory/reservations"), body).await {
            None => break,
            Some((201, reply)) => {
                let id = reply["reservation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                acknowledged.push((id, pair));
            }
            Some(_) => {}
        }
    }
    acknowledged
}

/// `reserved` of every SKU of every pair.
async fn reserved(client: &reqwest::Client, base: &str) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for (a, b) in pairs() {
        let mut levels = [0i64; 2];
        for (slot, sku) in [a, b].iter().enumerate() {
            let item = get(client, format!("{base}/v1/inventory/items/{sku}")).await;
            let location = &item["locations"][0];
            assert_eq!(
                location["on_hand"].as_i64(),
                Some(UNITS),
                "stock is conserved: {item}"
            );
            levels[slot] = location["reserved"].as_i64().expect("reserved");
        }
        out.push((levels[0], levels[1]));
    }
    out
}

#[test]
fn a_crash_at_every_step_of_two_phase_commit_leaves_every_order_whole() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shards = SHARDS.to_string();
    let args = ["--shards", shards.as_str()];
    for fault in FAULTS {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = serve(&data, &args).expect("serves");
        runtime.block_on(async {
            let client = reqwest::Client::new();
            for (a, b) in pairs() {
                for sku in [a, b] {
                    let body = json!({"request_id": format!("stock-{sku}"), "sku": sku, "location": "W", "delta": UNITS, "reason": "stock"});
                    let (status, reply) = post(&client, format!("{}/v1/inventory/adjustments", first.base), body).await.expect("sent");
                    assert_eq!(status, 200, "{reply}");
                }
            }
        });
        assert!(first.terminate().success());
        let faulty = serve_with_env(&data, &args, &[("CAIRN_FAULT", fault)]).expect("serves");
        let workers: Vec<_> = (0..8)
            .map(|worker| {
                runtime.spawn(reserve_until_dead(faulty.base.clone(), worker, "f".into()))
            })
            .collect();
        let mut acknowledged = Vec::new();
        for worker in workers {
            acknowledged.extend(runtime.block_on(worker).expect("worker"));
        }
        let mut faulty = faulty;
        let status = faulty.child.wait().expect("waits");
        assert!(
            !status.success(),
            "{fault}: the server aborted itself ({status})"
        );
        let restarted = serve(&data, &args).expect("restarts after the crash");
        runtime.block_on(async {
            let client = reqwest::Client::new();
            // The resolver's first pass runs at start; give it a moment, bounded.
            let deadline = Instant::now() + Duration::from_secs(20);
            let levels = loop {
                let levels = reserved(&client, &restarted.base).await;
                if levels.iter().all(|(a, b)| a == b) || Instant::now() > deadline {
                    break levels;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            for (pair, (a, b)) in levels.iter().enumerate() {
                assert_eq!(a, b, "{fault}: pair {pair} is half-applied: {levels:?}");
            }
            let mut per_pair: BTreeMap<usize, i64> = BTreeMap::new();
            for (id, pair) in &acknowledged {
                let view = get(&client, format!("{}/v1/inventory/reservations/{id}", restarted.base)).await;
                assert_eq!(view["state"], "active", "{fault}: acknowledged {id} is whole: {view}");
                assert_eq!(view["lines"].as_array().map(Vec::len), Some(2), "{view}");
                *per_pair.entry(*pair).or_default() += 1;
            }
            for (pair, (a, _)) in levels.iter().enumerate() {
                let acked = per_pair.get(&pair).copied().unwrap_or(0);
                assert!(*a >= acked, "{fault}: pair {pair} holds {a} < acknowledged {acked}");
                assert!(*a <= UNITS);
            }
            // New orders work after the crash.
            let (a, b) = &pairs()[0];
            let body = json!({"request_id": "after", "order_id": "after",
                "lines": [{"sku": a, "location": "W", "qty": 1}, {"sku": b, "location": "W", "qty": 1}]});
            let (status, reply) = post(&client, format!("{}/v1/inventory/reservations", restarted.base), body).await.expect("sent");
            assert_eq!(status, 201, "{fault}: {reply}");
        });
        assert!(
            acknowledged.len() >= 3,
            "{fault}: some transactions finished before the crash ({})",
            acknowledged.len()
        );
        assert!(restarted.terminate().success());
    }
}
