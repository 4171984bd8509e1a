//! Tasks and invocations: the runtime's public API for running tools.
//!
//! A [`Task`] is one unit of an agent's work: it holds a [`Grant`] (the
//! manifest narrowed by the task) for its whole life. Each [`Task::invoke`]
//! runs one call in a fresh `Store` and instance built from that grant, and
//! tears it down when the call ends however it ends — success, tool error,
//! trap, limit, host error, or the caller dropping the future. Closing the
//! task (or dropping it) writes its closing audit event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use secrecy::SecretString;

use wasmtime::component::{ResourceTable, Val};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::audit::{Audit, AuditEvent, AuditKind, AuditScope, now_rfc3339};
use crate::boundary::Boundary;
use crate::scratch::ScratchRoot;
use crate::caps::http::EgressHooks;
use crate::transport::Network;
use crate::caps::stdio::{CappedOutput, Captured, Channel, LogLine, OutputSender, OutputSink};
use crate::caps::{env, fs, net};
use crate::config::RuntimeConfig;
use crate::credentials::broker::Broker;
use crate::credentials::providers::Providers;
use crate::credentials::task_token::{TaskCredentials, Workload};
use crate::credentials::issuer::{AccessClaims, Issuer, VerifyError};
use crate::credentials::journal::LeaseJournal;
use crate::credentials::revoke::Revoker;
use crate::engine::{EngineSettings, FunctionInfo, LoadedComponent, PlainFunction, Pre, Shape, ToolEngine};
use crate::error::{InvokeError, LimitHit, LimitKind, LoadError, RuntimeError, TaskError};
use crate::grant::{Grant, Narrowing};
use crate::manifest::Manifest;
use crate::policy::limits::Limits;
use crate::meter::Meter;
use crate::store::{InvocationIds, InvocationState, MemoryLimiter, WitToolError, WitToolInfo};
use crate::units::{ByteSize, TimeSpan};

/// Runs tools: loads components, opens tasks, records the audit trail.
#[derive(Debug)]
pub struct Runtime {
    engine: Arc<ToolEngine>,
    network: Network,
    audit: Arc<Audit>,
    trust_domain: String,
    scratch: Arc<ScratchRoot>,
    boundary: Boundary,
    providers: Arc<Providers>,
}

/// A loaded tool: its manifest and its linked component.
#[derive(Debug)]
pub struct Tool {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The compiled, linked component.
    pub component: LoadedComponent,
}

/// What a tool says about itself (from `describe`, or made up for a command).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ToolInfo {
    /// Tool name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its output, if stated.
    pub output_schema: Option<serde_json::Value>,
    /// `tool`, `command` or `plain`.
    pub shape: &'static str,
    /// A plain component's functions, each a tool of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionInfo>,
}

/// What a caller asks for when opening a task.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// On whose behalf the task acts (a user, an agent, a service).
    pub principal: String,
    /// How long the task may live; invocations after it are refused and
    /// running ones are cut at it.
    pub deadline: Duration,
    /// What to keep of the manifest's grants.
    pub narrowing: Narrowing,
    /// The caller's id for the request behind the task (an MCP request id);
    /// every audit event of the task carries it.
    pub request_id: Option<String>,
}

impl TaskRequest {
    /// A request that keeps the manifest's grants.
    pub fn new(principal: impl Into<String>, deadline: Duration) -> TaskRequest {
        TaskRequest { principal: principal.into(), deadline, narrowing: Narrowing::default(), request_id: None }
    }
}

/// One call of a tool.
#[derive(Debug)]
pub struct Call {
    /// What goes in.
    pub input: CallInput,
    /// Where output streams while the call runs; `None` captures it into the report.
    pub output: Option<OutputSender>,
}

/// The input of a call, by component shape.
#[derive(Clone, Debug)]
pub enum CallInput {
    /// JSON for a tool's `invoke`.
    Tool(String),
    /// A plain component's function, by name, with a JSON object of its arguments.
    Function {
        /// `name` or `interface.name`, as in [`FunctionInfo`].
        name: String,
        /// JSON object: parameter name to value.
        arguments: String,
    },
    /// Arguments and stdin for a command's `run`.
    Command {
        /// Arguments after the program name.
        args: Vec<String>,
        /// Bytes on stdin.
        stdin: Vec<u8>,
    },
}

impl Call {
    /// A call of a tool component with JSON input.
    pub fn tool(input: impl Into<String>) -> Call {
        Call { input: CallInput::Tool(input.into()), output: None }
    }

