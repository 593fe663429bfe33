//! Cairn over gRPC: reservations pipelined on `Pipeline` streams (the streaming path the issue
//! measures), each request tagged and answered when its outcome is durable.
//!
//! A few long-lived streams, each on its own HTTP/2 connection, carry every request in flight;
//! load-generator task `t` uses stream `t % streams`. A reader task per stream hands each
//! response to the request waiting for its tag.

use super::cairn::LOCATION;
use super::driver::Target;
use anyhow::{Context as _, anyhow};
use cairn_server::grpc::proto::inventory_client::InventoryClient;
use cairn_server::grpc::proto::pipeline_request::Request as Call;
use cairn_server::grpc::proto::pipeline_response::Reply;
use cairn_server::grpc::proto::{LineRequest, PipelineRequest, ReserveRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most streams opened, whatever the core count.
const STREAMS_MAX: usize = 16;
/// Requests queued for one stream beyond those the server is working on.
const STREAM_QUEUE: usize = 4096;
/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<(), String>>>>>;

/// One open `Pipeline` stream.
struct PipelineStream {
    requests: mpsc::Sender<PipelineRequest>,
    waiting: Waiting,
}

/// The gRPC client side of the benchmark.
pub(crate) struct CairnGrpc {
    streams: Vec<PipelineStream>,
    skus: Arc<[String]>,
    tag: String,
    next: AtomicU64,
    qty: i64,
    ttl_ms: u64,
}

impl CairnGrpc {
    /// Opens `streams` pipelines to the gRPC server at `url` (`http://HOST:PORT`) with `token`.
    /// Must run inside the load generator's runtime: the readers are spawned on it.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the token.
    pub(crate) async fn connect(
        url: &str,
        token: &str,
        streams: usize,
        skus: Arc<[String]>,
        tag: &str,
        qty: i64,
        ttl_ms: u64,
    ) -> anyhow::Result<CairnGrpc> {
        let authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {token}")
                .parse()
                .context("the token is not valid in a gRPC header")?;
        let mut opened = Vec::new();
        for _ in 0..streams.clamp(1, STREAMS_MAX) {
            let channel = tonic::transport::Endpoint::from_shared(url.to_string())
                .with_context(|| format!("bad gRPC URL {url}"))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to Cairn's gRPC at {url}"))?;
            let mut client = InventoryClient::new(channel);
            let (requests, inbound) = mpsc::channel::<PipelineRequest>(STREAM_QUEUE);
            let outbound = futures_util::stream::unfold(inbound, |mut inbound| async move {
                inbound.recv().await.map(|request| (request, inbound))
            });
            let mut request = tonic::Request::new(outbound);
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            let mut responses = client
                .pipeline(request)
                .await
                .map_err(|status| anyhow!("opening a Pipeline stream: {status}"))?
                .into_inner();
            let waiting: Waiting = Arc::default();
            let routed = Arc::clone(&waiting);
            tokio::spawn(async move {
                let ended = loop {
                    match responses.message().await {
                        Ok(Some(response)) => {
                            let outcome = match response.reply {
                                Some(Reply::Reserve(_)) => Ok(()),
                                Some(Reply::Error(error)) => {
                                    Err(format!("{}: {}", error.code, error.message))
                                }
                                other => Err(format!("unexpected reply {other:?}")),
                            };
                            let waiter = lock(&routed).remove(&response.tag);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(outcome);
                            }
                        }
                        Ok(None) => break "the server ended the stream".to_string(),
                        Err(status) => break format!("the stream failed: {status}"),
                    }
                };
                for (_, waiter) in lock(&routed).drain() {
                    let _ = waiter.send(Err(ended.clone()));
                }
            });
            opened.push(PipelineStream { requests, waiting });
        }
        Ok(CairnGrpc {
            streams: opened,
            skus,
            tag: tag.to_string(),
            next: AtomicU64::new(0),
            qty,
            ttl_ms,
        })
    }

    /// How many streams are open.
    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A reader that panicked leaves a map that is still consistent (inserts and removes only).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Target for CairnGrpc {
    async fn reserve(&self, task: usize, sku: usize) -> Result<(), String> {
        let line = LineRequest {
            sku: self.skus[sku].clone(),
            location: Some(LOCATION.to_string()),
            qty: self.qty,
        };
        self.reserve_lines(task, vec![line]).await
    }
}

impl CairnGrpc {
    /// One `Reserve` of `lines` (all or nothing, across shards when their SKUs are) for
    /// load-generator task `task`, with a fresh `request_id` and `order_id`; answered once
    /// durable.
    pub(crate) async fn reserve_lines(
        &self,
        task: usize,
        lines: Vec<LineRequest>,
    ) -> Result<(), String> {
        let stream = &self.streams[task % self.streams.len()];
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-g{n}", self.tag);
        let (answered, answer) = oneshot::channel();
        lock(&stream.waiting).insert(n, answered);
        let request = PipelineRequest {
            tag: n,
            request: Some(Call::Reserve(ReserveRequest {
                request_id: id.clone(),
                order_id: id,
                lines,
                ttl_ms: Some(self.ttl_ms),
            })),
        };
        if stream.requests.send(request).await.is_err() {
            lock(&stream.waiting).remove(&n);
            return Err("the Pipeline stream is closed".into());
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err("the Pipeline stream ended without an answer".into()),
            Err(_) => {
                lock(&stream.waiting).remove(&n);
                Err(format!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        }
    }
}
