//! Refusals, each with a stable code and HTTP status.

use crate::guardrail::Violation;
use crate::state::ReleaseState;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why the publishing domain refused a command (or a query).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishingError {
    /// Malformed or out-of-range input (normally refused by the server before a decision).
    InvalidArgument(String),
    /// A draft chunk whose event would not fit one log record.
    PayloadTooLarge(String),
    /// Unknown dataset.
    DatasetNotFound {
        /// The name asked for.
        dataset: String,
    },
    /// Unknown (or forgotten) draft.
    DraftNotFound {
        /// The id asked for.
        draft_id: u64,
    },
    /// Unknown (or forgotten) release.
    ReleaseNotFound {
        /// The id asked for.
        release_id: u64,
    },
    /// A dataset with this name exists.
    DatasetExists {
        /// The name.
        dataset: String,
    },
    /// The draft was released already (a draft is released at most once).
    DraftAlreadyReleased {
        /// The draft.
        draft_id: u64,
        /// Its release.
        release_id: u64,
    },
    /// Another release is scheduled, gray, or waiting for its revert on a dataset of this one.
    ReleaseInProgress {
        /// The dataset.
        dataset: String,
        /// The release in progress there.
        release_id: u64,
    },
    /// The release is not in a state that allows this (promote and abort need gray or
    /// scheduled).
    InvalidReleaseState {
        /// The release.
        release_id: u64,
        /// Its state.
        state: ReleaseState,
    },
    /// Rollback to a release that never went live for everyone, or whose content is no longer
    /// retained.
    NotARollbackTarget {
        /// The release.
        release_id: u64,
        /// Why.
        reason: String,
    },
    /// A bound on the state would be exceeded.
    LimitExceeded {
        /// The limit's name (a constant of this crate).
        limit: String,
        /// Its value.
        max: u64,
    },
    /// Guardrails refused the release.
    GuardrailViolation {
        /// The first [`crate::VIOLATIONS_LISTED_MAX`] violations.
        violations: Vec<Violation>,
        /// How many there are in all.
        violations_total: u64,
    },
}

impl PublishingError {
    /// The stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            PublishingError::InvalidArgument(_) => "invalid_argument",
            PublishingError::PayloadTooLarge(_) => "payload_too_large",
            PublishingError::DatasetNotFound { .. }
            | PublishingError::DraftNotFound { .. }
            | PublishingError::ReleaseNotFound { .. } => "not_found",
            PublishingError::DatasetExists { .. } => "already_exists",
            PublishingError::DraftAlreadyReleased { .. } => "draft_already_released",
            PublishingError::ReleaseInProgress { .. } => "release_in_progress",
            PublishingError::InvalidReleaseState { .. } => "invalid_release_state",
            PublishingError::NotARollbackTarget { .. } => "not_a_rollback_target",
            PublishingError::LimitExceeded { .. } => "limit_exceeded",
            PublishingError::GuardrailViolation { .. } => "guardrail_violation",
        }
    }

    /// The HTTP status for the code.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            PublishingError::InvalidArgument(_) => 400,
            PublishingError::PayloadTooLarge(_) => 413,
            PublishingError::DatasetNotFound { .. }
            | PublishingError::DraftNotFound { .. }
            | PublishingError::ReleaseNotFound { .. } => 404,
            PublishingError::GuardrailViolation { .. } => 422,
            _ => 409,
        }
    }

    /// A human message.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            PublishingError::InvalidArgument(message)
            | PublishingError::PayloadTooLarge(message) => message.clone(),
            PublishingError::DatasetNotFound { dataset } => format!("dataset {dataset} not found"),
            PublishingError::DraftNotFound { draft_id } => format!("draft {draft_id} not found"),
            PublishingError::ReleaseNotFound { release_id } => {
                format!("release {release_id} not found")
            }
            PublishingError::DatasetExists { dataset } => {
                format!("dataset {dataset} already exists")
            }
            PublishingError::DraftAlreadyReleased {
                draft_id,
                release_id,
            } => format!("draft {draft_id} was already released as release {release_id}"),
            PublishingError::ReleaseInProgress {
                dataset,
                release_id,
            } => format!(
                "release {release_id} is scheduled, gray or waiting to revert on dataset {dataset}; promote or abort it first"
            ),
            PublishingError::InvalidReleaseState { release_id, state } => format!(
                "release {release_id} is {}; only a gray or scheduled release can be promoted or aborted",
                state.as_str()
            ),
            PublishingError::NotARollbackTarget { release_id, reason } => {
                format!("release {release_id} is not a rollback target: {reason}")
            }
            PublishingError::LimitExceeded { limit, max } => {
                format!("limit {limit} ({max}) would be exceeded")
            }
            PublishingError::GuardrailViolation {
                violations_total, ..
            } => format!(
                "the release breaks {violations_total} guardrail rule(s); an admin may force it with a reason"
            ),
        }
    }

    /// The `details` object of the error response.
    #[must_use]
    pub fn details(&self) -> serde_json::Value {
        match self {
            PublishingError::DatasetNotFound { dataset }
            | PublishingError::DatasetExists { dataset } => {
                json!({ "dataset": dataset })
            }
            PublishingError::DraftNotFound { draft_id } => json!({ "draft_id": draft_id }),
            PublishingError::ReleaseNotFound { release_id }
            | PublishingError::NotARollbackTarget { release_id, .. } => {
                json!({ "release_id": release_id })
            }
            PublishingError::DraftAlreadyReleased {
                draft_id,
                release_id,
            } => json!({ "draft_id": draft_id, "release_id": release_id }),
            PublishingError::ReleaseInProgress {
                dataset,
                release_id,
            } => json!({ "dataset": dataset, "release_id": release_id }),
            PublishingError::InvalidReleaseState { release_id, state } => {
                json!({ "release_id": release_id, "state": state })
            }
            PublishingError::LimitExceeded { limit, max } => json!({ "limit": limit, "max": max }),
            PublishingError::GuardrailViolation {
                violations,
                violations_total,
            } => json!({ "violations": violations, "violations_total": violations_total }),
            PublishingError::InvalidArgument(_) | PublishingError::PayloadTooLarge(_) => json!({}),
        }
    }
}
