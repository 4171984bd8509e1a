//! What a sandboxed call costs, measured against the bare engine floor in
//! the same run: same component, same engine (settings and all), same
//! machine.
//!
//! - `floor`: bare wasmtime — cached `InstancePre`, fresh `Store` with a
//!   WASI context, instantiate, call, drop.
//! - `toolcell/empty-grant`: one `Task::invoke` with nothing granted.
//! - `toolcell/fs-grant`: the same with one read-only directory.
//! - `toolcell/audited`: `toolcell/empty-grant` on a runtime that writes its
//!   audit file: two hash-chained lines per call, under the file lock.
//! - `warm-instance`: calls on one reused instance, for scale: what a fresh
//!   instance per call costs over reuse (toolcell never reuses).
//!
//! And the whole task (`task` group): open, one call, close — with no audit
//! file, and with one, where the close also writes a signed checkpoint and
//! `fdatasync`s the file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use toolcell_runtime::{
    Call, DirGrant, DirMode, EngineSettings, FloorState, Manifest, Runtime, RuntimeConfig, TaskRequest, ToolEngine,
};
use toolcell_test_guests as guests;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi::WasiCtxBuilder;

// The same typed bindings toolcell uses, so the floor makes the same call.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "tool",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

const INPUT: &str = r#"{"text":"the quick brown fox jumps over the lazy dog"}"#;

fn floor_store(engine: &ToolEngine) -> Store<FloorState> {
    FloorState::new(WasiCtxBuilder::new().build(), toolcell_runtime::NoEgress).into_store(engine)
}

fn per_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let settings = EngineSettings { cache_dir: Some(cache.path().to_owned()), ..EngineSettings::default() };
    let engine = ToolEngine::new(settings).unwrap();
    let runtime = Runtime::with_engine(engine.clone(), RuntimeConfig::default()).unwrap();

    // The floor: the same engine, a linker with WASI and wasi:http.
    let wasm = engine.wasmtime();
    let component = Component::from_file(wasm, guests::WORD_COUNT).unwrap();
    let linker = toolcell_runtime::floor_linker::<FloorState>(&engine).unwrap();
    let pre = ToolPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();

    let empty = runtime.load_tool(Manifest::ad_hoc(Path::new(guests::WORD_COUNT))).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut with_dir = Manifest::ad_hoc(Path::new(guests::WORD_COUNT));
    with_dir.filesystem =
        vec![DirGrant { host: data.path().canonicalize().unwrap(), guest: "/data".into(), mode: DirMode::ReadOnly }];
    let with_dir = runtime.load_tool(with_dir).unwrap();
    let task_empty = runtime.open_task(&empty, TaskRequest::new("bench", Duration::from_secs(86_400))).unwrap();
    let task_dir = runtime.open_task(&with_dir, TaskRequest::new("bench", Duration::from_secs(86_400))).unwrap();

    // The same runtime writing its audit file, chained and signed.
    let trail = tempfile::tempdir().unwrap();
    let mut audited_config =
        RuntimeConfig { audit_log: Some(trail.path().join("audit.jsonl")), ..RuntimeConfig::default() };
    audited_config.audit.signing_key = Some(trail.path().join("audit-key.json"));
    let audited = Runtime::with_engine(engine.clone(), audited_config).unwrap();
    let audited_tool = audited.load_tool(Manifest::ad_hoc(Path::new(guests::WORD_COUNT))).unwrap();
    let task_audited =
        audited.open_task(&audited_tool, TaskRequest::new("bench", Duration::from_secs(86_400))).unwrap();

    let mut group = c.benchmark_group("word-count call");
    group.bench_function("floor", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = floor_store(&engine);
            let tool = pre.instantiate_async(&mut store).await.unwrap();
            tool.call_invoke(&mut store, INPUT).await.unwrap().unwrap();
        })
    });
    group.bench_function("toolcell/empty-grant", |b| {
        b.to_async(&rt).iter(|| async { assert!(task_empty.invoke(Call::tool(INPUT)).await.unwrap().succeeded()) })
    });
    group.bench_function("toolcell/audited", |b| {
        b.to_async(&rt).iter(|| async { assert!(task_audited.invoke(Call::tool(INPUT)).await.unwrap().succeeded()) })
    });
    group.bench_function("toolcell/fs-grant", |b| {
        b.to_async(&rt).iter(|| async { assert!(task_dir.invoke(Call::tool(INPUT)).await.unwrap().succeeded()) })
    });
    group.bench_function("warm-instance", |b| {
        let mut store = floor_store(&engine);
        let tool = Arc::new(rt.block_on(pre.instantiate_async(&mut store)).unwrap());
        let store = Arc::new(tokio::sync::Mutex::new(store));
        b.to_async(&rt).iter(|| {
            let (store, tool) = (store.clone(), tool.clone());
            async move {
                let mut store = store.lock().await;
                tool.call_invoke(&mut *store, INPUT).await.unwrap().unwrap();
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("word-count task");
    for (name, runtime, tool) in
        [("open-call-close/no-audit-file", &runtime, &empty), ("open-call-close/audited", &audited, &audited_tool)]
    {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let task = runtime.open_task(tool, TaskRequest::new("bench", Duration::from_secs(60))).unwrap();
                assert!(task.invoke(Call::tool(INPUT)).await.unwrap().succeeded());
                task.close().await;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_call);
criterion_main!(benches);
