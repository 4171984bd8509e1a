//! The `toolcell` binary end to end: grants from flags, exit codes, one-line
//! errors that name the limit or rule, `describe`, and `policy check` on
//! every manifest in `policies/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use toolcell_test_guests as guests;

use crate::common::text;

struct Cli {
    state: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli { state: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_toolcell"))
            .args(args)
            .env("XDG_STATE_HOME", self.state.path())
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.state.path().join("toolcell/audit.jsonl")).unwrap_or_default()
    }
}

#[track_caller]
fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "stdout: {}\nstderr: {}", text(&output.stdout), text(&output.stderr));
}

/// The one line toolcell prints about a stopped call.
fn toolcell_line(output: &Output) -> String {
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("toolcell:")).collect();
    assert_eq!(lines.len(), 1, "expected one toolcell line in: {stderr}");
    lines[0].to_owned()
}

#[test]
fn a_tool_runs_with_json_input() {
    let cli = Cli::new();
    let out = cli.run(&["run", guests::WORD_COUNT, "--input", r#"{"text":"one two three"}"#]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "{\"bytes\":13,\"lines\":1,\"words\":3}\n");
    assert!(cli.audit().contains("\"event\":\"task_closed\""));
}

#[test]
fn tool_input_can_come_from_stdin() {
    let cli = Cli::new();
    let out = cli.run_with_stdin(&["run", guests::WORD_COUNT, "--input", "-"], br#"{"text":"a b"}"#);
    assert_code(&out, 0);
    assert!(text(&out.stdout).contains("\"words\":2"));
}

#[test]
fn a_tool_error_exits_1() {
    let cli = Cli::new();
    let out = cli.run(&["run", guests::WORD_COUNT, "--input", "{}"]);
    assert_code(&out, 1);
    assert!(toolcell_line(&out).contains("invalid input: missing field `text`"), "{}", toolcell_line(&out));
}

#[test]
fn a_command_gets_args_and_stdin_and_its_exit_code_passes_through() {
    let cli = Cli::new();
    let out = cli.run(&["run", guests::PROBE_COMMAND, "--", "args", "x", "--flag"]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "args x --flag\n");
    let out = cli.run_with_stdin(&["run", guests::PROBE_COMMAND, "--", "echo-stdin"], b"piped bytes");
    assert_eq!(text(&out.stdout), "piped bytes");
    let out = cli.run(&["run", guests::PROBE_COMMAND, "--", "exit", "5"]);
    assert_code(&out, 1);
}

#[test]
fn dir_flags_grant_exactly_what_they_say() {
    let cli = Cli::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), "granted").unwrap();
    let ro = format!("{}::/data:ro", data.path().display());
    let rw = format!("{}::/data", data.path().display());

    let out = cli.run(&["run", "--dir", &ro, guests::PROBE_COMMAND, "--", "read", "/data/f.txt"]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "granted\n");
    let out = cli.run(&["run", "--dir", &ro, guests::PROBE_COMMAND, "--", "write", "/data/new", "x"]);
    assert_code(&out, 1);
    assert!(!data.path().join("new").exists());
    let out = cli.run(&["run", "--dir", &rw, guests::PROBE_COMMAND, "--", "write", "/data/new", "x"]);
    assert_code(&out, 0);
    assert!(data.path().join("new").exists());
    // GUEST defaults to the host path.
    let plain = format!("{}:ro", data.path().display());
    let inside = format!("{}/f.txt", data.path().display());
    let out = cli.run(&["run", "--dir", &plain, guests::PROBE_COMMAND, "--", "read", &inside]);
    assert_code(&out, 0);
    // Without flags nothing is granted.
    let out = cli.run(&["run", guests::PROBE_COMMAND, "--", "read", &inside]);
    assert_code(&out, 1);
}

#[test]
fn env_flags_grant_only_named_variables() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--env", "GREETING=hi", "--env", "PATH", guests::PROBE_COMMAND, "--", "env"]);
    assert_code(&out, 0);
    let names: Vec<String> = text(&out.stdout).lines().map(|l| l.split('=').next().unwrap().to_owned()).collect();
    assert_eq!(names, ["GREETING", "PATH"]);
}

