//! Criterion: Cairn's order book against orderbook-rs and lobster on the same stream
//! ([`cairn_matching::workload`]: ~60% GTC limit orders near the spread, 30% cancels, 10% crossing
//! IOC/market orders, on a book of about 10,000 resting orders). Each iteration builds the book
//! from the starting orders and a warm-up (not timed), then times the next [`CHUNK_OPS`]
//! operations. What each book does per operation: `cairn_bench::matching::books`.
//!
//! `cargo bench -p cairn-bench --features peers --bench matching_books`

use cairn_bench::matching::books::{Book, CairnBook, LobsterBook, OrderbookRsBook, Stream, Tally};
use cairn_matching::workload::WorkloadConfig;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

const WARMUP_OPS: usize = 20_000;
const CHUNK_OPS: usize = 20_000;

fn bench_book<B: Book>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    stream: &Stream,
) {
    let inputs = B::inputs(stream);
    let (untimed, timed) = inputs.split_at(stream.timed_from);
    group.bench_function(B::SYSTEM, |b| {
        b.iter_batched(
            || {
                let mut book = B::new(&stream.config);
                book.execute_all(untimed, &mut Tally::default());
                book
            },
            |mut book| {
                let mut tally = Tally::default();
                book.execute_all(timed, &mut tally);
                (book, tally)
            },
            BatchSize::PerIteration,
        );
    });
}

fn core_mixed(c: &mut Criterion) {
    let stream = Stream::new(WorkloadConfig::default(), WARMUP_OPS, CHUNK_OPS);
    let mut group = c.benchmark_group("core_mixed_10k_resting");
    group.throughput(Throughput::Elements(CHUNK_OPS as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    bench_book::<CairnBook>(&mut group, &stream);
    bench_book::<OrderbookRsBook>(&mut group, &stream);
    bench_book::<LobsterBook>(&mut group, &stream);
    group.finish();
}

criterion_group!(benches, core_mixed);
criterion_main!(benches);
