//! PostgreSQL's side: two databases of the benchmark's own on one server, each holding the stock
//! of one shard's SKUs, and a reservation as a two-phase commit across them, with the same
//! conditional decrement as Cairn's: on each database `BEGIN` and one
//! `UPDATE stock SET available = available - $1 WHERE sku = $2 AND available >= $1` per line
//! (pipelined on its connection), then `PREPARE TRANSACTION` on both at once, then
//! `COMMIT PREPARED` on both at once; a short line rolls both back. Durable: the server's
//! default `synchronous_commit=on`, so each `PREPARE TRANSACTION` and each `COMMIT PREPARED`
//! waits for its WAL flush.
//!
//! The first database is always worked before the second, and each one's rows in SKU order, so
//! row locks are taken in one global order: the two databases cannot deadlock each other (which
//! neither would detect, each seeing only its half).
//!
//! A transaction holds one connection to each database from `BEGIN` to `COMMIT PREPARED` (as an
//! XA resource manager's connection is held), so at most [`PAIRS_MAX`] run at once; beyond that,
//! load-generator tasks wait for a pair.
//!
//! `PREPARE TRANSACTION` needs `max_prepared_transactions` above zero (PostgreSQL's default is
//! zero), which takes a restart: on a server on this machine the setup raises it with
//! `ALTER SYSTEM` and restarts the server with the first of `pg_ctlcluster`, `systemctl`,
//! `service` that works, and says what it did; when none does, the rows are skipped with the
//! exact steps to take.

use crate::inventory::driver::Target;
use crate::inventory::postgres::show;
use crate::txn::basket::Baskets;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// Most transactions at once: one connection to each database each, so twice this many
/// connections (PostgreSQL's default `max_connections` is 100).
pub(crate) const PAIRS_MAX: usize = 40;
/// What the setup raises `max_prepared_transactions` to: above every prepared transaction this
/// benchmark can have at once (two per pair), with room for others.
pub(crate) const MAX_PREPARED_TRANSACTIONS: u32 = 300;

/// What one operation is, for the rows.
pub(crate) const OPERATION: &str = "two-phase commit over two databases: on each, BEGIN and one \
     UPDATE stock SET available = available - $1 WHERE sku = $2 AND available >= $1 per line \
     (prepared statement, pipelined; the first database, then the second), then PREPARE \
     TRANSACTION on both at once, then COMMIT PREPARED on both at once; one connection per \
     database per transaction";

/// Longest wait for one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one restart command may run.
const RESTART_COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for the server to accept connections again after a restart.
const RESTART_WAIT: Duration = Duration::from_secs(60);
/// Longest error text kept from a failed command.
const COMMAND_ERROR_BYTES_MAX: usize = 300;

/// The steps to take by hand when the setup could not raise `max_prepared_transactions`.
fn manual_steps(restart: &str) -> String {
    format!(
        "as a PostgreSQL superuser run `ALTER SYSTEM SET max_prepared_transactions = \
         {MAX_PREPARED_TRANSACTIONS}`, restart PostgreSQL ({restart}), and run the benchmark again"
    )
}

/// One database's connection inside a pair.
struct Side {
    client: Client,
    update: Statement,
}

/// A connection to each database; a transaction holds the pair from `BEGIN` to `COMMIT
/// PREPARED`.
struct Pair {
    sides: [Side; 2],
    busy: tokio::sync::Mutex<()>,
}

/// The two databases, the connections, and what the server said about itself.
pub(crate) struct TwoPhase {
    pairs: Arc<Vec<Pair>>,
    config: Config,
    /// The two databases, in the order they are worked.
    pub(crate) databases: [String; 2],
    tag: String,
    /// `server_version`.
    pub(crate) version: String,
    /// `synchronous_commit`, `fsync` and `wal_sync_method`.
    pub(crate) durability: String,
    /// What the setup found or did about `max_prepared_transactions`.
    pub(crate) prepared_transactions: String,
}

