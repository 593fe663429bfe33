//! Vocabulary shared by every Cairn crate: log positions, shard ids, limits and stable error codes.
//!
//! This crate has no behaviour of its own and depends on nothing but `serde`, so that the log and
//! the three state machines can share names without depending on each other (see `STYLE.md`).

#![deny(missing_docs)]

pub mod error_code;
pub mod limits;

pub use error_code::ErrorCode;

use serde::{Deserialize, Serialize};

/// A log sequence number: the dense, 1-based position of a record in one shard's log.
///
/// `Lsn(0)` means "before the first record" (an empty log, or "from the beginning").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The position before any record.
    pub const ZERO: Lsn = Lsn(0);

    /// The position right after this one.
    #[must_use]
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The index of a shard, `0..shard_count`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ShardId(pub u16);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A multi-shard transaction: the shard that coordinates it and the number that shard gave it.
///
/// Participants keep it with what they hold, so that after a crash each can ask its coordinator
/// for the decision; it is unique within a data directory because the coordinator's number is
/// logged before any participant sees it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TxnId {
    /// The coordinating shard.
    pub coordinator: ShardId,
    /// The coordinator's number for it (dense, from 1).
    pub number: u64,
}

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-t{}", self.coordinator.0, self.number)
    }
}

/// Routes a key to a shard with a stable hash (FNV-1a, 64-bit).
///
/// Stable means: the same key and shard count give the same shard on every machine, build and
/// version, because the shard of a key is part of the data directory's meaning.
#[must_use]
pub fn shard_for_key(key: &[u8], shard_count: u16) -> ShardId {
    assert!(shard_count > 0, "shard_count must be positive");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Truncation is intended: the modulus is below u16::MAX.
    ShardId((hash % u64::from(shard_count)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_routing_is_stable_across_versions() {
        // These values are part of the on-disk meaning of a data directory: never change them.
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published reference value).
        assert_eq!(
            shard_for_key(b"a", 1000),
            ShardId((0xaf63_dc4c_8601_ec8cu64 % 1000) as u16)
        );
        assert_eq!(
            shard_for_key(b"", 7),
            ShardId((0xcbf2_9ce4_8422_2325u64 % 7) as u16)
        );
        assert_eq!(shard_for_key(b"anything", 1), ShardId(0));
    }

    #[test]
    fn shard_routing_spreads_keys() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let key = format!("sku-{i}");
            counts[usize::from(shard_for_key(key.as_bytes(), 8).0)] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "uneven spread: {counts:?}");
        }
    }
}
