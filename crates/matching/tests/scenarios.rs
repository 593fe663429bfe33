//! Scenarios of the matching contract in API.md and the crate docs, one rule per test.

mod common;

use OrderType::{Limit, Market};
use Side::{Buy, Sell};
use TimeInForce::{Fok, Gtc, Ioc};
use cairn_matching::{
    CancelReason, Limits, MatchingCommand, MatchingError, MatchingEvent, OrderStatus, OrderType,
    RejectReason, Side, StpMode, TimeInForce, TradeView,
};
use common::{Harness, encode, place, post_only, replay, with_stp};

fn trade(trade_id: u64, price: i64, qty: i64, maker: u64, taker: u64) -> TradeView {
    TradeView {
        trade_id,
        price,
        qty,
        maker_order_id: maker,
        taker_order_id: taker,
    }
}

#[test]
fn a_taken_symbol_is_already_exists_and_bad_specs_are_invalid() {
    let mut h = Harness::market();
    let taken = h.create("X", 1, 1).expect_err("taken");
    assert_eq!((taken.code(), taken.http_status()), ("already_exists", 409));
    for (tick, lot) in [(0, 1), (1, 0), (-1, 1), ((1 << 53) + 1, 1)] {
        let error = h.create("Y", tick, lot).expect_err("bad spec");
        assert_eq!(error.code(), "invalid_argument", "tick {tick} lot {lot}");
    }
    let bad_bounds = h.run(MatchingCommand::CreateMarket {
        symbol: "Y".into(),
        tick_size: 5,
        lot_size: 1,
        min_price: Some(7),
        max_price: None,
        min_qty: None,
        max_qty: None,
    });
    assert_eq!(
        bad_bounds.expect_err("7 is off tick").code(),
        "invalid_argument"
    );
    assert_eq!(
        h.create("a\nb", 1, 1).expect_err("control char").code(),
        "invalid_argument"
    );
    assert_eq!(
        h.create(&"s".repeat(129), 1, 1).expect_err("long").code(),
        "invalid_argument"
    );
    assert_eq!(h.log.len(), 1, "refusals log nothing");
}

#[test]
fn prices_off_tick_quantities_off_lot_and_out_of_bounds_are_refused_before_any_event() {
    let mut h = Harness::new();
    h.run(MatchingCommand::CreateMarket {
        symbol: "X".into(),
        tick_size: 5,
        lot_size: 10,
        min_price: Some(50),
        max_price: Some(500),
        min_qty: None,
        max_qty: Some(1_000),
    })
    .expect("created");
    let cases = [
        (Some(52), 10),
        (Some(50), 15),
        (Some(45), 10),
        (Some(505), 10),
        (Some(50), 1_010),
        (Some(50), 0),
        (Some(-5), 10),
        (Some(50), -10),
    ];
    for (price, qty) in cases {
        let error = h
            .order(place("X", "a", Buy, Limit, price, qty, Gtc))
            .expect_err("refused");
        assert_eq!(error.code(), "invalid_argument", "{price:?} x {qty}");
        assert_eq!(error.http_status(), 400);
    }
    assert_eq!(h.log.len(), 1, "no order event");
    let first = h
        .order(place("X", "a", Buy, Limit, Some(500), 1_000, Gtc))
        .expect("ok");
    assert_eq!(first.order_id, 1, "refusals consumed no order id");
}

#[test]
fn order_shapes_outside_the_rules_are_invalid() {
    let mut h = Harness::market();
    let shapes = [
        place("X", "a", Buy, Limit, None, 1, Gtc),
        place("X", "a", Buy, Market, Some(10), 1, Ioc),
        place("X", "a", Buy, Market, None, 1, Gtc),
        post_only(place("X", "a", Buy, Limit, Some(10), 1, Ioc)),
        post_only(place("X", "a", Buy, Limit, Some(10), 1, Fok)),
        place("X", "", Buy, Limit, Some(10), 1, Gtc),
    ];
    for shape in shapes {
        let error = h.order(shape.clone()).expect_err("invalid");
        assert_eq!(error.code(), "invalid_argument", "{shape:?}");
    }
    let unknown = h
        .order(place("NOPE", "a", Buy, Limit, Some(10), 1, Gtc))
        .expect_err("unknown market");
    assert_eq!((unknown.code(), unknown.http_status()), ("not_found", 404));
}

