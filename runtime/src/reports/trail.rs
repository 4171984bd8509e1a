//! Reading the audit trail for reports: every line must be an event this
//! runtime writes, or the report refuses (naming the file and line) unless
//! the caller accepts a partial reading, which the report then says.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The events this runtime writes (`event` of each line).
pub const KNOWN_EVENTS: [&str; 22] = [
    "task_opened",
    "task_refused",
    "invocation_started",
    "limit_hit",
    "invocation_ended",
    "egress",
    "socket",
    "policy",
    "approval",
    "credential_minted",
    "credential_refused",
    "credential_revealed",
    "credential_injected",
    "credential_revoked",
    "anomaly",
    "kill",
    "task_closed",
    "review_overdue",
    "caller_refused",
    "checkpoint",
    "audit_rotated",
    "audit_resumed",
];

/// One event as read.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub event: serde_json::Value,
    /// Its time, in milliseconds since the epoch.
    pub at_ms: i64,
    pub file: PathBuf,
    pub line: usize,
}

/// The events of some audit files.
#[derive(Clone, Debug, Default)]
pub struct Trail {
    pub records: Vec<AuditRecord>,
    /// Lines skipped as unreadable (only when reading partially), each as
    /// `file:line: why`.
    pub skipped: Vec<String>,
}

/// An audit file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("audit file `{path}` cannot be read: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "{path}:{line}: {reason} — the file is damaged or was edited (`toolcell audit verify` says how); \
         pass --partial to report without such lines"
    )]
    Line { path: PathBuf, line: usize, reason: String },
}

/// Reads every line of `files`; any line that is not a known event is an error.
pub fn read_trail(files: &[impl AsRef<Path>]) -> Result<Trail, TrailError> {
    read(files, false)
}

/// Like [`read_trail`], but unreadable lines are skipped and listed.
pub fn read_trail_partially(files: &[impl AsRef<Path>]) -> Result<Trail, TrailError> {
    read(files, true)
}

fn read(files: &[impl AsRef<Path>], partial: bool) -> Result<Trail, TrailError> {
    let mut trail = Trail::default();
    for path in files {
        let path = path.as_ref();
        let io = |cause| TrailError::Io { path: path.to_owned(), cause };
        let bytes = std::fs::read(path).map_err(io)?;
        let torn = !bytes.is_empty() && !bytes.ends_with(b"\n");
        let lines: Vec<_> = bytes.lines().collect::<Result<_, _>>().map_err(io)?;
        let count = lines.len();
        for (index, line) in lines.into_iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let number = index + 1;
            let parsed = if torn && number == count {
                Err("the file ends inside this line (cut short)".to_owned())
            } else {
                parse(&line)
            };
            match parsed {
                Ok((event, at_ms)) => {
                    trail.records.push(AuditRecord { event, at_ms, file: path.to_owned(), line: number });
                }
                Err(reason) if partial => trail.skipped.push(format!("{}:{number}: {reason}", path.display())),
                Err(reason) => return Err(TrailError::Line { path: path.to_owned(), line: number, reason }),
            }
        }
    }
    trail.records.sort_by_key(|record| record.at_ms);
    Ok(trail)
}

fn parse(line: &str) -> Result<(serde_json::Value, i64), String> {
    let event: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let name = event.get("event").and_then(|v| v.as_str()).ok_or("no `event`")?;
    if !KNOWN_EVENTS.contains(&name) {
        return Err(format!("unknown event `{name}` (written by a newer toolcell?)"));
    }
    let time = event.get("time").and_then(|v| v.as_str()).ok_or("no `time`")?;
    let at = OffsetDateTime::parse(time, &Rfc3339).map_err(|e| format!("`time` is not RFC 3339: {e}"))?;
    let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| "`time` out of range")?;
    Ok((event, at_ms))
}
