//! What is running: every open task and its calls in flight, with enough to
//! show them (`toolcell tasks`) and to stop them (the kill switch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::audit::{AuditKind, AuditScope, rfc3339};
use crate::call::TaskSummary;
use crate::credentials::broker::Broker;
use crate::credentials::task_token::TaskCredentials;
use crate::decide::{CallContext, TaskFacts};
use crate::invocation::millis;
use crate::outstanding::Outstanding;
use crate::oversight::Kill;

/// A running task as `toolcell tasks` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveTask {
    /// Task id.
    pub task: String,
    /// On whose behalf it acts.
    pub principal: String,
    /// The tool it runs.
    pub tool: String,
    /// Its workload identity.
    pub workload: String,
    /// When it opened (RFC 3339).
    pub opened_at: String,
    /// How long it has been open.
    pub age_ms: u64,
    /// `idle` (open, no call running), `running` or `killed`.
    pub state: String,
    /// Calls started so far.
    pub invocations: u64,
    /// Credentials minted so far.
    pub mints: u64,
    /// Requests refused so far.
    pub denials: u64,
    /// Egress of all its calls so far.
    pub egress: EgressSoFar,
    /// Its calls running now.
    pub calls: Vec<LiveCall>,
}

/// A call in flight.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveCall {
    /// Invocation id.
    pub invocation: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it has run.
    pub age_ms: u64,
    /// Its egress so far.
    pub egress: EgressSoFar,
    /// The credentials it holds now: ids, never values.
    pub credentials: Vec<HeldCredential>,
}

/// Egress so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EgressSoFar {
    /// Requests allowed.
    pub requests: u64,
    /// Bytes sent and received.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The hosts contacted (the first few dozen).
    pub hosts: Vec<String>,
}

/// A credential a call holds, named without its value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldCredential {
    /// The manifest's name for it.
    pub name: String,
    /// Its provider.
    pub provider: String,
    /// `jti`, lease id or token accessor.
    pub id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

/// What was stopped for one kill.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Contained {
    /// Tasks closed.
    pub tasks: usize,
    /// Calls stopped mid-flight.
    pub calls: usize,
    /// Credentials the stopped calls held, now revoked (or on the
    /// revoker's retry queue, as the audit trail says).
    pub credentials: usize,
    /// From the kill to the last of those revocations.
    pub contained_ms: f64,
}

/// One open task, as the runtime sees it from outside its caller.
pub(crate) struct TaskLife {
    pub(crate) scope: AuditScope,
    pub(crate) workload: String,
    pub(crate) opened: SystemTime,
    pub(crate) opened_at: Instant,
    pub(crate) credentials: Arc<TaskCredentials>,
    /// The task's call teardowns still running.
    pub(crate) teardowns: Arc<Outstanding>,
    pub(crate) facts: Arc<TaskFacts>,
    pub(crate) invocations: AtomicU64,
    pub(crate) failures: Arc<AtomicU64>,
    closed: AtomicBool,
    /// The kill that closed it, if one did: later calls are refused with it.
    killed: OnceLock<Kill>,
    calls: Mutex<HashMap<String, Running>>,
    /// Woken when a call's teardown ends.
    call_ended: tokio::sync::Notify,
}

/// A call in flight.
struct Running {
    started: SystemTime,
    started_at: Instant,
    call: Arc<CallContext>,
    broker: Arc<Broker>,
}

impl std::fmt::Debug for TaskLife {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLife").field("task", &self.scope.task).finish_non_exhaustive()
    }
}