#[test]
fn limits_end_with_one_line_naming_the_limit_and_a_distinct_code() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--timeout", "500ms", guests::PROBE_COMMAND, "--", "sleep", "3600"]);
    assert_code(&out, 124);
    assert!(toolcell_line(&out).contains("timeout limit of 500ms exceeded"), "{}", toolcell_line(&out));

    let out = cli.run(&["run", "--timeout", "500ms", guests::PROBE_COMMAND, "--", "spin"]);
    let line = toolcell_line(&out);
    assert!(out.status.code() == Some(124) || out.status.code() == Some(121), "{line}");
    assert!(line.contains("limit of 500ms exceeded"), "{line}");

    let out = cli.run(&["run", "--memory", "16MiB", guests::PROBE_COMMAND, "--", "alloc"]);
    assert_code(&out, 121);
    assert!(toolcell_line(&out).contains("memory limit of 16MiB exceeded"));

    let out = cli.run(&["run", guests::PROBE_COMMAND, "--", "recurse"]);
    assert_code(&out, 121);
    assert!(toolcell_line(&out).contains("stack limit of 1MiB exceeded"));
}

#[test]
fn a_crash_exits_126_with_the_panic_on_stderr() {
    let cli = Cli::new();
    let out = cli.run(&["run", guests::PROBE_COMMAND, "--", "panic"]);
    assert_code(&out, 126);
    assert!(text(&out.stderr).contains("probe panicked on purpose"));
    assert!(toolcell_line(&out).contains("tool crashed"));
}

#[test]
fn refusals_exit_125() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let out = cli.run(&["run", module.to_str().unwrap()]);
    assert_code(&out, 125);
    assert!(toolcell_line(&out).contains("core WebAssembly module"));

    let out = cli.run(&["run", "--dir", "/definitely/missing::/x", guests::PROBE_COMMAND]);
    assert_code(&out, 125);
    assert!(toolcell_line(&out).contains("/definitely/missing"));

    let out = cli.run(&["run", guests::WORD_COUNT, "--", "arg"]);
    assert_code(&out, 125);
    assert!(toolcell_line(&out).contains("give it --input JSON"));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A manifest like policies/file-stats.toml but for the probe command.
fn probe_manifest(dir: &Path, data: &Path) -> PathBuf {
    let path = dir.join("probe.toml");
    std::fs::write(
        &path,
        format!(
            "[tool]\nname = \"probe\"\nowner = \"tests\"\npurpose = \"probe\"\nreview_by = 2099-01-01\n\
             component = \"{}\"\n\n[[filesystem]]\nhost = \"{}\"\nguest = \"/data\"\nmode = \"read-only\"\n\n\
             [limits]\ntimeout = \"5s\"\n",
            guests::PROBE_COMMAND,
            data.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn flags_with_a_manifest_narrow_and_never_widen() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), "granted").unwrap();
    let manifest = probe_manifest(dir.path(), data.path());
    let manifest = manifest.to_str().unwrap();

    let out = cli.run(&["run", "--manifest", manifest, "--", "read", "/data/f.txt"]);
    assert_code(&out, 0);

    let rw = format!("{}::/data", data.path().display());
    let out = cli.run(&["run", "--manifest", manifest, "--dir", &rw, "--", "read", "/data/f.txt"]);
    assert_code(&out, 125);
    assert!(toolcell_line(&out).contains("directory `/data` asked read-write but the manifest grants read-only"));

    let out = cli.run(&["run", "--manifest", manifest, "--timeout", "1m", "--", "args"]);
    assert_code(&out, 125);
    assert!(toolcell_line(&out).contains("limits.timeout 1m is above the manifest's 5s"));

    let out = cli.run(&["run", "--manifest", manifest, "--env", "HOME", "--", "env"]);
    assert_code(&out, 125);
    assert!(toolcell_line(&out).contains("variable `HOME` is not granted"));

    let out = cli.run(&["run", "--manifest", manifest, "--timeout", "1s", "--", "sleep", "3600"]);
    assert_code(&out, 124);
}

