//! How events change the state, and which timers are due. Applying is mechanical: every
//! decision was taken before the event was logged; an event that no longer fits the state (for
//! example a timer event applied a second time) changes nothing.

use crate::RELEASE_RECORDS_MAX;
use crate::command::{Actor, ChangeFact, PublishingEvent};
use crate::gray::GrayRule;
use crate::guardrail::Guardrails;
use crate::state::{
    AuditAction, AuditEntry, Changes, Dataset, Draft, GrayServe, Key, Publishing, Release,
    ReleaseKind, ReleaseState, Timer, Version,
};
use imbl::OrdMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The fields of a `ReleaseCreated` event.
struct Created<'a> {
    release_id: u64,
    draft_id: u64,
    state: ReleaseState,
    gray: Option<&'a GrayRule>,
    go_live_at_ms: Option<u64>,
    revert_at_ms: Option<u64>,
    force_reason: Option<&'a String>,
    forced_violations_total: u64,
    actor: &'a Actor,
}

/// A whole-dataset restore (rollback or revert).
struct Restore {
    release_id: u64,
    kind: ReleaseKind,
    restores: u64,
    targets: OrdMap<Key, Version>,
    author: Actor,
    note: String,
}

impl Publishing {
    /// Applies one event logged at `lsn` and log time `at_ms`. Never fails.
    pub fn apply(&mut self, event: &PublishingEvent, lsn: u64, at_ms: u64) {
        let mut audit = self.apply_event(event, at_ms);
        for entry in &mut audit {
            entry.lsn = lsn;
            entry.at_ms = at_ms;
        }
        for entry in audit {
            self.push_audit(entry);
        }
        self.prune();
    }

