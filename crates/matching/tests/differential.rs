//! Differential properties: random streams of market creations, orders, cancels and amends (few
//! accounts so self-trade prevention triggers, a narrow price band so orders cross) give the same
//! replies, trades, depth, order views and refusals in the fast book and in the reference book.
//! Along the way: the book never crosses and its totals add up (`check_invariants`), an L2 book
//! rebuilt from the events alone equals the depth, a snapshot restored mid-stream behaves like
//! the live state, and replaying the log or re-encoding a restored state gives identical bytes.

mod common;

use cairn_matching::reference::ReferenceBook;
use cairn_matching::{
    Limits, Matching, MatchingCommand, MatchingError, MatchingEvent, OrderType, Side, StpMode,
    TimeInForce,
};
use common::{Harness, encode, replay};
use proptest::prelude::*;
use std::collections::BTreeMap;

const SYMBOLS: [&str; 3] = ["X", "Y", "Z"];
const ACCOUNTS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Step {
    Command(MatchingCommand),
    /// Replace the live state by one restored from its snapshot bytes.
    Snapshot,
}

fn symbol() -> impl Strategy<Value = String> {
    prop_oneof![8 => Just("X"), 2 => Just("Y"), 1 => Just("Z")].prop_map(String::from)
}

fn place() -> impl Strategy<Value = MatchingCommand> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let order_type = prop_oneof![6 => Just(OrderType::Limit), 1 => Just(OrderType::Market)];
    let tif = prop_oneof![5 => Just(TimeInForce::Gtc), 3 => Just(TimeInForce::Ioc), 2 => Just(TimeInForce::Fok)];
    let stp = prop_oneof![
        3 => Just(None),
        1 => Just(Some(StpMode::CancelIncoming)),
        2 => Just(Some(StpMode::CancelResting)),
        2 => Just(Some(StpMode::CancelBoth)),
    ];
    (
        symbol(),
        prop::sample::select(ACCOUNTS.to_vec()),
        side,
        order_type,
        prop::option::weighted(0.9, 94..=106i64),
        1..=12i64,
        tif,
        prop::bool::weighted(0.1),
        stp,
    )
        .prop_map(
            |(symbol, account, side, order_type, price, qty, time_in_force, post_only, stp)| {
                // Market orders mostly come without a price, so that most are valid.
                let price = match order_type {
                    OrderType::Market if price.is_some_and(|p| p % 5 != 0) => None,
                    _ => price,
                };
                MatchingCommand::PlaceOrder {
                    symbol,
                    account: account.to_string(),
                    side,
                    order_type,
                    price,
                    qty,
                    time_in_force,
                    post_only,
                    stp,
                }
            },
        )
}

fn command() -> impl Strategy<Value = MatchingCommand> {
    let cancel = (symbol(), 0..=30u64)
        .prop_map(|(symbol, order_id)| MatchingCommand::CancelOrder { symbol, order_id });
    let amend = (
        symbol(),
        1..=30u64,
        prop::option::of(94..=106i64),
        prop::option::of(1..=12i64),
    )
        .prop_map(
            |(symbol, order_id, price, qty)| MatchingCommand::AmendOrder {
                symbol,
                order_id,
                price,
                qty,
            },
        );
    let create = (prop::sample::select(SYMBOLS.to_vec()), 1..=2i64, 1..=2i64).prop_map(
        |(symbol, tick_size, lot_size)| MatchingCommand::CreateMarket {
            symbol: symbol.to_string(),
            tick_size,
            lot_size,
            min_price: None,
            max_price: Some(200),
            min_qty: None,
            max_qty: None,
        },
    );
    prop_oneof![12 => place(), 4 => cancel, 6 => amend, 1 => create]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        40 => command().prop_map(Step::Command),
        1 => Just(Step::Snapshot),
    ];
    prop::collection::vec(step, 1..200)
}

#[derive(Clone, Copy, Debug)]
enum Bounds {
    Default,
    Small,
    /// Markets that keep no closed orders and no trades.
    NoHistory,
}

