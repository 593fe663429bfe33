//! The publishing state, its parts, and the queries the server answers from it.

use crate::command::Actor;
use crate::error::PublishingError;
use crate::gray::GrayRule;
use crate::guardrail::{Guardrails, Violation, Violations};
use crate::json::JsonText;
use crate::view::View;
use crate::{AUDIT_ENTRIES_MAX, KEYS_PER_DATASET_MAX, KEYS_TOTAL_MAX, RELEASES_RETAINED_DEFAULT};
// Persistent (structurally shared) collections: cloning the state, a dataset or a version is
// O(1), and a change copies only the paths it touches.
use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Dataset names and keys: shared between drafts, versions and events without copying.
pub(crate) type Key = Arc<str>;
/// A draft's (or pending release's) changes: dataset -> key -> new value (`None` deletes).
pub(crate) type Changes = OrdMap<Key, OrdMap<Key, Option<JsonText>>>;

/// A stored value and the release that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) value: JsonText,
    pub(crate) set_by: u64,
}

/// One version of a dataset's content.
///
/// `floor` is the release that last restored the whole dataset (rollback or revert): it owns
/// every entry set before it, so a restore is a pointer switch and needs no rewrite of entries.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) entries: OrdMap<Key, Entry>,
    pub(crate) floor: u64,
}

impl std::fmt::Debug for Version {
    /// Sizes only: a version may hold millions of entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("keys", &self.entries.len())
            .field("floor", &self.floor)
            .finish()
    }
}

impl Version {
    /// The release that owns `entry` in this version.
    pub(crate) fn owner(&self, entry: &Entry) -> u64 {
        entry.set_by.max(self.floor)
    }

    /// This version with `changes` made by `release_id`: O(changes * log n), sharing the rest.
    pub(crate) fn with_changes(
        &self,
        changes: &OrdMap<Key, Option<JsonText>>,
        release_id: u64,
    ) -> Version {
        self.with_changes_counted(changes, release_id, &mut BTreeMap::new())
    }

    /// As [`Version::with_changes`], adding to `replaced` how many entries of each owner were
    /// replaced or removed (taken from the insert itself: one lookup per key).
    pub(crate) fn with_changes_counted(
        &self,
        changes: &OrdMap<Key, Option<JsonText>>,
        release_id: u64,
        replaced: &mut BTreeMap<u64, u64>,
    ) -> Version {
        let mut entries = self.entries.clone();
        for (key, value) in changes {
            let old = match value {
                Some(value) => entries.insert(
                    key.clone(),
                    Entry {
                        value: value.clone(),
                        set_by: release_id,
                    },
                ),
                None => entries.remove(key),
            };
            if let Some(old) = old {
                *replaced.entry(self.owner(&old)).or_default() += 1;
            }
        }
        Version {
            entries,
            floor: self.floor,
        }
    }
}

/// A gray release as a dataset serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GrayServe {
    pub(crate) release_id: u64,
    pub(crate) rule: Arc<GrayRule>,
    pub(crate) version: Version,
}

/// A dataset: its guardrails, what is live for everyone, and what is in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dataset {
    pub(crate) guardrails: Arc<Guardrails>,
    pub(crate) created_at_ms: u64,
    /// Content live for everyone.
    pub(crate) live: Version,
    /// The release that made `live` (`None` before the first).
    pub(crate) live_release: Option<u64>,
    /// The scheduled, gray, or revert-pending release on this dataset (at most one).
    pub(crate) pending: Option<u64>,
    /// The gray release served to matching readers.
    pub(crate) gray: Option<GrayServe>,
    /// How many keys of `live` each release owns (for `superseded`).
    pub(crate) owned: OrdMap<u64, u64>,
}

/// Where a release is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Waiting for its go-live time.
    Scheduled,
    /// Served to readers its gray rule matches.
    Gray,
    /// Live for everyone.
    Live,
    /// Every key it set has since been replaced (a rollback or revert replaces every key of the
    /// datasets it restores).
    Superseded,
    /// Cancelled before it went live for everyone (by abort, a failed go-live check, or a
    /// rollback on its datasets).
    Aborted,
    /// Undone by a rollback or its revert.
    RolledBack,
}

