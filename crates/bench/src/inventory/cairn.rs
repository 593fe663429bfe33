//! Cairn's side: an in-process server on a fresh data directory (or a server given by URL), and
//! the reservation as one `POST /v1/inventory/reservations` through `cairn-client`.

use super::driver::Target;
use anyhow::{Context as _, anyhow, bail};
use cairn_client::{AdjustRequest, Client, ReserveLine, ReserveRequest};
use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ShardConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The one location every SKU is stocked at and reserved from.
pub(crate) const LOCATION: &str = "bench";

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests in flight while the SKUs are stocked.
const SEED_CONCURRENCY: usize = 64;

/// A Cairn server started in this process: its own tokio runtime, an engine on a fresh data
/// directory in durable `sync` mode (every reply after `fdatasync`), HTTP and gRPC on free loopback
/// ports.
pub(crate) struct InProcess {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    grpc_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    grpc_served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    engine: Option<Arc<Engine<Cairn>>>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base_url: String,
    /// `http://127.0.0.1:PORT` of the gRPC service.
    pub(crate) grpc_url: String,
    /// The admin token it accepts.
    pub(crate) token: String,
    // Dropped last: the data directory goes once the engine has stopped.
    dir: Option<tempfile::TempDir>,
}

impl InProcess {
    /// Starts a server whose data directory is a new directory under `base` named `prefix…`,
    /// with `threads` runtime worker threads and one shard. Shared by the inventory and matching
    /// benchmarks.
    ///
    /// # Errors
    /// The directory, the engine, the runtime or the listener cannot be set up.
    pub(crate) fn start(base: &Path, prefix: &str, threads: usize) -> anyhow::Result<InProcess> {
        InProcess::start_with_shards(base, prefix, threads, 1)
    }

    /// As [`InProcess::start`], with `shards` shards (the transaction benchmark's two).
    ///
    /// # Errors
    /// As [`InProcess::start`].
    pub(crate) fn start_with_shards(
        base: &Path,
        prefix: &str,
        threads: usize,
        shards: u16,
    ) -> anyhow::Result<InProcess> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(base)
            .with_context(|| format!("creating a directory in {}", base.display()))?;
        let config = EngineConfig {
            data_dir: dir.path().join("data"),
            shard_count: Some(shards),
            shard: ShardConfig::default(),
        };
        let (engine, _recoveries) =
            Engine::<Cairn>::open(config).map_err(|e| anyhow!("opening Cairn's engine: {e}"))?;
        let engine = Arc::new(engine);
        let token = cairn_server::auth::new_secret().map_err(anyhow::Error::msg)?;
        let admin = Arc::new(cairn_server::AdminToken::from_secret(&token));
        let app = cairn_server::App::new(Arc::clone(&engine), admin);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("cairn-server")
            .enable_all()
            .build()
            .context("starting the server's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("listening on 127.0.0.1")?;
        let address = listener.local_addr().context("the listener's address")?;
        let grpc_listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("listening on 127.0.0.1 for gRPC")?;
        let grpc_address = grpc_listener
            .local_addr()
            .context("the gRPC listener's address")?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(cairn_server::run(listener, app.clone(), async move {
            let _ = stop.await;
        }));
        let (grpc_shutdown, grpc_stop) = tokio::sync::oneshot::channel::<()>();
        let grpc_served = runtime.spawn(cairn_server::run_grpc(grpc_listener, app, async move {
            let _ = grpc_stop.await;
        }));
        Ok(InProcess {
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            served: Some(served),
            grpc_shutdown: Some(grpc_shutdown),
            grpc_served: Some(grpc_served),
            engine: Some(engine),
            base_url: format!("http://{address}"),
            grpc_url: format!("http://{grpc_address}"),
            token,
            dir: Some(dir),
        })
    }

    /// The counters of the one shard's log writer.
    pub(crate) fn log_metrics(&self) -> Option<Arc<cairn_log::metrics::LogMetrics>> {
        let engine = self.engine.as_ref()?;
        let shard = engine.shards().first()?;
        Some(Arc::clone(&shard.metrics().log))
    }

    /// The counters of every shard's log writer.
    pub(crate) fn shard_log_metrics(&self) -> Vec<Arc<cairn_log::metrics::LogMetrics>> {
        self.engine.as_ref().map_or_else(Vec::new, |engine| {
            engine
                .shards()
                .iter()
                .map(|shard| Arc::clone(&shard.metrics().log))
                .collect()
        })
    }