    /// A call of one function of a plain component.
    pub fn function(name: impl Into<String>, arguments: impl Into<String>) -> Call {
        Call { input: CallInput::Function { name: name.into(), arguments: arguments.into() }, output: None }
    }

    /// A call of a command component.
    pub fn command(args: Vec<String>, stdin: Vec<u8>) -> Call {
        Call { input: CallInput::Command { args, stdin }, output: None }
    }

    /// Streams output to `sender` instead of capturing it.
    pub fn streaming(mut self, sender: OutputSender) -> Call {
        self.output = Some(sender);
        self
    }
}

/// What a finished call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// A tool's JSON output.
    Output(String),
    /// A tool's own error value.
    ToolError(ToolError),
    /// A command's exit code (0 is success).
    Exit(i32),
}

/// A tool's own error, as the WIT `tool-error` variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The input was wrong.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The tool was refused something.
    #[error("denied: {0}")]
    Denied(String),
    /// A system the tool talked to failed.
    #[error("upstream failure: {0}")]
    Upstream(String),
    /// Any other failure.
    #[error("failed: {0}")]
    Failed(String),
}

impl From<WitToolError> for ToolError {
    fn from(error: WitToolError) -> ToolError {
        match error {
            WitToolError::InvalidInput(m) => ToolError::InvalidInput(m),
            WitToolError::Denied(m) => ToolError::Denied(m),
            WitToolError::Upstream(m) => ToolError::Upstream(m),
            WitToolError::Failed(m) => ToolError::Failed(m),
        }
    }
}

/// A finished call.
#[derive(Clone, Debug)]
pub struct CallReport {
    /// Invocation id (in the audit trail).
    pub invocation: String,
    /// What it returned.
    pub result: CallResult,
    /// Captured stdout (empty when streamed).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty when streamed).
    pub stderr: Vec<u8>,
    /// Captured log lines (empty when streamed).
    pub logs: Vec<LogLine>,
    /// Wall-clock time of the call.
    pub duration: Duration,
}

impl CallReport {
    /// True for tool output and exit code 0.
    pub fn succeeded(&self) -> bool {
        matches!(self.result, CallResult::Output(_) | CallResult::Exit(0))
    }
}

/// How a task ended, for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSummary {
    /// Invocations run.
    pub invocations: u64,
    /// Invocations that did not succeed.
    pub failures: u64,
    /// How long it was open.
    pub duration: Duration,
}

