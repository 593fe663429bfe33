//! Scenarios of the inventory contract in API.md, one rule per test.

use cairn_inventory::{
    Actor, Inventory, InventoryCommand, InventoryError, InventoryEvent, InventoryReply, Line,
    LineRequest, ReservationState, ShortLine,
};

const NOW_MS: u64 = 1_800_000_000_000;

struct Harness {
    inventory: Inventory,
    lsn: u64,
    now_ms: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            inventory: Inventory::default(),
            lsn: 0,
            now_ms: NOW_MS,
        }
    }

    fn run(&mut self, command: InventoryCommand) -> Result<InventoryReply, InventoryError> {
        let actor = Actor {
            name: "tester".into(),
            request_id: Some("r".into()),
        };
        let (events, reply) = self.inventory.decide(&command, &actor, self.now_ms)?;
        for event in events {
            self.lsn += 1;
            self.inventory.apply(&event, self.lsn, self.now_ms);
        }
        Ok(reply)
    }

    fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        for event in self.inventory.due(self.now_ms, usize::MAX) {
            self.lsn += 1;
            self.inventory.apply(&event, self.lsn, self.now_ms);
        }
    }

    fn stock(&mut self, sku: &str, location: &str, qty: i64) {
        self.run(adjust(sku, location, qty)).expect("stock added");
    }

    fn reserve(&mut self, order: &str, lines: Vec<LineRequest>) -> Result<u64, InventoryError> {
        match self.run(InventoryCommand::Reserve {
            order_id: order.into(),
            lines,
            ttl_ms: 60_000,
        })? {
            InventoryReply::Reservation(view) => Ok(view.reservation_id),
            InventoryReply::Item(_) | InventoryReply::Txn(_) => {
                panic!("a reservation replies with a reservation")
            }
        }
    }

    fn available(&self, sku: &str, location: &str) -> i64 {
        self.inventory
            .item(sku, location)
            .map_or(0, |item| item.available())
    }
}

fn adjust(sku: &str, location: &str, delta: i64) -> InventoryCommand {
    InventoryCommand::Adjust {
        sku: sku.into(),
        location: location.into(),
        delta,
        reason: "receipt".into(),
    }
}

fn line(sku: &str, location: Option<&str>, qty: i64) -> LineRequest {
    LineRequest {
        sku: sku.into(),
        location: location.map(String::from),
        qty,
    }
}

#[test]
fn a_reservation_takes_all_lines_or_none_and_lists_only_short_lines() {
    let mut h = Harness::new();
    h.stock("A", "W1", 5);
    h.stock("B", "W1", 1);
    let refused = h.reserve(
        "o1",
        vec![
            line("A", Some("W1"), 5),
            line("B", Some("W1"), 2),
            line("C", None, 1),
        ],
    );
    assert_eq!(
        refused,
        Err(InventoryError::InsufficientStock {
            lines: vec![
                ShortLine {
                    sku: "B".into(),
                    location: Some("W1".into()),
                    requested: 2,
                    available: 1
                },
                ShortLine {
                    sku: "C".into(),
                    location: None,
                    requested: 1,
                    available: 0
                },
            ]
        })
    );
    assert_eq!(h.available("A", "W1"), 5, "nothing was taken");
    h.reserve(
        "o1",
        vec![line("A", Some("W1"), 5), line("B", Some("W1"), 1)],
    )
    .expect("fits exactly");
    assert_eq!((h.available("A", "W1"), h.available("B", "W1")), (0, 0));
}

#[test]
fn a_line_without_location_takes_from_the_fullest_locations_first() {
    let mut h = Harness::new();
    h.stock("A", "small", 2);
    h.stock("A", "big", 7);
    h.stock("A", "mid", 4);
    let id = h
        .reserve("o1", vec![line("A", None, 10)])
        .expect("reserved");
    let reservation = h.inventory.reservation_view(id).expect("exists");
    assert_eq!(
        reservation.lines,
        vec![
            Line {
                sku: "A".into(),
                location: "big".into(),
                qty: 7
            },
            Line {
                sku: "A".into(),
                location: "mid".into(),
                qty: 3
            },
        ]
    );
}

