//! Typed errors at the library boundary. Each names the limit, rule, file or
//! field that refused, so a caller can act on it without parsing text.

use std::fmt;
use std::path::PathBuf;

use crate::audit::AuditError;
use crate::grant::WideningError;

/// A component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    // The cause is part of the message, and not also a `source`, so a
    // printed chain names it once.
    #[error("cannot read component `{path}`: {cause}")]
    Read {
        /// The component file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file's sha256 is not the one the manifest pins.
    #[error("component `{path}` has sha256 {actual}, but the manifest pins {expected}; refusing to load it")]
    HashMismatch {
        /// The component file.
        path: PathBuf,
        /// The pinned digest, hex.
        expected: String,
        /// The file's digest, hex.
        actual: String,
    },
    /// The file is not WebAssembly at all.
    #[error("`{path}` is not a WebAssembly file (it does not start with the `\\0asm` magic)")]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// The file is a core module, not a component.
    #[error(
        "`{path}` is a core WebAssembly module, not a component; build it for wasm32-wasip2 \
         or wrap it with `wasm-tools component new`"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// The engine refused the component (corrupt, or uses features it lacks).
    #[error("component `{path}` is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The engine's reason.
        reason: String,
    },
    /// The component exports neither the toolcell `tool` world nor `wasi:cli/run`.
    #[error(
        "component `{path}` is neither a toolcell tool (exports `describe` and `invoke`) \
         nor a WASI command (exports `wasi:cli/run`); it exports: {exports}"
    )]
    UnsupportedShape {
        /// The file.
        path: PathBuf,
        /// Its export names, comma separated.
        exports: String,
    },
    /// The manifest's memory limit is above what this runtime allows any tool.
    #[error("limits.memory {limit} of tool `{tool}` is above the runtime's max_memory {ceiling}")]
    MemoryAboveCeiling {
        /// The tool.
        tool: String,
        /// The manifest's limit.
        limit: String,
        /// The runtime's `max_memory`.
        ceiling: String,
    },
    /// The manifest asks for something only the operator may grant.
    #[error("manifest of tool `{tool}`, {field}: {reason}")]
    Boundary {
        /// The tool.
        tool: String,
        /// The manifest field, dotted.
        field: String,
        /// What it would cross, naming both sides.
        reason: String,
    },
    /// The component imports something toolcell does not provide.
    #[error("component `{path}` cannot be linked: {reason}")]
    Imports {
        /// The file.
        path: PathBuf,
        /// The linker's reason (names the import).
        reason: String,
    },
}

pub use crate::meter::{LimitHit, LimitKind};

