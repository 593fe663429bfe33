//! Cairn's engine: it runs pure state machines over the durable log.
//!
//! Each shard is one sequencer thread that owns its state: commands queue to it (bounded), it
//! decides them in batches, applies the resulting events in memory at once, hands the batch to
//! the group-commit writer, and releases every reply only when the batch is durable. Replay goes
//! through the same apply path as live traffic, so a rebuilt state is the live state, and a
//! state hash over a canonical encoding proves it.
//!
//! - [`StateMachine`]: the contract a domain implements (pure: no I/O, no clock, no threads);
//! - [`Shard`]: the sequencer, its writer and snapshotter, and the handle callers use;
//! - [`Engine`]: N shards over one data directory, keys routed by a stable hash;
//! - [`Subscription`]: follow a shard's durable records from any LSN;
//! - [`offline`]: replay a shard to any past LSN without running it.

#![deny(missing_docs)]

pub mod cairn;
pub mod clock;
mod config;
pub mod core;
pub mod dedup;
mod durable;
mod engine;
pub mod envelope;
mod error;
pub mod homes;
mod machine;
pub mod metrics;
pub mod offline;
mod shard;
mod subscribe;
pub mod txn;
pub mod txn_run;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::ShardConfig;
pub use dedup::{DedupLimits, RequestKey};
pub use engine::{DataDirMeta, Engine, EngineConfig, lock_data_dir, read_meta, shard_dir};
pub use error::{EngineError, OpenError};
pub use machine::{Decision, Stamp, StateMachine};
pub use shard::{Committed, Outcome, Recovery, ReplyFn, Shard, ShardPaths, SnapshotInfo};
pub use subscribe::{LiveRecord, Subscription, SubscriptionError};
