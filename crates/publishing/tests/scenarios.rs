//! Scenarios of the publishing contract in API.md, one rule per test.

mod common;

use cairn_publishing::{
    GrayRule, PublishingCommand, PublishingError, PublishingEvent, PublishingReply, ReadContext,
    ReleaseKind, ReleaseState, Rule,
};
use common::{Harness, change, user};
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn a_release_across_datasets_is_one_atomic_step() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    h.dataset("promos", None);
    let first = h.publish(vec![
        change("prices", "sku1", json!({"amount": 100})),
        change("promos", "spring", json!({"off": 10})),
    ]);
    let draft = h.draft(vec![
        change("prices", "sku1", json!({"amount": 90})),
        change("promos", "spring", json!({"off": 20})),
    ]);
    let before = h.publishing.view();
    let (second, state) = h
        .release_with(draft, None, None, None, None)
        .expect("released");
    assert_eq!(state, ReleaseState::Live);
    let after = h.publishing.view();
    let keys = [("prices", "sku1"), ("promos", "spring")];
    let old = before.get_many(keys, &ReadContext::default());
    let new = after.get_many(keys, &ReadContext::default());
    for served in &old {
        let served = served.as_ref().expect("dataset exists");
        assert_eq!(served.release_id, Some(first));
    }
    for served in &new {
        let served = served.as_ref().expect("dataset exists");
        assert_eq!(served.release_id, Some(second));
    }
    assert_eq!(
        old[0]
            .as_ref()
            .and_then(|s| s.value.clone())
            .map(|v| v.to_string()),
        Some(r#"{"amount":100}"#.to_string())
    );
    assert_eq!(
        new[1]
            .as_ref()
            .and_then(|s| s.value.clone())
            .map(|v| v.to_string()),
        Some(r#"{"off":20}"#.to_string())
    );
    let release = h.publishing.release(second).expect("exists");
    assert_eq!(
        release.datasets,
        vec!["prices".to_string(), "promos".to_string()]
    );
    h.check_replay_and_restore();
}

#[test]
fn a_missing_key_reads_as_none_with_the_serving_release_and_an_unknown_dataset_as_none() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    assert_eq!(h.read("prices", "x").release_id, None);
    let release = h.publish(vec![change("prices", "a", json!(1))]);
    let served = h.read("prices", "missing");
    assert_eq!(served.value, None);
    assert_eq!(served.release_id, Some(release));
    let view = h.publishing.view();
    assert!(view.get("nope", "a", &ReadContext::default()).is_none());
    let many = view.get_many([("nope", "a"), ("prices", "a")], &ReadContext::default());
    assert!(many[0].is_none());
    assert_eq!(many[1].as_ref().and_then(|s| s.release_id), Some(release));
}

#[test]
fn deleting_a_key_removes_it_from_the_next_release() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    h.publish(vec![
        change("prices", "a", json!(1)),
        change("prices", "b", json!(2)),
    ]);
    h.publish(vec![change("prices", "a", json!(null))]);
    assert_eq!(h.read("prices", "a").value, None);
    assert!(h.read("prices", "b").value.is_some());
    assert_eq!(h.publishing.dataset("prices").expect("exists").keys, 1);
}