/// An invocation did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// A limit was hit; the guest was stopped.
    #[error("{0}")]
    Limit(LimitHit),
    /// The guest crashed (a panic, an unreachable instruction, a bad memory access).
    #[error("tool crashed: {reason}")]
    Trap {
        /// One line: what trapped.
        reason: String,
        /// The full error chain with the wasm backtrace, for verbose output.
        detail: String,
    },
    /// The call does not fit the component (tool input for a command, or the reverse).
    #[error("{0}")]
    WrongShape(String),
    /// A request-time policy (or an approver) refused the call; nothing ran.
    #[error("call refused: {reason}")]
    Denied {
        /// Names the policy and says why (its `@reason`), or the approval.
        reason: String,
        /// The ids of the policies that determined it.
        policies: Vec<String>,
    },
    /// The task's deadline has passed; no invocation starts.
    #[error("task deadline has passed; open a new task")]
    TaskExpired,
    /// A kill stopped the call mid-flight (`running`), or refused it: its
    /// task, tool or principal is killed.
    #[error("call {}: {kill}", if *running { "stopped" } else { "refused" })]
    Killed {
        /// The kill.
        kill: Box<crate::oversight::Kill>,
        /// The call was running when the kill came.
        running: bool,
    },
    /// A rate limit refused the call; nothing ran.
    #[error("call refused: {0}")]
    RateLimited(crate::oversight::RateLimited),
    /// The runtime failed (not the guest's doing): what it was doing, and
    /// the error underneath, kept whole for callers that look into it.
    #[error("host error: {what}{}", chain(cause.as_deref()))]
    Host {
        /// What the runtime was doing.
        what: String,
        /// The error underneath, where there is one. It is printed as part
        /// of the message (its whole chain), not offered as a `source`, so a
        /// printed chain names it once.
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The audit trail could not be written, so nothing ran.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl InvokeError {
    /// A host error: `what` the runtime was doing, and the `cause` underneath.
    pub(crate) fn host(
        what: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> InvokeError {
        InvokeError::Host { what: what.into(), cause: Some(cause.into()) }
    }

    /// The short outcome name used in audit events.
    pub fn outcome(&self) -> &'static str {
        match self {
            InvokeError::Limit(_) => "limit",
            InvokeError::Trap { .. } => "trap",
            InvokeError::WrongShape(_) | InvokeError::TaskExpired => "refused",
            InvokeError::Denied { .. } => "denied",
            InvokeError::Killed { .. } => "killed",
            InvokeError::RateLimited(_) => "rate_limited",
            InvokeError::Host { .. } | InvokeError::Audit(_) => "host_error",
        }
    }
}

/// A task could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The narrowing asked for more than the manifest grants.
    #[error(transparent)]
    Widening(#[from] WideningError),
    /// The audit trail could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The principal is empty.
    #[error("a task needs a principal (on whose behalf it acts)")]
    NoPrincipal,
    /// A kill stops the tool or the principal.
    #[error("{0}")]
    Killed(Box<crate::oversight::Kill>),
    /// The tool's access review is overdue and the config refuses such tools.
    #[error(transparent)]
    ReviewOverdue(#[from] crate::reports::ReviewOverdue),
}

impl From<crate::meter::Stop> for InvokeError {
    fn from(stop: crate::meter::Stop) -> InvokeError {
        match stop {
            crate::meter::Stop::Limit(hit) => InvokeError::Limit(hit),
            crate::meter::Stop::Killed(kill) => InvokeError::Killed { kill: Box::new(kill), running: true },
        }
    }
}

/// The runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine configuration was refused.
    #[error("engine configuration refused: {0}")]
    Engine(String),
    /// The audit file could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The TLS roots for egress could not be loaded.
    #[error("TLS roots for egress: {0}")]
    Tls(crate::transport::TlsError),
    /// The issuer's key file could not be read or written.
    #[error(transparent)]
    IssuerKeys(#[from] crate::credentials::issuer::KeyFileError),
    /// The lease journal could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::credentials::journal::JournalError),
    /// The kill file could not be read.
    #[error(transparent)]
    Kills(#[from] crate::oversight::KillError),
    /// The behaviour baseline could not be read.
    #[error(transparent)]
    Baseline(#[from] crate::oversight::BaselineError),
    /// The request-time policies the config names were refused.
    #[error("request-time policies refused:\n{0}")]
    Policies(#[from] crate::request_policy::PolicyErrors),
    /// The precompile cache directory could not be created.
    #[error("cache directory `{path}` cannot be used: {cause}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The scratch root could not be used.
    #[error("scratch root `{path}` cannot be used: {cause}")]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

/// Hex of a digest, for messages.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// `": cause: its source: …"`, or nothing without a cause.
fn chain(cause: Option<&(dyn std::error::Error + Send + Sync)>) -> String {
    let mut text = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = match cause {
        Some(cause) => {
            text.push_str(&format!(": {cause}"));
            cause.source()
        }
        None => None,
    };
    while let Some(error) = next {
        let line = error.to_string();
        // Some errors repeat their source in their own message.
        if !text.ends_with(&line) {
            text.push_str(&format!(": {line}"));
        }
        next = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_error_keeps_its_cause_and_prints_its_chain_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory");
        let error = InvokeError::host("opening the call's scratch dir", io);
        assert_eq!(error.to_string(), "host error: opening the call's scratch dir: no such directory");
        let InvokeError::Host { cause: Some(cause), .. } = &error else { panic!("{error:?}") };
        assert_eq!(cause.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::NotFound);
        assert_eq!(error.outcome(), "host_error");
        // A wasmtime error's whole context chain is in the message, once.
        let wasm = wasmtime::Error::msg("inner failure").context("outer step");
        let text = InvokeError::host("running the call", wasm).to_string();
        assert_eq!(text, "host error: running the call: outer step: inner failure");
    }
}
