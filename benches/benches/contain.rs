//! Time to contain: from a kill to the last credential of the calls it
//! stops revoked. 100 calls run at once, each in its own task, each holding
//! its credentials while it sleeps; one `kill --all` stops them all, tears
//! them down and closes their tasks. `Controls::kill` resolves when every
//! revocation's first attempt is done, so its duration is the figure.
//!
//! - `100 calls/issuer tokens`: each call holds one issuer token (revoked by
//!   deny-listing its `jti`, in process);
//! - `100 calls/issuer tokens + OpenBao leases`: each also holds a PKI lease
//!   under its task's OpenBao child token (one revocation round trip for the
//!   lease, one for the token, per task), against a real OpenBao on
//!   loopback (dev mode, started by the harness);
//! - `1 calls/issuer tokens + OpenBao leases`: the same for one call: the
//!   round trips' floor.
//!
//! Each iteration starts the 100 calls, waits until all hold their
//! credentials, then times the kill alone (`iter_custom`); the kill is
//! lifted before the next.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use toolcell_runtime::credentials::config::{OpenBaoConfig, ProviderConfig, SecretSource};
use toolcell_runtime::policy::credential::{CredentialSpec, Exposure, ProviderKind};
use toolcell_runtime::{
    Call, EngineSettings, KillTarget, Manifest, Runtime, RuntimeConfig, TaskRequest, TimeSpan, ToolEngine,
};
use toolcell_test_guests as guests;
use toolcell_test_guests::openbao::openbao;

fn spec(name: &str, provider: ProviderKind, audience: &str, scopes: &[&str]) -> CredentialSpec {
    CredentialSpec {
        name: name.into(),
        provider,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        audience: audience.into(),
        max_ttl: TimeSpan(Duration::from_secs(120)),
        exposure: Exposure::Reveal,
        approval: None,
    }
}

/// Starts `calls` calls that acquire `names` then sleep; returns once every
/// call holds them all.
async fn holding(runtime: &Arc<Runtime>, tool: &Arc<toolcell_runtime::Tool>, calls: usize, names: &[&str]) {
    let mut then = serde_json::json!({ "action": "sleep", "seconds": 100 });
    for name in names.iter().rev() {
        then = serde_json::json!({ "action": "acquire", "name": name, "then": then });
    }
    for n in 0..calls {
        let task = runtime.open_task(tool, TaskRequest::new(format!("agent-{n}"), Duration::from_secs(300))).unwrap();
        let call = Call::tool(then.to_string());
        tokio::spawn(async move {
            let _ = task.invoke(call).await;
            task.close().await;
        });
    }
    let started = Instant::now();
    loop {
        let tasks = runtime.controls().tasks();
        let held: usize = tasks.iter().flat_map(|t| &t.calls).map(|c| c.credentials.len()).sum();
        if held == calls * names.len() {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "only {held} credentials held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn contain(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let settings = EngineSettings { cache_dir: Some(cache.path().to_owned()), ..EngineSettings::default() };
    let engine = ToolEngine::new(settings).unwrap();
    let bao = openbao();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("bao-token");
    std::fs::write(&token, &bao.root_token).unwrap();
    let secret = pki_secret();
    let config = RuntimeConfig {
        credentials: ProviderConfig {
            openbao: Some(OpenBaoConfig {
                address: bao.address.clone(),
                token: SecretSource::File(token),
                timeout: TimeSpan(Duration::from_secs(10)),
                secrets: vec![secret],
            }),
            ..ProviderConfig::default()
        },
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::with_engine(engine, config).unwrap());
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.credentials = vec![
        spec("api", ProviderKind::Issuer, "https://api.example.com", &["repo:read"]),
        spec("cert", ProviderKind::Openbao, "pki:tool", &["tool-pki"]),
    ];
    manifest.limits.timeout = TimeSpan(Duration::from_secs(200));
    let tool = runtime.load_tool(manifest).unwrap();

    let mut group = c.benchmark_group("contain");
    group.sample_size(10);
    let issuer = &["api"][..];
    let both = &["api", "cert"][..];
    for (calls, credentials) in [(100, issuer), (1, both), (100, both)] {
        let held = if credentials.len() == 1 { "issuer tokens" } else { "issuer tokens + OpenBao leases" };
        group.bench_function(format!("{calls} calls/{held}"), |b| {
            b.to_async(&rt).iter_custom(|iterations| {
                let (runtime, tool) = (runtime.clone(), tool.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        holding(&runtime, &tool, calls, credentials).await;
                        let started = Instant::now();
                        let report =
                            runtime.controls().kill(KillTarget::All, Some("bench".into()), "bench", None).await;
                        total += started.elapsed();
                        assert_eq!(report.contained.calls, calls, "{report:?}");
                        runtime.controls().unkill(&KillTarget::All, "bench").unwrap();
                        // The stopped calls' tasks close on their own side before the next round.
                        while !runtime.controls().tasks().is_empty() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

fn pki_secret() -> toolcell_runtime::credentials::config::OpenBaoSecret {
    serde_json::from_value(serde_json::json!({
        "audience": "pki:tool",
        "path": "pki/issue/tool",
        "data": { "common_name": "{task}.toolcell.test", "ttl": "{ttl}" },
        "field": "certificate",
    }))
    .unwrap()
}

criterion_group!(benches, contain);
criterion_main!(benches);
