//! `cairn market ...`: the matching endpoints of a running server, through `cairn-client`.
//!
//! Same conventions as `cairn inventory`: `--url`/`--token` (or `CAIRN_URL`, `CAIRN_TOKEN`, or
//! `--data-dir` for the admin token), `--json` for the server's answer as JSON, exit 0 on
//! success, 1 when the server refuses or cannot be reached, 2 on a usage error. Every mutation
//! sends a `--request-id`, a fresh random one unless given.

use crate::inventory::{Connection, EXIT_USAGE, RequestIdArg, connect, report};
use anyhow::Context;
use cairn_client::{Client, ClientError, MarketRequest, OrderRequest};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use std::process::ExitCode;

/// `cairn market ...`
#[derive(Args)]
pub struct MarketArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: MarketCommand,
}

#[derive(Subcommand)]
enum MarketCommand {
    /// Open a market with its tick size and lot size.
    Create {
        /// The symbol.
        symbol: String,
        /// Prices are multiples of this (minor units).
        #[arg(long)]
        tick_size: i64,
        /// Quantities are multiples of this.
        #[arg(long)]
        lot_size: i64,
        #[command(flatten)]
        request: RequestIdArg,
    },
    /// Place an order; prints its status and trades.
    Order(OrderArgs),
    /// Cancel an open order by its id.
    Cancel {
        /// The symbol.
        symbol: String,
        /// The exchange's order id.
        order_id: u64,
        #[command(flatten)]
        request: RequestIdArg,
    },
    /// Show an order.
    Get {
        /// The symbol.
        symbol: String,
        /// The exchange's order id.
        order_id: u64,
    },
    /// Show the book: price levels best first.
    Book {
        /// The symbol.
        symbol: String,
        /// Levels per side.
        #[arg(long, default_value_t = 10)]
        depth: usize,
    },
    /// Show trades in execution order.
    Trades {
        /// The symbol.
        symbol: String,
        /// Only trades after this id.
        #[arg(long, default_value_t = 0)]
        after_trade_id: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SideArg {
    Buy,
    Sell,
}

#[derive(Clone, Copy, ValueEnum)]
enum TypeArg {
    Limit,
    Market,
}

#[derive(Clone, Copy, ValueEnum)]
enum TifArg {
    Gtc,
    Ioc,
    Fok,
}

/// `cairn market order`
#[derive(Args)]
struct OrderArgs {
    /// The symbol.
    symbol: String,
    /// The account the order is for.
    #[arg(long)]
    account: String,
    /// Buy or sell.
    #[arg(long, value_enum)]
    side: SideArg,
    /// Units.
    #[arg(long)]
    qty: i64,
    /// Limit price (omit for a market order).
    #[arg(long)]
    price: Option<i64>,
    /// Limit or market [default: limit with --price, market without].
    #[arg(long = "type", value_enum)]
    order_type: Option<TypeArg>,
    /// Time in force [default: gtc for limit, ioc for market].
    #[arg(long, value_enum)]
    time_in_force: Option<TifArg>,
    /// Refuse to trade on arrival.
    #[arg(long)]
    post_only: bool,
    #[command(flatten)]
    request: RequestIdArg,
}

/// Runs one market command on a current-thread runtime.
pub fn run(args: MarketArgs) -> anyhow::Result<ExitCode> {
    let connection = args.connection;
    let client = match connect(&connection) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let outcome = runtime.block_on(execute(&client, args.command));
    Ok(match outcome {
        Ok(answer) => {
            print(&answer, connection.json);
            ExitCode::SUCCESS
        }
        Err(error) => report(&client, &error),
    })
}

async fn execute(client: &Client, command: MarketCommand) -> Result<Value, ClientError> {
    match command {
        MarketCommand::Create {
            symbol,
            tick_size,
            lot_size,
            request,
        } => {
            let request = MarketRequest {
                request_id: request.resolve(),
                symbol,
                tick_size,
                lot_size,
            };
            client.create_market(&request).await
        }
        MarketCommand::Order(args) => {
            let order_type = args.order_type.unwrap_or(if args.price.is_some() {
                TypeArg::Limit
            } else {
                TypeArg::Market
            });
            let time_in_force = args.time_in_force.unwrap_or(match order_type {
                TypeArg::Limit => TifArg::Gtc,
                TypeArg::Market => TifArg::Ioc,
            });
            let request = OrderRequest {
                request_id: args.request.resolve(),
                account: args.account,
                side: match args.side {
                    SideArg::Buy => "buy",
                    SideArg::Sell => "sell",
                }
                .into(),
                order_type: match order_type {
                    TypeArg::Limit => "limit",
                    TypeArg::Market => "market",
                }
                .into(),
                price: args.price,
                qty: args.qty,
                time_in_force: match time_in_force {
                    TifArg::Gtc => "gtc",
                    TifArg::Ioc => "ioc",
                    TifArg::Fok => "fok",
                }
                .into(),
                post_only: args.post_only,
            };
            client.place_order(&args.symbol, &request).await
        }
        MarketCommand::Cancel {
            symbol,
            order_id,
            request,
        } => {
            client
                .cancel_order(&symbol, order_id, &request.resolve())
                .await
        }
        MarketCommand::Get { symbol, order_id } => client.order(&symbol, order_id).await,
        MarketCommand::Book { symbol, depth } => client.book(&symbol, depth).await,
        MarketCommand::Trades {
            symbol,
            after_trade_id,
            limit,
        } => client.trades(&symbol, after_trade_id, limit).await,
    }
}

/// Prints the answer: JSON with `--json`, else a short readable form.
fn print(answer: &Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
        return;
    }
    let text = |field: &str| answer[field].to_string().trim_matches('"').to_string();
    if answer.get("bids").is_some() {
        println!(
            "{:>12} {:>14} {:>7} | {:<12} {:<14} {:<7}",
            "bid", "qty", "orders", "ask", "qty", "orders"
        );
        let (bids, asks) = (level_rows(&answer["bids"]), level_rows(&answer["asks"]));
        for row in 0..bids.len().max(asks.len()) {
            let bid = bids.get(row).map_or_else(
                || format!("{:>36}", ""),
                |(p, q, o)| format!("{p:>12} {q:>14} {o:>7}"),
            );
            let ask = asks
                .get(row)
                .map_or_else(String::new, |(p, q, o)| format!("{p:<12} {q:<14} {o:<7}"));
            println!("{bid} | {ask}");
        }
        println!("at lsn {}", text("lsn"));
    } else if let Some(trades) = answer
        .get("trades")
        .filter(|_| answer.get("order_id").is_none())
    {
        for trade in trades.as_array().into_iter().flatten() {
            println!(
                "trade {} {} @ {} (maker {}, taker {}, taker {})",
                trade["trade_id"],
                trade["qty"],
                trade["price"],
                trade["maker_order_id"],
                trade["taker_order_id"],
                trade["taker_side"].as_str().unwrap_or("?")
            );
        }
    } else if answer.get("order_id").is_some() {
        println!(
            "order {} {}: filled {}, resting {}{}",
            text("order_id"),
            text("status"),
            text("filled_qty"),
            text("remaining_qty"),
            answer["reject_reason"]
                .as_str()
                .map_or_else(String::new, |r| format!(" ({r})"))
        );
        for trade in answer["trades"].as_array().into_iter().flatten() {
            println!(
                "  trade {} {} @ {} with order {}",
                trade["trade_id"], trade["qty"], trade["price"], trade["maker_order_id"]
            );
        }
    } else {
        println!("{}", serde_json::to_string(answer).unwrap_or_default());
    }
}

fn level_rows(levels: &Value) -> Vec<(String, String, String)> {
    levels
        .as_array()
        .into_iter()
        .flatten()
        .map(|level| {
            (
                level["price"].to_string(),
                level["qty"].to_string(),
                level["orders"].to_string(),
            )
        })
        .collect()
}
