//! `cairn publish ...`: the publishing endpoints of a running server, through `cairn-client`.
//!
//! Same conventions as `cairn inventory`: `--url`/`--token` (or `CAIRN_URL`, `CAIRN_TOKEN`, or
//! `--data-dir` for the admin token), `--json` for the server's answer as JSON, exit 0 on
//! success, 1 when the server refuses (`error: <code>: <message>`, with `details:` such as a
//! guardrail's violations) or cannot be reached, 2 on a usage error. Every mutation sends a
//! `--request-id`, a fresh random one unless given.
//!
//! Editing drafts and releasing need an operator token; `--force-reason` needs an admin's.

use crate::inventory::{Connection, EXIT_USAGE, RequestIdArg, connect, report};
use anyhow::Context;
use cairn_client::{
    Client, ClientError, DatasetRequest, DraftAppendRequest, DraftChange, DraftRequest, GrayRules,
    ReadContext, ReleaseRequest, RollbackRequest,
};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Most changes sent in one request of `draft --file`; the rest go in appends.
const CHUNK_CHANGES_MAX: usize = 10_000;
/// Most encoded bytes of changes in one request (the server takes bodies up to 1 MiB).
const CHUNK_BYTES_MAX: usize = 768 * 1024;
/// Changes per page when `diff` walks a draft.
const DIFF_PAGE: usize = 1000;

/// `cairn publish ...`
#[derive(Args)]
pub struct PublishArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: PublishCommand,
}

