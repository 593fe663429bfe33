//! `cairn serve`: settings from flags, `CAIRN_*` variables and a TOML file (in that order of
//! precedence), then the engine and the HTTP server until SIGTERM or SIGINT.

use anyhow::{Context, bail};
use cairn_engine::cairn::Cairn;
use cairn_engine::{Engine, EngineConfig, ShardConfig};
use cairn_log::{CommitOptions, Durability, LogOptions};
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Flags of `cairn serve`. Each is also a `CAIRN_*` variable and a key of the `--config` file.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// A TOML file with any of these settings (keys as the flags, with underscores).
    #[arg(long, env = "CAIRN_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The data directory [default: ./cairn-data].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "CAIRN_HTTP")]
    http: Option<String>,
    /// gRPC listen address [default: none, no gRPC].
    #[arg(long, env = "CAIRN_GRPC")]
    grpc: Option<String>,
    /// Shards of a new data directory [default: one per core]. An existing directory keeps the
    /// count it was created with: leave this unset, or give the same number (another number is
    /// refused).
    #[arg(long, env = "CAIRN_SHARDS")]
    shards: Option<u16>,
    /// `sync` (acknowledge after fdatasync) or `async` (acknowledge after write) [default: sync].
    #[arg(long, env = "CAIRN_DURABILITY")]
    durability: Option<String>,
    /// In async mode, the longest time between syncs [default: 10].
    #[arg(long, env = "CAIRN_SYNC_INTERVAL_MS")]
    sync_interval_ms: Option<u64>,
    /// Log segment size in bytes [default: 67108864].
    #[arg(long, env = "CAIRN_SEGMENT_BYTES")]
    segment_bytes: Option<u64>,
    /// Snapshot every N records per shard, 0 for on demand only [default: 1000000].
    #[arg(long, env = "CAIRN_SNAPSHOT_EVERY_RECORDS")]
    snapshot_every_records: Option<u64>,
    /// Snapshots kept per shard [default: 3].
    #[arg(long, env = "CAIRN_SNAPSHOTS_KEPT")]
    snapshots_kept: Option<usize>,
    /// Bound of each shard's command queue [default: 65536].
    #[arg(long, env = "CAIRN_COMMAND_QUEUE_DEPTH")]
    command_queue_depth: Option<usize>,
}

