//! The limits of one invocation, their defaults, and the floors below which
//! a component cannot run at all.

use crate::units::{ByteSize, TimeSpan};

/// Resource limits of one invocation. Each has a default (see [`Limits::DEFAULT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory the guest may grow to, over all its memories.
    pub memory: ByteSize,
    /// Time the guest may spend running its own code.
    pub cpu: TimeSpan,
    /// Wall-clock time of the whole call, host waits (sleep, reads) included.
    pub timeout: TimeSpan,
    /// Bytes of input: the JSON input of a tool, or args plus stdin of a command.
    pub max_input: ByteSize,
    /// Bytes of output: stdout plus stderr plus log lines plus the tool's result.
    pub max_output: ByteSize,
    /// Refusals (egress, credential and socket requests the host refused)
    /// after which the call is stopped: a tool probing for a way out ends
    /// quickly, and cannot fill the audit trail.
    pub max_refusals: u32,
    /// Distinct credentials one call may have minted.
    pub max_credentials: u32,
}

impl Limits {
    /// The limits of a manifest that writes none.
    pub const DEFAULT: Limits = Limits {
        memory: ByteSize(128 << 20),
        cpu: TimeSpan(std::time::Duration::from_secs(10)),
        timeout: TimeSpan(std::time::Duration::from_secs(30)),
        max_input: ByteSize(1 << 20),
        max_output: ByteSize(1 << 20),
        max_refusals: 16,
        max_credentials: 8,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Checks limits against the floors below which a component cannot run at all.
pub(crate) fn validate_limits(limits: &Limits) -> Result<(), (&'static str, String)> {
    if limits.memory.0 < 64 << 10 {
        return Err(("memory", format!("{} is below one wasm page (64KiB)", limits.memory)));
    }
    for (name, span) in [("cpu", limits.cpu), ("timeout", limits.timeout)] {
        if span.0.is_zero() {
            return Err((name, "must be more than 0ms".to_owned()));
        }
    }
    Ok(())
}
