//! The engine: one wasmtime `Engine` per runtime, configured once for this
//! kind of workload (many short calls, each in a fresh instance), the linker
//! every component is linked against, and component loading with an on-disk
//! precompile cache.
//!
//! Loading checks, in order: the file reads, its sha256 matches the pin, it is
//! WebAssembly, it is a component (not a core module), the engine accepts it,
//! it has a shape toolcell runs (tool or WASI command), and every import links.
//! Each failure is its own [`LoadError`].

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::bindings::ToolPre;
use crate::error::{Hex, InvokeError, LoadError, RuntimeError};
use crate::manifest::Manifest;
use crate::store::InvocationState;
use crate::units::ByteSize;

/// Engine-wide settings. These are the operator's, not a tool's: a manifest
/// can never raise them.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Invocations running at once; more wait for a slot. Sizes the instance pool.
    pub max_concurrent_invocations: u32,
    /// The largest memory limit any grant may set.
    pub max_memory: ByteSize,
    /// Wasm call stack per invocation; deeper recursion is stopped with the `stack` limit.
    pub max_wasm_stack: ByteSize,
    /// How often the epoch ticker runs; the granularity of the `cpu` limit.
    pub epoch_tick: Duration,
    /// Where precompiled components are kept; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineSettings {
    /// 256 concurrent invocations, 4GiB max memory, 1MiB wasm stack, 10ms
    /// ticks, cache in `$XDG_CACHE_HOME/toolcell` (or `~/.cache/toolcell`).
    fn default() -> Self {
        EngineSettings {
            max_concurrent_invocations: 256,
            max_memory: ByteSize(4 << 30),
            max_wasm_stack: ByteSize(1 << 20),
            epoch_tick: Duration::from_millis(10),
            cache_dir: default_cache_dir(),
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    // Ambient authority: the default cache directory comes from the user's environment.
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("toolcell"))
}

/// The shared engine: compiled code, the linker, the epoch ticker and the
/// concurrency gate. Cheap to share behind an `Arc`; tests share one.
pub struct ToolEngine {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<InvocationState>,
    pub(crate) settings: EngineSettings,
    pub(crate) slots: Semaphore,
    compatibility: String,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for ToolEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolEngine").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// What a component is, and so how it is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Exports the toolcell `tool` world: `describe` and `invoke`.
    Tool,
    /// Exports `wasi:cli/run`: args and stdin in, stdout, stderr and exit code out.
    Command,
    /// Exports ordinary functions: each is a tool of its own, its schemas
    /// derived from its WIT types.
    Plain,
}

impl Shape {
    /// `tool`, `command` or `plain`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Tool => "tool",
            Shape::Command => "command",
            Shape::Plain => "plain",
        }
    }
}

/// One exported function of a plain component, as callers see it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FunctionInfo {
    /// `name`, or `interface.name` for a function of an exported interface.
    pub name: String,
    /// Its WIT signature, for the description.
    pub signature: String,
    /// JSON Schema of its arguments: an object with one property per parameter.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its result: an object whose `result` is the return value.
    pub output_schema: serde_json::Value,
}

/// A plain component's function, ready to call.
#[derive(Clone)]
pub(crate) struct PlainFunction {
    pub(crate) info: FunctionInfo,
    pub(crate) export: ComponentExportIndex,
    pub(crate) params: Vec<(String, Type)>,
    pub(crate) results: Vec<Type>,
}

/// A compiled, linked component, ready to be instantiated many times.
#[derive(Clone)]
pub struct LoadedComponent {
    /// The file it came from.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: [u8; 32],
    /// Tool, command or plain.
    pub shape: Shape,
    /// A plain component's functions (empty for the other shapes).
    pub functions: Vec<FunctionInfo>,
    /// A plain component's functions that cannot be offered, each with why.
    pub skipped_functions: Vec<String>,
    pub(crate) pre: Pre,
    /// The compiled component, for the bare-engine floor of `toolcell bench`.
    pub(crate) component: Component,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("path", &self.path)
            .field("sha256", &Hex(&self.sha256).to_string())
            .field("shape", &self.shape)
            .finish()
    }
}

#[derive(Clone)]
pub(crate) enum Pre {
    Plain(InstancePre<InvocationState>, Arc<[PlainFunction]>),
    Tool(ToolPre<InvocationState>),
    Command(CommandPre<InvocationState>),
}

