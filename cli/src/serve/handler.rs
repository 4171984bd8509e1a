//! The MCP side: `tools/list` from the catalog and `tools/call` as one task
//! per call — the caller's principal, the manifest's deadline, an optional
//! narrowing from `_meta`, cancellation and progress — all through the
//! runtime's public API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;
use toolcell_runtime::identity::{Actor, ResourceServer, ToolAccess};
use toolcell_runtime::{Call, CallResult, InvokeError, Narrowing, Runtime, TaskRequest};

use super::catalog::{Catalog, Sources};

/// Who is calling, set by the HTTP transport from the bearer token.
#[derive(Clone, Debug)]
pub struct Caller {
    /// On whose behalf the calls act.
    pub principal: String,
    /// The agent acting for the principal, from an OAuth token.
    pub actor: Option<Actor>,
    /// An OAuth token's scopes; `None` for callers that are not limited by
    /// scope (stdio, static tokens).
    pub scopes: Option<Vec<String>>,
}

impl Caller {
    /// A caller no OAuth token describes.
    pub fn local(principal: String) -> Caller {
        Caller { principal, actor: None, scopes: None }
    }
}

/// What every connection shares.
pub struct State {
    pub runtime: Runtime,
    pub sources: Sources,
    catalog: RwLock<Arc<Catalog>>,
    /// Set once the first catalog is in: the transport answers `initialize`
    /// while the tools load, and `tools/list` and `tools/call` wait for it.
    loaded: tokio::sync::watch::Sender<bool>,
    /// Clients to tell when the tool list changes.
    peers: Mutex<Vec<Peer<RoleServer>>>,
    calls: Arc<tokio::sync::Semaphore>,
    max_calls: usize,
    /// Calls running per principal, against `max_calls_per_principal`.
    by_principal: Mutex<HashMap<String, usize>>,
    max_calls_per_principal: usize,
    /// The principal of calls that arrive without one (stdio: the local user).
    pub default_principal: String,
    /// The authorization server whose tokens identify HTTP callers, once
    /// the HTTP transport has started with `[serve.oauth]`.
    pub oauth: std::sync::OnceLock<Arc<ResourceServer>>,
    /// Cancelled when the server stops: no call starts after it, and every
    /// running call is cancelled (its teardown revokes what it minted).
    pub shutdown: CancellationToken,
    /// Handlers of `tools/call` that have not yet finished their teardown.
    running: Mutex<usize>,
    finished: tokio::sync::Notify,
}

/// Counts one `tools/call` handler from its start to the end of its
/// teardown (task closed), and its principal's share of the caps.
struct Running<'a> {
    state: &'a State,
    principal: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut by_principal = self.state.by_principal.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = by_principal.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                by_principal.remove(&self.principal);
            }
        }
        drop(by_principal);
        let mut running = self.state.running.lock().unwrap_or_else(|p| p.into_inner());
        *running -= 1;
        if *running == 0 {
            self.state.finished.notify_waiters();
        }
    }
}

impl State {
    /// The shared state, its catalog still empty: see [`State::first_catalog`].
    pub fn new(runtime: Runtime, sources: Sources, limits: (usize, usize), default_principal: String) -> State {
        let (max_calls, max_calls_per_principal) = limits;
        State {
            runtime,
            sources,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            loaded: tokio::sync::watch::channel(false).0,
            peers: Mutex::new(Vec::new()),
            calls: Arc::new(tokio::sync::Semaphore::new(max_calls)),
            max_calls,
            by_principal: Mutex::new(HashMap::new()),
            max_calls_per_principal,
            default_principal,
            oauth: std::sync::OnceLock::new(),
            shutdown: CancellationToken::new(),
            running: Mutex::new(0),
            finished: tokio::sync::Notify::new(),
        }
    }

