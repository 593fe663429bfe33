//! The product's state machine: every domain of a shard under one sequencer.
//!
//! A shard runs one [`Cairn`] machine, which routes each command to its domain and each event
//! back to it. Domains arrive with their issues (inventory, matching, publishing); until then the
//! machine is empty but complete, so the server, the CLI and the offline tools work on real data
//! directories from the first release.

use crate::machine::{Decision, Stamp, StateMachine};
use serde::{Deserialize, Serialize};

/// A command to some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnCommand {}

/// An event of some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnEvent {}

/// A reply of some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnReply {}

/// A refusal of some domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CairnError {}

/// The state of one shard, across domains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cairn {}

impl StateMachine for Cairn {
    type Command = CairnCommand;
    type Event = CairnEvent;
    type Reply = CairnReply;
    type Error = CairnError;
    type Frozen = Cairn;

    fn decide(
        &self,
        command: &CairnCommand,
        _now_ms: u64,
    ) -> Result<Decision<CairnEvent, CairnReply>, CairnError> {
        match *command {}
    }

    fn apply(&mut self, event: &CairnEvent, _stamp: Stamp) {
        match *event {}
    }

    fn due(&self, _now_ms: u64, _max: usize) -> Vec<CairnEvent> {
        Vec::new()
    }

    fn freeze(&self) -> Cairn {
        self.clone()
    }

    fn encode_frozen(frozen: &Cairn, out: &mut Vec<u8>) {
        // An empty struct has an empty encoding; postcard cannot fail on it.
        if let Ok(bytes) = postcard::to_stdvec(frozen) {
            out.extend_from_slice(&bytes);
        }
    }

    fn restore(bytes: &[u8]) -> Result<Cairn, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode shard state: {e}"))
    }

    fn summary(&self) -> String {
        "no domain state".to_string()
    }
}
