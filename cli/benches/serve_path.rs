//! The agent's path against the sandbox's own cost, in one run: what a
//! `tools/call` to `toolcell serve` costs beyond the call itself.
//!
//! Interleaved in rounds, the same word-count call as
//! - `floor`: bare wasmtime through the runtime's `Floor` (fresh store and
//!   instance, no toolcell);
//! - `in-process`: the full path a host embedding toolcell pays: open a
//!   one-call task, invoke, close, the audit file written (chained, signed
//!   checkpoint and sync at close);
//! - the same with the audit file on tmpfs (`/dev/shm`), where the sync at
//!   task close costs nothing: what is left beyond the storage's sync;
//! - `serve stdio`: a JSON-RPC `tools/call` written to `toolcell serve`'s
//!   stdin and its answer read back, by a minimal client (no SDK), with the
//!   server's CPU per call from `/proc/PID/stat`.
//!
//! Then start-up to a served `initialize` with the example policies and the
//! idle RSS, and `toolcell serve --http` with 1, 8 and 64 concurrent
//! clients (keep-alive connections, one MCP session each).
//!
//! `cargo bench -p toolcell --bench serve_path` measures (5,000 calls per
//! path); under `cargo test` it runs each part a few times as a smoke test.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use toolcell_runtime::{
    Call, CallInput, EngineSettings, Floor, Manifest, Narrowing, Runtime, RuntimeConfig, TaskRequest, ToolEngine,
};
mod common;

const INPUT: &str = r#"{"text":"hello world"}"#;

/// Clock ticks per second of `/proc/PID/stat` (`CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU of `pid` so far, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may hold spaces: count from after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are utime and stime; here 11 and 12 (0-based).
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / TICKS
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// One path's figures over all rounds.
#[derive(Default)]
struct Figures {
    times: Vec<Duration>,
    cpu: f64,
}

impl Figures {
    /// Times `calls` calls of `call`, one by one, and adds the CPU process
    /// `pid` spent meanwhile.
    fn time(&mut self, calls: usize, pid: &str, mut call: impl FnMut()) {
        let cpu = cpu_seconds(pid);
        for _ in 0..calls {
            let started = Instant::now();
            call();
            self.times.push(started.elapsed());
        }
        self.cpu += cpu_seconds(pid) - cpu;
    }

    fn p50(&mut self) -> f64 {
        self.times.sort();
        percentile(&self.times, 0.5)
    }

    fn p99(&mut self) -> f64 {
        self.times.sort();
        percentile(&self.times, 0.99)
    }

    fn cpu_us(&self) -> f64 {
        self.cpu / self.times.len() as f64 * 1e6
    }
}

fn toolcell(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
    command
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("RUST_LOG")
        .arg("--audit-log")
        .arg(dir.join("serve-audit.jsonl"));
    command
}

/// `toolcell serve` over stdio, with a minimal JSON-RPC client.
struct StdioServer {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    line: String,
    id: u64,
}

