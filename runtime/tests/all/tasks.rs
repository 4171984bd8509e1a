//! Tasks: narrowing attenuates and never widens, every invocation is a
//! fresh instance, teardown runs on every exit path (including a dropped
//! future), and the audit trail records it all without values.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use toolcell_runtime::{
    Call, CallResult, DirMode, DirNarrowing, EnvGrant, EnvSource, InvokeError, LimitKind, LimitsNarrowing, Manifest,
    Narrowing, TaskError, TaskRequest,
};

fn probe_with_data(data: &Path) -> Manifest {
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND));
    // A second, read-only directory: the runtime's own test sources (not the
    // system temp dir, which holds the runtime's state and so is never granted).
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    manifest.filesystem = vec![dir(data, "/data", DirMode::ReadWrite), dir(&sources, "/tmp-host", DirMode::ReadOnly)];
    manifest.env = vec![
        EnvGrant { name: "KEEP".into(), source: EnvSource::Value("kept".into()) },
        EnvGrant { name: "DROP".into(), source: EnvSource::Value("dropped-value".into()) },
    ];
    manifest.scratch = Some("/scratch".into());
    manifest
}

fn command(args: &[&str]) -> Call {
    Call::command(args.iter().map(|a| a.to_string()).collect(), Vec::new())
}

#[tokio::test]
async fn a_narrowing_is_honoured() {
    let h = Harness::new();
    let data = tempfile::tempdir().unwrap();
    let tool = h.load(probe_with_data(data.path()));
    let narrowing = Narrowing {
        filesystem: Some(vec![DirNarrowing { guest: "/data".into(), mode: DirMode::ReadOnly }]),
        env: Some(vec!["KEEP".into()]),
        scratch: Some(false),
        egress: None,
        sockets: None,
        credentials: None,
        limits: LimitsNarrowing { memory: Some(mib(64)), ..Default::default() },
    };
    let task = h
        .runtime
        .open_task(&tool, TaskRequest { narrowing, ..TaskRequest::new("alice", Duration::from_secs(60)) })
        .unwrap();
    // Read-only now: writing is refused.
    assert_denied(&task.invoke(command(&["write", "/data/x", "y"])).await.unwrap());
    // The dropped dir and the scratch dir are gone.
    assert_denied(&task.invoke(command(&["list", "/tmp-host"])).await.unwrap());
    assert_denied(&task.invoke(command(&["list", "/scratch"])).await.unwrap());
    // Only the kept variable is visible.
    assert_eq!(assert_allowed(&task.invoke(command(&["env"])).await.unwrap()), "KEEP=kept\n");
    assert_eq!(task.grant().limits.memory, mib(64));
    task.close().await;
}