fn limits(bounds: Bounds) -> Limits {
    let small = Limits {
        markets_max: 2,
        open_orders_per_market_max: 12,
        price_levels_per_side_max: 4,
        fills_per_order_max: 3,
        closed_orders_per_market_max: 6,
        trades_per_market_max: 9,
    };
    match bounds {
        Bounds::Default => Limits::default(),
        Bounds::Small => small,
        Bounds::NoHistory => Limits {
            closed_orders_per_market_max: 0,
            trades_per_market_max: 0,
            ..small
        },
    }
}

/// Refusals agree: the same variant, and the same fields except human messages.
fn same_refusal(fast: &MatchingError, reference: &MatchingError) -> bool {
    match (fast, reference) {
        (MatchingError::InvalidArgument(_), MatchingError::InvalidArgument(_)) => true,
        (
            MatchingError::LimitExceeded { limit: a, .. },
            MatchingError::LimitExceeded { limit: b, .. },
        ) => a == b,
        _ => fast == reference,
    }
}

/// An L2 book kept from the events alone, as a feed consumer would.
#[derive(Default)]
struct FeedBook {
    levels: BTreeMap<(String, Side, i64), i64>,
    trades: BTreeMap<String, u64>,
    /// The last `seq` seen per market.
    seqs: BTreeMap<String, u64>,
}

impl FeedBook {
    fn add(&mut self, symbol: &str, side: Side, price: i64, qty: i64) {
        let key = (symbol.to_string(), side, price);
        let level = self.levels.entry(key.clone()).or_default();
        *level += qty;
        assert!(*level >= 0, "a level went negative in the feed: {key:?}");
        if *level == 0 {
            self.levels.remove(&key);
        }
    }

    fn matched(
        &mut self,
        symbol: &str,
        side: Side,
        fills: &[cairn_matching::Fill],
        stp: &[cairn_matching::StpCancel],
    ) {
        for fill in fills {
            self.add(symbol, side.opposite(), fill.price, -fill.qty);
            let last = self.trades.entry(symbol.to_string()).or_default();
            assert_eq!(
                fill.trade_id,
                *last + 1,
                "trade ids are consecutive in the feed"
            );
            *last = fill.trade_id;
        }
        for cancel in stp {
            self.add(symbol, side.opposite(), cancel.price, -cancel.remaining_qty);
        }
    }

    fn apply(&mut self, event: &MatchingEvent) {
        let last = self.seqs.entry(event.symbol().to_string()).or_default();
        assert_eq!(event.seq(), *last + 1, "seq is consecutive per market");
        *last = event.seq();
        match event {
            MatchingEvent::MarketCreated { .. } => {}
            MatchingEvent::OrderPlaced {
                symbol,
                side,
                price,
                fills,
                stp_cancelled,
                resting_qty,
                ..
            } => {
                self.matched(symbol, *side, fills, stp_cancelled);
                if *resting_qty > 0 {
                    self.add(symbol, *side, price.unwrap_or(0), *resting_qty);
                }
            }
            MatchingEvent::OrderAmended {
                symbol,
                side,
                old_price,
                old_remaining_qty,
                price,
                fills,
                stp_cancelled,
                resting_qty,
                ..
            } => {
                self.add(symbol, *side, *old_price, -old_remaining_qty);
                self.matched(symbol, *side, fills, stp_cancelled);
                self.add(symbol, *side, *price, *resting_qty);
            }
            MatchingEvent::OrderCancelled {
                symbol,
                side,
                price,
                remaining_qty,
                ..
            } => self.add(symbol, *side, *price, -remaining_qty),
        }
    }

    fn depth(&self, symbol: &str, side: Side) -> Vec<(i64, i64)> {
        let mut levels: Vec<(i64, i64)> = self
            .levels
            .iter()
            .filter(|((s, sd, _), _)| s == symbol && *sd == side)
            .map(|((_, _, price), qty)| (*price, *qty))
            .collect();
        if side == Side::Buy {
            levels.reverse();
        }
        levels
    }
}

