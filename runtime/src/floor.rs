//! The bare-engine floor a sandboxed call is measured against: the same
//! component on the same engine, called the cheapest way wasmtime allows —
//! a cached `InstancePre`, a fresh `Store` with an empty WASI context, one
//! call, drop — with none of toolcell's grant, limits, meters, hooks or
//! audit. `toolcell bench` reports a tool's calls as a ratio to it.
//!
//! Given a grant, the floor's WASI context gets the same directories and
//! variables, so a tool that reads files does the same work on both sides.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker, ResourceTable, Val};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::call::CallInput;
use crate::caps::http::SendRequestFuture;
use crate::engine::Tool;
use crate::engine::{PlainFunction, Pre, Shape, ToolEngine};
use crate::error::LoadError;
use crate::grant::Grant;

/// The data of a floor's store: an empty (or given) WASI context and
/// `wasi:http` with hooks `H` — [`NoEgress`] unless a bench sends requests.
pub struct FloorState<H = NoEgress> {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: H,
}

impl<H> std::fmt::Debug for FloorState<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorState").finish_non_exhaustive()
    }
}

impl<H> FloorState<H> {
    /// A floor store's data with `wasi` and `hooks`.
    pub fn new(wasi: WasiCtx, hooks: H) -> FloorState<H> {
        FloorState { wasi, table: ResourceTable::new(), http: WasiHttpCtx::new(), hooks }
    }

    /// A fresh store on `engine` holding this state, never interrupted: the
    /// engine interrupts on epochs, and the floor has no CPU limit.
    pub fn into_store(self, engine: &ToolEngine) -> Store<FloorState<H>> {
        let mut store = Store::new(&engine.engine, self);
        store.set_epoch_deadline(u64::MAX / 2);
        store
    }
}

/// `wasi:http` hooks that send nothing: the floor links wasi:http as toolcell
/// does, without toolcell's egress checks (and without any egress).
#[derive(Debug, Default)]
pub struct NoEgress;

impl WasiHttpHooks for NoEgress {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _errors: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendRequestFuture {
        Box::new(std::future::ready(Err(wasmtime_wasi_http::Error::HttpRequestDenied)))
    }
}

impl<H: WasiHttpHooks + Send + 'static> WasiHttpView for FloorState<H> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { hooks: &mut self.hooks, table: &mut self.table, ctx: &mut self.http }
    }
}

impl<H: Send + 'static> WasiView for FloorState<H> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The host type behind the floor's `credential` handles (never created).
struct NoCredential;

/// A linker for a floor: WASI 0.2 and `wasi:http` as toolcell links them,
/// with toolcell's own imports stubbed (logging does nothing, credentials
/// trap). Benches with their own floor state use it too.
pub fn floor_linker<T: WasiView + WasiHttpView + 'static>(engine: &ToolEngine) -> wasmtime::Result<Linker<T>> {
    let mut linker: Linker<T> = Linker::new(&engine.engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    // (`define_unknown_imports_as_traps` would also redefine the WASI
    // interfaces a component imports at another 0.2.x version, and fail.)
    stub_toolcell_imports(&mut linker)?;
    Ok(linker)
}

fn stub_toolcell_imports<T: 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.instance("toolcell:tool/log@0.1.0")?.func_new("log", |_, _, _, _| Ok(()))?;
    let mut credentials = linker.instance("toolcell:tool/credentials@0.1.0")?;
    credentials.resource("credential", wasmtime::component::ResourceType::host::<NoCredential>(), |_, _| Ok(()))?;
    for name in [
        "acquire",
        "[method]credential.name",
        "[method]credential.scopes",
        "[method]credential.audience",
        "[method]credential.expires-at",
        "[method]credential.reveal",
    ] {
        credentials
            .func_new(name, move |_, _, _, _| Err(wasmtime::Error::msg(format!("the floor has no `{name}`"))))?;
    }
    Ok(())
}

/// A tool's floor, ready to call.
pub struct Floor {
    engine: Arc<ToolEngine>,
    pre: InstancePre<FloorState>,
    target: ComponentExportIndex,
    shape: Shape,
    results: usize,
    /// A plain component's function: its parameter types, to convert arguments.
    function: Option<PlainFunction>,
    /// The directories and variables to give the floor's WASI context.
    grant: Option<Grant>,
    /// argv[0] of a command.
    program: String,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor").field("shape", &self.shape).finish_non_exhaustive()
    }
}

