//! The contract between the engine and a state machine.
//!
//! A state machine is pure: it never touches files, sockets, threads or the clock. The engine
//! hands it the time (the sequencer's stamp) and the position of each event. It turns a command
//! into events or a typed refusal (`decide`), and applies events (`apply`). Only events reach the
//! log, so replay never re-runs a business decision.

use cairn_types::Lsn;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where and when an event was logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The record that holds the event.
    pub lsn: Lsn,
    /// The sequencer's time for that record, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What a command decided: the events to log, and the reply to return once they are durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<E, R> {
    /// Facts to log and apply, in order.
    pub events: Vec<E>,
    /// What the caller gets back (and what a retry with the same `request_id` gets).
    pub reply: R,
}

/// A deterministic state machine run by one shard's sequencer.
pub trait StateMachine: Sized + Send + 'static {
    /// What callers ask for.
    type Command: Send + 'static;
    /// A fact, logged and applied.
    type Event: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static;
    /// The answer to an accepted command.
    type Reply: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static;
    /// A refusal decided against the current state (such as insufficient stock).
    type Error: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static;
    /// A frozen copy of the state, encoded into a snapshot off the sequencer thread.
    type Frozen: Send + 'static;

    /// Decides a command against the current state at time `now_ms`. Must not change the state.
    ///
    /// # Errors
    /// The refusal, which is returned to the caller (and remembered for its `request_id`).
    fn decide(
        &self,
        command: &Self::Command,
        now_ms: u64,
    ) -> Result<Decision<Self::Event, Self::Reply>, Self::Error>;

    /// Applies one event. Events are facts: applying one never fails.
    fn apply(&mut self, event: &Self::Event, stamp: Stamp);

    /// Events for timers due at `now_ms` (expiries, timeouts, schedules), at most `max` of them.
    fn due(&self, now_ms: u64, max: usize) -> Vec<Self::Event>;

    /// A copy of the state to snapshot; it should be cheap, since the sequencer waits for it.
    fn freeze(&self) -> Self::Frozen;

    /// The canonical encoding of a frozen state: equal states give equal bytes.
    ///
    /// # Errors
    /// The state cannot be encoded (a bug in a type's `Serialize`).
    fn encode_frozen(frozen: &Self::Frozen, out: &mut Vec<u8>) -> Result<(), String>;

    /// Rebuilds a state from [`StateMachine::encode_frozen`]'s bytes.
    ///
    /// # Errors
    /// A description of what is wrong with the bytes.
    fn restore(bytes: &[u8]) -> Result<Self, String>;

    /// Whether a refusal is bad input (a request that could never succeed as sent, such as a
    /// price off the tick): such refusals are neither logged nor remembered for their
    /// `request_id`, like input refused before the engine. Refusals decided against state
    /// (insufficient stock, an order no longer open) are remembered.
    fn is_bad_input(error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// A one-line human summary of the state, for `cairn replay`.
    fn summary(&self) -> String;

    /// The hash of the canonical encoding of the state.
    ///
    /// # Errors
    /// As [`StateMachine::encode_frozen`].
    fn state_hash(&self) -> Result<[u8; 32], String> {
        let mut bytes = Vec::new();
        Self::encode_frozen(&self.freeze(), &mut bytes)?;
        Ok(*blake3::hash(&bytes).as_bytes())
    }
}
