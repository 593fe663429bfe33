//! The load generator: N tokio tasks, each with one request in flight at a time, against any
//! [`Target`]. The same loop drives every system, so the figures differ only by what is behind
//! `reserve`.

use crate::machine::CpuTimes;
use crate::stats::quantile;
use cairn_log::metrics::LogMetrics;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The longest one failed operation makes its task wait before the next, so that a system that
/// refuses everything at once (down, or overloaded) is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// Longest error text kept in a row.
const ERROR_TEXT_BYTES_MAX: usize = 300;

/// One system under load: reserves one unit of a SKU.
pub(crate) trait Target: Send + Sync + 'static {
    /// Reserves `qty_per_op` units of SKU number `sku` for load-generator task `task`.
    fn reserve(&self, task: usize, sku: usize) -> impl Future<Output = Result<(), String>> + Send;
}

/// Which SKUs the tasks pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Always SKU 0.
    Hot,
    /// Uniformly among `0..skus`.
    Uniform {
        /// How many SKUs.
        skus: usize,
    },
}

/// What Cairn's log did during a window: read from its writer's counters (in-process only).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LogActivity {
    /// Records written (one per reservation).
    pub(crate) records: u64,
    /// `fdatasync` calls, one per group commit.
    pub(crate) fsyncs: u64,
    /// Time inside them, in microseconds.
    pub(crate) fsync_us: u64,
}

impl LogActivity {
    /// The sum over several logs (one per shard).
    fn read(logs: &[Arc<LogMetrics>]) -> LogActivity {
        logs.iter()
            .fold(LogActivity::default(), |sum, metrics| LogActivity {
                records: sum.records + metrics.records_written.load(Ordering::Relaxed),
                fsyncs: sum.fsyncs + metrics.fsync_latency.count(),
                fsync_us: sum.fsync_us + metrics.fsync_latency.sum_us(),
            })
    }

    fn since(self, earlier: LogActivity) -> LogActivity {
        LogActivity {
            records: self.records.saturating_sub(earlier.records),
            fsyncs: self.fsyncs.saturating_sub(earlier.fsyncs),
            fsync_us: self.fsync_us.saturating_sub(earlier.fsync_us),
        }
    }
}

/// What one measured point gave.
#[derive(Clone, Debug, Default)]
pub(crate) struct Measured {
    /// Operations that succeeded and completed inside the measured window.
    pub(crate) ops: u64,
    /// Operations that failed and completed inside the window.
    pub(crate) errors: u64,
    /// The first failure's text.
    pub(crate) first_error: Option<String>,
    /// Length of the measured window, in seconds.
    pub(crate) seconds: f64,
    /// Latencies of the successful operations, in nanoseconds, sorted.
    pub(crate) latencies_ns: Vec<u64>,
    /// Share of the machine's CPU that other processes used during the window.
    pub(crate) others_cpu_share: Option<f64>,
    /// Share of the machine's CPU that this process used during the window.
    pub(crate) own_cpu_share: Option<f64>,
    /// What Cairn's log did during the window, when its counters were given.
    pub(crate) log: Option<LogActivity>,
}

impl Measured {
    pub(crate) fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn quantile_us(&self, q: f64) -> Option<f64> {
        (!self.latencies_ns.is_empty()).then(|| quantile(&self.latencies_ns, q) as f64 / 1e3)
    }
}

/// What one task saw.
#[derive(Default)]
struct TaskResult {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_ns: Vec<u64>,
}

/// A small, fast, seedable generator (SplitMix64): enough to spread SKUs uniformly.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-50 for n = 10,000).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

impl Pick {
    fn sku(self, rng: &mut SplitMix64) -> usize {
        match self {
            Pick::Hot => 0,
            Pick::Uniform { skus } => rng.below(skus),
        }
    }
}