impl Floor {
    /// The floor of `tool` (for a plain component, of its function
    /// `function`), with `grant`'s directories and variables if given.
    pub fn new(
        engine: &Arc<ToolEngine>,
        tool: &Tool,
        function: Option<&str>,
        grant: Option<&Grant>,
    ) -> Result<Floor, LoadError> {
        let component = &tool.component.component;
        let path = tool.component.path.clone();
        let link = |error: wasmtime::Error| LoadError::Imports { path: path.clone(), reason: format!("{error:#}") };
        let linker = floor_linker::<FloorState>(engine).map_err(link)?;
        let pre = linker.instantiate_pre(component).map_err(link)?;
        let missing = |what: String| LoadError::UnsupportedShape { path: path.clone(), exports: what };
        let mut plain = None;
        let (target, results) = match (&tool.component.pre, function) {
            (Pre::Tool(_), _) => {
                (component.get_export_index(None, "invoke").ok_or_else(|| missing("no `invoke`".into()))?, 1)
            }
            (Pre::Command(_), _) => {
                let run = component
                    .component_type()
                    .exports(&engine.engine)
                    .map(|(name, _)| name.to_owned())
                    .find(|name| name.starts_with("wasi:cli/run@0.2."))
                    .ok_or_else(|| missing("no `wasi:cli/run`".into()))?;
                let instance = component.get_export_index(None, &run).ok_or_else(|| missing(run.clone()))?;
                (component.get_export_index(Some(&instance), "run").ok_or_else(|| missing(format!("{run}#run")))?, 1)
            }
            (Pre::Plain(_, functions), Some(name)) => {
                let function = functions
                    .iter()
                    .find(|f| f.info.name == name)
                    .ok_or_else(|| missing(format!("no function `{name}`")))?;
                plain = Some(function.clone());
                (function.export, function.results.len())
            }
            (Pre::Plain(..), None) => return Err(missing("a plain component's floor needs a function".into())),
        };
        Ok(Floor {
            engine: engine.clone(),
            pre,
            target,
            shape: tool.component.shape,
            results,
            function: plain,
            grant: grant.cloned(),
            program: tool.manifest.name.clone(),
        })
    }

    /// One bare call: fresh store, instantiate, call, drop. `Err` carries a
    /// trap's message; a tool's own error value is still a completed call.
    pub async fn call(&self, input: &CallInput) -> Result<(), FloorError> {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(grant) = &self.grant {
            crate::caps::env::grant_env(&mut wasi, grant);
            crate::caps::fs::grant_dirs(&mut wasi, grant, None).map_err(|e| FloorError::Grant(Box::new(e)))?;
        }
        let params = match input {
            CallInput::Tool(json) => vec![Val::String(json.clone())],
            CallInput::Command { args, stdin } => {
                // argv[0] is the program, as toolcell gives it.
                wasi.arg(&self.program).args(args).stdin(MemoryInputPipe::new(stdin.clone()));
                Vec::new()
            }
            CallInput::Function { arguments, .. } => {
                let function = self.function.as_ref().ok_or(FloorError::NotAFunction)?;
                crate::invocation::plain_arguments(function, arguments).map_err(FloorError::Arguments)?
            }
        };
        let mut store = FloorState::new(wasi.build(), NoEgress).into_store(&self.engine);
        let instance = self.pre.instantiate_async(&mut store).await.map_err(FloorError::Wasm)?;
        let func = instance.get_func(&mut store, self.target).ok_or(FloorError::ExportGone)?;
        let mut results = vec![Val::Bool(false); self.results];
        func.call_async(&mut store, &params, &mut results).await.map_err(FloorError::Wasm)?;
        // A command that fails did less work than one that succeeds: not a fair floor.
        if self.shape == Shape::Command && matches!(results.first(), Some(Val::Result(Err(_)))) {
            return Err(FloorError::CommandFailed);
        }
        Ok(())
    }
}

/// Why a bare call on the floor did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// The grant's directories could not be opened.
    #[error("{0}")]
    Grant(Box<crate::error::InvokeError>),
    /// Arguments were given for a function, but the floor does not call one.
    #[error("not a plain component's function")]
    NotAFunction,
    /// The function's arguments do not fit its parameters.
    #[error("{0}")]
    Arguments(String),
    /// Instantiating or calling trapped or failed.
    #[error("{0:#}")]
    Wasm(wasmtime::Error),
    /// The export is not in the instance.
    #[error("the export is gone")]
    ExportGone,
    /// The command exited with an error: it did less work than the measured call.
    #[error("the command exited with an error on the floor")]
    CommandFailed,
}