impl ReleaseState {
    /// The state as the API spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Scheduled => "scheduled",
            ReleaseState::Gray => "gray",
            ReleaseState::Live => "live",
            ReleaseState::Superseded => "superseded",
            ReleaseState::Aborted => "aborted",
            ReleaseState::RolledBack => "rolled_back",
        }
    }

    /// True for states a release never leaves.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReleaseState::Superseded | ReleaseState::Aborted | ReleaseState::RolledBack
        )
    }
}

/// How a release was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    /// From a draft.
    Draft,
    /// By a rollback to another release's content.
    Rollback,
    /// By the scheduled revert of another release.
    Revert,
}

/// A release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) kind: ReleaseKind,
    pub(crate) draft_id: Option<u64>,
    /// For a rollback: the release restored; for a revert: the release reverted.
    pub(crate) restores: Option<u64>,
    pub(crate) state: ReleaseState,
    pub(crate) datasets: Vec<Key>,
    pub(crate) author: Actor,
    pub(crate) note: String,
    pub(crate) created_at_ms: u64,
    pub(crate) go_live_at_ms: Option<u64>,
    pub(crate) revert_at_ms: Option<u64>,
    pub(crate) gray: Option<Arc<GrayRule>>,
    pub(crate) force_reason: Option<String>,
    pub(crate) forced_violations_total: u64,
    pub(crate) changes_total: u64,
    pub(crate) live_at_ms: Option<u64>,
    pub(crate) ended_at_ms: Option<u64>,
    pub(crate) pinned: bool,
    /// The changes, while scheduled or gray.
    pub(crate) changes: Option<Changes>,
    /// Each dataset's content right after it went live for everyone (the rollback target);
    /// emptied when retention drops it.
    pub(crate) after: OrdMap<Key, Version>,
    /// Each dataset's content before it, while its revert is pending.
    pub(crate) before: OrdMap<Key, Version>,
}

impl Release {
    /// True while the release holds its datasets (no other release may start there).
    pub(crate) fn is_pending(&self) -> bool {
        match self.state {
            ReleaseState::Scheduled | ReleaseState::Gray => true,
            ReleaseState::Live => !self.before.is_empty(),
            _ => false,
        }
    }

    pub(crate) fn info(&self, release_id: u64) -> ReleaseInfo {
        ReleaseInfo {
            release_id,
            state: self.state,
            kind: self.kind,
            draft_id: self.draft_id,
            restores: self.restores,
            datasets: self.datasets.iter().map(|d| d.to_string()).collect(),
            author: self.author.clone(),
            note: self.note.clone(),
            created_at_ms: self.created_at_ms,
            go_live_at_ms: self.go_live_at_ms,
            revert_at_ms: self.revert_at_ms,
            live_at_ms: self.live_at_ms,
            ended_at_ms: self.ended_at_ms,
            gray: self.gray.as_deref().cloned(),
            force_reason: self.force_reason.clone(),
            forced_violations_total: self.forced_violations_total,
            changes_total: self.changes_total,
            content_retained: !self.after.is_empty(),
            pinned: self.pinned,
        }
    }
}

/// A draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Draft {
    pub(crate) note: String,
    pub(crate) author: Actor,
    pub(crate) created_at_ms: u64,
    /// Emptied when the draft is released (the release holds them while it needs them).
    pub(crate) changes: Changes,
    pub(crate) changes_total: u64,
    pub(crate) released: Option<u64>,
}

/// Timers, ordered after their time and release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    GoLive,
    Revert,
}

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A dataset was created.
    DatasetCreated,
    /// A dataset's guardrails were replaced.
    GuardrailsSet,
    /// A draft was created.
    DraftCreated,
    /// Changes were appended to a draft.
    DraftAppended,
    /// A draft was discarded.
    DraftDiscarded,
    /// A release was created (its force reason and overridden violations are recorded).
    ReleaseCreated,
    /// A release was promoted.
    ReleasePromoted,
    /// A release was aborted by a caller.
    ReleaseAborted,
    /// A gray or scheduled release was cancelled by a rollback.
    ReleaseCancelled,
    /// A scheduled release went live (or gray) at its time.
    ReleaseWentLive,
    /// A scheduled release failed its guardrails at go-live and was aborted.
    ReleaseGoLiveRefused,
    /// A release was reverted at its time.
    ReleaseReverted,
    /// A release was undone by a rollback.
    ReleaseRolledBack,
    /// A rollback made a new release.
    RollbackCreated,
    /// A release was pinned.
    ReleasePinned,
    /// A release was unpinned.
    ReleaseUnpinned,
    /// The retention changed.
    RetentionSet,
}

