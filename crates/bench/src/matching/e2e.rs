//! End to end: durable orders per second and latency through the server, at each in-flight
//! count (`workload: "e2e"`).
//!
//! `cairn-http`: a server started in this process (its own tokio runtime, an engine on a fresh
//! data directory in durable `sync` mode: every answer waits for its group commit's `fdatasync`)
//! is sent the stream of [`cairn_matching::workload`] as `POST /v1/markets/{symbol}/orders` and
//! `DELETE /v1/markets/{symbol}/orders/{id}` through `cairn-client` (HTTP/1.1 keep-alive, one
//! connection per request in flight). The market and the starting book are placed first. N tasks
//! then each take the next operation of the one shared stream and send it when their previous one
//! is answered; a cancel names the id the server gave the order it targets (a cancel of an order
//! whose answer has not come back yet is not sent, and counts as refused). Only answers that say
//! the order or cancel was logged count in `ops_per_s` and the latencies; refusals (cancels of
//! orders already filled) are counted apart. The stream goes on from point to point.
//!
//! `cairn-grpc`: the same, as tagged `PlaceOrder` and `CancelOrder` requests pipelined on the
//! matching service's `OrderStream` (one stream per core, each on its own HTTP/2 connection;
//! load-generator task `t` uses stream `t % streams`; each request is answered once durable).
//!
//! Both go to the same server and market and share the one stream of operations; they take turns
//! point by point, in an order that rotates from run to run.

