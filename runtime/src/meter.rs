//! What one call has used of its budgets: the first limit it hit, its
//! output, and its refusals. Shared by the store, the capabilities and the
//! broker of one invocation, and by the code that runs the call.

use std::sync::Mutex;

use crate::units::ByteSize;

/// Limits recorded during a call, the shared output budget and the
/// refusal count. Recording a limit also stops the call: code that runs the
/// call waits on [`Meter::stopped`] beside the call itself, so a limit that
/// host code records (a tool looping on refusals) ends the call at once. A
/// kill stops it the same way.
#[derive(Debug)]
pub(crate) struct Meter {
    stop: Mutex<Option<Stop>>,
    output_limit: ByteSize,
    output_used: Mutex<u64>,
    refusal_limit: u32,
    refusals: std::sync::atomic::AtomicU32,
    stopping: tokio::sync::Notify,
}

/// Why a call was stopped from outside the guest.
#[derive(Clone, Debug)]
pub(crate) enum Stop {
    /// A limit was hit.
    Limit(LimitHit),
    /// The operator's kill switch (or an anomaly rule) ended it.
    Killed(crate::oversight::Kill),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Limit(hit) => hit.fmt(f),
            Stop::Killed(kill) => kill.fmt(f),
        }
    }
}

impl Meter {
    pub(crate) fn new(limits: &crate::policy::limits::Limits) -> Meter {
        Meter {
            stop: Mutex::new(None),
            output_limit: limits.max_output,
            output_used: Mutex::new(0),
            refusal_limit: limits.max_refusals,
            refusals: std::sync::atomic::AtomicU32::new(0),
            stopping: tokio::sync::Notify::new(),
        }
    }

    /// Records the first limit hit; later ones are consequences of it (and
    /// of a kill that came first: the call stops either way).
    pub(crate) fn record(&self, hit: LimitHit) -> LimitHit {
        match self.stop_with(Stop::Limit(hit.clone())) {
            Stop::Limit(first) => first,
            Stop::Killed(_) => hit,
        }
    }

    /// Stops the call for `kill`, unless something stopped it already.
    pub(crate) fn kill(&self, kill: crate::oversight::Kill) {
        self.stop_with(Stop::Killed(kill));
    }

    /// Keeps the first stop, and wakes the call's runner for it.
    fn stop_with(&self, stop: Stop) -> Stop {
        let mut slot = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        let first = slot.is_none();
        let stop = slot.get_or_insert(stop).clone();
        if first {
            // One waiter (the call's runner); a permit is kept if it is not waiting yet.
            self.stopping.notify_one();
        }
        stop
    }

    /// The limit that stopped the call, if a limit did.
    #[cfg(test)]
    pub(crate) fn hit(&self) -> Option<LimitHit> {
        match self.stopped_by()? {
            Stop::Limit(hit) => Some(hit),
            Stop::Killed(_) => None,
        }
    }

    /// What stopped the call, if anything has.
    pub(crate) fn stopped_by(&self) -> Option<Stop> {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The kill that stopped the call, if one did.
    pub(crate) fn killed(&self) -> Option<crate::oversight::Kill> {
        match self.stopped_by()? {
            Stop::Killed(kill) => Some(kill),
            Stop::Limit(_) => None,
        }
    }

    /// Resolves once a limit has been recorded or the call was killed.
    pub(crate) async fn stopped(&self) -> Stop {
        loop {
            if let Some(stop) = self.stopped_by() {
                return stop;
            }
            self.stopping.notified().await;
        }
    }

    /// Counts one refused request; past `max_refusals` it records the limit,
    /// which stops the call.
    pub(crate) fn refused(&self) -> Result<(), LimitHit> {
        let count = self.refusals.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        if count > self.refusal_limit {
            return Err(self.record(LimitHit {
                kind: LimitKind::Refusals,
                value: self.refusal_limit.to_string(),
                detail: Some(format!("{count} requests refused in this call")),
            }));
        }
        Ok(())
    }

    /// Takes `bytes` from the output budget shared by stdout, stderr, log
    /// lines and the tool's result; records the `max_output` limit when it runs out.
    pub(crate) fn take_output(&self, bytes: usize) -> Result<(), LimitHit> {
        let mut used = self.output_used.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = used.saturating_add(bytes as u64);
        if wanted > self.output_limit.0 {
            return Err(self.record(LimitHit {
                kind: LimitKind::Output,
                value: self.output_limit.to_string(),
                detail: Some(format!("{wanted} bytes written")),
            }));
        }
        *used = wanted;
        Ok(())
    }
}

/// A limit of an invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Linear memory.
    Memory,
    /// Guest CPU time.
    Cpu,
    /// Wall-clock time of the call.
    Timeout,
    /// Input bytes.
    Input,
    /// Output bytes.
    Output,
    /// Wasm call stack.
    Stack,
    /// Requests the host refused (egress, credentials and sockets).
    Refusals,
}

impl LimitKind {
    /// The limit's name as written in manifests and audit events.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::Cpu => "cpu",
            LimitKind::Timeout => "timeout",
            LimitKind::Input => "max_input",
            LimitKind::Output => "max_output",
            LimitKind::Stack => "stack",
            LimitKind::Refusals => "max_refusals",
        }
    }
}

/// An invocation was stopped because it exceeded a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} limit of {value} exceeded{}", kind.name(), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct LimitHit {
    /// Which limit.
    pub kind: LimitKind,
    /// Its value, as written in manifests (`64MiB`, `2s`).
    pub value: String,
    /// More about it, such as the size that was asked for.
    pub detail: Option<String>,
}
