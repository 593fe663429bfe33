//! A harness that drives the state machine like the engine does: decide, log, apply; due timers.

#![allow(dead_code)]

use cairn_publishing::{
    Actor, Change, GrayRule, GuardrailsSpec, Publishing, PublishingCommand, PublishingError,
    PublishingEvent, PublishingReply, ReadContext, ReleaseState, Served,
};
use serde_json::Value;
use std::collections::BTreeMap;

pub const NOW_MS: u64 = 1_800_000_000_000;

pub struct Harness {
    pub publishing: Publishing,
    pub lsn: u64,
    pub now_ms: u64,
    pub log: Vec<(PublishingEvent, u64, u64)>,
}

pub fn actor() -> Actor {
    Actor {
        name: "tester".into(),
        request_id: Some("r".into()),
    }
}

pub fn change(dataset: &str, key: &str, value: Value) -> Change {
    Change {
        dataset: dataset.into(),
        key: key.into(),
        value: if value.is_null() { None } else { Some(value) },
    }
}

pub fn user(id: &str) -> ReadContext {
    ReadContext {
        user_id: Some(id.into()),
        ..ReadContext::default()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            publishing: Publishing::default(),
            lsn: 0,
            now_ms: NOW_MS,
            log: Vec::new(),
        }
    }

    pub fn apply(&mut self, event: PublishingEvent) {
        self.lsn += 1;
        self.publishing.apply(&event, self.lsn, self.now_ms);
        self.log.push((event, self.lsn, self.now_ms));
    }

    pub fn run(&mut self, command: PublishingCommand) -> Result<PublishingReply, PublishingError> {
        let before = self.publishing.encode().expect("encodes");
        let decided = self.publishing.decide(&command, &actor(), self.now_ms);
        let after = self.publishing.encode().expect("encodes");
        assert_eq!(before, after, "decide changed the state");
        if let Err(refusal) = &decided {
            // Refusals are logged for retries: they must round-trip too.
            let bytes = postcard::to_stdvec(refusal).expect("refusal encodes");
            let back: PublishingError = postcard::from_bytes(&bytes).expect("refusal decodes");
            assert_eq!(&back, refusal);
        }
        let (events, reply) = decided?;
        let bytes = postcard::to_stdvec(&reply).expect("reply encodes");
        let back: PublishingReply = postcard::from_bytes(&bytes).expect("reply decodes");
        assert_eq!(back, reply);
        for event in events {
            self.apply(event);
        }
        Ok(reply)
    }

    /// Moves time on and applies due timers, like the sequencer's tick; returns them.
    pub fn advance(&mut self, ms: u64) -> Vec<PublishingEvent> {
        self.now_ms += ms;
        let mut all = Vec::new();
        loop {
            let due = self.publishing.due(self.now_ms, 16);
            if due.is_empty() {
                return all;
            }
            for event in due {
                all.push(event.clone());
                self.apply(event);
            }
        }
    }

    pub fn dataset(&mut self, name: &str, guardrails: Option<Value>) {
        let guardrails: Option<GuardrailsSpec> =
            guardrails.map(|g| serde_json::from_value(g).expect("guardrails parse"));
        self.run(PublishingCommand::CreateDataset {
            name: name.into(),
            guardrails,
            json_schema: None,
        })
        .expect("dataset created");
    }

    pub fn draft(&mut self, changes: Vec<Change>) -> u64 {
        match self
            .run(PublishingCommand::CreateDraft {
                note: "test draft".into(),
                changes,
            })
            .expect("draft created")
        {
            PublishingReply::Draft { draft_id, .. } => draft_id,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub fn release_with(
        &mut self,
        draft_id: u64,
        gray: Option<GrayRule>,
        go_live_at_ms: Option<u64>,
        revert_at_ms: Option<u64>,
        force_reason: Option<&str>,
    ) -> Result<(u64, ReleaseState), PublishingError> {
        match self.run(PublishingCommand::CreateRelease {
            draft_id,
            gray,
            go_live_at_ms,
            revert_at_ms,
            force_reason: force_reason.map(String::from),
        })? {
            PublishingReply::Release { release_id, state } => Ok((release_id, state)),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Drafts and releases `changes` live for everyone; returns the release.
    pub fn publish(&mut self, changes: Vec<Change>) -> u64 {
        let draft = self.draft(changes);
        let (release_id, state) = self
            .release_with(draft, None, None, None, None)
            .expect("released");
        assert_eq!(state, ReleaseState::Live);
        release_id
    }

    pub fn rollback(&mut self, to_release_id: u64) -> Result<u64, PublishingError> {
        match self.run(PublishingCommand::Rollback {
            to_release_id,
            reason: "test rollback".into(),
        })? {
            PublishingReply::Release { release_id, .. } => Ok(release_id),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub fn read(&self, dataset: &str, key: &str) -> Served {
        self.publishing
            .view()
            .get(dataset, key, &ReadContext::default())
            .expect("dataset exists")
    }

    pub fn state(&self, release_id: u64) -> ReleaseState {
        self.publishing
            .release(release_id)
            .expect("release exists")
            .state
    }

    /// Everything a reader with `context` sees in `dataset`, and the release serving it.
    pub fn content(
        &self,
        dataset: &str,
        context: &ReadContext,
    ) -> (BTreeMap<String, Value>, Option<u64>) {
        let (items, release_id) = self
            .publishing
            .view()
            .scan(dataset, None, usize::MAX, context)
            .expect("dataset exists");
        let items = items
            .into_iter()
            .map(|(k, v)| (k, v.to_value().expect("json")))
            .collect();
        (items, release_id)
    }

    /// Replaying the log into a fresh state, and encoding then restoring, give the same state
    /// and the same bytes.
    pub fn check_replay_and_restore(&self) {
        // Replay decodes each event as the engine does (postcard), then applies it.
        let mut replayed = Publishing::default();
        for (event, lsn, at_ms) in &self.log {
            let bytes = postcard::to_stdvec(event).expect("event encodes");
            let decoded: PublishingEvent = postcard::from_bytes(&bytes).expect("event decodes");
            assert_eq!(&decoded, event);
            replayed.apply(&decoded, *lsn, *at_ms);
        }
        assert_eq!(
            replayed, self.publishing,
            "replay differs from the live state"
        );
        let live_bytes = self.publishing.encode().expect("encodes");
        assert_eq!(replayed.encode().expect("encodes"), live_bytes);
        let restored = Publishing::restore(&live_bytes).expect("restores");
        assert_eq!(
            restored, self.publishing,
            "restore differs from the live state"
        );
        assert_eq!(restored.encode().expect("encodes"), live_bytes);
        assert_eq!(
            restored.state_hash().expect("hashes"),
            self.publishing.state_hash().expect("hashes")
        );
    }
}
