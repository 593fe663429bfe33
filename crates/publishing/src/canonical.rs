//! The canonical encoding of the state, for snapshots and the state hash.
//!
//! Everything is written in key order, so equal states give equal bytes whatever their history
//! (a live state and its replay, a state and its restore). Each dataset's versions (the content
//! kept for every retained release, the content to restore at a pending revert, and the live
//! content) form a chain in release order, each written as the diff from the one before it:
//! `OrdMap::diff` skips the nodes two versions share, so encoding costs what the releases
//! changed, not versions times keys. Restore rebuilds each version from the one before, so the
//! sharing comes back. Derived parts (timers, gray views, who holds which dataset, indexes) are
//! not written: restore recomputes them.

use crate::command::Actor;
use crate::gray::GrayRule;
use crate::guardrail::Guardrails;
use crate::state::{
    AuditEntry, Changes, Dataset, Draft, Entry, GrayServe, Key, Publishing, Release, ReleaseKind,
    ReleaseState, Version,
};
use imbl::OrdMap;
use imbl::ordmap::DiffItem;
use serde::de::Error as _;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Bumped when the encoding changes.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Canonical {
    format: u32,
    releases_retained_max: u64,
    next_draft_id: u64,
    next_release_id: u64,
    next_audit_seq: u64,
    datasets: Vec<CanonicalDataset>,
    drafts: Vec<CanonicalDraft>,
    releases: Vec<CanonicalRelease>,
    audit: Vec<AuditEntry>,
}

#[derive(Serialize, Deserialize)]
struct CanonicalDataset {
    name: Key,
    guardrails: Guardrails,
    created_at_ms: u64,
    live_release: Option<u64>,
    owned: Vec<(u64, u64)>,
    /// Versions in release order (after, then before, of each release that keeps one), then
    /// the live content.
    versions: Chain,
}

#[derive(Serialize, Deserialize)]
struct CanonicalDraft {
    draft_id: u64,
    note: String,
    author: Actor,
    created_at_ms: u64,
    changes: Changes,
    changes_total: u64,
    released: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CanonicalRelease {
    release_id: u64,
    kind: ReleaseKind,
    draft_id: Option<u64>,
    restores: Option<u64>,
    state: ReleaseState,
    datasets: Vec<Key>,
    author: Actor,
    note: String,
    created_at_ms: u64,
    go_live_at_ms: Option<u64>,
    revert_at_ms: Option<u64>,
    gray: Option<GrayRule>,
    force_reason: Option<String>,
    forced_violations_total: u64,
    changes_total: u64,
    live_at_ms: Option<u64>,
    ended_at_ms: Option<u64>,
    pinned: bool,
    changes: Option<Changes>,
    /// Datasets whose `after` version is the next in their chain.
    after: Vec<Key>,
    /// Datasets whose `before` version follows.
    before: Vec<Key>,
}

/// A chain of versions, written as diffs.
struct Chain(Vec<Version>);

/// One link: the floor and the entries added, changed (`Some`) or removed (`None`).
type Link = (u64, Vec<(Key, Option<Entry>)>);

struct LinkOut<'a> {
    from: &'a Version,
    to: &'a Version,
}

struct DiffOut<'a> {
    from: &'a Version,
    to: &'a Version,
}

impl Serialize for DiffOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let count = self.from.entries.diff(&self.to.entries).count();
        let mut seq = serializer.serialize_seq(Some(count))?;
        for item in self.from.entries.diff(&self.to.entries) {
            match item {
                DiffItem::Add(key, entry)
                | DiffItem::Update {
                    new: (key, entry), ..
                } => {
                    seq.serialize_element(&(key, Some(entry)))?;
                }
                DiffItem::Remove(key, _) => seq.serialize_element(&(key, None::<&Entry>))?,
            }
        }
        seq.end()
    }
}

impl Serialize for LinkOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            self.to.floor,
            DiffOut {
                from: self.from,
                to: self.to,
            },
        )
            .serialize(serializer)
    }
}

impl Serialize for Chain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let empty = Version::default();
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        let mut from = &empty;
        for to in &self.0 {
            seq.serialize_element(&LinkOut { from, to })?;
            from = to;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Chain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let links = Vec::<Link>::deserialize(deserializer)?;
        let mut versions: Vec<Version> = Vec::with_capacity(links.len());
        for (floor, changes) in links {
            let mut entries = versions
                .last()
                .map(|v| v.entries.clone())
                .unwrap_or_default();
            for (key, entry) in changes {
                match entry {
                    Some(entry) => {
                        entries.insert(key, entry);
                    }
                    None => {
                        entries.remove(&key);
                    }
                }
            }
            versions.push(Version { entries, floor });
        }
        Ok(Chain(versions))
    }
}

