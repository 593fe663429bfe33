//! Who is calling, and the bridge from async handlers to the engine's callbacks.

use crate::App;
use crate::auth::bearer;
use crate::error::{ApiError, bad};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cairn_engine::StateMachine;
use cairn_engine::cairn::{Cairn, CairnCommand, CairnError, CairnReply};
use cairn_engine::{Committed, EngineError, RequestKey};
use cairn_inventory::InventoryError;
use cairn_matching::MatchingError;
use cairn_types::{ErrorCode, Lsn, ShardId};
use serde_json::json;

/// Roles nest: each may do everything the ones before it may.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and feeds.
    Viewer,
    /// + reservations, their confirm and release, orders and cancels.
    Client,
    /// + adjustments, counts, policies, markets, datasets, releases.
    Operator,
    /// + tokens and forcing.
    Admin,
}

impl Role {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Client => "client",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name (the admin token is "admin").
    pub name: String,
    /// Its role.
    pub role: Role,
    /// For a client token: the only accounts it may trade for.
    pub accounts: Option<Vec<String>>,
}

impl Caller {
    fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this needs the {role:?} role; the token has {:?}",
                self.role
            ),
        ))
    }

    /// Readers and up.
    ///
    /// # Errors
    /// 403.
    pub fn require_viewer(&self) -> Result<(), ApiError> {
        self.require(Role::Viewer)
    }

    /// Clients and up.
    ///
    /// # Errors
    /// 403.
    pub fn require_client(&self) -> Result<(), ApiError> {
        self.require(Role::Client)
    }

    /// The admin only.
    ///
    /// # Errors
    /// 403.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(Role::Admin)
    }

    /// Operators and up.
    ///
    /// # Errors
    /// 403.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        self.require(Role::Operator)
    }
}

/// The caller a bearer token stands for: the admin token, or a stored (unrevoked) one. Shared by
/// the HTTP and gRPC transports.
///
/// # Errors
/// 401 `unauthenticated` for an unknown or revoked token.
pub fn authenticate(app: &App, token: &str) -> Result<Caller, ApiError> {
    if app.admin.matches(token) {
        return Ok(Caller {
            name: "admin".into(),
            role: Role::Admin,
            accounts: None,
        });
    }
    match app.admin.tokens.lookup(token) {
        Some(stored) => Ok(Caller {
            name: stored.name,
            role: stored.role,
            accounts: stored.accounts,
        }),
        None => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "unknown or revoked token",
        )),
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        authenticate(app, bearer(&parts.headers)?)
    }
}

fn shard_of(app: &App, shard: ShardId) -> Result<&cairn_engine::Shard<Cairn>, ApiError> {
    app.engine
        .shard(shard)
        .ok_or_else(|| ApiError::internal("routed to a shard that does not exist"))
}

/// The idempotency key of a request: its id and a fingerprint of `operation` (a name that keeps
/// equal bodies of different operations apart) followed by the postcard encoding of the body.
/// Every transport builds keys here, so a retry over HTTP or gRPC is the same request.
///
/// # Errors
/// A malformed `request_id`, or a body that does not encode.
pub(crate) fn request_key(
    request_id: &str,
    operation: &str,
    body: &impl serde::Serialize,
) -> Result<RequestKey, ApiError> {
    cairn_inventory::validate::identifier("request_id", request_id).map_err(bad)?;
    let mut canonical = operation.as_bytes().to_vec();
    canonical.extend(
        postcard::to_stdvec(body).map_err(|e| bad(format!("cannot encode the request: {e}")))?,
    );
    Ok(RequestKey::new(request_id, &canonical))
}

/// Submits a command and waits for its durable outcome.
///
/// # Errors
/// The refusal or engine error, as an API error.
pub async fn submit(
    app: &App,
    shard: ShardId,
    command: CairnCommand,
    key: Option<RequestKey>,
) -> Result<Committed<CairnReply>, ApiError> {
    let target = shard_of(app, shard)?;
    // A request id's scope is the data directory: one that already belongs to another shard is
    // being reused with a body that routes elsewhere.
    let claim = match &key {
        Some(key) => {
            if let Err(elsewhere) = app.engine.claim_request(&key.id, shard) {
                return Err(outcome_error(EngineError::RequestIdReused)
                    .with_details(json!({"shard": elsewhere.0.0})));
            }
            Some(Claim {
                app,
                request_id: key.id.clone(),
                decided: true,
            })
        }
        None => None,
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    target.submit(
        command,
        key,
        Box::new(move |outcome| drop(sender.send(outcome))),
    );
    let outcome = receiver
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "the shard stopped before answering"))?;
    if let Some(mut claim) = claim {
        claim.decided = match &outcome {
            Ok(_) | Err(EngineError::RequestIdReused) => true,
            Err(EngineError::Refused(error)) => !<Cairn as StateMachine>::is_bad_input(error),
            Err(_) => false,
        };
    }
    outcome.map_err(outcome_error)
}

