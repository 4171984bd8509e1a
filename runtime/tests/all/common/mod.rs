//! Shared set-up for the runtime's integration tests: one engine per test
//! process (compiling components once), a runtime per test with its own
//! audit file, and helpers to run the probe guests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use toolcell_runtime::{
    ByteSize, Call, CallReport, CallResult, DirGrant, DirMode, EngineSettings, InvokeError, Manifest, Runtime,
    RuntimeConfig, TaskRequest, TimeSpan, Tool, ToolEngine,
};

pub use toolcell_test_guests as guests;

pub mod http_server;
pub mod slow_proxy;

static ENGINE: LazyLock<Arc<ToolEngine>> = LazyLock::new(|| {
    let settings = EngineSettings {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("toolcell-cache")),
        ..EngineSettings::default()
    };
    ToolEngine::new(settings).expect("engine")
});

/// A runtime on the shared engine, auditing to a file in its own temp dir.
pub struct Harness {
    pub runtime: Runtime,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = RuntimeConfig {
            audit_log: Some(dir.path().join("audit.jsonl")),
            scratch_root: Some(dir.path().join("scratch")),
            ..RuntimeConfig::default()
        };
        std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
        let runtime = Runtime::with_engine(ENGINE.clone(), config).unwrap();
        Harness { runtime, dir }
    }

    pub fn load(&self, manifest: Manifest) -> Arc<Tool> {
        self.runtime.load_tool(manifest).expect("load tool")
    }

    /// Opens a task on `manifest` and runs one call in it.
    pub async fn call(&self, manifest: Manifest, call: Call) -> Result<CallReport, InvokeError> {
        let tool = self.load(manifest);
        let task = self.runtime.open_task(&tool, TaskRequest::new("test", Duration::from_secs(120))).unwrap();
        let result = task.invoke(call).await;
        task.close().await;
        result
    }

    /// Runs the probe command with `args` and the grants `edit` sets.
    pub async fn probe(&self, args: &[&str], edit: impl FnOnce(&mut Manifest)) -> Result<CallReport, InvokeError> {
        let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND));
        edit(&mut manifest);
        let args = args.iter().map(|a| a.to_string()).collect();
        self.call(manifest, Call::command(args, Vec::new())).await
    }

    /// Runs the probe tool with JSON `input` and the grants `edit` sets.
    pub async fn probe_tool(&self, input: &str, edit: impl FnOnce(&mut Manifest)) -> Result<CallReport, InvokeError> {
        let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
        edit(&mut manifest);
        self.call(manifest, Call::tool(input)).await
    }

    /// Proves the host still serves: a word count in a fresh task.
    pub async fn still_serves(&self) {
        let manifest = Manifest::ad_hoc(Path::new(guests::WORD_COUNT));
        let report = self.call(manifest, Call::tool(r#"{"text":"still here"}"#)).await.unwrap();
        assert_eq!(report.result, CallResult::Output(r#"{"bytes":10,"lines":1,"words":2}"#.into()));
    }

    /// Every audit event written so far, parsed.
    /// The trail's events, without the chain's own checkpoint lines (the
    /// audit module's tests cover those).
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("audit line is JSON"))
            .filter(|event| event["event"] != "checkpoint")
            .collect()
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }

    pub fn scratch_root(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }
}

pub fn dir(host: &Path, guest: &str, mode: DirMode) -> DirGrant {
    DirGrant { host: host.canonicalize().unwrap(), guest: guest.into(), mode }
}

pub fn stdout(report: &CallReport) -> String {
    String::from_utf8_lossy(&report.stdout).into_owned()
}

pub fn stderr(report: &CallReport) -> String {
    String::from_utf8_lossy(&report.stderr).into_owned()
}

/// The probe command's verdict on a refused operation: exit 1, `denied:` on stderr.
#[track_caller]
pub fn assert_denied(report: &CallReport) {
    assert_eq!(report.result, CallResult::Exit(1), "stdout: {} stderr: {}", stdout(report), stderr(report));
    assert!(stderr(report).starts_with("denied:"), "{}", stderr(report));
}

#[track_caller]
pub fn assert_allowed(report: &CallReport) -> String {
    assert_eq!(report.result, CallResult::Exit(0), "stderr: {}", stderr(report));
    stdout(report)
}

pub fn secs(n: u64) -> TimeSpan {
    TimeSpan(Duration::from_secs(n))
}

pub fn millis(n: u64) -> TimeSpan {
    TimeSpan(Duration::from_millis(n))
}

pub fn mib(n: u64) -> ByteSize {
    ByteSize(n << 20)
}

pub fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect()
}
