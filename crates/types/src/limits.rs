//! Limits on everything, as named constants (TIGER_STYLE: put a limit on everything).
//!
//! Each limit that an operator may change has a config name in `docs/OPERATIONS.md`; these are the
//! defaults and the hard ceilings.

/// Largest payload of one log record, in bytes. A command whose events do not fit is refused.
pub const RECORD_PAYLOAD_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// Default size at which a log segment is closed and a new one started.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Smallest allowed segment size. A record larger than the segment size gets a segment of its
/// own, larger than the limit.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;

/// Largest allowed segment size.
pub const SEGMENT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// Default bound of the group-commit queue, in submissions.
pub const COMMIT_QUEUE_DEPTH_DEFAULT: usize = 16 * 1024;

/// Most records written by one group commit (one `write` and one `fdatasync`).
pub const COMMIT_BATCH_RECORDS_MAX: usize = 8 * 1024;

/// Most bytes written by one group commit.
pub const COMMIT_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Default bound of a shard's command queue.
pub const COMMAND_QUEUE_DEPTH_DEFAULT: usize = 64 * 1024;

/// Most commands a sequencer decides in one batch.
pub const SEQUENCER_BATCH_COMMANDS_MAX: usize = 4 * 1024;

/// Longest time a sequencer stays idle before it stamps a tick, in milliseconds.
pub const SEQUENCER_TICK_INTERVAL_MS: u64 = 100;

/// Default number of snapshots kept per shard.
pub const SNAPSHOTS_KEPT_DEFAULT: usize = 3;

/// Largest snapshot accepted on restore, uncompressed, in bytes.
pub const SNAPSHOT_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// Default bound of a subscription's buffer, in records.
pub const SUBSCRIPTION_BUFFER_RECORDS_DEFAULT: usize = 4 * 1024;

/// Most shards a data directory may have.
pub const SHARD_COUNT_MAX: u16 = 256;

const _: () = assert!(SEGMENT_BYTES_DEFAULT >= RECORD_PAYLOAD_BYTES_MAX as u64 * 2);
const _: () = assert!(COMMIT_BATCH_BYTES_MAX >= RECORD_PAYLOAD_BYTES_MAX as usize);
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