impl ToolEngine {
    /// Builds the engine, the linker and the ticker thread.
    pub fn new(settings: EngineSettings) -> Result<Arc<ToolEngine>, RuntimeError> {
        let engine_error = |error: wasmtime::Error| RuntimeError::Engine(format!("{error:#}"));
        let slots = settings.max_concurrent_invocations.max(1);

        let mut pool = PoolingAllocationConfig::new();
        // One component instance per running invocation; Rust components hold
        // a few core instances and memories each, other toolchains more.
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(16))
            .total_memories(slots.saturating_mul(4))
            .total_tables(slots.saturating_mul(16))
            .total_stacks(slots)
            .max_memories_per_module(4)
            .max_tables_per_module(4)
            .max_memory_size(usize::try_from(settings.max_memory.0).unwrap_or(usize::MAX));

        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(byte_count(settings.max_wasm_stack))
            // Host functions run on the same fiber stack as the guest.
            .async_stack_size(byte_count(settings.max_wasm_stack) + (1 << 20))
            // WASI 0.2 needs no component-model concurrency, and it makes every call slower.
            .concurrency_support(false)
            // The reservation bounds the largest memory; each pooled memory
            // reserves (not commits) this much address space.
            .memory_reservation(settings.max_memory.0.max(1 << 30))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&config).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        // Only the HTTP interfaces: WASI above already added the rest.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
        crate::caps::log::add_to_linker(&mut linker, InvocationState::log_view).map_err(engine_error)?;
        crate::caps::credentials::add_to_linker(&mut linker, InvocationState::credentials_view)
            .map_err(engine_error)?;

        if let Some(dir) = &settings.cache_dir {
            use std::os::unix::fs::DirBuilderExt;
            // Only this user may write there: see `trusted_artifact`.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|cause| RuntimeError::Cache { path: dir.clone(), cause })?;
        }
        let compatibility = {
            let mut hasher = ShaHasher(Sha256::new());
            engine.precompile_compatibility_hash().hash(&mut hasher);
            Hex(&hasher.0.finalize()[..8]).to_string()
        };
        let ticker = EpochTicker::start(engine.clone(), settings.epoch_tick);
        Ok(Arc::new(ToolEngine {
            engine,
            linker,
            slots: Semaphore::new(slots as usize),
            settings,
            compatibility,
            _ticker: ticker,
        }))
    }

    /// The wasmtime engine underneath, for measuring the bare-engine floor
    /// with exactly the same settings (see `benches/`).
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Waits for one of the engine's instance slots (the pool's size); the
    /// slot is held until the permit drops.
    pub(crate) async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, InvokeError> {
        self.slots.acquire().await.map_err(|error| InvokeError::host("waiting for an engine slot", error))
    }

    /// Engine settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Loads, checks and links a component, compiling it or reusing its
    /// precompiled artifact. `pin` is the sha256 the file must have.
    pub fn load(&self, path: &Path, pin: Option<&[u8; 32]>) -> Result<LoadedComponent, LoadError> {
        let digests = self.settings.cache_dir.as_deref().map(crate::digests::DigestIndex::new);
        // A digest kept from an earlier load of the unchanged file spares
        // reading and hashing it (see `digests`); the pin is checked either way.
        let (bytes, sha256) = match digests.as_ref().and_then(|index| index.lookup(path)) {
            Some(sha256) => {
                check_pin(path, pin, &sha256)?;
                (None, sha256)
            }
            None => {
                let (bytes, sha256, meta) = read_pinned(path, pin)?;
                if let Some(index) = &digests {
                    index.record(&meta, &sha256);
                }
                (Some(bytes), sha256)
            }
        };
        let header = match &bytes {
            Some(bytes) => bytes[..bytes.len().min(8)].to_vec(),
            None => read_header(path)?,
        };
        match wasm_kind(&header) {
            WasmKind::Component => {}
            WasmKind::CoreModule => return Err(LoadError::CoreModule { path: path.to_owned() }),
            WasmKind::NotWasm => return Err(LoadError::NotWasm { path: path.to_owned() }),
        }
        let (component, sha256) = match self.precompiled(&sha256) {
            Some(component) => (component, sha256),
            None => {
                let (bytes, sha256) = match bytes {
                    Some(bytes) => (bytes, sha256),
                    // The digest came from the index: compiling needs the bytes.
                    None => {
                        let (bytes, sha256, _) = read_pinned(path, pin)?;
                        (bytes, sha256)
                    }
                };
                (self.compile_and_cache(path, &bytes, &sha256)?, sha256)
            }
        };
        let shape = self.shape_of(path, &component)?;
        let link_error =
            |error: wasmtime::Error| LoadError::Imports { path: path.to_owned(), reason: format!("{error:#}") };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(link_error)?;
        let compiled = component.clone();
        let mut functions = Vec::new();
        let mut skipped_functions = Vec::new();
        let pre = match shape {
            Shape::Plain => {
                let (plain, skipped) = self.plain_functions(&component);
                if plain.is_empty() {
                    return Err(LoadError::UnsupportedShape {
                        path: path.to_owned(),
                        exports: format!("functions none of which can be called with JSON ({})", skipped.join("; ")),
                    });
                }
                functions = plain.iter().map(|f| f.info.clone()).collect();
                skipped_functions = skipped;
                Pre::Plain(instance_pre, plain.into())
            }
            Shape::Tool => Pre::Tool(ToolPre::new(instance_pre).map_err(|error| LoadError::UnsupportedShape {
                path: path.to_owned(),
                exports: format!("`describe`/`invoke` with the wrong types ({error:#})"),
            })?),
            Shape::Command => {
                Pre::Command(CommandPre::new(instance_pre).map_err(|error| LoadError::UnsupportedShape {
                    path: path.to_owned(),
                    exports: format!("`wasi:cli/run` with the wrong types ({error:#})"),
                })?)
            }
        };
        Ok(LoadedComponent {
            path: path.to_owned(),
            sha256,
            shape,
            functions,
            skipped_functions,
            pre,
            component: compiled,
        })
    }

    fn artifact_path(&self, sha256: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.settings.cache_dir.as_ref()?;
        Some(dir.join(format!("{}-{}.cwasm", Hex(sha256), self.compatibility)))
    }

    /// The precompiled artifact of the component with this digest, where
    /// the cache holds a trusted one.
    fn precompiled(&self, sha256: &[u8; 32]) -> Option<Component> {
        let cached = self.artifact_path(sha256).filter(|p| p.exists())?;
        if let Err(reason) = trusted_artifact(&cached) {
            // Whoever else can write it could make the engine run their
            // native code and bypass the manifest's pin: recompile.
            tracing::warn!(path = %cached.display(), "not loading precompiled artifact: {reason}");
            return None;
        }
        match load_precompiled(&self.engine, &cached) {
            Ok(component) => Some(component),
            // A stale or damaged artifact is rebuilt, never trusted.
            Err(error) => {
                tracing::warn!(path = %cached.display(), "ignoring precompiled artifact: {error:#}");
                None
            }
        }
    }

    fn compile_and_cache(&self, path: &Path, bytes: &[u8], sha256: &[u8; 32]) -> Result<Component, LoadError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|error| LoadError::Invalid { path: path.to_owned(), reason: format!("{error:#}") })?;
        if let Some(cached) = self.artifact_path(sha256) {
            // The cache is an optimisation: failing to write it costs a recompile, nothing else.
            if let Err(error) = store_precompiled(&component, &cached) {
                tracing::warn!(path = %cached.display(), "cannot write precompiled artifact: {error:#}");
            }
        }
        Ok(component)
    }

    fn shape_of(&self, path: &Path, component: &Component) -> Result<Shape, LoadError> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        let has = |name: &str| exports.contains(&name);
        if has("describe") && has("invoke") {
            Ok(Shape::Tool)
        } else if exports.iter().any(|export| export.starts_with("wasi:cli/run@0.2.")) {
            Ok(Shape::Command)
        } else if ty
            .exports(&self.engine)
            .any(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_) | ComponentItem::ComponentInstance(_)))
        {
            Ok(Shape::Plain)
        } else {
            let exports = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
            Err(LoadError::UnsupportedShape { path: path.to_owned(), exports })
        }
    }
}