#[test]
fn a_ten_percent_gray_rule_serves_ten_percent_of_users_the_same_ones_every_time() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let base = h.publish(vec![change("prices", "a", json!(1))]);
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let gray = GrayRule {
        percent_bp: Some(1000),
        ..GrayRule::default()
    };
    let (release, state) = h
        .release_with(draft, Some(gray), None, None, None)
        .expect("released");
    assert_eq!(state, ReleaseState::Gray);
    let chosen = |view: &cairn_publishing::View| -> BTreeSet<u32> {
        (0..100_000u32)
            .filter(|i| {
                let served = view
                    .get("prices", "a", &user(&format!("user-{i}")))
                    .expect("dataset exists");
                served.release_id == Some(release)
            })
            .collect()
    };
    let first = chosen(&h.publishing.view());
    assert!(
        (9_000..=11_000).contains(&first.len()),
        "10% +/- 1% of 100000, got {}",
        first.len()
    );
    assert_eq!(
        chosen(&h.publishing.view()),
        first,
        "the same users every time"
    );
    let restored = cairn_publishing::Publishing::restore(&h.publishing.encode().expect("encodes"))
        .expect("restores");
    assert_eq!(chosen(&restored.view()), first, "and after a restore");
    // Without a matching context: the release live for everyone.
    assert_eq!(h.read("prices", "a").release_id, Some(base));
    h.check_replay_and_restore();
}

#[test]
fn gray_users_channels_regions_and_segments_each_match() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let base = h.publish(vec![change("prices", "a", json!(1))]);
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let gray = GrayRule {
        percent_bp: None,
        users: vec!["vip-1".into()],
        channels: vec!["app".into()],
        regions: vec!["eu".into()],
        segments: vec!["beta".into()],
    };
    let (release, _) = h
        .release_with(draft, Some(gray), None, None, None)
        .expect("released");
    let view = h.publishing.view();
    let served =
        |context: ReadContext| view.get("prices", "a", &context).and_then(|s| s.release_id);
    assert_eq!(served(user("vip-1")), Some(release));
    assert_eq!(served(user("other")), Some(base));
    let channel = ReadContext {
        channel: Some("app".into()),
        ..ReadContext::default()
    };
    assert_eq!(served(channel), Some(release));
    let region = ReadContext {
        region: Some("eu".into()),
        ..ReadContext::default()
    };
    assert_eq!(served(region), Some(release));
    let segments = ReadContext {
        segments: vec!["x".into(), "beta".into()],
        ..ReadContext::default()
    };
    assert_eq!(served(segments), Some(release));
    assert_eq!(served(ReadContext::default()), Some(base));
}

#[test]
fn promote_makes_a_gray_release_live_for_everyone_and_abort_drops_it() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let base = h.publish(vec![change("prices", "a", json!(1))]);
    let gray = GrayRule {
        users: vec!["u".into()],
        ..GrayRule::default()
    };
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let (promoted, _) = h
        .release_with(draft, Some(gray.clone()), None, None, None)
        .expect("released");
    let reply = h.run(PublishingCommand::Promote {
        release_id: promoted,
    });
    assert_eq!(
        reply,
        Ok(PublishingReply::Release {
            release_id: promoted,
            state: ReleaseState::Live
        })
    );
    assert_eq!(h.read("prices", "a").release_id, Some(promoted));
    assert_eq!(h.state(base), ReleaseState::Superseded);

    let draft = h.draft(vec![change("prices", "a", json!(3))]);
    let (aborted, _) = h
        .release_with(draft, Some(gray), None, None, None)
        .expect("released");
    h.run(PublishingCommand::Abort {
        release_id: aborted,
    })
    .expect("aborted");
    assert_eq!(h.state(aborted), ReleaseState::Aborted);
    let served = h
        .publishing
        .view()
        .get("prices", "a", &user("u"))
        .expect("exists");
    assert_eq!(
        served.release_id,
        Some(promoted),
        "an aborted gray release is not served"
    );
    let again = h.run(PublishingCommand::Promote {
        release_id: aborted,
    });
    assert!(matches!(
        again,
        Err(PublishingError::InvalidReleaseState {
            state: ReleaseState::Aborted,
            ..
        })
    ));
    h.check_replay_and_restore();
}