/// One entry of the audit trail: who did what, when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the trail (dense, from 1; survives pruning of older entries).
    pub seq: u64,
    /// The log record.
    pub lsn: u64,
    /// Its log time.
    pub at_ms: u64,
    /// What happened.
    pub action: AuditAction,
    /// Who, when a caller did it (timers have none).
    pub actor: Option<Actor>,
    /// The dataset concerned.
    pub dataset: Option<String>,
    /// The draft concerned.
    pub draft_id: Option<u64>,
    /// The release concerned.
    pub release_id: Option<u64>,
    /// For a rollback: the release restored; for a revert: the new release.
    pub other_release_id: Option<u64>,
    /// The reason or note given.
    pub reason: Option<String>,
    /// The reason given to override guardrails.
    pub force_reason: Option<String>,
    /// Violations (overridden by force, or that refused a scheduled go-live); the first ones.
    pub violations: Vec<Violation>,
    /// How many violations in all.
    pub violations_total: u64,
}

impl AuditEntry {
    pub(crate) fn new(lsn: u64, at_ms: u64, action: AuditAction) -> AuditEntry {
        AuditEntry {
            seq: 0,
            lsn,
            at_ms,
            action,
            actor: None,
            dataset: None,
            draft_id: None,
            release_id: None,
            other_release_id: None,
            reason: None,
            force_reason: None,
            violations: Vec::new(),
            violations_total: 0,
        }
    }
}

/// A dataset as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The name.
    pub name: String,
    /// Keys live for everyone.
    pub keys: u64,
    /// The release live for everyone.
    pub live_release_id: Option<u64>,
    /// The gray release, if one is served.
    pub gray_release_id: Option<u64>,
    /// The scheduled, gray or revert-pending release holding the dataset.
    pub pending_release_id: Option<u64>,
    /// Its guardrails.
    pub guardrails: Guardrails,
    /// When it was created (log time).
    pub created_at_ms: u64,
}

/// A draft as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftInfo {
    /// The id.
    pub draft_id: u64,
    /// Its note.
    pub note: String,
    /// Who created it.
    pub author: Actor,
    /// When (log time).
    pub created_at_ms: u64,
    /// Distinct changes (before release).
    pub changes_total: u64,
    /// The datasets it touches (before release).
    pub datasets: Vec<String>,
    /// Its release, once released.
    pub release_id: Option<u64>,
}

/// One change of a draft diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// The dataset.
    pub dataset: String,
    /// The key.
    pub key: String,
    /// The value live for everyone now.
    pub before: Option<JsonText>,
    /// The draft's value (`None` deletes).
    pub after: Option<JsonText>,
}

/// A page of a draft's diff, with the guardrail violations of the whole draft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftDiff {
    /// The draft.
    pub draft_id: u64,
    /// Changes of this page, by dataset then key.
    pub changes: Vec<DiffEntry>,
    /// Changes in the whole draft.
    pub changes_total: u64,
    /// Cursor for the next page (`None` on the last page).
    pub next_after: Option<(String, String)>,
    /// Violations of the whole draft, if released now (the first ones).
    pub violations: Vec<Violation>,
    /// How many violations in all.
    pub violations_total: u64,
}

