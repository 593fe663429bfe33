//! The publishing operations over gRPC (`cairn.publishing.v1.Publishing`), and `WatchReleases`,
//! a server stream of release events. Built like the matching service of
//! [`crate::grpc_matching`], whose helpers it shares: bearer auth, [`status`] error mapping
//! (`cairn-error-code` and `cairn-error-details` metadata), `observe` metrics and closing on
//! shutdown.
//!
//! Both transports share one code path: a call is decoded into the HTTP layer's request body and
//! runs the same `*_op` function of `crate::publishing` (role checks, validation, idempotency key,
//! engine command, reads from the lock-free view), so a release sent over HTTP and retried over
//! gRPC with the same `request_id` and content is the same request. JSON values travel as JSON
//! text and are parsed here, before the operation runs, exactly where the HTTP body is parsed.

use crate::App;
use crate::error::{ApiError, bad};
use crate::grpc::{MESSAGE_BYTES_MAX, caller, observe, status};
use crate::publishing::{
    self, AppendBody, ChangeBody, ContextBody, DatasetBody, DiffQuery, DraftBody, GrayBody,
    PUBLISHING_SHARD, ReadKeyBody, ReadsBody, ReleaseBody, ReleasesQuery, RequestIdBody,
    RollbackBody,
};
use crate::session::Caller;
use cairn_engine::cairn::{Cairn, CairnEvent};
use cairn_engine::core::EnvelopeOf;
use cairn_engine::envelope::{self, RECORD_TYPE_REFUSAL};
use cairn_engine::{Subscription, SubscriptionError};
use cairn_log::Record;
use cairn_publishing::{
    GrayRule, GuardrailsSpec, PublishingEvent, ReleaseInfo, ReleaseKind, Violation,
};
use cairn_types::{ErrorCode, Lsn};
use futures_util::stream::Stream;
use proto::publishing_server::{Publishing, PublishingServer};
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The generated messages, server and client of `cairn.publishing.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("cairn.publishing.v1");
}

/// The publishing service with its limits, to mount on a tonic server.
#[must_use]
pub fn service(app: App) -> PublishingServer<PublishingService> {
    PublishingServer::new(PublishingService { app }).max_decoding_message_size(MESSAGE_BYTES_MAX)
}

/// The implementation of `cairn.publishing.v1.Publishing`.
#[derive(Clone)]
pub struct PublishingService {
    app: App,
}

// Requests in, the HTTP layer's bodies out.

/// JSON text of a field, parsed (a 400, as a bad HTTP body is).
fn json_text<T: serde::de::DeserializeOwned>(field: &str, text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| bad(format!("{field} is not valid JSON: {e}")))
}

fn change_bodies(changes: Vec<proto::Change>) -> Result<Vec<ChangeBody>, ApiError> {
    changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| {
            let value = match change.value_json {
                None => None,
                // `null` deletes, as in the HTTP body (where serde reads it as an absent value).
                Some(text) => match json_text(&format!("changes[{index}].value_json"), &text)? {
                    Value::Null => None,
                    value => Some(value),
                },
            };
            Ok(ChangeBody {
                dataset: change.dataset,
                key: change.key,
                value,
            })
        })
        .collect()
}

fn gray_body(gray: proto::Gray) -> Result<GrayBody, ApiError> {
    // The HTTP body's percent is a JSON number, validated through its text: parsing the same
    // text gives the same number (and the same request fingerprint).
    let percent = match gray.percent {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<serde_json::Number>(&text).map_err(|_| {
                bad(format!(
                    "gray.percent must be a decimal number such as \"12.5\", got {text:?}"
                ))
            })?,
        ),
    };
    Ok(GrayBody {
        percent,
        users: gray.users,
        channels: gray.channels,
        regions: gray.regions,
        segments: gray.segments,
    })
}

fn context_body(context: Option<proto::ReadContext>) -> Option<ContextBody> {
    context.map(|c| ContextBody {
        user_id: c.user_id,
        channel: c.channel,
        region: c.region,
        segments: c.segments,
    })
}

fn limit(limit: Option<u32>) -> Option<usize> {
    limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX))
}

// Results in, replies out.

/// A field of an op's JSON result, decoded.
fn field<T: serde::de::DeserializeOwned>(value: &mut Value, name: &str) -> Result<T, ApiError> {
    serde_json::from_value(value[name].take())
        .map_err(|e| ApiError::internal(format!("the result's {name} does not decode: {e}")))
}

/// The JSON of a release command (`{release_id, state, lsn}`) as a reply.
fn release_reply(mut value: Value) -> Result<proto::ReleaseReply, ApiError> {
    Ok(proto::ReleaseReply {
        release_id: field(&mut value, "release_id")?,
        state: field(&mut value, "state")?,
        lsn: field(&mut value, "lsn")?,
    })
}

/// The JSON of a draft command (`{draft_id, changes_total, lsn}`) as a reply.
fn draft_reply(mut value: Value) -> Result<proto::DraftReply, ApiError> {
    Ok(proto::DraftReply {
        draft_id: field(&mut value, "draft_id")?,
        changes_total: field(&mut value, "changes_total")?,
        lsn: field(&mut value, "lsn")?,
    })
}

fn violation(violation: Violation) -> proto::Violation {
    proto::Violation {
        dataset: violation.dataset,
        key: violation.key,
        rule: violation.rule.as_str().to_string(),
        message: violation.message,
    }
}

/// Basis points as the decimal text a caller gives (`1250` is "12.5").
fn percent_text(basis_points: u16) -> String {
    let (whole, hundredths) = (basis_points / 100, basis_points % 100);
    match hundredths {
        0 => whole.to_string(),
        h if h % 10 == 0 => format!("{whole}.{}", h / 10),
        h => format!("{whole}.{h:02}"),
    }
}

fn gray(rule: GrayRule) -> proto::Gray {
    proto::Gray {
        percent: rule.percent_bp.map(percent_text),
        users: rule.users,
        channels: rule.channels,
        regions: rule.regions,
        segments: rule.segments,
    }
}

fn release(info: ReleaseInfo) -> proto::Release {
    let kind = match info.kind {
        ReleaseKind::Draft => "draft",
        ReleaseKind::Rollback => "rollback",
        ReleaseKind::Revert => "revert",
    };
    proto::Release {
        release_id: info.release_id,
        state: info.state.as_str().to_string(),
        kind: kind.to_string(),
        draft_id: info.draft_id,
        restores: info.restores,
        datasets: info.datasets,
        author: info.author.name,
        request_id: info.author.request_id,
        note: info.note,
        created_at_ms: info.created_at_ms,
        go_live_at_ms: info.go_live_at_ms,
        revert_at_ms: info.revert_at_ms,
        live_at_ms: info.live_at_ms,
        ended_at_ms: info.ended_at_ms,
        gray: info.gray.map(gray),
        force_reason: info.force_reason,
        forced_violations_total: info.forced_violations_total,
        changes_total: info.changes_total,
        content_retained: info.content_retained,
        pinned: info.pinned,
    }
}

// The calls, one per RPC: decode, run the shared operation, encode.

async fn create_dataset(
    app: &App,
    caller: &Caller,
    request: proto::CreateDatasetRequest,
) -> Result<proto::CreateDatasetReply, ApiError> {
    let guardrails = match request.guardrails_json {
        None => None,
        Some(text) => Some(json_text::<GuardrailsSpec>("guardrails_json", &text)?),
    };
    let body = DatasetBody {
        request_id: request.request_id,
        name: request.name,
        guardrails,
    };
    let mut reply = publishing::create_dataset_op(app, caller, body).await?;
    Ok(proto::CreateDatasetReply {
        name: field(&mut reply, "name")?,
        lsn: field(&mut reply, "lsn")?,
    })
}

async fn create_draft(
    app: &App,
    caller: &Caller,
    request: proto::CreateDraftRequest,
) -> Result<proto::DraftReply, ApiError> {
    let body = DraftBody {
        request_id: request.request_id,
        note: request.note,
        changes: change_bodies(request.changes)?,
    };
    draft_reply(publishing::create_draft_op(app, caller, body).await?)
}

async fn append_to_draft(
    app: &App,
    caller: &Caller,
    request: proto::AppendToDraftRequest,
) -> Result<proto::DraftReply, ApiError> {
    let body = AppendBody {
        request_id: request.request_id,
        changes: change_bodies(request.changes)?,
    };
    draft_reply(publishing::append_to_draft_op(app, caller, request.draft_id, body).await?)
}

async fn get_draft(
    app: &App,
    caller: &Caller,
    request: proto::GetDraftRequest,
) -> Result<proto::Draft, ApiError> {
    let (draft, lsn) = publishing::draft_read_op(app, caller, request.draft_id).await?;
    Ok(proto::Draft {
        draft_id: draft.draft_id,
        note: draft.note,
        author: draft.author.name,
        created_at_ms: draft.created_at_ms,
        changes_total: draft.changes_total,
        datasets: draft.datasets,
        release_id: draft.release_id,
        lsn,
    })
}

async fn draft_diff(
    app: &App,
    caller: &Caller,
    request: proto::DraftDiffRequest,
) -> Result<proto::DraftDiffReply, ApiError> {
    let query = DiffQuery {
        after_dataset: request.after_dataset,
        after_key: request.after_key,
        limit: limit(request.limit),
    };
    let (diff, lsn) = publishing::draft_diff_read_op(app, caller, request.draft_id, query).await?;
    Ok(proto::DraftDiffReply {
        draft_id: diff.draft_id,
        changes: diff
            .changes
            .into_iter()
            .map(|entry| proto::DiffChange {
                dataset: entry.dataset,
                key: entry.key,
                before_json: entry.before.map(|text| text.as_str().to_string()),
                after_json: entry.after.map(|text| text.as_str().to_string()),
            })
            .collect(),
        changes_total: diff.changes_total,
        next_after: diff
            .next_after
            .map(|(dataset, key)| proto::DiffCursor { dataset, key }),
        violations: diff.violations.into_iter().map(violation).collect(),
        violations_total: diff.violations_total,
        lsn,
    })
}

async fn create_release(
    app: &App,
    caller: &Caller,
    request: proto::CreateReleaseRequest,
) -> Result<proto::ReleaseReply, ApiError> {
    let body = ReleaseBody {
        request_id: request.request_id,
        draft_id: request.draft_id,
        gray: request.gray.map(gray_body).transpose()?,
        go_live_at_ms: request.go_live_at_ms,
        revert_at_ms: request.revert_at_ms,
        force_reason: request.force_reason,
    };
    release_reply(publishing::create_release_op(app, caller, body).await?)
}

async fn release_step(
    app: &App,
    caller: &Caller,
    request: proto::ReleaseStepRequest,
    promote: bool,
) -> Result<proto::ReleaseReply, ApiError> {
    let body = RequestIdBody {
        request_id: request.request_id,
    };
    release_reply(
        publishing::release_step_op(app, caller, request.release_id, promote, body).await?,
    )
}

async fn promote(
    app: &App,
    caller: &Caller,
    request: proto::ReleaseStepRequest,
) -> Result<proto::ReleaseReply, ApiError> {
    release_step(app, caller, request, true).await
}

async fn abort(
    app: &App,
    caller: &Caller,
    request: proto::ReleaseStepRequest,
) -> Result<proto::ReleaseReply, ApiError> {
    release_step(app, caller, request, false).await
}

async fn rollback(
    app: &App,
    caller: &Caller,
    request: proto::RollbackRequest,
) -> Result<proto::ReleaseReply, ApiError> {
    let body = RollbackBody {
        request_id: request.request_id,
        to_release_id: request.to_release_id,
        reason: request.reason,
    };
    release_reply(publishing::rollback_op(app, caller, body).await?)
}

async fn list_releases(
    app: &App,
    caller: &Caller,
    request: proto::ListReleasesRequest,
) -> Result<proto::ListReleasesReply, ApiError> {
    let query = ReleasesQuery {
        after_release_id: request.after_release_id,
        limit: limit(request.limit),
    };
    let (releases, lsn) = publishing::releases_read_op(app, caller, query).await?;
    Ok(proto::ListReleasesReply {
        releases: releases.into_iter().map(release).collect(),
        lsn,
    })
}

async fn get_key(
    app: &App,
    caller: &Caller,
    request: proto::GetKeyRequest,
) -> Result<proto::KeyValue, ApiError> {
    let reader = context_body(request.context).unwrap_or(ContextBody {
        user_id: None,
        channel: None,
        region: None,
        segments: Vec::new(),
    });
    let read =
        publishing::key_value_op(app, caller, &request.dataset, &request.key, reader).await?;
    Ok(proto::KeyValue {
        value_json: read.value.as_str().to_string(),
        release_id: read.release_id,
        lsn: read.lsn,
    })
}

async fn batch_read(
    app: &App,
    caller: &Caller,
    request: proto::ReadRequest,
) -> Result<proto::ReadReply, ApiError> {
    let body = ReadsBody {
        context: context_body(request.context),
        keys: request
            .keys
            .into_iter()
            .map(|key| ReadKeyBody {
                dataset: key.dataset,
                key: key.key,
            })
            .collect(),
    };
    let read = publishing::read_values_op(app, caller, body).await?;
    Ok(proto::ReadReply {
        values: read
            .values
            .into_iter()
            .map(|(key, served)| proto::ReadValue {
                dataset: key.dataset,
                key: key.key,
                value_json: served.value.map(|text| text.as_str().to_string()),
                release_id: served.release_id,
            })
            .collect(),
        lsn: read.lsn,
    })
}

impl PublishingService {
    /// A unary call: authenticate, run, count.
    async fn unary<Req, Rep>(
        &self,
        method: &'static str,
        request: Request<Req>,
        run: impl AsyncFnOnce(&App, &Caller, Req) -> Result<Rep, ApiError>,
    ) -> Result<Response<Rep>, Status> {
        let started = Instant::now();
        let caller = caller(&self.app, &request);
        let request = request.into_inner();
        let outcome = match caller {
            Ok(caller) => run(&self.app, &caller, request).await,
            Err(error) => Err(error),
        };
        observe(&self.app, "unary", method, outcome.as_ref().err(), started);
        outcome.map(Response::new).map_err(status)
    }
}

#[tonic::async_trait]
impl Publishing for PublishingService {
    async fn create_dataset(
        &self,
        request: Request<proto::CreateDatasetRequest>,
    ) -> Result<Response<proto::CreateDatasetReply>, Status> {
        self.unary("CreateDataset", request, create_dataset).await
    }

    async fn create_draft(
        &self,
        request: Request<proto::CreateDraftRequest>,
    ) -> Result<Response<proto::DraftReply>, Status> {
        self.unary("CreateDraft", request, create_draft).await
    }

    async fn append_to_draft(
        &self,
        request: Request<proto::AppendToDraftRequest>,
    ) -> Result<Response<proto::DraftReply>, Status> {
        self.unary("AppendToDraft", request, append_to_draft).await
    }

    async fn get_draft(
        &self,
        request: Request<proto::GetDraftRequest>,
    ) -> Result<Response<proto::Draft>, Status> {
        self.unary("GetDraft", request, get_draft).await
    }

    async fn draft_diff(
        &self,
        request: Request<proto::DraftDiffRequest>,
    ) -> Result<Response<proto::DraftDiffReply>, Status> {
        self.unary("DraftDiff", request, draft_diff).await
    }

    async fn create_release(
        &self,
        request: Request<proto::CreateReleaseRequest>,
    ) -> Result<Response<proto::ReleaseReply>, Status> {
        self.unary("CreateRelease", request, create_release).await
    }

    async fn promote(
        &self,
        request: Request<proto::ReleaseStepRequest>,
    ) -> Result<Response<proto::ReleaseReply>, Status> {
        self.unary("Promote", request, promote).await
    }

    async fn abort(
        &self,
        request: Request<proto::ReleaseStepRequest>,
    ) -> Result<Response<proto::ReleaseReply>, Status> {
        self.unary("Abort", request, abort).await
    }

    async fn rollback(
        &self,
        request: Request<proto::RollbackRequest>,
    ) -> Result<Response<proto::ReleaseReply>, Status> {
        self.unary("Rollback", request, rollback).await
    }

    async fn list_releases(
        &self,
        request: Request<proto::ListReleasesRequest>,
    ) -> Result<Response<proto::ListReleasesReply>, Status> {
        self.unary("ListReleases", request, list_releases).await
    }

    async fn get_key(
        &self,
        request: Request<proto::GetKeyRequest>,
    ) -> Result<Response<proto::KeyValue>, Status> {
        self.unary("GetKey", request, get_key).await
    }

    async fn read(
        &self,
        request: Request<proto::ReadRequest>,
    ) -> Result<Response<proto::ReadReply>, Status> {
        self.unary("Read", request, batch_read).await
    }

    type WatchReleasesStream =
        Pin<Box<dyn Stream<Item = Result<proto::ReleaseEvent, Status>> + Send + 'static>>;

    async fn watch_releases(
        &self,
        request: Request<proto::WatchReleasesRequest>,
    ) -> Result<Response<Self::WatchReleasesStream>, Status> {
        let started = Instant::now();
        let opened = caller(&self.app, &request)
            .and_then(|caller| caller.require_viewer())
            .and_then(|()| {
                self.app
                    .engine
                    .shard(PUBLISHING_SHARD)
                    .ok_or_else(|| ApiError::internal("the publishing shard is missing"))
            })
            // Live from what is durable now: no catch-up from the files, so following never
            // blocks on disk reads.
            .map(|shard| shard.subscribe(Lsn(shard.durable_lsn().0 + 1)));
        observe(
            &self.app,
            "stream",
            "WatchReleases",
            opened.as_ref().err(),
            started,
        );
        let watch = Watch {
            subscription: opened.map_err(status)?,
            pending: VecDeque::new(),
            closing: Box::pin(self.app.closing.closed()),
            ended: false,
        };
        Ok(Response::new(Box::pin(futures_util::stream::unfold(
            watch,
            Watch::next,
        ))))
    }
}

/// One `WatchReleases` stream. Events are decoded only as the transport takes them, and at most
/// one record's events wait in `pending`, so a slow client holds nothing but its place in the
/// log (and falls behind the subscription's bounded buffer, which ends the stream).
struct Watch {
    subscription: Subscription,
    pending: VecDeque<proto::ReleaseEvent>,
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    ended: bool,
}

impl Watch {
    async fn next(mut self) -> Option<(Result<proto::ReleaseEvent, Status>, Watch)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.ended {
                return None;
            }
            let next = tokio::select! {
                biased;
                () = &mut self.closing => return None,
                next = self.subscription.next() => next,
            };
            match next {
                Ok(record) => release_events(&record, &mut self.pending),
                Err(SubscriptionError::Closed) => return None,
                Err(error) => {
                    self.ended = true;
                    let error = ApiError::new(
                        ErrorCode::Overloaded,
                        format!(
                            "the watch ended: {error}; reopen it and list the releases after the \
                             last one seen"
                        ),
                    );
                    return Some((Err(status(error)), self));
                }
            }
        }
    }
}

/// The release events of one durable record, in order.
fn release_events(record: &Record, out: &mut VecDeque<proto::ReleaseEvent>) {
    if record.record_type == RECORD_TYPE_REFUSAL {
        return;
    }
    // A record this build cannot decode holds nothing it could report.
    let Ok(decoded) = envelope::decode::<EnvelopeOf<Cairn>>(&record.payload) else {
        return;
    };
    for event in decoded.events() {
        let CairnEvent::Publishing(event) = event else {
            continue;
        };
        if let Some(mut event) = release_event(event) {
            event.lsn = record.lsn.0;
            event.at_ms = record.timestamp_ms;
            out.push_back(event);
        }
    }
}

/// A publishing event as a release event (without its position), if it is one.
fn release_event(event: &PublishingEvent) -> Option<proto::ReleaseEvent> {
    let base = |kind: &str, release_id: u64| proto::ReleaseEvent {
        r#type: kind.to_string(),
        release_id,
        ..proto::ReleaseEvent::default()
    };
    Some(match event {
        PublishingEvent::ReleaseCreated {
            release_id,
            draft_id,
            state,
            actor,
            ..
        } => proto::ReleaseEvent {
            state: Some(state.as_str().to_string()),
            draft_id: Some(*draft_id),
            actor: Some(actor.name.clone()),
            ..base("release_created", *release_id)
        },
        PublishingEvent::ReleasePromoted { release_id, actor } => proto::ReleaseEvent {
            actor: Some(actor.name.clone()),
            ..base("release_promoted", *release_id)
        },
        PublishingEvent::ReleaseAborted { release_id, actor } => proto::ReleaseEvent {
            actor: Some(actor.name.clone()),
            ..base("release_aborted", *release_id)
        },
        PublishingEvent::ReleaseWentLive { release_id } => base("release_went_live", *release_id),
        PublishingEvent::ReleaseGoLiveRefused { release_id, .. } => {
            base("release_go_live_refused", *release_id)
        }
        PublishingEvent::ReleaseReverted {
            release_id,
            restore_release_id,
        } => proto::ReleaseEvent {
            restore_release_id: *restore_release_id,
            ..base("release_reverted", *release_id)
        },
        PublishingEvent::RolledBack {
            release_id,
            to_release_id,
            actor,
            ..
        } => proto::ReleaseEvent {
            to_release_id: Some(*to_release_id),
            actor: Some(actor.name.clone()),
            ..base("rolled_back", *release_id)
        },
        _ => return None,
    })
}

/// The gRPC services Cairn serves on one listener: publishing, and the others of
/// [`crate::grpc_matching::Services`], routed by the service name in the request path (the tonic
/// router is not compiled in).
#[derive(Clone)]
pub struct Services {
    publishing: PublishingServer<PublishingService>,
    others: crate::grpc_matching::Services,
}

/// Every gRPC service with its limits, to serve on a tonic server.
#[must_use]
pub fn services(app: App) -> Services {
    Services {
        publishing: service(app.clone()),
        others: crate::grpc_matching::services(app),
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for Services
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Every generated server is always ready, and so are the other services.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        let name = <PublishingServer<PublishingService> as tonic::server::NamedService>::NAME;
        let is_publishing = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('/'));
        if is_publishing {
            self.publishing.call(request)
        } else {
            self.others.call(request)
        }
    }
}
