//! `toolcell bench`: what a sandboxed call of your tool costs, measured
//! against the bare engine floor in the same run — the same component on
//! the same engine, instantiated and called with nothing of toolcell around
//! it. Both run on this process's engine; the audit trail goes to tracing
//! only and no lease journal is kept, so the figures are the sandbox's, not
//! the disk's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use toolcell_runtime::{Call, CallInput, CallResult, Floor, Shape, TaskRequest};

use crate::run::{manifest_or_component, traceless_runtime};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Reports p50 and p99 per call for the floor and for toolcell, their ratio,
toolcell's throughput at --concurrency, and the process's peak RSS.
Examples:
  toolcell bench examples/target/wasm32-wasip2/release/word_count.wasm --input '{\"text\":\"hi\"}'
  toolcell bench --manifest policies/word-count.toml --input '{\"text\":\"hi\"}' --calls 2000 --concurrency 8 --json
  toolcell bench --manifest policies/word-count.toml --input '{\"text\":\"hi\"}' --policies policies")]
pub struct BenchArgs {
    /// The tool's manifest (its grants apply to the toolcell calls).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The component; optional with --manifest.
    component: Option<PathBuf>,
    /// JSON input of a tool (or a plain component's function arguments).
    #[arg(long, value_name = "JSON", default_value = "{}")]
    input: String,
    /// The function of a plain component.
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Arguments of a command component.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
    /// Calls measured for each of the floor and toolcell.
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// Calls in flight at once for the throughput figure.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Also measure the calls with the request-time policies of DIR
    /// (`*.cedar`) in force, interleaved with the same calls without them.
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// The principal of the calls (policies may name it; roles come from the config).
    #[arg(long, value_name = "NAME", default_value = "bench")]
    principal: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The peak resident set of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub async fn run(args: BenchArgs, config: Option<&Path>) -> Result<ExitCode> {
    if args.calls == 0 || args.concurrency == 0 {
        bail!("--calls and --concurrency must be at least 1");
    }
    let (manifest, _) = manifest_or_component(args.manifest.as_deref(), args.component.as_deref())?;
    let runtime = traceless_runtime(config)?;
    let tool = runtime.load_tool(manifest)?;
    let input = match tool.component.shape {
        Shape::Tool => CallInput::Tool(args.input.clone()),
        Shape::Command => CallInput::Command { args: args.args.clone(), stdin: Vec::new() },
        Shape::Plain => match &args.function {
            Some(name) => CallInput::Function { name: name.clone(), arguments: args.input.clone() },
            None => bail!("`{}` is a plain component: name a function with --function", tool.manifest.name),
        },
    };
    let week = Duration::from_secs(7 * 86_400);
    let task = Arc::new(runtime.open_task(&tool, TaskRequest::new(args.principal.clone(), week))?);
    // The same tool on a second runtime on the same engine, with the policies in force.
    let governed = match &args.policies {
        None => None,
        Some(dir) => {
            // Traceless like the other runtime, so both do the same work.
            let config = crate::run::traceless_config(config)?;
            let mode = config.policy_mode;
            let governed = toolcell_runtime::Runtime::with_engine(runtime.engine().clone(), config)?;
            let policies = toolcell_runtime::request_policy::RequestPolicies::load_dir(dir, mode)
                .map_err(|errors| anyhow::anyhow!("the policies in {} are invalid:\n{errors}", dir.display()))?;
            let loaded = policies.len();
            governed.set_policies(policies);
            let tool = governed.load_tool(tool.manifest.clone())?;
            let task = governed.open_task(&tool, TaskRequest::new(args.principal.clone(), week))?;
            Some((governed, task, loaded))
        }
    };
    // The floor gets the same directories and variables, so both do the same work.
    let floor = Floor::new(runtime.engine(), &tool, args.function.as_deref(), Some(task.grant()))?;
    let toolcell_call = || Call { input: input.clone(), output: None };

    // One toolcell call first: a failing call would make every figure meaningless.
    let report = task.invoke(toolcell_call()).await.context("the first call")?;
    if !matches!(report.result, CallResult::Output(_) | CallResult::Exit(0)) {
        bail!("the tool does not succeed on this input, so there is nothing to measure: {:?}", report.result);
    }
    if let Some((_, governed, _)) = &governed {
        let report = governed.invoke(toolcell_call()).await.context("the first call with policies")?;
        if !matches!(report.result, CallResult::Output(_) | CallResult::Exit(0)) {
            bail!("with the policies in force the tool does not succeed: {:?}", report.result);
        }
    }
    let warm_up = (args.calls / 10).clamp(1, 50);
    for _ in 0..warm_up {
        floor.call(&input).await.context("floor call")?;
        task.invoke(toolcell_call()).await?;
        if let Some((_, governed, _)) = &governed {
            governed.invoke(toolcell_call()).await?;
        }
    }
    // Interleaved, so drift in the machine hits each alike.
    let mut floor_times = Vec::with_capacity(args.calls);
    let mut toolcell_times = Vec::with_capacity(args.calls);
    let mut governed_times = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        let started = Instant::now();
        floor.call(&input).await.context("floor call")?;
        floor_times.push(started.elapsed());
        let started = Instant::now();
        task.invoke(toolcell_call()).await?;
        toolcell_times.push(started.elapsed());
        if let Some((_, governed, _)) = &governed {
            let started = Instant::now();
            governed.invoke(toolcell_call()).await?;
            governed_times.push(started.elapsed());
        }
    }
    floor_times.sort();
    toolcell_times.sort();
    governed_times.sort();