#[test]
fn confirm_ships_and_release_gives_back() {
    let mut h = Harness::new();
    h.stock("A", "W", 10);
    let shipped = h.reserve("o1", vec![line("A", Some("W"), 3)]).expect("ok");
    let returned = h.reserve("o2", vec![line("A", Some("W"), 4)]).expect("ok");
    h.run(InventoryCommand::Confirm {
        reservation_id: shipped,
    })
    .expect("confirmed");
    h.run(InventoryCommand::Release {
        reservation_id: returned,
    })
    .expect("released");
    let item = *h.inventory.item("A", "W").expect("item");
    assert_eq!((item.on_hand, item.reserved, item.available()), (7, 0, 7));
    let again = h.run(InventoryCommand::Confirm {
        reservation_id: returned,
    });
    assert_eq!(
        again,
        Err(InventoryError::ReservationNotActive {
            reservation_id: returned,
            state: ReservationState::Released
        })
    );
    assert_eq!(
        again.err().map(|e| e.code()),
        Some("reservation_not_active")
    );
    let unknown = h.run(InventoryCommand::Release {
        reservation_id: 999,
    });
    assert_eq!(unknown.err().map(|e| e.http_status()), Some(404));
}

#[test]
fn reservations_expire_at_their_log_time_and_close_their_order() {
    let mut h = Harness::new();
    h.stock("A", "W", 1);
    let id = h.reserve("o1", vec![line("A", Some("W"), 1)]).expect("ok");
    h.advance(59_999);
    assert_eq!(
        h.inventory.reservation_view(id).map(|r| r.state),
        Some(ReservationState::Active)
    );
    h.advance(1);
    assert_eq!(
        h.inventory.reservation_view(id).map(|r| r.state),
        Some(ReservationState::Expired)
    );
    assert_eq!(h.available("A", "W"), 1);
    // A late "try" for an order already cancelled cannot hang stock.
    assert_eq!(
        h.reserve("o1", vec![line("A", Some("W"), 1)]),
        Err(InventoryError::OrderClosed {
            order_id: "o1".into()
        })
    );
}

#[test]
fn an_adjustment_cannot_take_stock_that_is_held_but_a_count_can_oversell() {
    let mut h = Harness::new();
    h.stock("A", "W", 5);
    h.reserve("o1", vec![line("A", Some("W"), 4)]).expect("ok");
    assert!(matches!(
        h.run(adjust("A", "W", -2)),
        Err(InventoryError::InsufficientStock { .. })
    ));
    h.run(adjust("A", "W", -1)).expect("the free unit can go");
    let counted = h.run(InventoryCommand::Count {
        sku: "A".into(),
        location: "W".into(),
        on_hand: 2,
        expected_on_hand: None,
    });
    match counted {
        Ok(InventoryReply::Item(item)) => {
            assert!(item.oversold && item.available == -2, "{item:?}")
        }
        other => panic!("count refused: {other:?}"),
    }
    assert!(
        h.reserve("o2", vec![line("A", Some("W"), 1)]).is_err(),
        "an oversold item reserves nothing"
    );
}

#[test]
fn a_stale_count_is_refused() {
    let mut h = Harness::new();
    h.stock("A", "W", 5);
    let stale = InventoryCommand::Count {
        sku: "A".into(),
        location: "W".into(),
        on_hand: 9,
        expected_on_hand: Some(4),
    };
    assert_eq!(
        h.run(stale),
        Err(InventoryError::CountConflict {
            expected_on_hand: 4,
            on_hand: 5
        })
    );
    let fresh = InventoryCommand::Count {
        sku: "A".into(),
        location: "W".into(),
        on_hand: 9,
        expected_on_hand: Some(5),
    };
    h.run(fresh).expect("matches");
    assert_eq!(h.inventory.item("A", "W").map(|i| i.on_hand), Some(9));
}

#[test]
fn safety_stock_and_backorder_limit_shape_what_can_be_reserved() {
    let mut h = Harness::new();
    h.stock("A", "W", 5);
    let policy = |safety_stock, backorder_limit| InventoryCommand::SetPolicy {
        sku: "A".into(),
        location: "W".into(),
        safety_stock,
        backorder_limit,
    };
    h.run(policy(Some(2), None)).expect("ok");
    assert!(
        h.reserve("o1", vec![line("A", Some("W"), 4)]).is_err(),
        "2 units are kept back"
    );
    h.run(policy(None, Some(3))).expect("ok");
    h.reserve("o1", vec![line("A", Some("W"), 6)])
        .expect("3 may be backordered");
    assert_eq!(h.available("A", "W"), -3);
    assert!(
        h.reserve("o2", vec![line("A", Some("W"), 1)]).is_err(),
        "the backorder limit is reached"
    );
}

