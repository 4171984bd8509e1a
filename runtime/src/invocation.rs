//! One invocation's machinery: building its store from the grant, its
//! limits (wall clock, CPU), naming what stopped it, and its teardown —
//! revocation and the closing audit event — which runs to the end whatever
//! happens to the caller.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::{ResourceTable, Val};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::audit::{AuditKind, AuditScope};
use crate::call::{CallReport, CallResult};
use crate::caps::http::EgressHooks;
use crate::caps::stdio::{CappedOutput, Channel, OutputSink};
use crate::caps::{env, fs, net};
use crate::credentials::broker::Broker;
use crate::credentials::revoke::Revoker;
use crate::decide::CallContext;
use crate::engine::{EngineSettings, PlainFunction, ToolEngine};
use crate::error::{InvokeError, LimitHit, LimitKind};
use crate::meter::Meter;
use crate::oversight::TaskLife;
use crate::policy::limits::Limits;
use crate::store::{InvocationIds, InvocationState, MemoryLimiter};
use crate::transport::Network;
use crate::units::{ByteSize, TimeSpan};

/// Closes an invocation on every path: `finish` on the paths that return,
/// `Drop` when the caller dropped the future. Either way the credentials are
/// revoked and the closing event written by runtime-owned work, so dropping
/// the caller's future part-way through cannot cut the teardown short.
pub(crate) struct Teardown {
    pub(crate) scope: AuditScope,
    /// The task's counters and teardowns, and what a kill sees of the call.
    pub(crate) life: Arc<TaskLife>,
    pub(crate) revoker: Arc<Revoker>,
    pub(crate) invocation: String,
    pub(crate) started: Instant,
    pub(crate) broker: Arc<Broker>,
    /// What the call did (the sockets it used, for its closing event).
    pub(crate) call: Arc<crate::decide::CallContext>,
    pub(crate) done: bool,
}

/// How an invocation ended, for its closing event.
pub(crate) struct Ending {
    pub(crate) outcome: &'static str,
    pub(crate) exit_code: Option<i32>,
    pub(crate) reason: Option<String>,
}

impl Teardown {
    /// The call returned: its outcome is settled now, then the teardown runs.
    pub(crate) async fn finish(&mut self, result: &Result<CallReport, InvokeError>) {
        self.done = true;
        let (outcome, exit_code, reason) = match result {
            Ok(report) => match &report.result {
                CallResult::Output(_) => ("ok", None, None),
                CallResult::ToolError(error) => ("tool_error", None, Some(error.to_string())),
                CallResult::Exit(0) => ("ok", Some(0), None),
                CallResult::Exit(code) => ("exit", Some(*code), None),
            },
            Err(error) => (error.outcome(), None, Some(error.to_string())),
        };
        if let Err(InvokeError::Limit(hit)) = result {
            self.scope.record_or_log(AuditKind::LimitHit {
                invocation: self.invocation.clone(),
                limit: hit.kind.name(),
                value: hit.value.clone(),
            });
        }
        let closed = self.close(Ending { outcome, exit_code, reason });
        // Waiting is only for the caller's sake: dropped here, the closing goes on.
        let _ = closed.await;
    }

    /// Hands revocation and the closing event to the runtime; the receiver
    /// resolves when both are done.
    pub(crate) fn close(&self, ending: Ending) -> tokio::sync::oneshot::Receiver<()> {
        if ending.outcome != "ok" {
            self.life.failures.fetch_add(1, Ordering::Relaxed);
        }
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.broker.close_if_unused() {
            // Nothing was minted, so nothing can be cut short: the record
            // closes here, without handing work to the runtime.
            self.scope.record_or_log(AuditKind::InvocationEnded {
                invocation: self.invocation.clone(),
                outcome: ending.outcome,
                exit_code: ending.exit_code,
                reason: ending.reason,
                duration_ms: millis(self.started.elapsed()),
                sockets: self.call.tally.sockets_used(),
            });
            self.life.call_ended(&self.invocation);
            let _ = done.send(());
            return closed;
        }
        self.life.teardowns.started();
        let life = self.life.clone();
        let broker = self.broker.clone();
        let scope = self.scope.clone();
        let invocation = self.invocation.clone();
        let started = self.started;
        let sockets = self.call.tally.sockets_used();
        self.revoker.run_owned(async move {
            broker.close().await;
            life.call_ended(&invocation);
            scope.record_or_log(AuditKind::InvocationEnded {
                invocation,
                outcome: ending.outcome,
                exit_code: ending.exit_code,
                reason: ending.reason,
                duration_ms: millis(started.elapsed()),
                sockets,
            });
            life.teardowns.ended();
            let _ = done.send(());
        });
        closed
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if !self.done {
            // The caller dropped the call's future while the call ran: the
            // store, instance and scratch dir were dropped with it before
            // this runs. The call itself was stopped, so it is `cancelled`.
            // Nobody is left to wait for it; the runtime runs it to the end.
            drop(self.close(Ending {
                outcome: "cancelled",
                exit_code: None,
                reason: Some("the caller cancelled the call".to_owned()),
            }));
        }
    }
}

/// A plain function's arguments from a JSON object; errors name the parameter.
pub(crate) fn plain_arguments(function: &PlainFunction, arguments: &str) -> Result<Vec<Val>, String> {
    let value: serde_json::Value =
        serde_json::from_str(arguments).map_err(|e| format!("arguments are not JSON: {e}"))?;
    let object = value.as_object().ok_or("arguments must be a JSON object (parameter name to value)")?;
    if let Some(unknown) = object.keys().find(|k| function.params.iter().all(|(name, _)| name != *k)) {
        return Err(format!("`{}` has no parameter `{unknown}`", function.info.name));
    }
    function
        .params
        .iter()
        .map(|(name, ty)| match object.get(name) {
            Some(value) => crate::schema::to_val(ty, value, name),
            None if matches!(ty, wasmtime::component::types::Type::Option(_)) => Ok(Val::Option(None)),
            None => Err(format!("`{name}` is missing")),
        })
        .collect()
}