#[derive(Subcommand)]
enum PublishCommand {
    /// Datasets: `dataset create NAME [--guardrails FILE.json]`.
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Start a draft with changes (from --set, or a file sent in chunks); prints the draft id.
    Draft(DraftArgs),
    /// Show a draft's changes against what is live, and its guardrail violations.
    Diff {
        /// The draft id, as `draft` printed it.
        draft_id: u64,
        /// Show at most this many changes.
        #[arg(long, default_value_t = 1000)]
        max_changes: usize,
    },
    /// Release a draft: live, gray (with rules) or scheduled. Prints the release id.
    Release(ReleaseArgs),
    /// Make a gray or scheduled release live for everyone.
    Promote {
        /// The release id.
        release_id: u64,
        #[command(flatten)]
        request: RequestIdArg,
    },
    /// Abort a gray or scheduled release.
    Abort {
        /// The release id.
        release_id: u64,
        #[command(flatten)]
        request: RequestIdArg,
    },
    /// Restore every dataset a release touched to its content right after it went live.
    Rollback {
        /// The release to go back to.
        #[arg(long = "to")]
        to_release_id: u64,
        /// Why (kept in the history).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        request: RequestIdArg,
    },
    /// Read a key's value as a reader with this context is served it.
    Get(GetArgs),
    /// List releases, oldest first.
    History {
        /// Only releases after this id.
        #[arg(long)]
        after: Option<u64>,
        /// At most this many [server default: 1000].
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Create a dataset.
    Create {
        /// The dataset's name.
        name: String,
        /// A JSON file of guardrails: {json_schema?, numeric_bounds?, max_change_pct?,
        /// max_changed_keys?}.
        #[arg(long, value_name = "FILE.json")]
        guardrails: Option<PathBuf>,
        #[command(flatten)]
        request: RequestIdArg,
    },
}

/// `cairn publish draft`
#[derive(Args)]
#[command(group(ArgGroup::new("changes").required(true).args(["set", "file"])))]
struct DraftArgs {
    /// What the draft is for.
    #[arg(long)]
    note: String,
    /// DATASET/KEY=JSON, repeatable (`=null` deletes the key). The dataset ends at the first
    /// '/', the key at the first '='.
    #[arg(long, value_parser = parse_set, value_name = "DATASET/KEY=JSON")]
    set: Vec<DraftChange>,
    /// A JSON file of changes, `[{dataset, key, value}]` or `{"changes": [...]}` (`-`: stdin).
    /// Large files are sent as a draft and appends.
    #[arg(long, conflicts_with = "set")]
    file: Option<PathBuf>,
    /// The request id [default: a fresh random one]. Appends use it with `.N` added, so a
    /// repeated command changes nothing.
    #[arg(long)]
    request_id: Option<String>,
}

/// `cairn publish release`
#[derive(Args)]
struct ReleaseArgs {
    /// The draft id.
    draft_id: u64,
    /// Gray: this percent of users (0.01..=100, at most 2 decimals).
    #[arg(long, value_parser = parse_percent)]
    percent: Option<serde_json::Number>,
    /// Gray: these users (comma-separated).
    #[arg(long, value_delimiter = ',')]
    users: Vec<String>,
    /// Gray: these channels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
    /// Gray: these regions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Gray: these segments (comma-separated).
    #[arg(long, value_delimiter = ',')]
    segments: Vec<String>,
    /// Go live at this time (Unix milliseconds).
    #[arg(long)]
    go_live_at_ms: Option<u64>,
    /// Revert at this time (Unix milliseconds).
    #[arg(long)]
    revert_at_ms: Option<u64>,
    /// Admin only: release despite guardrail violations, for this reason.
    #[arg(long)]
    force_reason: Option<String>,
    #[command(flatten)]
    request: RequestIdArg,
}

/// `cairn publish get`
#[derive(Args)]
struct GetArgs {
    /// The dataset.
    dataset: String,
    /// The key.
    key: String,
    /// The reader, for gray rules.
    #[arg(long)]
    user_id: Option<String>,
    /// The reader's channel.
    #[arg(long)]
    channel: Option<String>,
    /// The reader's region.
    #[arg(long)]
    region: Option<String>,
    /// The reader's segments (comma-separated).
    #[arg(long, value_delimiter = ',')]
    segments: Vec<String>,
}

/// `DATASET/KEY=JSON`.
fn parse_set(text: &str) -> Result<DraftChange, String> {
    let (target, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not DATASET/KEY=JSON (no '=')"))?;
    let (dataset, key) = target
        .split_once('/')
        .ok_or_else(|| format!("'{text}' is not DATASET/KEY=JSON (no '/')"))?;
    if dataset.is_empty() || key.is_empty() {
        return Err(format!("'{text}': empty dataset or key"));
    }
    let value: Value = serde_json::from_str(value)
        .map_err(|e| format!("'{text}': the value is not JSON ({e}); quote strings: '\"text\"'"))?;
    Ok(DraftChange {
        dataset: dataset.to_string(),
        key: key.to_string(),
        value,
    })
}

/// A percent as a JSON number, kept as written (the server counts its decimals).
fn parse_percent(text: &str) -> Result<serde_json::Number, String> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Number(number)) => Ok(number),
        _ => Err(format!("'{text}' is not a number")),
    }
}

/// Runs one publish command on a current-thread runtime.
pub fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
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
        Ok((answer, text)) => {
            if connection.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                );
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => report(&client, &error),
    })
}

