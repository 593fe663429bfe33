//! Decisions: a command and the current state in, events or a refusal out. Nothing here changes
//! the state.

use crate::command::{
    Actor, Change, ChangeFact, GuardrailsSpec, PublishingCommand, PublishingEvent, PublishingReply,
};
use crate::error::PublishingError;
use crate::gray::GrayRule;
use crate::guardrail::{Guardrails, JsonSchema};
use crate::state::{Publishing, ReleaseState};
use crate::{
    DATASETS_MAX, DRAFT_CHANGES_MAX, DRAFT_CHANGES_OPEN_TOTAL_MAX, DRAFTS_OPEN_MAX, KEYS_TOTAL_MAX,
    PINNED_RELEASES_MAX, RELEASE_RECORDS_MAX, SCHEDULE_AHEAD_MS_MAX, SCHEMA_BYTES_MAX, validate,
};
use std::sync::Arc;

/// Events and the reply of an accepted command.
pub type Decided = (Vec<PublishingEvent>, PublishingReply);

fn invalid(message: String) -> PublishingError {
    PublishingError::InvalidArgument(message)
}

fn limit(name: &str, max: usize) -> PublishingError {
    PublishingError::LimitExceeded {
        limit: name.to_string(),
        max: max as u64,
    }
}

/// The fields of a `CreateRelease` command.
struct ReleaseRequest<'a> {
    draft_id: u64,
    gray: Option<&'a GrayRule>,
    go_live_at_ms: Option<u64>,
    revert_at_ms: Option<u64>,
    force_reason: Option<&'a String>,
}

