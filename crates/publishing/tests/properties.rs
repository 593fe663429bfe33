//! Properties under random command sequences, checked against a plain reference model of
//! dataset contents: every read of a view sees exactly one release's content per dataset (never
//! a mix), rollback and revert restore exact content, and replay, encoding and restore agree.

mod common;

use cairn_publishing::{
    Change, GrayRule, Publishing, PublishingCommand, PublishingEvent, ReadContext, ReleaseState,
};
use common::{Harness, user};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

const DATASETS: [&str; 3] = ["a", "b", "c"];
const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];
const GRAY_USER: &str = "gray-user";

type Content = BTreeMap<String, i64>;

#[derive(Clone, Debug)]
enum Step {
    Publish {
        changes: Vec<(usize, usize, Option<i64>)>,
        gray: bool,
        go_live_in_ms: Option<u64>,
        revert_in_ms: Option<u64>,
        force: bool,
    },
    Promote(u64),
    Abort(u64),
    Rollback(u64),
    Pin(u64, bool),
    SetRetention(u64),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let change = (
        0..DATASETS.len(),
        0..KEYS.len(),
        prop::option::weighted(0.8, -2..50i64),
    );
    let publish = (
        prop::collection::vec(change, 1..5),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.25, 1..3_000u64),
        prop::option::weighted(0.2, 1..5_000u64),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(changes, gray, go_live_in_ms, revert_in_ms, force)| Step::Publish {
                changes,
                gray,
                go_live_in_ms,
                revert_in_ms,
                force,
            },
        );
    prop_oneof![
        8 => publish,
        2 => (1..20u64).prop_map(Step::Promote),
        1 => (1..20u64).prop_map(Step::Abort),
        3 => (1..20u64).prop_map(Step::Rollback),
        1 => ((1..20u64), any::<bool>()).prop_map(|(id, pinned)| Step::Pin(id, pinned)),
        1 => (1..6u64).prop_map(Step::SetRetention),
        2 => (1..4_000u64).prop_map(Step::Advance),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelState {
    Scheduled,
    Gray,
    Live,
    Ended,
}

#[derive(Clone, Debug)]
struct ModelRelease {
    state: ModelState,
    gray: bool,
    revert: bool,
    changes: BTreeMap<String, BTreeMap<String, Option<i64>>>,
    datasets: Vec<String>,
}

/// What every dataset should contain, driven by the logged events.
#[derive(Default)]
struct Model {
    drafts: BTreeMap<u64, BTreeMap<String, BTreeMap<String, Option<i64>>>>,
    releases: BTreeMap<u64, ModelRelease>,
    live: BTreeMap<String, (Content, Option<u64>)>,
    after: BTreeMap<u64, BTreeMap<String, Content>>,
    before: BTreeMap<u64, BTreeMap<String, Content>>,
}

fn parse(value: Option<&cairn_publishing::JsonText>) -> Option<i64> {
    value.map(|v| v.to_value().expect("json").as_i64().expect("integer"))
}

impl Model {
    fn new() -> Model {
        let mut model = Model::default();
        for d in DATASETS {
            model.live.insert(d.to_string(), (Content::new(), None));
        }
        model
    }

    fn observe(&mut self, event: &PublishingEvent) {
        match event {
            PublishingEvent::DraftCreated {
                draft_id, changes, ..
            }
            | PublishingEvent::DraftAppended {
                draft_id, changes, ..
            } => {
                let draft = self.drafts.entry(*draft_id).or_default();
                for c in changes {
                    draft
                        .entry(c.dataset.to_string())
                        .or_default()
                        .insert(c.key.to_string(), parse(c.value.as_ref()));
                }
            }
            PublishingEvent::ReleaseCreated {
                release_id,
                draft_id,
                state,
                gray,
                revert_at_ms,
                ..
            } => {
                let changes = self.drafts.remove(draft_id).expect("known draft");
                let release = ModelRelease {
                    state: ModelState::Scheduled,
                    gray: gray.is_some(),
                    revert: revert_at_ms.is_some(),
                    datasets: changes.keys().cloned().collect(),
                    changes,
                };
                self.releases.insert(*release_id, release);
                match state {
                    ReleaseState::Scheduled => {}
                    ReleaseState::Gray => self.set(*release_id, ModelState::Gray),
                    _ => self.go_live(*release_id),
                }
            }
            PublishingEvent::ReleasePromoted { release_id, .. } => self.go_live(*release_id),
            PublishingEvent::ReleaseAborted { release_id, .. }
            | PublishingEvent::ReleaseGoLiveRefused { release_id, .. } => {
                self.set(*release_id, ModelState::Ended);
            }
            PublishingEvent::ReleaseWentLive { release_id } => {
                if self.releases[release_id].gray {
                    self.set(*release_id, ModelState::Gray);
                } else {
                    self.go_live(*release_id);
                }
            }
            PublishingEvent::ReleaseReverted {
                release_id,
                restore_release_id,
            } => {
                self.set(*release_id, ModelState::Ended);
                if let Some(restore) = restore_release_id {
                    let before = self.before.remove(release_id).expect("kept before");
                    self.restore(*restore, before);
                }
            }
            PublishingEvent::RolledBack {
                release_id,
                to_release_id,
                ..
            } => {
                let target = self.after[to_release_id].clone();
                let undone: Vec<u64> = self
                    .releases
                    .range(to_release_id + 1..)
                    .filter(|(_, r)| r.datasets.iter().any(|d| target.contains_key(d)))
                    .map(|(id, _)| *id)
                    .collect();
                for id in undone {
                    self.set(id, ModelState::Ended);
                }
                self.before.remove(to_release_id);
                self.restore(*release_id, target);
            }
            _ => {}
        }
    }

    fn set(&mut self, release_id: u64, state: ModelState) {
        if let Some(release) = self.releases.get_mut(&release_id) {
            release.state = state;
        }
    }

    fn go_live(&mut self, release_id: u64) {
        let release = self.releases[&release_id].clone();
        let mut after = BTreeMap::new();
        let mut before = BTreeMap::new();
        for (dataset, keys) in &release.changes {
            let (content, served) = self.live.get_mut(dataset).expect("dataset");
            before.insert(dataset.clone(), content.clone());
            for (key, value) in keys {
                match value {
                    Some(v) => content.insert(key.clone(), *v),
                    None => content.remove(key),
                };
            }
            *served = Some(release_id);
            after.insert(dataset.clone(), content.clone());
        }
        if release.revert {
            self.before.insert(release_id, before);
        }
        self.after.insert(release_id, after);
        self.set(release_id, ModelState::Live);
    }

    fn restore(&mut self, release_id: u64, contents: BTreeMap<String, Content>) {
        for (dataset, content) in &contents {
            self.live
                .insert(dataset.clone(), (content.clone(), Some(release_id)));
        }
        let datasets = contents.keys().cloned().collect();
        self.after.insert(release_id, contents);
        self.releases.insert(
            release_id,
            ModelRelease {
                state: ModelState::Live,
                gray: false,
                revert: false,
                changes: BTreeMap::new(),
                datasets,
            },
        );
    }

    /// What a reader matching the gray rule of `release_id` sees in `dataset`.
    fn gray_content(&self, release_id: u64, dataset: &str) -> Content {
        let mut content = self.live[dataset].0.clone();
        for (key, value) in &self.releases[&release_id].changes[dataset] {
            match value {
                Some(v) => content.insert(key.clone(), *v),
                None => content.remove(key),
            };
        }
        content
    }
}

/// One batch read of every key of every dataset; checks that each dataset's keys come from one
/// release whose content is exactly the expected one.
fn check_reads(h: &Harness, model: &Model, context: &ReadContext, gray: &[u64]) {
    let view = h.publishing.view();
    let keys: Vec<(&str, &str)> = DATASETS
        .iter()
        .flat_map(|d| KEYS.iter().map(move |k| (*d, *k)))
        .collect();
    let served = view.get_many(keys.iter().copied(), context);
    for (d_index, dataset) in DATASETS.iter().enumerate() {
        let slice = &served[d_index * KEYS.len()..(d_index + 1) * KEYS.len()];
        let release_ids: Vec<Option<u64>> = slice
            .iter()
            .map(|s| s.as_ref().expect("dataset exists").release_id)
            .collect();
        assert!(
            release_ids.windows(2).all(|w| w[0] == w[1]),
            "one read mixes releases in {dataset}: {release_ids:?}"
        );
        let mut gray_here = gray
            .iter()
            .copied()
            .filter(|g| model.releases[g].datasets.iter().any(|d| d == dataset));
        let gray_release = gray_here.next();
        assert!(gray_here.next().is_none(), "two gray releases on {dataset}");
        let (expected, expected_release) = match gray_release {
            Some(g) => (model.gray_content(g, dataset), Some(g)),
            None => model.live[*dataset].clone(),
        };
        assert_eq!(
            release_ids[0], expected_release,
            "release serving {dataset}"
        );
        let got: Content = KEYS
            .iter()
            .zip(slice)
            .filter_map(|(k, s)| {
                parse(s.as_ref().and_then(|s| s.value.as_ref())).map(|v| (k.to_string(), v))
            })
            .collect();
        assert_eq!(
            got, expected,
            "content of {dataset} as served by {expected_release:?}"
        );
    }
}

fn check_states(h: &Harness, model: &Model) {
    for (id, release) in &model.releases {
        let Some(info) = h.publishing.release(*id) else {
            continue;
        };
        let ok = match release.state {
            ModelState::Scheduled => info.state == ReleaseState::Scheduled,
            ModelState::Gray => info.state == ReleaseState::Gray,
            ModelState::Live => {
                matches!(info.state, ReleaseState::Live | ReleaseState::Superseded)
            }
            ModelState::Ended => info.state.is_final(),
        };
        assert!(
            ok,
            "release {id}: model {:?}, state {:?}",
            release.state, info.state
        );
    }
}

fn run(steps: &[Step]) -> Harness {
    let mut h = Harness::new();
    let mut model = Model::new();
    for d in DATASETS {
        let guardrails = (d == "c").then(|| json!({"numeric_bounds": [{"pointer": "", "min": 0}]}));
        h.dataset(d, guardrails);
    }
    let mut observed = h.log.len();
    for step in steps {
        match step {
            Step::Publish {
                changes,
                gray,
                go_live_in_ms,
                revert_in_ms,
                force,
            } => {
                let changes: Vec<Change> = changes
                    .iter()
                    .map(|(d, k, v)| {
                        common::change(DATASETS[*d], KEYS[*k], v.map_or(json!(null), |v| json!(v)))
                    })
                    .collect();
                let draft = h.draft(changes);
                let gray = gray.then(|| GrayRule {
                    users: vec![GRAY_USER.into()],
                    ..GrayRule::default()
                });
                let go_live_at_ms = go_live_in_ms.map(|ms| h.now_ms + ms);
                let revert_at_ms = revert_in_ms.map(|ms| go_live_at_ms.unwrap_or(h.now_ms) + ms);
                let force = force.then_some("forced by the test");
                let _ = h.release_with(draft, gray, go_live_at_ms, revert_at_ms, force);
            }
            Step::Promote(id) => {
                let _ = h.run(PublishingCommand::Promote { release_id: *id });
            }
            Step::Abort(id) => {
                let _ = h.run(PublishingCommand::Abort { release_id: *id });
            }
            Step::Rollback(id) => {
                let _ = h.rollback(*id);
            }
            Step::Pin(id, pinned) => {
                let _ = h.run(PublishingCommand::Pin {
                    release_id: *id,
                    pinned: *pinned,
                });
            }
            Step::SetRetention(n) => {
                let _ = h.run(PublishingCommand::SetRetention {
                    releases_retained_max: *n,
                });
            }
            Step::Advance(ms) => {
                h.advance(*ms);
            }
        }
        for (event, _, _) in &h.log[observed..] {
            model.observe(event);
        }
        observed = h.log.len();
        check_states(&h, &model);
        check_reads(&h, &model, &ReadContext::default(), &[]);
        let gray = model
            .releases
            .iter()
            .filter(|(_, r)| r.state == ModelState::Gray)
            .map(|(id, _)| *id)
            .collect::<Vec<_>>();
        // The gray user is in every gray rule; gray releases never share a dataset.
        check_reads(&h, &model, &user(GRAY_USER), &gray);
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn reads_match_the_model_and_never_mix_releases(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps);
    }

    #[test]
    fn replay_and_restore_give_the_same_state_and_bytes(steps in prop::collection::vec(step(), 1..60)) {
        let h = run(&steps);
        h.check_replay_and_restore();
        // Decoding what was encoded and encoding again is the identity.
        let bytes = h.publishing.encode().expect("encodes");
        let again = Publishing::restore(&bytes).expect("restores").encode().expect("encodes");
        prop_assert_eq!(bytes, again);
    }
}
