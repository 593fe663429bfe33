//! The HTTP side: uploading drafts, releasing, rolling back, waiting until a reader is served
//! the new release, and the readers.

use super::hist::Histogram;
use crate::machine::CpuTimes;
use anyhow::{Context as _, anyhow, bail};
use cairn_client::{
    Client, DatasetRequest, DraftAppendRequest, DraftChange, DraftRequest, ReadContext,
    ReleaseRequest, RollbackRequest,
};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Longest one request may take (a 1M-key release included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a release may take to be served after its request was answered.
const LIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed read, so that a server refusing everything is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(1);
/// Longest error text kept.
const ERROR_TEXT_BYTES_MAX: usize = 300;
/// Most release times kept per read point.
const RELEASE_SAMPLES_MAX: usize = 100_000;

/// The name of key `index`.
pub(crate) fn key_name(index: usize) -> String {
    format!("k{index:07}")
}

/// The `amount` of key `index` at revision `rev`: the revision moves it by a few units, well
/// inside the dataset's 50% guardrail.
fn amount(index: usize, rev: u64) -> u64 {
    1000 + (index as u64 % 9000) * 10 + rev % 7
}

/// The value of key `index` at revision `rev`.
fn value(index: usize, rev: u64) -> Value {
    json!({"amount": amount(index, rev), "rev": rev})
}

/// The guardrails of every dataset: what an operator would set on prices.
pub(crate) fn guardrails() -> Value {
    json!({
        "numeric_bounds": [{"pointer": "/amount", "min": 1, "max": 100_000_000}],
        "max_change_pct": [{"pointer": "/amount", "pct": 50}],
    })
}

/// The keys of change number `n` of a `keys`-key dataset: `change_keys` keys spread evenly over
/// it, shifted by one from one change to the next.
pub(crate) fn change_indices(
    keys: usize,
    change_keys: usize,
    n: u64,
) -> impl Iterator<Item = usize> {
    let stride = (keys / change_keys.max(1)).max(1);
    let offset = (n % stride as u64) as usize;
    (0..change_keys.min(keys)).map(move |j| j * stride + offset)
}

/// A draft uploaded.
pub(crate) struct Uploaded {
    pub(crate) draft_id: u64,
    pub(crate) requests: u64,
    pub(crate) seconds: f64,
}

/// A release (or rollback) served.
pub(crate) struct Served {
    pub(crate) release_id: u64,
    /// Until the request was answered.
    pub(crate) request_s: f64,
    /// Until a reader was served the release.
    pub(crate) seconds: f64,
}

/// The publishing client: one keep-alive connection, unique request ids.
pub(crate) struct Publisher {
    client: Client,
    next_request: AtomicU64,
    chunk_changes_max: usize,
    chunk_bytes_max: usize,
}

impl Publisher {
    pub(crate) fn new(
        base_url: &str,
        token: &str,
        chunk_changes_max: usize,
        chunk_bytes_max: usize,
    ) -> anyhow::Result<Publisher> {
        Ok(Publisher {
            client: Client::with_http(base_url, token, http_client()?),
            next_request: AtomicU64::new(0),
            chunk_changes_max,
            chunk_bytes_max,
        })
    }

    fn request_id(&self) -> String {
        format!(
            "bench-publish-{}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(crate) async fn ready(&self) -> anyhow::Result<()> {
        self.client
            .readyz()
            .await
            .with_context(|| format!("Cairn at {} is not ready", self.client.base_url()))?;
        Ok(())
    }

    pub(crate) async fn create_dataset(&self, name: &str) -> anyhow::Result<()> {
        let request = DatasetRequest {
            request_id: self.request_id(),
            name: name.to_string(),
            guardrails: Some(guardrails()),
        };
        self.client
            .create_dataset(&request)
            .await
            .with_context(|| format!("creating dataset {name}"))?;
        Ok(())
    }

    /// Uploads the keys `indices` of `dataset` at revision `rev` as one draft: a create and as
    /// many appends as the chunk limits need.
    pub(crate) async fn upload(
        &self,
        dataset: &str,
        indices: impl Iterator<Item = usize>,
        rev: u64,
        bar: Option<&ProgressBar>,
    ) -> anyhow::Result<Uploaded> {
        let started = Instant::now();
        let mut draft_id = None;
        let mut requests = 0u64;
        let mut chunk: Vec<DraftChange> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut indices = indices.peekable();
        while indices.peek().is_some() || draft_id.is_none() {
            for index in indices.by_ref() {
                let change = DraftChange {
                    dataset: dataset.to_string(),
                    key: key_name(index),
                    value: value(index, rev),
                };
                // The change as it goes on the wire, plus its comma.
                chunk_bytes += serde_json::to_vec(&change).map_or(0, |v| v.len()) + 1;
                chunk.push(change);
                if chunk.len() >= self.chunk_changes_max || chunk_bytes >= self.chunk_bytes_max {
                    break;
                }
            }
            let changes = std::mem::take(&mut chunk);
            let sent = changes.len() as u64;
            chunk_bytes = 0;
            let answer = match draft_id {
                None => {
                    let request = DraftRequest {
                        request_id: self.request_id(),
                        note: format!("cairn bench publish: {dataset} rev {rev}"),
                        changes,
                    };
                    self.client.create_draft(&request).await
                }
                Some(id) => {
                    let request = DraftAppendRequest {
                        request_id: self.request_id(),
                        changes,
                    };
                    self.client.append_to_draft(id, &request).await
                }
            }
            .with_context(|| format!("uploading a draft of {dataset}"))?;
            requests += 1;
            if let Some(bar) = bar {
                bar.inc(sent);
            }
            if draft_id.is_none() {
                draft_id = Some(
                    answer["draft_id"]
                        .as_u64()
                        .ok_or_else(|| anyhow!("the draft answer has no draft_id: {answer}"))?,
                );
            }
        }
        let draft_id = draft_id.ok_or_else(|| anyhow!("no draft was created"))?;
        Ok(Uploaded {
            draft_id,
            requests,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Releases `draft_id` to everyone, then reads `key` of `dataset` until it is served the new
    /// release at revision `rev`.
    pub(crate) async fn release(
        &self,
        draft_id: u64,
        dataset: &str,
        key: &str,
        rev: u64,
    ) -> anyhow::Result<Served> {
        let request = ReleaseRequest {
            request_id: self.request_id(),
            draft_id,
            gray: None,
            go_live_at_ms: None,
            revert_at_ms: None,
            force_reason: None,
        };
        let started = Instant::now();
        let answer = self
            .client
            .create_release(&request)
            .await
            .with_context(|| format!("releasing draft {draft_id}"))?;
        let request_s = started.elapsed().as_secs_f64();
        let release_id = release_id(&answer)?;
        self.wait_served(dataset, key, release_id, rev).await?;
        Ok(Served {
            release_id,
            request_s,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Rolls back to `to_release_id`, then reads `key` of `dataset` until it is served the
    /// restoring release at revision `rev`.
    pub(crate) async fn rollback(
        &self,
        to_release_id: u64,
        dataset: &str,
        key: &str,
        rev: u64,
    ) -> anyhow::Result<Served> {
        let request = RollbackRequest {
            request_id: self.request_id(),
            to_release_id,
            reason: "cairn bench publish: rollback".to_string(),
        };
        let started = Instant::now();
        let answer = self
            .client
            .rollback(&request)
            .await
            .with_context(|| format!("rolling back to release {to_release_id}"))?;
        let request_s = started.elapsed().as_secs_f64();
        let release_id = release_id(&answer)?;
        self.wait_served(dataset, key, release_id, rev).await?;
        Ok(Served {
            release_id,
            request_s,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Reads `key` until it is served by `release_id` with revision `rev`.
    async fn wait_served(
        &self,
        dataset: &str,
        key: &str,
        release_id: u64,
        rev: u64,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + LIVE_TIMEOUT;
        let context = ReadContext::default();
        loop {
            let answer = self.client.published_value(dataset, key, &context).await;
            if let Ok(answer) = &answer
                && answer["release_id"].as_u64() == Some(release_id)
            {
                if answer["value"]["rev"].as_u64() != Some(rev) {
                    bail!(
                        "{dataset}/{key} is served by release {release_id} with {}, not revision \
                         {rev}",
                        answer["value"]
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "release {release_id} was not served within {LIVE_TIMEOUT:?}; last read of \
                     {dataset}/{key}: {answer:?}"
                );
            }
            tokio::task::yield_now().await;
        }
    }
}

fn release_id(answer: &Value) -> anyhow::Result<u64> {
    answer["release_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("the answer has no release_id: {answer}"))
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .context("setting up the HTTP client")
}

/// What one read point gave.
#[derive(Clone, Default)]
pub(crate) struct ReadMeasured {
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
    pub(crate) latencies: Histogram,
    /// Releases served during the window (while publishing).
    pub(crate) releases: u64,
    /// Their times to live, in seconds.
    pub(crate) release_seconds: Vec<f64>,
    pub(crate) others_cpu_share: Option<f64>,
    pub(crate) own_cpu_share: Option<f64>,
}

impl ReadMeasured {
    pub(crate) fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn quantile_us(&self, quantile: f64) -> Option<f64> {
        self.latencies
            .quantile_ns(quantile)
            .map(|ns| ns as f64 / 1e3)
    }
}

/// Releases one change after another while the readers read.
pub(crate) struct PublishLoop {
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) dataset: String,
    pub(crate) keys: usize,
    pub(crate) change_keys: usize,
    /// The next change number (its revision), shared with the other steps.
    pub(crate) next_change: Arc<AtomicU64>,
    /// The release live on the dataset, updated after each release.
    pub(crate) live_release: Arc<AtomicU64>,
}

impl PublishLoop {
    /// Releases changes until `until`; counts those served within `[from, until]`.
    async fn run(self, from: Instant, until: Instant) -> anyhow::Result<(u64, Vec<f64>)> {
        let mut releases = 0u64;
        let mut seconds = Vec::new();
        while Instant::now() < until {
            let rev = self.next_change.fetch_add(1, Ordering::Relaxed);
            let first = change_indices(self.keys, self.change_keys, rev)
                .next()
                .unwrap_or(0);
            let indices = change_indices(self.keys, self.change_keys, rev);
            let draft = self
                .publisher
                .upload(&self.dataset, indices, rev, None)
                .await?;
            let started = Instant::now();
            let served = self
                .publisher
                .release(draft.draft_id, &self.dataset, &key_name(first), rev)
                .await?;
            self.live_release
                .store(served.release_id, Ordering::Relaxed);
            let done = Instant::now();
            if started >= from && done <= until {
                releases += 1;
                if seconds.len() < RELEASE_SAMPLES_MAX {
                    seconds.push(served.seconds);
                }
            }
        }
        Ok((releases, seconds))
    }
}

/// A small xorshift generator: a reader's random keys, without a shared lock.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `readers` tasks each read random keys of `dataset` one after another for `warmup +
/// duration`; with `publishing`, changes are released meanwhile. Counts what completed in the
/// `duration` after the warm-up.
pub(crate) async fn read_point(
    client: Client,
    dataset: Arc<str>,
    keys: usize,
    readers: usize,
    warmup: Duration,
    duration: Duration,
    publishing: Option<PublishLoop>,
) -> anyhow::Result<ReadMeasured> {
    let from = Instant::now() + warmup;
    let until = from + duration;
    let publisher = publishing.map(|publish| tokio::spawn(publish.run(from, until)));
    let tasks: Vec<_> = (0..readers)
        .map(|task| {
            let client = client.clone();
            let dataset = Arc::clone(&dataset);
            tokio::spawn(async move { read_loop(client, &dataset, keys, task, from, until).await })
        })
        .collect();
    tokio::time::sleep_until(from).await;
    let cpu = CpuTimes::now();
    tokio::time::sleep_until(until).await;
    let now = CpuTimes::now();
    let mut total = ReadMeasured {
        seconds: duration.as_secs_f64(),
        ..ReadMeasured::default()
    };
    for task in tasks {
        let seen = task.await.context("a reader panicked")?;
        total.ops += seen.ops;
        total.errors += seen.errors;
        total.first_error = total.first_error.take().or(seen.first_error);
        total.latencies.merge(&seen.latencies);
    }
    if let Some(publisher) = publisher {
        let (releases, seconds) = publisher
            .await
            .context("the publishing loop panicked")?
            .context("the publishing loop failed")?;
        total.releases = releases;
        total.release_seconds = seconds;
    }
    let (others, all) = now.others_since(&cpu);
    if all > 0.0 {
        total.others_cpu_share = Some(others / all);
        total.own_cpu_share = Some((now.own_s - cpu.own_s) / all);
    }
    Ok(total)
}

async fn read_loop(
    client: Client,
    dataset: &str,
    keys: usize,
    task: usize,
    from: Instant,
    until: Instant,
) -> ReadMeasured {
    let mut seen = ReadMeasured::default();
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((task as u64 + 1) << 32));
    let context = ReadContext::default();
    while Instant::now() < until {
        let key = key_name((random.next() % keys as u64) as usize);
        let started = Instant::now();
        let answer = client.published_value(dataset, &key, &context).await;
        let done = Instant::now();
        let counted = started >= from && done <= until;
        let outcome = match answer {
            Ok(answer) if answer["release_id"].is_u64() && !answer["value"].is_null() => Ok(()),
            Ok(answer) => Err(format!("an answer without a value or release: {answer}")),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(()) if counted => {
                seen.ops += 1;
                let ns = u64::try_from((done - started).as_nanos()).unwrap_or(u64::MAX);
                seen.latencies.record(ns);
            }
            Ok(()) => {}
            Err(mut error) => {
                if counted {
                    seen.errors += 1;
                    if seen.first_error.is_none() {
                        error.truncate(error.floor_char_boundary(ERROR_TEXT_BYTES_MAX));
                        seen.first_error = Some(error);
                    }
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    seen
}

/// A client for the readers (its own pool: one connection per reader).
pub(crate) fn readers_client(base_url: &str, token: &str) -> anyhow::Result<Client> {
    Ok(Client::with_http(base_url, token, http_client()?))
}