#[test]
fn describe_prints_description_and_schema() {
    let cli = Cli::new();
    let out = cli.run(&["describe", guests::WORD_COUNT, "--json"]);
    assert_code(&out, 0);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["name"], "word-count");
    assert_eq!(info["shape"], "tool");
    assert_eq!(info["input_schema"]["required"], serde_json::json!(["text"]));
    let out = cli.run(&["describe", guests::PROBE_COMMAND]);
    assert_code(&out, 0);
    assert!(text(&out.stdout).starts_with("probe-command (command)"));
}

#[test]
fn policy_check_reports_grants_and_rejects_bad_manifests() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let good = probe_manifest(dir.path(), data.path());
    let out = cli.run(&["policy", "check", good.to_str().unwrap()]);
    assert_code(&out, 0);
    let report = text(&out.stdout);
    assert!(report.contains("filesystem  ") && report.contains("-> /data (read-only)"), "{report}");
    assert!(report.contains("egress      nothing"), "{report}");
    assert!(report.contains("sockets     nothing (raw TCP, UDP and name lookup refused)"), "{report}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&good).unwrap() + "\n[network]\nallow = \"*\"\n").unwrap();
    let out = cli.run(&["policy", "check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_code(&out, 1);
    let report = text(&out.stdout);
    assert!(report.contains("bad.toml: INVALID"), "{report}");
    assert!(report.contains("unknown field `network`"), "{report}");
    assert!(report.contains("2 checked, 1 valid, 1 invalid"));
}

#[test]
fn every_manifest_in_policies_parses() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            toolcell_runtime::Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} manifests found");
}

/// A one-thread HTTP server on 127.0.0.1 that answers every request with
/// `hello` and counts connections.
fn loopback_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            // Drain the body before answering: closing with unread bytes resets the connection.
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            if head.contains("transfer-encoding: chunked") {
                let mut body = Vec::new();
                while !body.ends_with(b"0\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    body.push(byte[0]);
                }
            } else if let Some(length) = head.split("content-length:").nth(1) {
                let length: usize = length.lines().next().unwrap_or("").trim().parse().unwrap_or(0);
                let _ = stream.read_exact(&mut vec![0; length]);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
        }
    });
    (port, count)
}

#[test]
fn allow_http_grants_egress_ad_hoc() {
    let cli = Cli::new();
    let (port, connections) = loopback_server();
    let url = format!("http://127.0.0.1:{port}/ok");
    let pattern = format!("http://127.0.0.1:{port}/*");

    let out = cli.run(&["run", guests::PROBE_COMMAND, "--", "http", "GET", &url]);
    assert_code(&out, 1);
    assert!(text(&out.stderr).contains("no egress is granted"), "{}", text(&out.stderr));
    let out = cli.run(&["run", "--allow-http", &pattern, guests::PROBE_COMMAND, "--", "http", "POST", &url]);
    assert_code(&out, 1);
    assert!(text(&out.stderr).contains("method POST not allowed"), "{}", text(&out.stderr));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);

    let out = cli.run(&["run", "--allow-http", &pattern, guests::PROBE_COMMAND, "--", "http", "GET", &url]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "status 200\nhello\n");
    let methods = format!("GET,POST={pattern}");
    let out = cli.run(&["run", "--allow-http", &methods, guests::PROBE_COMMAND, "--", "http", "POST", &url]);
    assert_code(&out, 0);
    assert!(cli.audit().contains("\"event\":\"egress\""));

    // A tool component gets the same grant and the same checks.
    let input = format!(r#"{{"action":"http","method":"GET","url":"{url}"}}"#);
    let out = cli.run(&["run", "--allow-http", &pattern, guests::PROBE_TOOL, "--input", &input]);
    assert_code(&out, 0);
    let output: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!((output["status"].as_u64(), output["body"].as_str()), (Some(200), Some("hello")));
    let out = cli.run(&["run", guests::PROBE_TOOL, "--input", &input]);
    assert_code(&out, 1);
    assert!(toolcell_line(&out).contains("no egress is granted"), "{}", toolcell_line(&out));

    let out = cli.run(&["run", "--allow-http", "ftp://x/", guests::PROBE_COMMAND]);
    assert_code(&out, 2);
}