#[test]
fn a_widening_narrowing_is_rejected_and_named() {
    let h = Harness::new();
    let data = tempfile::tempdir().unwrap();
    let tool = h.load(probe_with_data(data.path()));
    let cases = [
        (
            Narrowing {
                filesystem: Some(vec![DirNarrowing { guest: "/etc".into(), mode: DirMode::ReadOnly }]),
                ..Default::default()
            },
            "directory `/etc` is not granted by the manifest",
        ),
        (
            Narrowing {
                filesystem: Some(vec![DirNarrowing { guest: "/tmp-host".into(), mode: DirMode::ReadWrite }]),
                ..Default::default()
            },
            "directory `/tmp-host` asked read-write but the manifest grants read-only",
        ),
        (Narrowing { env: Some(vec!["HOME".into()]), ..Default::default() }, "variable `HOME` is not granted"),
        (
            Narrowing {
                limits: LimitsNarrowing { memory: Some(mib(4096)), ..Default::default() },
                ..Default::default()
            },
            "limits.memory 4GiB is above the manifest's 128MiB",
        ),
    ];
    for (narrowing, expected) in cases {
        let request = TaskRequest { narrowing, ..TaskRequest::new("mallory", Duration::from_secs(60)) };
        let err = h.runtime.open_task(&tool, request).unwrap_err();
        assert!(matches!(err, TaskError::Widening(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "`{err}` lacks `{expected}`");
    }
    // No task was opened; each refusal is on the record with its reason.
    let events = h.audit_events();
    assert_eq!(kinds(&events), ["task_refused"; 4]);
    assert_eq!(events[0]["principal"], "mallory");
    assert!(events[1]["reason"].as_str().unwrap().contains("asked read-write"));
}

#[test]
fn an_unknown_manifest_field_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tool.toml");
    std::fs::write(
        &path,
        "[tool]\nname = \"probe\"\nowner = \"o\"\npurpose = \"p\"\nreview_by = 2027-01-01\ncomponent = \"x.wasm\"\nallow_everything = true\n",
    )
    .unwrap();
    let err = Manifest::load(&path).unwrap_err();
    assert_eq!(err.line, 7);
    assert_eq!(err.field, "tool.allow_everything");
    assert!(err.to_string().contains("unknown field `allow_everything`"), "{err}");
}

#[tokio::test]
async fn every_invocation_is_a_fresh_instance() {
    let h = Harness::new();
    let tool = h.load(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL)));
    let task = h.runtime.open_task(&tool, TaskRequest::new("t", Duration::from_secs(60))).unwrap();
    for _ in 0..3 {
        let report = task.invoke(Call::tool(r#"{"action":"count"}"#)).await.unwrap();
        assert_eq!(report.result, CallResult::Output(r#"{"count":1}"#.into()));
    }
}

#[tokio::test]
async fn the_audit_trail_records_the_task_without_values() {
    let h = Harness::new();
    let data = tempfile::tempdir().unwrap();
    let tool = h.load(probe_with_data(data.path()));
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice@example.com", Duration::from_secs(60))).unwrap();
    let workload = task.workload().to_owned();
    assert!(workload.starts_with("spiffe://toolcell.local/tool/probe-command/task/"), "{workload}");
    task.invoke(command(&["args"])).await.unwrap();
    task.invoke(command(&["exit", "1"])).await.unwrap();
    let summary = task.close().await;
    assert_eq!((summary.invocations, summary.failures), (2, 1));

    let events = h.audit_events();
    assert_eq!(
        kinds(&events),
        [
            "task_opened",
            "invocation_started",
            "invocation_ended",
            "invocation_started",
            "invocation_ended",
            "task_closed"
        ]
    );
    let opened = &events[0];
    assert_eq!(opened["principal"], "alice@example.com");
    assert_eq!(opened["workload"], workload.as_str());
    assert_eq!(opened["grant"]["env"], serde_json::json!(["KEEP", "DROP"]));
    assert!(opened["grant"]["filesystem"]["/data"].as_str().unwrap().starts_with("read-write"));
    assert_eq!(opened["grant"]["egress"], serde_json::json!([]));
    assert_eq!(events[2]["outcome"], "ok");
    assert_eq!(events[4]["outcome"], "exit");
    assert_eq!(events[5]["how"], "closed");
    assert!(!h.audit_text().contains("dropped-value"), "a variable's value reached the audit trail");
}

#[tokio::test]
async fn cancelling_a_call_tears_it_down() {
    let h = Harness::new();
    let data = tempfile::tempdir().unwrap();
    let tool = h.load(probe_with_data(data.path()));
    let task = h.runtime.open_task(&tool, TaskRequest::new("t", Duration::from_secs(60))).unwrap();
    // Drop the call's future while the guest sleeps.
    let outcome = tokio::time::timeout(Duration::from_millis(300), task.invoke(command(&["sleep", "3600"]))).await;
    assert!(outcome.is_err(), "the call should still be running when cancelled");
    // Its scratch dir went with it at once (only the runtime's lock file is left).
    assert_eq!(std::fs::read_dir(h.runtime.scratch_dir()).unwrap().count(), 1);
    // Its teardown runs on the runtime's side, whatever became of the caller,
    // and closes the record as `cancelled`.
    let started = std::time::Instant::now();
    let ended = loop {
        let events = h.audit_events();
        if let Some(ended) = events.iter().find(|e| e["event"] == "invocation_ended") {
            break ended.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the cancelled call's teardown never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ended["outcome"], "cancelled");
    // The task still serves.
    assert_allowed(&task.invoke(command(&["args"])).await.unwrap());
    drop(task);
    let events = h.audit_events();
    assert_eq!(events.last().unwrap()["how"], "dropped");
    h.still_serves().await;
}

#[tokio::test]
async fn the_task_deadline_cuts_calls_and_then_refuses_them() {
    let h = Harness::new();
    let tool = h.load(Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND)));
    let task = h.runtime.open_task(&tool, TaskRequest::new("t", Duration::from_millis(400))).unwrap();
    match task.invoke(command(&["sleep", "3600"])).await {
        Err(InvokeError::Limit(hit)) => {
            assert_eq!(hit.kind, LimitKind::Timeout);
            assert!(hit.to_string().contains("the task's deadline came first"), "{hit}");
        }
        other => panic!("expected the deadline to cut the call: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = task.invoke(command(&["args"])).await.unwrap_err();
    assert!(matches!(err, InvokeError::TaskExpired), "{err:?}");
}

#[tokio::test]
async fn invocations_of_one_task_run_concurrently() {
    let h = Harness::new();
    let tool = h.load(Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND)));
    let task = h.runtime.open_task(&tool, TaskRequest::new("t", Duration::from_secs(60))).unwrap();
    let calls = (0..8).map(|i| task.invoke(command(&["args", &i.to_string()])));
    // Polled together on one thread: each call is its own fiber, so they interleave.
    let reports = futures::future::join_all(calls).await;
    for (i, report) in reports.into_iter().enumerate() {
        assert_eq!(assert_allowed(&report.unwrap()), format!("args {i}\n"));
    }
}

#[test]
fn a_task_needs_a_principal() {
    let h = Harness::new();
    let tool = h.load(Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND)));
    let err = h.runtime.open_task(&tool, TaskRequest::new("  ", Duration::from_secs(1))).unwrap_err();
    assert!(matches!(err, TaskError::NoPrincipal));
}
