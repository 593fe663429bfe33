//! Cairn's publishing state machine: versioned datasets, released atomically.
//!
//! A **dataset** is a named map from key to a JSON value, with optional **guardrails** (a JSON
//! Schema for its values, integer bounds on fields, the largest relative change of a field
//! against the live value, the largest number of changed keys). A **draft** collects changes
//! across one or many datasets (built in chunks with [`PublishingCommand::AppendToDraft`] when it
//! is too large for one log record). A **release** turns a draft into one atomic step across
//! every dataset it touches: it is live for everyone at once, or first **scheduled** (goes live at
//! a log time) and/or **gray** (served only to the users its [`GrayRule`] matches) until it is
//! promoted or aborted. A release can be **reverted** at a log time, and the publisher can
//! **roll back** to any retained release that went live for everyone.
//!
//! # One shard
//! The whole publishing domain lives in one shard (shard 0): a release across several datasets is
//! one command, one log record and one `apply`, so it is atomic without two-phase commit, and a
//! read of a [`View`] never sees part of a release.
//!
//! # Versions cost what they change
//! A dataset's content is a persistent ordered map (`imbl::OrdMap`). A release clones the live map
//! (O(1)) and inserts its changes (O(changes * log n)); every retained version shares the
//! untouched nodes with its neighbours. Rollback and revert install an earlier map: a pointer
//! switch. Which contents are kept is bounded ([`RELEASES_RETAINED_DEFAULT`], changed by a logged
//! [`PublishingCommand::SetRetention`]); pinned releases and the releases live on some dataset
//! are never dropped. The snapshot encoding writes each dataset's versions as a chain of diffs
//! (computed with `OrdMap::diff`, which skips shared nodes), so it too costs what changed.
//!
//! # Releases, rollback and revert
//! At most one release is *in progress* per dataset: scheduled, gray, or live with a pending
//! revert (another release touching the dataset is refused with `release_in_progress`), so the
//! content a gray or scheduled release was built on cannot move under it. A rollback to release
//! R installs, as one new release, the content every dataset R touched had right after R went
//! live for everyone; later releases that touched any of those datasets become `rolled_back`
//! (a release that also touched other datasets keeps its content there) and gray or scheduled
//! ones there are cancelled (`aborted`). A revert does the same with the content from before
//! the reverted release. A restoring release owns every key of the datasets it restores, so the
//! releases it replaces there become `superseded` (or `rolled_back`). Guardrails are not applied
//! to a rollback or revert: they restore content that was live before. A release that only
//! deleted keys owns none and stays `live` until a rollback or revert on its datasets.
//!
//! # Time and timers
//! The crate is pure: no clock, files, sockets or threads. [`Publishing::decide`] turns a command
//! into events or a refusal without changing anything; [`Publishing::apply`] applies a logged
//! event and never fails; [`Publishing::due`] yields go-live and revert events whose log time
//! has come, only while the release is still in the state that needs them (so an event applied
//! twice, for example after a restart, is a no-op the second time).
//!
//! # Determinism
//! Ordered maps only; values are kept as the JSON text fixed when the change was decided (the
//! event carries that text), so replay never re-serializes. Gray buckets use BLAKE3 of
//! `"{release_id}:{user_id}"` (see [`gray_bucket`]). The canonical encoding
//! ([`Publishing::encode`]) depends on contents only: equal states give equal bytes, and a live
//! state and its replay encode identically. JSON Schemas are stored as JSON text and compiled
//! again on restore; compiled validators are never serialized.

#![deny(missing_docs)]

mod apply;
mod canonical;
mod command;
mod decide;
mod error;
mod gray;
mod guardrail;
mod json;
mod state;
pub mod validate;
mod view;

pub use command::{
    Actor, Change, ChangeFact, GuardrailsSpec, PublishingCommand, PublishingEvent, PublishingReply,
};
pub use decide::Decided;
pub use error::PublishingError;
pub use gray::{GrayRule, ReadContext, gray_bucket};
pub use guardrail::{Guardrails, JsonSchema, MaxChangePct, NumericBound, Rule, Violation};
pub use json::JsonText;
pub use state::{
    AuditAction, AuditEntry, DatasetInfo, DiffEntry, DraftDiff, DraftInfo, Publishing, ReleaseInfo,
    ReleaseKind, ReleaseState,
};
pub use view::{ScanPage, Served, View};

use cairn_types::limits::RECORD_PAYLOAD_BYTES_MAX;