impl TwoPhase {
    /// Makes sure prepared transactions are allowed, creates the two databases (shard `s`'s SKUs
    /// in database `s`, `stock` units each) and opens `pairs` connection pairs (at most
    /// [`PAIRS_MAX`]). Blocking; runs its queries on `runtime`.
    ///
    /// # Errors
    /// Why PostgreSQL cannot be used (the databases are dropped again).
    pub(crate) fn setup(
        runtime: &tokio::runtime::Runtime,
        url: &str,
        tag: &str,
        baskets: &Baskets,
        stock: i64,
        pairs: usize,
    ) -> Result<TwoPhase, String> {
        let config: Config = url
            .parse()
            .map_err(|e| format!("bad PostgreSQL connection string {url}: {e}"))?;
        let prepared_transactions = allow_prepared_transactions(runtime, &config)?;
        let databases = [
            format!("cairn_bench_txn_{tag}_a"),
            format!("cairn_bench_txn_{tag}_b"),
        ];
        let mut two_phase = TwoPhase {
            pairs: Arc::new(Vec::new()),
            config,
            databases,
            tag: tag.to_string(),
            version: String::new(),
            durability: String::new(),
            prepared_transactions,
        };
        let filled = runtime.block_on(two_phase.fill(baskets, stock, pairs));
        match filled {
            Ok(opened) => {
                two_phase.pairs = Arc::new(opened);
                Ok(two_phase)
            }
            Err(error) => {
                runtime.block_on(two_phase.drop_databases());
                Err(error)
            }
        }
    }

    async fn fill(
        &mut self,
        baskets: &Baskets,
        stock: i64,
        pairs: usize,
    ) -> Result<Vec<Pair>, String> {
        let admin = connect(&self.config).await?;
        self.version = show(&admin, "server_version").await;
        self.durability = format!(
            "synchronous_commit={}, fsync={}, wal_sync_method={} (PREPARE TRANSACTION and \
             COMMIT PREPARED each wait for their WAL flush; both databases share one server and \
             one WAL)",
            show(&admin, "synchronous_commit").await,
            show(&admin, "fsync").await,
            show(&admin, "wal_sync_method").await,
        );
        for database in &self.databases {
            admin
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await
                .map_err(|e| format!("creating the database {database}: {e}"))?;
        }
        let sql = "UPDATE stock SET available = available - $1 WHERE sku = $2 AND available >= $1";
        for (shard, database) in self.databases.iter().enumerate() {
            let client = connect(&self.on(database)).await?;
            let skus: Vec<&String> = baskets
                .skus
                .iter()
                .enumerate()
                .filter(|(index, _)| baskets.shard_of(*index) == shard)
                .map(|(_, sku)| sku)
                .collect();
            client
                .batch_execute(
                    "CREATE TABLE stock (sku text PRIMARY KEY, available bigint NOT NULL)",
                )
                .await
                .map_err(|e| format!("creating the table in {database}: {e}"))?;
            client
                .execute(
                    "INSERT INTO stock (sku, available) SELECT unnest($1::text[]), $2",
                    &[&skus, &stock],
                )
                .await
                .map_err(|e| format!("stocking {database}: {e}"))?;
            client
                .batch_execute("ANALYZE stock")
                .await
                .map_err(|e| format!("analyzing {database}: {e}"))?;
        }
        let mut opened = Vec::with_capacity(pairs);
        for _ in 0..pairs.clamp(1, PAIRS_MAX) {
            let mut sides = Vec::with_capacity(2);
            for database in &self.databases {
                let client = connect(&self.on(database)).await?;
                let update = client
                    .prepare(sql)
                    .await
                    .map_err(|e| format!("preparing the update in {database}: {e}"))?;
                sides.push(Side { client, update });
            }
            let [first, second]: [Side; 2] = sides
                .try_into()
                .map_err(|_| "a pair needs two connections".to_string())?;
            opened.push(Pair {
                sides: [first, second],
                busy: tokio::sync::Mutex::new(()),
            });
        }
        Ok(opened)
    }

    /// The connection settings for `database`.
    fn on(&self, database: &str) -> Config {
        let mut config = self.config.clone();
        config.dbname(database);
        config
    }

    /// The load for one point: `in_flight` tasks over `min(in_flight, pairs)` pairs.
    pub(crate) fn load(&self, baskets: Arc<Baskets>, in_flight: usize, qty: i64) -> TwoPhaseLoad {
        TwoPhaseLoad {
            pairs: Arc::clone(&self.pairs),
            active: self.pairs_for(in_flight),
            baskets,
            qty,
            tag: self.tag.clone(),
            next: AtomicU64::new(0),
        }
    }

    /// Connection pairs one point with `in_flight` requests uses.
    pub(crate) fn pairs_for(&self, in_flight: usize) -> usize {
        in_flight.clamp(1, self.pairs.len().max(1))
    }

