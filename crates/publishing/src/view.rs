//! Reads: an immutable view of every dataset, answered without locks.

use crate::gray::ReadContext;
use crate::json::JsonText;
use crate::state::{Dataset, Key, Version};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// An immutable snapshot of what every dataset serves: live content and gray releases.
///
/// Taking one ([`crate::Publishing::view`]) and cloning it are O(1); it never changes, so every
/// read of one view sees one release per dataset for all the keys it reads, and readers never
/// wait for a publish. The server swaps in a new view after each applied (and durable) batch.
#[derive(Clone, Default)]
pub struct View {
    datasets: OrdMap<Key, Dataset>,
}

/// The content chosen for a reader in a dataset, and the release it comes from.
type Chosen<'a> = (&'a Version, Option<u64>);

/// A page of a scan: (key, value) pairs, and the release that serves them.
pub type ScanPage = (Vec<(String, JsonText)>, Option<u64>);

/// A value as served, with the release that served it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The value, `None` when the key is not in the served release.
    pub value: Option<JsonText>,
    /// The release whose content answered (`None` before the dataset's first release).
    pub release_id: Option<u64>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("datasets", &self.datasets.len())
            .finish()
    }
}

impl View {
    pub(crate) fn new(datasets: OrdMap<Key, Dataset>) -> View {
        View { datasets }
    }

    /// The content `context` sees in `dataset` and the release it comes from.
    fn version_for<'a>(dataset: &'a Dataset, context: &ReadContext) -> (&'a Version, Option<u64>) {
        match &dataset.gray {
            Some(gray) if gray.rule.matches(gray.release_id, context) => {
                (&gray.version, Some(gray.release_id))
            }
            _ => (&dataset.live, dataset.live_release),
        }
    }

    /// The release a reader with `context` is served for `dataset`; `None` for an unknown
    /// dataset, `Some(None)` before its first release.
    #[must_use]
    pub fn release_for(&self, dataset: &str, context: &ReadContext) -> Option<Option<u64>> {
        self.datasets
            .get(dataset)
            .map(|d| Self::version_for(d, context).1)
    }

    /// Reads one key; `None` for an unknown dataset.
    #[must_use]
    pub fn get(&self, dataset: &str, key: &str, context: &ReadContext) -> Option<Served> {
        let dataset = self.datasets.get(dataset)?;
        let (version, release_id) = Self::version_for(dataset, context);
        Some(Served {
            value: version.entries.get(key).map(|e| e.value.clone()),
            release_id,
        })
    }

    /// Reads many (dataset, key) pairs from this one view, in order; `None` for an unknown
    /// dataset. The gray rule of each dataset is evaluated once per call.
    #[must_use]
    pub fn get_many<'k>(
        &self,
        keys: impl IntoIterator<Item = (&'k str, &'k str)>,
        context: &ReadContext,
    ) -> Vec<Option<Served>> {
        let mut chosen: Vec<(&str, Option<Chosen<'_>>)> = Vec::new();
        keys.into_iter()
            .map(|(dataset, key)| {
                let found = match chosen.iter().find(|(name, _)| *name == dataset) {
                    Some((_, found)) => *found,
                    None => {
                        let found = self
                            .datasets
                            .get(dataset)
                            .map(|d| Self::version_for(d, context));
                        chosen.push((dataset, found));
                        found
                    }
                };
                found.map(|(version, release_id)| Served {
                    value: version.entries.get(key).map(|e| e.value.clone()),
                    release_id,
                })
            })
            .collect()
    }

    /// Dataset names, sorted.
    pub fn datasets(&self) -> impl Iterator<Item = &str> {
        self.datasets.keys().map(AsRef::as_ref)
    }

    /// Keys live for everyone in `dataset` (`None` for an unknown dataset).
    #[must_use]
    pub fn len(&self, dataset: &str) -> Option<usize> {
        self.datasets.get(dataset).map(|d| d.live.entries.len())
    }

    /// True when there is no dataset.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }

    /// At most `limit` (key, value) pairs a reader with `context` sees in `dataset`, after the
    /// key `after`, by key; with the release that serves them. `None` for an unknown dataset.
    #[must_use]
    pub fn scan(
        &self,
        dataset: &str,
        after: Option<&str>,
        limit: usize,
        context: &ReadContext,
    ) -> Option<ScanPage> {
        let dataset = self.datasets.get(dataset)?;
        let (version, release_id) = Self::version_for(dataset, context);
        let range = match after {
            Some(after) => version
                .entries
                .range::<_, str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => version.entries.range::<_, str>(..),
        };
        let items = range
            .take(limit)
            .map(|(k, e)| (k.to_string(), e.value.clone()))
            .collect();
        Some((items, release_id))
    }
}
