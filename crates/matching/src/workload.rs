//! A deterministic order stream for benchmarks, shared with `cairn bench matching` so that Cairn
//! and its peers (orderbook-rs, lobster) replay exactly the same operations.
//!
//! The stream is defined by a seed alone (splitmix64): about 60% GTC limit orders a few ticks
//! from the mid price on their own side, 30% cancels of earlier limit orders picked at random
//! (some of them already filled: every book refuses those alike), 10% orders that cross the
//! spread (half IOC limit orders a few ticks through the mid, half market IOC orders). Taker sizes
//! average about three maker sizes, so the book stays near its starting size. The mid price
//! takes a random step of one tick every 100 operations.
//!
//! Operations name earlier orders by their position in the stream (`Cancel { target }`), never
//! by an engine's order id, so a driver maps positions to whatever ids its book hands out.

use crate::command::MatchingCommand;
use crate::types::{OrderType, Side, TimeInForce};

/// The splitmix64 generator: tiny, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from a seed.
    #[must_use]
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`), by multiply-shift.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low <= high);
        let span = high.abs_diff(low) + 1;
        low.wrapping_add(self.below(span) as i64)
    }
}

/// One operation of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A GTC limit order near the spread.
    Limit {
        /// Side.
        side: Side,
        /// Limit price.
        price: i64,
        /// Units.
        qty: i64,
        /// Account number (see [`account_name`]).
        account: u32,
    },
    /// An IOC order that crosses the spread: a limit when `price` is set, else a market order.
    Take {
        /// Side.
        side: Side,
        /// Limit price, or `None` for a market order.
        price: Option<i64>,
        /// Units.
        qty: i64,
        /// Account number.
        account: u32,
    },
    /// Cancel the order placed by the operation at position `target` of the stream.
    Cancel {
        /// Position of an earlier `Limit` operation.
        target: u64,
    },
}

/// The shape of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// The seed.
    pub seed: u64,
    /// Limit orders placed first (the book's starting size).
    pub resting: usize,
    /// Starting mid price.
    pub mid_price: i64,
    /// Price step.
    pub tick_size: i64,
    /// Limit orders rest 1..=band ticks from the mid.
    pub band_ticks: i64,
    /// Largest maker size (units; sizes are 1..=this).
    pub maker_qty_max: i64,
    /// Accounts the orders are spread over.
    pub accounts: u32,
}

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            seed: 42,
            resting: 10_000,
            mid_price: 1_000_000,
            tick_size: 1,
            band_ticks: 50,
            maker_qty_max: 10,
            accounts: 1_000,
        }
    }
}

/// The symbol the stream trades.
pub const SYMBOL: &str = "BENCH";

/// The name of account number `n`.
#[must_use]
pub fn account_name(n: u32) -> String {
    format!("acct-{n}")
}

/// The command that creates the stream's market.
#[must_use]
pub fn create_market(config: &WorkloadConfig) -> MatchingCommand {
    MatchingCommand::CreateMarket {
        symbol: SYMBOL.to_string(),
        tick_size: config.tick_size,
        lot_size: 1,
        min_price: None,
        max_price: None,
        min_qty: None,
        max_qty: None,
    }
}

/// The stream: an iterator of operations (endless), with the starting book first.
#[derive(Clone, Debug)]
pub struct Workload {
    config: WorkloadConfig,
    rng: SplitMix64,
    mid_price: i64,
    /// Positions of limit orders not yet targeted by a cancel.
    outstanding: Vec<u64>,
    position: u64,
}

impl Workload {
    /// A stream.
    #[must_use]
    pub fn new(config: WorkloadConfig) -> Workload {
        Workload {
            config,
            rng: SplitMix64::new(config.seed),
            mid_price: config.mid_price,
            outstanding: Vec::with_capacity(config.resting * 2),
            position: 0,
        }
    }

    /// The position the next operation has.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    fn limit(&mut self) -> Op {
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let ticks = self.rng.between(1, self.config.band_ticks);
        let offset = ticks * self.config.tick_size;
        let price = match side {
            Side::Buy => self.mid_price - offset,
            Side::Sell => self.mid_price + offset,
        }
        .max(self.config.tick_size);
        self.outstanding.push(self.position);
        Op::Limit {
            side,
            price,
            qty: self.rng.between(1, self.config.maker_qty_max),
            account: self.rng.below(u64::from(self.config.accounts.max(1))) as u32,
        }
    }

    fn take(&mut self) -> Op {
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let through = self.rng.between(1, 5) * self.config.tick_size;
        let price = (self.rng.below(2) == 0).then(|| match side {
            Side::Buy => self.mid_price + through,
            Side::Sell => (self.mid_price - through).max(self.config.tick_size),
        });
        Op::Take {
            side,
            price,
            qty: self.rng.between(1, 5 * self.config.maker_qty_max),
            account: self.rng.below(u64::from(self.config.accounts.max(1))) as u32,
        }
    }

    fn cancel(&mut self) -> Op {
        let len = self.outstanding.len() as u64;
        if len == 0 {
            return self.limit();
        }
        let at = self.rng.below(len) as usize;
        let target = self.outstanding.swap_remove(at);
        Op::Cancel { target }
    }
}

impl Iterator for Workload {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let op = if (self.position as usize) < self.config.resting {
            self.limit()
        } else {
            if self.position.is_multiple_of(100) {
                let step = if self.rng.below(2) == 0 { -1 } else { 1 };
                self.mid_price = (self.mid_price + step * self.config.tick_size)
                    .max(self.config.tick_size * (self.config.band_ticks + 10));
            }
            match self.rng.below(10) {
                0..=5 => self.limit(),
                6..=8 => self.cancel(),
                _ => self.take(),
            }
        };
        self.position += 1;
        Some(op)
    }
}

/// Turns operations into commands for [`crate::Matching`], remembering the order id each limit
/// order got so that later cancels can name it.
#[derive(Clone, Debug, Default)]
pub struct Driver {
    /// Order id per stream position (0 when the position placed no resting order).
    order_ids: Vec<u64>,
    accounts: Vec<String>,
}

impl Driver {
    /// A driver for a stream over `accounts` accounts.
    #[must_use]
    pub fn new(accounts: u32) -> Driver {
        Driver {
            order_ids: Vec::new(),
            accounts: (0..accounts.max(1)).map(account_name).collect(),
        }
    }

    /// The command for the operation at the next position.
    #[must_use]
    pub fn command(&self, op: &Op) -> MatchingCommand {
        let account = |n: u32| self.accounts[n as usize % self.accounts.len()].clone();
        match *op {
            Op::Limit {
                side,
                price,
                qty,
                account: n,
            } => MatchingCommand::PlaceOrder {
                symbol: SYMBOL.to_string(),
                account: account(n),
                side,
                order_type: OrderType::Limit,
                price: Some(price),
                qty,
                time_in_force: TimeInForce::Gtc,
                post_only: false,
                stp: None,
            },
            Op::Take {
                side,
                price,
                qty,
                account: n,
            } => MatchingCommand::PlaceOrder {
                symbol: SYMBOL.to_string(),
                account: account(n),
                side,
                order_type: if price.is_some() {
                    OrderType::Limit
                } else {
                    OrderType::Market
                },
                price,
                qty,
                time_in_force: TimeInForce::Ioc,
                post_only: false,
                stp: None,
            },
            Op::Cancel { target } => MatchingCommand::CancelOrder {
                symbol: SYMBOL.to_string(),
                order_id: usize::try_from(target)
                    .ok()
                    .and_then(|t| self.order_ids.get(t))
                    .copied()
                    .unwrap_or(0),
            },
        }
    }

    /// Records the order id the operation at the next position got (0 for none).
    pub fn placed(&mut self, order_id: u64) {
        self.order_ids.push(order_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_a_function_of_the_seed() {
        let a: Vec<Op> = Workload::new(WorkloadConfig::default())
            .take(20_000)
            .collect();
        let b: Vec<Op> = Workload::new(WorkloadConfig::default())
            .take(20_000)
            .collect();
        assert_eq!(a, b);
        let other = WorkloadConfig {
            seed: 7,
            ..WorkloadConfig::default()
        };
        let c: Vec<Op> = Workload::new(other).take(20_000).collect();
        assert_ne!(a, c);
        // The published splitmix64 sequence for seed 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn the_mix_is_about_sixty_thirty_ten_after_the_starting_book() {
        let config = WorkloadConfig::default();
        let ops: Vec<Op> = Workload::new(config)
            .skip(config.resting)
            .take(100_000)
            .collect();
        let limits = ops
            .iter()
            .filter(|op| matches!(op, Op::Limit { .. }))
            .count();
        let cancels = ops
            .iter()
            .filter(|op| matches!(op, Op::Cancel { .. }))
            .count();
        let takes = ops
            .iter()
            .filter(|op| matches!(op, Op::Take { .. }))
            .count();
        assert!((58_000..62_000).contains(&limits), "{limits}");
        assert!((28_000..32_000).contains(&cancels), "{cancels}");
        assert!((9_000..11_000).contains(&takes), "{takes}");
    }
}
