//! `cairn inventory ...`: the inventory endpoints of a running server, through `cairn-client`.
//!
//! Exit codes: 0 on success; 1 when the server refuses (`error: <code>: <message>` and the details
//! on stderr) or cannot be reached; 2 on a usage error (bad flags, no token, a SKU no URL can
//! carry). `--json` prints the server's answer as JSON; otherwise a short readable summary.
//! Every mutation sends a `--request-id`, a fresh random one unless given: repeat a command with the
//! id it printed to retry it safely.

use anyhow::Context;
use cairn_client::{
    AdjustRequest, Client, ClientError, CountRequest, Item, ItemSummary, ItemWrite, PolicyRequest,
    Reservation, ReserveLine, ReserveRequest, new_request_id,
};
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Exit status of a refused request (or an unreachable server).
const EXIT_REFUSED: u8 = 1;
/// Exit status of a usage error (clap uses the same).
pub(crate) const EXIT_USAGE: u8 = 2;

/// `cairn inventory ...`
#[derive(Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: InventoryCommand,
}

/// Where the server is and how to talk to it (accepted before or after the subcommand).
#[derive(Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct Connection {
    /// The server's base URL.
    #[arg(
        long,
        env = "CAIRN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The bearer token [default: the contents of DATA_DIR/admin.token].
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A server's data directory, whose admin.token is used when no token is given.
    #[arg(long, env = "CAIRN_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// The longest a request may take, in milliseconds.
    #[arg(long, env = "CAIRN_TIMEOUT_MS", default_value_t = cairn_client::REQUEST_TIMEOUT_MS_DEFAULT, global = true)]
    timeout_ms: u64,
}

/// The idempotency key of a mutation.
#[derive(Args)]
pub(crate) struct RequestIdArg {
    /// The request id (1..=128 bytes) [default: a fresh random one]. Repeating a request with the
    /// same id and body returns its first outcome and changes nothing.
    #[arg(long)]
    request_id: Option<String>,
}

impl RequestIdArg {
    pub(crate) fn resolve(self) -> String {
        self.request_id.unwrap_or_else(new_request_id)
    }
}

/// The inventory subcommands.
#[derive(Subcommand)]
enum InventoryCommand {
    /// Add stock at a location (or remove it, with a negative --delta), with a reason.
    Adjust(AdjustArgs),
    /// Record a shelf count. With --expected-on-hand, refused (count_conflict) if stock moved.
    Count(CountArgs),
    /// Set the safety stock and/or backorder limit of a SKU at a location.
    Policy(PolicyArgs),
    /// Hold stock for an order: every line or none. Prints the reservation id.
    Reserve(ReserveArgs),
    /// Confirm a reservation: ship the goods (on_hand and reserved both fall).
    Confirm(FinishArgs),
    /// Release a reservation: give the stock back.
    Release(FinishArgs),
    /// Show a SKU at every location, or a reservation with --reservation.
    Get(GetArgs),
    /// Show a SKU's recent history.
    History {
        /// The SKU.
        sku: String,
    },
}

/// `cairn inventory adjust`
#[derive(Args)]
struct AdjustArgs {
    /// The SKU.
    #[arg(long)]
    sku: String,
    /// The location.
    #[arg(long)]
    location: String,
    /// Units to add (negative: to remove).
    #[arg(long, allow_negative_numbers = true)]
    delta: i64,
    /// Why (kept in the history).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    request: RequestIdArg,
}

/// `cairn inventory count`
#[derive(Args)]
struct CountArgs {
    /// The SKU.
    #[arg(long)]
    sku: String,
    /// The location.
    #[arg(long)]
    location: String,
    /// Units counted on the shelf.
    #[arg(long)]
    on_hand: i64,
    /// Refuse unless on_hand is this now.
    #[arg(long)]
    expected_on_hand: Option<i64>,
    #[command(flatten)]
    request: RequestIdArg,
}

