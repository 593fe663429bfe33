//! A harness that drives the state machine like the engine does (decide, then apply each event)
//! and keeps the log, checking after every command that decide changed nothing and that the
//! book's invariants hold.

#![allow(dead_code)]

use cairn_matching::{
    Actor, Limits, Matching, MatchingCommand, MatchingError, MatchingEvent, MatchingReply,
    OrderReply, OrderType, OrderView, Side, StpMode, TimeInForce,
};

pub const NOW_MS: u64 = 1_800_000_000_000;

/// (price, qty, orders) per level, best first.
pub type Levels = Vec<(i64, i64, u64)>;

pub struct Harness {
    pub matching: Matching,
    pub log: Vec<(MatchingEvent, u64, u64)>,
    pub now_ms: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Harness {
        Harness {
            matching: Matching::with_limits(limits),
            log: Vec::new(),
            now_ms: NOW_MS,
        }
    }

    /// A harness with market `X` (tick 1, lot 1) already open.
    pub fn market() -> Harness {
        let mut h = Harness::new();
        h.create("X", 1, 1).expect("market created");
        h
    }

    pub fn run(&mut self, command: MatchingCommand) -> Result<MatchingReply, MatchingError> {
        let before = self.matching.image();
        let decided = self
            .matching
            .decide(&command, &Actor::default(), self.now_ms);
        assert_eq!(self.matching.image(), before, "decide changed the state");
        let (events, reply) = decided?;
        assert_eq!(events.len(), 1, "one event per accepted command");
        for event in events {
            let lsn = self.log.len() as u64 + 1;
            self.matching.apply(&event, lsn, self.now_ms);
            self.log.push((event, lsn, self.now_ms));
        }
        self.now_ms += 1;
        if let Err(error) = self.matching.check_invariants() {
            panic!("invariant broken after {command:?}: {error}");
        }
        Ok(reply)
    }

    pub fn create(
        &mut self,
        symbol: &str,
        tick: i64,
        lot: i64,
    ) -> Result<MatchingReply, MatchingError> {
        self.run(MatchingCommand::CreateMarket {
            symbol: symbol.into(),
            tick_size: tick,
            lot_size: lot,
            min_price: None,
            max_price: None,
            min_qty: None,
            max_qty: None,
        })
    }

    pub fn order(&mut self, order: MatchingCommand) -> Result<OrderReply, MatchingError> {
        match self.run(order)? {
            MatchingReply::Order(reply) => Ok(reply),
            MatchingReply::Market { .. } => panic!("an order command replies with an order"),
        }
    }

    /// A GTC limit order in `X`.
    pub fn limit(&mut self, account: &str, side: Side, price: i64, qty: i64) -> OrderReply {
        self.order(place(
            "X",
            account,
            side,
            OrderType::Limit,
            Some(price),
            qty,
            TimeInForce::Gtc,
        ))
        .expect("limit order accepted")
    }

    pub fn view(&self, order_id: u64) -> OrderView {
        self.matching.order("X", order_id).expect("order retained")
    }

    pub fn cancel(&mut self, order_id: u64) -> Result<OrderReply, MatchingError> {
        self.order(MatchingCommand::CancelOrder {
            symbol: "X".into(),
            order_id,
        })
    }

    pub fn amend(
        &mut self,
        order_id: u64,
        price: Option<i64>,
        qty: Option<i64>,
    ) -> Result<OrderReply, MatchingError> {
        self.order(MatchingCommand::AmendOrder {
            symbol: "X".into(),
            order_id,
            price,
            qty,
        })
    }

    /// Bids and asks.
    pub fn depth(&self) -> (Levels, Levels) {
        let depth = self.matching.depth("X", 100).expect("market exists");
        let levels = |levels: Vec<cairn_matching::LevelView>| {
            levels
                .into_iter()
                .map(|l| (l.price, l.qty, l.orders))
                .collect()
        };
        (levels(depth.bids), levels(depth.asks))
    }
}

pub fn place(
    symbol: &str,
    account: &str,
    side: Side,
    order_type: OrderType,
    price: Option<i64>,
    qty: i64,
    time_in_force: TimeInForce,
) -> MatchingCommand {
    MatchingCommand::PlaceOrder {
        symbol: symbol.into(),
        account: account.into(),
        side,
        order_type,
        price,
        qty,
        time_in_force,
        post_only: false,
        stp: None,
    }
}

pub fn with_stp(mut command: MatchingCommand, mode: StpMode) -> MatchingCommand {
    if let MatchingCommand::PlaceOrder { stp, .. } = &mut command {
        *stp = Some(mode);
    }
    command
}

pub fn post_only(mut command: MatchingCommand) -> MatchingCommand {
    if let MatchingCommand::PlaceOrder { post_only, .. } = &mut command {
        *post_only = true;
    }
    command
}

/// Replays a log into a fresh state.
pub fn replay(log: &[(MatchingEvent, u64, u64)]) -> Matching {
    let mut matching = Matching::default();
    for (event, lsn, at_ms) in log {
        matching.apply(event, *lsn, *at_ms);
    }
    matching
}

pub fn encode(matching: &Matching) -> Vec<u8> {
    postcard::to_stdvec(matching).expect("the state encodes")
}