/// Drives `target` with `in_flight` tasks: `warmup` of load that is not counted, then
/// `duration` that is. An operation counts when it completes inside the measured window; tasks
/// start no operation after the window ends. `logs` (Cairn's, one per shard; none for a peer)
/// are read at the window's edges and summed.
/// Must be called on a multi-threaded runtime.
pub(crate) async fn drive<T: Target>(
    target: Arc<T>,
    in_flight: usize,
    pick: Pick,
    warmup: Duration,
    duration: Duration,
    seed: u64,
    logs: &[Arc<LogMetrics>],
) -> Measured {
    let start = Instant::now();
    let window_start = start + warmup;
    let window_end = window_start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..in_flight {
        let target = Arc::clone(&target);
        let mut rng = SplitMix64(seed ^ (task as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        tasks.spawn(async move {
            let mut result = TaskResult::default();
            loop {
                let began = Instant::now();
                if began >= window_end {
                    break;
                }
                let outcome = target.reserve(task, pick.sku(&mut rng)).await;
                let ended = Instant::now();
                let counted = ended >= window_start && ended <= window_end;
                match outcome {
                    Ok(()) if counted => {
                        result.ops += 1;
                        result
                            .latencies_ns
                            .push(u64::try_from((ended - began).as_nanos()).unwrap_or(u64::MAX));
                    }
                    Ok(()) => {}
                    Err(error) => {
                        if counted {
                            result.errors += 1;
                            result.first_error.get_or_insert_with(|| truncate(error));
                        }
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            result
        });
    }
    // Sample the CPU counters at the window's edges, while the tasks run.
    tokio::time::sleep_until(window_start.into()).await;
    let cpu_before = CpuTimes::now();
    let log_before = (!logs.is_empty()).then(|| LogActivity::read(logs));
    tokio::time::sleep_until(window_end.into()).await;
    let cpu_after = CpuTimes::now();
    let log_after = (!logs.is_empty()).then(|| LogActivity::read(logs));
    let mut measured = Measured {
        seconds: duration.as_secs_f64(),
        log: log_after
            .zip(log_before)
            .map(|(after, before)| after.since(before)),
        ..Measured::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let result = match joined {
            Ok(result) => result,
            Err(error) => TaskResult {
                errors: 1,
                first_error: Some(format!("a load task failed: {error}")),
                ..TaskResult::default()
            },
        };
        measured.ops += result.ops;
        measured.errors += result.errors;
        if measured.first_error.is_none() {
            measured.first_error = result.first_error;
        }
        measured.latencies_ns.extend(result.latencies_ns);
    }
    measured.latencies_ns.sort_unstable();
    let (others, total) = cpu_after.others_since(&cpu_before);
    if total > 0.0 {
        measured.others_cpu_share = Some(others / total);
        measured.own_cpu_share = Some(((cpu_after.own_s - cpu_before.own_s) / total).max(0.0));
    }
    measured
}

fn truncate(mut text: String) -> String {
    if text.len() > ERROR_TEXT_BYTES_MAX {
        let mut end = ERROR_TEXT_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Counter {
        calls: AtomicU64,
        hits: Vec<AtomicU64>,
    }

    impl Target for Counter {
        async fn reserve(&self, _task: usize, sku: usize) -> Result<(), String> {
            self.hits[sku].fetch_add(1, Ordering::Relaxed);
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_micros(200)).await;
            if n % 10 == 9 {
                Err("every tenth fails".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn the_driver_counts_successes_errors_and_latencies() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let target = Arc::new(Counter {
            calls: AtomicU64::new(0),
            hits: (0..4).map(|_| AtomicU64::new(0)).collect(),
        });
        let measured = runtime.block_on(drive(
            Arc::clone(&target),
            4,
            Pick::Uniform { skus: 4 },
            Duration::from_millis(20),
            Duration::from_millis(200),
            7,
            &[],
        ));
        assert!(measured.ops > 10, "{measured:?}");
        assert!(measured.errors > 0, "{measured:?}");
        assert_eq!(measured.first_error.as_deref(), Some("every tenth fails"));
        assert_eq!(measured.latencies_ns.len() as u64, measured.ops);
        let p50 = measured.quantile_us(0.5).expect("p50");
        assert!(p50 >= 200.0, "p50 {p50}");
        assert!(measured.ops_per_s() > 0.0);
        for hits in &target.hits {
            assert!(hits.load(Ordering::Relaxed) > 0, "every SKU is picked");
        }
    }

    #[test]
    fn the_hot_pick_is_always_the_first_sku_and_uniform_stays_in_range() {
        let mut rng = SplitMix64(1);
        assert_eq!(Pick::Hot.sku(&mut rng), 0);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[Pick::Uniform { skus: 10 }.sku(&mut rng)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(400));
        assert!(cut.len() <= ERROR_TEXT_BYTES_MAX + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
