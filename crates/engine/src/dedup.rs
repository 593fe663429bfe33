//! Remembered outcomes of requests, by `request_id`, so a retry returns the first outcome.
//!
//! The table is part of the shard's state: it is rebuilt by replay and stored in snapshots, and it
//! evicts by log time and count only (never by wall clock), so replay gives the same table.
//! Bounds: `DedupLimits::entries_max` ids and `retention_ms` of log time, whichever is hit first.

use cairn_types::Lsn;
use serde::{Deserialize, Serialize};
// Persistent collections: a snapshot clones the table in O(1) on the sequencer thread and
// encodes it on the snapshotter thread. The map is never iterated (order comes from `order`), so
// its hashing cannot leak into results.
use imbl::{HashMap, Vector};
use std::sync::Arc;

/// A caller's idempotency key: its `request_id` and a fingerprint of the request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestKey {
    /// The caller's id, 1..=128 bytes.
    pub id: String,
    /// Hash of the canonical request body: the same id with another body is a reuse.
    pub fingerprint: [u8; 16],
}

impl RequestKey {
    /// A key whose fingerprint is the BLAKE3 hash of `body` (a canonical encoding of the request).
    #[must_use]
    pub fn new(id: impl Into<String>, body: &[u8]) -> RequestKey {
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&blake3::hash(body).as_bytes()[..16]);
        RequestKey {
            id: id.into(),
            fingerprint,
        }
    }
}

/// How an earlier request ended: the encoded reply or the encoded refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredOutcome {
    /// Accepted: the encoded reply.
    Accepted(Vec<u8>),
    /// Refused: the encoded error.
    Refused(Vec<u8>),
}

/// One remembered request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// The body fingerprint.
    pub fingerprint: [u8; 16],
    /// The record that holds the outcome.
    pub lsn: Lsn,
    /// Log time of that record.
    pub at_ms: u64,
    /// The outcome.
    pub outcome: StoredOutcome,
}

/// Bounds of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupLimits {
    /// Most ids remembered per shard.
    pub entries_max: usize,
    /// How long an id is remembered, in log milliseconds.
    pub retention_ms: u64,
}

impl Default for DedupLimits {
    fn default() -> Self {
        DedupLimits {
            entries_max: 1_000_000,
            retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// The table. `order` lists ids by LSN, which is also insertion order.
#[derive(Clone, Debug, Default)]
pub struct DedupTable {
    limits: DedupLimits,
    by_id: HashMap<String, Arc<Remembered>>,
    order: Vector<String>,
}

/// What the table says about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Never seen (or forgotten): decide it.
    New,
    /// Seen with the same body: return this outcome.
    Repeat(&'a Remembered),
    /// Seen with another body.
    Reused,
}

impl DedupTable {
    /// An empty table with these bounds.
    #[must_use]
    pub fn new(limits: DedupLimits) -> DedupTable {
        DedupTable {
            limits,
            by_id: HashMap::new(),
            order: Vector::new(),
        }
    }

    /// Ids remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Looks a request up.
    #[must_use]
    pub fn lookup(&self, key: &RequestKey) -> Lookup<'_> {
        match self.by_id.get(&key.id) {
            None => Lookup::New,
            Some(found) if found.fingerprint == key.fingerprint => Lookup::Repeat(found),
            Some(_) => Lookup::Reused,
        }
    }

    /// Remembers an outcome, then forgets what is past the bounds (by log time and count).
    pub fn remember(&mut self, key: &RequestKey, lsn: Lsn, at_ms: u64, outcome: StoredOutcome) {
        let entry = Remembered {
            fingerprint: key.fingerprint,
            lsn,
            at_ms,
            outcome,
        };
        if self.by_id.insert(key.id.clone(), Arc::new(entry)).is_none() {
            self.order.push_back(key.id.clone());
        }
        self.evict(at_ms);
    }

    /// Forgets ids older than the retention at log time `now_ms`, and the oldest past the count.
    pub fn evict(&mut self, now_ms: u64) {
        while let Some(oldest) = self.order.front() {
            let expired = self
                .by_id
                .get(oldest)
                .is_none_or(|entry| entry.at_ms.saturating_add(self.limits.retention_ms) < now_ms);
            if !expired && self.order.len() <= self.limits.entries_max {
                break;
            }
            if let Some(id) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }

    /// Every remembered id with the log time of its outcome, oldest first.
    #[must_use]
    pub fn ids(&self) -> Vec<(String, u64)> {
        self.order
            .iter()
            .filter_map(|id| self.by_id.get(id).map(|entry| (id.clone(), entry.at_ms)))
            .collect()
    }

    /// The canonical encoding (ids in LSN order), for snapshots and the state hash.
    #[must_use]
    pub fn to_entries(&self) -> (DedupLimits, Vec<(String, Remembered)>) {
        let entries = self
            .order
            .iter()
            .filter_map(|id| {
                self.by_id
                    .get(id)
                    .map(|entry| (id.clone(), Remembered::clone(entry)))
            })
            .collect();
        (self.limits, entries)
    }

    /// Rebuilds a table from [`DedupTable::to_entries`].
    #[must_use]
    pub fn from_entries(limits: DedupLimits, entries: Vec<(String, Remembered)>) -> DedupTable {
        let mut table = DedupTable::new(limits);
        for (id, entry) in entries {
            table.order.push_back(id.clone());
            table.by_id.insert(id, Arc::new(entry));
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, body: &str) -> RequestKey {
        RequestKey::new(id, body.as_bytes())
    }

    #[test]
    fn same_id_same_body_repeats_and_other_body_is_reuse() {
        let mut table = DedupTable::new(DedupLimits::default());
        table.remember(
            &key("r1", "a"),
            Lsn(1),
            10,
            StoredOutcome::Accepted(vec![1]),
        );
        assert!(matches!(table.lookup(&key("r1", "a")), Lookup::Repeat(r) if r.lsn == Lsn(1)));
        assert_eq!(table.lookup(&key("r1", "b")), Lookup::Reused);
        assert_eq!(table.lookup(&key("r2", "a")), Lookup::New);
    }

    #[test]
    fn ids_are_forgotten_by_count_and_by_log_time() {
        let mut table = DedupTable::new(DedupLimits {
            entries_max: 2,
            retention_ms: 100,
        });
        table.remember(&key("a", ""), Lsn(1), 0, StoredOutcome::Accepted(vec![]));
        table.remember(&key("b", ""), Lsn(2), 50, StoredOutcome::Accepted(vec![]));
        table.remember(&key("c", ""), Lsn(3), 60, StoredOutcome::Accepted(vec![]));
        assert_eq!(table.lookup(&key("a", "")), Lookup::New, "count bound");
        assert_eq!(table.len(), 2);
        table.evict(155);
        assert_eq!(table.lookup(&key("b", "")), Lookup::New, "retention bound");
        assert!(matches!(table.lookup(&key("c", "")), Lookup::Repeat(_)));
    }

    #[test]
    fn entries_round_trip_in_lsn_order() {
        let mut table = DedupTable::new(DedupLimits::default());
        for (i, id) in ["z", "a", "m"].iter().enumerate() {
            table.remember(
                &key(id, ""),
                Lsn(i as u64 + 1),
                0,
                StoredOutcome::Refused(vec![]),
            );
        }
        let (limits, entries) = table.to_entries();
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["z", "a", "m"]);
        let rebuilt = DedupTable::from_entries(limits, entries.clone());
        assert_eq!(rebuilt.to_entries().1, entries);
    }
}