impl ToolEngine {
    /// A plain component's exported functions (top level, and one level into
    /// exported interfaces), with those whose types have no JSON form skipped.
    fn plain_functions(&self, component: &Component) -> (Vec<PlainFunction>, Vec<String>) {
        let mut functions = Vec::new();
        let mut skipped = Vec::new();
        let ty = component.component_type();
        for (export, item) in ty.exports(&self.engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    let index = component.get_export_index(None, export);
                    push_function(&mut functions, &mut skipped, export.to_owned(), &func, index);
                }
                ComponentItem::ComponentInstance(instance) => {
                    let Some(instance_index) = component.get_export_index(None, export) else { continue };
                    // `pkg:name/iface@1.0.0` is offered as `iface`.
                    let short = export.rsplit('/').next().unwrap_or(export);
                    let short = short.split('@').next().unwrap_or(short);
                    for (name, item) in instance.exports(&self.engine) {
                        if let ComponentItem::ComponentFunc(func) = item.ty {
                            let index = component.get_export_index(Some(&instance_index), name);
                            push_function(&mut functions, &mut skipped, format!("{short}.{name}"), &func, index);
                        }
                    }
                }
                _ => {}
            }
        }
        (functions, skipped)
    }
}

fn push_function(
    functions: &mut Vec<PlainFunction>,
    skipped: &mut Vec<String>,
    name: String,
    func: &ComponentFunc,
    index: Option<ComponentExportIndex>,
) {
    let Some(export) = index else { return };
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_owned(), t)).collect();
    let results: Vec<Type> = func.results().collect();
    let schemas = || -> Result<(serde_json::Value, serde_json::Value), String> {
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for (param, ty) in &params {
            properties
                .insert(param.clone(), crate::schema::schema_of(ty).map_err(|e| format!("parameter `{param}`: {e}"))?);
            if !matches!(ty, Type::Option(_)) {
                required.push(param.clone());
            }
        }
        let input = serde_json::json!({
            "type": "object", "properties": properties, "required": required, "additionalProperties": false
        });
        let output = match results.as_slice() {
            [] => serde_json::json!({ "type": "object", "properties": {} }),
            [one] => serde_json::json!({
                "type": "object",
                "properties": { "result": crate::schema::schema_of(one).map_err(|e| format!("result: {e}"))? },
                "required": ["result"]
            }),
            _ => return Err("more than one result".into()),
        };
        Ok((input, output))
    };
    match schemas() {
        Ok((input_schema, output_schema)) => {
            let signature = format!(
                "{name}: func({}){}",
                params.iter().map(|(n, t)| format!("{n}: {}", wit_name(t))).collect::<Vec<_>>().join(", "),
                results.first().map(|t| format!(" -> {}", wit_name(t))).unwrap_or_default()
            );
            let info = FunctionInfo { name, signature, input_schema, output_schema };
            functions.push(PlainFunction { info, export, params, results });
        }
        Err(reason) => skipped.push(format!("`{name}`: {reason}")),
    }
}