fn compare(fast: &Matching, reference: &ReferenceBook, feed: &FeedBook) {
    for symbol in SYMBOLS {
        let depth = fast.depth(symbol, 1_000);
        assert_eq!(depth, reference.depth(symbol, 1_000), "depth of {symbol}");
        let Some(depth) = depth else { continue };
        assert_eq!(
            fast.market(symbol).map(|m| m.seq),
            feed.seqs.get(symbol).copied(),
            "the market's seq is its last event's"
        );
        let levels = |levels: &[cairn_matching::LevelView]| -> Vec<(i64, i64)> {
            levels.iter().map(|l| (l.price, l.qty)).collect()
        };
        assert_eq!(
            levels(&depth.bids),
            feed.depth(symbol, Side::Buy),
            "feed bids of {symbol}"
        );
        assert_eq!(
            levels(&depth.asks),
            feed.depth(symbol, Side::Sell),
            "feed asks of {symbol}"
        );
        for order_id in 0..=reference.issued(symbol) + 1 {
            let view = fast.order(symbol, order_id);
            assert_eq!(
                view,
                reference.order(symbol, order_id),
                "order {symbol}/{order_id}"
            );
            if let Some(view) = view {
                assert_eq!(
                    view.filled_qty + view.remaining_qty + view.cancelled_qty,
                    view.qty
                );
                assert!(view.cancelled_qty >= 0);
            }
        }
        assert_eq!(
            fast.trades(symbol, 0, usize::MAX),
            reference.trades(symbol),
            "trades of {symbol}"
        );
        for account in ACCOUNTS {
            assert_eq!(
                fast.open_orders(symbol, account, usize::MAX)
                    .unwrap_or_default(),
                reference.open_orders(symbol, account),
                "open orders of {account} in {symbol}"
            );
        }
    }
}

fn setup() -> Vec<MatchingCommand> {
    let create = |symbol: &str, tick_size: i64, lot_size: i64| MatchingCommand::CreateMarket {
        symbol: symbol.into(),
        tick_size,
        lot_size,
        min_price: None,
        max_price: Some(200),
        min_qty: None,
        max_qty: None,
    };
    vec![create("X", 1, 1), create("Y", 2, 2)]
}

fn run(steps: &[Step], bounds: Bounds) {
    let limits = limits(bounds);
    let mut fast = Harness::with_limits(limits);
    let mut reference = ReferenceBook::new(limits);
    let mut feed = FeedBook::default();
    let setup = setup().into_iter().map(Step::Command);
    for step in setup.chain(steps.iter().cloned()) {
        match step {
            Step::Command(command) => {
                let expected = reference.execute(&command, fast.now_ms);
                let logged = fast.log.len();
                let got = fast.run(command.clone());
                match (&got, &expected) {
                    (Ok(got), Ok(expected)) => assert_eq!(got, expected, "reply to {command:?}"),
                    (Err(got), Err(expected)) => assert!(
                        same_refusal(got, expected),
                        "refusal of {command:?}: {got:?} vs {expected:?}"
                    ),
                    _ => panic!("{command:?}: fast {got:?}, reference {expected:?}"),
                }
                for (event, _, _) in &fast.log[logged..] {
                    feed.apply(event);
                }
            }
            Step::Snapshot => {
                let bytes = encode(&fast.matching);
                let mut restored: Matching = postcard::from_bytes(&bytes).expect("restores");
                restored.set_limits(limits);
                restored
                    .check_invariants()
                    .expect("restored state is consistent");
                assert_eq!(encode(&restored), bytes, "encode -> restore -> encode");
                fast.matching = restored;
            }
        }
        compare(&fast.matching, &reference, &feed);
    }
    let live = encode(&fast.matching);
    assert_eq!(
        encode(&replay(&fast.log)),
        live,
        "replay gives the live bytes"
    );
    let restored: Matching = postcard::from_bytes(&live).expect("restores");
    assert_eq!(encode(&restored), live, "encode -> restore -> encode");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_book_behaves_like_the_reference_book(steps in steps()) {
        run(&steps, Bounds::Default);
    }

    #[test]
    fn without_history_the_books_still_agree(steps in steps()) {
        run(&steps, Bounds::NoHistory);
    }

    #[test]
    fn under_small_limits_the_books_still_agree(steps in steps()) {
        run(&steps, Bounds::Small);
    }
}