impl StdioServer {
    fn start(dir: &Path, tools: &[&str]) -> (StdioServer, Duration) {
        let started = Instant::now();
        let mut child = toolcell(dir)
            .arg("serve")
            .args(tools)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = StdioServer { child, stdin, stdout, line: String::new(), id: 0 };
        server.send(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#,
            true,
        );
        let to_initialize = started.elapsed();
        assert!(server.line.contains("\"result\""), "initialize failed: {}", server.line);
        server.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, false);
        (server, to_initialize)
    }

    fn send(&mut self, request: &str, answered: bool) {
        writeln!(self.stdin, "{request}").unwrap();
        self.stdin.flush().unwrap();
        self.line.clear();
        if answered {
            self.stdout.read_line(&mut self.line).unwrap();
        }
    }

    fn call(&mut self) {
        self.id += 1;
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"word-count","arguments":{INPUT}}}}}"#,
            self.id
        );
        self.send(&request, true);
        assert!(self.line.contains(r#"\"words\":2"#), "{}", self.line);
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for StdioServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1.1 client of one MCP session.
struct HttpClient {
    stream: BufReader<std::net::TcpStream>,
    authority: String,
    session: String,
    id: u64,
}

impl HttpClient {
    fn connect(authority: &str) -> HttpClient {
        let stream = std::net::TcpStream::connect(authority).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut client =
            HttpClient { stream: BufReader::new(stream), authority: authority.into(), session: String::new(), id: 0 };
        let (headers, body) = client.post(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#,
        );
        assert!(body.contains("\"result\""), "initialize failed: {body}");
        client.session = headers
            .iter()
            .find(|(n, _)| n == "mcp-session-id")
            .map(|(_, v)| v.clone())
            .expect("the server opens a session");
        client.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        client
    }

    fn call(&mut self) {
        self.id += 1;
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"word-count","arguments":{INPUT}}}}}"#,
            self.id
        );
        let (_, body) = self.post(&request);
        assert!(body.contains(r#"\"words\":2"#), "{body}");
    }

    /// POSTs one message; the answer's headers and whole body (an SSE
    /// stream's events, or JSON).
    fn post(&mut self, body: &str) -> (Vec<(String, String)>, String) {
        let session =
            if self.session.is_empty() { String::new() } else { format!("mcp-session-id: {}\r\n", self.session) };
        let request = format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\n{session}content-length: {}\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).unwrap();
        let mut headers = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.stream.read_line(&mut line).unwrap() > 0, "the server closed the connection");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let mut out = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.stream.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0u8; size + 2];
                self.stream.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = header("content-length") {
            let mut chunk = vec![0u8; length.parse().unwrap()];
            self.stream.read_exact(&mut chunk).unwrap();
            out = chunk;
        }
        (headers, String::from_utf8_lossy(&out).into_owned())
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (rounds, per_round) = if measuring { (5, 1000) } else { (1, 5) };
    let dir = tempfile::tempdir().unwrap();
    let manifest = common::word_count_manifest(dir.path());
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // In-process: the engine and settings `toolcell serve` uses, an audit file signed and synced at close.
    let settings = EngineSettings { cache_dir: Some(dir.path().join("engine-cache")), ..EngineSettings::default() };
    let engine = ToolEngine::new(settings).unwrap();
    let mut config = RuntimeConfig { audit_log: Some(dir.path().join("audit.jsonl")), ..RuntimeConfig::default() };
    config.audit.signing_key = Some(dir.path().join("audit-key.json"));
    let runtime = Runtime::with_engine(engine, config).unwrap();
    let tool = runtime.load_tool(Manifest::load(&manifest).unwrap()).unwrap();
    let grant_task = runtime.open_task(&tool, TaskRequest::new("bench", Duration::from_secs(86_400))).unwrap();
    let floor = Floor::new(runtime.engine(), &tool, None, Some(grant_task.grant())).unwrap();
    // The same, its audit file on tmpfs, where the sync at close costs
    // nothing: what the path costs beyond the storage's sync.
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let mut shm_config = RuntimeConfig { audit_log: Some(shm.path().join("audit.jsonl")), ..RuntimeConfig::default() };
    shm_config.audit.signing_key = Some(dir.path().join("audit-key.json"));
    let shm_runtime = Runtime::with_engine(runtime.engine().clone(), shm_config).unwrap();
    let shm_tool = shm_runtime.load_tool(Manifest::load(&manifest).unwrap()).unwrap();
    let input = CallInput::Tool(INPUT.into());
    let full_path = |runtime: &Runtime, tool: &std::sync::Arc<toolcell_runtime::Tool>| {
        let task = runtime.open_task(tool, TaskRequest::one_call("bench", tool, Narrowing::default())).unwrap();
        let input = input.clone();
        async move {
            task.invoke(Call { input, output: None }).await.unwrap();
            task.close().await;
        }
    };

    let (mut server, _) = StdioServer::start(dir.path(), &["--manifest", manifest.to_str().unwrap()]);
    let me = std::process::id().to_string();
    let (mut floor_path, mut in_process, mut stdio) = (Figures::default(), Figures::default(), Figures::default());
    let mut on_tmpfs = Figures::default();
    // Warm-up: caches, the precompiled component, the allocator's pools.
    for _ in 0..per_round.min(100) {
        tokio.block_on(floor.call(&input)).unwrap();
        tokio.block_on(full_path(&runtime, &tool));
        tokio.block_on(full_path(&shm_runtime, &shm_tool));
        server.call();
    }
    let server_pid = server.pid();
    for _ in 0..rounds {
        floor_path.time(per_round, &me, || {
            tokio.block_on(floor.call(&input)).unwrap();
        });
        in_process.time(per_round, &me, || tokio.block_on(full_path(&runtime, &tool)));
        on_tmpfs.time(per_round, &me, || tokio.block_on(full_path(&shm_runtime, &shm_tool)));
        stdio.time(per_round, &server_pid, || server.call());
    }
    let server_rss = rss_mib(server.child.id());
    drop(server);
    tokio.block_on(grant_task.close());

    println!("word-count, {} calls per path, {rounds} interleaved rounds", rounds * per_round);
    println!("{:<28} {:>10} {:>10} {:>14}", "path", "p50 µs", "p99 µs", "CPU/call µs");
    let (floor_p50, in_p50, in_cpu) = (floor_path.p50(), in_process.p50(), in_process.cpu_us());
    let (tmpfs_p50, tmpfs_cpu) = (on_tmpfs.p50(), on_tmpfs.cpu_us());
    for (name, path) in [
        ("floor", &mut floor_path),
        ("in-process full path", &mut in_process),
        ("  the same, audit on tmpfs", &mut on_tmpfs),
        ("serve stdio", &mut stdio),
    ] {
        println!("{name:<28} {:>10.1} {:>10.1} {:>14.1}", path.p50(), path.p99(), path.cpu_us());
    }
    println!(
        "ratios: in-process/floor p50 {:.2} (target 1.3); stdio/in-process p50 {:.2}, CPU {:.2} (target 1.5 each)",
        in_p50 / floor_p50,
        stdio.p50() / in_p50,
        stdio.cpu_us() / in_cpu
    );
    println!(
        "audit on tmpfs: in-process/floor p50 {:.2}; the storage's sync at close is {:.0} µs of the p50, {:.0} µs of CPU",
        tmpfs_p50 / floor_p50,
        in_p50 - tmpfs_p50,
        in_cpu - tmpfs_cpu
    );
    println!("serve RSS after the calls: {server_rss:.1} MiB");

    // Start-up with the example policies (manifests and Cedar files); the
    // first start fills the precompile cache. Then, interleaved, starts that
    // reuse the tools' kept descriptions and starts that ask each tool again
    // (its entries removed first): what keeping them buys.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut kept = StartUp::default();
    let mut asked = StartUp::default();
    for attempt in 0..if measuring { 21 } else { 3 } {
        let asking = attempt % 2 == 1;
        if asking {
            forget_descriptions(&dir.path().join("cache"));
        }
        let started = Instant::now();
        let (mut server, to_initialize) = StdioServer::start(dir.path(), &["--policies", examples.to_str().unwrap()]);
        server.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, true);
        let to_list = started.elapsed();
        assert!(server.line.contains("word-count"), "tools/list: {}", server.line);
        std::thread::sleep(Duration::from_millis(300));
        let rss = rss_mib(server.child.id());
        if attempt == 0 {
            println!(
                "start-up, example policies, cold precompile cache: initialize {:.1} ms, tools/list {:.1} ms; idle RSS {rss:.1} MiB",
                ms(to_initialize),
                ms(to_list)
            );
            continue;
        }
        let into = if asking { &mut asked } else { &mut kept };
        into.initialize.push(to_initialize);
        into.listed.push(to_list);
        into.rss.push(rss);
    }
    for (what, starts) in [("descriptions kept", &mut kept), ("each tool asked", &mut asked)] {
        let (initialize, listed, rss) = starts.medians();
        println!(
            "start-up, example policies, warm precompile cache, {what}: median initialize {:.1} ms, tools/list {:.1} ms; idle RSS {rss:.1} MiB",
            ms(initialize),
            ms(listed)
        );
    }

    http(dir.path(), &manifest, measuring);
}

