//! The decision point: every capability decision the runtime makes is
//! asked here, through [`decide`], with one request shape — who (the
//! principal, tool and task, as the task's [`AuditScope`]), the call it
//! happens in (its [`CallContext`]: the grant, what the call has done so far,
//! its refusal budget) and the action with its resource (one type per
//! action, in this module's children). The answer is the action's allowed
//! value or a [`Denial`] with its reason; a denial is written to the audit
//! trail here, in the event shape of its capability, and counted against
//! the call's `max_refusals`.
//!
//! Two layers decide. First the grant (the manifest narrowed by the task),
//! in [`decide`]: the ceiling. Then, for the actions policies see (`call`,
//! `http`, `credential`, and `socket` connects and sends), request-time
//! policy and human approval in [`govern`] (`govern.rs`), asked by the
//! capability once the grant has allowed the action and its facts are
//! known (an HTTP request's body digest, a mint's lifetime). `govern` can
//! only deny or hold: nothing a policy says allows what the grant refuses.
//! Before policy, `govern` takes the action's share of the rate limits and
//! shows it to the anomaly rules (`crate::oversight`); every denial is
//! shown to them too.
//!
//! Decisions asked here:
//! - `call`: opening a task on a tool ([`task::OpenTask`]);
//! - `http`: each outbound request's rule match ([`http::HttpRequest`]) and
//!   the check of the addresses its host resolved to ([`http::HttpAddresses`]);
//! - `credential`: a tool's `acquire` ([`credential::Acquire`]), each mint
//!   ([`credential::Mint`]) and each `reveal` ([`credential::Reveal`]);
//! - `socket`: each raw socket operation ([`socket::SocketUse`]).
//!
//! Outcomes that are not decisions (a provider that fails, a network that
//! fails) are recorded by their capability; a credential that cannot be had
//! still counts as a refusal, through [`record_refusal`].

pub(crate) mod credential;
pub(crate) mod govern;
pub(crate) mod http;
pub(crate) mod socket;
pub(crate) mod task;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use govern::Tally;
pub(crate) use govern::{PolicyPoint, TaskFacts, govern};

use crate::audit::{AuditError, AuditKind, AuditScope};
use crate::grant::Grant;
use crate::meter::Meter;
use crate::request_policy::Digest;

/// One decision asked of the decision point.
pub(crate) struct Request<'a, A> {
    /// Who asks: the principal, the tool and the task (and the audit trail
    /// their decisions are recorded in).
    pub(crate) who: &'a AuditScope,
    /// The call the action happens in; `None` when a task opens.
    pub(crate) call: Option<&'a CallContext>,
    /// What is asked for, and of what.
    pub(crate) action: A,
}

/// One kind of action: its name, today's check, and the audit event a
/// denial of it writes.
pub(crate) trait Action {
    /// What an allowed action hands back (the grant a task gets, the rule a
    /// request matched, …).
    type Allowed;

    /// The action's name, as policies will name it: `call`, `http`,
    /// `credential` or `socket`.
    const NAME: &'static str;

    /// The grant's answer: the manifest narrowed by the task is the ceiling
    /// no later layer can raise.
    fn within_grant(&self, call: Option<&CallContext>) -> Result<Self::Allowed, Denial>;

    /// The event that records a denial in the audit trail; `None` for a
    /// denial that is not the tool's act and is not recorded (a datagram
    /// from a peer the grant does not name).
    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind>;
}

/// How an action was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The grant (or, later, a policy) does not allow it.
    Denied,
    /// It is allowed but could not be had (no time left, a provider failed).
    Unavailable,
}

impl Refused {
    /// As audit events write it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Refused::Denied => "denied",
            Refused::Unavailable => "unavailable",
        }
    }
}

/// Why an action was refused.
#[derive(Debug)]
pub(crate) struct Denial {
    pub(crate) decision: Refused,
    /// What refused it, naming the rule or limit.
    pub(crate) reason: String,
    /// The audit trail could not record the denial. A task refuses to open
    /// unaudited; inside a call the failure goes to the log.
    pub(crate) unrecorded: Option<AuditError>,
    /// The request-time policies that denied it (none: the grant did).
    pub(crate) policies: Vec<String>,
}

impl Denial {
    /// A refusal by the grant or a policy.
    pub(crate) fn denied(reason: impl Into<String>) -> Denial {
        Denial { decision: Refused::Denied, reason: reason.into(), unrecorded: None, policies: Vec::new() }
    }

    /// An action that could not be had (no time left for it).
    pub(crate) fn unavailable(reason: impl Into<String>) -> Denial {
        Denial { decision: Refused::Unavailable, reason: reason.into(), unrecorded: None, policies: Vec::new() }
    }
}

/// Decides one action: allowed, or denied with its reason, recorded and
/// counted. The only way a capability asks whether it may act.
pub(crate) fn decide<A: Action>(request: Request<'_, A>) -> Result<A::Allowed, Denial> {
    // The grant first: nothing below may allow what it refuses.
    let verdict = request.action.within_grant(request.call);
    // Request-time policy and approvals follow in `govern`, asked by the
    // capability with the action's facts; they can only deny or hold.
    verdict.map_err(|mut denial| {
        tracing::debug!(target: "toolcell::decide", action = A::NAME, task = %request.who.task, "{}", denial.decision.name());
        if let Some(event) = request.action.denied(request.call, &denial) {
            denial.unrecorded = record_refusal(request.who, request.call, event);
        }
        denial
    })
}