    /// Closes the connections, rolls back any transaction of this run still prepared (a failed
    /// point can leave one), and drops both databases (best effort: failures are printed).
    pub(crate) async fn cleanup(mut self) {
        // Every connection must be gone before its database can be dropped.
        self.pairs = Arc::new(Vec::new());
        for database in &self.databases {
            let client = match connect(&self.on(database)).await {
                Ok(client) => client,
                Err(error) => {
                    eprintln!("warning: {error}");
                    continue;
                }
            };
            let pattern = format!("{}-%", self.tag);
            let left = client
                .query(
                    "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $1",
                    &[&pattern],
                )
                .await;
            for row in left.into_iter().flatten() {
                let Ok(gid) = row.try_get::<_, String>(0) else {
                    continue;
                };
                if let Err(error) = client
                    .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
                    .await
                {
                    eprintln!("warning: could not roll back prepared transaction {gid}: {error}");
                }
            }
        }
        self.drop_databases().await;
    }

    async fn drop_databases(&self) {
        let admin = match connect(&self.config).await {
            Ok(admin) => admin,
            Err(error) => {
                eprintln!("warning: could not drop the benchmark's databases: {error}");
                return;
            }
        };
        for database in &self.databases {
            if let Err(error) = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await
            {
                eprintln!("warning: could not drop PostgreSQL database {database}: {error}");
            }
        }
    }
}

async fn connect(config: &Config) -> Result<Client, String> {
    let name = config.get_dbname().unwrap_or("(default)").to_string();
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| {
            format!(
                "connecting to PostgreSQL database {name}: no answer within {CONNECT_TIMEOUT:?}"
            )
        })?
        .map_err(|e| format!("connecting to PostgreSQL database {name}: {e}"))?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error then is the benchmark's business, not news.
        let _ = connection.await;
    });
    Ok(client)
}

/// `max_prepared_transactions`, read on a connection of its own.
async fn prepared_transactions_allowed(config: &Config) -> Result<u32, String> {
    let client = connect(config).await?;
    let value = show(&client, "max_prepared_transactions").await;
    value
        .parse()
        .map_err(|_| format!("max_prepared_transactions is {value:?}, not a number"))
}

/// Makes sure the server allows prepared transactions, raising the setting and restarting the
/// server when it is on this machine; says what it found or did.
fn allow_prepared_transactions(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
) -> Result<String, String> {
    let needed = u32::try_from(2 * PAIRS_MAX).unwrap_or(u32::MAX);
    let current = runtime.block_on(prepared_transactions_allowed(config))?;
    if current >= needed {
        return Ok(format!("max_prepared_transactions = {current}"));
    }
    if !on_this_machine(config) {
        return Err(format!(
            "max_prepared_transactions is {current} (at least {needed} needed) on a server that is \
             not on this machine: {}",
            manual_steps("on its machine")
        ));
    }
    let config_file = runtime.block_on(async {
        let client = connect(config).await?;
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET max_prepared_transactions = {MAX_PREPARED_TRANSACTIONS}"
            ))
            .await
            .map_err(|e| {
                format!(
                    "max_prepared_transactions is {current} and ALTER SYSTEM failed ({e}): {}",
                    manual_steps("for example `pg_ctlcluster VERSION main restart`")
                )
            })?;
        Ok::<_, String>(show(&client, "config_file").await)
    })?;
    let commands = restart_commands(&config_file);
    let mut tried = Vec::new();
    for command in &commands {
        let text = command.join(" ");
        eprintln!(
            "cairn bench txn: max_prepared_transactions is {current}: set to \
             {MAX_PREPARED_TRANSACTIONS} with ALTER SYSTEM; restarting PostgreSQL with `{text}`"
        );
        match run_bounded(command) {
            Ok(()) => {
                if wait_until_up(runtime, config) {
                    match runtime.block_on(prepared_transactions_allowed(config)) {
                        Ok(now) if now >= needed => {
                            return Ok(format!(
                                "max_prepared_transactions was {current}: set to {now} with ALTER \
                                 SYSTEM and PostgreSQL restarted with `{text}`"
                            ));
                        }
                        Ok(now) => tried.push(format!("`{text}`: still {now} after it")),
                        Err(error) => tried.push(format!("`{text}`: {error}")),
                    }
                } else {
                    tried.push(format!("`{text}`: not up again within {RESTART_WAIT:?}"));
                }
            }
            Err(error) => tried.push(format!("`{text}`: {error}")),
        }
    }
    // Never leave the server down: start it when no restart brought it back.
    if !wait_until_up(runtime, config) {
        for command in start_commands(&config_file) {
            if run_bounded(&command).is_ok() && wait_until_up(runtime, config) {
                break;
            }
        }
    }
    let restart = commands.first().map_or_else(
        || "pg_ctlcluster VERSION main restart".to_string(),
        |c| c.join(" "),
    );
    Err(format!(
        "max_prepared_transactions is {current} and no restart raised it (tried {}): {}",
        tried.join("; "),
        manual_steps(&format!("here: `{restart}`"))
    ))
}