#[test]
fn a_scheduled_release_goes_live_at_its_log_time_once() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let base = h.publish(vec![change("prices", "a", json!(1))]);
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let go_live_at_ms = h.now_ms + 1_000;
    let (release, state) = h
        .release_with(draft, None, Some(go_live_at_ms), None, None)
        .expect("scheduled");
    assert_eq!(state, ReleaseState::Scheduled);
    assert!(h.advance(999).is_empty());
    assert_eq!(h.read("prices", "a").release_id, Some(base));
    let fired = h.advance(1);
    assert_eq!(
        fired,
        vec![PublishingEvent::ReleaseWentLive {
            release_id: release
        }]
    );
    assert_eq!(h.read("prices", "a").release_id, Some(release));
    assert_eq!(h.state(release), ReleaseState::Live);
    assert!(
        h.publishing.due(h.now_ms + 10_000, 10).is_empty(),
        "not due twice"
    );
    // Applied again (a duplicate after a restart): nothing but the audit trail changes.
    let mut copy = h.publishing.clone();
    copy.apply(&fired[0], 999, h.now_ms);
    assert_eq!(copy.releases(None, 100), h.publishing.releases(None, 100));
    assert_eq!(copy.datasets(), h.publishing.datasets());
    h.check_replay_and_restore();
}

#[test]
fn a_scheduled_revert_restores_the_content_before_the_release_as_a_new_release() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let base = h.publish(vec![
        change("prices", "a", json!(1)),
        change("prices", "b", json!(1)),
    ]);
    let before = h.content("prices", &ReadContext::default()).0;
    let draft = h.draft(vec![
        change("prices", "a", json!(2)),
        change("prices", "c", json!(3)),
    ]);
    let revert_at_ms = h.now_ms + 5_000;
    let (release, state) = h
        .release_with(draft, None, None, Some(revert_at_ms), None)
        .expect("released");
    assert_eq!(state, ReleaseState::Live);
    // While its revert is pending the release holds its datasets.
    let other = h.draft(vec![change("prices", "b", json!(9))]);
    assert!(matches!(
        h.release_with(other, None, None, None, None),
        Err(PublishingError::ReleaseInProgress { .. })
    ));
    let fired = h.advance(5_000);
    let restore = match fired.as_slice() {
        [
            PublishingEvent::ReleaseReverted {
                release_id,
                restore_release_id: Some(restore),
            },
        ] if *release_id == release => *restore,
        other => panic!("unexpected timers {other:?}"),
    };
    assert_eq!(h.state(release), ReleaseState::RolledBack);
    let (content, served_by) = h.content("prices", &ReadContext::default());
    assert_eq!(content, before);
    assert_eq!(served_by, Some(restore));
    let info = h.publishing.release(restore).expect("exists");
    assert_eq!(info.kind, ReleaseKind::Revert);
    assert_eq!(info.restores, Some(release));
    assert_eq!(h.state(base), ReleaseState::Superseded);
    assert!(h.advance(60_000).is_empty(), "not reverted twice");
    h.check_replay_and_restore();
}

#[test]
fn a_scheduled_gray_release_goes_gray_then_its_revert_ends_the_gray() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let base = h.publish(vec![change("prices", "a", json!(1))]);
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let gray = GrayRule {
        users: vec!["u".into()],
        ..GrayRule::default()
    };
    let (release, _) = h
        .release_with(
            draft,
            Some(gray),
            Some(h.now_ms + 100),
            Some(h.now_ms + 200),
            None,
        )
        .expect("scheduled");
    h.advance(100);
    assert_eq!(h.state(release), ReleaseState::Gray);
    let served = h
        .publishing
        .view()
        .get("prices", "a", &user("u"))
        .expect("exists");
    assert_eq!(served.release_id, Some(release));
    h.advance(100);
    assert_eq!(h.state(release), ReleaseState::RolledBack);
    let served = h
        .publishing
        .view()
        .get("prices", "a", &user("u"))
        .expect("exists");
    assert_eq!(served.release_id, Some(base));
    h.check_replay_and_restore();
}