/// The server's answer and its readable form.
async fn execute(client: &Client, command: PublishCommand) -> Result<(Value, String), ClientError> {
    match command {
        PublishCommand::Dataset {
            command:
                DatasetCommand::Create {
                    name,
                    guardrails,
                    request,
                },
        } => {
            let guardrails = guardrails.as_deref().map(read_json).transpose()?;
            let request_id = request.resolve();
            let request = DatasetRequest {
                request_id: request_id.clone(),
                name,
                guardrails,
            };
            let answer = client.create_dataset(&request).await?;
            let text = format!(
                "dataset {} created (lsn {}, request_id {request_id})\n",
                field(&answer, "name"),
                field(&answer, "lsn")
            );
            Ok((answer, text))
        }
        PublishCommand::Draft(args) => draft(client, args).await,
        PublishCommand::Diff {
            draft_id,
            max_changes,
        } => diff(client, draft_id, max_changes).await,
        PublishCommand::Release(args) => {
            let rules = GrayRules {
                percent: args.percent,
                users: args.users,
                channels: args.channels,
                regions: args.regions,
                segments: args.segments,
            };
            let request_id = args.request.resolve();
            let request = ReleaseRequest {
                request_id: request_id.clone(),
                draft_id: args.draft_id,
                gray: (rules != GrayRules::default()).then_some(rules),
                go_live_at_ms: args.go_live_at_ms,
                revert_at_ms: args.revert_at_ms,
                force_reason: args.force_reason,
            };
            let answer = client.create_release(&request).await?;
            let text = release_line(&answer, &request_id);
            Ok((answer, text))
        }
        PublishCommand::Promote {
            release_id,
            request,
        } => {
            let request_id = request.resolve();
            let answer = client.promote_release(release_id, &request_id).await?;
            let text = release_line(&answer, &request_id);
            Ok((answer, text))
        }
        PublishCommand::Abort {
            release_id,
            request,
        } => {
            let request_id = request.resolve();
            let answer = client.abort_release(release_id, &request_id).await?;
            let text = release_line(&answer, &request_id);
            Ok((answer, text))
        }
        PublishCommand::Rollback {
            to_release_id,
            reason,
            request,
        } => {
            let request_id = request.resolve();
            let request = RollbackRequest {
                request_id: request_id.clone(),
                to_release_id,
                reason,
            };
            let answer = client.rollback(&request).await?;
            let text = format!(
                "release {} restores release {to_release_id}: {} (lsn {}, request_id {request_id})\n",
                field(&answer, "release_id"),
                field(&answer, "state"),
                field(&answer, "lsn")
            );
            Ok((answer, text))
        }
        PublishCommand::Get(args) => {
            let context = ReadContext {
                user_id: args.user_id,
                channel: args.channel,
                region: args.region,
                segments: args.segments,
            };
            let answer = client
                .published_value(&args.dataset, &args.key, &context)
                .await?;
            let text = format!(
                "{}/{} = {} (release {}, lsn {})\n",
                args.dataset,
                args.key,
                answer["value"],
                field(&answer, "release_id"),
                field(&answer, "lsn")
            );
            Ok((answer, text))
        }
        PublishCommand::History { after, limit } => {
            let answer = client.releases(after, limit).await?;
            let text = history_table(&answer);
            Ok((answer, text))
        }
    }
}

/// A JSON file (`-`: stdin).
fn read_json(path: &Path) -> Result<Value, ClientError> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| ClientError::InvalidInput(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            ClientError::InvalidInput(format!("cannot read {}: {e}", path.display()))
        })?
    };
    serde_json::from_str(&text).map_err(|e| {
        ClientError::InvalidInput(format!("{} is not valid JSON: {e}", path.display()))
    })
}

/// The changes of a `--file`: `[{dataset, key, value}]` or `{"changes": [...]}`.
fn file_changes(path: &Path) -> Result<Vec<DraftChange>, ClientError> {
    let value = match read_json(path)? {
        Value::Object(mut object) if object.contains_key("changes") => {
            object.remove("changes").unwrap_or(Value::Null)
        }
        other => other,
    };
    serde_json::from_value(value).map_err(|e| {
        ClientError::InvalidInput(format!(
            "{}: expected [{{\"dataset\", \"key\", \"value\"}}, ...] or {{\"changes\": [...]}}: {e}",
            path.display()
        ))
    })
}

/// Splits changes into requests that fit the server's body limit: at most [`CHUNK_CHANGES_MAX`]
/// changes and about [`CHUNK_BYTES_MAX`] encoded bytes each (a lone larger change is sent alone,
/// for the server to judge). Always at least one chunk.
fn chunks(changes: Vec<DraftChange>) -> Vec<Vec<DraftChange>> {
    let mut out = vec![Vec::new()];
    let mut bytes = 0usize;
    for change in changes {
        let size = serde_json::to_vec(&change).map_or(0, |v| v.len()) + 1;
        let last = out.last_mut().expect("at least one chunk");
        if !last.is_empty() && (last.len() >= CHUNK_CHANGES_MAX || bytes + size > CHUNK_BYTES_MAX) {
            out.push(vec![change]);
            bytes = size;
        } else {
            last.push(change);
            bytes += size;
        }
    }
    out
}