/// A release as the API shows it (`GET /v1/releases`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// The id.
    pub release_id: u64,
    /// Its state.
    pub state: ReleaseState,
    /// How it was made.
    pub kind: ReleaseKind,
    /// Its draft, for a release made from one.
    pub draft_id: Option<u64>,
    /// For a rollback: the release restored; for a revert: the release reverted.
    pub restores: Option<u64>,
    /// The datasets it touches.
    pub datasets: Vec<String>,
    /// Who made it.
    pub author: Actor,
    /// The draft's note, or the rollback's reason.
    pub note: String,
    /// When it was created (log time).
    pub created_at_ms: u64,
    /// Scheduled go-live.
    pub go_live_at_ms: Option<u64>,
    /// Scheduled revert.
    pub revert_at_ms: Option<u64>,
    /// When it went live for everyone.
    pub live_at_ms: Option<u64>,
    /// When it was superseded, aborted or rolled back.
    pub ended_at_ms: Option<u64>,
    /// Its gray rule.
    pub gray: Option<GrayRule>,
    /// The reason given to override guardrails.
    pub force_reason: Option<String>,
    /// How many violations the force reason overrode.
    pub forced_violations_total: u64,
    /// Changes it made (for a rollback or revert: keys restored).
    pub changes_total: u64,
    /// True while its content is kept (a rollback target, if it went live for everyone).
    pub content_retained: bool,
    /// Pinned: kept whatever the retention.
    pub pinned: bool,
}

/// The whole publishing domain (it lives in shard 0). Ordered maps only, so the canonical
/// encoding depends on the contents alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publishing {
    pub(crate) releases_retained_max: u64,
    pub(crate) next_draft_id: u64,
    pub(crate) next_release_id: u64,
    pub(crate) next_audit_seq: u64,
    pub(crate) datasets: OrdMap<Key, Dataset>,
    pub(crate) drafts: OrdMap<u64, Arc<Draft>>,
    pub(crate) releases: OrdMap<u64, Arc<Release>>,
    pub(crate) audit: Vector<AuditEntry>,
    // Derived from the above (rebuilt on restore):
    /// (time, release, timer) of every pending go-live and revert.
    pub(crate) timers: OrdSet<(u64, u64, Timer)>,
    /// Releases whose content is kept.
    pub(crate) retained: OrdSet<u64>,
    /// Releases in a final state, oldest first, for forgetting records.
    pub(crate) finished: OrdSet<u64>,
    /// Pinned releases.
    pub(crate) pinned: OrdSet<u64>,
    /// Unreleased drafts.
    pub(crate) open_drafts: OrdSet<u64>,
    /// Changes held by unreleased drafts.
    pub(crate) open_changes_total: u64,
}

impl Default for Publishing {
    fn default() -> Self {
        Publishing {
            releases_retained_max: RELEASES_RETAINED_DEFAULT as u64,
            next_draft_id: 1,
            next_release_id: 1,
            next_audit_seq: 1,
            datasets: OrdMap::new(),
            drafts: OrdMap::new(),
            releases: OrdMap::new(),
            audit: Vector::new(),
            timers: OrdSet::new(),
            retained: OrdSet::new(),
            finished: OrdSet::new(),
            pinned: OrdSet::new(),
            open_drafts: OrdSet::new(),
            open_changes_total: 0,
        }
    }
}

impl Publishing {
    /// A copy to snapshot: O(1), every part is a persistent map or a shared pointer. Encode it
    /// with [`Publishing::encode`] off the sequencer thread.
    #[must_use]
    pub fn freeze(&self) -> Publishing {
        self.clone()
    }

    /// An immutable view for lock-free reads: O(1) to take, cheap to clone; the server publishes
    /// a new one after each applied batch (for example with `arc-swap`).
    #[must_use]
    pub fn view(&self) -> View {
        View::new(self.datasets.clone())
    }

    /// How many releases keep their content.
    #[must_use]
    pub fn releases_retained_max(&self) -> u64 {
        self.releases_retained_max
    }

    /// A dataset.
    #[must_use]
    pub fn dataset(&self, name: &str) -> Option<DatasetInfo> {
        self.datasets
            .get_key_value(name)
            .map(|(name, dataset)| dataset_info(name, dataset))
    }

    /// Every dataset, by name.
    #[must_use]
    pub fn datasets(&self) -> Vec<DatasetInfo> {
        self.datasets
            .iter()
            .map(|(name, dataset)| dataset_info(name, dataset))
            .collect()
    }

