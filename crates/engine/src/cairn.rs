//! The product's state machine: every domain of a shard under one sequencer.
//!
//! A shard runs one [`Cairn`] machine, which routes each command to its domain and each event
//! back to it. Domains: inventory, matching and publishing (a variant in each enum and a field in
//! the state). Publishing is routed to shard 0 alone, so that a release across datasets is one
//! atomic step in one log; its field is empty on the other shards.

use crate::machine::{Decision, Stamp, StateMachine};
use crate::txn::{Coordinator, TxnCommand, TxnError, TxnEvent, TxnView};
use cairn_inventory::{
    Actor, Inventory, InventoryCommand, InventoryError, InventoryEvent, InventoryReply,
};
use cairn_matching::{Matching, MatchingCommand, MatchingError, MatchingEvent, MatchingReply};
use cairn_publishing::{
    Publishing, PublishingCommand, PublishingError, PublishingEvent, PublishingReply,
};
use serde::{Deserialize, Serialize};

/// A command to some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnCommand {
    /// An inventory command and who asked.
    Inventory {
        /// Who asked.
        actor: Actor,
        /// What.
        command: InventoryCommand,
    },
    /// A matching command and who asked.
    Matching {
        /// Who asked.
        actor: cairn_matching::Actor,
        /// What.
        command: MatchingCommand,
    },
    /// A publishing command and who asked.
    Publishing {
        /// Who asked.
        actor: cairn_publishing::Actor,
        /// What.
        command: PublishingCommand,
    },
    /// A command to this shard's transaction coordinator.
    Txn(TxnCommand),
}

/// An event of some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnEvent {
    /// An inventory event.
    Inventory(InventoryEvent),
    /// A matching event.
    Matching(MatchingEvent),
    /// A publishing event.
    Publishing(PublishingEvent),
    /// A transaction coordinator's event.
    Txn(TxnEvent),
}

/// A reply of some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnReply {
    /// An inventory reply.
    Inventory(InventoryReply),
    /// A matching reply.
    Matching(MatchingReply),
    /// A publishing reply.
    Publishing(PublishingReply),
    /// A transaction coordinator's reply.
    Txn(TxnView),
}

/// A refusal of some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnError {
    /// An inventory refusal.
    Inventory(InventoryError),
    /// A matching refusal.
    Matching(MatchingError),
    /// A publishing refusal.
    Publishing(PublishingError),
    /// A transaction coordinator's refusal.
    Txn(TxnError),
}

/// The state of one shard, across domains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cairn {
    /// Stock and reservations.
    pub inventory: Inventory,
    /// Order books.
    pub matching: Matching,
    /// Versioned datasets and releases (shard 0 only).
    pub publishing: Publishing,
    /// Multi-shard transactions this shard coordinates.
    pub txns: Coordinator,
}

impl StateMachine for Cairn {
    type Command = CairnCommand;
    type Event = CairnEvent;
    type Reply = CairnReply;
    type Error = CairnError;
    type Frozen = Cairn;

    fn decide(
        &self,
        command: &CairnCommand,
        now_ms: u64,
    ) -> Result<Decision<CairnEvent, CairnReply>, CairnError> {
        match command {
            CairnCommand::Inventory { actor, command } => {
                let (events, reply) = self
                    .inventory
                    .decide(command, actor, now_ms)
                    .map_err(CairnError::Inventory)?;
                Ok(Decision {
                    events: events.into_iter().map(CairnEvent::Inventory).collect(),
                    reply: CairnReply::Inventory(reply),
                })
            }
            CairnCommand::Matching { actor, command } => {
                let (events, reply) = self
                    .matching
                    .decide(command, actor, now_ms)
                    .map_err(CairnError::Matching)?;
                Ok(Decision {
                    events: events.into_iter().map(CairnEvent::Matching).collect(),
                    reply: CairnReply::Matching(reply),
                })
            }
            CairnCommand::Publishing { actor, command } => {
                let (events, reply) = self
                    .publishing
                    .decide(command, actor, now_ms)
                    .map_err(CairnError::Publishing)?;
                Ok(Decision {
                    events: events.into_iter().map(CairnEvent::Publishing).collect(),
                    reply: CairnReply::Publishing(reply),
                })
            }
            CairnCommand::Txn(command) => {
                let (events, reply) = self.txns.decide(command, now_ms).map_err(CairnError::Txn)?;
                Ok(Decision {
                    events: events.into_iter().map(CairnEvent::Txn).collect(),
                    reply: CairnReply::Txn(reply),
                })
            }
        }
    }

    fn apply(&mut self, event: &CairnEvent, stamp: Stamp) {
        match event {
            CairnEvent::Inventory(event) => self.inventory.apply(event, stamp.lsn.0, stamp.at_ms),
            CairnEvent::Matching(event) => self.matching.apply(event, stamp.lsn.0, stamp.at_ms),
            CairnEvent::Publishing(event) => {
                self.publishing.apply(event, stamp.lsn.0, stamp.at_ms);
            }
            CairnEvent::Txn(event) => self.txns.apply(event, stamp.at_ms),
        }
    }

    fn due(&self, now_ms: u64, max: usize) -> Vec<CairnEvent> {
        let mut due: Vec<CairnEvent> = self
            .inventory
            .due(now_ms, max)
            .into_iter()
            .map(CairnEvent::Inventory)
            .collect();
        let room = max.saturating_sub(due.len());
        if room > 0 {
            due.extend(
                self.publishing
                    .due(now_ms, room)
                    .into_iter()
                    .map(CairnEvent::Publishing),
            );
        }
        due
    }

    fn freeze(&self) -> Cairn {
        self.clone()
    }

    fn encode_frozen(frozen: &Cairn, out: &mut Vec<u8>) -> Result<(), String> {
        let bytes =
            postcard::to_stdvec(frozen).map_err(|e| format!("shard state does not encode: {e}"))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn restore(bytes: &[u8]) -> Result<Cairn, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode shard state: {e}"))
    }

    fn is_bad_input(error: &CairnError) -> bool {
        match error {
            CairnError::Inventory(error) => error.http_status() == 400,
            CairnError::Matching(error) => error.http_status() == 400,
            CairnError::Publishing(error) => error.http_status() == 400,
            CairnError::Txn(error) => error.http_status() == 400,
        }
    }

    fn summary(&self) -> String {
        format!(
            "inventory: {}; matching: {}; publishing: {}{}",
            self.inventory.summary(),
            self.matching.summary(),
            self.publishing.summary(),
            if self.txns.is_empty() {
                String::new()
            } else {
                format!("; transactions: {} kept", self.txns.len())
            }
        )
    }
}