impl Canonical {
    fn of(state: &Publishing) -> Canonical {
        let mut chains: BTreeMap<Key, Vec<Version>> = BTreeMap::new();
        let mut releases = Vec::with_capacity(state.releases.len());
        for (id, release) in &state.releases {
            for (name, version) in &release.after {
                chains
                    .entry(name.clone())
                    .or_default()
                    .push(version.clone());
            }
            for (name, version) in &release.before {
                chains
                    .entry(name.clone())
                    .or_default()
                    .push(version.clone());
            }
            releases.push(canonical_release(*id, release));
        }
        let datasets = state
            .datasets
            .iter()
            .map(|(name, dataset)| {
                let mut versions = chains.remove(name).unwrap_or_default();
                versions.push(dataset.live.clone());
                CanonicalDataset {
                    name: name.clone(),
                    guardrails: (*dataset.guardrails).clone(),
                    created_at_ms: dataset.created_at_ms,
                    live_release: dataset.live_release,
                    owned: dataset.owned.iter().map(|(k, v)| (*k, *v)).collect(),
                    versions: Chain(versions),
                }
            })
            .collect();
        let drafts = state
            .drafts
            .iter()
            .map(|(id, draft)| CanonicalDraft {
                draft_id: *id,
                note: draft.note.clone(),
                author: draft.author.clone(),
                created_at_ms: draft.created_at_ms,
                changes: draft.changes.clone(),
                changes_total: draft.changes_total,
                released: draft.released,
            })
            .collect();
        Canonical {
            format: FORMAT,
            releases_retained_max: state.releases_retained_max,
            next_draft_id: state.next_draft_id,
            next_release_id: state.next_release_id,
            next_audit_seq: state.next_audit_seq,
            datasets,
            drafts,
            releases,
            audit: state.audit.iter().cloned().collect(),
        }
    }

    fn into_state(self) -> Result<Publishing, String> {
        if self.format != FORMAT {
            return Err(format!(
                "publishing state format {} is not the supported {FORMAT}",
                self.format
            ));
        }
        let mut state = Publishing {
            releases_retained_max: self.releases_retained_max,
            next_draft_id: self.next_draft_id,
            next_release_id: self.next_release_id,
            next_audit_seq: self.next_audit_seq,
            audit: self.audit.into_iter().collect(),
            ..Publishing::default()
        };
        let mut chains: BTreeMap<Key, VecDeque<Version>> = BTreeMap::new();
        for dataset in self.datasets {
            chains.insert(dataset.name.clone(), dataset.versions.0.into());
            let value = Dataset {
                guardrails: Arc::new(dataset.guardrails),
                created_at_ms: dataset.created_at_ms,
                live: Version::default(),
                live_release: dataset.live_release,
                pending: None,
                gray: None,
                owned: dataset.owned.into_iter().collect(),
            };
            state.datasets.insert(dataset.name, value);
        }
        for draft in self.drafts {
            if draft.released.is_none() {
                state.open_drafts.insert(draft.draft_id);
                state.open_changes_total += draft.changes_total;
            }
            let value = Draft {
                note: draft.note,
                author: draft.author,
                created_at_ms: draft.created_at_ms,
                changes: draft.changes,
                changes_total: draft.changes_total,
                released: draft.released,
            };
            state.drafts.insert(draft.draft_id, Arc::new(value));
        }
        for release in self.releases {
            let id = release.release_id;
            let (release, after, before) = owned_release(release);
            let mut release = release;
            let mut take = |name: &Key| {
                chains
                    .get_mut(name)
                    .and_then(VecDeque::pop_front)
                    .ok_or_else(|| format!("release {id}: no version of {name} in the chain"))
            };
            for name in after {
                let version = take(&name)?;
                release.after.insert(name, version);
            }
            for name in before {
                let version = take(&name)?;
                release.before.insert(name, version);
            }
            state.releases.insert(id, Arc::new(release));
        }
        for (name, mut chain) in chains {
            let (Some(live), true) = (chain.pop_front(), chain.is_empty()) else {
                return Err(format!(
                    "dataset {name}: the version chain does not end in its live content"
                ));
            };
            if let Some(dataset) = state.datasets.get_mut(&name) {
                dataset.live = live;
            }
        }
        state.rebuild_derived();
        Ok(state)
    }
}

