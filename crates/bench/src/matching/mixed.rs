//! The core comparison: each book on the same stream, one thread, taking turns run by run.

use super::books::{Book, CairnBook, Stream, Tally};
use super::report::MatchingRow;
use super::{MatchingBenchArgs, PEERS_SKIPPED};
use crate::machine::CpuTimes;
use crate::stats::spread;
use std::time::Instant;

/// The workload name of the core rows.
pub(crate) const WORKLOAD: &str = "core-mixed";

/// The systems, in the order their rows are reported.
const SYSTEMS: [&str; 3] = ["cairn", "orderbook-rs", "lobster"];

const CAIRN_NOTE: &str = "Matching::decide + apply per command, as the sequencer runs them \
     (without the log): price-time priority, self-trade prevention (cancel incoming, per \
     account), IOC and market orders, one complete event per command (every fill with both \
     accounts), order status and trades kept queryable, every bound checked";
#[cfg(feature = "peers")]
const ORDERBOOK_RS_NOTE: &str = "orderbook-rs 0.15: add_limit_order_with_user (GTC or IOC), \
     submit_market_order_with_user, cancel_order, from one thread; self-trade prevention \
     CancelTaker (per user); a concurrent book (atomics, skip lists, concurrent maps) even when \
     driven by one thread; no trade listener set; nothing durable";
#[cfg(feature = "peers")]
const LOBSTER_NOTE: &str = "lobster 0.7: execute(Limit | Market | Cancel); an IOC limit order is \
     a Limit then a Cancel of what rested (lobster has no IOC); no self-trade prevention, no order \
     status, no validation; returns the fills of each order; nothing durable";

/// What one book did in one run.
#[derive(Clone, Debug)]
struct Figures {
    system: &'static str,
    ops_per_s: f64,
    seconds: f64,
    tally: Tally,
    others_cpu_share: Option<f64>,
    own_cpu_share: Option<f64>,
}

/// A book with its input ready, that can be measured any number of times.
trait Measure {
    fn system(&self) -> &'static str;
    fn measure(&self) -> Figures;
}

struct Prepared<'a, B: Book> {
    stream: &'a Stream,
    inputs: Vec<B::Input>,
}

impl<'a, B: Book> Prepared<'a, B> {
    fn new(stream: &'a Stream) -> Prepared<'a, B> {
        Prepared {
            stream,
            inputs: B::inputs(stream),
        }
    }
}

impl<B: Book> Measure for Prepared<'_, B> {
    fn system(&self) -> &'static str {
        B::SYSTEM
    }

    fn measure(&self) -> Figures {
        let (untimed, timed) = self.inputs.split_at(self.stream.timed_from);
        let mut book = B::new(&self.stream.config);
        book.execute_all(untimed, &mut Tally::default());
        let mut tally = Tally::default();
        let cpu = CpuTimes::now();
        let started = Instant::now();
        book.execute_all(timed, &mut tally);
        let seconds = started.elapsed().as_secs_f64();
        let now = CpuTimes::now();
        drop(book);
        let (others, total) = now.others_since(&cpu);
        let share = |value: f64| (total > 0.0).then(|| value / total);
        Figures {
            system: B::SYSTEM,
            ops_per_s: if seconds > 0.0 {
                timed.len() as f64 / seconds
            } else {
                0.0
            },
            seconds,
            tally,
            others_cpu_share: share(others),
            own_cpu_share: share(now.own_s - cpu.own_s),
        }
    }
}

/// The books of this build, with their inputs converted.
fn prepared(stream: &Stream) -> Vec<Box<dyn Measure + '_>> {
    let books: Vec<Box<dyn Measure + '_>> = vec![Box::new(Prepared::<CairnBook>::new(stream))];
    #[cfg(feature = "peers")]
    let books = {
        use super::books::{LobsterBook, OrderbookRsBook};
        let mut books = books;
        books.push(Box::new(Prepared::<OrderbookRsBook>::new(stream)));
        books.push(Box::new(Prepared::<LobsterBook>::new(stream)));
        books
    };
    books
}

fn note(system: &str) -> &'static str {
    match system {
        #[cfg(feature = "peers")]
        "orderbook-rs" => ORDERBOOK_RS_NOTE,
        #[cfg(feature = "peers")]
        "lobster" => LOBSTER_NOTE,
        _ => CAIRN_NOTE,
    }
}

