//! `toolcell audit`: check that the audit trail is what the runtime wrote
//! (`verify`), read it as a timeline (`show`), and print the public key its
//! checkpoints are signed with (`key`).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use toolcell_runtime::{SealKey, SealPublicKey, Verification};

use crate::baseline::since_unix;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain, the checkpoint signatures and the links between rotated files.
    #[command(after_help = "\
Each line of the audit file carries its sequence number and the SHA-256 of the line
before it; checkpoints, signed with the runtime's audit key, vouch for every line
before them. verify reports the first break and what it means: a line edited,
deleted, inserted or moved, a file cut short, a checkpoint that does not check.
Rotated files (audit.jsonl.000000001234) are checked as one chain with the live one.

With no FILE, the configured audit log and its rotated files are checked. With no
--key, the configured signing key's public half is used.

Exit codes: 0 the chain is intact; 1 a break was found; 125 the files or key could not be read.

Examples:
  toolcell audit verify
  toolcell audit verify --key audit.pub /var/log/toolcell/audit.jsonl*")]
    Verify {
        /// Audit files (any order).
        files: Vec<PathBuf>,
        /// The public key (`toolcell audit key` prints it), or the signing key file.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the audit trail as a timeline, one aligned line per event.
    #[command(after_help = "\
Filters combine (all must match). --task matches a task id or its first characters;
--event takes one or more event names, comma-separated (task_opened, egress, policy,
approval, credential_minted, credential_revoked, kill, task_closed, checkpoint, ...).

Examples:
  toolcell audit show --since 1h
  toolcell audit show --tool github-issues --event egress,credential_minted,credential_revoked
  toolcell audit show --task 3f2a --json")]
    Show {
        /// Audit files, read in the order given (default: the configured audit log).
        files: Vec<PathBuf>,
        /// Only this task (an id or its first characters).
        #[arg(long, value_name = "ID")]
        task: Option<String>,
        /// Only this tool.
        #[arg(long, value_name = "NAME")]
        tool: Option<String>,
        /// Only this principal.
        #[arg(long, value_name = "NAME")]
        principal: Option<String>,
        /// Only these events (comma-separated).
        #[arg(long, value_name = "EVENT[,EVENT]")]
        event: Option<String>,
        /// Only events this recent (`7d`, `12h`, `30m`) or at or after this RFC 3339 time.
        #[arg(long, value_name = "AGE|TIME")]
        since: Option<String>,
        /// Print the matching lines as they are (JSON lines).
        #[arg(long)]
        json: bool,
    },
    /// Print the public key audit checkpoints are signed with (made if there is none yet).
    Key,
}