use super::MatchingBenchArgs;
use super::report::MatchingRow;
use crate::inventory::cairn::InProcess;
use crate::machine::CpuTimes;
use crate::stats::{quantile, spread};
use anyhow::{Context as _, anyhow};
use cairn_client::{Client, ClientError, MarketRequest, OrderRequest};
use cairn_matching::workload::{Op, SYMBOL, Workload, WorkloadConfig, account_name};
use cairn_matching::{Side, TimeInForce};
use cairn_server::grpc_matching::proto::matching_client::MatchingClient;
use cairn_server::grpc_matching::proto::order_stream_request::Request as Call;
use cairn_server::grpc_matching::proto::order_stream_response::Reply;
use cairn_server::grpc_matching::proto::{
    CancelOrderRequest, OrderStreamRequest, OrderStreamResponse, PlaceOrderRequest,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The system the HTTP rows measure.
pub(crate) const HTTP: &str = "cairn-http";
/// The system the gRPC rows measure.
pub(crate) const GRPC: &str = "cairn-grpc";
/// The workload name of the end-to-end rows.
pub(crate) const WORKLOAD: &str = "e2e";
/// Most gRPC streams opened, whatever the core count.
const STREAMS_MAX: usize = 16;
/// Requests queued for one gRPC stream beyond those the server is working on.
const STREAM_QUEUE: usize = 4096;

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in flight while the starting book is placed.
const SETUP_IN_FLIGHT: usize = 64;
/// Longest error text kept in a row.
const ERROR_TEXT_BYTES_MAX: usize = 300;
/// Pause after a failed request, so that a server refusing everything is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// The in-flight counts of `args`, without repeats, in order.
fn points(args: &MatchingBenchArgs) -> Vec<usize> {
    let mut points = Vec::new();
    for &n in &args.in_flight {
        if !points.contains(&n) {
            points.push(n);
        }
    }
    points
}

/// The end-to-end rows, reported as skipped.
pub(crate) fn skipped_rows(args: &MatchingBenchArgs, reason: &str) -> Vec<MatchingRow> {
    points(args)
        .into_iter()
        .flat_map(|in_flight| {
            [
                MatchingRow {
                    in_flight: Some(in_flight),
                    ..MatchingRow::skipped(HTTP, WORKLOAD, reason)
                },
                MatchingRow {
                    in_flight: Some(in_flight),
                    ..MatchingRow::skipped(GRPC, WORKLOAD, reason)
                },
            ]
        })
        .collect()
}

/// Starts the server, places the starting book, measures every point `args.runs` times, and
/// returns one `cairn-http` and one `cairn-grpc` row per in-flight count.
pub(crate) fn run(
    args: &MatchingBenchArgs,
    base: &Path,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Vec<MatchingRow>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let server = InProcess::start(base, "cairn-bench-matching-e2e-", threads)?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("cairn-bench-load")
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let config = args.workload();
    let setup = progress.points("e2e setup", 1);
    setup.set_message(format!(
        "placing the starting book of {} orders",
        config.resting
    ));
    let streams = threads.clamp(1, STREAMS_MAX);
    let orders = load.block_on(async {
        let grpc = GrpcStreams::connect(&server.grpc_url, &server.token, streams).await?;
        let orders = Arc::new(Orders::new(&server.base_url, &server.token, config, grpc)?);
        orders.setup(config).await?;
        anyhow::Ok(orders)
    })?;
    setup.finish_and_clear();
    let points = points(args);
    let bar = progress.points(WORKLOAD, (args.runs * points.len() * 2) as u64);
    let mut measured: Vec<(Via, usize, Measured)> = Vec::new();
    let (warmup, duration) = (args.warmup(), args.duration());
    for run in 0..args.runs {
        let mut order = [Via::Grpc, Via::Http];
        order.rotate_left(run % 2);
        for &in_flight in &points {
            for via in order {
                bar.set_message(format!(
                    "run {}/{}: {} at {in_flight} in flight",
                    run + 1,
                    args.runs,
                    via.system()
                ));
                let orders = Arc::clone(&orders);
                let point = load.block_on(drive(orders, via, in_flight, warmup, duration));
                measured.push((via, in_flight, point));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    drop(orders);
    drop(load);
    server.stop()?;
    let mut rows = Vec::new();
    for in_flight in points {
        for via in [Via::Grpc, Via::Http] {
            let runs: Vec<&Measured> = measured
                .iter()
                .filter(|(v, n, _)| *v == via && *n == in_flight)
                .map(|(_, _, m)| m)
                .collect();
            rows.push(aggregate(via, in_flight, streams, &runs));
        }
    }
    Ok(rows)
}

/// How the operations reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Http,
    Grpc,
}

impl Via {
    fn system(self) -> &'static str {
        match self {
            Via::Http => HTTP,
            Via::Grpc => GRPC,
        }
    }
}

fn aggregate(via: Via, in_flight: usize, streams: usize, runs: &[&Measured]) -> MatchingRow {
    let median = |values: Vec<f64>| (!values.is_empty()).then(|| spread(&values).median);
    let rates = spread(&runs.iter().map(|m| m.ops_per_s()).collect::<Vec<_>>());
    let first_error = runs.iter().find_map(|m| m.first_error.clone());
    MatchingRow {
        in_flight: Some(in_flight),
        ops_per_s: Some(rates.median),
        ops_per_s_min: Some(rates.min),
        ops_per_s_max: Some(rates.max),
        p50_us: median(runs.iter().filter_map(|m| m.quantile_us(0.50)).collect()),
        p99_us: median(runs.iter().filter_map(|m| m.quantile_us(0.99)).collect()),
        refused: Some(runs.iter().map(|m| m.refused).sum()),
        errors: Some(runs.iter().map(|m| m.errors).sum()),
        runs: Some(runs.len()),
        others_cpu_share: median(runs.iter().filter_map(|m| m.others_cpu_share).collect()),
        own_cpu_share: median(runs.iter().filter_map(|m| m.own_cpu_share).collect()),
        note: Some(match (first_error, via) {
            (Some(error), _) => format!("first error: {error}"),
            (None, Via::Http) => "POST /v1/markets/{symbol}/orders and DELETE .../orders/{id} \
                                  (cairn-client, HTTP/1.1 keep-alive, JSON, one connection per \
                                  request in flight), durable sync mode; refused cancels not \
                                  counted"
                .to_string(),
            (None, Via::Grpc) => format!(
                "PlaceOrder and CancelOrder tagged on {streams} OrderStream stream(s), each on \
                 its own HTTP/2 connection, durable sync mode; refused cancels not counted"
            ),
        }),
        ..MatchingRow::new(via.system(), WORKLOAD)
    }
}

/// What one point gave.
#[derive(Clone, Debug, Default)]
struct Measured {
    ops: u64,
    refused: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    latencies_ns: Vec<u64>,
    others_cpu_share: Option<f64>,
    own_cpu_share: Option<f64>,
}

impl Measured {
    fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn quantile_us(&self, q: f64) -> Option<f64> {
        (!self.latencies_ns.is_empty()).then(|| quantile(&self.latencies_ns, q) as f64 / 1e3)
    }
}

/// What became of one operation.
enum Sent {
    /// Logged (and durable) and answered.
    Accepted,
    /// Refused by the book (not logged), or a cancel not sent.
    Refused,
    /// No answer, or an answer that is not the API's.
    Failed(String),
}

/// Keeps `in_flight` operations in flight for `warmup + duration`; counts what completed in the
/// `duration` after the warm-up.
async fn drive(
    orders: Arc<Orders>,
    via: Via,
    in_flight: usize,
    warmup: Duration,
    duration: Duration,
) -> Measured {
    let from = tokio::time::Instant::now() + warmup;
    let until = from + duration;
    let tasks: Vec<_> = (0..in_flight)
        .map(|task| {
            let orders = Arc::clone(&orders);
            tokio::spawn(async move {
                let mut seen = Measured::default();
                while tokio::time::Instant::now() < until {
                    let started = tokio::time::Instant::now();
                    let sent = orders.send_next(via, task).await;
                    let done = tokio::time::Instant::now();
                    let counted = started >= from && done <= until;
                    match sent {
                        Sent::Accepted if counted => {
                            seen.ops += 1;
                            let ns = (done - started).as_nanos();
                            seen.latencies_ns
                                .push(u64::try_from(ns).unwrap_or(u64::MAX));
                        }
                        Sent::Refused if counted => seen.refused += 1,
                        Sent::Failed(error) => {
                            if counted {
                                seen.errors += 1;
                                seen.first_error.get_or_insert(error);
                            }
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                        Sent::Accepted | Sent::Refused => {}
                    }
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep_until(from).await;
    let cpu = CpuTimes::now();
    tokio::time::sleep_until(until).await;
    let now = CpuTimes::now();
    let mut total = Measured {
        seconds: duration.as_secs_f64(),
        ..Measured::default()
    };
    for task in tasks {
        let Ok(seen) = task.await else {
            total.errors += 1;
            continue;
        };
        total.ops += seen.ops;
        total.refused += seen.refused;
        total.errors += seen.errors;
        total.first_error = total.first_error.take().or(seen.first_error);
        total.latencies_ns.extend(seen.latencies_ns);
    }
    total.latencies_ns.sort_unstable();
    let (others, all) = now.others_since(&cpu);
    if all > 0.0 {
        total.others_cpu_share = Some(others / all);
        total.own_cpu_share = Some((now.own_s - cpu.own_s) / all);
    }
    total
}

/// The stream as HTTP requests: one shared stream, the ids the server gave by stream position.
struct Orders {
    client: Client,
    grpc: GrpcStreams,
    feed: Mutex<Workload>,
    /// Order id per stream position (0: none, or not answered yet).
    ids: Mutex<Vec<u64>>,
    accounts: Vec<String>,
    tag: String,
    next_request: AtomicU64,
}

impl Orders {
    fn new(
        base_url: &str,
        token: &str,
        config: WorkloadConfig,
        grpc: GrpcStreams,
    ) -> anyhow::Result<Orders> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .context("setting up the HTTP client")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Orders {
            client: Client::with_http(base_url, token, http),
            grpc,
            feed: Mutex::new(Workload::new(config)),
            ids: Mutex::new(Vec::new()),
            accounts: (0..config.accounts.max(1)).map(account_name).collect(),
            tag: format!("bm{now:x}"),
            next_request: AtomicU64::new(0),
        })
    }

    fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.tag)
    }

    /// Creates the market and places the starting book.
    async fn setup(self: &Arc<Self>, config: WorkloadConfig) -> anyhow::Result<()> {
        self.client
            .readyz()
            .await
            .context("the in-process server is not ready")?;
        let market = MarketRequest {
            request_id: self.request_id(),
            symbol: SYMBOL.to_string(),
            tick_size: config.tick_size,
            lot_size: 1,
        };
        self.client
            .create_market(&market)
            .await
            .context("creating the benchmark's market")?;
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = config.resting.div_ceil(SETUP_IN_FLIGHT);
        for _ in 0..SETUP_IN_FLIGHT {
            let orders = Arc::clone(self);
            tasks.spawn(async move {
                for _ in 0..per_task {
                    if orders.position() >= config.resting as u64 {
                        break;
                    }
                    if let Sent::Failed(error) = orders.send_next(Via::Http, 0).await {
                        return Err(anyhow!("placing the starting book: {error}"));
                    }
                }
                Ok(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.context("a setup task panicked")??;
        }
        Ok(())
    }

    fn position(&self) -> u64 {
        self.feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .position()
    }

    /// Takes the next operation of the stream and sends it `via` HTTP or gRPC (from
    /// load-generator task `task`).
    async fn send_next(&self, via: Via, task: usize) -> Sent {
        let (position, op) = {
            let mut feed = self
                .feed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let position = feed.position();
            (position, feed.next().unwrap_or(Op::Cancel { target: 0 }))
        };
        match op {
            Op::Cancel { target } => self.cancel(via, task, target).await,
            Op::Limit {
                side,
                price,
                qty,
                account,
            } => {
                let order = self.order(side, Some(price), qty, account, TimeInForce::Gtc);
                self.place(via, task, position, order).await
            }
            Op::Take {
                side,
                price,
                qty,
                account,
            } => {
                let order = self.order(side, price, qty, account, TimeInForce::Ioc);
                self.place(via, task, position, order).await
            }
        }
    }

    fn order(
        &self,
        side: Side,
        price: Option<i64>,
        qty: i64,
        account: u32,
        time_in_force: TimeInForce,
    ) -> OrderRequest {
        OrderRequest {
            request_id: self.request_id(),
            account: self.accounts[account as usize % self.accounts.len()].clone(),
            side: match side {
                Side::Buy => "buy",
                Side::Sell => "sell",
            }
            .to_string(),
            order_type: if price.is_some() { "limit" } else { "market" }.to_string(),
            price,
            qty,
            time_in_force: match time_in_force {
                TimeInForce::Ioc => "ioc",
                _ => "gtc",
            }
            .to_string(),
            post_only: false,
        }
    }

    async fn place(&self, via: Via, task: usize, position: u64, order: OrderRequest) -> Sent {
        let placed = match via {
            Via::Http => match self.client.place_order(SYMBOL, &order).await {
                Ok(reply) => reply
                    .get("order_id")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| {
                        Sent::Failed(truncate(format!("an order was answered {reply}")))
                    }),
                Err(error) => Err(outcome_of(error)),
            },
            Via::Grpc => self.grpc.place(task, order).await,
        };
        match placed {
            Ok(order_id) => {
                let mut ids = self
                    .ids
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let at = usize::try_from(position).unwrap_or(usize::MAX);
                if ids.len() <= at {
                    ids.resize(at + 1, 0);
                }
                ids[at] = order_id;
                Sent::Accepted
            }
            Err(sent) => sent,
        }
    }

    async fn cancel(&self, via: Via, task: usize, target: u64) -> Sent {
        let order_id = {
            let ids = self
                .ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            usize::try_from(target)
                .ok()
                .and_then(|at| ids.get(at))
                .copied()
                .unwrap_or(0)
        };
        if order_id == 0 {
            return Sent::Refused;
        }
        let request_id = self.request_id();
        match via {
            Via::Http => match self
                .client
                .cancel_order(SYMBOL, order_id, &request_id)
                .await
            {
                Ok(_) => Sent::Accepted,
                Err(error) => outcome_of(error),
            },
            Via::Grpc => match self.grpc.cancel(task, order_id, request_id).await {
                Ok(_) => Sent::Accepted,
                Err(sent) => sent,
            },
        }
    }
}

/// A 4xx answer is the book's refusal; anything else a failure.
fn outcome_of(error: ClientError) -> Sent {
    match error {
        ClientError::Api { status, .. } if (400..500).contains(&status) && status != 429 => {
            Sent::Refused
        }
        other => Sent::Failed(truncate(other.to_string())),
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > ERROR_TEXT_BYTES_MAX {
        let mut end = ERROR_TEXT_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<u64, Sent>>>>>;

/// One open `OrderStream`.
struct GrpcStream {
    requests: mpsc::Sender<OrderStreamRequest>,
    waiting: Waiting,
}

/// The gRPC side: a few `OrderStream`s, each on its own HTTP/2 connection, with a reader task
/// each that hands every response to the request waiting for its tag.
struct GrpcStreams {
    streams: Vec<GrpcStream>,
    next_tag: AtomicU64,
}

impl GrpcStreams {
    /// Opens `count` streams to `url` with `token`. Must run inside the load generator's runtime:
    /// the readers are spawned on it.
    async fn connect(url: &str, token: &str, count: usize) -> anyhow::Result<GrpcStreams> {
        let authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {token}")
                .parse()
                .context("the token is not valid in a gRPC header")?;
        let mut streams = Vec::new();
        for _ in 0..count {
            let channel = tonic::transport::Endpoint::from_shared(url.to_string())
                .with_context(|| format!("bad gRPC URL {url}"))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to Cairn's gRPC at {url}"))?;
            let (requests, inbound) = mpsc::channel::<OrderStreamRequest>(STREAM_QUEUE);
            let outbound = futures_util::stream::unfold(inbound, |mut inbound| async move {
                inbound.recv().await.map(|request| (request, inbound))
            });
            let mut request = tonic::Request::new(outbound);
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            let responses = MatchingClient::new(channel)
                .order_stream(request)
                .await
                .map_err(|status| anyhow!("opening an OrderStream: {status}"))?
                .into_inner();
            let waiting: Waiting = Arc::default();
            tokio::spawn(route(responses, Arc::clone(&waiting)));
            streams.push(GrpcStream { requests, waiting });
        }
        Ok(GrpcStreams {
            streams,
            next_tag: AtomicU64::new(0),
        })
    }

    async fn place(&self, task: usize, order: OrderRequest) -> Result<u64, Sent> {
        let request = Call::PlaceOrder(PlaceOrderRequest {
            request_id: order.request_id,
            symbol: SYMBOL.to_string(),
            account: order.account,
            side: order.side,
            r#type: order.order_type,
            price: order.price,
            qty: order.qty,
            time_in_force: order.time_in_force,
            post_only: Some(order.post_only),
            stp: None,
        });
        self.call(task, request).await
    }

    async fn cancel(&self, task: usize, order_id: u64, request_id: String) -> Result<u64, Sent> {
        let request = Call::CancelOrder(CancelOrderRequest {
            symbol: SYMBOL.to_string(),
            order_id,
            request_id: Some(request_id),
        });
        self.call(task, request).await
    }

    /// Sends one tagged request on stream `task % streams`; the order id of the answer.
    async fn call(&self, task: usize, request: Call) -> Result<u64, Sent> {
        let stream = &self.streams[task % self.streams.len()];
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (answered, answer) = oneshot::channel();
        lock(&stream.waiting).insert(tag, answered);
        let request = OrderStreamRequest {
            tag,
            request: Some(request),
        };
        if stream.requests.send(request).await.is_err() {
            lock(&stream.waiting).remove(&tag);
            return Err(Sent::Failed("the OrderStream is closed".into()));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Sent::Failed(
                "the OrderStream ended without an answer".into(),
            )),
            Err(_) => {
                lock(&stream.waiting).remove(&tag);
                Err(Sent::Failed(format!(
                    "no answer within {REQUEST_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// gRPC codes of the book's refusals: INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
/// FAILED_PRECONDITION (`order_not_open`).
const REFUSALS: [i32; 4] = [3, 5, 6, 9];

/// Reads one stream's responses and hands each to the request waiting for its tag; when the
/// stream ends, fails every request still waiting.
async fn route(mut responses: tonic::Streaming<OrderStreamResponse>, waiting: Waiting) {
    let ended = loop {
        match responses.message().await {
            Ok(Some(response)) => {
                let outcome = match response.reply {
                    Some(Reply::PlaceOrder(order) | Reply::CancelOrder(order)) => {
                        Ok(order.order_id)
                    }
                    Some(Reply::Error(error)) if REFUSALS.contains(&error.grpc_code) => {
                        Err(Sent::Refused)
                    }
                    Some(Reply::Error(error)) => Err(Sent::Failed(truncate(format!(
                        "{}: {}",
                        error.code, error.message
                    )))),
                    other => Err(Sent::Failed(format!("unexpected reply {other:?}"))),
                };
                if let Some(waiter) = lock(&waiting).remove(&response.tag) {
                    let _ = waiter.send(outcome);
                }
            }
            Ok(None) => break "the server ended the stream".to_string(),
            Err(status) => break format!("the stream failed: {status}"),
        }
    };
    for (_, waiter) in lock(&waiting).drain() {
        let _ = waiter.send(Err(Sent::Failed(ended.clone())));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A reader that panicked leaves a map that is still consistent (inserts and removes only).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