async fn draft(client: &Client, args: DraftArgs) -> Result<(Value, String), ClientError> {
    let changes = match &args.file {
        Some(path) => file_changes(path)?,
        None => args.set,
    };
    let request_id = args.request_id.unwrap_or_else(cairn_client::new_request_id);
    let mut chunks = chunks(changes).into_iter();
    let first = chunks.next().unwrap_or_default();
    let request = DraftRequest {
        request_id: request_id.clone(),
        note: args.note,
        changes: first,
    };
    let mut answer = client.create_draft(&request).await?;
    let draft_id = answer["draft_id"]
        .as_u64()
        .ok_or_else(|| ClientError::Decode(format!("the draft reply has no draft_id: {answer}")))?;
    let mut appends = 0usize;
    for (index, changes) in chunks.enumerate() {
        let request = DraftAppendRequest {
            request_id: format!("{request_id}.{}", index + 1),
            changes,
        };
        answer = match client.append_to_draft(draft_id, &request).await {
            Ok(answer) => answer,
            Err(error) => {
                eprintln!(
                    "draft {draft_id} was created but is incomplete: repeat the command with --request-id {request_id} to finish it"
                );
                return Err(error);
            }
        };
        appends += 1;
    }
    let text = format!(
        "draft {draft_id}: {} changes ({}lsn {}, request_id {request_id})\n",
        field(&answer, "changes_total"),
        if appends > 0 {
            format!("{} requests, ", appends + 1)
        } else {
            String::new()
        },
        field(&answer, "lsn")
    );
    Ok((answer, text))
}

