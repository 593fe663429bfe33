//! Commands (what callers ask), events (facts in the log) and replies.

use crate::gray::GrayRule;
use crate::guardrail::{Guardrails, MaxChangePct, NumericBound, Violation};
use crate::json::JsonText;
use crate::state::ReleaseState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Who asked, for the audit trail (the same fields as the inventory's actor; the crates do not
/// depend on each other).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The token name that made the request.
    pub name: String,
    /// The caller's `request_id`, when it gave one.
    pub request_id: Option<String>,
}

/// One change of a draft, as a caller gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The dataset.
    pub dataset: String,
    /// The key.
    pub key: String,
    /// The new value; `None` (JSON `null`) deletes the key.
    pub value: Option<Value>,
}

/// One change as logged: the value is fixed JSON text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFact {
    /// The dataset.
    pub dataset: Arc<str>,
    /// The key.
    pub key: Arc<str>,
    /// The new value; `None` deletes the key.
    pub value: Option<JsonText>,
}

/// Guardrails as a caller gives them (the `guardrails` object of `POST /v1/datasets`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsSpec {
    /// A JSON Schema every value must match.
    #[serde(default)]
    pub json_schema: Option<Value>,
    /// Integer bounds on fields.
    #[serde(default)]
    pub numeric_bounds: Vec<NumericBound>,
    /// Largest relative changes of fields against the live value.
    #[serde(default)]
    pub max_change_pct: Vec<MaxChangePct>,
    /// Most keys of the dataset one release may change.
    #[serde(default)]
    pub max_changed_keys: Option<u64>,
}

/// What callers ask the publishing domain to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishingCommand {
    /// Creates an empty dataset (409 `already_exists` when the name is taken).
    CreateDataset {
        /// The name.
        name: String,
        /// Its guardrails.
        guardrails: Option<GuardrailsSpec>,
        /// A JSON Schema for its values: shorthand for `guardrails.json_schema` (giving both is
        /// `invalid_argument`).
        json_schema: Option<Value>,
    },
    /// Replaces a dataset's guardrails (`None` removes them). Releases already created keep
    /// their checks; a scheduled one is checked against the new guardrails at its go-live.
    SetGuardrails {
        /// The dataset.
        dataset: String,
        /// The new guardrails.
        guardrails: Option<GuardrailsSpec>,
    },
    /// Creates a draft with its first changes (a later change of the same key replaces an
    /// earlier one).
    CreateDraft {
        /// What the draft is for; becomes the release's note.
        note: String,
        /// Changes (may be empty when the draft is filled by appends).
        changes: Vec<Change>,
    },
    /// Adds changes to an unreleased draft, so a draft too large for one log record is built in
    /// chunks of at most [`crate::DRAFT_CHUNK_CHANGES_MAX`] changes and
    /// [`crate::DRAFT_CHUNK_BYTES_MAX`] bytes.
    AppendToDraft {
        /// The draft.
        draft_id: u64,
        /// More changes.
        changes: Vec<Change>,
    },
    /// Forgets an unreleased draft.
    DiscardDraft {
        /// The draft.
        draft_id: u64,
    },
    /// Releases a draft: live now, scheduled and/or gray.
    CreateRelease {
        /// The draft (released at most once).
        draft_id: u64,
        /// Gray rules: served only to matching readers until promoted.
        gray: Option<GrayRule>,
        /// Goes live (or gray) at this log time; in the past or now means at once.
        go_live_at_ms: Option<u64>,
        /// Reverts at this log time: the datasets go back to their content before the release.
        revert_at_ms: Option<u64>,
        /// Releases despite guardrail violations (the server allows it to admins only).
        force_reason: Option<String>,
    },
    /// Makes a gray or scheduled release live for everyone now.
    Promote {
        /// The release.
        release_id: u64,
    },
    /// Cancels a gray or scheduled release.
    Abort {
        /// The release.
        release_id: u64,
    },
    /// Restores every dataset that release `to_release_id` touched to its content right after it
    /// went live for everyone, as one new release.
    Rollback {
        /// The release to go back to.
        to_release_id: u64,
        /// Why.
        reason: String,
    },
    /// Keeps a release's content whatever the retention (or lets it go again).
    Pin {
        /// The release.
        release_id: u64,
        /// `true` pins, `false` unpins.
        pinned: bool,
    },
    /// Sets how many releases keep their content for rollback.
    SetRetention {
        /// In `1..=RELEASES_RETAINED_MAX`.
        releases_retained_max: u64,
    },
}

