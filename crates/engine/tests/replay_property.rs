//! Property: any sequence of commands, snapshots and restarts leaves a state whose hash equals a
//! replay of the log from zero and from the newest snapshot, and the ledger never overdraws.

mod common;

use cairn_engine::{Engine, EngineConfig, ManualClock, RequestKey, ShardConfig};
use cairn_log::storage::{CrashMode, MemStorage, Storage};
use cairn_types::ShardId;
use common::{Command, Ledger};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Step {
    Run(Command, Option<u8>),
    Advance(u64),
    Snapshot,
    Restart,
    Crash,
}

fn account() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string())
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let command = prop_oneof![
        (account(), 1..50u64).prop_map(|(account, amount)| Command::Deposit { account, amount }),
        (account(), 0..80u64).prop_map(|(account, amount)| Command::Withdraw { account, amount }),
        (account(), 1..30u64, 1..500u64).prop_map(|(account, amount, ttl_ms)| Command::Hold {
            account,
            amount,
            ttl_ms
        }),
        (account(), 0..40u32).prop_map(|(account, count)| Command::Burst { account, count }),
    ];
    prop_oneof![
        8 => (command, proptest::option::of(0..6u8)).prop_map(|(c, r)| Step::Run(c, r)),
        2 => (1..400u64).prop_map(Step::Advance),
        1 => Just(Step::Snapshot),
        1 => Just(Step::Restart),
        1 => Just(Step::Crash),
    ]
}

fn open(memory: &MemStorage, clock: &ManualClock) -> Engine<Ledger> {
    let shard = ShardConfig {
        clock: Arc::new(clock.clone()),
        snapshot_every_records: 17,
        ..ShardConfig::default()
    };
    let config = EngineConfig {
        data_dir: PathBuf::from("/p"),
        shard_count: Some(1),
        shard,
    };
    Engine::open_on(Arc::new(memory.clone()), config)
        .expect("opens")
        .0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn live_state_equals_replay_and_never_overdraws(steps in proptest::collection::vec(step(), 1..60)) {
        let memory = MemStorage::new();
        let clock = ManualClock::new(1_800_000_000_000);
        let mut engine = open(&memory, &clock);
        for step in steps {
            match step {
                Step::Run(command, request) => {
                    // Request ids are reused on purpose: sometimes with the same body, sometimes not.
                    let key = request.map(|r| RequestKey::new(format!("r{r}"), format!("{command:?}").as_bytes()));
                    let _ = engine.shard(ShardId(0)).expect("shard").execute(command, key);
                }
                Step::Advance(ms) => clock.advance_ms(ms),
                Step::Snapshot => {
                    engine.shard(ShardId(0)).expect("shard").snapshot_now().expect("snapshot");
                }
                Step::Restart => {
                    engine.shutdown();
                    engine = open(&memory, &clock);
                }
                Step::Crash => {
                    memory.crash(CrashMode::DropUnsynced);
                    drop(engine);
                    engine = open(&memory, &clock);
                }
            }
            let ledger = engine.shard(ShardId(0)).expect("shard").read_blocking(|l: &Ledger, _| l.clone()).expect("read");
            for account in ["a", "b", "c"] {
                prop_assert!(ledger.held(account) <= ledger.balance(account), "holds exceed the balance");
            }
        }
        let (lsn, live) = engine.shard(ShardId(0)).expect("shard").state_hash().expect("hash");
        engine.shutdown();
        let storage: Arc<dyn Storage> = Arc::new(memory);
        let dir = cairn_engine::shard_dir(&PathBuf::from("/p"), ShardId(0));
        for from_zero in [false, true] {
            let replayed = cairn_engine::offline::replay_shard::<Ledger>(&storage, &dir, None, from_zero).expect("replay");
            prop_assert_eq!(replayed.lsn, lsn);
            prop_assert_eq!(replayed.state_hash, live);
        }
    }
}
