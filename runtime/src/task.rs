//! Tasks: one unit of an agent's work. A [`Task`] holds a [`Grant`](crate::Grant)
//! (the manifest narrowed by the task) for its whole life. Each
//! [`Task::invoke`] runs one call in a fresh `Store` and instance built from
//! that grant (see `invocation.rs` for the store, the limits and the
//! teardown), and tears it down when the call ends however it ends —
//! success, tool error, trap, limit, host error, or the caller dropping the
//! future. Closing the task (or dropping it) revokes its task-level
//! credentials and writes its closing audit event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::Val;
use wasmtime_wasi::I32Exit;

use crate::audit::{Audit, AuditEvent, AuditKind, AuditScope};
use crate::call::{Call, CallInput, CallReport, CallResult, TaskSummary, ToolError};
use crate::caps::stdio::{Captured, OutputSink};
use crate::credentials::broker::Broker;
use crate::credentials::providers::Providers;
use crate::decide::govern::{Stopped, noticed};
use crate::decide::task::{InvokeTool, input_digest};
use crate::decide::{CallContext, Request, TaskFacts, govern};
use crate::engine::Tool;
use crate::engine::{Pre, Shape, ToolEngine};
use crate::error::{InvokeError, LimitHit, LimitKind};
use crate::grant::Grant;
use crate::identity::Actor;
use crate::invocation::{StoreParts, Teardown, build_store, classify, new_id, plain_arguments, with_timeout};
use crate::meter::Meter;
use crate::oversight::{Oversight, TaskLife};
use crate::policy::rate::RateMetric;
use crate::request_policy::PolicyAction;
use crate::scratch::ScratchRoot;
use crate::store::InvocationIds;
use crate::transport::Network;

/// One task: a grant held for a principal until a deadline.
#[derive(Debug)]
pub struct Task {
    /// What the runtime sees of the task from outside: its task-level
    /// credentials (an OpenBao child token), its calls in flight, its
    /// counters, and the kill that closed it, if one did.
    pub(crate) life: Arc<TaskLife>,
    pub(crate) oversight: Arc<Oversight>,
    pub(crate) providers: Arc<Providers>,
    pub(crate) id: String,
    pub(crate) workload: String,
    pub(crate) principal: String,
    /// Who acts for the principal (the caller's agent), if anyone.
    pub(crate) actor: Option<Actor>,
    pub(crate) request_id: Option<String>,
    pub(crate) deadline: Instant,
    pub(crate) grant: Arc<Grant>,
    /// What request-time policy sees of the task.
    pub(crate) facts: Arc<TaskFacts>,
    pub(crate) tool: Arc<Tool>,
    pub(crate) engine: Arc<ToolEngine>,
    pub(crate) network: Network,
    pub(crate) audit: Arc<Audit>,
    pub(crate) scratch: Arc<ScratchRoot>,
}

impl Task {
    /// Task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Workload identity: `spiffe://<trust-domain>/tool/<tool>/task/<task>`.
    pub fn workload(&self) -> &str {
        &self.workload
    }

    /// The grant every invocation of this task gets.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Runs one call in a fresh instance and tears it down.
    pub async fn invoke(&self, call: Call) -> Result<CallReport, InvokeError> {
        let ids = InvocationIds { task: self.id.clone(), invocation: new_id(), tool: self.tool.manifest.name.clone() };
        let span = tracing::info_span!("invocation", task = %ids.task, invocation = %ids.invocation, tool = %ids.tool);
        let started = Instant::now();
        self.audit.record(self.event(AuditKind::InvocationStarted {
            invocation: ids.invocation.clone(),
            shape: self.tool.component.shape.name(),
        }))?;
        self.life.invocations.fetch_add(1, Ordering::Relaxed);
        // The wall-clock limit wraps everything, so host waits (sleep, reads)
        // are cut too; the task's deadline can make it shorter. Credentials
        // never outlive it.
        let remaining = self.deadline.saturating_duration_since(started);
        let (timeout, cause) = if remaining < self.grant.limits.timeout.0 {
            (remaining, Some("the task's deadline came first"))
        } else {
            (self.grant.limits.timeout.0, None)
        };
        let meter = Arc::new(Meter::new(&self.grant.limits));
        let call_context = Arc::new(CallContext::new(
            ids.invocation.clone(),
            self.grant.clone(),
            meter.clone(),
            self.facts.clone(),
            started + timeout,
        ));
        let broker = Arc::new(Broker::new(
            self.providers.clone(),
            self.life.credentials.clone(),
            call_context.clone(),
            SystemTime::now() + timeout,
        ));
        // From here a kill sees the call, and its teardown tells the kill when it is over.
        self.life.call_started(&call_context, &broker);
        let mut teardown = Teardown {
            scope: self.scope(),
            life: self.life.clone(),
            revoker: self.providers.revoker.clone(),
            invocation: ids.invocation.clone(),
            started,
            broker: broker.clone(),
            call: call_context.clone(),
            done: false,
        };
        let run = self.run(&ids, call, started, (timeout, cause), broker, call_context);
        let result = tracing::Instrument::instrument(run, span).await;
        // The store is gone. From here the outcome is the call's own, and
        // the teardown runs to the end even if this future is dropped.
        teardown.finish(&result).await;
        result
    }