/// Whether every host of `config` is a loopback address or a Unix socket.
fn on_this_machine(config: &Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => matches!(name.as_str(), "127.0.0.1" | "localhost" | "::1"),
        #[cfg(unix)]
        Host::Unix(_) => true,
    })
}

/// Debian's cluster (`/etc/postgresql/VERSION/CLUSTER/postgresql.conf`) of `config_file`.
fn debian_cluster(config_file: &str) -> Option<(String, String)> {
    let rest = config_file.strip_prefix("/etc/postgresql/")?;
    let mut parts = rest.split('/');
    let (version, cluster, file) = (parts.next()?, parts.next()?, parts.next()?);
    (file == "postgresql.conf"
        && parts.next().is_none()
        && !version.is_empty()
        && !cluster.is_empty())
    .then(|| (version.to_string(), cluster.to_string()))
}

/// The commands that may restart the server, in the order they are tried.
fn restart_commands(config_file: &str) -> Vec<Vec<String>> {
    service_commands(config_file, "restart")
}

fn start_commands(config_file: &str) -> Vec<Vec<String>> {
    service_commands(config_file, "start")
}

fn service_commands(config_file: &str, action: &str) -> Vec<Vec<String>> {
    let words = |w: &[&str]| w.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut commands = Vec::new();
    if let Some((version, cluster)) = debian_cluster(config_file) {
        // Without systemd as init (containers), pg_ctlcluster must not hand over to systemctl.
        commands.push(words(&["pg_ctlcluster", &version, &cluster, action]));
        commands.push(words(&[
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            &version,
            &cluster,
            action,
        ]));
    }
    commands.push(words(&["systemctl", action, "postgresql"]));
    commands.push(words(&["service", "postgresql", action]));
    commands
}

/// Runs `command`, killing it after [`RESTART_COMMAND_TIMEOUT`].
fn run_bounded(command: &[String]) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let deadline = Instant::now() + RESTART_COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {RESTART_COMMAND_TIMEOUT:?}"));
            }
            Err(error) => return Err(format!("waiting for it: {error}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
    }
    let mut said = said.trim().replace('\n', " ");
    if said.len() > COMMAND_ERROR_BYTES_MAX {
        let mut end = COMMAND_ERROR_BYTES_MAX;
        while !said.is_char_boundary(end) {
            end -= 1;
        }
        said.truncate(end);
    }
    Err(format!("{status}: {said}"))
}