fn canonical_release(id: u64, release: &Release) -> CanonicalRelease {
    CanonicalRelease {
        release_id: id,
        kind: release.kind,
        draft_id: release.draft_id,
        restores: release.restores,
        state: release.state,
        datasets: release.datasets.clone(),
        author: release.author.clone(),
        note: release.note.clone(),
        created_at_ms: release.created_at_ms,
        go_live_at_ms: release.go_live_at_ms,
        revert_at_ms: release.revert_at_ms,
        gray: release.gray.as_deref().cloned(),
        force_reason: release.force_reason.clone(),
        forced_violations_total: release.forced_violations_total,
        changes_total: release.changes_total,
        live_at_ms: release.live_at_ms,
        ended_at_ms: release.ended_at_ms,
        pinned: release.pinned,
        changes: release.changes.clone(),
        after: release.after.keys().cloned().collect(),
        before: release.before.keys().cloned().collect(),
    }
}

fn owned_release(release: CanonicalRelease) -> (Release, Vec<Key>, Vec<Key>) {
    let value = Release {
        kind: release.kind,
        draft_id: release.draft_id,
        restores: release.restores,
        state: release.state,
        datasets: release.datasets,
        author: release.author,
        note: release.note,
        created_at_ms: release.created_at_ms,
        go_live_at_ms: release.go_live_at_ms,
        revert_at_ms: release.revert_at_ms,
        gray: release.gray.map(Arc::new),
        force_reason: release.force_reason,
        forced_violations_total: release.forced_violations_total,
        changes_total: release.changes_total,
        live_at_ms: release.live_at_ms,
        ended_at_ms: release.ended_at_ms,
        pinned: release.pinned,
        changes: release.changes,
        after: OrdMap::new(),
        before: OrdMap::new(),
    };
    (value, release.after, release.before)
}

impl Publishing {
    /// Recomputes what is derived from datasets, drafts and releases.
    fn rebuild_derived(&mut self) {
        let releases: Vec<(u64, Arc<Release>)> = self
            .releases
            .iter()
            .map(|(id, r)| (*id, Arc::clone(r)))
            .collect();
        for (id, release) in releases {
            for timer in crate::apply::wanted_timers(id, &release) {
                self.timers.insert(timer);
            }
            if !release.after.is_empty() {
                self.retained.insert(id);
            }
            if release.state.is_final() {
                self.finished.insert(id);
            }
            if release.pinned {
                self.pinned.insert(id);
            }
            if release.is_pending() {
                for name in &release.datasets {
                    if let Some(dataset) = self.datasets.get_mut(name) {
                        dataset.pending = Some(id);
                    }
                }
            }
            let serves_gray = release.state == ReleaseState::Gray;
            if let (true, Some(rule), Some(changes)) =
                (serves_gray, &release.gray, &release.changes)
            {
                for (name, keys) in changes {
                    if let Some(dataset) = self.datasets.get_mut(name) {
                        dataset.gray = Some(GrayServe {
                            release_id: id,
                            rule: Arc::clone(rule),
                            version: dataset.live.with_changes(keys, id),
                        });
                    }
                }
            }
        }
    }

    /// The canonical encoding (postcard): equal states give equal bytes.
    ///
    /// # Errors
    /// The state does not encode (a bug in a `Serialize`).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(self).map_err(|e| format!("publishing state does not encode: {e}"))
    }

    /// Rebuilds a state from [`Publishing::encode`]'s bytes (schemas are compiled again).
    ///
    /// # Errors
    /// What is wrong with the bytes.
    pub fn restore(bytes: &[u8]) -> Result<Publishing, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("cannot decode publishing state: {e}"))
    }

    /// BLAKE3 of the canonical encoding.
    ///
    /// # Errors
    /// As [`Publishing::encode`].
    pub fn state_hash(&self) -> Result<[u8; 32], String> {
        Ok(*blake3::hash(&self.encode()?).as_bytes())
    }
}

impl Serialize for Publishing {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Canonical::of(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Publishing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Canonical::deserialize(deserializer)?
            .into_state()
            .map_err(D::Error::custom)
    }
}