impl Publishing {
    /// Decides `command` by `actor` at log time `now_ms`. Does not change the state.
    ///
    /// # Errors
    /// The refusal.
    pub fn decide(
        &self,
        command: &PublishingCommand,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Decided, PublishingError> {
        match command {
            PublishingCommand::CreateDataset {
                name,
                guardrails,
                json_schema,
            } => self.create_dataset(name, guardrails.as_ref(), json_schema.as_ref(), actor),
            PublishingCommand::SetGuardrails {
                dataset,
                guardrails,
            } => self.set_guardrails(dataset, guardrails.as_ref(), actor),
            PublishingCommand::CreateDraft { note, changes } => {
                self.create_draft(note, changes, actor)
            }
            PublishingCommand::AppendToDraft { draft_id, changes } => {
                self.append_to_draft(*draft_id, changes, actor)
            }
            PublishingCommand::DiscardDraft { draft_id } => {
                self.open_draft(*draft_id)?;
                let event = PublishingEvent::DraftDiscarded {
                    draft_id: *draft_id,
                    actor: actor.clone(),
                };
                Ok((
                    vec![event],
                    PublishingReply::DraftDiscarded {
                        draft_id: *draft_id,
                    },
                ))
            }
            PublishingCommand::CreateRelease {
                draft_id,
                gray,
                go_live_at_ms,
                revert_at_ms,
                force_reason,
            } => self.create_release(
                &ReleaseRequest {
                    draft_id: *draft_id,
                    gray: gray.as_ref(),
                    go_live_at_ms: *go_live_at_ms,
                    revert_at_ms: *revert_at_ms,
                    force_reason: force_reason.as_ref(),
                },
                actor,
                now_ms,
            ),
            PublishingCommand::Promote { release_id } => {
                self.promote_or_abort(*release_id, true, actor)
            }
            PublishingCommand::Abort { release_id } => {
                self.promote_or_abort(*release_id, false, actor)
            }
            PublishingCommand::Rollback {
                to_release_id,
                reason,
            } => self.rollback(*to_release_id, reason, actor),
            PublishingCommand::Pin { release_id, pinned } => self.pin(*release_id, *pinned, actor),
            PublishingCommand::SetRetention {
                releases_retained_max,
            } => {
                validate::retention(*releases_retained_max).map_err(invalid)?;
                let event = PublishingEvent::RetentionSet {
                    releases_retained_max: *releases_retained_max,
                    actor: actor.clone(),
                };
                Ok((
                    vec![event],
                    PublishingReply::Retention {
                        releases_retained_max: *releases_retained_max,
                    },
                ))
            }
        }
    }

    /// Validates and compiles guardrails (`json_schema` may also come at the top level).
    fn guardrails(
        spec: Option<&GuardrailsSpec>,
        json_schema: Option<&serde_json::Value>,
    ) -> Result<Guardrails, PublishingError> {
        let mut spec = spec.cloned().unwrap_or_default();
        if let Some(schema) = json_schema {
            if spec.json_schema.is_some() {
                return Err(invalid(
                    "give json_schema either at the top level or in guardrails, not both".into(),
                ));
            }
            spec.json_schema = Some(schema.clone());
        }
        validate::guardrails(&spec).map_err(invalid)?;
        let json_schema = match &spec.json_schema {
            Some(schema) => {
                let bytes = serde_json::to_string(schema).map_or(usize::MAX, |s| s.len());
                if bytes > SCHEMA_BYTES_MAX {
                    return Err(invalid(format!(
                        "json_schema must be at most {SCHEMA_BYTES_MAX} bytes"
                    )));
                }
                Some(JsonSchema::compile(schema).map_err(invalid)?)
            }
            None => None,
        };
        Ok(Guardrails {
            json_schema,
            numeric_bounds: spec.numeric_bounds,
            max_change_pct: spec.max_change_pct,
            max_changed_keys: spec.max_changed_keys,
        })
    }

    fn create_dataset(
        &self,
        name: &str,
        spec: Option<&GuardrailsSpec>,
        json_schema: Option<&serde_json::Value>,
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        validate::identifier("name", name).map_err(invalid)?;
        let guardrails = Self::guardrails(spec, json_schema)?;
        if self.datasets.contains_key(name) {
            return Err(PublishingError::DatasetExists {
                dataset: name.into(),
            });
        }
        if self.datasets.len() >= DATASETS_MAX {
            return Err(limit("DATASETS_MAX", DATASETS_MAX));
        }
        let event = PublishingEvent::DatasetCreated {
            name: Arc::from(name),
            guardrails,
            actor: actor.clone(),
        };
        Ok((vec![event], PublishingReply::Dataset { name: name.into() }))
    }

    fn set_guardrails(
        &self,
        name: &str,
        spec: Option<&GuardrailsSpec>,
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        validate::identifier("dataset", name).map_err(invalid)?;
        let guardrails = Self::guardrails(spec, None)?;
        let Some((dataset, _)) = self.datasets.get_key_value(name) else {
            return Err(PublishingError::DatasetNotFound {
                dataset: name.into(),
            });
        };
        let event = PublishingEvent::GuardrailsSet {
            dataset: Arc::clone(dataset),
            guardrails,
            actor: actor.clone(),
        };
        Ok((vec![event], PublishingReply::Dataset { name: name.into() }))
    }

    /// Validates a chunk of changes into logged facts; all its datasets must exist.
    fn change_facts(&self, changes: &[Change]) -> Result<Vec<ChangeFact>, PublishingError> {
        let texts = validate::changes(changes).map_err(|(message, too_large)| {
            if too_large {
                PublishingError::PayloadTooLarge(message)
            } else {
                invalid(message)
            }
        })?;
        let mut facts: Vec<ChangeFact> = Vec::with_capacity(changes.len());
        for (change, value) in changes.iter().zip(texts) {
            // Changes usually come grouped by dataset: reuse the previous one's name.
            let dataset = match facts.last() {
                Some(last) if *last.dataset == *change.dataset => Arc::clone(&last.dataset),
                _ => match self.datasets.get_key_value(change.dataset.as_str()) {
                    Some((dataset, _)) => Arc::clone(dataset),
                    None => {
                        return Err(PublishingError::DatasetNotFound {
                            dataset: change.dataset.clone(),
                        });
                    }
                },
            };
            facts.push(ChangeFact {
                dataset,
                key: Arc::from(change.key.as_str()),
                value,
            });
        }
        Ok(facts)
    }

    /// Checks that adding `new_changes` distinct changes to open drafts stays within bounds.
    fn check_draft_totals(
        &self,
        draft_total: u64,
        new_changes: u64,
    ) -> Result<(), PublishingError> {
        if draft_total + new_changes > DRAFT_CHANGES_MAX as u64 {
            return Err(limit("DRAFT_CHANGES_MAX", DRAFT_CHANGES_MAX));
        }
        if self.open_changes_total + new_changes > DRAFT_CHANGES_OPEN_TOTAL_MAX as u64 {
            return Err(limit(
                "DRAFT_CHANGES_OPEN_TOTAL_MAX",
                DRAFT_CHANGES_OPEN_TOTAL_MAX,
            ));
        }
        Ok(())
    }

    fn create_draft(
        &self,
        note: &str,
        changes: &[Change],
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        validate::note(note).map_err(invalid)?;
        let facts = self.change_facts(changes)?;
        if self.open_drafts.len() >= DRAFTS_OPEN_MAX {
            return Err(limit("DRAFTS_OPEN_MAX", DRAFTS_OPEN_MAX));
        }
        let changes_total = distinct(&facts).len() as u64;
        self.check_draft_totals(0, changes_total)?;
        let draft_id = self.next_draft_id;
        let event = PublishingEvent::DraftCreated {
            draft_id,
            note: note.into(),
            changes: facts,
            actor: actor.clone(),
        };
        Ok((
            vec![event],
            PublishingReply::Draft {
                draft_id,
                changes_total,
            },
        ))
    }

    /// An unreleased draft.
    fn open_draft(&self, draft_id: u64) -> Result<&crate::state::Draft, PublishingError> {
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
        Ok(draft)
    }

    fn append_to_draft(
        &self,
        draft_id: u64,
        changes: &[Change],
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        let draft = self.open_draft(draft_id)?;
        let facts = self.change_facts(changes)?;
        let added = distinct(&facts)
            .into_iter()
            .filter(|(dataset, key)| {
                !draft
                    .changes
                    .get(*dataset)
                    .is_some_and(|keys| keys.contains_key(*key))
            })
            .count() as u64;
        self.check_draft_totals(draft.changes_total, added)?;
        let event = PublishingEvent::DraftAppended {
            draft_id,
            changes: facts,
            actor: actor.clone(),
        };
        Ok((
            vec![event],
            PublishingReply::Draft {
                draft_id,
                changes_total: draft.changes_total + added,
            },
        ))
    }

    /// Refuses when no release record could be added without going over the bound.
    fn check_release_records(&self) -> Result<(), PublishingError> {
        if self.releases.len() >= RELEASE_RECORDS_MAX && self.forgettable_record().is_none() {
            return Err(limit("RELEASE_RECORDS_MAX", RELEASE_RECORDS_MAX));
        }
        Ok(())
    }

    fn check_schedule(
        request: &ReleaseRequest<'_>,
        now_ms: u64,
    ) -> Result<Option<u64>, PublishingError> {
        let horizon_ms = now_ms.saturating_add(SCHEDULE_AHEAD_MS_MAX);
        let go_live_at_ms = request.go_live_at_ms.filter(|&at| at > now_ms);
        for at in [request.go_live_at_ms, request.revert_at_ms]
            .into_iter()
            .flatten()
        {
            if at > horizon_ms {
                return Err(invalid(format!(
                    "a schedule may be at most {SCHEDULE_AHEAD_MS_MAX} ms ahead"
                )));
            }
        }
        if let Some(revert_at_ms) = request.revert_at_ms
            && revert_at_ms <= go_live_at_ms.unwrap_or(now_ms)
        {
            return Err(invalid(
                "revert_at_ms must be after the go-live time (and in the future)".into(),
            ));
        }
        Ok(go_live_at_ms)
    }

    fn create_release(
        &self,
        request: &ReleaseRequest<'_>,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Decided, PublishingError> {
        let mut gray = request.gray.cloned();
        if let Some(gray) = &mut gray {
            validate::gray(gray).map_err(invalid)?;
            gray.normalize();
        }
        if let Some(force_reason) = request.force_reason {
            validate::reason("force_reason", force_reason).map_err(invalid)?;
        }
        let go_live_at_ms = Self::check_schedule(request, now_ms)?;
        let draft_id = request.draft_id;
        let draft = self.open_draft(draft_id)?;
        if draft.changes_total == 0 {
            return Err(invalid(format!("draft {draft_id} has no changes")));
        }
        self.check_release_records()?;
        let violations = self.examine(&draft.changes, true)?;
        if !violations.is_empty() && request.force_reason.is_none() {
            return Err(PublishingError::GuardrailViolation {
                violations: violations.listed,
                violations_total: violations.total,
            });
        }
        let state = match (go_live_at_ms, &gray) {
            (Some(_), _) => ReleaseState::Scheduled,
            (None, Some(_)) => ReleaseState::Gray,
            (None, None) => ReleaseState::Live,
        };
        let release_id = self.next_release_id;
        let event = PublishingEvent::ReleaseCreated {
            release_id,
            draft_id,
            state,
            gray,
            go_live_at_ms: request.go_live_at_ms,
            revert_at_ms: request.revert_at_ms,
            force_reason: request.force_reason.cloned(),
            violations: violations.listed,
            violations_total: violations.total,
            actor: actor.clone(),
        };
        Ok((vec![event], PublishingReply::Release { release_id, state }))
    }

    fn promote_or_abort(
        &self,
        release_id: u64,
        promote: bool,
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        let release = self
            .releases
            .get(&release_id)
            .ok_or(PublishingError::ReleaseNotFound { release_id })?;
        if !matches!(release.state, ReleaseState::Scheduled | ReleaseState::Gray) {
            return Err(PublishingError::InvalidReleaseState {
                release_id,
                state: release.state,
            });
        }
        let (event, state) = if promote {
            let event = PublishingEvent::ReleasePromoted {
                release_id,
                actor: actor.clone(),
            };
            (event, ReleaseState::Live)
        } else {
            let event = PublishingEvent::ReleaseAborted {
                release_id,
                actor: actor.clone(),
            };
            (event, ReleaseState::Aborted)
        };
        Ok((vec![event], PublishingReply::Release { release_id, state }))
    }

    fn rollback(
        &self,
        to_release_id: u64,
        reason: &str,
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        validate::reason("reason", reason).map_err(invalid)?;
        let target = self.rollback_target(to_release_id)?;
        let mut total: i128 = self
            .datasets
            .values()
            .map(|d| d.live.entries.len() as i128)
            .sum();
        for (name, version) in &target.after {
            let now = self.datasets.get(name).map_or(0, |d| d.live.entries.len());
            total += version.entries.len() as i128 - now as i128;
        }
        if total > KEYS_TOTAL_MAX as i128 {
            return Err(limit("KEYS_TOTAL_MAX", KEYS_TOTAL_MAX));
        }
        self.check_release_records()?;
        let release_id = self.next_release_id;
        let event = PublishingEvent::RolledBack {
            release_id,
            to_release_id,
            reason: reason.into(),
            actor: actor.clone(),
        };
        let reply = PublishingReply::Release {
            release_id,
            state: ReleaseState::Live,
        };
        Ok((vec![event], reply))
    }

    /// A release that went live for everyone and whose content is still kept.
    fn rollback_target(&self, release_id: u64) -> Result<&crate::state::Release, PublishingError> {
        let release = self
            .releases
            .get(&release_id)
            .ok_or(PublishingError::ReleaseNotFound { release_id })?;
        if release.live_at_ms.is_none() {
            return Err(PublishingError::NotARollbackTarget {
                release_id,
                reason: format!(
                    "it never went live for everyone (it is {})",
                    release.state.as_str()
                ),
            });
        }
        if release.after.is_empty() {
            return Err(PublishingError::NotARollbackTarget {
                release_id,
                reason: format!(
                    "its content is no longer retained (the newest {} releases are kept, plus pinned ones)",
                    self.releases_retained_max
                ),
            });
        }
        Ok(release)
    }

    fn pin(
        &self,
        release_id: u64,
        pinned: bool,
        actor: &Actor,
    ) -> Result<Decided, PublishingError> {
        if pinned {
            let release = self.rollback_target(release_id)?;
            if !release.pinned && self.pinned.len() >= PINNED_RELEASES_MAX {
                return Err(limit("PINNED_RELEASES_MAX", PINNED_RELEASES_MAX));
            }
        } else if !self.releases.contains_key(&release_id) {
            return Err(PublishingError::ReleaseNotFound { release_id });
        }
        let event = PublishingEvent::ReleasePinned {
            release_id,
            pinned,
            actor: actor.clone(),
        };
        Ok((vec![event], PublishingReply::Pinned { release_id, pinned }))
    }
}

/// The distinct (dataset, key) pairs of a chunk, sorted.
fn distinct(facts: &[ChangeFact]) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = facts
        .iter()
        .map(|f| (f.dataset.as_ref(), f.key.as_ref()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}
