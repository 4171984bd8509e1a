//! The audit trail: one structured event per decision, to `tracing` and to a
//! durable, hash-chained JSON-lines file with signed checkpoints
//! ([`chain`]), which `toolcell audit verify` checks ([`verify`]) and
//! reviews read.
//!
//! Events carry ids, names, modes and limits — never a variable's value, a
//! file's content or a tool's input and output.

mod chain;
mod seal;
#[cfg(test)]
mod tests;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

pub use seal::{SealKey, SealKeyError, SealPublicKey};
pub use verify::{BreakKind, ChainBreak, Verification, VerifiedFile, VerifyError, verify};

use crate::units::{ByteSize, TimeSpan};
use chain::{ChainSettings, ChainWriter};

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
    /// Who acts for the principal (the agent, from an OAuth token), nearest
    /// first: `agent` or `agent via orchestrator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
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
        /// The granted socket addresses it connected or sent to (`tcp 127.0.0.1:5432`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sockets: Vec<String>,
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
    /// A tool was loaded past its `review_by` date.
    ReviewOverdue {
        /// Who must review it.
        owner: String,
        /// The date that passed.
        review_by: String,
        /// `warn` or `refuse` (its tasks are refused), as the config says.
        action: &'static str,
    },
    /// A caller's token was refused at the transport (no task was opened):
    /// expired, for another audience, signed by an unknown key... The token
    /// itself is never recorded.
    CallerRefused {
        /// `http`.
        transport: &'static str,
        /// A short, stable name of the reason (`expired`, `audience`, ...).
        reason: &'static str,
        /// The reason in words.
        detail: String,
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

/// How the audit file is chained, sealed and rotated (`[audit]` in the
/// runtime config).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The Ed25519 key checkpoints are signed with (made, mode 0600, where
    /// none exists). Without one, checkpoints are unsigned and `toolcell
    /// audit verify` reports the file as unprotected.
    pub signing_key: Option<PathBuf>,
    /// A checkpoint at least every this many events.
    #[serde(default = "AuditSettings::default_every")]
    pub checkpoint_every: u64,
    /// A checkpoint at least this often while events come.
    #[serde(default = "AuditSettings::default_interval")]
    pub checkpoint_interval: TimeSpan,
    /// Rotate the file once it is this large (at a checkpoint); never by default.
    pub rotate_at: Option<ByteSize>,
}

impl AuditSettings {
    fn default_every() -> u64 {
        1000
    }

    fn default_interval() -> TimeSpan {
        TimeSpan(Duration::from_secs(60))
    }

    /// What is wrong with these settings, if anything, and in which field.
    pub(crate) fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.checkpoint_every == 0 {
            return Some(("checkpoint_every", "must be at least 1"));
        }
        if self.checkpoint_interval.0.is_zero() {
            return Some(("checkpoint_interval", "must be longer than 0s"));
        }
        if self.rotate_at.is_some_and(|at| at.0 < 4096) {
            return Some(("rotate_at", "must be at least 4KiB"));
        }
        None
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            signing_key: None,
            checkpoint_every: AuditSettings::default_every(),
            checkpoint_interval: AuditSettings::default_interval(),
            rotate_at: None,
        }
    }
}

/// Where audit events go: always `tracing`, and a hash-chained JSON-lines
/// file if configured.
#[derive(Debug)]
pub struct Audit {
    chain: Option<Arc<ChainWriter>>,
    /// Dropped with the audit, which ends the checkpoint timer.
    _timer: Option<mpsc::Sender<()>>,
}

impl Audit {
    /// Events go to `tracing` only.
    pub fn tracing_only() -> Audit {
        Audit { chain: None, _timer: None }
    }