/// Records a refusal and counts it against the call's `max_refusals` (past
/// it the call is stopped). Once a limit has stopped the call, a guest
/// still running until it is cut off makes nothing more be written: the
/// record stays bounded. Returns the audit trail's error, also logged.
pub(crate) fn record_refusal(who: &AuditScope, call: Option<&CallContext>, event: AuditKind) -> Option<AuditError> {
    if let Some(call) = call {
        call.count_denial();
        if call.meter.stopped_by().is_some() {
            return None;
        }
        let unrecorded = who.audit.record(who.event(event)).err();
        if let Some(error) = &unrecorded {
            tracing::error!(target: "toolcell::audit", "{error}");
        }
        let _ = call.meter.refused();
        // Every denial is watched: a run of them in a call, or a storm of
        // them for a principal (an agent probing for a way out).
        let oversight = &call.task.point.oversight;
        let seen = oversight.watch.denied(&who.principal, &who.tool, call.tally.read().denials);
        let _ = govern::noticed(who, Some(&call.invocation), oversight, seen);
        return unrecorded;
    }
    who.audit.record(who.event(event)).err()
}

/// What the decision point knows of one call: its grant, what it has done
/// so far, and its refusal budget. Shared by the call's capabilities.
#[derive(Debug)]
pub(crate) struct CallContext {
    /// The call's invocation id.
    pub(crate) invocation: String,
    /// The task's grant.
    pub(crate) grant: Arc<Grant>,
    /// Limits hit and refusals counted.
    pub(crate) meter: Arc<Meter>,
    /// Requests sent per egress rule (the grant's order).
    requests: Box<[AtomicU32]>,
    /// Credentials minted (or being minted).
    mints: AtomicU32,
    /// What policy sees of the task the call belongs to.
    pub(crate) task: Arc<TaskFacts>,
    /// When the call must be over: an approval is not waited for past it.
    pub(crate) deadline: Instant,
    /// What this call has done so far, for policies and oversight.
    pub(crate) tally: Tally,
    /// The call's input (for policies and approvals), once known.
    pub(crate) input: OnceLock<Digest>,
}

impl CallContext {
    /// A call that has done nothing yet.
    pub(crate) fn new(
        invocation: String,
        grant: Arc<Grant>,
        meter: Arc<Meter>,
        task: Arc<TaskFacts>,
        deadline: Instant,
    ) -> CallContext {
        let requests = grant.egress.iter().map(|_| AtomicU32::new(0)).collect();
        CallContext {
            invocation,
            grant,
            meter,
            requests,
            mints: AtomicU32::new(0),
            task,
            deadline,
            tally: Tally::default(),
            input: OnceLock::new(),
        }
    }

    /// Requests sent so far on the rule at `rule`.
    fn requests_sent(&self, rule: usize) -> u32 {
        self.requests[rule].load(Ordering::Acquire)
    }

    /// Takes one of the rule's requests if any are left.
    fn take_request(&self, rule: usize, max: u32) -> bool {
        self.requests[rule]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |sent| (sent < max).then_some(sent + 1))
            .is_ok()
    }

    /// Takes one mint if any are left.
    fn take_mint(&self, max: u32) -> bool {
        self.mints
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |minted| (minted < max).then_some(minted + 1))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Audit;

    /// A denial inside a call is recorded once, counted, and nothing more
    /// is recorded once the refusal limit stops the call.
    #[test]
    fn denials_are_counted_and_stop_being_recorded_once_the_call_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let who = AuditScope {
            audit: Arc::new(Audit::to_file(&path, &Default::default()).unwrap()),
            task: "t".into(),
            tool: "tool".into(),
            principal: "alice".into(),
            actor: None,
            request: None,
        };
        let manifest = crate::manifest::Manifest::ad_hoc(std::path::Path::new("t.wasm"));
        let mut grant = Grant::new(&manifest, &crate::grant::Narrowing::default()).unwrap();
        grant.limits.max_refusals = 2;
        let meter = Arc::new(Meter::new(&grant.limits));
        let call = CallContext::new(
            "i".into(),
            Arc::new(grant),
            meter.clone(),
            Arc::new(TaskFacts::ungoverned()),
            Instant::now() + std::time::Duration::from_secs(60),
        );
        for _ in 0..5 {
            let denied = decide(Request {
                who: &who,
                call: Some(&call),
                action: socket::SocketUse {
                    address: "127.0.0.1:1".parse().unwrap(),
                    usage: wasmtime_wasi::sockets::SocketAddrUse::TcpConnect,
                },
            });
            assert!(denied.is_err());
        }
        assert_eq!(meter.hit().map(|hit| hit.kind), Some(crate::meter::LimitKind::Refusals));
        let lines = std::fs::read_to_string(&path).unwrap();
        // Two within the limit, the third crosses it and stops the call; the rest are not written.
        assert_eq!(lines.lines().count(), 3, "{lines}");
        assert!(lines.lines().all(|line| line.contains(r#""event":"socket""#)), "{lines}");
    }
}