impl Runtime {
    /// Builds a runtime with its own engine.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine = ToolEngine::new(config.engine.clone())?;
        Runtime::with_engine(engine, config)
    }

    /// Builds a runtime on an existing engine (`config.engine` is ignored).
    /// Runtimes sharing an engine share its compiled code and its
    /// concurrency limit.
    pub fn with_engine(engine: Arc<ToolEngine>, config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let audit = match &config.audit_log {
            Some(path) => Audit::to_file(path)?,
            None => Audit::tracing_only(),
        };
        let tls = Arc::new(crate::transport::tls_config(&config.tls_roots).map_err(RuntimeError::Tls)?);
        let audit = Arc::new(audit);
        let issuer_url =
            config.credentials.issuer.url.clone().unwrap_or_else(|| format!("https://{}", config.trust_domain));
        let issuer = Arc::new(match &config.credentials.issuer.keys {
            Some(path) => Issuer::open(issuer_url, path)?,
            None => Issuer::new(issuer_url),
        });
        let (journal, leftovers) = match &config.lease_journal {
            Some(path) => {
                let (journal, leftovers) = LeaseJournal::open(path)?;
                (Some(journal), leftovers)
            }
            None => (None, Vec::new()),
        };
        let scratch_root = config.scratch_root.clone().unwrap_or_else(std::env::temp_dir);
        let scratch = ScratchRoot::open(&scratch_root)
            .map_err(|cause| RuntimeError::Scratch { path: scratch_root.clone(), cause })?;
        let boundary = Boundary::new(&config, scratch.dir());
        let providers = Arc::new(Providers::new(config.credentials, issuer, journal, &tls));
        // What a runtime that crashed mid-task left is revoked first.
        providers.recover(leftovers, &audit);
        Ok(Runtime {
            engine,
            network: Network { resolver: config.resolver, tls },
            audit,
            trust_domain: config.trust_domain,
            scratch: Arc::new(scratch),
            boundary,
            providers,
        })
    }

    /// This runtime's scratch directory: each invocation granted scratch
    /// space gets a fresh directory inside it.
    pub fn scratch_dir(&self) -> &std::path::Path {
        self.scratch.dir()
    }

    /// The built-in issuer's public keys (a JWKS, RFC 7517), for services
    /// that verify the tokens tools carry.
    pub fn jwks(&self) -> serde_json::Value {
        self.providers.issuer.jwks()
    }

    /// The built-in issuer: its URL, rotation of its keys, and verification.
    pub fn issuer(&self) -> &Issuer {
        &self.providers.issuer
    }

    /// Verifies an issuer token for `audience` as this runtime sees it:
    /// revoked tokens (every token after its call's teardown) are refused.
    pub fn verify_token(&self, token: &SecretString, audience: &str) -> Result<AccessClaims, VerifyError> {
        self.providers.issuer.verify(token, audience)
    }

    /// An RFC 7662 introspection answer for `token`: `"active": true` with
    /// its claims while it is one of this runtime's issuer tokens, unexpired
    /// and not revoked; `"active": false` (and nothing else) otherwise — the
    /// moment the call that minted it ends, its token answers inactive.
    pub fn introspect(&self, token: &SecretString) -> serde_json::Value {
        match self.providers.issuer.introspect(token) {
            Ok(claims) => serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "iss": claims.iss,
                "sub": claims.sub,
                "aud": claims.aud,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "exp": claims.exp,
                "jti": claims.jti,
                "scope": claims.scope,
                "client_id": claims.client_id,
                "act": claims.act,
            }),
            Err(_) => serde_json::json!({ "active": false }),
        }
    }

    /// Waits until revocations retrying in the background have finished, or
    /// `within` has passed; returns how many are still pending. A process
    /// about to exit calls this; what is still pending stays in the lease
    /// journal for the next start.
    pub async fn settle_revocations(&self, within: Duration) -> usize {
        self.providers.revoker.settled(within).await
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<ToolEngine> {
        &self.engine
    }

    /// The audit trail.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Loads the component a manifest names, checking its pin, after
    /// checking the manifest against the operator's boundary (see
    /// `boundary.rs`: credential lifetimes, where static secrets and
    /// plaintext credentials may go, reserved variables and directories).
    pub fn load_tool(&self, manifest: Manifest) -> Result<Arc<Tool>, LoadError> {
        if let Err(crossing) = self.boundary.check(&manifest) {
            return Err(LoadError::Boundary { tool: manifest.name.clone(), field: crossing.field, reason: crossing.reason });
        }
        let ceiling = self.engine.settings.max_memory;
        if manifest.limits.memory > ceiling {
            return Err(LoadError::MemoryAboveCeiling {
                tool: manifest.name.clone(),
                limit: manifest.limits.memory.to_string(),
                ceiling: ceiling.to_string(),
            });
        }
        let component = self.engine.load(&manifest.component, manifest.sha256.as_ref())?;
        Ok(Arc::new(Tool { manifest, component }))
    }

    /// Describes a tool by calling its `describe` in a fresh instance that is
    /// granted nothing. Commands are described from their manifest.
    pub async fn describe(&self, tool: &Tool) -> Result<ToolInfo, InvokeError> {
        let manifest = &tool.manifest;
        if tool.component.shape == Shape::Plain {
            let names: Vec<&str> = tool.component.functions.iter().map(|f| f.name.as_str()).collect();
            return Ok(ToolInfo {
                name: manifest.name.clone(),
                description: format!("{} (exports {})", manifest.purpose, names.join(", ")),
                input_schema: serde_json::json!({
                    "type": "object",
                    "properties": {
                        "function": { "type": "string", "enum": names },
                        "arguments": { "type": "object" }
                    },
                    "required": ["function"]
                }),
                output_schema: None,
                shape: Shape::Plain.name(),
                functions: tool.component.functions.clone(),
            });
        }
        let Pre::Tool(pre) = &tool.component.pre else {
            return Ok(ToolInfo {
                name: manifest.name.clone(),
                description: format!("WASI command: {}", manifest.purpose),
                input_schema: serde_json::json!({
                    "type": "object",
                    "properties": {
                        "args": { "type": "array", "items": { "type": "string" } },
                        "stdin": { "type": "string" }
                    },
                    "additionalProperties": false
                }),
                output_schema: None,
                shape: Shape::Command.name(),
                functions: Vec::new(),
            });
        };
        let grant = Grant::new(
            &Manifest {
                filesystem: vec![],
                env: vec![],
                scratch: None,
                egress: vec![],
                sockets: vec![],
                credentials: vec![],
                ..manifest.clone()
            },
            &Narrowing::default(),
        )
        .map(Arc::new)
        .map_err(|error| InvokeError::Host(error.to_string()))?;
        let ids = InvocationIds { task: "describe".into(), invocation: new_id(), tool: manifest.name.clone() };
        let meter = Arc::new(Meter::new(&grant.limits));
        let sink = OutputSink { forward: None, captured: Default::default() };
        let work = async {
            let _slot = self.engine.slots.acquire().await.map_err(|_| InvokeError::Host("engine closed".into()))?;
            // `describe` is granted nothing, egress included.
            let audit = AuditScope {
                audit: self.audit.clone(),
                task: ids.task.clone(),
                tool: ids.tool.clone(),
                principal: "toolcell".into(),
                request: None,
            };
            let deadline = Instant::now() + grant.limits.timeout.0;
            let broker = Arc::new(Broker::granting_nothing(
                self.providers.clone(),
                grant.clone(),
                audit.clone(),
                ids.invocation.clone(),
                meter.clone(),
            ));
            let egress = EgressHooks::new(
                grant.clone(),
                self.network.clone(),
                audit,
                ids.invocation.clone(),
                deadline,
                broker.clone(),
                meter.clone(),
            );
            let mut store =
                build_store(&self.engine, &grant, &ids, &meter, sink, &[], Vec::new(), None, egress, broker)?;
            let info: WitToolInfo = async {
                let instance = pre.instantiate_async(&mut store).await?;
                instance.call_describe(&mut store).await
            }
            .await
            .map_err(|error| classify(error, &meter, &self.engine.settings))?;
            Ok::<_, InvokeError>(info)
        };
        let info = with_timeout(grant.limits.timeout.0, None, &meter, work).await?;
        let parse = |what: &str, text: &str| {
            serde_json::from_str(text).map_err(|error| InvokeError::Host(format!("tool's {what} is not JSON: {error}")))
        };
        Ok(ToolInfo {
            input_schema: parse("input schema", &info.input_schema)?,
            output_schema: info.output_schema.as_deref().map(|s| parse("output schema", s)).transpose()?,
            name: info.name,
            description: info.description,
            shape: Shape::Tool.name(),
            functions: Vec::new(),
        })
    }

    /// Opens a task: validates the narrowing against the manifest into a
    /// grant, and records the grant in the audit trail.
    pub fn open_task(&self, tool: &Arc<Tool>, request: TaskRequest) -> Result<Task, TaskError> {
        if request.principal.trim().is_empty() {
            return Err(TaskError::NoPrincipal);
        }
        let id = new_id();
        let grant = match Grant::new(&tool.manifest, &request.narrowing) {
            Ok(grant) => grant,
            Err(error) => {
                // A refusal is a decision too: it goes on the record.
                self.audit.record(AuditEvent {
                    time: now_rfc3339(),
                    task: id,
                    tool: tool.manifest.name.clone(),
                    principal: request.principal,
                    request: request.request_id,
                    kind: AuditKind::TaskRefused { reason: error.what.clone() },
                })?;
                return Err(error.into());
            }
        };
        let workload = format!("spiffe://{}/tool/{}/task/{id}", self.trust_domain, tool.manifest.name);
        let opened = Instant::now();
        let credentials = Arc::new(TaskCredentials::new(
            self.providers.clone(),
            Workload {
                id: workload.clone(),
                principal: request.principal.clone(),
                tool: tool.manifest.name.clone(),
                task: id.clone(),
            },
            SystemTime::now() + request.deadline,
            AuditScope {
                audit: self.audit.clone(),
                task: id.clone(),
                tool: tool.manifest.name.clone(),
                principal: request.principal.clone(),
                request: request.request_id.clone(),
            },
            &grant.credentials,
        ));
        let task = Task {
            credentials,
            providers: self.providers.clone(),
            id,
            workload,
            principal: request.principal,
            request_id: request.request_id,
            opened,
            deadline: opened + request.deadline,
            grant: Arc::new(grant),
            tool: tool.clone(),
            engine: self.engine.clone(),
            network: self.network.clone(),
            audit: self.audit.clone(),
            scratch: self.scratch.clone(),
            invocations: AtomicU64::new(0),
            failures: Arc::new(AtomicU64::new(0)),
            teardowns: Arc::new(Teardowns::default()),
            closed: AtomicBool::new(false),
        };
        task.audit.record(task.event(AuditKind::TaskOpened {
            workload: task.workload.clone(),
            deadline_ms: millis(request.deadline),
            grant: task.grant.summary(),
        }))?;
        Ok(task)
    }
}