/// Whether the server accepts connections within [`RESTART_WAIT`].
fn wait_until_up(runtime: &tokio::runtime::Runtime, config: &Config) -> bool {
    let deadline = Instant::now() + RESTART_WAIT;
    loop {
        if runtime.block_on(connect(config)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `sql` (a statement that takes no parameters) on `side`.
async fn run(side: &Side, sql: String) -> Result<(), tokio_postgres::Error> {
    side.client.batch_execute(&sql).await
}

/// One point's load on PostgreSQL.
pub(crate) struct TwoPhaseLoad {
    pairs: Arc<Vec<Pair>>,
    active: usize,
    baskets: Arc<Baskets>,
    qty: i64,
    /// Prefix of this run's global transaction ids.
    tag: String,
    next: AtomicU64,
}

impl TwoPhaseLoad {
    /// `BEGIN` and the basket's lines on side `side`, pipelined; an error when one is short.
    async fn work(&self, side: &Side, basket: usize, shard: usize) -> Result<(), String> {
        let baskets = &self.baskets;
        let updates = baskets.baskets[basket]
            .iter()
            .filter(|&&sku| baskets.shard_of(sku) == shard)
            .map(|&sku| {
                let name = &baskets.skus[sku];
                async move {
                    let updated = side
                        .client
                        .execute(&side.update, &[&self.qty, name])
                        .await
                        .map_err(|e| e.to_string())?;
                    if updated == 1 {
                        Ok(())
                    } else {
                        Err(format!(
                            "{name} is short (the update changed {updated} rows)"
                        ))
                    }
                }
            });
        // Both are polled in order, so BEGIN goes out first and the updates follow on the wire.
        let (begun, updated) = tokio::join!(
            side.client.batch_execute("BEGIN"),
            futures_util::future::join_all(updates)
        );
        begun.map_err(|e| e.to_string())?;
        updated.into_iter().collect()
    }
}

impl Target for TwoPhaseLoad {
    async fn reserve(&self, task: usize, basket: usize) -> Result<(), String> {
        let pair = &self.pairs[task % self.active];
        let _held = pair.busy.lock().await;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let gids = [format!("{}-{n}-a", self.tag), format!("{}-{n}-b", self.tag)];
        let [first, second] = &pair.sides;
        // Phase one's work: the first database, then the second (one global lock order).
        if let Err(error) = self.work(first, basket, 0).await {
            let _ = first.client.batch_execute("ROLLBACK").await;
            return Err(error);
        }
        if let Err(error) = self.work(second, basket, 1).await {
            let _ = tokio::join!(
                first.client.batch_execute("ROLLBACK"),
                second.client.batch_execute("ROLLBACK")
            );
            return Err(error);
        }
        let prepared = tokio::join!(
            run(first, format!("PREPARE TRANSACTION '{}'", gids[0])),
            run(second, format!("PREPARE TRANSACTION '{}'", gids[1]))
        );
        if prepared.0.is_err() || prepared.1.is_err() {
            // A failed PREPARE has rolled its own transaction back; undo the other one's.
            for (side, gid, outcome) in [
                (first, &gids[0], &prepared.0),
                (second, &gids[1], &prepared.1),
            ] {
                if outcome.is_ok() {
                    let _ = side
                        .client
                        .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
                        .await;
                }
            }
            let error = prepared.0.err().or(prepared.1.err());
            return Err(format!(
                "PREPARE TRANSACTION failed: {}",
                error.map_or_else(String::new, |e| e.to_string())
            ));
        }
        let committed = tokio::join!(
            run(first, format!("COMMIT PREPARED '{}'", gids[0])),
            run(second, format!("COMMIT PREPARED '{}'", gids[1]))
        );
        committed
            .0
            .and(committed.1)
            .map_err(|e| format!("COMMIT PREPARED failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_clusters_are_read_from_the_config_file_path() {
        assert_eq!(
            debian_cluster("/etc/postgresql/15/main/postgresql.conf"),
            Some(("15".into(), "main".into()))
        );
        assert_eq!(debian_cluster("/var/lib/pgsql/data/postgresql.conf"), None);
        assert_eq!(debian_cluster("/etc/postgresql/15/postgresql.conf"), None);
        let commands = restart_commands("/etc/postgresql/15/main/postgresql.conf");
        assert_eq!(commands[0], ["pg_ctlcluster", "15", "main", "restart"]);
        assert_eq!(
            commands.last().map(Vec::as_slice),
            Some(["service".to_string(), "postgresql".into(), "restart".into()].as_slice())
        );
        assert_eq!(restart_commands("?").len(), 2);
    }

    #[test]
    fn only_loopback_and_sockets_count_as_this_machine() {
        let local: Config = "host=127.0.0.1 user=postgres".parse().expect("parses");
        assert!(on_this_machine(&local));
        let socket: Config = "host=/var/run/postgresql user=postgres"
            .parse()
            .expect("parses");
        assert!(on_this_machine(&socket));
        let remote: Config = "host=db.example user=postgres".parse().expect("parses");
        assert!(!on_this_machine(&remote));
    }

    #[test]
    fn a_command_that_fails_says_how() {
        let error = run_bounded(&["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()])
            .expect_err("fails");
        assert!(error.contains("nope"), "{error}");
        assert!(run_bounded(&["sh".into(), "-c".into(), "exit 0".into()]).is_ok());
        assert!(run_bounded(&["/nonexistent/cairn-bench-command".into()]).is_err());
    }
}