    /// Applies an event; returns its audit entries (lsn and time are filled in by the caller).
    fn apply_event(&mut self, event: &PublishingEvent, at_ms: u64) -> Vec<AuditEntry> {
        let entry = |action| AuditEntry::new(0, 0, action);
        match event {
            PublishingEvent::DatasetCreated {
                name,
                guardrails,
                actor,
            } => {
                self.dataset_created(name, guardrails, at_ms);
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    dataset: Some(name.to_string()),
                    ..entry(AuditAction::DatasetCreated)
                }]
            }
            PublishingEvent::GuardrailsSet {
                dataset,
                guardrails,
                actor,
            } => {
                if let Some(dataset) = self.datasets.get_mut(dataset) {
                    dataset.guardrails = Arc::new(guardrails.clone());
                }
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    dataset: Some(dataset.to_string()),
                    ..entry(AuditAction::GuardrailsSet)
                }]
            }
            PublishingEvent::DraftCreated {
                draft_id,
                note,
                changes,
                actor,
            } => {
                self.draft_created(*draft_id, note, changes, actor, at_ms);
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    draft_id: Some(*draft_id),
                    reason: Some(note.clone()),
                    ..entry(AuditAction::DraftCreated)
                }]
            }
            PublishingEvent::DraftAppended {
                draft_id,
                changes,
                actor,
            } => {
                self.draft_appended(*draft_id, changes);
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    draft_id: Some(*draft_id),
                    ..entry(AuditAction::DraftAppended)
                }]
            }
            PublishingEvent::DraftDiscarded { draft_id, actor } => {
                if self.open_drafts.contains(draft_id) {
                    self.close_draft(*draft_id);
                    self.drafts.remove(draft_id);
                }
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    draft_id: Some(*draft_id),
                    ..entry(AuditAction::DraftDiscarded)
                }]
            }
            PublishingEvent::ReleaseCreated {
                release_id,
                draft_id,
                state,
                gray,
                go_live_at_ms,
                revert_at_ms,
                force_reason,
                violations,
                violations_total,
                actor,
            } => {
                self.release_created(
                    &Created {
                        release_id: *release_id,
                        draft_id: *draft_id,
                        state: *state,
                        gray: gray.as_ref(),
                        go_live_at_ms: *go_live_at_ms,
                        revert_at_ms: *revert_at_ms,
                        force_reason: force_reason.as_ref(),
                        forced_violations_total: *violations_total,
                        actor,
                    },
                    at_ms,
                );
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    draft_id: Some(*draft_id),
                    release_id: Some(*release_id),
                    force_reason: force_reason.clone(),
                    violations: violations.clone(),
                    violations_total: *violations_total,
                    ..entry(AuditAction::ReleaseCreated)
                }]
            }
            PublishingEvent::ReleasePromoted { release_id, actor } => {
                if self
                    .state_of(*release_id)
                    .is_some_and(|s| matches!(s, ReleaseState::Scheduled | ReleaseState::Gray))
                {
                    self.go_live(*release_id, at_ms);
                }
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    release_id: Some(*release_id),
                    ..entry(AuditAction::ReleasePromoted)
                }]
            }
            PublishingEvent::ReleaseAborted { release_id, actor } => {
                self.cancel(*release_id, ReleaseState::Aborted, at_ms);
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    release_id: Some(*release_id),
                    ..entry(AuditAction::ReleaseAborted)
                }]
            }
            PublishingEvent::ReleaseWentLive { release_id } => {
                self.went_live(*release_id, at_ms);
                vec![AuditEntry {
                    release_id: Some(*release_id),
                    ..entry(AuditAction::ReleaseWentLive)
                }]
            }
            PublishingEvent::ReleaseGoLiveRefused {
                release_id,
                violations,
                violations_total,
            } => {
                if self.state_of(*release_id) == Some(ReleaseState::Scheduled) {
                    self.end(*release_id, ReleaseState::Aborted, at_ms);
                }
                vec![AuditEntry {
                    release_id: Some(*release_id),
                    violations: violations.clone(),
                    violations_total: *violations_total,
                    ..entry(AuditAction::ReleaseGoLiveRefused)
                }]
            }
            PublishingEvent::ReleaseReverted {
                release_id,
                restore_release_id,
            } => {
                self.reverted(*release_id, *restore_release_id, at_ms);
                vec![AuditEntry {
                    release_id: Some(*release_id),
                    other_release_id: *restore_release_id,
                    ..entry(AuditAction::ReleaseReverted)
                }]
            }
            PublishingEvent::RolledBack {
                release_id,
                to_release_id,
                reason,
                actor,
            } => {
                let mut audit = self.rolled_back(*release_id, *to_release_id, reason, actor, at_ms);
                audit.push(AuditEntry {
                    actor: Some(actor.clone()),
                    release_id: Some(*release_id),
                    other_release_id: Some(*to_release_id),
                    reason: Some(reason.clone()),
                    ..entry(AuditAction::RollbackCreated)
                });
                audit
            }
            PublishingEvent::ReleasePinned {
                release_id,
                pinned,
                actor,
            } => {
                self.set_pinned(*release_id, *pinned);
                let action = if *pinned {
                    AuditAction::ReleasePinned
                } else {
                    AuditAction::ReleaseUnpinned
                };
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    release_id: Some(*release_id),
                    ..entry(action)
                }]
            }
            PublishingEvent::RetentionSet {
                releases_retained_max,
                actor,
            } => {
                self.releases_retained_max = (*releases_retained_max).max(1);
                vec![AuditEntry {
                    actor: Some(actor.clone()),
                    reason: Some(format!("releases_retained_max = {releases_retained_max}")),
                    ..entry(AuditAction::RetentionSet)
                }]
            }
        }
    }

    pub(crate) fn state_of(&self, release_id: u64) -> Option<ReleaseState> {
        self.releases.get(&release_id).map(|r| r.state)
    }

    fn dataset_created(&mut self, name: &Key, guardrails: &Guardrails, at_ms: u64) {
        if self.datasets.contains_key(name) {
            return;
        }
        let dataset = Dataset {
            guardrails: Arc::new(guardrails.clone()),
            created_at_ms: at_ms,
            live: Version::default(),
            live_release: None,
            pending: None,
            gray: None,
            owned: OrdMap::new(),
        };
        self.datasets.insert(name.clone(), dataset);
    }

    fn draft_created(
        &mut self,
        draft_id: u64,
        note: &str,
        changes: &[ChangeFact],
        actor: &Actor,
        at_ms: u64,
    ) {
        if self.drafts.contains_key(&draft_id) {
            return;
        }
        let mut draft = Draft {
            note: note.to_string(),
            author: actor.clone(),
            created_at_ms: at_ms,
            changes: Changes::new(),
            changes_total: 0,
            released: None,
        };
        add_changes(&mut draft, changes);
        self.open_changes_total += draft.changes_total;
        self.drafts.insert(draft_id, Arc::new(draft));
        self.open_drafts.insert(draft_id);
        self.next_draft_id = self.next_draft_id.max(draft_id.saturating_add(1));
    }

    fn draft_appended(&mut self, draft_id: u64, changes: &[ChangeFact]) {
        if !self.open_drafts.contains(&draft_id) {
            return;
        }
        let Some(draft) = self.drafts.get_mut(&draft_id) else {
            return;
        };
        let draft = Arc::make_mut(draft);
        let before = draft.changes_total;
        add_changes(draft, changes);
        self.open_changes_total += draft.changes_total - before;
    }

    /// Takes a draft off the open list (released or discarded).
    fn close_draft(&mut self, draft_id: u64) {
        if self.open_drafts.remove(&draft_id).is_some() {
            let total = self.drafts.get(&draft_id).map_or(0, |d| d.changes_total);
            self.open_changes_total = self.open_changes_total.saturating_sub(total);
        }
    }

    fn release_created(&mut self, created: &Created<'_>, at_ms: u64) {
        let id = created.release_id;
        if self.releases.contains_key(&id) || !self.open_drafts.contains(&created.draft_id) {
            return;
        }
        self.close_draft(created.draft_id);
        let Some(draft) = self.drafts.get_mut(&created.draft_id) else {
            return;
        };
        let draft = Arc::make_mut(draft);
        draft.released = Some(id);
        let changes = std::mem::take(&mut draft.changes);
        let release = Release {
            kind: ReleaseKind::Draft,
            draft_id: Some(created.draft_id),
            restores: None,
            state: ReleaseState::Scheduled,
            datasets: changes.keys().cloned().collect(),
            author: created.actor.clone(),
            note: draft.note.clone(),
            created_at_ms: at_ms,
            go_live_at_ms: created.go_live_at_ms,
            revert_at_ms: created.revert_at_ms,
            gray: created.gray.map(|g| Arc::new(g.clone())),
            force_reason: created.force_reason.cloned(),
            forced_violations_total: created.forced_violations_total,
            changes_total: draft.changes_total,
            live_at_ms: None,
            ended_at_ms: None,
            pinned: false,
            changes: Some(changes),
            after: OrdMap::new(),
            before: OrdMap::new(),
        };
        self.releases.insert(id, Arc::new(release));
        self.next_release_id = self.next_release_id.max(id.saturating_add(1));
        match created.state {
            ReleaseState::Scheduled => self.sync(id),
            ReleaseState::Gray => self.enter_gray(id),
            _ => self.go_live(id, at_ms),
        }
    }

    fn release_mut(&mut self, release_id: u64) -> Option<&mut Release> {
        self.releases.get_mut(&release_id).map(Arc::make_mut)
    }

    /// Brings the timers and the datasets' `pending` in line with the release's state.
    pub(crate) fn sync(&mut self, release_id: u64) {
        let Some(release) = self.releases.get(&release_id).cloned() else {
            return;
        };
        for time in [release.go_live_at_ms, release.revert_at_ms]
            .into_iter()
            .flatten()
        {
            self.timers.remove(&(time, release_id, Timer::GoLive));
            self.timers.remove(&(time, release_id, Timer::Revert));
        }
        for timer in wanted_timers(release_id, &release) {
            self.timers.insert(timer);
        }
        let pending = release.is_pending();
        for name in &release.datasets {
            let Some(dataset) = self.datasets.get_mut(name) else {
                continue;
            };
            if pending {
                dataset.pending = Some(release_id);
            } else if dataset.pending == Some(release_id) {
                dataset.pending = None;
            }
        }
        if release.state.is_final() {
            self.finished.insert(release_id);
        }
    }

    /// A scheduled release reached its time.
    fn went_live(&mut self, release_id: u64, at_ms: u64) {
        let Some(release) = self.releases.get(&release_id) else {
            return;
        };
        if release.state != ReleaseState::Scheduled {
            return;
        }
        if release.gray.is_some() {
            self.enter_gray(release_id);
        } else {
            self.go_live(release_id, at_ms);
        }
    }

    /// Serves the release to readers its gray rule matches.
    fn enter_gray(&mut self, release_id: u64) {
        let Some(release) = self.release_mut(release_id) else {
            return;
        };
        release.state = ReleaseState::Gray;
        let (Some(rule), Some(changes)) = (release.gray.clone(), release.changes.clone()) else {
            return;
        };
        for (name, keys) in &changes {
            if let Some(dataset) = self.datasets.get_mut(name) {
                dataset.gray = Some(GrayServe {
                    release_id,
                    rule: Arc::clone(&rule),
                    version: dataset.live.with_changes(keys, release_id),
                });
            }
        }
        self.sync(release_id);
    }

    /// Makes a scheduled or gray release live for everyone, in one step across its datasets.
    pub(crate) fn go_live(&mut self, release_id: u64, at_ms: u64) {
        let Some(release) = self.releases.get(&release_id).cloned() else {
            return;
        };
        let Some(changes) = release.changes.clone() else {
            return;
        };
        let keep_before = release.revert_at_ms.is_some();
        let mut after = OrdMap::new();
        let mut before = OrdMap::new();
        let mut lost: BTreeSet<u64> = BTreeSet::new();
        for (name, keys) in &changes {
            let Some(dataset) = self.datasets.get_mut(name) else {
                continue;
            };
            let served_gray = dataset
                .gray
                .as_ref()
                .is_some_and(|gray| gray.release_id == release_id);
            // Ownership: the keys this release sets are no longer owned by whoever set them.
            let mut replaced: BTreeMap<u64, u64> = BTreeMap::new();
            let version = match dataset.gray.take_if(|_| served_gray) {
                Some(gray) => {
                    for key in keys.keys() {
                        if let Some(old) = dataset.live.entries.get(key) {
                            *replaced.entry(dataset.live.owner(old)).or_default() += 1;
                        }
                    }
                    gray.version
                }
                None => dataset
                    .live
                    .with_changes_counted(keys, release_id, &mut replaced),
            };
            let set = keys.values().filter(|value| value.is_some()).count() as u64;
            for (owner, count) in replaced {
                let left = dataset
                    .owned
                    .get(&owner)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(count);
                if left == 0 {
                    dataset.owned.remove(&owner);
                    lost.insert(owner);
                } else {
                    dataset.owned.insert(owner, left);
                }
            }
            if set > 0 {
                dataset.owned.insert(release_id, set);
            }
            if keep_before {
                before.insert(name.clone(), dataset.live.clone());
            }
            dataset.live = version.clone();
            dataset.live_release = Some(release_id);
            after.insert(name.clone(), version);
        }
        if let Some(release) = self.release_mut(release_id) {
            release.state = ReleaseState::Live;
            release.live_at_ms = Some(at_ms);
            release.changes = None;
            release.after = after;
            release.before = before;
        }
        self.retained.insert(release_id);
        self.sync(release_id);
        self.supersede(&lost, at_ms);
    }

    /// Releases in `candidates` that own no key any more become superseded.
    fn supersede(&mut self, candidates: &BTreeSet<u64>, at_ms: u64) {
        for &id in candidates {
            let Some(release) = self.releases.get(&id) else {
                continue;
            };
            if release.state != ReleaseState::Live {
                continue;
            }
            let owns_some = release.datasets.iter().any(|name| {
                self.datasets
                    .get(name)
                    .is_some_and(|d| d.owned.contains_key(&id))
            });
            if !owns_some {
                self.end(id, ReleaseState::Superseded, at_ms);
            }
        }
    }

    /// Puts a release in a final state, stops serving it gray, and drops what it held.
    fn end(&mut self, release_id: u64, state: ReleaseState, at_ms: u64) {
        let Some(release) = self.release_mut(release_id) else {
            return;
        };
        release.state = state;
        release.ended_at_ms = Some(at_ms);
        release.changes = None;
        release.before = OrdMap::new();
        let datasets = release.datasets.clone();
        for name in &datasets {
            if let Some(dataset) = self.datasets.get_mut(name)
                && dataset
                    .gray
                    .as_ref()
                    .is_some_and(|g| g.release_id == release_id)
            {
                dataset.gray = None;
            }
        }
        self.sync(release_id);
    }

    /// Abort: a scheduled or gray release ends in `state`.
    fn cancel(&mut self, release_id: u64, state: ReleaseState, at_ms: u64) {
        if self
            .state_of(release_id)
            .is_some_and(|s| matches!(s, ReleaseState::Scheduled | ReleaseState::Gray))
        {
            self.end(release_id, state, at_ms);
        }
    }

    fn reverted(&mut self, release_id: u64, restore_release_id: Option<u64>, at_ms: u64) {
        let Some(release) = self.releases.get(&release_id).cloned() else {
            return;
        };
        match (release.state, restore_release_id) {
            (ReleaseState::Gray, _) => self.end(release_id, ReleaseState::RolledBack, at_ms),
            (ReleaseState::Live, Some(restore_id)) if !release.before.is_empty() => {
                if self.releases.contains_key(&restore_id) {
                    return;
                }
                self.end(release_id, ReleaseState::RolledBack, at_ms);
                self.install(
                    Restore {
                        release_id: restore_id,
                        kind: ReleaseKind::Revert,
                        restores: release_id,
                        targets: release.before.clone(),
                        author: release.author.clone(),
                        note: format!("scheduled revert of release {release_id}"),
                    },
                    at_ms,
                );
            }
            _ => {}
        }
    }

    fn rolled_back(
        &mut self,
        release_id: u64,
        to_release_id: u64,
        reason: &str,
        actor: &Actor,
        at_ms: u64,
    ) -> Vec<AuditEntry> {
        let mut audit = Vec::new();
        let Some(target) = self.releases.get(&to_release_id).cloned() else {
            return audit;
        };
        if target.after.is_empty() || self.releases.contains_key(&release_id) {
            return audit;
        }
        let touched: BTreeSet<&Key> = target.after.keys().collect();
        let later: Vec<(u64, ReleaseState)> = self
            .releases
            .range(to_release_id.saturating_add(1)..)
            .filter(|(_, r)| r.datasets.iter().any(|d| touched.contains(d)))
            .map(|(id, r)| (*id, r.state))
            .collect();
        for (id, state) in later {
            let (to, action) = match state {
                ReleaseState::Scheduled | ReleaseState::Gray => {
                    (ReleaseState::Aborted, AuditAction::ReleaseCancelled)
                }
                ReleaseState::Live | ReleaseState::Superseded => {
                    (ReleaseState::RolledBack, AuditAction::ReleaseRolledBack)
                }
                _ => continue,
            };
            self.end(id, to, at_ms);
            audit.push(AuditEntry {
                actor: Some(actor.clone()),
                release_id: Some(id),
                other_release_id: Some(release_id),
                reason: Some(reason.to_string()),
                ..AuditEntry::new(0, 0, action)
            });
        }
        // The target itself may wait for its revert: the rollback replaces that.
        if target.state == ReleaseState::Live && !target.before.is_empty() {
            if let Some(release) = self.release_mut(to_release_id) {
                release.before = OrdMap::new();
            }
            self.sync(to_release_id);
        }
        self.install(
            Restore {
                release_id,
                kind: ReleaseKind::Rollback,
                restores: to_release_id,
                targets: target.after.clone(),
                author: actor.clone(),
                note: reason.to_string(),
            },
            at_ms,
        );
        audit
    }

    /// Installs whole-dataset contents as the new live release `restore.release_id` (a pointer
    /// switch per dataset); the new release owns every key of those datasets.
    fn install(&mut self, restore: Restore, at_ms: u64) {
        let id = restore.release_id;
        let mut after = OrdMap::new();
        let mut lost = BTreeSet::new();
        let mut keys_total = 0u64;
        for (name, target) in &restore.targets {
            let Some(dataset) = self.datasets.get_mut(name) else {
                continue;
            };
            lost.extend(dataset.owned.keys().copied());
            let version = Version {
                entries: target.entries.clone(),
                floor: id,
            };
            let keys = version.entries.len() as u64;
            keys_total += keys;
            dataset.owned = OrdMap::new();
            if keys > 0 {
                dataset.owned.insert(id, keys);
            }
            dataset.live = version.clone();
            dataset.live_release = Some(id);
            dataset.gray = None;
            dataset.pending = None;
            after.insert(name.clone(), version);
        }
        let release = Release {
            kind: restore.kind,
            draft_id: None,
            restores: Some(restore.restores),
            state: ReleaseState::Live,
            datasets: after.keys().cloned().collect(),
            author: restore.author,
            note: restore.note,
            created_at_ms: at_ms,
            go_live_at_ms: None,
            revert_at_ms: None,
            gray: None,
            force_reason: None,
            forced_violations_total: 0,
            changes_total: keys_total,
            live_at_ms: Some(at_ms),
            ended_at_ms: None,
            pinned: false,
            changes: None,
            after,
            before: OrdMap::new(),
        };
        self.releases.insert(id, Arc::new(release));
        self.retained.insert(id);
        self.next_release_id = self.next_release_id.max(id.saturating_add(1));
        lost.remove(&id);
        self.supersede(&lost, at_ms);
    }

    fn set_pinned(&mut self, release_id: u64, pinned: bool) {
        let Some(release) = self.release_mut(release_id) else {
            return;
        };
        if pinned && release.after.is_empty() {
            return;
        }
        release.pinned = pinned;
        if pinned {
            self.pinned.insert(release_id);
        } else {
            self.pinned.remove(&release_id);
        }
    }

    /// True when some dataset serves the release as its live content.
    fn is_serving(&self, release_id: u64) -> bool {
        self.releases.get(&release_id).is_some_and(|release| {
            release.datasets.iter().any(|name| {
                self.datasets
                    .get(name)
                    .is_some_and(|d| d.live_release == Some(release_id))
            })
        })
    }

    fn is_protected(&self, release_id: u64) -> bool {
        self.pinned.contains(&release_id) || self.is_serving(release_id)
    }

    /// The oldest finished release record that may be forgotten.
    pub(crate) fn forgettable_record(&self) -> Option<u64> {
        self.finished
            .iter()
            .copied()
            .find(|&id| !self.is_protected(id))
    }

    /// Drops release contents beyond the newest `releases_retained_max` (pinned releases and
    /// those a dataset serves are kept on top of that count), then release records beyond
    /// [`RELEASE_RECORDS_MAX`]. Gray, scheduled and revert-pending releases keep their changes
    /// and revert contents outside this count.
    fn prune(&mut self) {
        let retained_max = usize::try_from(self.releases_retained_max).unwrap_or(usize::MAX);
        if self.retained.len() > retained_max {
            // Keep the newest `retained_max` unprotected contents, and every protected one.
            let unprotected: Vec<u64> = self
                .retained
                .iter()
                .copied()
                .filter(|&id| !self.is_protected(id))
                .collect();
            let excess = unprotected.len().saturating_sub(retained_max);
            for &id in &unprotected[..excess] {
                self.retained.remove(&id);
                if let Some(release) = self.release_mut(id) {
                    release.after = OrdMap::new();
                }
            }
        }
        while self.releases.len() > RELEASE_RECORDS_MAX {
            let Some(id) = self.forgettable_record() else {
                break;
            };
            self.finished.remove(&id);
            self.retained.remove(&id);
            if let Some(release) = self.releases.remove(&id)
                && let Some(draft_id) = release.draft_id
            {
                self.drafts.remove(&draft_id);
            }
        }
    }

    /// Events for go-lives and reverts due at `now_ms`, at most `max`, in time order. A timer
    /// yields an event only while its release is in the state that needs it, and at most one
    /// event per dataset is yielded per call (the next call, after these are applied, goes on).
    /// A scheduled release is checked against its guardrails again here (unless forced): a
    /// failure yields `ReleaseGoLiveRefused` instead of `ReleaseWentLive`.
    #[must_use]
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<PublishingEvent> {
        let mut events = Vec::new();
        let mut touched: BTreeSet<&Key> = BTreeSet::new();
        let mut next_release_id = self.next_release_id;
        for (at_ms, release_id, timer) in &self.timers {
            if *at_ms > now_ms || events.len() >= max {
                break;
            }
            let Some(release) = self.releases.get(release_id) else {
                continue;
            };
            if release.datasets.iter().any(|d| touched.contains(d)) {
                continue;
            }
            let event = match (timer, release.state) {
                (Timer::GoLive, ReleaseState::Scheduled) => {
                    let violations = match (&release.force_reason, &release.changes) {
                        (None, Some(changes)) => self.check_changes(changes),
                        _ => crate::guardrail::Violations::default(),
                    };
                    if violations.is_empty() {
                        PublishingEvent::ReleaseWentLive {
                            release_id: *release_id,
                        }
                    } else {
                        PublishingEvent::ReleaseGoLiveRefused {
                            release_id: *release_id,
                            violations: violations.listed,
                            violations_total: violations.total,
                        }
                    }
                }
                (Timer::Revert, ReleaseState::Gray) => PublishingEvent::ReleaseReverted {
                    release_id: *release_id,
                    restore_release_id: None,
                },
                (Timer::Revert, ReleaseState::Live) if !release.before.is_empty() => {
                    let restore_release_id = next_release_id;
                    next_release_id += 1;
                    PublishingEvent::ReleaseReverted {
                        release_id: *release_id,
                        restore_release_id: Some(restore_release_id),
                    }
                }
                _ => continue,
            };
            touched.extend(release.datasets.iter());
            events.push(event);
        }
        events
    }
}

/// The timers a release needs in its current state.
pub(crate) fn wanted_timers(release_id: u64, release: &Release) -> Vec<(u64, u64, Timer)> {
    let mut timers = Vec::new();
    if release.state == ReleaseState::Scheduled
        && let Some(at) = release.go_live_at_ms
    {
        timers.push((at, release_id, Timer::GoLive));
    }
    if release.is_pending()
        && let Some(at) = release.revert_at_ms
    {
        timers.push((at, release_id, Timer::Revert));
    }
    timers
}

/// Adds logged changes to a draft, a later change of a key replacing an earlier one.
pub(crate) fn add_changes(draft: &mut Draft, changes: &[ChangeFact]) {
    for change in changes {
        let keys = draft.changes.entry(change.dataset.clone()).or_default();
        if keys
            .insert(change.key.clone(), change.value.clone())
            .is_none()
        {
            draft.changes_total += 1;
        }
    }
}