/// Most datasets.
pub const DATASETS_MAX: usize = 1024;
/// Most keys live in one dataset.
pub const KEYS_PER_DATASET_MAX: usize = 4_000_000;
/// Most keys live across all datasets.
pub const KEYS_TOTAL_MAX: usize = 16_000_000;
/// Largest value, as compact JSON text, in bytes.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;
/// Most changes (distinct dataset and key) in one draft, over all its chunks.
pub const DRAFT_CHANGES_MAX: usize = 1_000_000;
/// Most changes in one `CreateDraft` or `AppendToDraft` command.
pub const DRAFT_CHUNK_CHANGES_MAX: usize = 100_000;
/// Largest estimated encoding of one `CreateDraft` or `AppendToDraft` (the sum over its changes of
/// dataset, key and value bytes plus [`CHANGE_OVERHEAD_BYTES`]), so that its event fits one log
/// record ([`RECORD_PAYLOAD_BYTES_MAX`]) with room for the envelope and reply.
pub const DRAFT_CHUNK_BYTES_MAX: usize = 3 * 1024 * 1024;
/// Bytes counted per change on top of its strings, for [`DRAFT_CHUNK_BYTES_MAX`].
pub const CHANGE_OVERHEAD_BYTES: usize = 16;
/// Most drafts not yet released.
pub const DRAFTS_OPEN_MAX: usize = 256;
/// Most changes held by all unreleased drafts together.
pub const DRAFT_CHANGES_OPEN_TOTAL_MAX: usize = 4_000_000;
/// Default number of releases whose content is kept for rollback.
pub const RELEASES_RETAINED_DEFAULT: usize = 1000;
/// Largest configurable number of releases whose content is kept.
pub const RELEASES_RETAINED_MAX: usize = 100_000;
/// Most release records (metadata) kept in memory; the oldest finished ones (aborted, rolled
/// back, superseded, not pinned) are forgotten first. The log keeps them all.
pub const RELEASE_RECORDS_MAX: usize = 100_000;
/// Most pinned releases.
pub const PINNED_RELEASES_MAX: usize = 64;
/// Most entries in each list of a gray rule (users, channels, regions, segments).
pub const GRAY_LIST_MAX: usize = 10_000;
/// Most segments in a read context.
pub const READ_SEGMENTS_MAX: usize = 64;
/// Most keys in one batch read (enforced by the server; [`View::get_many`] takes any number).
pub const READ_KEYS_MAX: usize = 10_000;
/// A gray percentage is stored in basis points (0.01 %): 100 % is this many.
pub const PERCENT_BASIS_POINTS_MAX: u16 = 10_000;
/// Furthest a go-live or revert may be scheduled ahead of the command's log time: 366 days.
pub const SCHEDULE_AHEAD_MS_MAX: u64 = 366 * 24 * 60 * 60 * 1000;
/// Longest draft note, in bytes.
pub const NOTE_BYTES_MAX: usize = 1024;
/// Longest reason (rollback reason, force reason), in bytes.
pub const REASON_BYTES_MAX: usize = 512;
/// Longest JSON Schema of a dataset, as compact JSON text, in bytes.
pub const SCHEMA_BYTES_MAX: usize = 64 * 1024;
/// Most `numeric_bounds` plus `max_change_pct` rules of a dataset.
pub const GUARDRAIL_RULES_MAX: usize = 64;
/// Longest JSON Pointer in a guardrail, in bytes.
pub const POINTER_BYTES_MAX: usize = 256;
/// Largest `pct` of a `max_change_pct` rule.
pub const CHANGE_PCT_MAX: u32 = 1_000_000;
/// Largest magnitude of a guardrail bound or checked integer field: 2^53, exact in JSON clients.
pub const INTEGER_MAX: i64 = 1 << 53;
/// Most violations listed in a refusal, a diff or an audit entry (the total is always given).
pub const VIOLATIONS_LISTED_MAX: usize = 100;
/// Longest violation message, in bytes (longer ones are cut at a character boundary).
pub const VIOLATION_MESSAGE_BYTES_MAX: usize = 256;
/// Audit entries kept in memory, oldest dropped first (the log keeps them all).
pub const AUDIT_ENTRIES_MAX: usize = 100_000;

const _: () = assert!(DRAFT_CHUNK_BYTES_MAX + 64 * 1024 <= RECORD_PAYLOAD_BYTES_MAX as usize);
const _: () = assert!(
    VALUE_BYTES_MAX + 2 * validate::IDENTIFIER_BYTES_MAX + CHANGE_OVERHEAD_BYTES
        <= DRAFT_CHUNK_BYTES_MAX
);
const _: () = assert!(DRAFT_CHUNK_CHANGES_MAX <= DRAFT_CHANGES_MAX);
const _: () = assert!(DRAFT_CHANGES_MAX <= KEYS_PER_DATASET_MAX);
const _: () = assert!(KEYS_PER_DATASET_MAX <= KEYS_TOTAL_MAX);
const _: () = assert!(RELEASES_RETAINED_DEFAULT <= RELEASES_RETAINED_MAX);
const _: () = assert!(RELEASES_RETAINED_MAX <= RELEASE_RECORDS_MAX);
const _: () = assert!(
    VIOLATIONS_LISTED_MAX * (VIOLATION_MESSAGE_BYTES_MAX + 2 * validate::IDENTIFIER_BYTES_MAX + 8)
        < 256 * 1024
);