    async fn run(
        &self,
        ids: &InvocationIds,
        call: Call,
        started: Instant,
        (timeout, cause): (Duration, Option<&'static str>),
        broker: Arc<Broker>,
        call_context: Arc<CallContext>,
    ) -> Result<CallReport, InvokeError> {
        let meter = call_context.meter.clone();
        // Every kill put in force marks the open tasks it names (and a task
        // opened as a kill lands is marked when it is listed), so the task's
        // own mark is the whole check.
        if let Some(kill) = self.life.killed() {
            return Err(InvokeError::Killed { kill: Box::new(kill.clone()), running: false });
        }
        if timeout.is_zero() {
            return Err(InvokeError::TaskExpired);
        }
        let limits = self.grant.limits;
        let component = &self.tool.component;
        // A tool gets JSON; a command gets args and stdin. Checked before
        // anything is spent on the call.
        let (json, args, stdin, function) = match (component.shape, call.input) {
            (Shape::Tool, CallInput::Tool(json)) => (Some(json), Vec::new(), Vec::new(), None),
            (Shape::Command, CallInput::Command { args, stdin }) => (None, args, stdin, None),
            (Shape::Plain, CallInput::Function { name, arguments }) => {
                let Pre::Plain(_, functions) = &component.pre else { unreachable!("a plain shape has a plain pre") };
                let Some(function) = functions.iter().find(|f| f.info.name == name) else {
                    let names: Vec<&str> = functions.iter().map(|f| f.info.name.as_str()).collect();
                    return Err(InvokeError::WrongShape(format!(
                        "`{}` has no function `{name}`; it exports: {}",
                        ids.tool,
                        names.join(", ")
                    )));
                };
                (Some(arguments), Vec::new(), Vec::new(), Some(function.clone()))
            }
            (Shape::Plain, _) => {
                let names: Vec<&str> = component.functions.iter().map(|f| f.name.as_str()).collect();
                return Err(InvokeError::WrongShape(format!(
                    "`{}` is a plain component: call one of its functions ({}) with JSON arguments",
                    ids.tool,
                    names.join(", ")
                )));
            }
            (shape, CallInput::Function { .. }) => {
                return Err(InvokeError::WrongShape(format!(
                    "`{}` is a {} component: it has no functions to call by name",
                    ids.tool,
                    shape.name()
                )));
            }
            (Shape::Tool, CallInput::Command { .. }) => {
                return Err(InvokeError::WrongShape(format!(
                    "`{}` is a tool component: call it with JSON input, not arguments",
                    ids.tool
                )));
            }
            (Shape::Command, CallInput::Tool(_)) => {
                return Err(InvokeError::WrongShape(format!(
                    "`{}` is a WASI command: call it with arguments and stdin, not JSON input",
                    ids.tool
                )));
            }
        };
        let input_size = (json.as_ref().map_or(0, String::len)
            + args.iter().map(|a| a.len() + 1).sum::<usize>()
            + stdin.len()) as u64;
        if input_size > limits.max_input.0 {
            return Err(InvokeError::Limit(LimitHit {
                kind: LimitKind::Input,
                value: limits.max_input.to_string(),
                detail: Some(format!("{input_size} bytes given")),
            }));
        }
        self.oversight
            .rates
            .take(&[(RateMetric::Calls, 1)], &self.principal, &ids.tool, &self.facts.rate_limits)
            .map_err(InvokeError::RateLimited)?;
        // A call rate far above the tool's or principal's usual one.
        let seen = self.oversight.watch.call(&self.principal, &ids.tool);
        noticed(&self.scope(), Some(&ids.invocation), &self.oversight, seen).map_err(|stopped| match stopped {
            Stopped::Denied(reason) => InvokeError::Denied { reason, policies: Vec::new() },
            Stopped::Killed(kill) => InvokeError::Killed { kill, running: false },
        })?;
        // Request-time policy sees each call, and every decision of the call
        // sees the digest of its input, where a policy reads it.
        let policies = call_context.task.point.policies();
        if policies.reads_input(&ids.tool) {
            let _ = call_context.input.set(input_digest(json.as_deref(), &args, &stdin));
        }
        if policies.decides("call", &ids.tool) {
            let asked = Request { who: &self.scope(), call: Some(&call_context), action: InvokeTool };
            govern(asked, PolicyAction::Call, None)
                .await
                .map_err(|denial| InvokeError::Denied { reason: denial.reason, policies: denial.policies })?;
        }
        let captured = Arc::new(std::sync::Mutex::new(Captured::default()));
        let sink = OutputSink { forward: call.output, captured: captured.clone() };

        let work = async {
            // Waiting for a slot counts against the call's time.
            let _slot = self.engine.slot().await?;
            let scratch = match &self.grant.scratch {
                Some(_) => Some(
                    self.scratch
                        .invocation_dir()
                        .map_err(|error| InvokeError::host("creating the call's scratch dir", error))?,
                ),
                None => None,
            };
            let scratch_path = scratch.as_ref().map(|dir| dir.path());
            let parts = StoreParts {
                ids,
                who: self.scope(),
                call: call_context,
                broker,
                network: self.network.clone(),
                deadline: started + timeout,
                sink,
                args: &args,
                stdin,
                scratch: scratch_path,
            };
            let mut store = build_store(&self.engine, parts)?;
            let classify = |error| classify(error, &meter, &self.engine.settings);
            let result = match (&component.pre, json) {
                (Pre::Plain(pre, _), Some(arguments)) => {
                    let function = function.expect("a plain call found its function above");
                    match plain_arguments(&function, &arguments) {
                        Err(reason) => {
                            let error = ToolError::InvalidInput(reason);
                            meter.take_output(error.to_string().len()).map_err(InvokeError::Limit)?;
                            CallResult::ToolError(error)
                        }
                        Ok(params) => {
                            let mut results = vec![Val::Bool(false); function.results.len()];
                            async {
                                let instance = pre.instantiate_async(&mut store).await?;
                                let func = instance
                                    .get_func(&mut store, function.export)
                                    .ok_or_else(|| wasmtime::Error::msg("the function's export is gone"))?;
                                func.call_async(&mut store, &params, &mut results).await
                            }
                            .await
                            .map_err(classify)?;
                            let output = match results.first() {
                                Some(value) => serde_json::json!({ "result": crate::schema::from_val(value) }),
                                None => serde_json::json!({}),
                            }
                            .to_string();
                            meter.take_output(output.len()).map_err(InvokeError::Limit)?;
                            CallResult::Output(output)
                        }
                    }
                }
                (Pre::Tool(pre), Some(json)) => {
                    let returned = async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance.call_invoke(&mut store, &json).await
                    }
                    .await
                    .map_err(classify)?;
                    // The result draws on the same output budget as stdout.
                    let (size, result) = match returned {
                        Ok(output) => (output.len(), CallResult::Output(output)),
                        Err(error) => {
                            let error = ToolError::from(error);
                            (error.to_string().len(), CallResult::ToolError(error))
                        }
                    };
                    meter.take_output(size).map_err(InvokeError::Limit)?;
                    result
                }
                (Pre::Command(pre), None) => {
                    let returned = async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance.wasi_cli_run().call_run(&mut store).await
                    }
                    .await;
                    match returned {
                        Ok(Ok(())) => CallResult::Exit(0),
                        Ok(Err(())) => CallResult::Exit(1),
                        Err(error) => match error.downcast_ref::<I32Exit>() {
                            Some(I32Exit(code)) => CallResult::Exit(*code),
                            None => return Err(classify(error)),
                        },
                    }
                }
                _ => unreachable!("the call's shape was matched to the component's above"),
            };
            // Teardown order: the store and instance first, then the scratch dir.
            drop(store);
            drop(scratch);
            Ok(result)
        };
        let result = with_timeout(timeout, cause, &meter, work).await?;
        let captured = std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(CallReport {
            invocation: ids.invocation.clone(),
            result,
            stdout: captured.stdout,
            stderr: captured.stderr,
            logs: captured.logs,
            duration: started.elapsed(),
        })
    }

    /// Closes the task: revokes its task-level credentials (an OpenBao child
    /// token, and every lease left under it) and writes its closing audit
    /// event. Dropping a task does the same, recorded as `dropped`, with the
    /// revocation in the background.
    pub async fn close(self) -> TaskSummary {
        // Calls that were cancelled finish their teardown first, so the
        // task's record closes after every invocation's.
        self.life.teardowns.idle().await;
        self.life.credentials.close().await;
        // The task's record is durable before its close is reported.
        let alone = self.oversight.live.open() <= 1;
        let summary = self.life.finish_durably("closed", alone).await;
        self.oversight.live.closed(&self.id);
        summary
    }

    /// Records the task closed (once; a kill may have closed it first) and
    /// takes it off the list of what is running.
    pub(crate) fn finish(&self, how: &'static str) -> TaskSummary {
        let summary = self.life.finish(how);
        self.oversight.live.closed(&self.id);
        summary
    }

    pub(crate) fn scope(&self) -> AuditScope {
        AuditScope {
            audit: self.audit.clone(),
            task: self.id.clone(),
            tool: self.tool.manifest.name.clone(),
            principal: self.principal.clone(),
            actor: self.actor.as_ref().map(ToString::to_string),
            request: self.request_id.clone(),
        }
    }

    pub(crate) fn event(&self, kind: AuditKind) -> AuditEvent {
        self.scope().event(kind)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // After `close` this finds nothing left to revoke.
        self.life.credentials.close_later();
        self.finish("dropped");
    }
}
