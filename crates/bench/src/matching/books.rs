//! The three order books of the core comparison, each fed the same stream of
//! [`cairn_matching::workload::Op`]s in its own input form.
//!
//! Every book gets its input converted beforehand (outside the timing), the way a real system
//! receives commands already decoded: Cairn as [`MatchingCommand`]s (with the order ids a cancel
//! names, which are dense per market and so known in advance), the peers as their own order types.
//! What each book does per operation:
//!
//! | operation | [`CairnBook`] | `OrderbookRsBook` (orderbook-rs) | `LobsterBook` (lobster) |
//! |---|---|---|---|
//! | GTC limit | `PlaceOrder` limit/GTC | `add_order` `Standard`, GTC | `Limit` |
//! | IOC limit | `PlaceOrder` limit/IOC | `add_order` `Standard`, IOC | `Limit`, then `Cancel` of what rested (lobster has no IOC) |
//! | market | `PlaceOrder` market/IOC | `submit_market_order_with_user` | `Market` |
//! | cancel | `CancelOrder` | `cancel_order` | `Cancel` |
//! | self-trade prevention | yes (cancel incoming, per account) | yes (`CancelTaker`, per user) | no |
//! | result | one complete event (every fill with both accounts, the status) applied to the state; order status and trades kept queryable | `Result` with the order; trades to listeners (none set) | an `OrderEvent` with the fills |
//!
//! None of them writes anything durable here; Cairn's durable path is the `e2e` and recovery
//! part of the benchmark.

use cairn_matching::workload::{Driver, Op, Workload, WorkloadConfig, create_market};
use cairn_matching::{Actor, Matching, MatchingCommand, MatchingReply};

/// The time every Cairn command is decided at (the book reads time only from its caller).
const NOW_MS: u64 = 1_800_000_000_000;

/// The stream of one comparison: the starting book, the warm-up, then the timed operations.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Its shape.
    pub config: WorkloadConfig,
    /// Every operation, the starting book first.
    pub ops: Vec<Op>,
    /// Where the timed operations start in `ops`.
    pub timed_from: usize,
}

impl Stream {
    /// The first `config.resting + warmup + timed` operations of the stream of `config`.
    #[must_use]
    pub fn new(config: WorkloadConfig, warmup: usize, timed: usize) -> Stream {
        let timed_from = config.resting + warmup;
        let ops = Workload::new(config).take(timed_from + timed).collect();
        Stream {
            config,
            ops,
            timed_from,
        }
    }
}

/// What a book did with the operations it was fed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations fed.
    pub ops: u64,
    /// Operations the book answered with an error or a refusal (mostly cancels of orders that
    /// were already filled; for orderbook-rs also IOC orders left unfilled).
    pub refused: u64,
    /// Units traded, where the book's answer says so (`None` when it does not).
    pub filled_qty: Option<u64>,
}

impl Tally {
    fn filled(&mut self, qty: u64) {
        *self.filled_qty.get_or_insert(0) += qty;
    }
}

/// One order book under test.
pub trait Book: Sized {
    /// Its `system` name in the report.
    const SYSTEM: &'static str;
    /// One operation in the book's own form.
    type Input;

    /// The book's input for every operation of `stream`.
    fn inputs(stream: &Stream) -> Vec<Self::Input>;

    /// An empty book for the stream's market.
    fn new(config: &WorkloadConfig) -> Self;

    /// Feeds one operation.
    fn execute(&mut self, input: &Self::Input, tally: &mut Tally);

    /// Feeds every operation of `inputs`.
    fn execute_all(&mut self, inputs: &[Self::Input], tally: &mut Tally) {
        for input in inputs {
            self.execute(input, tally);
        }
        tally.ops += inputs.len() as u64;
    }
}

/// Cairn's book: [`Matching::decide`] then [`Matching::apply`] of each event, as the sequencer
/// runs them (without the log).
pub struct CairnBook {
    matching: Matching,
    actor: Actor,
    lsn: u64,
}

impl CairnBook {
    /// Orders resting on the book.
    #[must_use]
    pub fn open_orders(&self) -> u64 {
        self.matching
            .market(cairn_matching::workload::SYMBOL)
            .map_or(0, |market| market.open_orders)
    }
}