    /// Calls whose handlers have not finished their teardown.
    pub fn running(&self) -> usize {
        *self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when every `tools/call` handler has finished its teardown
    /// (after a shutdown: every cancelled call has handed its revocations
    /// to the runtime, so settling them next misses none).
    pub async fn calls_finished(&self) {
        loop {
            let finished = self.finished.notified();
            if self.running() == 0 {
                return;
            }
            finished.await;
        }
    }

    /// Admits one call for `principal`, or says which cap refused it.
    fn admit(&self, principal: &str) -> Result<Running<'_>, String> {
        if self.shutdown.is_cancelled() {
            return Err("toolcell is shutting down and takes no new calls".into());
        }
        let mut by_principal = self.by_principal.lock().unwrap_or_else(|p| p.into_inner());
        let count = by_principal.entry(principal.to_owned()).or_insert(0);
        if *count >= self.max_calls_per_principal {
            return Err(format!(
                "principal `{principal}` is running its limit of {} calls at once (serve.max_calls_per_principal); \
                 retry later",
                self.max_calls_per_principal
            ));
        }
        *count += 1;
        drop(by_principal);
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(Running { state: self, principal: principal.to_owned() })
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The catalog, once the first one is loaded.
    pub async fn loaded_catalog(&self) -> Arc<Catalog> {
        // The sender lives as long as `self`: the wait ends only when loaded.
        let _ = self.loaded.subscribe().wait_for(|loaded| *loaded).await;
        self.catalog()
    }

    /// Puts in the first catalog and lets waiting requests through.
    pub fn first_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
        self.loaded.send_replace(true);
    }

    /// Swaps in a rebuilt catalog and tells every client the list changed.
    pub async fn replace_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
        let peers: Vec<Peer<RoleServer>> = self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut alive = Vec::new();
        for peer in peers {
            if peer.notify_tool_list_changed().await.is_ok() {
                alive.push(peer);
            }
        }
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = alive;
    }
}

/// One MCP connection's handler.
#[derive(Clone)]
pub struct Server {
    pub state: Arc<State>,
}

const NARROWING_KEY: &str = "toolcell/narrowing";

/// The JSON-RPC error code of a call a rate limit refused (its `data` says
/// which limit and `retry_after_seconds`).
pub const RATE_LIMITED: i32 = -32029;

/// The narrowing a client may pass in `_meta["toolcell/narrowing"]`: the
/// runtime's one JSON shape (`Narrowing::from_json`).
fn narrowing(meta: Option<&serde_json::Value>) -> Result<Narrowing, String> {
    let Some(value) = meta else { return Ok(Narrowing::default()) };
    Narrowing::from_json(value).map_err(|e| format!("_meta[\"{NARROWING_KEY}\"]: {e}"))
}

fn failed(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message.into())]).into()
}