    /// Events also go to `path`, appended one JSON object per line and
    /// chained; parent directories are created.
    pub fn to_file(path: &Path, settings: &AuditSettings) -> Result<Audit, AuditError> {
        let error = |cause| AuditError { path: path.to_owned(), cause };
        let key = match &settings.signing_key {
            Some(key) => {
                Some(SealKey::open_or_create(key).map_err(|e| error(std::io::Error::other(format!("{}", e))))?)
            }
            None => None,
        };
        let chain_settings =
            ChainSettings { every: settings.checkpoint_every, rotate_at: settings.rotate_at.map(|at| at.0) };
        let chain = Arc::new(ChainWriter::open(path, key, chain_settings).map_err(error)?);
        let timer = spawn_checkpoint_timer(&chain, settings.checkpoint_interval.0);
        Ok(Audit { chain: Some(chain), _timer: Some(timer) })
    }

    /// The audit file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.chain.as_ref().map(|chain| chain.path())
    }

    /// Records one event as the chain's next line, under a lock that other
    /// runtimes appending to the same file take too.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let line = serde_json::to_string(&event).expect("audit events always serialize");
        tracing::info!(target: "toolcell::audit", task = %event.task, tool = %event.tool, "{line}");
        let Some(chain) = &self.chain else { return Ok(()) };
        chain.append(&line).map_err(|cause| AuditError { path: chain.path().to_owned(), cause })
    }

    /// Records an event where there is no caller to return an error to
    /// (teardown): a failure goes to `tracing` at error level.
    pub fn record_or_log(&self, event: AuditEvent) {
        if let Err(error) = self.record(event) {
            tracing::error!(target: "toolcell::audit", "{error}");
        }
    }

    /// Writes a signed checkpoint over everything recorded so far and syncs
    /// the file to disk. Done at every task close.
    pub fn seal(&self) -> Result<(), AuditError> {
        let Some(chain) = &self.chain else { return Ok(()) };
        chain.seal().map_err(|cause| AuditError { path: chain.path().to_owned(), cause })
    }

    /// True when events go to a file, so sealing writes and syncs.
    pub(crate) fn writes_a_file(&self) -> bool {
        self.chain.is_some()
    }

    /// [`Audit::seal`], where a failure can only be logged.
    pub(crate) fn seal_or_log(&self) {
        if let Err(error) = self.seal() {
            tracing::error!(target: "toolcell::audit", "{error}");
        }
    }
}

impl Drop for Audit {
    /// A runtime that stops leaves its file sealed.
    fn drop(&mut self) {
        self.seal_or_log();
    }
}

/// A thread that seals the file when events have waited `interval` without
/// a checkpoint. It holds the writer weakly, and ends when the returned
/// sender is dropped.
fn spawn_checkpoint_timer(chain: &Arc<ChainWriter>, interval: Duration) -> mpsc::Sender<()> {
    let (stop, stopped) = mpsc::channel::<()>();
    let chain = Arc::downgrade(chain);
    let spawned = std::thread::Builder::new().name("toolcell-audit-seal".into()).spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
            let Some(chain) = chain.upgrade() else { return };
            if let Err(error) = chain.seal_if_older(interval) {
                tracing::error!(target: "toolcell::audit", "audit log `{}`: checkpoint: {error}", chain.path().display());
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(target: "toolcell::audit", "no checkpoint timer (checkpoints at task close only): {error}");
    }
    stop
}

/// Who an event is about: the audit trail plus the task's names, for code
/// (such as the egress hook) that records events of a running task.
#[derive(Clone, Debug)]
pub(crate) struct AuditScope {
    pub(crate) audit: std::sync::Arc<Audit>,
    pub(crate) task: String,
    pub(crate) tool: String,
    pub(crate) principal: String,
    pub(crate) actor: Option<String>,
    pub(crate) request: Option<String>,
}

impl AuditScope {
    pub(crate) fn event(&self, kind: AuditKind) -> AuditEvent {
        AuditEvent {
            time: now_rfc3339(),
            task: self.task.clone(),
            tool: self.tool.clone(),
            principal: self.principal.clone(),
            actor: self.actor.clone(),
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
