//! What the engine writes into a log record's payload (the log itself sees opaque bytes).
//!
//! One record per decided command, so that a command's events are durable together or not at
//! all: a torn tail can drop whole commands, never half of one.

use crate::dedup::RequestKey;
use serde::{Deserialize, Serialize};

/// Record type of an accepted command's events.
pub const RECORD_TYPE_COMMAND: u16 = 1;
/// Record type of a refusal remembered for its `request_id`.
pub const RECORD_TYPE_REFUSAL: u16 = 2;
/// Record type of timer events (expiries, timeouts, schedules) produced by the sequencer.
pub const RECORD_TYPE_TIMERS: u16 = 3;

/// The payload of a record, generic over the machine's event, reply and error types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope<E, R, X> {
    /// An accepted command: its events and the reply it got.
    Command {
        /// The caller's idempotency key, if it gave one.
        request: Option<RequestKey>,
        /// The events, in order.
        events: Vec<E>,
        /// The reply.
        reply: R,
    },
    /// A refused command whose refusal must be remembered for retries.
    Refusal {
        /// The caller's idempotency key.
        request: RequestKey,
        /// The refusal.
        error: X,
    },
    /// Events the sequencer produced for due timers.
    Timers {
        /// The events, in order.
        events: Vec<E>,
    },
}

impl<E, R, X> Envelope<E, R, X> {
    /// The log record type for this envelope.
    pub fn record_type(&self) -> u16 {
        match self {
            Envelope::Command { .. } => RECORD_TYPE_COMMAND,
            Envelope::Refusal { .. } => RECORD_TYPE_REFUSAL,
            Envelope::Timers { .. } => RECORD_TYPE_TIMERS,
        }
    }

    /// The events this record applies.
    pub fn events(&self) -> &[E] {
        match self {
            Envelope::Command { events, .. } | Envelope::Timers { events } => events,
            Envelope::Refusal { .. } => &[],
        }
    }
}

/// Encodes a payload.
///
/// # Errors
/// Serialization failure (a bug in a type's `Serialize`).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| format!("encoding failed: {e}"))
}

/// Decodes a payload.
///
/// # Errors
/// The bytes are not an encoding of `T`.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("decoding failed: {e}"))
}
