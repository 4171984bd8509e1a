//! `toolcell review`: access review of each tool — owner, purpose, review
//! date, last use, and entitlements granted but not exercised — from the
//! manifests and the audit trail; optionally the narrowed manifests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use toolcell_runtime::Manifest;
use toolcell_runtime::reports::{ToolReview, read_trail, read_trail_partially, review, suggest};

use crate::baseline::since_unix;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
For each tool: owner, purpose, review_by (OVERDUE once past), calls and last use in the
window, and what it is granted but did not use there: egress rules never matched,
methods never used, credentials never minted, scopes never requested, sockets never
connected. Which directories a call opens, and which variables it reads, are not
recorded, so they are listed as not judged.

--write-suggestions writes, per tool, the manifest narrowed to what was used, with
comments saying what was dropped and why; paths in it are absolute, so it runs from
wherever it is written. Review the suggestion before adopting it: a rarely used
entitlement may still be needed.

An audit line that cannot be read (a damaged or hand-edited file, an event this
version does not know) stops the review; --partial reports without such lines and
says so.

Examples:
  toolcell review --policies policies --audit ~/.local/state/toolcell/audit.jsonl --since 30d
  toolcell review --policies policies --audit audit.jsonl --write-suggestions suggested/")]
pub struct ReviewArgs {
    /// Manifests to review (default: every manifest in --policies, or in the config's [policy] dir).
    manifests: Vec<PathBuf>,
    /// A directory of manifests.
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Audit files (repeatable; default: the configured audit log).
    #[arg(long = "audit", value_name = "FILE")]
    audits: Vec<PathBuf>,
    /// Only use this recent (`30d`, `12h`) or at or after this RFC 3339 time counts (default: the whole trail).
    #[arg(long, value_name = "AGE|TIME")]
    since: Option<String>,
    /// `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// Write each tool's narrowed manifest into DIR.
    #[arg(long, value_name = "DIR")]
    write_suggestions: Option<PathBuf>,
    /// Skip audit lines that cannot be read, and say so, instead of stopping.
    #[arg(long)]
    partial: bool,
}

pub fn run(args: ReviewArgs, config: Option<&Path>, audit_log: Option<&Path>) -> Result<ExitCode> {
    let config = crate::run::runtime_config(config, audit_log)?;
    let files = if !args.manifests.is_empty() {
        args.manifests.clone()
    } else {
        let dir = args
            .policies
            .clone()
            .or(config.policy_dir.clone())
            .context("name manifests, or a directory of them with --policies DIR")?;
        let (files, problems) = crate::serve::catalog::Sources { dir: Some(dir), files: Vec::new() }.manifests();
        if let Some(problem) = problems.first() {
            bail!("{problem}");
        }
        files
    };
    let mut manifests = Vec::new();
    for file in &files {
        manifests.push((Manifest::load(file)?, file.clone()));
    }
    if manifests.is_empty() {
        bail!("no manifests found");
    }
    let audits = if args.audits.is_empty() {
        vec![config.audit_log.clone().context("no audit log is configured: name the audit files with --audit")?]
    } else {
        args.audits.clone()
    };
    let trail = if args.partial { read_trail_partially(&audits)? } else { read_trail(&audits)? };
    let since = args.since.as_deref().map(since_unix).transpose()?;
    let window = match &args.since {
        Some(since) => format!("the window since {since}"),
        None => "the whole audit trail".to_owned(),
    };
    let only: Vec<Manifest> = manifests.iter().map(|(m, _)| m.clone()).collect();
    let reviews = review(&only, &trail, since.map(|s| s * 1000), time::OffsetDateTime::now_utc().date());
    if args.format == "json" {
        let report = serde_json::json!({
            "window": window,
            "audit": audits,
            "partial": !trail.skipped.is_empty(),
            "skipped": trail.skipped,
            "tools": reviews,
        });
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if !trail.skipped.is_empty() {
            outln!(
                "PARTIAL: {} audit line(s) could not be read and were left out; first: {}",
                trail.skipped.len(),
                trail.skipped[0]
            );
        }
        outln!("access review over {window} ({} events)\n", trail.records.len());
        for tool in &reviews {
            print_review(tool);
        }
    }
    if let Some(dir) = &args.write_suggestions {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
        for ((manifest, file), tool) in manifests.iter().zip(&reviews) {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading `{}`", file.display()))?;
            let suggested =
                suggest(manifest, &text, tool, &window).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let out = dir.join(format!("{}.toml", manifest.name));
            // A suggestion that does not load would be worse than none.
            Manifest::parse(&suggested, &out)
                .with_context(|| format!("the suggestion for `{}` does not load", manifest.name))?;
            std::fs::write(&out, suggested).with_context(|| format!("writing `{}`", out.display()))?;
            if args.format != "json" {
                outln!("wrote {}", out.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_review(tool: &ToolReview) {
    let review_by = match (&tool.review_by, tool.overdue) {
        (Some(date), true) => format!("review by {date} — OVERDUE"),
        (Some(date), false) => format!("review by {date}"),
        (None, _) => "no review date".to_owned(),
    };
    outln!("{}  owner {}  {review_by}", tool.tool, tool.owner);
    outln!("  purpose   {}", tool.purpose);
    match &tool.last_used {
        Some(last) => outln!("  used      {} call(s), last at {last}", tool.calls),
        None => outln!("  used      never in the window"),
    }
    if tool.unused.is_empty() {
        outln!("  unused    nothing: every recorded entitlement was exercised");
    }
    for (index, unused) in tool.unused.iter().enumerate() {
        let label = if index == 0 { "unused   " } else { "         " };
        let what = match unused.kind {
            "egress_rule" => format!("egress rule {} (never matched)", unused.item),
            "method" => format!("method {} (never used)", unused.item),
            "credential" => format!("credential {} (never minted)", unused.item),
            "scope" => format!("scope {} (never requested)", unused.item),
            "socket" => format!("socket {} (never connected)", unused.item),
            _ => unused.item.clone(),
        };
        outln!("  {label} {what}");
    }
    for line in &tool.not_recorded {
        outln!("  not judged {line}");
    }
    outln!("");
}
