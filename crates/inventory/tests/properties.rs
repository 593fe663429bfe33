//! Properties of the inventory state machine under random command sequences: reservations never
//! oversell, `reserved` always equals the sum of active reservation lines, and replaying the
//! events gives the same state.

use cairn_inventory::{
    Actor, HeldOp, Inventory, InventoryCommand, InventoryEvent, InventoryReply, LineRequest,
    PrepareOp, ReservationState,
};
use cairn_types::{ShardId, TxnId};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Step {
    Command(InventoryCommand),
    Advance(u64),
}

const SKUS: [&str; 2] = ["A", "B"];
const LOCATIONS: [&str; 3] = ["L1", "L2", "L3"];

fn sku() -> impl Strategy<Value = String> {
    prop::sample::select(SKUS.to_vec()).prop_map(String::from)
}

fn location() -> impl Strategy<Value = String> {
    prop::sample::select(LOCATIONS.to_vec()).prop_map(String::from)
}

fn command(with_counts_and_policies: bool) -> BoxedStrategy<InventoryCommand> {
    let adjust = (sku(), location(), -20..40i64)
        .prop_filter("non-zero", |(_, _, d)| *d != 0)
        .prop_map(|(sku, location, delta)| InventoryCommand::Adjust {
            sku,
            location,
            delta,
            reason: "test".into(),
        });
    let line = (sku(), prop::option::of(location()), 1..15i64)
        .prop_map(|(sku, location, qty)| LineRequest { sku, location, qty });
    let reserve = (0..6u8, prop::collection::vec(line, 1..4), 1..2_000u64).prop_map(
        |(order, lines, ttl_ms)| InventoryCommand::Reserve {
            order_id: format!("o{order}"),
            lines,
            ttl_ms,
        },
    );
    let confirm =
        (0..30u64).prop_map(|reservation_id| InventoryCommand::Confirm { reservation_id });
    let release =
        (0..30u64).prop_map(|reservation_id| InventoryCommand::Release { reservation_id });
    let txn = (1..6u64).prop_map(|number| TxnId {
        coordinator: ShardId(0),
        number,
    });
    let txn_line = (sku(), prop::option::of(location()), 1..15i64)
        .prop_map(|(sku, location, qty)| LineRequest { sku, location, qty });
    let prepare_op = prop_oneof![
        (0..6u8, prop::collection::vec(txn_line, 1..3), 1..3_000u64).prop_map(
            |(order, lines, expires_in_ms)| PrepareOp::Reserve {
                order_id: format!("t{order}"),
                lines,
                expires_at_ms: 1_000_000 + expires_in_ms,
            }
        ),
        (0..30u64, any::<bool>()).prop_map(|(reservation_id, confirm)| PrepareOp::Finish {
            reservation_id,
            confirm
        }),
    ];
    let prepare = (txn.clone(), prepare_op).prop_map(|(txn, op)| InventoryCommand::TxnPrepare {
        txn,
        op,
        timeout_at_ms: 2_000_000,
    });
    let commit = txn
        .clone()
        .prop_map(|txn| InventoryCommand::TxnCommit { txn });
    let abort = txn.prop_map(|txn| InventoryCommand::TxnAbort { txn });
    if !with_counts_and_policies {
        return prop_oneof![
            3 => adjust,
            4 => reserve,
            2 => confirm,
            2 => release,
            2 => prepare,
            1 => commit,
            1 => abort
        ]
        .boxed();
    }
    let count = (sku(), location(), 0..40i64, prop::option::of(0..40i64)).prop_map(
        |(sku, location, on_hand, expected_on_hand)| InventoryCommand::Count {
            sku,
            location,
            on_hand,
            expected_on_hand,
        },
    );
    let policy = (
        sku(),
        location(),
        prop::option::of(0..5i64),
        prop::option::of(0..10i64),
    )
        .prop_map(|(sku, location, safety_stock, backorder_limit)| {
            InventoryCommand::SetPolicy {
                sku,
                location,
                safety_stock,
                backorder_limit,
            }
        });
    prop_oneof![
        3 => adjust,
        4 => reserve,
        2 => confirm,
        2 => release,
        1 => count,
        1 => policy,
        2 => prepare,
        1 => commit,
        1 => abort
    ]
    .boxed()
}