impl ServeArgs {
    /// Fills what flags and variables left unset from the TOML file.
    fn merged(self) -> anyhow::Result<ServeArgs> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: ServeArgs = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid config", path.display()))?;
        Ok(ServeArgs {
            config: self.config,
            data_dir: self.data_dir.or(file.data_dir),
            http: self.http.or(file.http),
            grpc: self.grpc.or(file.grpc),
            shards: self.shards.or(file.shards),
            durability: self.durability.or(file.durability),
            sync_interval_ms: self.sync_interval_ms.or(file.sync_interval_ms),
            segment_bytes: self.segment_bytes.or(file.segment_bytes),
            snapshot_every_records: self.snapshot_every_records.or(file.snapshot_every_records),
            snapshots_kept: self.snapshots_kept.or(file.snapshots_kept),
            command_queue_depth: self.command_queue_depth.or(file.command_queue_depth),
        })
    }

    fn shard_config(&self) -> anyhow::Result<ShardConfig> {
        let defaults = ShardConfig::default();
        let durability = match self.durability.as_deref().unwrap_or("sync") {
            "sync" => Durability::Sync,
            "async" => Durability::Async {
                sync_interval_ms: self.sync_interval_ms.unwrap_or(10),
            },
            other => bail!("durability must be 'sync' or 'async', got '{other}'"),
        };
        let config = ShardConfig {
            log: LogOptions {
                segment_bytes_max: self.segment_bytes.unwrap_or(defaults.log.segment_bytes_max),
            },
            commit: CommitOptions {
                durability,
                ..defaults.commit
            },
            command_queue_depth_max: self
                .command_queue_depth
                .unwrap_or(defaults.command_queue_depth_max),
            snapshot_every_records: self
                .snapshot_every_records
                .unwrap_or(defaults.snapshot_every_records),
            snapshots_kept: self.snapshots_kept.unwrap_or(defaults.snapshots_kept),
            ..defaults
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

/// Runs the server until a signal.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let args = args.merged()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("cairn-data"));
    let http = args
        .http
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let shard = args.shard_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(data_dir, http, args.grpc, args.shards, shard))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    data_dir: PathBuf,
    http: String,
    grpc: Option<String>,
    shards: Option<u16>,
    shard: ShardConfig,
) -> anyhow::Result<()> {
    let config = EngineConfig {
        data_dir: data_dir.clone(),
        shard_count: shards.or_else(|| default_shards(&data_dir)),
        shard,
    };
    let (engine, recoveries) = tokio::task::spawn_blocking(move || Engine::<Cairn>::open(config))
        .await
        .context("recovery panicked")??;
    for (index, recovery) in recoveries.iter().enumerate() {
        tracing::info!(shard = index, last_lsn = recovery.last_lsn.0, snapshot_lsn = ?recovery.snapshot_lsn.map(|l| l.0),
            replayed = recovery.records_replayed, elapsed_ms = recovery.elapsed_ms, "shard ready");
    }
    let tokens = cairn_server::tokens::TokenStore::open(&data_dir.join("tokens.json"))
        .map_err(anyhow::Error::msg)?;
    let admin = admin_token(&data_dir)?.with_store(tokens);
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(&http)
        .await
        .with_context(|| format!("cannot listen on {http}"))?;
    let address = listener.local_addr().context("no local address")?;
    let grpc_listener = match &grpc {
        Some(grpc) => Some(
            tokio::net::TcpListener::bind(grpc)
                .await
                .with_context(|| format!("cannot listen on {grpc}"))?,
        ),
        None => None,
    };
    tracing::info!(%address, data_dir = %data_dir.display(), shards = engine.shard_count(), "cairn serving HTTP");
    // A plain line that scripts and tests can wait for.
    eprintln!("cairn listening on http://{address}");
    if let Some(grpc) = &grpc_listener {
        let address = grpc.local_addr().context("no local address")?;
        tracing::info!(%address, "cairn serving gRPC");
        eprintln!("cairn grpc listening on {address}");
    }
    let engine = Arc::new(engine);
    let app = cairn_server::App::new(Arc::clone(&engine), Arc::new(admin));
    // HTTP stops on the signal and then closes the app; gRPC stops when the app closes.
    let grpc_server = async {
        match grpc_listener {
            Some(listener) => cairn_server::run_grpc(listener, app.clone(), app.closing.closed())
                .await
                .context("gRPC server failed"),
            None => Ok(()),
        }
    };
    let http_server = async {
        cairn_server::run(listener, app.clone(), shutdown)
            .await
            .context("HTTP server failed")
    };
    tokio::try_join!(http_server, grpc_server)?;
    drop(app);
    tracing::info!("shutting down: draining shards and syncing the log");
    match Arc::try_unwrap(engine) {
        Ok(engine) => tokio::task::spawn_blocking(move || engine.shutdown())
            .await
            .context("shutdown panicked")?,
        Err(_) => {
            tracing::warn!("requests still hold the engine; it will sync as the process exits")
        }
    }
    Ok(())
}

fn admin_token(data_dir: &Path) -> anyhow::Result<cairn_server::AdminToken> {
    let from_env = std::env::var("CAIRN_ADMIN_TOKEN").ok();
    let (token, source) =
        cairn_server::admin_token(data_dir, from_env).map_err(anyhow::Error::msg)?;
    match source {
        cairn_server::auth::TokenSource::Environment => {
            tracing::info!("admin token from CAIRN_ADMIN_TOKEN")
        }
        cairn_server::auth::TokenSource::File { path, created } => {
            let verb = if created { "created" } else { "read" };
            // The path, never the token.
            eprintln!("admin token {verb}: {}", path.display());
        }
    }
    Ok(token)
}

/// Registers the SIGTERM and SIGINT handlers now (before the server says it is listening, so a
/// signal that arrives at once is never fatal) and returns the future that completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// One shard per core for a new data directory; `None` (keep what it has) for an existing one.
fn default_shards(data_dir: &std::path::Path) -> Option<u16> {
    let existing = cairn_engine::read_meta(&cairn_log::storage::FileStorage, data_dir);
    if !matches!(existing, Ok(None)) {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    Some(
        u16::try_from(cores)
            .unwrap_or(u16::MAX)
            .clamp(1, cairn_types::limits::SHARD_COUNT_MAX),
    )
}
