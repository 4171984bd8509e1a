//! `toolcell baseline learn`: what each tool and principal normally does,
//! from the audit trail, for `toolcell serve` to compare live behaviour with
//! (`[monitor] baseline` in the runtime config).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toolcell_runtime::{Baseline, Behaviour, TimeSpan};

#[derive(clap::Subcommand, Debug)]
pub enum BaselineCommand {
    /// Learn per-tool and per-principal baselines from audit files.
    #[command(after_help = "\
Reads each call in the audit trail (JSON lines, as toolcell writes them): requests,
distinct hosts, bytes out and in, denials and mints per call, calls per minute,
and the hosts and methods used. Each distribution is kept as p50, p90, p99 and
max. Point [monitor] baseline in the runtime config at the file; `toolcell serve`
re-reads it when it changes.

Examples:
  toolcell baseline learn --audit ~/.local/state/toolcell/audit.jsonl --since 7d --out baseline.json
  toolcell baseline learn --audit a.jsonl --audit b.jsonl --since 2026-11-01T00:00:00Z --out baseline.json")]
    Learn {
        /// An audit file (repeatable).
        #[arg(long = "audit", value_name = "FILE", required = true)]
        audits: Vec<PathBuf>,
        /// Only events this recent (`7d`, `12h`, `30m`) or at or after this RFC 3339 time.
        #[arg(long, value_name = "AGE|TIME")]
        since: Option<String>,
        /// Where to write the baseline (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub fn run(command: BaselineCommand) -> Result<ExitCode> {
    let BaselineCommand::Learn { audits, since, out } = command;
    let since = since.as_deref().map(since_unix).transpose()?;
    let baseline = Baseline::learn(&audits, since)?;
    if baseline.tools.is_empty() {
        bail!("no calls found in {} audit file(s){}", audits.len(), if since.is_some() { " since then" } else { "" });
    }
    let text = serde_json::to_string_pretty(&baseline)? + "\n";
    std::fs::write(&out, text).with_context(|| format!("writing `{}`", out.display()))?;
    for (kind, entries) in [("tool", &baseline.tools), ("principal", &baseline.principals)] {
        for (name, behaviour) in entries {
            outln!("{kind} {name}: {}", summary(behaviour));
        }
    }
    outln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn summary(b: &Behaviour) -> String {
    format!(
        "{} calls; per call p99: {} requests, {} hosts, {} B out, {} B in, {} denials, {} mints; p99 {} calls/min; hosts: {}",
        b.calls,
        b.requests_per_call.p99,
        b.hosts_per_call.p99,
        b.bytes_out_per_call.p99,
        b.bytes_in_per_call.p99,
        b.denials_per_call.p99,
        b.mints_per_call.p99,
        b.calls_per_minute.p99,
        if b.hosts.is_empty() { "none".to_owned() } else { b.hosts.iter().cloned().collect::<Vec<_>>().join(", ") }
    )
}

/// `7d`, a span (`12h`), or an RFC 3339 time, as unix seconds.
pub(crate) fn since_unix(text: &str) -> Result<i64> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if let Some(days) = text.strip_suffix('d').and_then(|d| d.parse::<i64>().ok()) {
        return Ok(now - days.saturating_mul(86_400));
    }
    if let Ok(span) = text.parse::<TimeSpan>() {
        return Ok(now - i64::try_from(span.0.as_secs()).unwrap_or(i64::MAX));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .with_context(|| format!("--since `{text}`: give an age (7d, 12h, 30m) or an RFC 3339 time"))
}
