//! The audit trail: one structured event per decision, to `tracing` and to a
//! durable JSON-lines file that reviews read.
//!
//! Events carry ids, names, modes and limits — never a variable's value, a
//! file's content or a tool's input and output.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::grant::GrantSummary;

/// One audit event, as written to the JSON-lines file.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 time, UTC.
    pub time: String,
    /// The task it belongs to.
    pub task: String,
    /// The tool the task runs.
    pub tool: String,
    /// On whose behalf the task acts.
    pub principal: String,
    /// The caller's id for the request that opened the task (an MCP request id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: AuditKind,
}

/// What an audit event records.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditKind {
    /// A task was opened with this grant.
    TaskOpened {
        /// The task's workload identity.
        workload: String,
        /// Milliseconds until the task's deadline.
        deadline_ms: u64,
        /// What the grant holds.
        grant: GrantSummary,
    },
    /// A task was refused: its narrowing would have widened the manifest,
    /// or a kill stops its tool or principal.
    TaskRefused {
        /// What it asked for beyond the manifest, or the kill.
        reason: String,
    },
    /// An invocation began in a fresh instance.
    InvocationStarted {
        /// Invocation id.
        invocation: String,
        /// `tool` or `command`.
        shape: &'static str,
    },
    /// An invocation hit a limit; it is ended with that limit's error.
    LimitHit {
        /// Invocation id.
        invocation: String,
        /// Which limit (`memory`, `cpu`, `timeout`, `output`, `input`, `stack`).
        limit: &'static str,
        /// Its value, as written in manifests.
        value: String,
    },
    /// An invocation ended, however it ended; teardown has run.
    InvocationEnded {
        /// Invocation id.
        invocation: String,
        /// `ok`, `tool_error`, `exit`, `trap`, `limit`, `host_error`, `refused`, `denied`,
        /// `killed`, `rate_limited` or `cancelled`.
        outcome: &'static str,
        /// Exit code of a command component.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Short reason for anything but `ok`.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Wall-clock milliseconds.
        duration_ms: u64,
    },
    /// One outbound HTTP request: allowed (with its outcome) or refused.
    Egress {
        /// Invocation id.
        invocation: String,
        /// `allowed` or `denied`.
        decision: &'static str,
        /// The rule that allowed it (its URL pattern).
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// Why it was refused or failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Request method.
        method: String,
        /// Host asked for.
        host: String,
        /// Path asked for (no query: queries can carry data).
        path: String,
        /// Response status, if one came.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Request body bytes sent.
        bytes_sent: u64,
        /// Response body bytes received.
        bytes_received: u64,
        /// Milliseconds from the request to the end of its response.
        duration_ms: u64,
    },
    /// A raw socket operation the grant does not allow (allowed ones are
    /// not recorded one by one: the grant names their exact addresses).
    Socket {
        /// Invocation id.
        invocation: String,
        /// `denied`.
        decision: &'static str,
        /// `tcp_connect`, `tcp_bind`, `tcp_listen`, `tcp_accept`, `udp_send` or `udp_bind`.
        operation: &'static str,
        /// The address asked for.
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// A request-time policy decision on an action the grant allowed
    /// (written only where policies or approvals are in force).
    Policy {
        /// Invocation id.
        invocation: String,
        /// `call`, `http`, `credential` or `socket`.
        action: &'static str,
        /// What it was on (`POST https://host:443/path`, `tool x`, …).
        resource: String,
        /// `allowed`, `denied` or `approval_required`.
        decision: &'static str,
        /// The ids of the policies that determined it (`manifest`: the manifest's permit).
        policies: Vec<String>,
        /// Why it was denied, or why it needs approval.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The approval it was decided with, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        approval: Option<String>,
    },
    /// An approval request: raised, then approved, denied or expired.
    Approval {
        /// Invocation id.
        invocation: String,
        /// The approval request's id.
        id: String,
        /// `call`, `http`, `credential` or `socket`.
        action: &'static str,
        /// Exactly what was asked.
        resource: String,
        /// SHA-256 of the action, as the approver saw it.
        digest: String,
        /// `requested`, `approved`, `denied` or `expired`.
        decision: &'static str,
        /// Who answered (never a credential).
        #[serde(skip_serializing_if = "Option::is_none")]
        approver: Option<String>,
        /// How: `admin` (the admin interface) or `elicitation` (the MCP client).
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Why it is asked (when raised) or the approver's reason.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A credential was minted (or a task's OpenBao child token created).
    /// Ids and names only, never the value.
    CredentialMinted {
        /// Invocation id; absent for a task-level OpenBao child token.
        #[serde(skip_serializing_if = "Option::is_none")]
        invocation: Option<String>,
        /// The credential's name in the manifest.
        credential: String,
        /// `issuer`, `openbao`, `oauth-token-exchange` or `static`.
        provider: &'static str,
        /// Scopes it carries.
        scopes: Vec<String>,
        /// The one audience it is for.
        audience: String,
        /// `jti`, lease id or token accessor.
        id: String,
        /// Expiry, seconds since the epoch.
        expires_at: u64,
        /// `inject` or `reveal`.
        exposure: &'static str,
    },
    /// A credential could not be had: denied by the grant, or its provider failed.
    CredentialRefused {
        /// Invocation id.
        invocation: String,
        /// The name the tool asked for.
        credential: String,
        /// `denied` or `unavailable`.
        decision: &'static str,
        /// Why.
        reason: String,
    },
    /// The tool read a credential's value (`reveal` exposure only).
    CredentialRevealed {
        /// Invocation id.
        invocation: String,
        /// The credential's name.
        credential: String,
        /// Its `jti` or lease id.
        id: String,
    },
    /// The host added a credential to an outgoing request.
    CredentialInjected {
        /// Invocation id.
        invocation: String,
        /// The credential's name.
        credential: String,
        /// Its `jti` or lease id.
        id: String,
        /// The egress rule it is bound to.
        rule: String,
        /// The header it went in.
        header: String,
        /// The request's host.
        host: String,
    },
    /// A credential was revoked (or a revocation failed and will be retried).
    CredentialRevoked {
        /// Invocation id; absent for task-level and recovered credentials.
        #[serde(skip_serializing_if = "Option::is_none")]
        invocation: Option<String>,
        /// The credential's name.
        credential: String,
        /// Its provider.
        provider: &'static str,
        /// `jti`, lease id or token accessor.
        id: String,
        /// `deny_listed`, `revoked`, `released` (a host-held secret dropped),
        /// `expires` (the server cannot revoke it; it dies at its expiry),
        /// `retrying` or `gave_up`.
        outcome: &'static str,
        /// Why a revocation failed, or where a recovered one came from.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Live behaviour departed from the learned baseline (or a principal's
    /// denials stormed); the rule's action followed.
    Anomaly {
        /// The call it happened in.
        #[serde(skip_serializing_if = "Option::is_none")]
        invocation: Option<String>,
        /// `new_host`, `bytes_out`, `call_rate`, `denials` or `deny_storm`.
        metric: String,
        /// Whose baseline: `tool x` or `principal p`.
        subject: String,
        /// What was seen.
        observed: String,
        /// What the baseline allows, in words.
        baseline: String,
        /// `alert`, `deny` or `kill`.
        action: crate::oversight::AnomalyAction,
        /// The quarantine's kill id, for `kill`.
        #[serde(skip_serializing_if = "Option::is_none")]
        kill: Option<String>,
    },
    /// A kill was put in force (with what it stopped) or lifted. Its task,
    /// tool or principal fields name what it targets.
    Kill {
        /// The kill's id.
        id: String,
        /// `kill` or `unkill`.
        decision: &'static str,
        /// What it stops, in words.
        target: String,
        /// Who put it in force, or lifted it.
        by: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When it lapses by itself (RFC 3339).
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<String>,
        /// Tasks closed, calls stopped, and credentials they held (revoked).
        #[serde(skip_serializing_if = "Option::is_none")]
        tasks: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        calls: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        credentials: Option<usize>,
        /// From the kill to the last revocation of what it stopped.
        #[serde(skip_serializing_if = "Option::is_none")]
        contained_ms: Option<f64>,
        /// Why the kill file could not keep it (it is in force until a restart).
        #[serde(skip_serializing_if = "Option::is_none")]
        not_kept: Option<String>,
    },
    /// The task was closed; nothing of it remains.
    TaskClosed {
        /// `closed` when the caller closed it, `dropped` when it went out of
        /// scope, `killed` when a kill closed it.
        how: &'static str,
        /// Milliseconds the task was open.
        duration_ms: u64,
        /// Invocations run.
        invocations: u64,
        /// Invocations that did not end `ok`.
        failures: u64,
    },
}

/// The audit file could not be written. Tasks refuse to start rather than run unaudited.
#[derive(Debug, thiserror::Error)]
#[error("audit log `{path}` cannot be written: {cause}")]
pub struct AuditError {
    /// The audit file.
    pub path: PathBuf,
    /// The I/O error.
    pub cause: std::io::Error,
}

/// Where audit events go: always `tracing`, and a JSON-lines file if configured.
#[derive(Debug)]
pub struct Audit {
    file: Option<(PathBuf, Mutex<File>)>,
}

impl Audit {
    /// Events go to `tracing` only.
    pub fn tracing_only() -> Audit {
        Audit { file: None }
    }

    /// Events also go to `path`, appended one JSON object per line; parent
    /// directories are created.
    pub fn to_file(path: &Path) -> Result<Audit, AuditError> {
        let error = |cause| AuditError { path: path.to_owned(), cause };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(error)?;
        Ok(Audit { file: Some((path.to_owned(), Mutex::new(file))) })
    }

    /// The audit file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Records one event. Each line is written whole, under a lock, to an
    /// append-mode file: writers in this process never interleave inside a
    /// line, and other processes appending to the same file land between
    /// lines, not inside them.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let mut line = serde_json::to_string(&event).expect("audit events always serialize");
        tracing::info!(target: "toolcell::audit", task = %event.task, tool = %event.tool, "{line}");
        let Some((path, file)) = &self.file else { return Ok(()) };
        line.push('\n');
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(line.as_bytes()).map_err(|cause| AuditError { path: path.clone(), cause })
    }

    /// Records an event where there is no caller to return an error to
    /// (teardown): a failure goes to `tracing` at error level.
    pub fn record_or_log(&self, event: AuditEvent) {
        if let Err(error) = self.record(event) {
            tracing::error!(target: "toolcell::audit", "{error}");
        }
    }
}