/// Runs `work` under the wall-clock limit.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    cause: Option<&str>,
    meter: &Meter,
    work: impl Future<Output = Result<T, InvokeError>>,
) -> Result<T, InvokeError> {
    // A limit recorded by host code (refusals) stops the call as soon as it is recorded.
    let work = async {
        tokio::select! {
            result = work => result,
            stop = meter.stopped() => Err(stop.into()),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        // A kill that came as the call was finishing still wins: what a
        // killed call produced does not reach its caller.
        Ok(Ok(_)) if let Some(kill) = meter.killed() => {
            Err(InvokeError::Killed { kill: Box::new(kill), running: true })
        }
        Ok(result) => result,
        Err(_elapsed) => Err(InvokeError::Limit(meter.record(LimitHit {
            kind: LimitKind::Timeout,
            value: TimeSpan(timeout).to_string(),
            detail: cause.map(str::to_owned),
        }))),
    }
}

/// What one invocation's store is built from. A call and `describe` build
/// theirs the same way; `describe`'s grant holds nothing.
pub(crate) struct StoreParts<'a> {
    pub(crate) ids: &'a InvocationIds,
    /// On whose behalf: the task's names and its audit trail.
    pub(crate) who: AuditScope,
    /// The call's grant, counters and meter, which every decision reads.
    pub(crate) call: Arc<CallContext>,
    /// The call's credentials.
    pub(crate) broker: Arc<Broker>,
    pub(crate) network: Network,
    /// When the call must be over; egress timeouts are clamped to it.
    pub(crate) deadline: Instant,
    pub(crate) sink: OutputSink,
    /// A command's arguments and stdin (empty for tools).
    pub(crate) args: &'a [String],
    pub(crate) stdin: Vec<u8>,
    /// The call's scratch dir, if its grant has one.
    pub(crate) scratch: Option<&'a std::path::Path>,
}

/// Builds the store of one invocation from the grant.
pub(crate) fn build_store(engine: &ToolEngine, parts: StoreParts<'_>) -> Result<Store<InvocationState>, InvokeError> {
    let StoreParts { ids, who, call, broker, network, deadline, sink, args, stdin, scratch } = parts;
    let (grant, meter) = (&call.grant, &call.meter);
    let mut wasi = WasiCtxBuilder::new();
    env::grant_env(&mut wasi, grant);
    fs::grant_dirs(&mut wasi, grant, scratch)?;
    net::grant_sockets(&mut wasi, &who, &call);
    wasi.arg(&ids.tool).args(args);
    wasi.stdin(MemoryInputPipe::new(stdin));
    wasi.stdout(CappedOutput { channel: Channel::Stdout, meter: meter.clone(), sink: sink.clone() });
    wasi.stderr(CappedOutput { channel: Channel::Stderr, meter: meter.clone(), sink: sink.clone() });

    let state = InvocationState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        memory: MemoryLimiter { limit: grant.limits.memory, total: 0, meter: meter.clone() },
        meter: meter.clone(),
        sink,
        ids: ids.clone(),
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        egress: EgressHooks::new(call.clone(), network, who, deadline, broker.clone()),
        credentials: broker,
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|state| &mut state.memory);
    cpu_limit(&mut store, &call.grant.limits, engine.settings.epoch_tick, call.meter.clone());
    Ok(store)
}

/// Counts epoch ticks during which guest code ran. The callback only fires
/// while the guest executes (at function entries and loop heads), so time
/// spent waiting in host calls is not counted; every tick also yields to the
/// executor so the wall-clock timeout can fire during a busy loop.
pub(crate) fn cpu_limit(store: &mut Store<InvocationState>, limits: &Limits, tick: Duration, meter: Arc<Meter>) {
    let budget = (limits.cpu.0.as_nanos() / tick.as_nanos().max(1)).max(1) as u64;
    let value = limits.cpu.to_string();
    let mut used: u64 = 0;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        // A limit host code recorded (refusals, output), or a kill, stops
        // the guest at its next tick, even before the call's runner next looks.
        if let Some(stop) = meter.stopped_by() {
            return Err(wasmtime::Error::msg(stop.to_string()));
        }
        used += 1;
        if used > budget {
            let hit = meter.record(LimitHit { kind: LimitKind::Cpu, value: value.clone(), detail: None });
            return Err(wasmtime::Error::msg(hit.to_string()));
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

/// Names the cause of a failed call: a recorded limit or a kill first,
/// then the engine's own traps, then anything else as a host error.
pub(crate) fn classify(error: wasmtime::Error, meter: &Meter, settings: &EngineSettings) -> InvokeError {
    if let Some(stop) = meter.stopped_by() {
        return stop.into();
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => InvokeError::Limit(meter.record(LimitHit {
            kind: LimitKind::Stack,
            value: ByteSize(settings.max_wasm_stack.0).to_string(),
            detail: Some("the wasm call stack is exhausted".to_owned()),
        })),
        Some(trap) => {
            let hint = match trap {
                wasmtime::Trap::UnreachableCodeReached => " (a panic or abort in the tool; its message is on stderr)",
                _ => "",
            };
            InvokeError::Trap { reason: format!("{trap}{hint}"), detail: format!("{error:?}") }
        }
        None => InvokeError::host("running the call", error),
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
