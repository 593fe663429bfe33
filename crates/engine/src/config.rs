//! A shard's configuration. Every bound has a default in `cairn_types::limits`.

use crate::clock::{Clock, SystemClock};
use crate::dedup::DedupLimits;
use cairn_log::{CommitOptions, LogOptions};
use cairn_types::limits;
use std::sync::Arc;

/// How a shard runs.
#[derive(Clone)]
pub struct ShardConfig {
    /// Segment size and other log options.
    pub log: LogOptions,
    /// Durability mode and commit queue bound.
    pub commit: CommitOptions,
    /// Bound of the command queue; a full queue is `overloaded`.
    pub command_queue_depth_max: usize,
    /// Most commands decided in one batch.
    pub batch_commands_max: usize,
    /// Most batches written but not yet durable (memory ahead of disk).
    pub in_flight_batches_max: usize,
    /// Take a snapshot after this many records (0: only on demand).
    pub snapshot_every_records: u64,
    /// Snapshots kept per shard.
    pub snapshots_kept: usize,
    /// Bounds of the request-id table.
    pub dedup: DedupLimits,
    /// Records a live subscriber may fall behind before it is told to catch up from the files.
    pub subscription_buffer_records: usize,
    /// Most timer events turned into records per batch.
    pub timers_per_batch_max: usize,
    /// Where the sequencer gets time.
    pub clock: Arc<dyn Clock>,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            log: LogOptions::default(),
            commit: CommitOptions::default(),
            command_queue_depth_max: limits::COMMAND_QUEUE_DEPTH_DEFAULT,
            batch_commands_max: limits::SEQUENCER_BATCH_COMMANDS_MAX,
            in_flight_batches_max: 64,
            snapshot_every_records: 1_000_000,
            snapshots_kept: limits::SNAPSHOTS_KEPT_DEFAULT,
            dedup: DedupLimits::default(),
            subscription_buffer_records: limits::SUBSCRIPTION_BUFFER_RECORDS_DEFAULT,
            timers_per_batch_max: 1024,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ShardConfig {
    /// Checks every bound.
    ///
    /// # Errors
    /// A message naming the option that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate().map_err(|e| e.to_string())?;
        let checks: [(&str, usize, usize, usize); 5] = [
            (
                "command_queue_depth_max",
                self.command_queue_depth_max,
                1,
                1 << 24,
            ),
            (
                "batch_commands_max",
                self.batch_commands_max,
                1,
                limits::COMMIT_BATCH_RECORDS_MAX,
            ),
            (
                "in_flight_batches_max",
                self.in_flight_batches_max,
                1,
                self.commit.queue_depth_max.max(1),
            ),
            ("snapshots_kept", self.snapshots_kept, 1, 1000),
            (
                "subscription_buffer_records",
                self.subscription_buffer_records,
                16,
                1 << 24,
            ),
        ];
        for (name, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(format!("{name} must be in {min}..={max}, got {value}"));
            }
        }
        if self.timers_per_batch_max == 0 {
            return Err("timers_per_batch_max must be positive".into());
        }
        Ok(())
    }
}