/// A type as WIT writes it, for signatures in descriptions.
fn wit_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", wit_name(&list.ty())),
        Type::Tuple(tuple) => format!("tuple<{}>", tuple.types().map(|t| wit_name(&t)).collect::<Vec<_>>().join(", ")),
        Type::Option(option) => format!("option<{}>", wit_name(&option.ty())),
        Type::Result(result) => format!(
            "result<{}, {}>",
            result.ok().map_or("_".into(), |t| wit_name(&t)),
            result.err().map_or("_".into(), |t| wit_name(&t))
        ),
        Type::Record(_) => "record".into(),
        Type::Variant(_) => "variant".into(),
        Type::Enum(_) => "enum".into(),
        Type::Flags(_) => "flags".into(),
        _ => "resource".into(),
    }
}

/// Reads a component file and checks it against its pin, without compiling
/// it; returns its sha256. What `policy check` uses to vet a manifest.
pub fn component_digest(path: &Path, pin: Option<&[u8; 32]>) -> Result<[u8; 32], LoadError> {
    read_pinned(path, pin).map(|(_, sha256, _)| sha256)
}

/// Reads the component file and checks its digest against the pin. Also
/// returns the file's metadata as it was before the read (for `digests`).
fn read_pinned(path: &Path, pin: Option<&[u8; 32]>) -> Result<(Vec<u8>, [u8; 32], std::fs::Metadata), LoadError> {
    let read_error = |cause| LoadError::Read { path: path.to_owned(), cause };
    // Ambient authority: the component file the manifest (or the caller) names.
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(read_error)?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    check_pin(path, pin, &sha256)?;
    Ok((bytes, sha256, meta))
}

fn check_pin(path: &Path, pin: Option<&[u8; 32]>, sha256: &[u8; 32]) -> Result<(), LoadError> {
    match pin.filter(|pin| *pin != sha256) {
        Some(pin) => Err(LoadError::HashMismatch {
            path: path.to_owned(),
            expected: Hex(pin).to_string(),
            actual: Hex(sha256).to_string(),
        }),
        None => Ok(()),
    }
}

/// The file's first 8 bytes (fewer if it is shorter): enough for `wasm_kind`.
fn read_header(path: &Path) -> Result<Vec<u8>, LoadError> {
    let read_error = |cause| LoadError::Read { path: path.to_owned(), cause };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut header = Vec::with_capacity(8);
    std::io::Read::read_to_end(&mut std::io::Read::take(file, 8), &mut header).map_err(read_error)?;
    Ok(header)
}

