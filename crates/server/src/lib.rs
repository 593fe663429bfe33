//! Cairn's network front (HTTP/JSON and gRPC). It only translates: requests into engine
//! commands, results into responses. Shaped after mini-redis: [`run`] and [`run_grpc`] take a
//! bound listener and a shutdown future, so tests start a server in-process on port 0 and stop it
//! when they like.

#![deny(missing_docs)]

pub mod auth;
mod body;
pub mod error;
mod feed;
pub mod grpc;
pub mod grpc_matching;
pub mod grpc_publishing;
pub mod http_metrics;
mod inventory;
mod matching;
pub mod openapi;
mod publishing;
mod routes;
pub mod session;
pub mod tokens;

pub use auth::{AdminToken, admin_token};
pub use grpc::run_grpc;

use cairn_engine::Engine;
use cairn_engine::cairn::Cairn;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What every request handler shares.
#[derive(Clone)]
pub struct App {
    /// The engine.
    pub engine: Arc<Engine<Cairn>>,
    /// The admin token's hash and the token store.
    pub admin: Arc<AdminToken>,
    /// Set when the server starts shutting down: long-lived responses (feeds) end then.
    pub closing: Closing,
    /// HTTP request counts and latencies.
    pub http: Arc<http_metrics::HttpMetrics>,
    /// gRPC call counts and latencies.
    pub grpc: Arc<http_metrics::HttpMetrics>,
    /// The publishing view reads are answered from, and the shard-0 LSN it was taken at.
    pub publishing_view: Arc<arc_swap::ArcSwap<(cairn_publishing::View, u64)>>,
}

impl App {
    /// An app over an engine and its tokens.
    #[must_use]
    pub fn new(engine: Arc<Engine<Cairn>>, admin: Arc<AdminToken>) -> App {
        App {
            engine,
            admin,
            closing: Closing::default(),
            http: Arc::default(),
            grpc: Arc::new(http_metrics::HttpMetrics::grpc()),
            publishing_view: Arc::default(),
        }
    }
}

/// A one-way "the server is shutting down" signal.
#[derive(Clone, Debug)]
pub struct Closing(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Closing {
    fn default() -> Closing {
        Closing(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Closing {
    /// Signals every waiter.
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    /// Completes once [`Closing::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.subscribe();
        async move {
            let _ = receiver.wait_for(|closing| *closing).await;
        }
    }
}

/// Serves HTTP on `listener` until `shutdown` completes, then ends the open feeds, stops
/// accepting, lets requests in progress finish and returns. The caller shuts the engine down
/// after (so the log is synced).
///
/// # Errors
/// I/O errors of the listener.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = app.closing.clone();
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    publishing::spawn_follower(&app);
    inventory::spawn_txn_resolver(&app);
    let router = routes::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