#[test]
fn bench_reports_the_floor_toolcell_and_their_ratio_as_json() {
    let cli = Cli::new();
    let out = cli.run(&[
        "bench",
        guests::WORD_COUNT,
        "--input",
        r#"{"text":"a b"}"#,
        "--calls",
        "20",
        "--concurrency",
        "2",
        "--json",
    ]);
    assert_code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "floor_p50_us",
        "floor_p99_us",
        "toolcell_p50_us",
        "toolcell_p99_us",
        "ratio_p50",
        "ratio_p99",
        "calls_per_s",
        "peak_rss_bytes",
    ] {
        assert!(report[field].as_f64().is_some_and(|v| v > 0.0), "{field} in {report}");
    }
    // A call that fails leaves nothing to measure, and says so.
    let out = cli.run(&["bench", guests::WORD_COUNT, "--input", "{}", "--calls", "5"]);
    assert_code(&out, 125);
    assert!(text(&out.stderr).contains("does not succeed on this input"), "{}", text(&out.stderr));
    // A command with a granted directory: its floor gets the same directory.
    let manifest = cli.state.path().join("file-stats.toml");
    std::fs::write(
        &manifest,
        format!(
            "[tool]\nname = \"file-stats\"\nowner = \"t\"\npurpose = \"p\"\nreview_by = 2099-01-01\n\
             component = \"{}\"\n[[filesystem]]\nhost = \"{}\"\nguest = \"/docs\"\n",
            guests::FILE_STATS,
            repo().join("examples/sample-docs").display()
        ),
    )
    .unwrap();
    let out = cli.run(&["bench", "--manifest", manifest.to_str().unwrap(), "--calls", "5", "--json", "--", "/docs"]);
    assert_code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tool"], "file-stats");
}

#[test]
fn the_cli_behaves_as_a_unix_tool_in_pipes_errors_and_identity() {
    use std::io::{BufRead, BufReader};
    let cli = Cli::new();
    // A reader that goes away after one line (`| head -1`): a quiet end, no panic.
    let policies: Vec<PathBuf> = std::fs::read_dir(repo().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    // Enough output to fill the pipe after the reader has gone.
    let policies: Vec<PathBuf> = policies.iter().cycle().take(policies.len() * 200).cloned().collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolcell"))
        .args(["policy", "check"])
        .args(&policies)
        .env("XDG_STATE_HOME", cli.state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // Dropped here: the pipe's reading end is closed.
    let output = child.wait_with_output().unwrap();
    assert!(!first.is_empty());
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert!(matches!(output.status.code(), Some(0 | 141)), "{:?}", output.status);

    // An error says its cause once.
    let missing = cli.state.path().join("missing.wasm");
    let output = cli.run(&["run", missing.to_str().unwrap()]);
    assert_code(&output, 125);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");

    // The principal of a local run is the process's real user, whatever the
    // environment claims (or leaves out).
    let name = text(&Command::new("id").arg("-un").output().unwrap().stdout).trim().to_owned();
    for (user, logname) in [(None, None), (Some("mallory"), Some("mallory"))] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
        command
            .args(["run", guests::WORD_COUNT, "--input", r#"{"text":"hi"}"#])
            .env("XDG_STATE_HOME", cli.state.path())
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
            .env_remove("USER")
            .env_remove("LOGNAME");
        if let (Some(user), Some(logname)) = (user, logname) {
            command.env("USER", user).env("LOGNAME", logname);
        }
        let output = command.output().unwrap();
        assert_code(&output, 0);
        let opened = cli
            .audit()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .rfind(|e| e["event"] == "task_opened")
            .unwrap();
        assert_eq!(opened["principal"], format!("local:{name}").as_str(), "USER={user:?}");
    }
}