/// Who an event is about: the audit trail plus the task's names, for code
/// (such as the egress hook) that records events of a running task.
#[derive(Clone, Debug)]
pub(crate) struct AuditScope {
    pub(crate) audit: std::sync::Arc<Audit>,
    pub(crate) task: String,
    pub(crate) tool: String,
    pub(crate) principal: String,
    pub(crate) request: Option<String>,
}

impl AuditScope {
    pub(crate) fn event(&self, kind: AuditKind) -> AuditEvent {
        AuditEvent {
            time: now_rfc3339(),
            task: self.task.clone(),
            tool: self.tool.clone(),
            principal: self.principal.clone(),
            request: self.request.clone(),
            kind,
        }
    }

    pub(crate) fn record_or_log(&self, kind: AuditKind) {
        self.audit.record_or_log(self.event(kind));
    }
}

/// Now, as RFC 3339 UTC.
pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).expect("UTC times always format")
}

/// A time, as RFC 3339 UTC.
pub(crate) fn rfc3339(at: std::time::SystemTime) -> String {
    OffsetDateTime::from(at).format(&Rfc3339).expect("UTC times always format")
}

/// At most `max` bytes of `text` (on a character boundary), marked when cut:
/// what a tool can make the audit trail hold is bounded.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &text[..end], text.len() - end)
}

/// Ids that tag everything an invocation emits.
#[derive(Clone, Debug)]
pub(crate) struct InvocationIds {
    pub(crate) task: String,
    pub(crate) invocation: String,
    pub(crate) tool: String,
}