/// The commands of `ops`, cancels naming the order ids Cairn gives: ids are dense per market
/// from 1, one per accepted `PlaceOrder`, and the stream's orders are all valid.
#[must_use]
pub fn cairn_commands(config: &WorkloadConfig, ops: &[Op]) -> Vec<MatchingCommand> {
    let mut driver = Driver::new(config.accounts);
    let mut next_order_id = 1;
    ops.iter()
        .map(|op| {
            let command = driver.command(op);
            driver.placed(match op {
                Op::Cancel { .. } => 0,
                Op::Limit { .. } | Op::Take { .. } => {
                    next_order_id += 1;
                    next_order_id - 1
                }
            });
            command
        })
        .collect()
}

impl Book for CairnBook {
    const SYSTEM: &'static str = "cairn";
    type Input = MatchingCommand;

    fn inputs(stream: &Stream) -> Vec<MatchingCommand> {
        cairn_commands(&stream.config, &stream.ops)
    }

    fn new(config: &WorkloadConfig) -> CairnBook {
        let mut book = CairnBook {
            matching: Matching::default(),
            actor: Actor::default(),
            lsn: 0,
        };
        let mut tally = Tally::default();
        book.execute(&create_market(config), &mut tally);
        assert_eq!(tally.refused, 0, "the benchmark's market is created");
        book
    }

    fn execute(&mut self, command: &MatchingCommand, tally: &mut Tally) {
        match self.matching.decide(command, &self.actor, NOW_MS) {
            Ok((events, reply)) => {
                for event in &events {
                    self.lsn += 1;
                    self.matching.apply(event, self.lsn, NOW_MS);
                }
                if let (MatchingReply::Order(order), MatchingCommand::PlaceOrder { .. }) =
                    (&reply, command)
                {
                    tally.filled(order.filled_qty.unsigned_abs());
                }
            }
            Err(_) => tally.refused += 1,
        }
    }
}

#[cfg(feature = "peers")]
pub use peers::{LobsterBook, OrderbookRsBook};

#[cfg(feature = "peers")]
mod peers {
    use super::{Book, Stream, Tally};
    use cairn_matching::Side;
    use cairn_matching::workload::{Op, WorkloadConfig};
    use orderbook_rs::{Id, OrderBook, STPMode, TimeInForce};
    use pricelevel::Hash32;

    /// An operation for orderbook-rs.
    #[derive(Clone, Copy, Debug)]
    pub enum OrderbookRsInput {
        /// A limit order, GTC or IOC.
        Limit {
            /// Its id.
            id: Id,
            /// Limit price.
            price: u128,
            /// Units.
            qty: u64,
            /// Side.
            side: orderbook_rs::Side,
            /// GTC or IOC.
            time_in_force: TimeInForce,
            /// Owner, for self-trade prevention.
            user: Hash32,
        },
        /// A market order.
        Market {
            /// Its id.
            id: Id,
            /// Units.
            qty: u64,
            /// Side.
            side: orderbook_rs::Side,
            /// Owner, for self-trade prevention.
            user: Hash32,
        },
        /// Cancel by id.
        Cancel(Id),
    }

    /// `orderbook-rs`: a concurrent book (lock-free price levels, skip lists, maps of orders),
    /// driven from one thread through its public API, with self-trade prevention
    /// (`CancelTaker`, the closest to Cairn's default) so that it does the same work per order.
    pub struct OrderbookRsBook {
        book: OrderBook<()>,
    }

    fn side(side: Side) -> orderbook_rs::Side {
        match side {
            Side::Buy => orderbook_rs::Side::Buy,
            Side::Sell => orderbook_rs::Side::Sell,
        }
    }

