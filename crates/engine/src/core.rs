//! A shard's state: the machine plus the request table, and the one path that changes it.
//!
//! Live commands and replay both go through [`Core::apply_envelope`], so the state after replay
//! is the state that was live, by construction. The state hash covers both parts.

use crate::dedup::{DedupLimits, DedupTable, Remembered, StoredOutcome};
use crate::envelope::{self, Envelope};
use crate::machine::{Stamp, StateMachine};
use cairn_log::RecordView;
use cairn_types::Lsn;
use serde::{Deserialize, Serialize};

/// The envelope type of a machine.
pub type EnvelopeOf<M> =
    Envelope<<M as StateMachine>::Event, <M as StateMachine>::Reply, <M as StateMachine>::Error>;

/// What a snapshot file's body holds (postcard-encoded; its BLAKE3 is the state hash).
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    machine: Vec<u8>,
    requests: Vec<(String, Remembered)>,
}

/// A frozen copy of a shard's state, encoded off the sequencer thread.
pub struct FrozenCore<M: StateMachine> {
    machine: M::Frozen,
    /// An O(1) copy (persistent collections); listed in LSN order only when encoded.
    requests: DedupTable,
    /// The last record included.
    pub lsn: Lsn,
    /// Its log time.
    pub at_ms: u64,
}

impl<M: StateMachine> FrozenCore<M> {
    /// The canonical bytes of the state (the snapshot body).
    ///
    /// # Errors
    /// Encoding failure (a bug in a type's `Serialize`).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut machine = Vec::new();
        M::encode_frozen(&self.machine, &mut machine)?;
        envelope::encode(&SnapshotBody {
            machine,
            requests: self.requests.to_entries().1,
        })
    }
}

/// The hash of a state's canonical bytes.
#[must_use]
pub fn hash_state(body: &[u8]) -> [u8; 32] {
    *blake3::hash(body).as_bytes()
}

/// A shard's state.
pub struct Core<M: StateMachine> {
    /// The domain state.
    pub machine: M,
    /// Remembered request outcomes.
    pub requests: DedupTable,
    /// The last record applied.
    pub lsn: Lsn,
    /// Its log time.
    pub at_ms: u64,
}

impl<M: StateMachine + Default> Core<M> {
    /// An empty state.
    #[must_use]
    pub fn empty(limits: DedupLimits) -> Core<M> {
        Core {
            machine: M::default(),
            requests: DedupTable::new(limits),
            lsn: Lsn::ZERO,
            at_ms: 0,
        }
    }
}

impl<M: StateMachine> Core<M> {
    /// Rebuilds a state from a snapshot body taken at `lsn`.
    ///
    /// # Errors
    /// The body does not decode.
    pub fn restore(
        body: &[u8],
        lsn: Lsn,
        at_ms: u64,
        limits: DedupLimits,
    ) -> Result<Core<M>, String> {
        let decoded: SnapshotBody = envelope::decode(body)?;
        let machine = M::restore(&decoded.machine)?;
        let requests = DedupTable::from_entries(limits, decoded.requests);
        Ok(Core {
            machine,
            requests,
            lsn,
            at_ms,
        })
    }

    /// Applies a decided envelope logged at `stamp`: its events, then what it tells the request
    /// table.
    pub fn apply_envelope(&mut self, envelope: &EnvelopeOf<M>, stamp: Stamp) -> Result<(), String> {
        assert!(stamp.lsn > self.lsn, "records apply in LSN order");
        for event in envelope.events() {
            self.machine.apply(event, stamp);
        }
        match envelope {
            Envelope::Command {
                request: Some(request),
                reply,
                ..
            } => {
                let outcome = StoredOutcome::Accepted(envelope::encode(reply)?);
                self.requests
                    .remember(request, stamp.lsn, stamp.at_ms, outcome);
            }
            Envelope::Refusal { request, error } => {
                let outcome = StoredOutcome::Refused(envelope::encode(error)?);
                self.requests
                    .remember(request, stamp.lsn, stamp.at_ms, outcome);
            }
            Envelope::Command { request: None, .. } | Envelope::Timers { .. } => {
                self.requests.evict(stamp.at_ms);
            }
        }
        self.lsn = stamp.lsn;
        self.at_ms = stamp.at_ms;
        Ok(())
    }

    /// Decodes and applies one record read from the log.
    ///
    /// # Errors
    /// The payload does not decode as this machine's envelope.
    pub fn apply_record(&mut self, record: &RecordView<'_>) -> Result<(), String> {
        let decoded: EnvelopeOf<M> = envelope::decode(record.payload)
            .map_err(|e| format!("record at LSN {}: {e}", record.lsn))?;
        if decoded.record_type() != record.record_type {
            return Err(format!(
                "record at LSN {} has type {} but holds a type {} payload",
                record.lsn,
                record.record_type,
                decoded.record_type()
            ));
        }
        self.apply_envelope(
            &decoded,
            Stamp {
                lsn: record.lsn,
                at_ms: record.timestamp_ms,
            },
        )
    }

    /// A frozen copy for a snapshot.
    #[must_use]
    pub fn freeze(&self) -> FrozenCore<M> {
        FrozenCore {
            machine: self.machine.freeze(),
            requests: self.requests.clone(),
            lsn: self.lsn,
            at_ms: self.at_ms,
        }
    }

    /// The hash of the canonical encoding of the whole state.
    ///
    /// # Errors
    /// Encoding failure.
    pub fn state_hash(&self) -> Result<[u8; 32], String> {
        Ok(hash_state(&self.freeze().encode()?))
    }
}