/// One task: a grant held for a principal until a deadline.
#[derive(Debug)]
pub struct Task {
    /// Task-level credential state (an OpenBao child token).
    credentials: Arc<TaskCredentials>,
    providers: Arc<Providers>,
    id: String,
    workload: String,
    principal: String,
    request_id: Option<String>,
    opened: Instant,
    deadline: Instant,
    grant: Arc<Grant>,
    tool: Arc<Tool>,
    engine: Arc<ToolEngine>,
    network: Network,
    audit: Arc<Audit>,
    scratch: Arc<ScratchRoot>,
    invocations: AtomicU64,
    failures: Arc<AtomicU64>,
    /// Invocation teardowns still running on the runtime's side.
    teardowns: Arc<Teardowns>,
    closed: AtomicBool,
}

/// Counts a task's invocation teardowns that have not finished, so closing
/// the task waits for them (a cancelled call's teardown runs on its own).
#[derive(Debug, Default)]
struct Teardowns {
    running: std::sync::Mutex<usize>,
    idle: tokio::sync::Notify,
}

impl Teardowns {
    fn started(&self) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn ended(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *running -= 1;
        if *running == 0 {
            self.idle.notify_waiters();
        }
    }

    async fn finished(&self) {
        loop {
            let idle = self.idle.notified();
            if *self.running.lock().unwrap_or_else(|p| p.into_inner()) == 0 {
                return;
            }
            idle.await;
        }
    }
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
        self.invocations.fetch_add(1, Ordering::Relaxed);
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
        let broker = Arc::new(Broker::new(
            self.providers.clone(),
            self.credentials.clone(),
            self.grant.clone(),
            ids.invocation.clone(),
            SystemTime::now() + timeout,
            meter.clone(),
        ));
        let mut teardown = Teardown {
            scope: self.scope(),
            failures: self.failures.clone(),
            teardowns: self.teardowns.clone(),
            revoker: self.providers.revoker.clone(),
            invocation: ids.invocation.clone(),
            started,
            broker: broker.clone(),
            done: false,
        };
        let run = self.run(&ids, call, started, (timeout, cause), broker, meter);
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
        meter: Arc<Meter>,
    ) -> Result<CallReport, InvokeError> {
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
        let captured = Arc::new(std::sync::Mutex::new(Captured::default()));
        let sink = OutputSink { forward: call.output, captured: captured.clone() };

        let work = async {
            // Waiting for a slot counts against the call's time.
            let _slot = self.engine.slots.acquire().await.map_err(|_| InvokeError::Host("engine closed".into()))?;
            let scratch = match &self.grant.scratch {
                Some(_) => Some(
                    self.scratch
                        .invocation_dir()
                        .map_err(|error| InvokeError::Host(format!("cannot create scratch dir: {error}")))?,
                ),
                None => None,
            };
            let scratch_path = scratch.as_ref().map(|dir| dir.path());
            let egress = EgressHooks::new(
                self.grant.clone(),
                self.network.clone(),
                self.scope(),
                ids.invocation.clone(),
                started + timeout,
                broker.clone(),
                meter.clone(),
            );
            let mut store =
                build_store(&self.engine, &self.grant, ids, &meter, sink, &args, stdin, scratch_path, egress, broker)?;
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
        self.teardowns.finished().await;
        self.credentials.close().await;
        self.finish("closed")
    }

    fn finish(&self, how: &'static str) -> TaskSummary {
        let summary = TaskSummary {
            invocations: self.invocations.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            duration: self.opened.elapsed(),
        };
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.audit.record_or_log(self.event(AuditKind::TaskClosed {
                how,
                duration_ms: millis(summary.duration),
                invocations: summary.invocations,
                failures: summary.failures,
            }));
        }
        summary
    }

    fn scope(&self) -> AuditScope {
        AuditScope {
            audit: self.audit.clone(),
            task: self.id.clone(),
            tool: self.tool.manifest.name.clone(),
            principal: self.principal.clone(),
            request: self.request_id.clone(),
        }
    }

    fn event(&self, kind: AuditKind) -> AuditEvent {
        self.scope().event(kind)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // After `close` this finds nothing left to revoke.
        self.credentials.close_later();
        self.finish("dropped");
    }
}