impl TaskLife {
    pub(crate) fn new(
        scope: AuditScope,
        workload: String,
        credentials: Arc<TaskCredentials>,
        facts: Arc<TaskFacts>,
    ) -> TaskLife {
        TaskLife {
            scope,
            workload,
            opened: SystemTime::now(),
            opened_at: facts.opened,
            credentials,
            teardowns: Arc::new(Outstanding::default()),
            facts,
            invocations: AtomicU64::new(0),
            failures: Arc::new(AtomicU64::new(0)),
            closed: AtomicBool::new(false),
            killed: OnceLock::new(),
            calls: Mutex::new(HashMap::new()),
            call_ended: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.scope.task
    }

    /// The kill that closed the task, if one did.
    pub(crate) fn killed(&self) -> Option<&Kill> {
        self.killed.get()
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call has started; a kill that came first stops it at once.
    pub(crate) fn call_started(&self, call: &Arc<CallContext>, broker: &Arc<Broker>) {
        let running = Running {
            started: SystemTime::now(),
            started_at: Instant::now(),
            call: call.clone(),
            broker: broker.clone(),
        };
        self.calls().insert(call.invocation.clone(), running);
        if let Some(kill) = self.killed.get() {
            call.meter.kill(kill.clone());
        }
    }

    /// A call's teardown has ended: what it held is revoked.
    pub(crate) fn call_ended(&self, invocation: &str) {
        self.calls().remove(invocation);
        self.call_ended.notify_waiters();
    }

    /// Stops every call of the task for `kill`; its next calls are refused.
    /// Returns the calls stopped and the credentials they held.
    pub(crate) fn kill(&self, kill: &Kill) -> (usize, usize) {
        let _ = self.killed.set(kill.clone());
        let calls = self.calls();
        let mut held = 0;
        for running in calls.values() {
            held += running.broker.held().len();
            running.call.meter.kill(kill.clone());
        }
        (calls.len(), held)
    }

    /// After [`TaskLife::kill`]: waits for the stopped calls' teardowns
    /// (their credentials revoked), then closes the task, revoking what it
    /// holds itself, and records it closed as `killed`.
    pub(crate) async fn contain(&self) {
        loop {
            let ended = self.call_ended.notified();
            if self.calls().is_empty() {
                break;
            }
            ended.await;
        }
        self.teardowns.idle().await;
        let reason = self.killed.get().map(|kill| format!("the task was closed by kill {}", kill.id));
        self.credentials.close_because(reason).await;
        self.finish_durably("killed", false).await;
    }

    /// Records the task closed (once) and returns its summary, once the
    /// record is on disk. The sync runs on a blocking thread, so the async
    /// workers go on serving other calls meanwhile, and tasks closing
    /// together share it; except when `alone` (no other task of the
    /// runtime is open): then it runs here, as there is no call for the
    /// worker to serve meanwhile, and handing it to another thread and back
    /// was the largest cost of a lone task's close (waking an idle CPU,
    /// twice). A call arriving during that sync is taken by another worker.
    pub(crate) async fn finish_durably(&self, how: &'static str, alone: bool) -> TaskSummary {
        let (summary, recorded) = self.record_closed(how);
        if !recorded {
            // Closed already (by a kill, which made its record durable).
            return summary;
        }
        if !self.scope.audit.writes_a_file() {
            // Nothing to write or sync: no hand-off to another thread and back.
            return summary;
        }
        if alone {
            self.scope.audit.seal_or_log();
            return summary;
        }
        let audit = self.scope.audit.clone();
        if tokio::task::spawn_blocking(move || audit.seal_or_log()).await.is_err() {
            // The blocking pool is gone (the runtime is shutting down): seal here.
            self.scope.audit.seal_or_log();
        }
        summary
    }

    /// [`TaskLife::finish_durably`], where there is no executor to wait on (a drop).
    pub(crate) fn finish(&self, how: &'static str) -> TaskSummary {
        let (summary, recorded) = self.record_closed(how);
        if recorded {
            self.scope.audit.seal_or_log();
        }
        summary
    }

    /// Records the task closed, once (true if this call did); the caller
    /// makes the record durable.
    fn record_closed(&self, how: &'static str) -> (TaskSummary, bool) {
        let summary = TaskSummary {
            invocations: self.invocations.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            duration: self.opened_at.elapsed(),
        };
        let recorded = !self.closed.swap(true, Ordering::AcqRel);
        if recorded {
            self.scope.record_or_log(AuditKind::TaskClosed {
                how,
                duration_ms: millis(summary.duration),
                invocations: summary.invocations,
                failures: summary.failures,
            });
        }
        (summary, recorded)
    }

    /// The task as `toolcell tasks` shows it.
    pub(crate) fn view(&self) -> LiveTask {
        let totals = self.facts.totals.read();
        let egress = self.facts.totals.egress();
        let calls: Vec<LiveCall> = self
            .calls()
            .values()
            .map(|running| LiveCall {
                invocation: running.call.invocation.clone(),
                started_at: rfc3339(running.started),
                age_ms: millis(running.started_at.elapsed()),
                egress: running.call.tally.egress(),
                credentials: running.broker.held(),
            })
            .collect();
        let state = if self.killed.get().is_some() {
            "killed"
        } else if calls.is_empty() {
            "idle"
        } else {
            "running"
        };
        LiveTask {
            task: self.scope.task.clone(),
            principal: self.scope.principal.clone(),
            tool: self.scope.tool.clone(),
            workload: self.workload.clone(),
            opened_at: rfc3339(self.opened),
            age_ms: millis(self.opened_at.elapsed()),
            state: state.to_owned(),
            invocations: self.invocations.load(Ordering::Relaxed),
            mints: totals.mints,
            denials: totals.denials,
            egress,
            calls,
        }
    }
}

/// Every open task.
#[derive(Debug, Default)]
pub(crate) struct Live {
    tasks: Mutex<HashMap<String, Arc<TaskLife>>>,
}

impl Live {
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TaskLife>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn opened(&self, life: Arc<TaskLife>) {
        self.tasks().insert(life.id().to_owned(), life);
    }

    pub(crate) fn closed(&self, task: &str) {
        self.tasks().remove(task);
    }

    /// How many tasks are open.
    pub(crate) fn open(&self) -> usize {
        self.tasks().len()
    }

    /// True when the task `task` is open.
    pub(crate) fn is_open(&self, task: &str) -> bool {
        self.tasks().contains_key(task)
    }

    /// The open tasks `matches` picks.
    pub(crate) fn matching(&self, matches: impl Fn(&TaskLife) -> bool) -> Vec<Arc<TaskLife>> {
        self.tasks().values().filter(|life| matches(life)).cloned().collect()
    }

    /// Every open task, oldest first.
    pub(crate) fn views(&self) -> Vec<LiveTask> {
        let lives = self.matching(|_| true);
        let mut views: Vec<LiveTask> = lives.iter().map(|life| life.view()).collect();
        views.sort_by(|a, b| b.age_ms.cmp(&a.age_ms).then_with(|| a.task.cmp(&b.task)));
        views
    }
}