fn steps(with_counts_and_policies: bool) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => command(with_counts_and_policies).prop_map(Step::Command),
        1 => (1..1_500u64).prop_map(Step::Advance),
    ];
    prop::collection::vec(step, 1..120)
}

/// Runs the steps like a sequencer would; returns the state and the log of (events, lsn, at_ms).
fn run(
    steps: &[Step],
    mut check: impl FnMut(&Inventory, &InventoryCommand, Option<&InventoryReply>),
) -> (Inventory, Vec<(InventoryEvent, u64, u64)>) {
    let mut inventory = Inventory::default();
    let mut log = Vec::new();
    let mut now_ms = 1_000_000u64;
    let actor = Actor {
        name: "test".into(),
        request_id: None,
    };
    for step in steps {
        match step {
            Step::Advance(ms) => {
                now_ms += ms;
                for event in inventory.due(now_ms, usize::MAX) {
                    let lsn = log.len() as u64 + 1;
                    inventory.apply(&event, lsn, now_ms);
                    log.push((event, lsn, now_ms));
                }
            }
            Step::Command(command) => {
                let decided = inventory.decide(command, &actor, now_ms);
                let mut reply = None;
                if let Ok((events, accepted)) = decided {
                    // A decision that logs nothing (a repeated prepare) took nothing now.
                    let took = !events.is_empty();
                    for event in events {
                        let lsn = log.len() as u64 + 1;
                        inventory.apply(&event, lsn, now_ms);
                        log.push((event, lsn, now_ms));
                    }
                    reply = took.then_some(accepted);
                }
                check(&inventory, command, reply.as_ref());
            }
        }
        check_reserved_matches_active_lines(&inventory);
    }
    (inventory, log)
}

fn check_reserved_matches_active_lines(inventory: &Inventory) {
    let mut held: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (_, reservation) in inventory.active_reservations() {
        assert_eq!(reservation.state, ReservationState::Active);
        for line in &reservation.lines {
            assert!(line.qty > 0);
            *held
                .entry((line.sku.clone(), line.location.clone()))
                .or_default() += line.qty;
        }
    }
    // Units held by prepared transactions count in `reserved` too.
    for (_, hold) in inventory.holds() {
        if let HeldOp::Reserve { lines, .. } = &hold.op {
            for line in lines {
                *held
                    .entry((line.sku.clone(), line.location.clone()))
                    .or_default() += line.qty;
            }
        }
    }
    for (sku, location, item) in inventory.items() {
        let expected = held
            .get(&(sku.to_string(), location.to_string()))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            item.reserved, expected,
            "reserved of {sku}@{location} differs from its active lines"
        );
        assert!(item.on_hand >= 0, "on_hand of {sku}@{location} is negative");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn without_counts_or_policies_available_never_goes_negative(steps in steps(false)) {
        run(&steps, |inventory, _, _| {
            for (sku, location, item) in inventory.items() {
                assert!(item.available() >= 0, "{sku}@{location} oversold: {item:?}");
            }
        });
    }

    #[test]
    fn a_reservation_never_takes_more_than_reservable(steps in steps(true)) {
        run(&steps, |inventory, command, reply| {
            let lines = match (command, reply) {
                (InventoryCommand::Reserve { .. }, Some(InventoryReply::Reservation(view))) => view.lines.clone(),
                // A transaction's hold takes stock like a reservation does.
                (InventoryCommand::TxnPrepare { .. }, Some(InventoryReply::Txn(piece))) => piece.lines.clone(),
                _ => Vec::new(),
            };
            {
                for line in &lines {
                    let item = inventory.item(&line.sku, &line.location).expect("a reserved item exists");
                    assert!(item.available() >= -item.backorder_limit, "oversold {}@{}: {item:?}", line.sku, line.location);
                }
            }
        });
    }

    #[test]
    fn replaying_the_events_gives_the_same_state(steps in steps(true)) {
        let (live, log) = run(&steps, |_, _, _| {});
        let mut replayed = Inventory::default();
        for (event, lsn, at_ms) in &log {
            replayed.apply(event, *lsn, *at_ms);
        }
        prop_assert_eq!(&replayed, &live);
        let live_bytes = postcard::to_stdvec(&live).expect("encodes");
        let replayed_bytes = postcard::to_stdvec(&replayed).expect("encodes");
        prop_assert_eq!(live_bytes, replayed_bytes);
    }
}
