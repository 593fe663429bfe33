//! Timings of the issue's targets, in-process (no log, no I/O): a 1,000,000-key release, a
//! 10,000-key change on it, and a rollback. Ignored by default; run in release:
//! `cargo test --release -p cairn-publishing --test perf -- --ignored --nocapture`

use cairn_publishing::{
    Actor, Change, GuardrailsSpec, Publishing, PublishingCommand, PublishingReply, ReadContext,
};
use serde_json::json;
use std::time::{Duration, Instant};

const KEYS: usize = 1_000_000;
const CHANGED: usize = 10_000;
const CHUNK: usize = 40_000;

struct Run {
    publishing: Publishing,
    lsn: u64,
    now_ms: u64,
}

impl Run {
    fn run(&mut self, command: &PublishingCommand) -> (PublishingReply, Duration, Duration) {
        let actor = Actor {
            name: "perf".into(),
            request_id: None,
        };
        let started = Instant::now();
        let (events, reply) = self
            .publishing
            .decide(command, &actor, self.now_ms)
            .expect("accepted");
        let decided = started.elapsed();
        let started = Instant::now();
        for event in &events {
            self.lsn += 1;
            self.publishing.apply(event, self.lsn, self.now_ms);
        }
        (reply, decided, started.elapsed())
    }

    /// Builds a draft in chunks; returns its id and the time spent deciding and applying (the
    /// commands are built before the clock starts).
    fn draft(&mut self, changes: Vec<Change>) -> (u64, Duration) {
        let mut chunks: Vec<Vec<Change>> = changes.chunks(CHUNK).map(<[Change]>::to_vec).collect();
        let rest = chunks.split_off(1);
        let first = PublishingCommand::CreateDraft {
            note: "perf".into(),
            changes: chunks.pop().unwrap_or_default(),
        };
        let (reply, decided, applied) = self.run(&first);
        let mut spent = decided + applied;
        let PublishingReply::Draft { draft_id, .. } = reply else {
            panic!("unexpected {reply:?}");
        };
        let appends: Vec<PublishingCommand> = rest
            .into_iter()
            .map(|changes| PublishingCommand::AppendToDraft { draft_id, changes })
            .collect();
        for append in &appends {
            let (_, decided, applied) = self.run(append);
            spent += decided + applied;
        }
        (draft_id, spent)
    }

    fn release(&mut self, draft_id: u64) -> (u64, Duration, Duration) {
        let (reply, decided, applied) = self.run(&PublishingCommand::CreateRelease {
            draft_id,
            gray: None,
            go_live_at_ms: None,
            revert_at_ms: None,
            force_reason: None,
        });
        let PublishingReply::Release { release_id, .. } = reply else {
            panic!("unexpected {reply:?}");
        };
        (release_id, decided, applied)
    }
}

fn price(key: usize, amount: usize) -> Change {
    Change {
        dataset: "prices".into(),
        key: format!("sku-{key:07}"),
        value: Some(json!({ "amount": amount, "currency": "EUR" })),
    }
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn timings_of_a_million_key_release_a_ten_thousand_key_change_and_a_rollback() {
    let mut run = Run {
        publishing: Publishing::default(),
        lsn: 0,
        now_ms: 1_800_000_000_000,
    };
    let guardrails: GuardrailsSpec = serde_json::from_value(json!({
        "numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 100_000_000}],
        "max_change_pct": [{"pointer": "/amount", "pct": 50}]
    }))
    .expect("parses");
    run.run(&PublishingCommand::CreateDataset {
        name: "prices".into(),
        guardrails: Some(guardrails),
        json_schema: None,
    });

    let (draft, built) = run.draft((0..KEYS).map(|i| price(i, 1000 + i % 1000)).collect());
    let (first, decided, applied) = run.release(draft);
    println!(
        "1,000,000-key release (numeric guardrails): draft built in {} chunks in {built:?}; release decided in {decided:?}, applied (live) in {applied:?}",
        KEYS / CHUNK
    );

    run.run(&PublishingCommand::CreateDataset {
        name: "plain".into(),
        guardrails: None,
        json_schema: None,
    });
    let plain = (0..KEYS)
        .map(|i| Change {
            dataset: "plain".into(),
            ..price(i, 1000 + i % 1000)
        })
        .collect();
    let (draft, built) = run.draft(plain);
    let (_, decided, applied) = run.release(draft);
    println!(
        "1,000,000-key release (no guardrails): draft built in {built:?}; release decided in {decided:?}, applied (live) in {applied:?}"
    );

    let step = KEYS / CHANGED;
    let plain_change = (0..CHANGED)
        .map(|i| Change {
            dataset: "plain".into(),
            ..price(i * step, 1234)
        })
        .collect();
    let (draft, built) = run.draft(plain_change);
    let (_, decided, applied) = run.release(draft);
    println!(
        "10,000-key change on 1,000,000 keys (no guardrails): draft built in {built:?}; release decided in {decided:?}, applied (live) in {applied:?}"
    );
    let (draft, built) = run.draft((0..CHANGED).map(|i| price(i * step, 1234)).collect());
    let (second, decided, applied) = run.release(draft);
    println!(
        "10,000-key change on 1,000,000 keys (numeric guardrails): draft built in {built:?}; release decided in {decided:?}, applied (live) in {applied:?}"
    );

    let view = run.publishing.view();
    let started = Instant::now();
    let served = view
        .get("prices", "sku-0000100", &ReadContext::default())
        .expect("exists");
    println!(
        "view taken and one read in {:?} (served by release {:?})",
        started.elapsed(),
        served.release_id
    );
    assert_eq!(served.release_id, Some(second));

    let (reply, decided, applied) = run.run(&PublishingCommand::Rollback {
        to_release_id: first,
        reason: "perf".into(),
    });
    println!(
        "rollback to the 1,000,000-key release: decided in {decided:?}, applied in {applied:?} ({reply:?})"
    );
    let served = run
        .publishing
        .view()
        .get("prices", "sku-0000100", &ReadContext::default())
        .expect("exists");
    assert_eq!(
        served.value.map(|v| v.to_string()),
        Some(r#"{"amount":1100,"currency":"EUR"}"#.into())
    );

    let started = Instant::now();
    let bytes = run.publishing.encode().expect("encodes");
    let encoded = started.elapsed();
    let started = Instant::now();
    let restored = Publishing::restore(&bytes).expect("restores");
    println!(
        "snapshot (two datasets of 1,000,000 keys, 3 + 2 versions): {} bytes encoded in {encoded:?}, restored in {:?}",
        bytes.len(),
        started.elapsed()
    );
    assert_eq!(restored.view().len("prices"), Some(KEYS));
    assert_eq!(restored, run.publishing);
}
