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
