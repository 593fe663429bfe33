//! The gRPC front (tonic): the inventory operations of the HTTP API, and `Pipeline`, a
//! bidirectional stream for pipelined clients. The protos (`proto/cairn/inventory/v1`) are
//! compiled at build time by protox, so no `protoc` is needed.
//!
//! Both transports share one code path: a call is decoded into the HTTP layer's request body and
//! runs the same operation (role check, validation, idempotency key, engine command), so rules,
//! error codes and request fingerprints are identical: a request sent over HTTP and retried over
//! gRPC with the same `request_id` and content is recognised as the same request.
//!
//! Errors become a [`Status`] (see [`status`]): the message starts with the stable code, and the
//! trailing metadata carries `cairn-error-code` and `cairn-error-details` (JSON).

use crate::App;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::inventory::{
    self, AdjustBody, CountBody, FinishBody, HistoryRead, ItemWritten, ItemsRead, LineBody,
    PolicyBody, ReservationOutcome, ReserveBody,
};
use crate::session::{Caller, authenticate};
use axum::http::StatusCode;
use cairn_inventory::ItemView;
use cairn_types::ErrorCode;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt as _};
use proto::inventory_server::{Inventory, InventoryServer};
use proto::pipeline_request::Request as Call;
use proto::pipeline_response::Reply;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

/// The generated messages, server and client of `cairn.inventory.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("cairn.inventory.v1");
}

/// Largest message a client may send (as the HTTP body limit).
pub const MESSAGE_BYTES_MAX: usize = crate::body::BODY_BYTES_MAX;
/// Most requests of one `Pipeline` stream being worked on at once; the server stops reading the
/// stream while at this bound.
pub const PIPELINE_IN_FLIGHT_MAX: usize = 1024;
/// Most concurrent calls (HTTP/2 streams) on one connection.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// Largest `cairn-error-details` metadata value; larger details are replaced by
/// `{"truncated": true}` (HTTP/2 clients commonly accept 16 KiB of headers in all). A pipelined
/// request's `Error` always carries them in full.
pub const ERROR_DETAILS_METADATA_BYTES_MAX: usize = 8 * 1024;

/// Serves gRPC (inventory, matching and publishing, see [`crate::grpc_publishing::services`]) on
/// `listener` until `shutdown` completes, then ends the open `Pipeline` and `OrderStream` streams
/// (each after answering what it has in flight) and `WatchReleases` streams, stops accepting,
/// lets calls in progress finish and returns. The caller shuts the engine down after.
///
/// # Errors
/// Transport errors of the listener.
pub async fn run_grpc(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = app.closing.clone();
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .serve_with_incoming_shutdown(crate::grpc_publishing::services(app), incoming, shutdown)
        .await
        .map_err(std::io::Error::other)
}

/// The inventory service with its limits, to mount on a tonic server.
#[must_use]
pub fn service(app: App) -> InventoryServer<InventoryService> {
    InventoryServer::new(InventoryService { app }).max_decoding_message_size(MESSAGE_BYTES_MAX)
}

/// The implementation of `cairn.inventory.v1.Inventory`.
#[derive(Clone)]
pub struct InventoryService {
    app: App,
}

