//! The `cairn` binary: argument parsing and glue only. Every command's work lives in a library
//! crate (server, engine, log, bench).

mod inventory;
mod logcmd;
mod market;
mod offline;
mod publish;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The system allocator, counting the bytes held only while `cairn bench publish` measures
/// memory added per release (otherwise one relaxed load per allocation).
#[global_allocator]
static ALLOCATOR: cairn_bench::CountingAlloc = cairn_bench::CountingAlloc;

/// Cairn: an event-sourced consistency engine for high-concurrency commerce.
#[derive(Parser)]
#[command(name = "cairn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Inspect the log: verify every checksum and the hash chain, or dump records.
    Log {
        #[command(subcommand)]
        command: logcmd::LogCommand,
    },
    /// Take a snapshot of every shard now (the server must not be running on DIR).
    Snapshot(offline::SnapshotArgs),
    /// Rebuild the state as of a past LSN and print its hash and a summary (time travel for audits).
    Replay(offline::ReplayArgs),
    /// Inventory on a running server: adjust, count, policy, reserve, confirm, release, get,
    /// history.
    Inventory(inventory::InventoryArgs),
    /// Markets on a running server: create, order, cancel, get, book, trades.
    Market(market::MarketArgs),
    /// Publishing on a running server: dataset create, draft, diff, release, promote, abort,
    /// rollback, get, history.
    Publish(publish::PublishArgs),
    /// Benchmarks, measured side by side with their peers.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Durable append throughput against the disk's write+fdatasync floor, and recovery time.
    Log(cairn_bench::LogBenchArgs),
    /// Reservations per second and latency: Cairn against PostgreSQL and Redis doing the same
    /// check-and-decrement, on one hot SKU and on 10,000 SKUs.
    Inventory(cairn_bench::InventoryBenchArgs),
    /// Orders per second of the order book against orderbook-rs and lobster on the same stream
    /// (they need `--features peers`), durable end to end, and recovery of a large book.
    Matching(cairn_bench::MatchingBenchArgs),
    /// Versioned publishing through HTTP: a 10,000-key change on a 1,000,000-key dataset, a fresh
    /// 1,000,000-key dataset and a rollback (time to live, memory added), and read throughput
    /// and p99 while publishing beside idle.
    Publish(cairn_bench::PublishBenchArgs),
    /// Five-line reservations over two shards: Cairn's two-phase commit against PostgreSQL's
    /// (PREPARE TRANSACTION / COMMIT PREPARED over two databases), durable, at 1, 64 and 256 in
    /// flight.
    Txn(cairn_bench::TxnBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Log { command } => logcmd::run(command),
        Command::Snapshot(args) => offline::snapshot(&args),
        Command::Replay(args) => offline::replay(&args),
        Command::Inventory(args) => inventory::run(args),
        Command::Market(args) => market::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Bench {
            command: BenchCommand::Log(args),
        } => cairn_bench::run_log_bench(&args).map(|_| ExitCode::SUCCESS),
        Command::Bench {
            command: BenchCommand::Inventory(args),
        } => cairn_bench::run_inventory_bench(&args).map(|_| ExitCode::SUCCESS),
        Command::Bench {
            command: BenchCommand::Matching(args),
        } => cairn_bench::run_matching_bench(&args).map(|_| ExitCode::SUCCESS),
        Command::Bench {
            command: BenchCommand::Publish(args),
        } => cairn_bench::run_publish_bench(&args).map(|_| ExitCode::SUCCESS),
        Command::Bench {
            command: BenchCommand::Txn(args),
        } => cairn_bench::run_txn_bench(&args).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
