//! Cairn's network front. It only translates: requests into engine commands, results into
//! responses. Shaped after mini-redis: [`run`] takes a bound listener and a shutdown future, so
//! tests start a server in-process on port 0 and stop it when they like.

#![deny(missing_docs)]

pub mod auth;
mod body;
pub mod error;
mod inventory;
mod routes;
pub mod session;
pub mod tokens;

pub use auth::{AdminToken, admin_token};

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
    /// The admin token's hash.
    pub admin: Arc<AdminToken>,
}

/// Serves HTTP on `listener` until `shutdown` completes, then stops accepting, lets requests in
/// progress finish and returns. The caller shuts the engine down after (so the log is synced).
///
/// # Errors
/// I/O errors of the listener.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