    /// Stops serving, shuts the engine down (syncing the log) and removes the data directory.
    ///
    /// # Errors
    /// The server failed, or the directory cannot be removed.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for shutdown in [self.shutdown.take(), self.grpc_shutdown.take()]
            .into_iter()
            .flatten()
        {
            let _ = shutdown.send(());
        }
        for (front, served) in [
            ("HTTP", self.served.take()),
            ("gRPC", self.grpc_served.take()),
        ] {
            let (Some(runtime), Some(served)) = (self.runtime.as_ref(), served) else {
                continue;
            };
            let joined = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), served).await });
            let outcome = match joined {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(error))) => Err(anyhow!("the in-process {front} server failed: {error}")),
                Ok(Err(error)) => Err(anyhow!("the in-process {front} server panicked: {error}")),
                Err(_) => Err(anyhow!(
                    "the in-process {front} server did not stop within 30 s"
                )),
            };
            result = result.and(outcome);
        }
        // Dropping the runtime drops every task still holding the engine.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let Some(engine) = self.engine.take() {
            match Arc::try_unwrap(engine) {
                Ok(engine) => engine.shutdown(),
                Err(_) => {
                    result = result.and(Err(anyhow!(
                        "the in-process engine is still referenced; it was not shut down cleanly"
                    )));
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            result = result.and(dir.close().context("removing Cairn's data directory"));
        }
        result
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Err(error) = self.stop_inner() {
            eprintln!("warning: stopping the in-process Cairn server: {error:#}");
        }
    }
}

/// The HTTP/JSON client side: one `POST /v1/inventory/reservations` per operation, each with a
/// fresh `request_id` and `order_id`, over a pool of keep-alive HTTP/1.1 connections (one per
/// request in flight).
pub(crate) struct CairnHttp {
    client: Client,
    skus: Arc<[String]>,
    /// Makes every request id of this run unique, even against a server used before.
    tag: String,
    next: AtomicU64,
    qty: i64,
    ttl_ms: u64,
}

impl CairnHttp {
    /// A client for `base_url` with `token`.
    ///
    /// # Errors
    /// The HTTP stack cannot be set up.
    pub(crate) fn new(
        base_url: &str,
        token: &str,
        skus: Arc<[String]>,
        tag: &str,
        qty: i64,
        ttl_ms: u64,
    ) -> anyhow::Result<CairnHttp> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .context("setting up the HTTP client")?;
        Ok(CairnHttp {
            client: Client::with_http(base_url, token, http),
            skus,
            tag: tag.to_string(),
            next: AtomicU64::new(0),
            qty,
            ttl_ms,
        })
    }

    /// Checks the server is ready, then puts `stock` units of every SKU at [`LOCATION`].
    ///
    /// # Errors
    /// The server is not ready, or an adjustment fails.
    pub(crate) async fn stock(self: &Arc<Self>, stock: i64) -> anyhow::Result<()> {
        self.client
            .readyz()
            .await
            .with_context(|| format!("Cairn at {} is not ready", self.client.base_url()))?;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..SEED_CONCURRENCY {
            let this = Arc::clone(self);
            tasks.spawn(async move {
                for (index, sku) in this
                    .skus
                    .iter()
                    .enumerate()
                    .skip(worker)
                    .step_by(SEED_CONCURRENCY)
                {
                    let request = AdjustRequest {
                        request_id: format!("{}-stock-{index}", this.tag),
                        sku: sku.clone(),
                        location: LOCATION.to_string(),
                        delta: stock,
                        reason: "cairn bench inventory: initial stock".to_string(),
                    };
                    this.client
                        .adjust(&request)
                        .await
                        .with_context(|| format!("stocking {sku} in Cairn"))?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.context("a stocking task panicked")??;
        }
        Ok(())
    }
}

impl Target for CairnHttp {
    async fn reserve(&self, _task: usize, sku: usize) -> Result<(), String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-r{n}", self.tag);
        let request = ReserveRequest {
            request_id: id.clone(),
            order_id: id,
            lines: vec![ReserveLine {
                sku: self.skus[sku].clone(),
                location: Some(LOCATION.to_string()),
                qty: self.qty,
            }],
            ttl_ms: Some(self.ttl_ms),
        };
        self.client
            .reserve(&request)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Refuses a `--cairn-url` without a token early, with the reason.
pub(crate) fn check_external(url: &str, token: Option<&str>) -> anyhow::Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--cairn-url must start with http:// or https://, got {url}");
    }
    if token.is_none_or(|t| t.trim().is_empty()) {
        bail!(
            "--cairn-url needs --cairn-token (or CAIRN_TOKEN): an operator token, to stock the SKUs"
        );
    }
    Ok(())
}
