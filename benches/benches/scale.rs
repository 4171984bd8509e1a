//! How toolcell scales, and what things cost for scale:
//!
//! - `load/compile` vs `load/precompiled`: a component compiled from its
//!   bytes vs loaded from the precompile cache.
//! - `throughput/N tasks`: N word-count calls at once, each in its own task
//!   (criterion reports calls per second).
//! - `spawn/native-subprocess`: starting and reaping `/bin/true`, what a
//!   process per call would cost instead.
//!
//! Before the timings it prints the host memory per open task with 1,000
//! tasks open at once, each having run one call (not a timing: criterion
//! cannot report memory).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use toolcell_runtime::{Call, EngineSettings, Manifest, Runtime, RuntimeConfig, TaskRequest, ToolEngine};
use toolcell_test_guests as guests;

const INPUT: &str = r#"{"text":"the quick brown fox jumps over the lazy dog"}"#;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    kib * 1024
}

fn scale(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let settings = EngineSettings { cache_dir: Some(cache.path().to_owned()), ..EngineSettings::default() };
    let engine = ToolEngine::new(settings).unwrap();
    let runtime = Arc::new(Runtime::with_engine(engine.clone(), RuntimeConfig::default()).unwrap());
    let tool = runtime.load_tool(Manifest::ad_hoc(Path::new(guests::WORD_COUNT))).unwrap();

    // Memory per open task, with 1,000 open at once, each having run a call.
    rt.block_on(async {
        let before = resident_bytes();
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            tasks.push(Arc::new(
                runtime.open_task(&tool, TaskRequest::new("bench", Duration::from_secs(3600))).unwrap(),
            ));
        }
        let calls: Vec<_> = tasks
            .iter()
            .map(|task| {
                let task = task.clone();
                tokio::spawn(async move { task.invoke(Call::tool(INPUT)).await.unwrap().succeeded() })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap());
        }
        let after = resident_bytes();
        eprintln!(
            "1000 tasks open, each after one call: {:.1} KiB of host memory per task ({:.1} MiB in all)",
            after.saturating_sub(before) as f64 / 1000.0 / 1024.0,
            after.saturating_sub(before) as f64 / (1 << 20) as f64
        );
    });

    let mut load = c.benchmark_group("load");
    load.sample_size(10);
    let uncached = ToolEngine::new(EngineSettings { cache_dir: None, ..EngineSettings::default() }).unwrap();
    load.bench_function("compile", |b| b.iter(|| uncached.load(Path::new(guests::WORD_COUNT), None).unwrap()));
    load.bench_function("precompiled", |b| b.iter(|| engine.load(Path::new(guests::WORD_COUNT), None).unwrap()));
    load.finish();

    let mut throughput = c.benchmark_group("throughput");
    for tasks in [1u64, 2, 8, 64] {
        throughput.throughput(Throughput::Elements(tasks));
        throughput.bench_with_input(BenchmarkId::new("word-count", format!("{tasks} tasks")), &tasks, |b, &n| {
            b.to_async(&rt).iter(|| {
                let (runtime, tool) = (runtime.clone(), tool.clone());
                async move {
                    let calls: Vec<_> = (0..n)
                        .map(|_| {
                            let task =
                                runtime.open_task(&tool, TaskRequest::new("bench", Duration::from_secs(60))).unwrap();
                            tokio::spawn(async move {
                                let ok = task.invoke(Call::tool(INPUT)).await.unwrap().succeeded();
                                task.close().await;
                                ok
                            })
                        })
                        .collect();
                    for call in calls {
                        assert!(call.await.unwrap());
                    }
                }
            })
        });
    }
    throughput.finish();

    let mut spawn = c.benchmark_group("spawn");
    spawn.bench_function("native-subprocess", |b| {
        b.iter(|| assert!(std::process::Command::new("/bin/true").status().unwrap().success()))
    });
    spawn.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