impl Server {
    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .unwrap_or_else(|| Caller::local(self.state.default_principal.clone()))
    }

    /// Whether `caller` may see and call `tool`: callers with OAuth scopes
    /// only the tools `[serve.oauth] tool_scopes` gives those scopes.
    fn access(&self, caller: &Caller, tool: &str) -> ToolAccess {
        match (self.state.oauth.get(), &caller.scopes) {
            (Some(oauth), Some(scopes)) => oauth.tool_access(scopes, tool),
            _ => ToolAccess::Allowed,
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("toolcell", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool runs sandboxed: every call is a fresh task with only what the tool's manifest grants. \
                 Errors name the limit or rule that refused.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut peers = self.state.peers.lock().unwrap_or_else(|p| p.into_inner());
        // Clients that went away are forgotten here, so the list stays as long as the live ones.
        peers.retain(|peer| !peer.is_transport_closed());
        peers.push(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&context);
        let mut tools = self.state.loaded_catalog().await.tools();
        tools.retain(|tool| self.access(&caller, &tool.name) == ToolAccess::Allowed);
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let catalog = self.state.loaded_catalog().await;
        let caller = self.caller(&context);
        let access = self.access(&caller, &request.name);
        let Some(entry) = catalog.find(&request.name).filter(|_| access != ToolAccess::NotOffered) else {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`; tools/list names the tools served to this caller", request.name),
                None,
            ));
        };
        if let ToolAccess::NeedsScope(scope) = access {
            return Err(McpError::new(
                ErrorCode(-32000),
                format!("tool `{}` needs scope `{scope}`, which the caller's token does not carry", request.name),
                Some(serde_json::json!({ "type": "insufficient_scope", "scope": scope })),
            ));
        }
        let principal = caller.principal.clone();
        let _running = match self.state.admit(&principal) {
            Ok(running) => running,
            Err(reason) => return Err(McpError::new(ErrorCode(-32000), reason, None)),
        };
        // A full server answers at once rather than queueing without bound.
        let Ok(_slot) = self.state.calls.clone().try_acquire_owned() else {
            return Err(McpError::new(
                ErrorCode(-32000),
                format!(
                    "toolcell is running its limit of {} calls at once (serve.max_concurrent_calls); retry later",
                    self.state.max_calls
                ),
                None,
            ));
        };
        let meta = context.meta.get(NARROWING_KEY).or_else(|| request.meta.as_ref().and_then(|m| m.get(NARROWING_KEY)));
        let narrowing = match narrowing(meta) {
            Ok(narrowing) => narrowing,
            Err(reason) => return Ok(failed(format!("invalid narrowing: {reason}"))),
        };
        let tool = entry.tool.clone();
        // A person at the client can answer this call's approvals, where it can be asked.
        let approval_channel = super::elicit::Elicitation::for_client(&context.peer)
            .map(|channel| Arc::new(channel) as Arc<dyn toolcell_runtime::ApprovalChannel>);
        let task_request = TaskRequest {
            request_id: Some(context.id.to_string()),
            approval_channel,
            actor: caller.actor,
            scopes: caller.scopes.unwrap_or_default(),
            ..TaskRequest::one_call(principal, &tool, narrowing)
        };
        let task = match self.state.runtime.open_task(&tool, task_request) {
            Ok(task) => task,
            Err(error) => return Ok(failed(format!("refused: {error}"))),
        };
        let arguments = serde_json::Value::Object(request.arguments.clone().unwrap_or_default());
        let call = match Call::from_json(&tool, entry.function.as_deref(), &arguments) {
            Ok(call) => call,
            Err(reason) => return Ok(failed(format!("invalid input: {reason}"))),
        };

        let progress = context.meta.get_progress_token().map(|token| {
            let peer = context.peer.clone();
            tokio::spawn(async move {
                // Calls longer than a second report once a second while they run.
                let started = Instant::now();
                let mut ticks = tokio::time::interval_at(
                    tokio::time::Instant::now() + Duration::from_secs(1),
                    Duration::from_secs(1),
                );
                loop {
                    ticks.tick().await;
                    let seconds = started.elapsed().as_secs();
                    let param = ProgressNotificationParam::new(token.clone(), seconds as f64)
                        .with_message(format!("running for {seconds}s"));
                    if peer.notify_progress(param).await.is_err() {
                        return;
                    }
                }
            })
        });
        let outcome = tokio::select! {
            outcome = task.invoke(call) => Some(outcome),
            // The client cancelled, or the server is stopping: dropping the
            // call tears it down (audited as cancelled), on the runtime's side.
            () = context.ct.cancelled() => None,
            () = self.state.shutdown.cancelled() => None,
        };
        if let Some(progress) = progress {
            progress.abort();
        }
        task.close().await;
        let Some(outcome) = outcome else {
            if self.state.shutdown.is_cancelled() {
                return Err(McpError::new(
                    ErrorCode(-32000),
                    "toolcell is shutting down; the call was cancelled",
                    None,
                ));
            }
            return Err(McpError::new(ErrorCode(-32800), "the client cancelled the call", None));
        };
        Ok(match outcome {
            // A client can act on a rate limit: the error says which, and when to retry.
            Err(InvokeError::RateLimited(limited)) => {
                let data = serde_json::json!({
                    "type": "rate_limited",
                    "limit": limited.metric,
                    "value": limited.limit,
                    "scope": limited.scope,
                    "retry_after_seconds": limited.retry_after.as_secs_f64().ceil() as u64,
                });
                return Err(McpError::new(ErrorCode(RATE_LIMITED), format!("call refused: {limited}"), Some(data)));
            }
            Err(error) => failed(error.to_string()),
            Ok(report) => match report.result {
                CallResult::Output(json) => {
                    let value: Option<serde_json::Value> = serde_json::from_str(&json).ok();
                    let mut result = CallToolResult::success(vec![ContentBlock::text(json)]);
                    if entry.structured {
                        result.structured_content = value.filter(serde_json::Value::is_object);
                    }
                    result.into()
                }
                CallResult::ToolError(error) => failed(error.to_string()),
                CallResult::Exit(code) => {
                    let stdout = String::from_utf8_lossy(&report.stdout).into_owned();
                    let stderr = String::from_utf8_lossy(&report.stderr).into_owned();
                    let value = serde_json::json!({ "exit_code": code, "stdout": stdout, "stderr": stderr });
                    let mut result = if code == 0 {
                        CallToolResult::success(vec![ContentBlock::text(stdout)])
                    } else {
                        CallToolResult::error(vec![ContentBlock::text(format!("exit code {code}\n{stderr}"))])
                    };
                    result.structured_content = Some(value);
                    result.into()
                }
            },
        })
    }
}
