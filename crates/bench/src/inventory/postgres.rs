//! PostgreSQL's side: a table of its own with one row per SKU, and the reservation as one
//! autocommitted `UPDATE ... SET qty = qty - $1 WHERE sku = $2 AND qty >= $1` (a prepared
//! statement) under the server's default, durable settings.
//!
//! At most [`CONNECTIONS_MAX`] connections are opened (the server's default `max_connections` is
//! 100); with more requests in flight, several tasks share a connection and tokio-postgres
//! pipelines their statements on it. Each row says which.

use super::driver::Target;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, NoTls, Statement};

/// Most connections opened.
pub(crate) const CONNECTIONS_MAX: usize = 64;

/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one operation is, for the rows.
pub(crate) const OPERATION: &str = "UPDATE stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1 \
     (prepared statement, autocommit)";

struct Connection {
    client: Client,
    update: Statement,
}

/// The connections, the table and what the server said about itself.
pub(crate) struct Postgres {
    connections: Arc<Vec<Connection>>,
    table: String,
    /// `server_version`.
    pub(crate) version: String,
    /// `synchronous_commit` and `fsync`.
    pub(crate) durability: String,
}

impl Postgres {
    /// Connects `connections` times (at most [`CONNECTIONS_MAX`]), creates the table `table`
    /// with `stock` units of every SKU, and prepares the update on every connection. Must be
    /// called on a runtime: each connection's I/O runs in a task of its own.
    ///
    /// # Errors
    /// The server cannot be reached, or a statement fails (the table is dropped again).
    pub(crate) async fn connect(
        url: &str,
        connections: usize,
        table: &str,
        skus: &[String],
        stock: i64,
    ) -> anyhow::Result<Postgres> {
        let first = open(url).await?;
        let version = show(&first, "server_version").await;
        let durability = format!(
            "synchronous_commit={}, fsync={}, wal_sync_method={} (every commit waits for its WAL flush)",
            show(&first, "synchronous_commit").await,
            show(&first, "fsync").await,
            show(&first, "wal_sync_method").await,
        );
        first
            .batch_execute(&format!(
                "CREATE TABLE {table} (sku text PRIMARY KEY, qty bigint NOT NULL)"
            ))
            .await
            .with_context(|| format!("creating the table {table}"))?;
        let sql = format!("UPDATE {table} SET qty = qty - $1 WHERE sku = $2 AND qty >= $1");
        let setup = async {
            first
                .execute(
                    &format!("INSERT INTO {table} (sku, qty) SELECT unnest($1::text[]), $2"),
                    &[&skus, &stock],
                )
                .await?;
            first.batch_execute(&format!("ANALYZE {table}")).await?;
            first.prepare(&sql).await
        }
        .await;
        let update = match setup {
            Ok(update) => update,
            Err(error) => {
                drop_table(&first, table).await;
                return Err(anyhow::Error::new(error).context("filling the table"));
            }
        };
        let mut all = vec![Connection {
            client: first,
            update,
        }];
        let more = async {
            for _ in 1..connections.clamp(1, CONNECTIONS_MAX) {
                let client = open(url).await?;
                let update = client.prepare(&sql).await.context("preparing the update")?;
                all.push(Connection { client, update });
            }
            anyhow::Ok(())
        }
        .await;
        let postgres = Postgres {
            connections: Arc::new(all),
            table: table.to_string(),
            version,
            durability,
        };
        if let Err(error) = more {
            postgres.drop_table().await;
            return Err(error);
        }
        Ok(postgres)
    }

    /// The load for one point: `in_flight` tasks over `min(in_flight, connections)` connections.
    pub(crate) fn load(&self, skus: Arc<[String]>, in_flight: usize, qty: i64) -> PostgresLoad {
        PostgresLoad {
            connections: Arc::clone(&self.connections),
            active: in_flight.clamp(1, self.connections.len().max(1)),
            skus,
            qty,
        }
    }

    /// Connections one point with `in_flight` requests uses.
    pub(crate) fn connections_for(&self, in_flight: usize) -> usize {
        in_flight.clamp(1, self.connections.len().max(1))
    }

    /// Drops the table (best effort: a failure is printed).
    pub(crate) async fn drop_table(&self) {
        if let Some(connection) = self.connections.first() {
            drop_table(&connection.client, &self.table).await;
        }
    }
}

async fn drop_table(client: &Client, table: &str) {
    if let Err(error) = client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
    {
        eprintln!("warning: could not drop PostgreSQL table {table}: {error}");
    }
}

async fn open(url: &str) -> anyhow::Result<Client> {
    let connecting = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|connected| connected.map_err(anyhow::Error::new))
        .with_context(|| format!("connecting to PostgreSQL ({url})"))?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error then is the benchmark's business, not news.
        let _ = connection.await;
    });
    Ok(client)
}

/// `SHOW setting`, or `?` when the server will not say.
pub(crate) async fn show(client: &Client, setting: &str) -> String {
    match client.query_one(&format!("SHOW {setting}"), &[]).await {
        Ok(row) => row.try_get::<_, String>(0).unwrap_or_else(|_| "?".into()),
        Err(_) => "?".into(),
    }
}

/// One point's load on PostgreSQL.
pub(crate) struct PostgresLoad {
    connections: Arc<Vec<Connection>>,
    active: usize,
    skus: Arc<[String]>,
    qty: i64,
}

impl Target for PostgresLoad {
    async fn reserve(&self, task: usize, sku: usize) -> Result<(), String> {
        let connection = &self.connections[task % self.active];
        let updated = connection
            .client
            .execute(&connection.update, &[&self.qty, &self.skus[sku]])
            .await
            .map_err(|e| e.to_string())?;
        if updated == 1 {
            Ok(())
        } else {
            Err(format!("the update changed {updated} rows, not 1"))
        }
    }
}