/// `cairn inventory policy`
#[derive(Args)]
struct PolicyArgs {
    /// The SKU.
    #[arg(long)]
    sku: String,
    /// The location.
    #[arg(long)]
    location: String,
    /// Units kept back from available.
    #[arg(long)]
    safety_stock: Option<i64>,
    /// How far below zero available may go for reservations.
    #[arg(long)]
    backorder_limit: Option<i64>,
    #[command(flatten)]
    request: RequestIdArg,
}

/// `cairn inventory reserve`
#[derive(Args)]
struct ReserveArgs {
    /// The caller's order id.
    #[arg(long)]
    order_id: String,
    /// SKU[@LOCATION]:QTY, repeatable. Without a location the server picks where from. The
    /// quantity follows the last ':', the location the last '@'.
    #[arg(long = "line", required = true, value_parser = parse_line, value_name = "SKU[@LOCATION]:QTY")]
    lines: Vec<ReserveLine>,
    /// How long to hold the stock [server default: 900000, at most 86400000].
    #[arg(long)]
    ttl_ms: Option<u64>,
    #[command(flatten)]
    request: RequestIdArg,
}

/// `cairn inventory confirm` and `release`
#[derive(Args)]
struct FinishArgs {
    /// The reservation id, as `reserve` printed it.
    reservation_id: String,
    #[command(flatten)]
    request: RequestIdArg,
}

/// `cairn inventory get`
#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["sku", "reservation"])))]
struct GetArgs {
    /// The SKU.
    sku: Option<String>,
    /// A reservation id instead of a SKU.
    #[arg(long)]
    reservation: Option<String>,
}

/// `SKU[@LOCATION]:QTY`: the quantity after the last ':', the location after the last '@'.
fn parse_line(text: &str) -> Result<ReserveLine, String> {
    let (head, qty) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not SKU[@LOCATION]:QTY (no ':QTY')"))?;
    let qty: i64 = qty
        .parse()
        .map_err(|_| format!("'{text}': the quantity '{qty}' is not an integer"))?;
    let (sku, location) = match head.rsplit_once('@') {
        Some((sku, location)) => (sku, Some(location.to_string())),
        None => (head, None),
    };
    if sku.is_empty() || location.as_deref() == Some("") {
        return Err(format!("'{text}': empty SKU or location"));
    }
    Ok(ReserveLine {
        sku: sku.to_string(),
        location,
        qty,
    })
}

/// Runs one inventory command on a current-thread runtime.
pub fn run(args: InventoryArgs) -> anyhow::Result<ExitCode> {
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
    let outcome = runtime.block_on(execute(&client, args.command, connection.json));
    Ok(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&client, &error),
    })
}

/// The client, or why the flags do not make one.
pub(crate) fn connect(connection: &Connection) -> Result<Client, String> {
    let url = connection.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "--url {url}: expected http://HOST:PORT (or https://)"
        ));
    }
    let token = token(connection)?;
    Client::with_timeout_ms(url, token, connection.timeout_ms)
        .map_err(|error| format!("cannot set up the HTTP client: {}", chain(&error)))
}

fn token(connection: &Connection) -> Result<String, String> {
    if let Some(token) = &connection.token {
        return Ok(token.trim().to_string());
    }
    let Some(dir) = &connection.data_dir else {
        return Err(
            "no token: give --token (or CAIRN_TOKEN), or --data-dir DIR to use DIR/admin.token"
                .into(),
        );
    };
    let path = dir.join("admin.token");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the token from {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_string())
}

