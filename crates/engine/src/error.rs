//! Errors the engine returns to callers. Each maps to a stable code (see `cairn_types::ErrorCode`).

use cairn_types::ErrorCode;

/// Why a command or read did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError<X> {
    /// The state machine refused it (a decision against the current state).
    #[error("refused: {0:?}")]
    Refused(X),
    /// The same `request_id` came with a different body.
    #[error("request_id was already used with a different request body")]
    RequestIdReused,
    /// A bounded queue is full: retry later.
    #[error("{queue} is full ({depth_max} entries); retry later")]
    Overloaded {
        /// Which queue.
        queue: &'static str,
        /// Its bound.
        depth_max: usize,
    },
    /// The shard stopped accepting work after a storage failure (fail-stop), or is shutting down.
    #[error("shard unavailable: {0}")]
    Unavailable(String),
    /// The command's events are larger than one log record may be.
    #[error("request too large: {0}")]
    TooLarge(String),
}

impl<X> EngineError<X> {
    /// The stable code, for errors that are not the state machine's own.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            EngineError::Refused(_) => None,
            EngineError::RequestIdReused => Some(ErrorCode::RequestIdReused),
            EngineError::Overloaded { .. } => Some(ErrorCode::Overloaded),
            EngineError::Unavailable(_) => Some(ErrorCode::Unavailable),
            EngineError::TooLarge(_) => Some(ErrorCode::PayloadTooLarge),
        }
    }
}

/// Why a shard or engine could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The log or a snapshot is damaged, or an I/O error occurred.
    #[error(transparent)]
    Log(#[from] cairn_log::LogError),
    /// A record or snapshot does not decode for this state machine.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What failed to decode.
        what: String,
        /// Why.
        reason: String,
    },
    /// The data directory is set up differently (shard count, format) or in use.
    #[error("data directory: {0}")]
    DataDir(String),
    /// A configuration value is out of range.
    #[error("configuration: {0}")]
    Config(String),
}
