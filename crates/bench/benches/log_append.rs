//! Criterion benchmarks of the log's hot paths: encoding and decoding one 100-byte record, and a
//! durable append through group commit on the real disk with 1, 16 and 256 appenders, as OS
//! threads blocking in `append` and as tokio tasks awaiting a oneshot completion.
//!
//! Short on purpose (`cargo bench -p cairn-bench` takes a few minutes): the side-by-side figures
//! against the disk's floor come from `cairn bench log`, not from here.

use cairn_log::record::{Entry, GENESIS_CHAIN, decode, encode_into, encoded_len};
use cairn_log::storage::FileStorage;
use cairn_log::{CommitOptions, GroupCommit, LogOptions, OwnedEntry, ScanStart, open_log};
use cairn_types::Lsn;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOAD_BYTES: usize = 100;

fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| (i * 31 % 251) as u8).collect()
}

fn record_codec(c: &mut Criterion) {
    let payload = payload();
    let entry = Entry {
        timestamp_ms: 1_700_000_000_000,
        record_type: 1,
        payload: &payload,
    };
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(encoded_len(PAYLOAD_BYTES));
    group.bench_function("encode_100B", |b| {
        b.iter(|| {
            out.clear();
            black_box(encode_into(
                &mut out,
                black_box(Lsn(2)),
                Lsn(1),
                black_box(&entry),
                &GENESIS_CHAIN,
            ))
        });
    });
    let mut encoded = Vec::new();
    encode_into(&mut encoded, Lsn(2), Lsn(1), &entry, &GENESIS_CHAIN);
    group.bench_function("decode_100B", |b| {
        b.iter(|| decode(black_box(&encoded)).map(|(view, len)| (view.lsn, len)));
    });
    group.finish();
}

/// Appends `iters` records, durably, spread over `threads` threads each appending one at a time;
/// returns the elapsed time (criterion divides it by `iters`: time per record).
fn append_with(commit: &GroupCommit, threads: usize, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let payload = payload();
                for _ in 0..per_thread {
                    let entry = OwnedEntry {
                        timestamp_ms: 1,
                        record_type: 1,
                        payload: payload.clone(),
                    };
                    if let Err(error) = commit.append(vec![entry]) {
                        panic!("durable append failed: {error}");
                    }
                }
            });
        }
    });
    started.elapsed()
}

/// Appends `iters` records, durably, spread over `tasks` async tasks on `runtime`, each
/// submitting one record at a time and awaiting its completion; returns the elapsed time.
fn append_with_tasks(
    runtime: &tokio::runtime::Runtime,
    commit: &Arc<GroupCommit>,
    tasks: usize,
    iters: u64,
) -> Duration {
    let per_task = iters.div_ceil(tasks as u64);
    let started = Instant::now();
    runtime.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let commit = Arc::clone(commit);
                tokio::spawn(async move {
                    let payload = payload();
                    for _ in 0..per_task {
                        let entry = OwnedEntry {
                            timestamp_ms: 1,
                            record_type: 1,
                            payload: payload.clone(),
                        };
                        let (done, durable) = tokio::sync::oneshot::channel();
                        let submitted = commit.submit(
                            vec![entry],
                            Box::new(move |result| {
                                let _ = done.send(result);
                            }),
                        );
                        match submitted {
                            Ok(_) => match durable.await {
                                Ok(Ok(_)) => {}
                                other => panic!("durable append failed: {other:?}"),
                            },
                            Err(error) => panic!("submit failed: {error}"),
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("an appender task panicked");
        }
    });
    started.elapsed()
}

/// A group-commit log in a fresh scratch directory (removed when the directory is dropped).
fn scratch_log() -> (tempfile::TempDir, Arc<GroupCommit>) {
    // Cargo's scratch directory for benches is under `target/`, on the workspace's disk.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory");
    let (writer, _) = open_log(
        Arc::new(FileStorage),
        dir.path(),
        LogOptions::default(),
        ScanStart::ZERO,
        &mut |_| Ok(()),
    )
    .expect("a fresh log opens");
    let commit = GroupCommit::start(writer, CommitOptions::default()).expect("the writer starts");
    (dir, Arc::new(commit))
}

fn durable_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit_append_100B_sync");
    group.throughput(Throughput::Elements(1));
    for threads in [1, 16, 256] {
        let (_dir, commit) = scratch_log();
        group.bench_function(format!("threads_{threads}"), |b| {
            b.iter_custom(|iters| append_with(&commit, threads, iters));
        });
        shut_down(commit);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("a tokio runtime");
    for tasks in [1, 16, 256] {
        let (_dir, commit) = scratch_log();
        group.bench_function(format!("tasks_{tasks}"), |b| {
            b.iter_custom(|iters| append_with_tasks(&runtime, &commit, tasks, iters));
        });
        shut_down(commit);
    }
    group.finish();
}

fn shut_down(commit: Arc<GroupCommit>) {
    Arc::into_inner(commit)
        .expect("the appenders are done")
        .shutdown()
        .expect("the writer shuts down");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = record_codec, durable_append
}
criterion_main!(benches);