/// The gRPC status of an API error: 400 `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403
/// `PERMISSION_DENIED`, 404 `NOT_FOUND`, 409 `FAILED_PRECONDITION` (`ABORTED` for
/// `request_id_reused`, `ALREADY_EXISTS` for `already_exists`), 413 `INVALID_ARGUMENT` (retrying
/// cannot help, and retry policies commonly retry `RESOURCE_EXHAUSTED`), 422
/// `FAILED_PRECONDITION`, 429 `RESOURCE_EXHAUSTED`, 503 `UNAVAILABLE`. (A message over
/// [`MESSAGE_BYTES_MAX`] is refused by tonic itself with `OUT_OF_RANGE`, without Cairn metadata.)
#[must_use]
pub fn status_code(error: &ApiError) -> tonic::Code {
    use tonic::Code;
    if error.code == ErrorCode::RequestIdReused.as_str() {
        return Code::Aborted;
    }
    if error.code == ErrorCode::AlreadyExists.as_str() {
        return Code::AlreadyExists;
    }
    match error.status {
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => Code::FailedPrecondition,
        StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        status if status.is_server_error() => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

/// JSON with every character outside printable ASCII `\u`-escaped (valid in metadata values; such
/// characters only occur inside JSON strings).
fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// An API error as a gRPC status, with `cairn-error-code` and `cairn-error-details` metadata.
#[must_use]
pub fn status(error: ApiError) -> Status {
    let code = status_code(&error);
    let mut metadata = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(error.code) {
        metadata.insert("cairn-error-code", value);
    }
    let mut details = ascii_json(&error.details);
    if details.len() > ERROR_DETAILS_METADATA_BYTES_MAX {
        details = r#"{"truncated":true}"#.to_string();
    }
    if let Ok(details) = MetadataValue::try_from(details) {
        metadata.insert("cairn-error-details", details);
    }
    if matches!(
        code,
        tonic::Code::ResourceExhausted | tonic::Code::Unavailable
    ) {
        metadata.insert("retry-after", MetadataValue::from_static("1"));
    }
    Status::with_metadata(code, format!("{}: {}", error.code, error.message), metadata)
}

fn error_reply(error: &ApiError) -> proto::Error {
    proto::Error {
        code: error.code.to_string(),
        message: error.message.clone(),
        details_json: error.details.to_string(),
        grpc_code: status_code(error) as i32,
    }
}

pub(crate) fn caller<T>(app: &App, request: &Request<T>) -> Result<Caller, ApiError> {
    authenticate(app, bearer(request.metadata().as_ref())?)
}

// Requests in, the HTTP layer's bodies out.

fn adjust_body(request: proto::AdjustRequest) -> AdjustBody {
    AdjustBody {
        request_id: request.request_id,
        sku: request.sku,
        location: request.location,
        delta: request.delta,
        reason: request.reason,
    }
}

fn count_body(request: proto::CountRequest) -> CountBody {
    CountBody {
        request_id: request.request_id,
        sku: request.sku,
        location: request.location,
        on_hand: request.on_hand,
        expected_on_hand: request.expected_on_hand,
    }
}

fn policy_body(request: proto::SetPolicyRequest) -> PolicyBody {
    PolicyBody {
        request_id: request.request_id,
        sku: request.sku,
        location: request.location,
        safety_stock: request.safety_stock,
        backorder_limit: request.backorder_limit,
    }
}

fn reserve_body(request: proto::ReserveRequest) -> ReserveBody {
    ReserveBody {
        request_id: request.request_id,
        order_id: request.order_id,
        lines: request
            .lines
            .into_iter()
            .map(|line| LineBody {
                sku: line.sku,
                location: line.location,
                qty: line.qty,
            })
            .collect(),
        ttl_ms: request.ttl_ms,
    }
}

// Typed results in, replies out.

fn item(view: ItemView) -> proto::Item {
    proto::Item {
        sku: view.sku,
        location: view.location,
        on_hand: view.on_hand,
        reserved: view.reserved,
        safety_stock: view.safety_stock,
        backorder_limit: view.backorder_limit,
        available: view.available,
        oversold: view.oversold,
    }
}

fn item_reply(written: ItemWritten) -> proto::ItemReply {
    proto::ItemReply {
        lsn: written.lsn,
        item: Some(item(written.item)),
    }
}

fn reservation(outcome: ReservationOutcome) -> proto::Reservation {
    proto::Reservation {
        reservation_id: outcome.public_id(),
        order_id: outcome.view.order_id,
        state: outcome.view.state.as_str().to_string(),
        expires_at_ms: outcome.view.expires_at_ms,
        lines: outcome
            .view
            .lines
            .into_iter()
            .map(|line| proto::Line {
                sku: line.sku,
                location: line.location,
                qty: line.qty,
            })
            .collect(),
        lsn: outcome.lsn,
    }
}

fn items_reply(read: ItemsRead) -> proto::GetItemReply {
    proto::GetItemReply {
        sku: read.sku,
        total_available: read.total_available,
        locations: read.locations.into_iter().map(item).collect(),
        lsn: read.lsn,
    }
}

fn history_reply(read: HistoryRead) -> proto::HistoryReply {
    let shard = read.shard;
    proto::HistoryReply {
        sku: read.sku,
        events: read
            .entries
            .into_iter()
            .map(|entry| {
                let (request_id, actor) = match entry.actor {
                    Some(actor) => (actor.request_id, Some(actor.name)),
                    None => (None, None),
                };
                proto::HistoryEvent {
                    lsn: entry.lsn,
                    at_ms: entry.at_ms,
                    r#type: entry.kind,
                    request_id,
                    actor,
                    location: entry.location,
                    qty: entry.qty,
                    reservation_id: entry
                        .reservation_id
                        .map(|id| inventory::public_id(shard, id)),
                    reason: entry.reason,
                }
            })
            .collect(),
    }
}

/// The RPC name of a call, as a metrics label.
fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Adjust(_) => "Adjust",
        Call::Count(_) => "Count",
        Call::SetPolicy(_) => "SetPolicy",
        Call::Reserve(_) => "Reserve",
        Call::Confirm(_) => "Confirm",
        Call::Release(_) => "Release",
        Call::GetReservation(_) => "GetReservation",
        Call::GetItem(_) => "GetItem",
        Call::History(_) => "History",
    }
}