/// Runs `work` (which submits `request_id`'s command to `shard`, or a transaction coordinated
/// there) under a claim of the id for that shard, as [`submit`] does for one command.
///
/// # Errors
/// The id belongs to another shard (`request_id_reused`), or `work`'s error.
pub(crate) async fn claimed<T>(
    app: &App,
    shard: ShardId,
    request_id: &str,
    work: impl Future<Output = Result<T, EngineError<CairnError>>>,
) -> Result<T, ApiError> {
    if let Err(elsewhere) = app.engine.claim_request(request_id, shard) {
        return Err(outcome_error(EngineError::RequestIdReused)
            .with_details(json!({"shard": elsewhere.0.0})));
    }
    let mut claim = Claim {
        app,
        request_id: request_id.to_string(),
        decided: true,
    };
    let outcome = work.await;
    claim.decided = match &outcome {
        Ok(_) | Err(EngineError::RequestIdReused) => true,
        Err(EngineError::Refused(error)) => !<Cairn as StateMachine>::is_bad_input(error),
        Err(_) => false,
    };
    drop(claim);
    outcome.map_err(outcome_error)
}

/// A claimed request id, settled when dropped (also when the caller goes away mid-request: the
/// shard may still decide it, so an abandoned claim counts as decided).
struct Claim<'a> {
    app: &'a App,
    request_id: String,
    decided: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.app
            .engine
            .settle_request(&self.request_id, self.decided);
    }
}

/// Runs a read on the shard's state; answers once that state is durable.
///
/// # Errors
/// Overloaded or unavailable.
pub async fn read<T: Send + 'static>(
    app: &App,
    shard: ShardId,
    read: impl FnOnce(&Cairn, Lsn) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    shard_of(app, shard)?.read(read, move |result| drop(sender.send(result)));
    let result = receiver
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "the shard stopped before answering"))?;
    result.map_err(outcome_error)
}

/// Maps an engine outcome error to its API error.
pub fn outcome_error(error: EngineError<CairnError>) -> ApiError {
    match error {
        EngineError::Refused(CairnError::Inventory(refusal)) => inventory_error(&refusal),
        EngineError::Refused(CairnError::Matching(refusal)) => matching_error(&refusal),
        EngineError::Refused(CairnError::Txn(refusal)) => {
            ApiError::new(ErrorCode::InvalidArgument, refusal.message())
                .with_code(refusal.code())
                .with_status(refusal.http_status())
        }
        EngineError::Refused(CairnError::Publishing(refusal)) => {
            ApiError::new(ErrorCode::InvalidArgument, refusal.message())
                .with_code(refusal.code())
                .with_status(refusal.http_status())
                .with_details(refusal.details())
        }
        EngineError::RequestIdReused => ApiError::new(
            ErrorCode::RequestIdReused,
            "this request_id was already used with a different request body",
        ),
        EngineError::Overloaded { queue, depth_max } => ApiError::new(
            ErrorCode::Overloaded,
            format!("{queue} is full ({depth_max}); retry shortly"),
        )
        .with_details(json!({"queue": queue, "depth_max": depth_max})),
        EngineError::Unavailable(reason) => ApiError::new(ErrorCode::Unavailable, reason),
        EngineError::TooLarge(reason) => ApiError::new(ErrorCode::PayloadTooLarge, reason),
    }
}

fn matching_error(refusal: &MatchingError) -> ApiError {
    let details = match refusal {
        MatchingError::OrderNotOpen { status, .. } => json!({"status": status}),
        MatchingError::LimitExceeded { limit, .. } => json!({"limit": limit}),
        _ => json!({}),
    };
    ApiError::new(ErrorCode::InvalidArgument, refusal.message())
        .with_code(refusal.code())
        .with_status(refusal.http_status())
        .with_details(details)
}

fn inventory_error(refusal: &InventoryError) -> ApiError {
    let details = match refusal {
        InventoryError::InsufficientStock { lines } => json!({"lines": lines}),
        InventoryError::CountConflict {
            expected_on_hand,
            on_hand,
        } => {
            json!({"expected_on_hand": expected_on_hand, "on_hand": on_hand})
        }
        InventoryError::ReservationNotActive { state, .. } => json!({"state": state}),
        InventoryError::OrderClosed { order_id } => json!({"order_id": order_id}),
        InventoryError::PartOfTransaction { txn, .. } => {
            json!({"reservation_id": txn.to_string()})
        }
        InventoryError::InvalidArgument(_)
        | InventoryError::ReservationNotFound { .. }
        | InventoryError::QuantityLimit { .. }
        | InventoryError::ReservationBusy { .. }
        | InventoryError::TxnAborted { .. }
        | InventoryError::TxnCommitted { .. }
        | InventoryError::TxnNotFound { .. } => {
            json!({})
        }
    };
    ApiError::new(ErrorCode::InvalidArgument, refusal.message())
        .with_code(refusal.code())
        .with_status(refusal.http_status())
        .with_details(details)
}