    // Throughput: the same number of calls, `concurrency` at a time.
    let started = Instant::now();
    let per_worker = args.calls.div_ceil(args.concurrency);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (task, input) = (task.clone(), input.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..per_worker {
                task.invoke(Call { input: input.clone(), output: None }).await?;
            }
            Ok::<_, toolcell_runtime::InvokeError>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let calls_per_s = (per_worker * args.concurrency) as f64 / started.elapsed().as_secs_f64();
    if let Ok(task) = Arc::try_unwrap(task) {
        task.close().await;
    }

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (floor_p50, floor_p99) = (us(percentile(&floor_times, 0.5)), us(percentile(&floor_times, 0.99)));
    let (toolcell_p50, toolcell_p99) = (us(percentile(&toolcell_times, 0.5)), us(percentile(&toolcell_times, 0.99)));
    let peak = peak_rss().unwrap_or(0);
    let with_policies = governed.map(|(governed, task, loaded)| {
        let (p50, p99) = (us(percentile(&governed_times, 0.5)), us(percentile(&governed_times, 0.99)));
        ((governed, task), loaded, p50, p99)
    });
    if args.json {
        let policies = with_policies.as_ref().map(|(_, loaded, p50, p99)| {
            serde_json::json!({
                "policies": loaded,
                "p50_us": p50,
                "p99_us": p99,
                "ratio_p50_to_toolcell": p50 / toolcell_p50,
                "ratio_p99_to_toolcell": p99 / toolcell_p99,
            })
        });
        outln!(
            "{}",
            serde_json::json!({
                "tool": tool.manifest.name,
                "calls": args.calls,
                "concurrency": args.concurrency,
                "floor_p50_us": floor_p50,
                "floor_p99_us": floor_p99,
                "toolcell_p50_us": toolcell_p50,
                "toolcell_p99_us": toolcell_p99,
                "ratio_p50": toolcell_p50 / floor_p50,
                "ratio_p99": toolcell_p99 / floor_p99,
                "calls_per_s": calls_per_s,
                "peak_rss_bytes": peak,
                "with_policies": policies,
            })
        );
    } else {
        outln!("{} ({} calls each, interleaved)", tool.manifest.name, args.calls);
        outln!("  floor     p50 {floor_p50:>9.1} µs   p99 {floor_p99:>9.1} µs");
        outln!("  toolcell  p50 {toolcell_p50:>9.1} µs   p99 {toolcell_p99:>9.1} µs");
        outln!("  ratio     p50 {:>9.2}      p99 {:>9.2}", toolcell_p50 / floor_p50, toolcell_p99 / floor_p99);
        if let Some((_, loaded, p50, p99)) = &with_policies {
            outln!("  policies  p50 {p50:>9.1} µs   p99 {p99:>9.1} µs   ({loaded} request-time policies in force)");
            outln!(
                "  ratio to toolcell without them  p50 {:>5.2}   p99 {:>5.2}",
                p50 / toolcell_p50,
                p99 / toolcell_p99
            );
        }
        outln!("  throughput {calls_per_s:.0} calls/s at concurrency {}", args.concurrency);
        outln!("  peak RSS   {:.1} MiB", peak as f64 / (1 << 20) as f64);
    }
    if let Some(((_governed, task), ..)) = with_policies {
        task.close().await;
    }
    Ok(ExitCode::SUCCESS)
}