/// Start-ups of one kind.
#[derive(Default)]
struct StartUp {
    initialize: Vec<Duration>,
    listed: Vec<Duration>,
    rss: Vec<f64>,
}

impl StartUp {
    /// Medians of the time to `initialize`, to `tools/list` and of the idle RSS.
    fn medians(&mut self) -> (Duration, Duration, f64) {
        self.initialize.sort();
        self.listed.sort();
        self.rss.sort_by(f64::total_cmp);
        let middle = self.initialize.len() / 2;
        (self.initialize[middle], self.listed[middle], self.rss[middle])
    }
}

/// Removes the tools' kept descriptions under `cache`, so the next start asks each tool.
fn forget_descriptions(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            forget_descriptions(&path);
        } else if entry.file_name().to_string_lossy().starts_with("described-") {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `toolcell serve --http` with 1, 8 and 64 concurrent clients.
fn http(dir: &Path, manifest: &Path, measuring: bool) {
    let config = dir.join("http.toml");
    std::fs::write(&config, "[serve]\nmax_concurrent_calls = 128\nmax_calls_per_principal = 128\n").unwrap();
    let mut child = toolcell(dir)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--http", "127.0.0.1:0", "--manifest"])
        .arg(manifest)
        .args(["--admin-socket"])
        .arg(dir.join("http-admin.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let authority = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "toolcell serve --http exited");
        if let Some(url) = line.trim().strip_prefix("toolcell: serving MCP on http://") {
            break url.trim_end_matches("/mcp").to_owned();
        }
    };
    std::thread::spawn(move || for _ in stderr.lines() {});
    let pid = child.id().to_string();
    let duration = if measuring { Duration::from_secs(3) } else { Duration::from_millis(200) };
    println!("serve --http, {:.0}s per level", duration.as_secs_f64());
    println!("{:>8} {:>10} {:>10} {:>10} {:>14}", "clients", "calls/s", "p50 µs", "p99 µs", "CPU/call µs");
    for clients in [1, 8, 64] {
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut workers: Vec<HttpClient> = (0..clients).map(|_| HttpClient::connect(&authority)).collect();
        let cpu = cpu_seconds(&pid);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for worker in &mut workers {
                let times = times.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while started.elapsed() < duration {
                        let call = Instant::now();
                        worker.call();
                        mine.push(call.elapsed());
                    }
                    times.lock().unwrap().extend(mine);
                });
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid) - cpu;
        let mut times = times.lock().unwrap().clone();
        times.sort();
        println!(
            "{clients:>8} {:>10.0} {:>10.1} {:>10.1} {:>14.1}",
            times.len() as f64 / elapsed,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            cpu / times.len() as f64 * 1e6
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
