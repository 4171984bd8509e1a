//! What credentials cost per call.
//!
//! - `issuer/mint+revoke`: the built-in issuer signs one RFC 9068 token and
//!   deny-lists it — the work of the `issuer` provider alone.
//! - `call/floor`: the probe tool on the bare engine floor (fresh store,
//!   empty WASI context, `invoke`, drop), echoing its input.
//! - `call/no-credential`: one `Task::invoke` of the probe tool that acquires nothing.
//! - `call/issuer-credential`: the same tool acquiring an issuer credential:
//!   mint, the guest's handle and methods, revocation at teardown, and four
//!   more audit events. The difference to `call/no-credential` is the
//!   per-call cost of a credential.
//! - `call/issuer-credential+journal`: the same with the lease journal on.

use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use toolcell_runtime::credentials::issuer::MintRequest;
use toolcell_runtime::policy::credential::{CredentialSpec, Exposure, ProviderKind};
use toolcell_runtime::{
    Call, EngineSettings, FloorState, Manifest, Runtime, RuntimeConfig, TaskRequest, TimeSpan, ToolEngine,
};
use toolcell_test_guests as guests;

fn credentials(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let settings = EngineSettings { cache_dir: Some(cache.path().to_owned()), ..EngineSettings::default() };
    let engine = ToolEngine::new(settings).unwrap();
    let runtime = Runtime::with_engine(engine.clone(), RuntimeConfig::default()).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let journaled = Runtime::with_engine(
        engine,
        RuntimeConfig { lease_journal: Some(journal.path().to_owned()), ..RuntimeConfig::default() },
    )
    .unwrap();

    let mut group = c.benchmark_group("credentials");
    group.bench_function("issuer/mint+revoke", |b| {
        let request = MintRequest {
            subject: "spiffe://toolcell.local/tool/bench/task/t".into(),
            act: Some(toolcell_runtime::identity::Actor::new("bench")),
            client_id: "bench".into(),
            audience: "https://api.example.com".into(),
            scopes: vec!["repo:read".into()],
            max_ttl: Duration::from_secs(60),
            not_after: SystemTime::now() + Duration::from_secs(86_400),
        };
        b.iter(|| {
            let minted = runtime.issuer().mint(&request);
            runtime.issuer().revoke(&minted.jti, minted.exp);
        })
    });

    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.credentials = vec![CredentialSpec {
        name: "api".into(),
        provider: ProviderKind::Issuer,
        scopes: vec!["repo:read".into()],
        audience: "https://api.example.com".into(),
        max_ttl: TimeSpan(Duration::from_secs(60)),
        exposure: Exposure::Reveal,
        approval: None,
    }];
    let day = Duration::from_secs(86_400);
    let tool = runtime.load_tool(manifest.clone()).unwrap();
    let task = runtime.open_task(&tool, TaskRequest::new("bench", day)).unwrap();
    let journaled_tool = journaled.load_tool(manifest).unwrap();
    let journaled_task = journaled.open_task(&journaled_tool, TaskRequest::new("bench", day)).unwrap();
    const ECHO: &str = r#"{"action":"echo"}"#;
    const ACQUIRE: &str = r#"{"action":"acquire","name":"api"}"#;
    // The floor: the same component and engine, nothing of toolcell around it.
    let linker = toolcell_runtime::floor_linker::<FloorState>(runtime.engine()).unwrap();
    let component = wasmtime::component::Component::from_file(runtime.engine().wasmtime(), guests::PROBE_TOOL).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let invoke = component.get_export_index(None, "invoke").unwrap();
    group.bench_function("call/floor", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = FloorState::new(wasmtime_wasi::WasiCtxBuilder::new().build(), toolcell_runtime::NoEgress)
                .into_store(runtime.engine());
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let func = instance.get_func(&mut store, invoke).unwrap();
            let mut results = vec![wasmtime::component::Val::Bool(false)];
            func.call_async(&mut store, &[wasmtime::component::Val::String(ECHO.into())], &mut results).await.unwrap();
        })
    });
    group.bench_function("call/no-credential", |b| {
        b.to_async(&rt).iter(|| async { assert!(task.invoke(Call::tool(ECHO)).await.unwrap().succeeded()) })
    });
    group.bench_function("call/issuer-credential", |b| {
        b.to_async(&rt).iter(|| async { assert!(task.invoke(Call::tool(ACQUIRE)).await.unwrap().succeeded()) })
    });
    group.bench_function("call/issuer-credential+journal", |b| {
        b.to_async(&rt)
            .iter(|| async { assert!(journaled_task.invoke(Call::tool(ACQUIRE)).await.unwrap().succeeded()) })
    });
    group.finish();
}

criterion_group!(benches, credentials);
criterion_main!(benches);
