//! Oversight of what agents are doing: the tasks and calls running now
//! (`live.rs`), the kill switch that stops them (`kill.rs`), rate limits
//! (`rate.rs`), and behaviour compared with a learned baseline
//! (`baseline.rs`, `watch.rs`). The decision point asks it beside
//! request-time policy; the admin interface shows and drives it through
//! [`crate::Controls`].

pub(crate) mod baseline;
pub(crate) mod kill;
pub(crate) mod live;
pub(crate) mod rate;
pub(crate) mod watch;

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use baseline::{Baseline, BaselineError, Behaviour, Spread};
pub(crate) use kill::KillSwitch;
pub use kill::{Kill, KillError, KillTarget};
pub use live::{Contained, EgressSoFar, HeldCredential, LiveCall, LiveTask};
pub(crate) use live::{Live, TaskLife};
pub use rate::RateLimited;
pub(crate) use rate::RateLimits;
pub use watch::{Anomaly, AnomalyAction, AnomalyRule, DenyStorm, MonitorSettings, Quarantine};
pub(crate) use watch::{Seen, Watch};

use crate::audit::{Audit, AuditKind, AuditScope, rfc3339};

/// What a kill did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KillReport {
    /// The kill, as it is kept.
    pub kill: Kill,
    /// What it stopped, and how long containing it took.
    pub contained: Contained,
    /// Why the kill could not be kept in the kill file, if it could not: it
    /// is in force, but not past a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_kept: Option<String>,
}

/// The runtime's oversight state.
#[derive(Debug)]
pub(crate) struct Oversight {
    pub(crate) live: Live,
    pub(crate) kills: KillSwitch,
    pub(crate) rates: RateLimits,
    pub(crate) watch: Watch,
    audit: Arc<Audit>,
}

impl Oversight {
    pub(crate) fn new(kills: KillSwitch, rates: RateLimits, watch: Watch, audit: Arc<Audit>) -> Oversight {
        Oversight { live: Live::default(), kills, rates, watch, audit }
    }

    /// A runtime's oversight with nothing configured: no kill file, no rate
    /// limits, no baseline (the deny storm is still watched).
    #[cfg(test)]
    pub(crate) fn unconfigured() -> Oversight {
        Oversight::new(
            KillSwitch::default(),
            RateLimits::new(Vec::new()),
            Watch::new(MonitorSettings::default(), None),
            Arc::new(Audit::tracing_only()),
        )
    }

    /// Puts `kill` in force and stops everything it names at once: each
    /// matching call is stopped, and the task it belongs to refuses new
    /// calls. Returns the work that finishes containing it (teardowns,
    /// revocations, tasks closed), for the caller to await, or to hand to
    /// the runtime when the kill comes from inside a call.
    pub(crate) fn kill(self: &Arc<Self>, kill: Kill) -> impl Future<Output = KillReport> + Send + 'static {
        let started = Instant::now();
        // A task's id is never reused: closing it is the whole kill, and
        // nothing is kept for later. Everything else is refused until lifted.
        let not_kept = match &kill.target {
            KillTarget::Task(_) => None,
            _ => self.kills.add(kill.clone()).err().map(|error| error.to_string()),
        };
        let lives = self.live.matching(|life| {
            kill.target.matches(&life.scope.principal, &life.scope.tool, Some(life.id())) && life.killed().is_none()
        });
        let mut contained = Contained { tasks: lives.len(), ..Contained::default() };
        for life in &lives {
            let (calls, credentials) = life.kill(&kill);
            contained.calls += calls;
            contained.credentials += credentials;
        }
        let oversight = self.clone();
        async move {
            futures_join_all(lives.iter().map(|life| life.contain())).await;
            for life in &lives {
                oversight.live.closed(life.id());
            }
            contained.contained_ms = started.elapsed().as_secs_f64() * 1000.0;
            oversight.record(&kill, "kill", Some(&contained), not_kept.as_deref());
            KillReport { kill, contained, not_kept }
        }
    }

    /// Lifts the kills of exactly `target`.
    pub(crate) fn unkill(&self, target: &KillTarget, by: &str) -> Result<Vec<Kill>, KillError> {
        let lifted = self.kills.lift(target)?;
        for kill in &lifted {
            let lifted_by = Kill { by: by.to_owned(), ..kill.clone() };
            self.record(&lifted_by, "unkill", None, None);
        }
        Ok(lifted)
    }

    /// A `kill` audit event: a kill put in force (with what it contained) or lifted.
    fn record(&self, kill: &Kill, decision: &'static str, contained: Option<&Contained>, not_kept: Option<&str>) {
        let (task, tool, principal) = match &kill.target {
            KillTarget::Task(id) => (id.clone(), String::new(), String::new()),
            KillTarget::Tool(name) => (String::new(), name.clone(), String::new()),
            KillTarget::Principal(name) => (String::new(), String::new(), name.clone()),
            KillTarget::All => (String::new(), String::new(), String::new()),
        };
        let scope = AuditScope { audit: self.audit.clone(), task, tool, principal, actor: None, request: None };
        scope.record_or_log(AuditKind::Kill {
            id: kill.id.clone(),
            decision,
            target: kill.target.to_string(),
            by: kill.by.clone(),
            reason: kill.reason.clone(),
            until: kill.until.map(|until| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(until))),
            tasks: contained.map(|c| c.tasks),
            calls: contained.map(|c| c.calls),
            credentials: contained.map(|c| c.credentials),
            contained_ms: contained.map(|c| c.contained_ms),
            not_kept: not_kept.map(str::to_owned),
        });
    }
}

/// Awaits every future, concurrently.
async fn futures_join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|future| future.as_mut().poll(cx).is_pending());
        if set.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
}