fn byte_count(size: ByteSize) -> usize {
    usize::try_from(size.0).unwrap_or(usize::MAX)
}

/// Loads a precompiled component artifact from the cache.
///
/// This is the only `unsafe` in toolcell. Wasmtime trusts precompiled
/// artifacts as native code, so deserializing one is only sound when the file
/// was produced by `Component::serialize` of a compatible engine and nobody
/// else could write it. Both hold here: the file name carries the engine's
/// compatibility hash, the cache directory is the operator's (toolcell never
/// loads artifacts from anywhere else, and never from a tool), and wasmtime
/// itself checks the header's version and settings, failing rather than
/// loading a mismatched artifact.
#[allow(unsafe_code, reason = "the one documented load of a precompiled artifact: see above")]
fn load_precompiled(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see the function's documentation: the artifact is ours and
    // was written by `Component::serialize` with this engine's settings.
    unsafe { Component::deserialize_file(engine, path) }
}

/// A precompiled artifact is loaded only when it, and the directory that
/// holds it, belong to the user the runtime runs as and nobody else may
/// write them: then only that user (who could change toolcell itself) can
/// have put native code there.
pub(crate) fn trusted_artifact(path: &Path) -> Result<(), UntrustedArtifact> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let dir = path.parent().unwrap_or(Path::new("."));
    for (what, checked) in [("artifact", path), ("cache directory", dir)] {
        let meta = std::fs::symlink_metadata(checked).map_err(|cause| UntrustedArtifact::Unreadable { what, cause })?;
        if meta.uid() != me {
            return Err(UntrustedArtifact::Owner { what, owner: meta.uid(), me });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(UntrustedArtifact::Writable { what, mode: meta.mode() & 0o777 });
        }
        if what == "artifact" && !meta.file_type().is_file() {
            return Err(UntrustedArtifact::NotAFile);
        }
    }
    Ok(())
}

/// Why a precompiled artifact is not loaded (it is recompiled instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UntrustedArtifact {
    #[error("{what}: {cause}")]
    Unreadable { what: &'static str, cause: std::io::Error },
    #[error("the {what} belongs to uid {owner}, not to toolcell's uid {me}")]
    Owner { what: &'static str, owner: u32, me: u32 },
    #[error("the {what} is writable by its group or others (mode {mode:o})")]
    Writable { what: &'static str, mode: u32 },
    #[error("the artifact is not a regular file")]
    NotAFile,
}

fn store_precompiled(component: &Component, path: &Path) -> wasmtime::Result<()> {
    write_cache_entry(path, &component.serialize()?)?;
    Ok(())
}

/// Writes one entry of the cache directory (an artifact, a digest, a
/// description) to a temporary file beside it and renames it into place, so
/// a concurrent reader never sees half a file.
pub(crate) fn write_cache_entry(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// One entry of the cache directory, where it is trusted (see
/// `trusted_artifact`) and readable.
pub(crate) fn read_cache_entry(path: &Path) -> Option<Vec<u8>> {
    trusted_artifact(path).ok()?;
    std::fs::read(path).ok()
}

enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

/// Reads the preamble: `\0asm`, then a version and layer that tell core
/// modules (`01 00 00 00`) from components (layer `01 00`).
fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes {
        [0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00, ..] => WasmKind::Component,
        [0x00, 0x61, 0x73, 0x6d, _, _, 0x00, 0x00, ..] => WasmKind::CoreModule,
        _ => WasmKind::NotWasm,
    }
}

/// Feeds `Hash` output into sha256, for a stable cache key.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the sha256 state is read")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Advances the engine's epoch on its own OS thread, so a busy async executor
/// cannot starve the clock that stops runaway guests.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("toolcell-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_tells_components_from_modules() {
        assert!(matches!(wasm_kind(b"\0asm\x0d\0\x01\0"), WasmKind::Component));
        assert!(matches!(wasm_kind(b"\0asm\x01\0\0\0"), WasmKind::CoreModule));
        assert!(matches!(wasm_kind(b"\x7fELF\x02\x01\x01\0"), WasmKind::NotWasm));
        assert!(matches!(wasm_kind(b""), WasmKind::NotWasm));
    }
}

/// A loaded tool: its manifest and its linked component.
#[derive(Debug)]
pub struct Tool {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The compiled, linked component.
    pub component: LoadedComponent,
}