/// Prints what went wrong and picks the exit status.
pub(crate) fn report(client: &Client, error: &ClientError) -> ExitCode {
    match error {
        ClientError::Api {
            code,
            message,
            details,
            ..
        } => {
            eprintln!("error: {code}: {message}");
            let empty = details.is_null() || details.as_object().is_some_and(|o| o.is_empty());
            if !empty {
                let text = serde_json::to_string_pretty(details).unwrap_or_default();
                eprintln!("details: {text}");
            }
            ExitCode::from(EXIT_REFUSED)
        }
        ClientError::InvalidInput(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        ClientError::Transport(cause) => {
            eprintln!(
                "error: cannot reach {}: {}",
                client.base_url(),
                chain(cause)
            );
            ExitCode::from(EXIT_REFUSED)
        }
        ClientError::Decode(_) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// An error and its causes, `: `-separated (reqwest hides the useful part in the sources).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn execute(
    client: &Client,
    command: InventoryCommand,
    json: bool,
) -> Result<(), ClientError> {
    match command {
        InventoryCommand::Adjust(args) => {
            let request = AdjustRequest {
                request_id: args.request.resolve(),
                sku: args.sku,
                location: args.location,
                delta: args.delta,
                reason: args.reason,
            };
            let write = client.adjust(&request).await?;
            print_item_write(json, "adjusted", &write, &request.request_id);
        }
        InventoryCommand::Count(args) => {
            let request = CountRequest {
                request_id: args.request.resolve(),
                sku: args.sku,
                location: args.location,
                on_hand: args.on_hand,
                expected_on_hand: args.expected_on_hand,
            };
            let write = client.count(&request).await?;
            print_item_write(json, "counted", &write, &request.request_id);
        }
        InventoryCommand::Policy(args) => {
            let request = PolicyRequest {
                request_id: args.request.resolve(),
                sku: args.sku,
                location: args.location,
                safety_stock: args.safety_stock,
                backorder_limit: args.backorder_limit,
            };
            let write = client.set_policy(&request).await?;
            print_item_write(json, "policy set for", &write, &request.request_id);
        }
        InventoryCommand::Reserve(args) => {
            let request = ReserveRequest {
                request_id: args.request.resolve(),
                order_id: args.order_id,
                lines: args.lines,
                ttl_ms: args.ttl_ms,
            };
            let reservation = client.reserve(&request).await?;
            print_reservation(json, &reservation, Some(&request.request_id));
        }
        InventoryCommand::Confirm(args) => {
            let request_id = args.request.resolve();
            let reservation = client.confirm(&args.reservation_id, &request_id).await?;
            print_reservation(json, &reservation, Some(&request_id));
        }
        InventoryCommand::Release(args) => {
            let request_id = args.request.resolve();
            let reservation = client.release(&args.reservation_id, &request_id).await?;
            print_reservation(json, &reservation, Some(&request_id));
        }
        InventoryCommand::Get(args) => get(client, args, json).await?,
        InventoryCommand::History { sku } => print_history(json, &client.history(&sku).await?),
    }
    Ok(())
}

async fn get(client: &Client, args: GetArgs, json: bool) -> Result<(), ClientError> {
    match (args.reservation, args.sku) {
        (Some(id), _) => print_reservation(json, &client.reservation(&id).await?, None),
        (None, Some(sku)) => print_item_summary(json, &client.item(&sku).await?),
        // The argument group makes one of them required.
        (None, None) => {
            return Err(ClientError::InvalidInput(
                "give a SKU or --reservation ID".into(),
            ));
        }
    }
    Ok(())
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("error: cannot print the answer as JSON: {error}"),
    }
}

fn print_item_write(json: bool, verb: &str, write: &ItemWrite, request_id: &str) {
    if json {
        return print_json(write);
    }
    let item = &write.item;
    println!(
        "{verb} {} at {} (lsn {}, request_id {request_id})",
        item.sku, item.location, write.lsn
    );
    print!("{}", item_table(std::slice::from_ref(item)));
}

fn print_item_summary(json: bool, summary: &ItemSummary) {
    if json {
        return print_json(summary);
    }
    println!(
        "{}: total available {} (lsn {})",
        summary.sku, summary.total_available, summary.lsn
    );
    print!("{}", item_table(&summary.locations));
}

fn item_table(items: &[Item]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            vec![
                item.location.clone(),
                item.on_hand.to_string(),
                item.reserved.to_string(),
                item.safety_stock.to_string(),
                item.backorder_limit.to_string(),
                item.available.to_string(),
                if item.oversold { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(
        &[
            ("LOCATION", false),
            ("ON_HAND", true),
            ("RESERVED", true),
            ("SAFETY_STOCK", true),
            ("BACKORDER_LIMIT", true),
            ("AVAILABLE", true),
            ("OVERSOLD", false),
        ],
        &rows,
    )
}

fn print_reservation(json: bool, reservation: &Reservation, request_id: Option<&str>) {
    if json {
        return print_json(reservation);
    }
    let mut facts = Vec::new();
    if let Some(order_id) = &reservation.order_id {
        facts.push(format!("order {order_id}"));
    }
    if let Some(at_ms) = reservation.expires_at_ms {
        facts.push(format!("expires {}", time(at_ms)));
    }
    if let Some(lsn) = reservation.lsn {
        facts.push(format!("lsn {lsn}"));
    }
    if let Some(request_id) = request_id {
        facts.push(format!("request_id {request_id}"));
    }
    println!(
        "reservation {}: {} ({})",
        reservation.reservation_id,
        reservation.state,
        facts.join(", ")
    );
    let rows: Vec<Vec<String>> = reservation
        .lines
        .iter()
        .map(|line| {
            vec![
                line.sku.clone(),
                line.location.clone(),
                line.qty.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            table(&[("SKU", false), ("LOCATION", false), ("QTY", true)], &rows)
        );
    }
}

fn print_history(json: bool, history: &Value) {
    if json {
        return print_json(history);
    }
    let events = history["events"].as_array().map_or(&[][..], Vec::as_slice);
    if events.is_empty() {
        println!("no events");
        return;
    }
    let field = |event: &Value, name: &str| match &event[name] {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            let at = event["at_ms"].as_u64().map_or_else(|| "-".into(), time);
            let mut row = vec![field(event, "lsn"), at];
            for name in [
                "type",
                "location",
                "qty",
                "reservation_id",
                "actor",
                "request_id",
                "reason",
            ] {
                row.push(field(event, name));
            }
            row
        })
        .collect();
    let columns = [
        ("LSN", true),
        ("AT", false),
        ("TYPE", false),
        ("LOCATION", false),
        ("QTY", true),
        ("RESERVATION", false),
        ("ACTOR", false),
        ("REQUEST_ID", false),
        ("REASON", false),
    ];
    print!("{}", table(&columns, &rows));
}

/// A log time as RFC 3339 (UTC, milliseconds).
fn time(at_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// Columns padded to their widest cell, two spaces apart; `(header, right_aligned)`.
fn table(columns: &[(&str, bool)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers: Vec<String> = columns.iter().map(|(h, _)| (*h).to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&headers).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(columns.iter().zip(&widths))
            .map(|(cell, ((_, right), width))| {
                if *right {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_a_location_splits_at_the_last_at_and_colon() {
        let line = parse_line("RED/XL@W1:3").expect("parses");
        assert_eq!(
            (line.sku.as_str(), line.location.as_deref(), line.qty),
            ("RED/XL", Some("W1"), 3)
        );
        let line = parse_line("a:b@c@W2:4").expect("parses");
        assert_eq!(
            (line.sku.as_str(), line.location.as_deref(), line.qty),
            ("a:b@c", Some("W2"), 4)
        );
    }

    #[test]
    fn a_line_without_a_location_leaves_it_to_the_server() {
        let line = parse_line("SKU-1:7").expect("parses");
        assert_eq!(
            (line.sku.as_str(), line.location, line.qty),
            ("SKU-1", None, 7)
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        for text in ["SKU", "SKU:x", ":3", "SKU@:3", "@W1:3"] {
            assert!(parse_line(text).is_err(), "{text}");
        }
    }

    #[test]
    fn tables_align_and_right_align_numbers() {
        let text = table(
            &[("NAME", false), ("N", true)],
            &[
                vec!["a".into(), "10".into()],
                vec!["long".into(), "2".into()],
            ],
        );
        assert_eq!(text, "NAME   N\na     10\nlong   2\n");
    }
}