/// Measures every book `args.runs` times and returns one row per system.
pub(crate) fn run(
    args: &MatchingBenchArgs,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Vec<MatchingRow>> {
    let setup = progress.points("core-mixed setup", 1);
    setup.set_message("generating the stream and each book's input");
    let stream = Stream::new(args.workload(), args.warmup_orders, args.orders);
    let books = prepared(&stream);
    setup.finish_and_clear();
    let bar = progress.points(WORKLOAD, (args.runs * books.len()) as u64);
    let mut figures = Vec::new();
    for run in 0..args.runs {
        let mut order: Vec<&dyn Measure> = books.iter().map(AsRef::as_ref).collect();
        let turn = run % order.len();
        order.rotate_left(turn);
        for book in order {
            bar.set_message(format!("run {}/{}: {}", run + 1, args.runs, book.system()));
            let measured = book.measure();
            anyhow::ensure!(
                measured.tally.ops == args.orders as u64,
                "{} was fed {} orders, not {}",
                measured.system,
                measured.tally.ops,
                args.orders
            );
            figures.push(measured);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows(&figures, args.orders as u64))
}

/// The core rows: medians and spread per system, Cairn's ratios within each run.
fn rows(figures: &[Figures], orders: u64) -> Vec<MatchingRow> {
    let of =
        |system: &str| -> Vec<&Figures> { figures.iter().filter(|f| f.system == system).collect() };
    let cairn = of("cairn");
    SYSTEMS
        .iter()
        .map(|&system| {
            let runs = of(system);
            if runs.is_empty() {
                return MatchingRow::skipped(system, WORKLOAD, PEERS_SKIPPED);
            }
            let mut row = aggregate(system, &runs, orders);
            if system == "cairn" {
                (
                    row.ratio_to_orderbook_rs,
                    row.ratio_to_orderbook_rs_min,
                    row.ratio_to_orderbook_rs_max,
                ) = ratios(&cairn, &of("orderbook-rs"));
                (
                    row.ratio_to_lobster,
                    row.ratio_to_lobster_min,
                    row.ratio_to_lobster_max,
                ) = ratios(&cairn, &of("lobster"));
            }
            row
        })
        .collect()
}

fn aggregate(system: &str, runs: &[&Figures], orders: u64) -> MatchingRow {
    let median = |values: Vec<f64>| (!values.is_empty()).then(|| spread(&values).median);
    let rates = spread(&runs.iter().map(|f| f.ops_per_s).collect::<Vec<_>>());
    let seconds = spread(&runs.iter().map(|f| f.seconds).collect::<Vec<_>>());
    // The stream is the same every run, so the tallies are too.
    let tally = runs[0].tally;
    MatchingRow {
        ops_per_s: Some(rates.median),
        ops_per_s_min: Some(rates.min),
        ops_per_s_max: Some(rates.max),
        seconds: Some(seconds.median),
        seconds_min: Some(seconds.min),
        seconds_max: Some(seconds.max),
        orders: Some(orders),
        refused: Some(tally.refused),
        filled_qty: tally.filled_qty,
        runs: Some(runs.len()),
        others_cpu_share: median(runs.iter().filter_map(|f| f.others_cpu_share).collect()),
        own_cpu_share: median(runs.iter().filter_map(|f| f.own_cpu_share).collect()),
        note: Some(note(system).to_string()),
        ..MatchingRow::new(system, WORKLOAD)
    }
}

/// The median, min and max of the per-run ratios of `ours` to `theirs` (one entry per run in
/// both, in run order).
fn ratios(ours: &[&Figures], theirs: &[&Figures]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let per_run: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .filter(|(_, t)| t.ops_per_s > 0.0)
        .map(|(o, t)| o.ops_per_s / t.ops_per_s)
        .collect();
    if per_run.is_empty() {
        return (None, None, None);
    }
    let s = spread(&per_run);
    (Some(s.median), Some(s.min), Some(s.max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(system: &'static str, ops_per_s: f64) -> Figures {
        Figures {
            system,
            ops_per_s,
            seconds: 1.0,
            tally: Tally {
                ops: 10,
                refused: 1,
                filled_qty: Some(5),
            },
            others_cpu_share: Some(0.1),
            own_cpu_share: Some(0.5),
        }
    }

    #[test]
    fn ratios_are_taken_within_each_run_and_missing_peers_are_skipped() {
        let figures = [
            figures("cairn", 100.0),
            figures("lobster", 50.0),
            figures("cairn", 300.0),
            figures("lobster", 100.0),
            figures("cairn", 200.0),
            figures("lobster", 200.0),
        ];
        let rows = rows(&figures, 10);
        assert_eq!(rows.len(), 3);
        let cairn = &rows[0];
        assert_eq!(cairn.ops_per_s, Some(200.0));
        assert_eq!(
            (
                cairn.ratio_to_lobster,
                cairn.ratio_to_lobster_min,
                cairn.ratio_to_lobster_max
            ),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert_eq!(cairn.ratio_to_orderbook_rs, None);
        assert_eq!(rows[1].system, "orderbook-rs");
        assert_eq!(rows[1].skipped.as_deref(), Some(PEERS_SKIPPED));
        assert_eq!(rows[2].ops_per_s, Some(100.0));
        assert_eq!(rows[2].refused, Some(1));
    }
}
