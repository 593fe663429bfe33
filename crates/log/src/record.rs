//! Record framing: how one record is laid out in a segment, and how it is checked.
//!
//! ```text
//! offset  size  field
//!      0     4  payload_len   u32 LE
//!      4     4  crc32c        u32 LE, over bytes 0..4 and 8..end
//!      8     8  lsn           u64 LE
//!     16     8  timestamp_ms  u64 LE
//!     24     8  synced_lsn    u64 LE: every LSN up to this was durable before this record was written
//!     32     2  record_type   u16 LE
//!     34     n  payload
//!   34+n    16  chain         first 16 bytes of BLAKE3(prev_chain || bytes 0..4 || bytes 8..34+n)
//! ```
//!
//! The CRC catches torn and flipped bytes cheaply; the chain makes any rewrite of history
//! (a changed, dropped, reordered or inserted record) detectable from any later record on.
//! `synced_lsn` lets recovery tell a torn write (damage after the last sync, which a crash may
//! leave in any order of sectors) from damage to history that had been made durable.

use cairn_types::Lsn;
use cairn_types::limits::RECORD_PAYLOAD_BYTES_MAX;

/// Bytes before the payload.
pub const RECORD_HEADER_BYTES: usize = 34;
/// Bytes of the chain hash after the payload.
pub const CHAIN_BYTES: usize = 16;
/// Bytes a record adds around its payload.
pub const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_BYTES + CHAIN_BYTES;

/// The hash that links a record to all records before it.
pub type ChainHash = [u8; CHAIN_BYTES];

/// The chain value before the first record of a log.
pub const GENESIS_CHAIN: ChainHash = [0u8; CHAIN_BYTES];

/// One record to append: the log assigns its LSN and chain.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Time stamped by the sequencer, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Opaque to the log: the engine's tag for what the payload holds.
    pub record_type: u16,
    /// Opaque bytes, at most `RECORD_PAYLOAD_BYTES_MAX`.
    pub payload: &'a [u8],
}

/// A record as read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its position.
    pub lsn: Lsn,
    /// Time stamped at append.
    pub timestamp_ms: u64,
    /// The engine's tag.
    pub record_type: u16,
    /// The payload.
    pub payload: Vec<u8>,
    /// Its chain hash.
    pub chain: ChainHash,
}

/// A decoded record that borrows its payload from a read buffer.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Its position.
    pub lsn: Lsn,
    /// Time stamped at append.
    pub timestamp_ms: u64,
    /// Every LSN up to this one was durable before this record was written.
    pub synced_lsn: Lsn,
    /// The engine's tag.
    pub record_type: u16,
    /// The payload.
    pub payload: &'a [u8],
    /// Its chain hash.
    pub chain: ChainHash,
    /// The bytes the chain hash covers (everything but the CRC and the chain itself).
    hashed_head: &'a [u8],
    hashed_body: &'a [u8],
}

impl RecordView<'_> {
    /// An owned copy.
    #[must_use]
    pub fn to_record(&self) -> Record {
        Record {
            lsn: self.lsn,
            timestamp_ms: self.timestamp_ms,
            record_type: self.record_type,
            payload: self.payload.to_vec(),
            chain: self.chain,
        }
    }

    /// The chain value this record must carry if `prev` is the chain of the record before it.
    #[must_use]
    pub fn expected_chain(&self, prev: &ChainHash) -> ChainHash {
        chain_of(prev, self.hashed_head, self.hashed_body)
    }
}

/// Why bytes do not decode as a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeFault {
    /// The buffer ends before the record does; `needed` bytes are required in all.
    Incomplete {
        /// Total bytes the record would take, when the length field was readable.
        needed: usize,
    },
    /// The length field is larger than any record may be.
    BadLength,
    /// The checksum does not match.
    BadCrc,
}

fn chain_of(prev: &ChainHash, head: &[u8], body: &[u8]) -> ChainHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    hasher.update(head);
    hasher.update(body);
    let mut chain = [0u8; CHAIN_BYTES];
    chain.copy_from_slice(&hasher.finalize().as_bytes()[..CHAIN_BYTES]);
    chain
}

/// Total encoded size of a record with a payload of `payload_len` bytes.
#[must_use]
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_OVERHEAD_BYTES + payload_len
}