    /// A non-zero user id per account (zero means "no user" to orderbook-rs).
    fn user(account: u32) -> Hash32 {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(u64::from(account) + 1).to_le_bytes());
        Hash32(bytes)
    }

    /// Stream position `at` as an order id (positions are unique; ids start at 1).
    fn order_id(at: u64) -> u64 {
        at + 1
    }

    fn orderbook_rs_input(at: u64, op: &Op) -> OrderbookRsInput {
        let id = Id::sequential(order_id(at));
        match *op {
            Op::Limit {
                side: op_side,
                price,
                qty,
                account,
            } => OrderbookRsInput::Limit {
                id,
                price: u128::from(price.unsigned_abs()),
                qty: qty.unsigned_abs(),
                side: side(op_side),
                time_in_force: TimeInForce::Gtc,
                user: user(account),
            },
            Op::Take {
                side: op_side,
                price: Some(price),
                qty,
                account,
            } => OrderbookRsInput::Limit {
                id,
                price: u128::from(price.unsigned_abs()),
                qty: qty.unsigned_abs(),
                side: side(op_side),
                time_in_force: TimeInForce::Ioc,
                user: user(account),
            },
            Op::Take {
                side: op_side,
                price: None,
                qty,
                account,
            } => OrderbookRsInput::Market {
                id,
                qty: qty.unsigned_abs(),
                side: side(op_side),
                user: user(account),
            },
            Op::Cancel { target } => OrderbookRsInput::Cancel(Id::sequential(order_id(target))),
        }
    }

    impl Book for OrderbookRsBook {
        const SYSTEM: &'static str = "orderbook-rs";
        type Input = OrderbookRsInput;

        fn inputs(stream: &Stream) -> Vec<OrderbookRsInput> {
            (0u64..)
                .zip(&stream.ops)
                .map(|(at, op)| orderbook_rs_input(at, op))
                .collect()
        }

        fn new(_config: &WorkloadConfig) -> OrderbookRsBook {
            OrderbookRsBook {
                book: OrderBook::with_stp_mode(
                    cairn_matching::workload::SYMBOL,
                    STPMode::CancelTaker,
                ),
            }
        }

        fn execute(&mut self, input: &OrderbookRsInput, tally: &mut Tally) {
            let ok = match *input {
                OrderbookRsInput::Limit {
                    id,
                    price,
                    qty,
                    side,
                    time_in_force,
                    user,
                } => self
                    .book
                    .add_limit_order_with_user(id, price, qty, side, time_in_force, user, None)
                    .is_ok(),
                OrderbookRsInput::Market {
                    id,
                    qty,
                    side,
                    user,
                } => self
                    .book
                    .submit_market_order_with_user(id, qty, side, user)
                    .is_ok(),
                OrderbookRsInput::Cancel(id) => matches!(self.book.cancel_order(id), Ok(Some(_))),
            };
            if !ok {
                tally.refused += 1;
            }
        }
    }

    /// An operation for lobster.
    #[derive(Clone, Copy, Debug)]
    pub enum LobsterInput {
        /// One order as lobster takes it.
        Order(lobster::OrderType),
        /// An IOC limit order: lobster rests what does not fill, so it is cancelled at once.
        IocLimit(lobster::OrderType),
    }

    /// `lobster`: a single-threaded book (a `BTreeMap` of price levels, each a `Vec` of arena
    /// indices). No self-trade prevention, no IOC limit orders, no order status after a fill.
    pub struct LobsterBook {
        book: lobster::OrderBook,
    }

    /// Initial capacity of each price level's queue (lobster's default).
    const LOBSTER_QUEUE_CAPACITY: usize = 10;

    fn lobster_side(side: Side) -> lobster::Side {
        match side {
            Side::Buy => lobster::Side::Bid,
            Side::Sell => lobster::Side::Ask,
        }
    }

    impl Book for LobsterBook {
        const SYSTEM: &'static str = "lobster";
        type Input = LobsterInput;

        fn inputs(stream: &Stream) -> Vec<LobsterInput> {
            (0u64..)
                .zip(&stream.ops)
                .map(|(at, op)| {
                    let id = u128::from(order_id(at));
                    match *op {
                        Op::Limit {
                            side, price, qty, ..
                        } => LobsterInput::Order(lobster::OrderType::Limit {
                            id,
                            side: lobster_side(side),
                            qty: qty.unsigned_abs(),
                            price: price.unsigned_abs(),
                        }),
                        Op::Take {
                            side,
                            price: Some(price),
                            qty,
                            ..
                        } => LobsterInput::IocLimit(lobster::OrderType::Limit {
                            id,
                            side: lobster_side(side),
                            qty: qty.unsigned_abs(),
                            price: price.unsigned_abs(),
                        }),
                        Op::Take {
                            side,
                            price: None,
                            qty,
                            ..
                        } => LobsterInput::Order(lobster::OrderType::Market {
                            id,
                            side: lobster_side(side),
                            qty: qty.unsigned_abs(),
                        }),
                        Op::Cancel { target } => LobsterInput::Order(lobster::OrderType::Cancel {
                            id: u128::from(target) + 1,
                        }),
                    }
                })
                .collect()
        }

        fn new(config: &WorkloadConfig) -> LobsterBook {
            LobsterBook {
                book: lobster::OrderBook::new(
                    config.resting.max(1) * 2,
                    LOBSTER_QUEUE_CAPACITY,
                    false,
                ),
            }
        }

        fn execute(&mut self, input: &LobsterInput, tally: &mut Tally) {
            let (order, ioc) = match *input {
                LobsterInput::Order(order) => (order, false),
                LobsterInput::IocLimit(order) => (order, true),
            };
            let event = self.book.execute(order);
            match event {
                lobster::OrderEvent::Filled { filled_qty, .. } => tally.filled(filled_qty),
                lobster::OrderEvent::PartiallyFilled { filled_qty, id, .. } => {
                    tally.filled(filled_qty);
                    if ioc {
                        self.book.execute(lobster::OrderType::Cancel { id });
                    }
                }
                lobster::OrderEvent::Placed { id } if ioc => {
                    tally.filled(0);
                    self.book.execute(lobster::OrderType::Cancel { id });
                }
                lobster::OrderEvent::Unfilled { .. } => tally.refused += 1,
                lobster::OrderEvent::Placed { .. } | lobster::OrderEvent::Canceled { .. } => {
                    tally.filled(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Stream {
        let config = WorkloadConfig {
            resting: 500,
            ..WorkloadConfig::default()
        };
        Stream::new(config, 500, 5_000)
    }

    #[test]
    fn cairn_gives_the_order_ids_the_commands_were_built_with() {
        let stream = small();
        let commands = cairn_commands(&stream.config, &stream.ops);
        let mut book = CairnBook::new(&stream.config);
        let mut next = 1;
        for command in &commands {
            let placed = matches!(command, MatchingCommand::PlaceOrder { .. });
            let decided = book.matching.decide(command, &book.actor, NOW_MS);
            if placed {
                let Ok((_, MatchingReply::Order(order))) = &decided else {
                    panic!("every order of the stream is accepted: {decided:?}");
                };
                assert_eq!(order.order_id, next);
                next += 1;
            }
            book.execute(command, &mut Tally::default());
        }
        assert!(book.open_orders() > 100, "the book keeps orders resting");
    }

    #[test]
    fn cairn_refuses_only_cancels_of_closed_orders() {
        let stream = small();
        let commands = CairnBook::inputs(&stream);
        let mut book = CairnBook::new(&stream.config);
        let mut tally = Tally::default();
        book.execute_all(&commands, &mut tally);
        let cancels = stream
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Cancel { .. }))
            .count() as u64;
        assert_eq!(tally.ops, stream.ops.len() as u64);
        assert!(tally.refused > 0 && tally.refused < cancels, "{tally:?}");
        assert!(tally.filled_qty.unwrap_or(0) > 0, "{tally:?}");
    }

    #[cfg(feature = "peers")]
    #[test]
    fn the_peers_trade_about_as_much_as_cairn_on_the_same_stream() {
        let stream = small();
        let tally = |run: &dyn Fn(&mut Tally)| {
            let mut tally = Tally::default();
            run(&mut tally);
            tally
        };
        let cairn =
            tally(&|t| CairnBook::new(&stream.config).execute_all(&CairnBook::inputs(&stream), t));
        let lobster = tally(&|t| {
            LobsterBook::new(&stream.config).execute_all(&LobsterBook::inputs(&stream), t)
        });
        let orderbook_rs = tally(&|t| {
            OrderbookRsBook::new(&stream.config).execute_all(&OrderbookRsBook::inputs(&stream), t)
        });
        let (ours, theirs) = (
            cairn.filled_qty.unwrap_or(0),
            lobster.filled_qty.unwrap_or(0),
        );
        // Lobster has no self-trade prevention, so it trades somewhat more.
        assert!(
            ours > 0 && theirs >= ours && theirs < ours * 2,
            "{cairn:?} {lobster:?}"
        );
        assert_eq!(orderbook_rs.ops, cairn.ops);
        assert!(
            orderbook_rs.refused < orderbook_rs.ops / 2,
            "{orderbook_rs:?}"
        );
    }
}