async fn diff(
    client: &Client,
    draft_id: u64,
    max_changes: usize,
) -> Result<(Value, String), ClientError> {
    let mut after: Option<(String, String)> = None;
    let mut changes: Vec<Value> = Vec::new();
    let mut answer;
    loop {
        let limit = DIFF_PAGE.min(max_changes - changes.len()).max(1);
        let after_ref = after.as_ref().map(|(d, k)| (d.as_str(), k.as_str()));
        answer = client.draft_diff(draft_id, after_ref, Some(limit)).await?;
        if let Some(page) = answer["changes"].as_array() {
            let room = max_changes - changes.len();
            changes.extend(page.iter().take(room).cloned());
        }
        after = match &answer["next_after"] {
            Value::Object(next) => Some((
                next.get("dataset")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                next.get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )),
            _ => None,
        };
        if after.is_none() || changes.len() >= max_changes {
            break;
        }
    }
    answer["changes"] = Value::Array(changes);
    let shown = answer["changes"].as_array().map_or(0, Vec::len);
    let total = answer["changes_total"].as_u64().unwrap_or(0);
    let mut text = format!("draft {draft_id}: {total} changes\n");
    let rows: Vec<Vec<String>> = answer["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|change| {
            vec![
                cell(&change["dataset"]),
                cell(&change["key"]),
                compact(&change["before"]),
                compact(&change["after"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push_str(&table(&["DATASET", "KEY", "BEFORE", "AFTER"], &rows));
    }
    if (shown as u64) < total {
        text.push_str(&format!(
            "... {} more (--max-changes)\n",
            total - shown as u64
        ));
    }
    let violations = answer["violations"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let violations_total = answer["violations_total"]
        .as_u64()
        .unwrap_or(violations.len() as u64);
    if violations_total == 0 {
        text.push_str("guardrails: ok\n");
    } else {
        text.push_str(&format!("guardrails: {violations_total} violations\n"));
        for violation in violations {
            text.push_str(&format!("  {}\n", violation_line(violation)));
        }
    }
    Ok((answer, text))
}

fn violation_line(violation: &Value) -> String {
    match violation {
        Value::Object(object) => object
            .iter()
            .map(|(name, value)| format!("{name}={}", cell(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => cell(other),
    }
}

fn release_line(answer: &Value, request_id: &str) -> String {
    format!(
        "release {}: {} (lsn {}, request_id {request_id})\n",
        field(answer, "release_id"),
        field(answer, "state"),
        field(answer, "lsn")
    )
}

fn history_table(answer: &Value) -> String {
    let releases = answer["releases"].as_array().map_or(&[][..], Vec::as_slice);
    if releases.is_empty() {
        return "no releases\n".to_string();
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|release| {
            let datasets = release["datasets"]
                .as_array()
                .map(|d| d.iter().map(cell).collect::<Vec<_>>().join(","))
                .unwrap_or_else(|| "-".into());
            let created = release["created_at_ms"]
                .as_u64()
                .map_or_else(|| "-".into(), time);
            let mut note = cell(&release["note"]);
            if let Some(reason) = release["force_reason"].as_str() {
                note = format!("{note} [forced: {reason}]");
            }
            vec![
                cell(&release["release_id"]),
                cell(&release["state"]),
                cell(&release["kind"]),
                cell(&release["draft_id"]),
                datasets,
                cell(&release["changes_total"]),
                cell(&release["author"]),
                created,
                note,
            ]
        })
        .collect();
    table(
        &[
            "RELEASE", "STATE", "KIND", "DRAFT", "DATASETS", "CHANGES", "AUTHOR", "CREATED", "NOTE",
        ],
        &rows,
    )
}

/// A field of an answer as text (`-` when absent).
fn field(answer: &Value, name: &str) -> String {
    cell(&answer[name])
}

/// A value as a table cell: strings bare, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A JSON value compactly, `(absent)` for null (a key that does not exist).
fn compact(value: &Value) -> String {
    if value.is_null() {
        "(absent)".to_string()
    } else {
        value.to_string()
    }
}

/// A time as RFC 3339 (UTC, milliseconds).
fn time(at_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// Columns padded to their widest cell, two spaces apart, left-aligned.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&headers).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_set_splits_at_the_first_slash_and_equals() {
        let change = parse_set("prices/a/b={\"amount\":5}").expect("parses");
        assert_eq!(change.dataset, "prices");
        assert_eq!(change.key, "a/b");
        assert_eq!(change.value, json!({"amount": 5}));
        let delete = parse_set("prices/k=null").expect("parses");
        assert!(delete.value.is_null());
    }

    #[test]
    fn malformed_sets_are_refused() {
        for text in [
            "prices",
            "prices/k",
            "/k=1",
            "prices/=1",
            "prices/k=not json",
        ] {
            assert!(parse_set(text).is_err(), "{text}");
        }
    }

    #[test]
    fn percents_keep_their_decimals() {
        assert_eq!(parse_percent("12.5").expect("parses").to_string(), "12.5");
        assert!(parse_percent("ten").is_err());
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let change = |i: usize, size: usize| DraftChange {
            dataset: "d".into(),
            key: format!("k{i}"),
            value: Value::String("x".repeat(size)),
        };
        assert_eq!(chunks(Vec::new()), vec![Vec::<DraftChange>::new()]);
        let many: Vec<DraftChange> = (0..CHUNK_CHANGES_MAX * 2 + 1)
            .map(|i| change(i, 1))
            .collect();
        let split = chunks(many);
        assert_eq!(
            split.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![CHUNK_CHANGES_MAX, CHUNK_CHANGES_MAX, 1]
        );
        let big: Vec<DraftChange> = (0..40).map(|i| change(i, 60 * 1024)).collect();
        let split = chunks(big);
        assert!(split.len() > 1);
        for chunk in &split {
            let bytes: usize = chunk
                .iter()
                .map(|c| serde_json::to_vec(c).expect("encodes").len() + 1)
                .sum();
            assert!(bytes <= CHUNK_BYTES_MAX, "{bytes}");
        }
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), 40);
    }
}