/// Appends the encoding of one record to `out` and returns its chain hash.
///
/// # Panics
/// If the payload is larger than `RECORD_PAYLOAD_BYTES_MAX`: callers check that bound first and
/// refuse the input with an error, so reaching it here is a bug.
pub fn encode_into(
    out: &mut Vec<u8>,
    lsn: Lsn,
    synced_lsn: Lsn,
    entry: &Entry<'_>,
    prev: &ChainHash,
) -> ChainHash {
    let payload_len = u32::try_from(entry.payload.len()).unwrap_or(u32::MAX);
    assert!(
        payload_len <= RECORD_PAYLOAD_BYTES_MAX,
        "payload over the limit reached the log"
    );
    assert!(lsn > Lsn::ZERO, "LSNs start at 1");
    assert!(
        synced_lsn < lsn,
        "a record cannot be durable before it is written"
    );
    let start = out.len();
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&lsn.0.to_le_bytes());
    out.extend_from_slice(&entry.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&synced_lsn.0.to_le_bytes());
    out.extend_from_slice(&entry.record_type.to_le_bytes());
    out.extend_from_slice(entry.payload);
    let chain = chain_of(prev, &out[start..start + 4], &out[start + 8..]);
    out.extend_from_slice(&chain);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    chain
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Decodes the record at the start of `buf`, checking its length and CRC (not its chain, which
/// needs the record before it). Returns the view and the record's encoded length.
///
/// # Errors
/// A [`DecodeFault`] when the bytes are not a whole, intact record.
pub fn decode(buf: &[u8]) -> Result<(RecordView<'_>, usize), DecodeFault> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(DecodeFault::Incomplete {
            needed: RECORD_OVERHEAD_BYTES,
        });
    }
    let payload_len = u32_at(buf, 0);
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeFault::BadLength);
    }
    let payload_len = payload_len as usize;
    let total = encoded_len(payload_len);
    if buf.len() < total {
        return Err(DecodeFault::Incomplete { needed: total });
    }
    let crc_stored = u32_at(buf, 4);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), &buf[8..total]);
    if crc != crc_stored {
        return Err(DecodeFault::BadCrc);
    }
    let body_end = RECORD_HEADER_BYTES + payload_len;
    let mut chain = [0u8; CHAIN_BYTES];
    chain.copy_from_slice(&buf[body_end..total]);
    let record_type = u16::from_le_bytes([buf[32], buf[33]]);
    let view = RecordView {
        lsn: Lsn(u64_at(buf, 8)),
        timestamp_ms: u64_at(buf, 16),
        synced_lsn: Lsn(u64_at(buf, 24)),
        record_type,
        payload: &buf[RECORD_HEADER_BYTES..body_end],
        chain,
        hashed_head: &buf[0..4],
        hashed_body: &buf[8..body_end],
    };
    Ok((view, total))
}

/// Whether `buf` starts with an intact record that proves `lsn` had been durable: its own LSN is
/// later and its `synced_lsn` reaches `lsn`. Damage to such an `lsn` is corruption of acknowledged
/// history, never a torn write.
#[must_use]
pub fn proves_durable(buf: &[u8], lsn: Lsn) -> bool {
    if buf.len() < RECORD_HEADER_BYTES || u64_at(buf, 8) <= lsn.0 || u64_at(buf, 24) < lsn.0 {
        return false;
    }
    decode(buf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Entry<'_> {
        Entry {
            timestamp_ms: 1_700_000_000_000,
            record_type: 7,
            payload,
        }
    }

    #[test]
    fn a_record_round_trips_and_links_to_its_predecessor() {
        let mut out = Vec::new();
        let chain1 = encode_into(&mut out, Lsn(1), Lsn(0), &entry(b"hello"), &GENESIS_CHAIN);
        let first_len = out.len();
        let chain2 = encode_into(&mut out, Lsn(2), Lsn(1), &entry(b""), &chain1);
        let (view1, len1) = decode(&out).expect("first decodes");
        assert_eq!(len1, first_len);
        assert_eq!(view1.lsn, Lsn(1));
        assert_eq!(view1.payload, b"hello");
        assert_eq!(view1.record_type, 7);
        assert_eq!(view1.expected_chain(&GENESIS_CHAIN), chain1);
        let (view2, _) = decode(&out[len1..]).expect("second decodes");
        assert_eq!(view2.chain, chain2);
        assert_eq!(view2.expected_chain(&chain1), chain2);
        assert_eq!(view2.synced_lsn, Lsn(1));
        assert!(proves_durable(&out[len1..], Lsn(1)));
        assert!(!proves_durable(&out[len1..], Lsn(2)));
        assert_ne!(view2.expected_chain(&GENESIS_CHAIN), chain2);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut out = Vec::new();
        encode_into(
            &mut out,
            Lsn(9),
            Lsn(3),
            &entry(b"payload bytes"),
            &GENESIS_CHAIN,
        );
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut damaged = out.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode(&damaged).is_err(),
                    "flip at byte {byte} bit {bit} went unseen"
                );
            }
        }
    }

    #[test]
    fn a_short_buffer_is_incomplete_not_corrupt() {
        let mut out = Vec::new();
        encode_into(&mut out, Lsn(1), Lsn(0), &entry(b"abc"), &GENESIS_CHAIN);
        for cut in 0..out.len() {
            assert!(matches!(
                decode(&out[..cut]),
                Err(DecodeFault::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn an_absurd_length_is_refused_before_reading() {
        let mut buf = vec![0u8; 64];
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&buf).err(), Some(DecodeFault::BadLength));
    }
}