    /// A draft.
    #[must_use]
    pub fn draft(&self, draft_id: u64) -> Option<DraftInfo> {
        self.drafts.get(&draft_id).map(|draft| DraftInfo {
            draft_id,
            note: draft.note.clone(),
            author: draft.author.clone(),
            created_at_ms: draft.created_at_ms,
            changes_total: draft.changes_total,
            datasets: draft.changes.keys().map(|d| d.to_string()).collect(),
            release_id: draft.released,
        })
    }

    /// A page of at most `limit` changes of an unreleased draft, after the (dataset, key)
    /// cursor `after`, each with the value live for everyone now; and the violations of the
    /// whole draft if it were released now (this part costs O(changes in the draft)).
    ///
    /// # Errors
    /// `not_found` or `draft_already_released`.
    pub fn draft_diff(
        &self,
        draft_id: u64,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<DraftDiff, PublishingError> {
        let draft = self
            .drafts
            .get(&draft_id)
            .ok_or(PublishingError::DraftNotFound { draft_id })?;
        if let Some(release_id) = draft.released {
            return Err(PublishingError::DraftAlreadyReleased {
                draft_id,
                release_id,
            });
        }
        let limit = limit.max(1);
        let mut changes = Vec::new();
        let mut next_after = None;
        'datasets: for (name, keys) in &draft.changes {
            let skip_dataset = after.is_some_and(|(d, _)| name.as_ref() < d);
            if skip_dataset {
                continue;
            }
            let live = self.datasets.get(name).map(|d| &d.live);
            let range = match after {
                Some((d, k)) if d == name.as_ref() => {
                    keys.range::<_, str>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                }
                _ => keys.range::<_, str>(..),
            };
            for (key, value) in range {
                if changes.len() == limit {
                    next_after = changes
                        .last()
                        .map(|last: &DiffEntry| (last.dataset.clone(), last.key.clone()));
                    break 'datasets;
                }
                changes.push(DiffEntry {
                    dataset: name.to_string(),
                    key: key.to_string(),
                    before: live
                        .and_then(|live| live.entries.get(key))
                        .map(|e| e.value.clone()),
                    after: value.clone(),
                });
            }
        }
        let violations = self.check_changes(&draft.changes);
        Ok(DraftDiff {
            draft_id,
            changes,
            changes_total: draft.changes_total,
            next_after,
            violations: violations.listed,
            violations_total: violations.total,
        })
    }

    /// Guardrail violations of `changes` against what is live for everyone now.
    pub(crate) fn check_changes(&self, changes: &Changes) -> Violations {
        // Without enforcement nothing is refused, so this is always `Ok`.
        self.examine(changes, false).unwrap_or_default()
    }

    /// One pass over a release's changes: guardrail violations, and with `enforce` the
    /// refusals that come before them: a dataset held by another release, or a dataset (or all
    /// of them) over its key bound. Each key is looked up once in the live content, and only
    /// when a guardrail needs its value or a key bound is close (otherwise the count of values
    /// set is a sufficient upper bound).
    pub(crate) fn examine(
        &self,
        changes: &Changes,
        enforce: bool,
    ) -> Result<Violations, PublishingError> {
        match self.examine_with(changes, enforce, false) {
            Err(PublishingError::LimitExceeded { .. }) => self.examine_with(changes, enforce, true),
            other => other,
        }
    }