#[test]
fn gtc_orders_rest_and_depth_aggregates_levels_best_first() {
    let mut h = Harness::market();
    let first = h.limit("a", Buy, 100, 5);
    assert_eq!(first.status, OrderStatus::New);
    assert_eq!((first.filled_qty, first.remaining_qty), (0, 5));
    h.limit("b", Buy, 100, 7);
    h.limit("c", Buy, 99, 1);
    h.limit("d", Buy, 101, 2);
    h.limit("e", Sell, 103, 4);
    h.limit("f", Sell, 102, 3);
    h.limit("g", Sell, 103, 6);
    let (bids, asks) = h.depth();
    assert_eq!(bids, vec![(101, 2, 1), (100, 12, 2), (99, 1, 1)]);
    assert_eq!(asks, vec![(102, 3, 1), (103, 10, 2)]);
    let top = h.matching.depth("X", 1).expect("market");
    assert_eq!((top.bids.len(), top.asks.len()), (1, 1));
    let at_100: Vec<u64> = h
        .matching
        .level_orders("X", Buy, 100, 10)
        .expect("market")
        .iter()
        .map(|o| o.order_id)
        .collect();
    assert_eq!(at_100, vec![1, 2], "time order within a level");
}

#[test]
fn a_crossing_order_fills_across_levels_at_maker_prices_then_rests() {
    let mut h = Harness::market();
    h.limit("m1", Sell, 101, 2); // 1
    h.limit("m2", Sell, 102, 3); // 2
    h.limit("m3", Sell, 101, 1); // 3: behind 1 at 101
    h.limit("m4", Sell, 104, 9); // 4: beyond the limit
    let taker = h.limit("t", Buy, 103, 10); // 5
    assert_eq!(
        taker.trades,
        vec![
            trade(1, 101, 2, 1, 5),
            trade(2, 101, 1, 3, 5),
            trade(3, 102, 3, 2, 5)
        ]
    );
    assert_eq!(taker.status, OrderStatus::PartiallyFilled);
    assert_eq!((taker.filled_qty, taker.remaining_qty), (6, 4));
    for maker in [1, 2, 3] {
        assert_eq!(h.view(maker).status, OrderStatus::Filled);
    }
    assert_eq!(h.depth(), (vec![(103, 4, 1)], vec![(104, 9, 1)]));
    let view = h.view(5);
    assert_eq!((view.trade_count, view.cancelled_qty), (3, 0));
    let trades = h.matching.trades("X", 0, 10).expect("market");
    assert_eq!(
        trades.iter().map(|t| t.trade_id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(h.matching.trades("X", 1, 1).expect("market")[0].trade_id, 2);
    assert!(h.matching.trades("X", 3, 10).expect("market").is_empty());
}

#[test]
fn a_partial_fill_leaves_the_maker_partially_filled_at_the_front() {
    let mut h = Harness::market();
    h.limit("m", Sell, 100, 10);
    h.limit("n", Sell, 100, 10);
    h.limit("t", Buy, 100, 4);
    let maker = h.view(1);
    assert_eq!(maker.status, OrderStatus::PartiallyFilled);
    assert_eq!((maker.filled_qty, maker.remaining_qty), (4, 6));
    let next = h.limit("t", Buy, 100, 7);
    assert_eq!(
        next.trades,
        vec![trade(2, 100, 6, 1, 4), trade(3, 100, 1, 2, 4)]
    );
}

#[test]
fn ioc_fills_what_it_can_and_cancels_the_rest_or_is_rejected() {
    let mut h = Harness::market();
    h.limit("m", Sell, 100, 3);
    let partial = h
        .order(place("X", "t", Buy, Limit, Some(100), 5, Ioc))
        .expect("ok");
    assert_eq!(partial.status, OrderStatus::Cancelled);
    assert_eq!(partial.cancel_reason, Some(CancelReason::ImmediateOrCancel));
    assert_eq!((partial.filled_qty, partial.remaining_qty), (3, 0));
    assert_eq!(h.view(2).cancelled_qty, 2);
    h.limit("m", Sell, 105, 3);
    let none = h
        .order(place("X", "t", Buy, Limit, Some(104), 5, Ioc))
        .expect("ok");
    assert_eq!(none.status, OrderStatus::Rejected);
    assert_eq!(none.reject_reason, Some(RejectReason::NoLiquidity));
    assert_eq!(h.depth(), (vec![], vec![(105, 3, 1)]), "IOC never rests");
}

#[test]
fn a_market_order_walks_the_book_and_is_rejected_on_an_empty_side() {
    let mut h = Harness::market();
    let empty = h
        .order(place("X", "t", Buy, Market, None, 5, Ioc))
        .expect("accepted");
    assert_eq!(empty.status, OrderStatus::Rejected);
    assert_eq!(empty.reject_reason, Some(RejectReason::NoLiquidity));
    assert_eq!(
        h.view(1).status,
        OrderStatus::Rejected,
        "a rejection is queryable"
    );
    h.limit("m", Sell, 100, 2);
    h.limit("m", Sell, 1_000, 2);
    let market = h
        .order(place("X", "t", Buy, Market, None, 10, Ioc))
        .expect("ok");
    assert_eq!(
        market.trades,
        vec![trade(1, 100, 2, 2, 4), trade(2, 1_000, 2, 3, 4)]
    );
    assert_eq!(market.status, OrderStatus::Cancelled);
    assert_eq!(h.view(4).price, None);
    h.limit("b", Buy, 50, 3);
    let sell = h
        .order(place("X", "t", Sell, Market, None, 3, Fok))
        .expect("ok");
    assert_eq!(sell.status, OrderStatus::Filled);
}

#[test]
fn fok_fills_completely_or_changes_nothing() {
    let mut h = Harness::market();
    h.limit("m", Sell, 100, 3);
    h.limit("m", Sell, 101, 3);
    let too_much = h
        .order(place("X", "t", Buy, Limit, Some(101), 7, Fok))
        .expect("ok");
    assert_eq!(too_much.status, OrderStatus::Rejected);
    assert_eq!(too_much.reject_reason, Some(RejectReason::FokNotFillable));
    assert!(too_much.trades.is_empty());
    assert_eq!(h.depth().1, vec![(100, 3, 1), (101, 3, 1)]);
    let too_far = h
        .order(place("X", "t", Buy, Limit, Some(100), 6, Fok))
        .expect("ok");
    assert_eq!(too_far.reject_reason, Some(RejectReason::FokNotFillable));
    let exact = h
        .order(place("X", "t", Buy, Limit, Some(101), 6, Fok))
        .expect("ok");
    assert_eq!(exact.status, OrderStatus::Filled);
    assert_eq!(exact.trades.len(), 2);
    assert_eq!(h.depth(), (vec![], vec![]));
}

#[test]
fn post_only_rests_or_is_rejected_when_it_would_cross() {
    let mut h = Harness::market();
    h.limit("m", Sell, 100, 3);
    let crossing = h
        .order(post_only(place("X", "t", Buy, Limit, Some(100), 1, Gtc)))
        .expect("accepted");
    assert_eq!(crossing.status, OrderStatus::Rejected);
    assert_eq!(
        crossing.reject_reason,
        Some(RejectReason::PostOnlyWouldCross)
    );
    let resting = h
        .order(post_only(place("X", "t", Buy, Limit, Some(99), 1, Gtc)))
        .expect("accepted");
    assert_eq!(resting.status, OrderStatus::New);
    assert_eq!(h.depth(), (vec![(99, 1, 1)], vec![(100, 3, 1)]));
}

#[test]
fn self_trade_prevention_cancels_the_incoming_order_by_default() {
    let mut h = Harness::market();
    h.limit("other", Sell, 100, 1); // 1
    h.limit("me", Sell, 100, 5); // 2
    h.limit("other", Sell, 101, 5); // 3
    let gtc = h.limit("me", Buy, 101, 4); // 4
    assert_eq!(gtc.trades, vec![trade(1, 100, 1, 1, 4)]);
    assert_eq!(
        gtc.status,
        OrderStatus::Cancelled,
        "the remainder does not rest"
    );
    assert_eq!(gtc.cancel_reason, Some(CancelReason::SelfTrade));
    assert_eq!(
        h.view(2).status,
        OrderStatus::New,
        "the resting order stays"
    );
    let nothing = h.limit("me", Buy, 100, 1);
    assert_eq!(nothing.status, OrderStatus::Rejected);
    assert_eq!(nothing.reject_reason, Some(RejectReason::SelfTrade));
    assert_eq!(h.depth(), (vec![], vec![(100, 5, 1), (101, 5, 1)]));
}

#[test]
fn self_trade_prevention_can_cancel_the_resting_order_and_go_on() {
    let mut h = Harness::market();
    h.limit("me", Sell, 100, 5); // 1
    h.limit("other", Sell, 100, 2); // 2
    let reply = h
        .order(with_stp(
            place("X", "me", Buy, Limit, Some(100), 4, Gtc),
            StpMode::CancelResting,
        ))
        .expect("ok");
    assert_eq!(reply.trades, vec![trade(1, 100, 2, 2, 3)]);
    assert_eq!(reply.status, OrderStatus::PartiallyFilled);
    let own = h.view(1);
    assert_eq!(own.status, OrderStatus::Cancelled);
    assert_eq!(own.cancel_reason, Some(CancelReason::SelfTrade));
    assert_eq!(h.depth(), (vec![(100, 2, 1)], vec![]));
    let MatchingEvent::OrderPlaced { stp_cancelled, .. } = &h.log.last().expect("logged").0 else {
        panic!("an order event");
    };
    assert_eq!(stp_cancelled.len(), 1);
    assert_eq!(
        (stp_cancelled[0].order_id, stp_cancelled[0].remaining_qty),
        (1, 5)
    );
}

#[test]
fn self_trade_prevention_can_cancel_both() {
    let mut h = Harness::market();
    h.limit("other", Sell, 100, 1); // 1
    h.limit("me", Sell, 100, 5); // 2
    h.limit("other", Sell, 100, 5); // 3
    let reply = h
        .order(with_stp(
            place("X", "me", Buy, Limit, Some(100), 4, Ioc),
            StpMode::CancelBoth,
        ))
        .expect("ok");
    assert_eq!(reply.trades.len(), 1);
    assert_eq!(reply.status, OrderStatus::Cancelled);
    assert_eq!(reply.cancel_reason, Some(CancelReason::SelfTrade));
    assert_eq!(h.view(2).status, OrderStatus::Cancelled);
    assert_eq!(h.depth().1, vec![(100, 5, 1)]);
    let first = h
        .order(with_stp(
            place("X", "other", Buy, Limit, Some(100), 1, Gtc),
            StpMode::CancelBoth,
        ))
        .expect("ok");
    assert_eq!(first.status, OrderStatus::Rejected);
    assert_eq!(first.reject_reason, Some(RejectReason::SelfTrade));
    assert_eq!(h.view(3).status, OrderStatus::Cancelled);
}

#[test]
fn cancel_closes_an_open_order_once() {
    let mut h = Harness::market();
    h.limit("a", Buy, 100, 5);
    let cancelled = h.cancel(1).expect("cancelled");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(h.view(1).cancel_reason, Some(CancelReason::Requested));
    let again = h.cancel(1).expect_err("not open");
    assert_eq!((again.code(), again.http_status()), ("order_not_open", 409));
    let unknown = h.cancel(2).expect_err("never issued");
    assert_eq!(unknown.code(), "not_found");
    assert_eq!(h.cancel(0).expect_err("never issued").code(), "not_found");
    let market = h
        .order(MatchingCommand::CancelOrder {
            symbol: "Y".into(),
            order_id: 1,
        })
        .expect_err("unknown market");
    assert_eq!(market.code(), "not_found");
    assert_eq!(h.depth(), (vec![], vec![]));
}

#[test]
fn amending_quantity_down_keeps_priority_and_anything_else_loses_it() {
    let mut h = Harness::market();
    h.limit("a", Sell, 100, 5); // 1
    h.limit("b", Sell, 100, 5); // 2
    h.amend(1, None, Some(3)).expect("down");
    assert_eq!(h.depth().1, vec![(100, 8, 2)]);
    let first = h.limit("t", Buy, 100, 1);
    assert_eq!(first.trades[0].maker_order_id, 1, "still first");
    h.amend(1, None, Some(10)).expect("up");
    let second = h.limit("t", Buy, 100, 1);
    assert_eq!(second.trades[0].maker_order_id, 2, "order 1 lost its place");
    h.amend(2, Some(101), None).expect("price");
    h.amend(2, Some(100), None).expect("price back");
    let order: Vec<u64> = h
        .matching
        .level_orders("X", Sell, 100, 10)
        .expect("market")
        .iter()
        .map(|o| o.order_id)
        .collect();
    assert_eq!(order, vec![1, 2], "a price change goes to the back");
    let view = h.view(1);
    assert_eq!((view.qty, view.filled_qty, view.remaining_qty), (10, 1, 9));
}

#[test]
fn an_amend_that_crosses_matches_like_an_incoming_order() {
    let mut h = Harness::market();
    h.limit("m", Sell, 101, 2); // 1
    h.limit("t", Buy, 99, 5); // 2
    let reply = h.amend(2, Some(101), None).expect("amended");
    assert_eq!(reply.trades, vec![trade(1, 101, 2, 1, 2)]);
    assert_eq!(reply.status, OrderStatus::PartiallyFilled);
    assert_eq!((reply.filled_qty, reply.remaining_qty), (2, 3));
    assert_eq!(h.depth(), (vec![(101, 3, 1)], vec![]));
    let MatchingEvent::OrderAmended {
        old_price,
        old_remaining_qty,
        priority_kept,
        ..
    } = &h.log.last().expect("logged").0
    else {
        panic!("an amend event");
    };
    assert_eq!(
        (*old_price, *old_remaining_qty, *priority_kept),
        (99, 5, false)
    );
}

#[test]
fn amends_that_make_no_sense_are_refused() {
    let mut h = Harness::market();
    h.limit("m", Sell, 100, 2);
    h.limit("t", Buy, 100, 5); // fills 2, rests 3
    let below = h.amend(2, None, Some(2)).expect_err("at filled");
    assert_eq!(below.code(), "invalid_argument");
    assert_eq!(
        h.amend(2, None, Some(5)).expect_err("same").code(),
        "invalid_argument"
    );
    assert_eq!(
        h.amend(2, None, None).expect_err("empty").code(),
        "invalid_argument"
    );
    assert_eq!(
        h.amend(1, None, Some(1)).expect_err("filled").code(),
        "order_not_open"
    );
    h.order(post_only(place("X", "p", Sell, Limit, Some(105), 1, Gtc)))
        .expect("rests");
    let cross = h.amend(3, Some(100), None).expect_err("post-only crossing");
    assert_eq!(
        cross,
        MatchingError::PostOnlyWouldCross {
            symbol: "X".into(),
            order_id: 3
        }
    );
    assert_eq!(h.view(3).price, Some(105));
}

#[test]
fn order_and_trade_ids_increase_per_market() {
    let mut h = Harness::market();
    h.create("Y", 1, 1).expect("created");
    h.limit("a", Sell, 100, 1);
    let y = h
        .order(place("Y", "a", Sell, Limit, Some(100), 1, Gtc))
        .expect("ok");
    assert_eq!(y.order_id, 1, "ids are per market");
    let x = h.limit("b", Buy, 100, 1);
    assert_eq!((x.order_id, x.trades[0].trade_id), (2, 1));
    let y2 = h
        .order(place("Y", "b", Buy, Limit, Some(100), 1, Gtc))
        .expect("ok");
    assert_eq!((y2.order_id, y2.trades[0].trade_id), (2, 1));
    let view = h.matching.market("X").expect("market");
    assert_eq!((view.next_order_id, view.next_trade_id), (3, 2));
}

#[test]
fn an_order_touching_more_than_the_fills_limit_stops_there() {
    let limits = Limits {
        fills_per_order_max: 3,
        ..Limits::default()
    };
    let mut h = Harness::with_limits(limits);
    h.create("X", 1, 1).expect("created");
    for _ in 0..5 {
        h.limit("m", Sell, 100, 1);
    }
    let fok = h
        .order(place("X", "t", Buy, Limit, Some(100), 4, Fok))
        .expect("ok");
    assert_eq!(fok.reject_reason, Some(RejectReason::FokNotFillable));
    let gtc = h.limit("t", Buy, 100, 4);
    assert_eq!(gtc.trades.len(), 3);
    assert_eq!(gtc.status, OrderStatus::Cancelled);
    assert_eq!(gtc.cancel_reason, Some(CancelReason::FillsLimit));
    assert_eq!(
        h.depth(),
        (vec![], vec![(100, 2, 2)]),
        "nothing rests: it would cross"
    );
}

#[test]
fn open_order_and_price_level_bounds_refuse_with_limit_exceeded() {
    let limits = Limits {
        open_orders_per_market_max: 3,
        price_levels_per_side_max: 2,
        markets_max: 1,
        ..Limits::default()
    };
    let mut h = Harness::with_limits(limits);
    h.create("X", 1, 1).expect("created");
    let markets = h.create("Y", 1, 1).expect_err("one market");
    assert_eq!(markets.code(), "limit_exceeded");
    h.limit("a", Buy, 100, 1);
    h.limit("a", Buy, 99, 1);
    let levels = h
        .order(place("X", "a", Buy, Limit, Some(98), 1, Gtc))
        .expect_err("third level");
    assert!(
        matches!(&levels, MatchingError::LimitExceeded { limit, .. } if limit == "price_levels_per_side_max")
    );
    h.limit("a", Buy, 99, 1);
    let open = h
        .order(place("X", "b", Sell, Limit, Some(200), 1, Gtc))
        .expect_err("fourth open order");
    assert!(
        matches!(&open, MatchingError::LimitExceeded { limit, .. } if limit == "open_orders_per_market_max")
    );
    let ioc = h
        .order(place("X", "b", Sell, Limit, Some(100), 1, Ioc))
        .expect("never rests");
    assert_eq!(ioc.status, OrderStatus::Filled);
    let amend = h
        .amend(2, Some(97), None)
        .expect("moves from a shared level");
    assert_eq!(amend.status, OrderStatus::New);
}

#[test]
fn closed_orders_and_trades_are_retained_within_their_bounds() {
    let limits = Limits {
        closed_orders_per_market_max: 2,
        trades_per_market_max: 3,
        ..Limits::default()
    };
    let mut h = Harness::with_limits(limits);
    h.create("X", 1, 1).expect("created");
    for _ in 0..4 {
        h.limit("m", Sell, 100, 1);
    }
    for _ in 0..4 {
        h.order(place("X", "t", Buy, Market, None, 1, Ioc))
            .expect("fills");
    }
    // Closings: 1, 5, 2, 6, 3, 7, 4, 8: the last two stay.
    assert!(h.matching.order("X", 7).is_none());
    assert_eq!(h.view(4).status, OrderStatus::Filled);
    assert_eq!(h.view(8).status, OrderStatus::Filled);
    let forgotten = h.cancel(1).expect_err("closed long ago");
    assert_eq!(
        forgotten,
        MatchingError::OrderNotOpen {
            symbol: "X".into(),
            order_id: 1,
            status: None
        }
    );
    let trades = h.matching.trades("X", 0, 10).expect("market");
    assert_eq!(
        trades.iter().map(|t| t.trade_id).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let after = h.matching.trades("X", 2, 1).expect("market");
    assert_eq!(after[0].trade_id, 3);
}

#[test]
fn open_orders_are_listed_per_account_oldest_first() {
    let mut h = Harness::market();
    h.limit("a", Buy, 100, 1);
    h.limit("b", Buy, 100, 1);
    h.limit("a", Sell, 110, 1);
    h.limit("a", Buy, 99, 1);
    h.amend(1, Some(98), None).expect("amended");
    h.cancel(3).expect("cancelled");
    let ids: Vec<u64> = h
        .matching
        .open_orders("X", "a", 10)
        .expect("market")
        .iter()
        .map(|o| o.order_id)
        .collect();
    assert_eq!(ids, vec![1, 4]);
    assert_eq!(
        h.matching.open_orders("X", "a", 1).expect("market").len(),
        1
    );
    assert!(
        h.matching
            .open_orders("X", "zz", 10)
            .expect("market")
            .is_empty()
    );
}

#[test]
fn replay_and_snapshot_give_the_same_bytes_as_the_live_state() {
    let mut h = Harness::market();
    h.limit("a", Buy, 100, 5);
    h.limit("b", Sell, 101, 5);
    h.limit("c", Sell, 100, 2);
    h.amend(2, Some(102), Some(8)).expect("amended");
    h.order(place("X", "d", Buy, Market, None, 3, Ioc))
        .expect("ok");
    h.cancel(1).expect("cancelled");
    let live = encode(&h.matching);
    assert_eq!(encode(&replay(&h.log)), live);
    let restored: cairn_matching::Matching = postcard::from_bytes(&live).expect("restores");
    assert_eq!(encode(&restored), live);
    restored.check_invariants().expect("consistent");
    assert_eq!(restored, h.matching);
    assert!(h.matching.summary().contains("1 market(s)"));
}

#[test]
fn damaged_snapshots_are_errors_not_panics() {
    let mut h = Harness::market();
    for i in 0..20 {
        h.limit(
            &format!("a{}", i % 3),
            if i % 2 == 0 { Buy } else { Sell },
            100 + (i % 2) * 5 + i % 4,
            3,
        );
    }
    let bytes = encode(&h.matching);
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] ^= flip;
            if let Ok(state) = postcard::from_bytes::<cairn_matching::Matching>(&damaged) {
                state
                    .check_invariants()
                    .expect("a state that restores is consistent");
            }
        }
    }
}

#[test]
fn events_say_enough_to_rebuild_trades_and_levels() {
    let mut h = Harness::market();
    h.limit("a", Sell, 100, 2);
    let reply = h.limit("b", Buy, 101, 5);
    let MatchingEvent::OrderPlaced {
        fills,
        resting_qty,
        status,
        price,
        ..
    } = &h.log.last().expect("logged").0
    else {
        panic!("an order event");
    };
    assert_eq!(fills.len(), 1);
    assert_eq!(
        (
            fills[0].maker_account.as_str(),
            fills[0].price,
            fills[0].qty
        ),
        ("a", 100, 2)
    );
    assert_eq!(
        (*resting_qty, *status, *price),
        (3, OrderStatus::PartiallyFilled, Some(101))
    );
    assert_eq!(reply.remaining_qty, *resting_qty);
    assert_eq!(h.log.last().expect("logged").0.kind(), "order_placed");
}
