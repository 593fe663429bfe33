//! Breakdown of snapshot costs for 1,000,000 resting orders (release): freeze, image, encode,
//! decode, rebuild. `cargo run --release -p cairn-matching --example snapshot_profile`.

use cairn_matching::workload::{Driver, Workload, WorkloadConfig, create_market};
use cairn_matching::{Actor, Matching, MatchingImage, MatchingReply};
use std::time::Instant;

fn main() {
    let config = WorkloadConfig {
        resting: 1_000_000,
        band_ticks: 500,
        ..WorkloadConfig::default()
    };
    let mut matching = Matching::default();
    let actor = Actor::default();
    let (events, _) = matching
        .decide(&create_market(&config), &actor, 1)
        .expect("created");
    matching.apply(&events[0], 1, 1);
    let mut driver = Driver::new(config.accounts);
    let started = Instant::now();
    for (lsn, op) in Workload::new(config).take(config.resting).enumerate() {
        let command = driver.command(&op);
        let (events, reply) = matching.decide(&command, &actor, 2).expect("placed");
        for event in &events {
            matching.apply(event, lsn as u64 + 2, 2);
        }
        let MatchingReply::Order(order) = reply else {
            unreachable!()
        };
        driver.placed(order.order_id);
    }
    println!("place 1M: {:?}", started.elapsed());
    for _ in 0..3 {
        let t = Instant::now();
        let frozen = matching.clone();
        let freeze = t.elapsed();
        let t = Instant::now();
        let image = frozen.image();
        let image_time = t.elapsed();
        let t = Instant::now();
        let bytes = postcard::to_stdvec(&image).expect("encodes");
        let encode = t.elapsed();
        let t = Instant::now();
        let decoded: MatchingImage = postcard::from_bytes(&bytes).expect("decodes");
        let decode = t.elapsed();
        let t = Instant::now();
        let rebuilt = Matching::from_image(&decoded).expect("rebuilds");
        let rebuild = t.elapsed();
        println!(
            "freeze {freeze:?} image {image_time:?} encode {encode:?} decode {decode:?} rebuild {rebuild:?} ({} bytes)",
            bytes.len()
        );
        drop(rebuilt);
    }
}