/// Counts one call in `/metrics` (`cairn_grpc_requests_total`, `cairn_grpc_request_seconds`),
/// under its gRPC status code.
pub(crate) fn observe(
    app: &App,
    transport: &str,
    method: &str,
    error: Option<&ApiError>,
    started: Instant,
) {
    let code = error.map_or(tonic::Code::Ok, status_code);
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    app.grpc.observe(transport, method, code as u16, elapsed_us);
}

/// Runs one call (unary or pipelined) for an authenticated caller.
async fn dispatch(app: &App, caller: &Caller, call: Call) -> Result<Reply, ApiError> {
    Ok(match call {
        Call::Adjust(request) => Reply::Adjust(item_reply(
            inventory::adjust_op(app, caller, adjust_body(request)).await?,
        )),
        Call::Count(request) => Reply::Count(item_reply(
            inventory::count_op(app, caller, count_body(request)).await?,
        )),
        Call::SetPolicy(request) => Reply::SetPolicy(item_reply(
            inventory::policy_op(app, caller, policy_body(request)).await?,
        )),
        Call::Reserve(request) => Reply::Reserve(reservation(
            inventory::reserve_op(app, caller, reserve_body(request)).await?,
        )),
        Call::Confirm(request) => {
            let body = FinishBody {
                request_id: request.request_id,
            };
            Reply::Confirm(reservation(
                inventory::finish_op(app, caller, &request.reservation_id, &body, true).await?,
            ))
        }
        Call::Release(request) => {
            let body = FinishBody {
                request_id: request.request_id,
            };
            Reply::Release(reservation(
                inventory::finish_op(app, caller, &request.reservation_id, &body, false).await?,
            ))
        }
        Call::GetReservation(request) => Reply::GetReservation(reservation(
            inventory::reservation_op(app, caller, &request.reservation_id).await?,
        )),
        Call::GetItem(request) => Reply::GetItem(items_reply(
            inventory::item_op(app, caller, request.sku).await?,
        )),
        Call::History(request) => Reply::History(history_reply(
            inventory::history_op(app, caller, request.sku).await?,
        )),
    })
}