/// Facts in the log. Applying one is mechanical: every decision was taken before it was logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishingEvent {
    /// A dataset was created.
    DatasetCreated {
        /// The name.
        name: Arc<str>,
        /// Its guardrails.
        guardrails: Guardrails,
        /// Who.
        actor: Actor,
    },
    /// A dataset's guardrails were replaced.
    GuardrailsSet {
        /// The dataset.
        dataset: Arc<str>,
        /// The new guardrails.
        guardrails: Guardrails,
        /// Who.
        actor: Actor,
    },
    /// A draft was created.
    DraftCreated {
        /// The new draft.
        draft_id: u64,
        /// Its note.
        note: String,
        /// Its first changes.
        changes: Vec<ChangeFact>,
        /// Who.
        actor: Actor,
    },
    /// Changes were added to a draft.
    DraftAppended {
        /// The draft.
        draft_id: u64,
        /// The changes.
        changes: Vec<ChangeFact>,
        /// Who.
        actor: Actor,
    },
    /// A draft was discarded.
    DraftDiscarded {
        /// The draft.
        draft_id: u64,
        /// Who.
        actor: Actor,
    },
    /// A release was created from a draft, in `state` (`scheduled`, `gray` or `live`).
    ReleaseCreated {
        /// The new release.
        release_id: u64,
        /// Its draft.
        draft_id: u64,
        /// Its first state.
        state: ReleaseState,
        /// Its gray rule, normalized.
        gray: Option<GrayRule>,
        /// Scheduled go-live.
        go_live_at_ms: Option<u64>,
        /// Scheduled revert.
        revert_at_ms: Option<u64>,
        /// The reason given to override guardrails.
        force_reason: Option<String>,
        /// Violations overridden by `force_reason` (the first ones).
        violations: Vec<Violation>,
        /// How many violations were overridden.
        violations_total: u64,
        /// Who.
        actor: Actor,
    },
    /// A gray or scheduled release was made live for everyone.
    ReleasePromoted {
        /// The release.
        release_id: u64,
        /// Who.
        actor: Actor,
    },
    /// A gray or scheduled release was cancelled.
    ReleaseAborted {
        /// The release.
        release_id: u64,
        /// Who.
        actor: Actor,
    },
    /// A scheduled release reached its go-live time: gray if it has a rule, else live.
    ReleaseWentLive {
        /// The release.
        release_id: u64,
    },
    /// A scheduled release failed its guardrails at go-live and was aborted.
    ReleaseGoLiveRefused {
        /// The release.
        release_id: u64,
        /// The first violations.
        violations: Vec<Violation>,
        /// How many.
        violations_total: u64,
    },
    /// A release reached its revert time. If it was live, `restore_release_id` is the new
    /// release that restores its datasets' content from before it; if it was still gray, the
    /// gray simply ends.
    ReleaseReverted {
        /// The release reverted.
        release_id: u64,
        /// The new release, when content was restored.
        restore_release_id: Option<u64>,
    },
    /// Datasets were rolled back to a release's content, as the new release `release_id`.
    RolledBack {
        /// The new release.
        release_id: u64,
        /// The release whose content was restored.
        to_release_id: u64,
        /// Why.
        reason: String,
        /// Who.
        actor: Actor,
    },
    /// A release was pinned or unpinned.
    ReleasePinned {
        /// The release.
        release_id: u64,
        /// The new setting.
        pinned: bool,
        /// Who.
        actor: Actor,
    },
    /// The retention changed.
    RetentionSet {
        /// Releases whose content is kept.
        releases_retained_max: u64,
        /// Who.
        actor: Actor,
    },
}

/// The answer to an accepted command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishingReply {
    /// A dataset was created.
    Dataset {
        /// Its name.
        name: String,
    },
    /// A draft was created or extended.
    Draft {
        /// The draft.
        draft_id: u64,
        /// Distinct changes it now holds.
        changes_total: u64,
    },
    /// A draft was discarded.
    DraftDiscarded {
        /// The draft.
        draft_id: u64,
    },
    /// A release was created, promoted, aborted, or made by a rollback.
    Release {
        /// The release (for a rollback: the new release that restores).
        release_id: u64,
        /// Its state after the command.
        state: ReleaseState,
    },
    /// A release was pinned or unpinned.
    Pinned {
        /// The release.
        release_id: u64,
        /// The new setting.
        pinned: bool,
    },
    /// The retention changed.
    Retention {
        /// Releases whose content is kept.
        releases_retained_max: u64,
    },
}
