//! Redis's side: one key per SKU under a prefix of the run's own, and the reservation as one
//! `EVALSHA` of a Lua script that checks and decrements, over one multiplexed connection (every
//! task's commands are pipelined on it). Redis runs with whatever persistence it was started with;
//! each row says which.

use super::driver::Target;
use anyhow::{Context as _, bail};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;

/// The check-and-decrement: the units left after taking `ARGV[1]` from `KEYS[1]`, or -1 when
/// there are not enough (then nothing is taken).
pub(crate) const SCRIPT: &str = "local left = tonumber(redis.call('GET', KEYS[1]))
local qty = tonumber(ARGV[1])
if left == nil or left < qty then return -1 end
return redis.call('DECRBY', KEYS[1], qty)
";

/// What one operation is, for the rows.
pub(crate) const OPERATION: &str =
    "EVALSHA of a Lua check-and-decrement (GET, compare, DECRBY) on one key";

/// Keys set or deleted per command.
const KEYS_PER_COMMAND: usize = 1000;

/// Longest wait for a connection, and for one answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The key of `sku`.
pub(crate) fn key(sku: &str) -> String {
    format!("cairn-bench:{sku}")
}

/// The connection, the loaded script and the keys.
pub(crate) struct Redis {
    connection: MultiplexedConnection,
    sha: Arc<str>,
    keys: Arc<[String]>,
    /// `redis_version` from `INFO server`.
    pub(crate) version: String,
    /// Its persistence settings, and what they mean for an acknowledged write.
    pub(crate) durability: String,
}

impl Redis {
    /// Connects, sets `stock` on one key per SKU (`cairn-bench:{sku}`) and loads the script.
    ///
    /// # Errors
    /// Redis cannot be reached or refuses a command (keys already set are deleted again).
    pub(crate) async fn connect(url: &str, skus: &[String], stock: i64) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url).with_context(|| format!("Redis URL {url}"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to Redis ({url})"))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await
            .context("INFO server")?;
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .map_or_else(|| "?".to_string(), |v| v.trim().to_string());
        let durability = persistence(&mut connection).await;
        let keys: Arc<[String]> = skus.iter().map(|sku| key(sku)).collect();
        let redis = Redis {
            connection,
            sha: Arc::from(""),
            keys,
            version,
            durability,
        };
        match redis.stock_and_load(stock).await {
            Ok(sha) => Ok(Redis {
                sha: Arc::from(sha),
                ..redis
            }),
            Err(error) => {
                redis.delete_keys().await;
                Err(error)
            }
        }
    }

    async fn stock_and_load(&self, stock: i64) -> anyhow::Result<String> {
        let mut connection = self.connection.clone();
        for chunk in self.keys.chunks(KEYS_PER_COMMAND) {
            let mut mset = redis::cmd("MSET");
            for key in chunk {
                mset.arg(key).arg(stock);
            }
            let () = mset
                .query_async(&mut connection)
                .await
                .context("setting the stock")?;
        }
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(SCRIPT)
            .query_async(&mut connection)
            .await
            .context("SCRIPT LOAD")?;
        if sha.len() != 40 {
            bail!("SCRIPT LOAD answered {sha:?}, not a SHA-1");
        }
        Ok(sha)
    }

    /// The load for one point: every task on the one multiplexed connection.
    pub(crate) fn load(&self, qty: i64) -> RedisLoad {
        RedisLoad {
            connection: self.connection.clone(),
            sha: Arc::clone(&self.sha),
            keys: Arc::clone(&self.keys),
            qty,
        }
    }

    /// Deletes the benchmark's keys (best effort: a failure is printed).
    pub(crate) async fn delete_keys(&self) {
        let mut connection = self.connection.clone();
        for chunk in self.keys.chunks(KEYS_PER_COMMAND) {
            let deleted: redis::RedisResult<i64> = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut connection)
                .await;
            if let Err(error) = deleted {
                eprintln!("warning: could not delete the benchmark's Redis keys: {error}");
                return;
            }
        }
    }
}

/// `appendonly`, `appendfsync` and `save`, and what they mean for an acknowledged write.
async fn persistence(connection: &mut MultiplexedConnection) -> String {
    let appendonly = config_get(connection, "appendonly").await;
    let appendfsync = config_get(connection, "appendfsync").await;
    let save = config_get(connection, "save").await;
    let meaning = match (appendonly.as_str(), appendfsync.as_str()) {
        ("yes", "always") => "fsync of the append-only file before each reply",
        ("yes", "everysec") => "append-only file synced every second: a crash loses up to ~1 s",
        ("yes", _) => "append-only file synced when the OS likes",
        ("no", _) if save.trim().is_empty() => "in memory only: nothing survives a restart",
        ("no", _) => "in memory, with periodic RDB snapshots: a crash loses writes since the last",
        _ => "unknown",
    };
    format!("appendonly={appendonly}, appendfsync={appendfsync}, save=\"{save}\" ({meaning})")
}

async fn config_get(connection: &mut MultiplexedConnection, name: &str) -> String {
    let answer: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(connection)
        .await;
    match answer {
        Ok(pair) => pair.get(1).cloned().unwrap_or_else(|| "?".into()),
        Err(_) => "?".into(),
    }
}

/// One point's load on Redis.
pub(crate) struct RedisLoad {
    connection: MultiplexedConnection,
    sha: Arc<str>,
    keys: Arc<[String]>,
    qty: i64,
}

impl Target for RedisLoad {
    async fn reserve(&self, _task: usize, sku: usize) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let left: i64 = redis::cmd("EVALSHA")
            .arg(&*self.sha)
            .arg(1)
            .arg(&self.keys[sku])
            .arg(self.qty)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        if left < 0 {
            return Err(format!("{} is out of stock", self.keys[sku]));
        }
        Ok(())
    }
}