impl InventoryService {
    /// A unary call: authenticate, run, unwrap the reply's variant.
    async fn unary<Req, Rep>(
        &self,
        request: Request<Req>,
        call: fn(Req) -> Call,
        reply: fn(Reply) -> Option<Rep>,
    ) -> Result<Response<Rep>, Status> {
        let started = Instant::now();
        let caller = caller(&self.app, &request);
        let call = call(request.into_inner());
        let method = call_name(&call);
        let outcome = match caller {
            Ok(caller) => dispatch(&self.app, &caller, call).await,
            Err(error) => Err(error),
        };
        let outcome = outcome.and_then(|outcome| {
            reply(outcome).ok_or_else(|| ApiError::internal("a call got another call's reply"))
        });
        observe(&self.app, "unary", method, outcome.as_ref().err(), started);
        outcome.map(Response::new).map_err(status)
    }
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn adjust(
        &self,
        request: Request<proto::AdjustRequest>,
    ) -> Result<Response<proto::ItemReply>, Status> {
        self.unary(request, Call::Adjust, |reply| match reply {
            Reply::Adjust(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn count(
        &self,
        request: Request<proto::CountRequest>,
    ) -> Result<Response<proto::ItemReply>, Status> {
        self.unary(request, Call::Count, |reply| match reply {
            Reply::Count(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn set_policy(
        &self,
        request: Request<proto::SetPolicyRequest>,
    ) -> Result<Response<proto::ItemReply>, Status> {
        self.unary(request, Call::SetPolicy, |reply| match reply {
            Reply::SetPolicy(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn reserve(
        &self,
        request: Request<proto::ReserveRequest>,
    ) -> Result<Response<proto::Reservation>, Status> {
        self.unary(request, Call::Reserve, |reply| match reply {
            Reply::Reserve(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn confirm(
        &self,
        request: Request<proto::ConfirmRequest>,
    ) -> Result<Response<proto::Reservation>, Status> {
        self.unary(request, Call::Confirm, |reply| match reply {
            Reply::Confirm(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::Reservation>, Status> {
        self.unary(request, Call::Release, |reply| match reply {
            Reply::Release(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn get_reservation(
        &self,
        request: Request<proto::GetReservationRequest>,
    ) -> Result<Response<proto::Reservation>, Status> {
        self.unary(request, Call::GetReservation, |reply| match reply {
            Reply::GetReservation(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn get_item(
        &self,
        request: Request<proto::GetItemRequest>,
    ) -> Result<Response<proto::GetItemReply>, Status> {
        self.unary(request, Call::GetItem, |reply| match reply {
            Reply::GetItem(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryReply>, Status> {
        self.unary(request, Call::History, |reply| match reply {
            Reply::History(reply) => Some(reply),
            _ => None,
        })
        .await
    }

    type PipelineStream =
        Pin<Box<dyn Stream<Item = Result<proto::PipelineResponse, Status>> + Send + 'static>>;

    async fn pipeline(
        &self,
        request: Request<Streaming<proto::PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        // Refuse a bad token at once; the token is checked again for each request, so a token
        // revoked while the stream is open stops working at once.
        let token: Arc<str> = bearer(request.metadata().as_ref()).map_err(status)?.into();
        authenticate(&self.app, &token).map_err(status)?;
        let app = self.app.clone();
        let step = move |request| -> Pending {
            Box::pin(pipelined(app.clone(), Arc::clone(&token), request))
        };
        let pipe = Pipe::new(
            request.into_inner(),
            Box::new(step),
            Box::pin(self.app.closing.closed()),
        );
        Ok(Response::new(Box::pin(futures_util::stream::unfold(
            pipe,
            Pipe::next,
        ))))
    }
}

/// One request being worked on, answering with its response.
pub(crate) type Pending<Rep = proto::PipelineResponse> = Pin<Box<dyn Future<Output = Rep> + Send>>;

/// One `Pipeline` stream. Responses are produced only as the transport takes them (nothing is
/// buffered in between); requests are read only while fewer than [`PIPELINE_IN_FLIGHT_MAX`] are in
/// flight, so a client that sends faster than it is answered, or reads its answers slower, is
/// held back by HTTP/2 flow control.
///
/// Generic over the request and response messages, so every pipelined stream (inventory's
/// `Pipeline`, matching's `OrderStream`) shares it.
pub(crate) struct Pipe<S, Req = proto::PipelineRequest, Rep = proto::PipelineResponse> {
    inbound: S,
    /// Starts one request.
    step: Box<dyn Fn(Req) -> Pending<Rep> + Send>,
    in_flight: FuturesUnordered<Pending<Rep>>,
    /// False once the client finished sending, the stream failed or the server is closing.
    reading: bool,
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// A transport error of the inbound stream, sent once every request in flight is answered.
    failed: Option<Status>,
}

impl<S, Req, Rep> Pipe<S, Req, Rep>
where
    S: Stream<Item = Result<Req, Status>> + Unpin,
{
    pub(crate) fn new(
        inbound: S,
        step: Box<dyn Fn(Req) -> Pending<Rep> + Send>,
        closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Pipe<S, Req, Rep> {
        Pipe {
            inbound,
            step,
            in_flight: FuturesUnordered::new(),
            reading: true,
            closing,
            failed: None,
        }
    }

    /// The next response (in completion order), or the end of the stream.
    pub(crate) async fn next(mut self) -> Option<(Result<Rep, Status>, Pipe<S, Req, Rep>)> {
        loop {
            if !self.reading && self.in_flight.is_empty() {
                return self.failed.take().map(|failed| (Err(failed), self));
            }
            tokio::select! {
                biased;
                Some(response) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    return Some((Ok(response), self));
                }
                () = &mut self.closing, if self.reading => self.reading = false,
                next = self.inbound.next(),
                    if self.reading && self.in_flight.len() < PIPELINE_IN_FLIGHT_MAX => match next {
                    Some(Ok(request)) => self.in_flight.push((self.step)(request)),
                    Some(Err(failed)) => {
                        self.reading = false;
                        self.failed = Some(failed);
                    }
                    None => self.reading = false,
                },
            }
        }
    }
}

/// One pipelined request, answered with its tag.
async fn pipelined(
    app: App,
    token: Arc<str>,
    request: proto::PipelineRequest,
) -> proto::PipelineResponse {
    let started = Instant::now();
    let method = request.request.as_ref().map_or("none", call_name);
    let outcome = match (authenticate(&app, &token), request.request) {
        (Err(error), _) => Err(error),
        (Ok(_), None) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "a pipeline request needs one of its operations",
        )),
        (Ok(caller), Some(call)) => dispatch(&app, &caller, call).await,
    };
    observe(&app, "pipeline", method, outcome.as_ref().err(), started);
    proto::PipelineResponse {
        tag: request.tag,
        reply: Some(outcome.unwrap_or_else(|error| Reply::Error(error_reply(&error)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A pipe over `count` requests whose answers wait for permits of `gate`; `pulled` counts the
    /// requests read from the stream.
    fn gated_pipe(
        count: u64,
        gate: &Arc<tokio::sync::Semaphore>,
        pulled: &Arc<AtomicUsize>,
        closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> impl Stream<Item = Result<proto::PipelineResponse, Status>> {
        let counter = Arc::clone(pulled);
        let inbound = futures_util::stream::iter(0..count).map(move |tag| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(proto::PipelineRequest { tag, request: None })
        });
        let gate = Arc::clone(gate);
        let step = move |request: proto::PipelineRequest| -> Pending {
            let gate = Arc::clone(&gate);
            Box::pin(async move {
                gate.acquire().await.expect("open").forget();
                proto::PipelineResponse {
                    tag: request.tag,
                    reply: None,
                }
            })
        };
        futures_util::stream::unfold(Pipe::new(inbound, Box::new(step), closing), Pipe::next)
    }

    #[tokio::test]
    async fn reading_stops_at_the_in_flight_bound_and_every_tag_is_answered_once() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let pulled = Arc::new(AtomicUsize::new(0));
        let count = 3 * PIPELINE_IN_FLIGHT_MAX as u64;
        let responses = gated_pipe(count, &gate, &pulled, Box::pin(std::future::pending()));
        let mut responses = Box::pin(responses);
        // Nothing completes: the pipe reads up to the bound and then waits.
        let nothing = tokio::time::timeout(Duration::from_millis(100), responses.next()).await;
        assert!(nothing.is_err(), "no request was answered");
        assert_eq!(pulled.load(Ordering::SeqCst), PIPELINE_IN_FLIGHT_MAX);
        // One answer frees one slot: exactly one more request is read.
        gate.add_permits(1);
        let first = tokio::time::timeout(Duration::from_secs(5), responses.next())
            .await
            .expect("answered")
            .expect("a response")
            .expect("ok");
        assert!(first.tag < PIPELINE_IN_FLIGHT_MAX as u64);
        let nothing = tokio::time::timeout(Duration::from_millis(100), responses.next()).await;
        assert!(nothing.is_err());
        assert_eq!(pulled.load(Ordering::SeqCst), PIPELINE_IN_FLIGHT_MAX + 1);
        // Let everything through.
        gate.add_permits(usize::try_from(count).expect("fits"));
        let mut tags = vec![first.tag];
        while let Some(response) = tokio::time::timeout(Duration::from_secs(5), responses.next())
            .await
            .expect("answered")
        {
            tags.push(response.expect("ok").tag);
        }
        tags.sort_unstable();
        assert_eq!(tags, (0..count).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn closing_stops_reading_and_answers_what_is_in_flight() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let pulled = Arc::new(AtomicUsize::new(0));
        let closing = crate::Closing::default();
        let responses = gated_pipe(
            3 * PIPELINE_IN_FLIGHT_MAX as u64,
            &gate,
            &pulled,
            Box::pin(closing.closed()),
        );
        let mut responses = Box::pin(responses);
        let nothing = tokio::time::timeout(Duration::from_millis(100), responses.next()).await;
        assert!(nothing.is_err());
        closing.close();
        gate.add_permits(10 * PIPELINE_IN_FLIGHT_MAX);
        let mut answered = 0;
        while let Some(response) = tokio::time::timeout(Duration::from_secs(5), responses.next())
            .await
            .expect("answered")
        {
            response.expect("ok");
            answered += 1;
        }
        assert_eq!(answered, PIPELINE_IN_FLIGHT_MAX, "only what was in flight");
        assert_eq!(pulled.load(Ordering::SeqCst), PIPELINE_IN_FLIGHT_MAX);
    }

    #[test]
    fn metadata_json_is_ascii_and_still_the_same_json() {
        let value = serde_json::json!({"sku": "Käse-🧀\u{7f}\"x\""});
        let text = ascii_json(&value);
        assert!(text.bytes().all(|b| (b' '..=b'~').contains(&b)), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            value
        );
    }
}