#[test]
fn go_live_and_revert_due_together_happen_in_order_on_later_ticks() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    h.publish(vec![change("prices", "a", json!(1))]);
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let (release, _) = h
        .release_with(draft, None, Some(h.now_ms + 10), Some(h.now_ms + 20), None)
        .expect("scheduled");
    // The sequencer was away: both times passed.
    let fired = h.advance(1_000);
    assert_eq!(fired.len(), 2);
    assert!(matches!(fired[0], PublishingEvent::ReleaseWentLive { .. }));
    assert!(matches!(fired[1], PublishingEvent::ReleaseReverted { .. }));
    assert_eq!(h.state(release), ReleaseState::RolledBack);
    assert_eq!(
        h.read("prices", "a").value.map(|v| v.to_string()),
        Some("1".into())
    );
    h.check_replay_and_restore();
}

#[test]
fn rollback_restores_every_dataset_it_touched_to_its_exact_content_and_removes_later_keys() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    h.dataset("promos", None);
    let mut releases = Vec::new();
    let mut contents = Vec::new();
    for i in 0..5 {
        let release = h.publish(vec![
            change("prices", &format!("k{i}"), json!(i)),
            change("prices", "shared", json!({"v": i})),
            change("promos", "p", json!(i * 10)),
        ]);
        releases.push(release);
        contents.push((
            h.content("prices", &ReadContext::default()).0,
            h.content("promos", &ReadContext::default()).0,
        ));
    }
    for &i in &[2usize, 0, 4, 1, 3, 0] {
        let restore = h.rollback(releases[i]).expect("rolled back");
        let prices = h.content("prices", &ReadContext::default());
        let promos = h.content("promos", &ReadContext::default());
        assert_eq!(
            prices.0, contents[i].0,
            "prices after rollback to {}",
            releases[i]
        );
        assert_eq!(promos.0, contents[i].1);
        assert_eq!(prices.1, Some(restore));
        assert_eq!(promos.1, Some(restore));
    }
    h.check_replay_and_restore();
}

#[test]
fn rollback_marks_undone_releases_rolled_back_and_cancels_gray_ones() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    let target = h.publish(vec![change("prices", "a", json!(1))]);
    let undone = h.publish(vec![
        change("prices", "a", json!(2)),
        change("prices", "b", json!(2)),
    ]);
    let draft = h.draft(vec![change("prices", "a", json!(3))]);
    let gray = GrayRule {
        users: vec!["u".into()],
        ..GrayRule::default()
    };
    let (gray_release, _) = h
        .release_with(draft, Some(gray), None, None, None)
        .expect("gray");
    let restore = h.rollback(target).expect("rolled back");
    assert_eq!(h.state(undone), ReleaseState::RolledBack);
    assert_eq!(h.state(gray_release), ReleaseState::Aborted);
    assert_eq!(h.state(restore), ReleaseState::Live);
    let served = h
        .publishing
        .view()
        .get("prices", "a", &user("u"))
        .expect("exists");
    assert_eq!(served.release_id, Some(restore));
    assert_eq!(
        h.read("prices", "b").value,
        None,
        "keys added later are removed"
    );
    let audit = h.publishing.release_audit(restore);
    assert!(
        audit
            .iter()
            .any(|e| e.reason.as_deref() == Some("test rollback"))
    );
    h.check_replay_and_restore();
}

#[test]
fn rollback_needs_a_release_that_went_live_for_everyone() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    h.publish(vec![change("prices", "a", json!(1))]);
    let draft = h.draft(vec![change("prices", "a", json!(2))]);
    let gray = GrayRule {
        users: vec!["u".into()],
        ..GrayRule::default()
    };
    let (gray_release, _) = h
        .release_with(draft, Some(gray), None, None, None)
        .expect("gray");
    let refused = h.rollback(gray_release).expect_err("refused");
    assert_eq!(refused.code(), "not_a_rollback_target");
    assert_eq!(refused.http_status(), 409);
    let unknown = h.rollback(99).expect_err("refused");
    assert_eq!((unknown.code(), unknown.http_status()), ("not_found", 404));
}