/// Closes an invocation on every path: `finish` on the paths that return,
/// `Drop` when the caller dropped the future. Either way the credentials are
/// revoked and the closing event written by runtime-owned work, so dropping
/// the caller's future part-way through cannot cut the teardown short.
struct Teardown {
    scope: AuditScope,
    failures: Arc<AtomicU64>,
    teardowns: Arc<Teardowns>,
    revoker: Arc<Revoker>,
    invocation: String,
    started: Instant,
    broker: Arc<Broker>,
    done: bool,
}

/// How an invocation ended, for its closing event.
struct Ending {
    outcome: &'static str,
    exit_code: Option<i32>,
    reason: Option<String>,
}

impl Teardown {
    /// The call returned: its outcome is settled now, then the teardown runs.
    async fn finish(&mut self, result: &Result<CallReport, InvokeError>) {
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
    fn close(&self, ending: Ending) -> tokio::sync::oneshot::Receiver<()> {
        if ending.outcome != "ok" {
            self.failures.fetch_add(1, Ordering::Relaxed);
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
            });
            let _ = done.send(());
            return closed;
        }
        self.teardowns.started();
        let teardowns = self.teardowns.clone();
        let broker = self.broker.clone();
        let scope = self.scope.clone();
        let invocation = self.invocation.clone();
        let started = self.started;
        self.revoker.run_owned(async move {
            broker.close().await;
            scope.record_or_log(AuditKind::InvocationEnded {
                invocation,
                outcome: ending.outcome,
                exit_code: ending.exit_code,
                reason: ending.reason,
                duration_ms: millis(started.elapsed()),
            });
            teardowns.ended();
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
async fn with_timeout<T>(
    timeout: Duration,
    cause: Option<&str>,
    meter: &Meter,
    work: impl Future<Output = Result<T, InvokeError>>,
) -> Result<T, InvokeError> {
    // A limit recorded by host code (refusals) stops the call as soon as it is recorded.
    let work = async {
        tokio::select! {
            result = work => result,
            hit = meter.stopped() => Err(InvokeError::Limit(hit)),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_elapsed) => Err(InvokeError::Limit(meter.record(LimitHit {
            kind: LimitKind::Timeout,
            value: TimeSpan(timeout).to_string(),
            detail: cause.map(str::to_owned),
        }))),
    }
}

/// Builds the store of one invocation from the grant.
#[allow(clippy::too_many_arguments, reason = "each argument is one part of the store; issue 12 makes them one struct")]
fn build_store(
    engine: &ToolEngine,
    grant: &Grant,
    ids: &InvocationIds,
    meter: &Arc<Meter>,
    sink: OutputSink,
    args: &[String],
    stdin: Vec<u8>,
    scratch: Option<&std::path::Path>,
    egress: EgressHooks,
    credentials: Arc<Broker>,
) -> Result<Store<InvocationState>, InvokeError> {
    let mut wasi = WasiCtxBuilder::new();
    env::grant_env(&mut wasi, grant);
    fs::grant_dirs(&mut wasi, grant, scratch)?;
    net::grant_sockets(&mut wasi, grant);
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
        egress,
        credentials,
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|state| &mut state.memory);
    cpu_limit(&mut store, &grant.limits, engine.settings.epoch_tick, meter.clone());
    Ok(store)
}

/// Counts epoch ticks during which guest code ran. The callback only fires
/// while the guest executes (at function entries and loop heads), so time
/// spent waiting in host calls is not counted; every tick also yields to the
/// executor so the wall-clock timeout can fire during a busy loop.
fn cpu_limit(store: &mut Store<InvocationState>, limits: &Limits, tick: Duration, meter: Arc<Meter>) {
    let budget = (limits.cpu.0.as_nanos() / tick.as_nanos().max(1)).max(1) as u64;
    let value = limits.cpu.to_string();
    let mut used: u64 = 0;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        used += 1;
        if used > budget {
            let hit = meter.record(LimitHit { kind: LimitKind::Cpu, value: value.clone(), detail: None });
            return Err(wasmtime::Error::msg(hit.to_string()));
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

/// Names the cause of a failed call: a recorded limit first, then the
/// engine's own traps, then anything else as a host error.
fn classify(error: wasmtime::Error, meter: &Meter, settings: &EngineSettings) -> InvokeError {
    if let Some(hit) = meter.hit() {
        return InvokeError::Limit(hit);
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
        None => InvokeError::Host(format!("{error:#}")),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