pub fn run(command: AuditCommand, config: Option<&Path>, audit_log: Option<&Path>) -> Result<ExitCode> {
    let config = crate::run::runtime_config(config, audit_log)?;
    match command {
        AuditCommand::Verify { files, key, json } => verify(files, key, json, &config),
        AuditCommand::Show { files, task, tool, principal, event, since, json } => {
            let filter = Filter {
                task,
                tool,
                principal,
                events: event.map(|e| e.split(',').map(|e| e.trim().to_owned()).collect()),
                since: since.as_deref().map(since_unix).transpose()?,
            };
            let files = if files.is_empty() { configured_files(&config)? } else { files };
            show(&files, &filter, json)
        }
        AuditCommand::Key => {
            let path = signing_key_path(&config)?;
            let key = SealKey::open_or_create(path)?;
            outln!("{}", key.public());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn signing_key_path(config: &toolcell_runtime::RuntimeConfig) -> Result<&Path> {
    config
        .audit
        .signing_key
        .as_deref()
        .context("no audit signing key is configured: set [audit] signing_key in the runtime config")
}

/// The configured audit log and the files rotated from it, oldest first.
fn configured_files(config: &toolcell_runtime::RuntimeConfig) -> Result<Vec<PathBuf>> {
    let path = config.audit_log.as_deref().context("no audit log is configured: name the audit files")?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut rotated: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                let file = entry.file_name().to_string_lossy().into_owned();
                file.strip_prefix(&format!("{name}.")).is_some_and(|seq| seq.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|entry| entry.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    rotated.sort();
    if !path.exists() && rotated.is_empty() {
        bail!("the audit log `{}` does not exist yet: nothing has been recorded", path.display());
    }
    if path.exists() {
        rotated.push(path.to_owned());
    }
    Ok(rotated)
}

fn verify(
    files: Vec<PathBuf>,
    key: Option<PathBuf>,
    json: bool,
    config: &toolcell_runtime::RuntimeConfig,
) -> Result<ExitCode> {
    let files = if files.is_empty() { configured_files(config)? } else { files };
    let key = match key {
        Some(path) => SealPublicKey::read(&path)?,
        None => {
            let path = signing_key_path(config)?;
            if !path.exists() {
                bail!(
                    "the audit signing key `{}` does not exist: give the key the files were signed with (--key)",
                    path.display()
                );
            }
            SealPublicKey::read(path)?
        }
    };
    let result = toolcell_runtime::verify_audit(&files, Some(&key))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_verification(&result);
    }
    Ok(if result.first_break.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_verification(result: &Verification) {
    for file in &result.files {
        let seqs = file.seqs.map_or("no events".to_owned(), |(a, b)| format!("seq {a}–{b}"));
        let times = file.times.as_ref().map_or(String::new(), |(a, b)| format!(", {a} to {b}"));
        outln!("{}: {} lines, {seqs}, {} checkpoints{times}", file.file.display(), file.lines, file.checkpoints);
    }
    for note in &result.notes {
        outln!("note: {note}");
    }
    match &result.first_break {
        Some(broken) => outln!(
            "BROKEN ({}): {broken}",
            serde_json::to_value(broken.kind).unwrap_or_default().as_str().unwrap_or_default()
        ),
        None => outln!("intact: every link holds and every checkpoint is signed by the key given"),
    }
}

/// Which events `show` prints.
struct Filter {
    task: Option<String>,
    tool: Option<String>,
    principal: Option<String>,
    events: Option<Vec<String>>,
    since: Option<i64>,
}

impl Filter {
    fn admits(&self, event: &Value) -> bool {
        let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
        self.task.as_deref().is_none_or(|task| !task.is_empty() && field("task").starts_with(task))
            && self.tool.as_deref().is_none_or(|tool| field("tool") == tool)
            && self.principal.as_deref().is_none_or(|principal| field("principal") == principal)
            && self.events.as_ref().is_none_or(|events| events.iter().any(|e| e == field("event")))
            && self.since.is_none_or(|since| {
                time::OffsetDateTime::parse(field("time"), &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|at| at.unix_timestamp() >= since)
            })
    }
}

fn show(files: &[PathBuf], filter: &Filter, json: bool) -> Result<ExitCode> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut shown = 0usize;
    for path in files {
        let file = std::fs::File::open(path).with_context(|| format!("reading `{}`", path.display()))?;
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading `{}`", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let event: Value = serde_json::from_str(&line).with_context(|| {
                format!(
                    "{}:{}: not a JSON event (the file is damaged; `toolcell audit verify` says how)",
                    path.display(),
                    index + 1
                )
            })?;
            if !filter.admits(&event) {
                continue;
            }
            shown += 1;
            if json {
                outln!("{line}");
            } else {
                outln!("{}", timeline_line(&event, colour));
            }
        }
    }
    if shown == 0 {
        eprintln!("toolcell: no events match");
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as one aligned line: time, task, principal, tool, event, what happened.
fn timeline_line(event: &Value, colour: bool) -> String {
    let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let time = text("time");
    // `2026-12-01T11:05:02.123456789Z` -> `2026-12-01 11:05:02.123`
    let time = match time.split_once('T') {
        Some((date, clock)) => {
            let clock = clock.trim_end_matches('Z');
            let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
            format!("{date} {whole}.{:0<3}", &fraction[..fraction.len().min(3)])
        }
        None => time,
    };
    let name = text("event");
    let task: String = text("task").chars().take(8).collect();
    let (what, tone) = describe(&name, event);
    let (start, end) = match (colour, tone) {
        (false, _) | (true, Tone::Plain) => ("", ""),
        (true, Tone::Good) => ("\x1b[32m", "\x1b[0m"),
        (true, Tone::Bad) => ("\x1b[31m", "\x1b[0m"),
        (true, Tone::Ask) => ("\x1b[33m", "\x1b[0m"),
        (true, Tone::Quiet) => ("\x1b[2m", "\x1b[0m"),
    };
    format!(
        "{time:<23}  {task:<8}  {:<12} {:<16} {start}{name:<19} {what}{end}",
        clip(&text("principal"), 12),
        clip(&text("tool"), 16)
    )
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        text.chars().take(width - 1).collect::<String>() + "…"
    }
}

enum Tone {
    Plain,
    Good,
    Bad,
    Ask,
    Quiet,
}

/// What an event says, in a few words, and how it reads (for colour).
fn describe(name: &str, event: &Value) -> (String, Tone) {
    let text = |field: &str| match event.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let short = |field: &str| text(field).chars().take(8).collect::<String>();
    let optional = |label: &str, field: &str| {
        let value = text(field);
        if value.is_empty() { String::new() } else { format!(" {label}{value}") }
    };
    let decided = |decision: &str| match decision {
        "allowed" | "approved" | "ok" => Tone::Good,
        "approval_required" | "requested" => Tone::Ask,
        _ => Tone::Bad,
    };
    match name {
        "task_opened" => (
            format!("workload {} deadline {}ms{}", text("workload"), text("deadline_ms"), optional("actor ", "actor")),
            Tone::Plain,
        ),
        "caller_refused" => {
            (format!("{} token refused ({}): {}", text("transport"), text("reason"), text("detail")), Tone::Bad)
        }
        "task_refused" => (text("reason"), Tone::Bad),
        "invocation_started" => (format!("call {} ({})", short("invocation"), text("shape")), Tone::Plain),
        "invocation_ended" => {
            let outcome = text("outcome");
            let tone = if outcome == "ok" { Tone::Good } else { Tone::Bad };
            let outcome = if outcome == "exit" { format!("exit {}", text("exit_code")) } else { outcome };
            (
                format!(
                    "call {} {outcome} in {}ms{}{}",
                    short("invocation"),
                    text("duration_ms"),
                    optional("sockets ", "sockets"),
                    optional("— ", "reason")
                ),
                tone,
            )
        }
        "limit_hit" => (format!("call {} {} limit {}", short("invocation"), text("limit"), text("value")), Tone::Bad),
        "egress" => {
            let decision = text("decision");
            (
                format!(
                    "{decision} {} {}{}{}{} ({} B out, {} B in){}",
                    text("method"),
                    text("host"),
                    text("path"),
                    optional("→ ", "status"),
                    optional("rule ", "rule"),
                    text("bytes_sent"),
                    text("bytes_received"),
                    optional("— ", "reason")
                ),
                decided(&decision),
            )
        }
        "socket" => {
            (format!("{} {} {} — {}", text("decision"), text("operation"), text("address"), text("reason")), Tone::Bad)
        }
        "policy" => {
            let decision = text("decision");
            let policies = event
                .get("policies")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            (
                format!(
                    "{decision} {} {} by [{policies}]{}",
                    text("action"),
                    text("resource"),
                    optional("— ", "reason")
                ),
                decided(&decision),
            )
        }
        "approval" => {
            let decision = text("decision");
            (
                format!(
                    "{decision} {} {} ({}){}{}{}",
                    text("action"),
                    text("resource"),
                    short("id"),
                    optional("by ", "approver"),
                    optional("via ", "channel"),
                    optional("— ", "reason")
                ),
                decided(&decision),
            )
        }
        "credential_minted" => (
            format!(
                "{} from {} for {} scopes {} id {} ({})",
                text("credential"),
                text("provider"),
                text("audience"),
                text("scopes"),
                short("id"),
                text("exposure")
            ),
            Tone::Plain,
        ),
        "credential_refused" => {
            (format!("{} {} — {}", text("credential"), text("decision"), text("reason")), Tone::Bad)
        }
        "credential_revealed" => (format!("{} id {} read by the tool", text("credential"), short("id")), Tone::Ask),
        "credential_injected" => (
            format!("{} id {} into {} for {}", text("credential"), short("id"), text("header"), text("host")),
            Tone::Plain,
        ),
        "credential_revoked" => {
            let outcome = text("outcome");
            let tone = if matches!(outcome.as_str(), "retrying" | "gave_up") { Tone::Bad } else { Tone::Good };
            (format!("{} id {} {outcome}{}", text("credential"), short("id"), optional("— ", "reason")), tone)
        }
        "anomaly" => (
            format!(
                "{} of {}: {} (baseline {}) → {}",
                text("metric"),
                text("subject"),
                text("observed"),
                text("baseline"),
                text("action")
            ),
            Tone::Bad,
        ),
        "kill" => (
            format!(
                "{} {} by {}{}{}",
                text("decision"),
                text("target"),
                text("by"),
                optional("— ", "reason"),
                optional("contained in ms: ", "contained_ms")
            ),
            Tone::Bad,
        ),
        "task_closed" => (
            format!(
                "{} after {}ms, {} calls, {} failed",
                text("how"),
                text("duration_ms"),
                text("invocations"),
                text("failures")
            ),
            Tone::Plain,
        ),
        "checkpoint" => (
            format!("seq {} signed by {}…", text("seq"), text("key").chars().take(20).collect::<String>()),
            Tone::Quiet,
        ),
        "audit_rotated" => (format!("continues {}", text("previous")), Tone::Quiet),
        "audit_resumed" => (text("reason"), Tone::Bad),
        _ => {
            // An event this version does not know: every field but the common ones.
            let common = ["seq", "prev", "time", "task", "tool", "principal", "actor", "request", "event"];
            let rest = event
                .as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|(k, _)| !common.contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            (rest, Tone::Plain)
        }
    }
}