#[test]
fn retention_drops_old_contents_but_keeps_pinned_and_live_ones() {
    let mut h = Harness::new();
    h.run(PublishingCommand::SetRetention {
        releases_retained_max: 2,
    })
    .expect("set");
    h.dataset("prices", None);
    h.dataset("other", None);
    let only_other = h.publish(vec![change("other", "x", json!(1))]);
    let first = h.publish(vec![change("prices", "a", json!(1))]);
    h.run(PublishingCommand::Pin {
        release_id: first,
        pinned: true,
    })
    .expect("pinned");
    let mut later = Vec::new();
    for i in 2..6 {
        later.push(h.publish(vec![change("prices", "a", json!(i))]));
    }
    let kept: Vec<bool> = later
        .iter()
        .map(|r| h.publishing.release(*r).expect("exists").content_retained)
        .collect();
    // The newest two that nothing protects, plus the one live now.
    assert_eq!(kept, vec![false, true, true, true]);
    assert!(
        h.publishing
            .release(first)
            .expect("exists")
            .content_retained,
        "pinned"
    );
    assert!(
        h.publishing
            .release(only_other)
            .expect("exists")
            .content_retained,
        "still live on its dataset"
    );
    let refused = h.rollback(later[0]).expect_err("dropped");
    assert_eq!(refused.code(), "not_a_rollback_target");
    h.rollback(first)
        .expect("a pinned release is a rollback target");
    assert_eq!(
        h.read("prices", "a").value.map(|v| v.to_string()),
        Some("1".into())
    );
    h.check_replay_and_restore();
}

fn guarded(h: &mut Harness) {
    h.dataset(
        "prices",
        Some(json!({
            "json_schema": {"type": "object", "required": ["amount"]},
            "numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 100000000}],
            "max_change_pct": [{"pointer": "/amount", "pct": 50}],
            "max_changed_keys": 3
        })),
    );
}

