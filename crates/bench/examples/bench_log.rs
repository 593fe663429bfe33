//! `cairn bench log` without the CLI: `cargo run --release -p cairn-bench --example bench_log -- --help`.

use clap::Parser;

/// Cairn's log benchmark: durable append against the disk's floor, and recovery times.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: cairn_bench::LogBenchArgs,
}

fn main() -> anyhow::Result<()> {
    cairn_bench::run_log_bench(&Cli::parse().args)?;
    Ok(())
}