#[test]
fn history_records_who_did_what() {
    let mut h = Harness::new();
    h.stock("A", "W", 5);
    h.reserve("o1", vec![line("A", Some("W"), 2)]).expect("ok");
    let history = h.inventory.history("A");
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["adjusted", "reserved"]);
    assert_eq!(history[0].reason.as_deref(), Some("receipt"));
    assert_eq!(
        history[1].actor.as_ref().map(|a| a.name.as_str()),
        Some("tester")
    );
    assert!(history[0].lsn < history[1].lsn);
}

#[test]
fn bad_input_is_refused_as_invalid_argument() {
    let mut h = Harness::new();
    for command in [
        adjust("", "W", 1),
        adjust("A", "W", 0),
        adjust("A", &"x".repeat(129), 1),
        InventoryCommand::Reserve {
            order_id: "o".into(),
            lines: vec![],
            ttl_ms: 1000,
        },
        InventoryCommand::Reserve {
            order_id: "o".into(),
            lines: vec![line("A", None, 0)],
            ttl_ms: 1000,
        },
        InventoryCommand::Reserve {
            order_id: "o".into(),
            lines: vec![line("A", None, 1)],
            ttl_ms: 86_400_001,
        },
    ] {
        assert!(
            matches!(
                h.run(command.clone()),
                Err(InventoryError::InvalidArgument(_))
            ),
            "{command:?}"
        );
    }
    assert!(h.inventory.items().next().is_none(), "nothing was created");
}

#[test]
fn expiry_events_come_out_in_time_order_and_bounded() {
    let mut h = Harness::new();
    h.stock("A", "W", 100);
    for ttl in [300u64, 100, 200] {
        h.run(InventoryCommand::Reserve {
            order_id: format!("o{ttl}"),
            lines: vec![line("A", Some("W"), 1)],
            ttl_ms: ttl,
        })
        .expect("ok");
    }
    let due = h.inventory.due(NOW_MS + 250, 1);
    assert_eq!(due, vec![InventoryEvent::Expired { reservation_id: 1 }]);
    assert_eq!(h.inventory.due(NOW_MS + 250, 10).len(), 2);
}

#[test]
fn a_backordered_reservation_cannot_ship_until_stock_arrives() {
    let mut h = Harness::new();
    h.stock("A", "W", 1);
    h.run(InventoryCommand::SetPolicy {
        sku: "A".into(),
        location: "W".into(),
        safety_stock: None,
        backorder_limit: Some(5),
    })
    .expect("ok");
    let id = h
        .reserve("o1", vec![line("A", Some("W"), 3)])
        .expect("2 backordered");
    let early = h.run(InventoryCommand::Confirm { reservation_id: id });
    assert_eq!(
        early,
        Err(InventoryError::InsufficientStock {
            lines: vec![ShortLine {
                sku: "A".into(),
                location: Some("W".into()),
                requested: 3,
                available: 1
            }]
        })
    );
    assert_eq!(
        h.inventory.reservation_view(id).map(|r| r.state),
        Some(ReservationState::Active)
    );
    h.stock("A", "W", 2);
    h.run(InventoryCommand::Confirm { reservation_id: id })
        .expect("ships now");
    let item = *h.inventory.item("A", "W").expect("item");
    assert_eq!((item.on_hand, item.reserved), (0, 0));
}

#[test]
fn regression_sums_over_many_full_locations_do_not_overflow() {
    let mut h = Harness::new();
    for location in 0..1100 {
        let count = InventoryCommand::Count {
            sku: "A".into(),
            location: format!("L{location}"),
            on_hand: 1 << 53,
            expected_on_hand: None,
        };
        h.run(count).expect("counted");
    }
    assert_eq!(
        h.inventory.total_available("A"),
        1 << 53,
        "clamped to the API's range"
    );
    h.reserve("o1", vec![line("A", None, 5)])
        .expect("reserves without overflow");
    assert!(h.inventory.summary().contains("reserved 5"));
    let past_limit = h.run(adjust("A", "L0", 1));
    assert_eq!(
        past_limit.err().map(|e| e.code()),
        Some("quantity_limit_exceeded")
    );
}

#[test]
fn regression_an_overdue_reservation_cannot_be_confirmed_before_its_expiry_event() {
    let mut h = Harness::new();
    h.stock("A", "W", 1);
    let id = h.reserve("o1", vec![line("A", Some("W"), 1)]).expect("ok");
    h.now_ms += 60_000; // time passes, but the expiry event has not been applied yet
    let late = h.run(InventoryCommand::Confirm { reservation_id: id });
    assert_eq!(
        late,
        Err(InventoryError::ReservationNotActive {
            reservation_id: id,
            state: ReservationState::Expired
        })
    );
}