#[test]
fn guardrails_refuse_a_release_listing_each_key_and_rule() {
    let mut h = Harness::new();
    guarded(&mut h);
    h.publish(vec![change("prices", "a", json!({"amount": 1000}))]);
    let draft = h.draft(vec![
        change("prices", "a", json!({"amount": 400})),
        change("prices", "b", json!({"amount": 0})),
        change("prices", "c", json!({"price": 5})),
    ]);
    let refused = h
        .release_with(draft, None, None, None, None)
        .expect_err("refused");
    assert_eq!(
        (refused.code(), refused.http_status()),
        ("guardrail_violation", 422)
    );
    let PublishingError::GuardrailViolation {
        violations,
        violations_total,
    } = &refused
    else {
        panic!("unexpected {refused:?}");
    };
    let found: Vec<(&str, Option<&str>, Rule)> = violations
        .iter()
        .map(|v| (v.dataset.as_str(), v.key.as_deref(), v.rule))
        .collect();
    assert_eq!(
        found,
        vec![
            ("prices", Some("a"), Rule::MaxChangePct),
            ("prices", Some("b"), Rule::NumericBounds),
            ("prices", Some("c"), Rule::JsonSchema),
            // A new key is checked against bounds only, not max_change_pct.
            ("prices", Some("c"), Rule::NumericBounds),
        ]
    );
    assert_eq!(*violations_total, 4);
    let details = refused.details();
    assert_eq!(details["violations"][0]["rule"], "max_change_pct");
    assert_eq!(details["violations"][0]["key"], "a");
    // The diff shows the same violations, with before and after.
    let diff = h.publishing.draft_diff(draft, None, 10).expect("diff");
    assert_eq!(diff.violations_total, 4);
    assert_eq!(diff.changes.len(), 3);
    assert_eq!(
        diff.changes[0].before.as_ref().map(|v| v.to_string()),
        Some(r#"{"amount":1000}"#.into())
    );
    assert_eq!(diff.changes[1].before, None);
    // Nothing was released.
    assert_eq!(h.publishing.draft(draft).expect("exists").release_id, None);
}

#[test]
fn too_many_changed_keys_is_refused() {
    let mut h = Harness::new();
    guarded(&mut h);
    let draft = h.draft(
        (0..4)
            .map(|i| change("prices", &format!("k{i}"), json!({"amount": 5})))
            .collect(),
    );
    let refused = h
        .release_with(draft, None, None, None, None)
        .expect_err("refused");
    let PublishingError::GuardrailViolation { violations, .. } = refused else {
        panic!("unexpected");
    };
    assert_eq!(violations[0].rule, Rule::MaxChangedKeys);
    assert_eq!(violations[0].key, None);
}

#[test]
fn an_admin_forces_a_release_with_a_reason_recorded_in_the_audit_trail() {
    let mut h = Harness::new();
    guarded(&mut h);
    h.publish(vec![change("prices", "a", json!({"amount": 1000}))]);
    let draft = h.draft(vec![change("prices", "a", json!({"amount": 100}))]);
    let (release, state) = h
        .release_with(
            draft,
            None,
            None,
            None,
            Some("clearance sale approved by CFO"),
        )
        .expect("forced");
    assert_eq!(state, ReleaseState::Live);
    let info = h.publishing.release(release).expect("exists");
    assert_eq!(
        info.force_reason.as_deref(),
        Some("clearance sale approved by CFO")
    );
    assert_eq!(info.forced_violations_total, 1);
    let audit = h.publishing.release_audit(release);
    let created = audit
        .iter()
        .find(|e| e.action == cairn_publishing::AuditAction::ReleaseCreated)
        .expect("recorded");
    assert_eq!(
        created.force_reason.as_deref(),
        Some("clearance sale approved by CFO")
    );
    assert_eq!(created.violations.len(), 1);
    assert_eq!(
        created.actor.as_ref().map(|a| a.name.as_str()),
        Some("tester")
    );
    assert_eq!(created.at_ms, h.now_ms);
    h.check_replay_and_restore();
}

#[test]
fn a_scheduled_release_that_fails_its_guardrails_at_go_live_is_aborted() {
    let mut h = Harness::new();
    h.dataset("prices", None);
    h.publish(vec![change("prices", "a", json!({"amount": 1000}))]);
    let draft = h.draft(vec![change("prices", "a", json!({"amount": 100}))]);
    let (release, _) = h
        .release_with(draft, None, Some(h.now_ms + 1_000), None, None)
        .expect("scheduled");
    let guardrails =
        serde_json::from_value(json!({"numeric_bounds": [{"pointer": "/amount", "min": 500}]}))
            .expect("parses");
    h.run(PublishingCommand::SetGuardrails {
        dataset: "prices".into(),
        guardrails: Some(guardrails),
    })
    .expect("set");
    let fired = h.advance(1_000);
    assert!(matches!(
        fired.as_slice(),
        [PublishingEvent::ReleaseGoLiveRefused {
            violations_total: 1,
            ..
        }]
    ));
    assert_eq!(h.state(release), ReleaseState::Aborted);
    assert_eq!(
        h.read("prices", "a").value.map(|v| v.to_string()),
        Some(r#"{"amount":1000}"#.into())
    );
    let audit = h.publishing.release_audit(release);
    let refused = audit.last().expect("recorded");
    assert_eq!(
        refused.action,
        cairn_publishing::AuditAction::ReleaseGoLiveRefused
    );
    assert_eq!(refused.violations[0].rule, Rule::NumericBounds);
    h.check_replay_and_restore();
}

#[test]
fn only_one_gray_or_scheduled_release_per_dataset_at_a_time() {
    let mut h = Harness::new();
    h.dataset("a", None);
    h.dataset("b", None);
    let gray = GrayRule {
        percent_bp: Some(5000),
        ..GrayRule::default()
    };
    let first = h.draft(vec![change("a", "k", json!(1))]);
    let (holder, _) = h
        .release_with(first, Some(gray), None, None, None)
        .expect("gray");
    let second = h.draft(vec![change("a", "k", json!(2)), change("b", "k", json!(2))]);
    let refused = h
        .release_with(second, None, None, None, None)
        .expect_err("in progress");
    assert_eq!(
        refused,
        PublishingError::ReleaseInProgress {
            dataset: "a".into(),
            release_id: holder
        }
    );
    let third = h.draft(vec![change("b", "k", json!(3))]);
    h.release_with(third, None, None, None, None)
        .expect("other dataset is free");
    h.run(PublishingCommand::Abort { release_id: holder })
        .expect("aborted");
    h.release_with(second, None, None, None, None)
        .expect("free again");
}

#[test]
fn a_draft_is_released_once() {
    let mut h = Harness::new();
    h.dataset("a", None);
    let draft = h.draft(vec![change("a", "k", json!(1))]);
    let (release, _) = h
        .release_with(draft, None, None, None, None)
        .expect("released");
    let again = h
        .release_with(draft, None, None, None, None)
        .expect_err("refused");
    assert_eq!(
        again,
        PublishingError::DraftAlreadyReleased {
            draft_id: draft,
            release_id: release
        }
    );
    assert_eq!(again.code(), "draft_already_released");
    let append = h.run(PublishingCommand::AppendToDraft {
        draft_id: draft,
        changes: vec![change("a", "x", json!(1))],
    });
    assert_eq!(
        append.expect_err("refused").code(),
        "draft_already_released"
    );
}

#[test]
fn large_drafts_are_built_in_chunks_and_oversized_chunks_are_refused() {
    let mut h = Harness::new();
    h.dataset("a", None);
    let draft = h.draft(vec![change("a", "k0", json!(0))]);
    for chunk in 0..4 {
        let changes = (0..250)
            .map(|i| change("a", &format!("k{}", chunk * 250 + i), json!(i)))
            .collect();
        let reply = h
            .run(PublishingCommand::AppendToDraft {
                draft_id: draft,
                changes,
            })
            .expect("appended");
        assert!(matches!(reply, PublishingReply::Draft { .. }));
    }
    assert_eq!(
        h.publishing.draft(draft).expect("exists").changes_total,
        1000
    );
    let big = "x".repeat(60_000);
    let oversized = (0..60)
        .map(|i| change("a", &format!("big{i}"), json!(big)))
        .collect();
    let refused = h
        .run(PublishingCommand::AppendToDraft {
            draft_id: draft,
            changes: oversized,
        })
        .expect_err("too large");
    assert_eq!(
        (refused.code(), refused.http_status()),
        ("payload_too_large", 413)
    );
    h.release_with(draft, None, None, None, None)
        .expect("released");
    assert_eq!(h.publishing.view().len("a"), Some(1000));
    // Page through the dataset.
    let (page, _) = h
        .publishing
        .view()
        .scan("a", Some("k998"), 10, &ReadContext::default())
        .expect("exists");
    assert_eq!(
        page.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        vec!["k999"]
    );
    h.check_replay_and_restore();
}

#[test]
fn a_release_is_superseded_when_every_key_it_set_is_replaced() {
    let mut h = Harness::new();
    h.dataset("a", None);
    let first = h.publish(vec![change("a", "x", json!(1)), change("a", "y", json!(1))]);
    h.publish(vec![change("a", "x", json!(2))]);
    assert_eq!(h.state(first), ReleaseState::Live);
    h.publish(vec![change("a", "y", json!(null))]);
    assert_eq!(h.state(first), ReleaseState::Superseded);
    h.check_replay_and_restore();
}

#[test]
fn refusals_have_stable_codes_and_statuses() {
    let mut h = Harness::new();
    h.dataset("a", None);
    let exists = h
        .run(PublishingCommand::CreateDataset {
            name: "a".into(),
            guardrails: None,
            json_schema: None,
        })
        .expect_err("exists");
    assert_eq!(
        (exists.code(), exists.http_status()),
        ("already_exists", 409)
    );
    let unknown = h
        .run(PublishingCommand::CreateDraft {
            note: String::new(),
            changes: vec![change("nope", "k", json!(1))],
        })
        .expect_err("unknown");
    assert_eq!((unknown.code(), unknown.http_status()), ("not_found", 404));
    let bad_schema = h
        .run(PublishingCommand::CreateDataset {
            name: "b".into(),
            guardrails: None,
            json_schema: Some(json!({"type": 12})),
        })
        .expect_err("bad schema");
    assert_eq!(
        (bad_schema.code(), bad_schema.http_status()),
        ("invalid_argument", 400)
    );
    let draft = h.draft(vec![change("a", "k", json!(1))]);
    let past_revert = h
        .release_with(draft, None, None, Some(h.now_ms), None)
        .expect_err("revert in the past");
    assert_eq!(past_revert.code(), "invalid_argument");
    let empty_gray = h
        .release_with(draft, Some(GrayRule::default()), None, None, None)
        .expect_err("empty gray");
    assert_eq!(empty_gray.code(), "invalid_argument");
}

#[test]
fn a_top_level_json_schema_is_a_guardrail() {
    let mut h = Harness::new();
    h.run(PublishingCommand::CreateDataset {
        name: "a".into(),
        guardrails: None,
        json_schema: Some(json!({"type": "integer"})),
    })
    .expect("created");
    let draft = h.draft(vec![change("a", "k", json!("text"))]);
    let refused = h
        .release_with(draft, None, None, None, None)
        .expect_err("refused");
    assert_eq!(refused.code(), "guardrail_violation");
    h.check_replay_and_restore();
}

#[test]
fn state_and_views_can_be_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<cairn_publishing::Publishing>();
    shared::<cairn_publishing::View>();
}

#[test]
fn a_draft_diff_pages_by_dataset_and_key() {
    let mut h = Harness::new();
    h.dataset("a", None);
    h.dataset("b", None);
    h.publish(vec![change("a", "k1", json!(1))]);
    let draft = h.draft(vec![
        change("a", "k1", json!(2)),
        change("a", "k2", json!(2)),
        change("b", "k1", json!(null)),
    ]);
    let first = h.publishing.draft_diff(draft, None, 2).expect("diff");
    assert_eq!(first.changes_total, 3);
    assert_eq!(first.changes.len(), 2);
    assert_eq!(
        first.changes[0].before.as_ref().map(|v| v.to_string()),
        Some("1".into())
    );
    let cursor = first.next_after.clone().expect("more");
    assert_eq!(cursor, ("a".to_string(), "k2".to_string()));
    let second = h
        .publishing
        .draft_diff(draft, Some((&cursor.0, &cursor.1)), 2)
        .expect("diff");
    assert_eq!(second.changes.len(), 1);
    assert_eq!(
        (
            second.changes[0].dataset.as_str(),
            second.changes[0].after.as_ref()
        ),
        ("b", None)
    );
    assert_eq!(second.next_after, None);
}

#[test]
fn the_audit_trail_pages_by_sequence() {
    let mut h = Harness::new();
    h.dataset("a", None);
    h.publish(vec![change("a", "k", json!(1))]);
    let all = h.publishing.audit(None, 100);
    assert_eq!(all.len(), 3, "dataset, draft, release");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let rest = h.publishing.audit(Some(1), 100);
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert!(
        all.iter()
            .all(|e| e.actor.as_ref().is_some_and(|a| a.name == "tester"))
    );
}