    fn examine_with(
        &self,
        changes: &Changes,
        enforce: bool,
        exact: bool,
    ) -> Result<Violations, PublishingError> {
        let mut out = Violations::default();
        let mut total: i128 = 0;
        if enforce {
            total = self
                .datasets
                .values()
                .map(|d| d.live.entries.len() as i128)
                .sum();
        }
        for (name, keys) in changes {
            let Some(dataset) = self.datasets.get(name) else {
                if enforce {
                    return Err(PublishingError::DatasetNotFound {
                        dataset: name.to_string(),
                    });
                }
                continue;
            };
            if let (true, Some(release_id)) = (enforce, dataset.pending) {
                return Err(PublishingError::ReleaseInProgress {
                    dataset: name.to_string(),
                    release_id,
                });
            }
            let guardrails = &dataset.guardrails;
            guardrails.check_count(name, keys.len() as u64, &mut out);
            let check_values = guardrails.checks_values();
            let live = &dataset.live.entries;
            let delta: i128 = if check_values || exact {
                let mut delta = 0;
                for (key, value) in keys {
                    let old = live.get(key).map(|e| &e.value);
                    delta += match (old.is_some(), value) {
                        (false, Some(_)) => 1,
                        (true, None) => -1,
                        _ => 0,
                    };
                    if let (true, Some(new)) = (check_values, value) {
                        guardrails.check_change(name, key, new, old, &mut out);
                    }
                }
                delta
            } else {
                keys.values().filter(|value| value.is_some()).count() as i128
            };
            if enforce && live.len() as i128 + delta > KEYS_PER_DATASET_MAX as i128 {
                return Err(PublishingError::LimitExceeded {
                    limit: "KEYS_PER_DATASET_MAX".into(),
                    max: KEYS_PER_DATASET_MAX as u64,
                });
            }
            total += delta;
        }
        if enforce && total > KEYS_TOTAL_MAX as i128 {
            return Err(PublishingError::LimitExceeded {
                limit: "KEYS_TOTAL_MAX".into(),
                max: KEYS_TOTAL_MAX as u64,
            });
        }
        Ok(out)
    }

    /// A release.
    #[must_use]
    pub fn release(&self, release_id: u64) -> Option<ReleaseInfo> {
        self.releases.get(&release_id).map(|r| r.info(release_id))
    }

    /// At most `limit` releases after `after_release_id`, oldest first.
    #[must_use]
    pub fn releases(&self, after_release_id: Option<u64>, limit: usize) -> Vec<ReleaseInfo> {
        let start = after_release_id.map_or(0, |id| id.saturating_add(1));
        self.releases
            .range(start..)
            .take(limit)
            .map(|(id, r)| r.info(*id))
            .collect()
    }

    /// At most `limit` audit entries after sequence number `after_seq`, oldest first (the
    /// newest [`AUDIT_ENTRIES_MAX`] are kept; the log has them all).
    #[must_use]
    pub fn audit(&self, after_seq: Option<u64>, limit: usize) -> Vec<AuditEntry> {
        let after = after_seq.unwrap_or(0);
        let first_seq = self.audit.front().map_or(0, |e| e.seq);
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(first_seq))
            .unwrap_or(usize::MAX);
        self.audit.iter().skip(skip).take(limit).cloned().collect()
    }

    /// The audit entries that name a release (as itself or as the other release), oldest first.
    #[must_use]
    pub fn release_audit(&self, release_id: u64) -> Vec<AuditEntry> {
        self.audit
            .iter()
            .filter(|e| e.release_id == Some(release_id) || e.other_release_id == Some(release_id))
            .cloned()
            .collect()
    }

    /// A one-line summary.
    #[must_use]
    pub fn summary(&self) -> String {
        let keys: usize = self.datasets.values().map(|d| d.live.entries.len()).sum();
        let count =
            |state: ReleaseState| self.releases.values().filter(|r| r.state == state).count();
        format!(
            "{} dataset(s), {keys} live key(s); {} release(s) kept ({} live, {} gray, {} scheduled), {} with content (retention {}); {} open draft(s)",
            self.datasets.len(),
            self.releases.len(),
            count(ReleaseState::Live),
            count(ReleaseState::Gray),
            count(ReleaseState::Scheduled),
            self.retained.len(),
            self.releases_retained_max,
            self.open_drafts.len()
        )
    }

    pub(crate) fn push_audit(&mut self, mut entry: AuditEntry) {
        entry.seq = self.next_audit_seq;
        self.next_audit_seq += 1;
        if self.audit.len() >= AUDIT_ENTRIES_MAX {
            self.audit.pop_front();
        }
        self.audit.push_back(entry);
    }
}

fn dataset_info(name: &str, dataset: &Dataset) -> DatasetInfo {
    DatasetInfo {
        name: name.to_string(),
        keys: dataset.live.entries.len() as u64,
        live_release_id: dataset.live_release,
        gray_release_id: dataset.gray.as_ref().map(|g| g.release_id),
        pending_release_id: dataset.pending,
        guardrails: (*dataset.guardrails).clone(),
        created_at_ms: dataset.created_at_ms,
    }
}
