//! Every limit is hit on purpose; each stop names the limit and its value,
//! and the host keeps serving afterwards.

use crate::common::*;
use toolcell_runtime::{ByteSize, CallResult, InvokeError, LimitKind};

#[track_caller]
fn assert_limit(result: Result<toolcell_runtime::CallReport, InvokeError>, kind: LimitKind, value: &str) -> String {
    match result {
        Err(InvokeError::Limit(hit)) => {
            assert_eq!(hit.kind, kind, "{hit}");
            assert_eq!(hit.value, value, "{hit}");
            let message = hit.to_string();
            assert!(message.starts_with(&format!("{} limit of {value} exceeded", kind.name())), "{message}");
            message
        }
        other => panic!("expected the {} limit, got {other:?}", kind.name()),
    }
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_cpu_limit() {
    let h = Harness::new();
    let result = h.probe(&["spin"], |m| m.limits.cpu = millis(300)).await;
    assert_limit(result, LimitKind::Cpu, "300ms");
    let result = h.probe_tool(r#"{"action":"spin"}"#, |m| m.limits.cpu = millis(300)).await;
    assert_limit(result, LimitKind::Cpu, "300ms");
    h.still_serves().await;
    let events = h.audit_events();
    assert!(events.iter().any(|e| e["event"] == "limit_hit" && e["limit"] == "cpu" && e["value"] == "300ms"));
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_wall_clock() {
    let h = Harness::new();
    let result = h.probe(&["spin"], |m| m.limits.timeout = millis(500)).await;
    assert_limit(result, LimitKind::Timeout, "500ms");
    h.still_serves().await;
}

#[tokio::test]
async fn a_one_hour_sleep_is_cut_at_the_timeout() {
    let h = Harness::new();
    let started = std::time::Instant::now();
    let result = h.probe(&["sleep", "3600"], |m| m.limits.timeout = millis(500)).await;
    assert_limit(result, LimitKind::Timeout, "500ms");
    let result = h.probe_tool(r#"{"action":"sleep","seconds":3600}"#, |m| m.limits.timeout = millis(500)).await;
    assert_limit(result, LimitKind::Timeout, "500ms");
    // Not a timing assertion on speed: an hour-long sleep that was not cut
    // would never get here at all.
    assert!(started.elapsed() < std::time::Duration::from_secs(600));
    h.still_serves().await;
}

#[tokio::test]
async fn sleeping_does_not_use_the_cpu_budget() {
    let h = Harness::new();
    let report = h
        .probe(&["sleep", "1"], |m| {
            m.limits.cpu = millis(200);
            m.limits.timeout = secs(10);
        })
        .await
        .unwrap();
    assert_eq!(assert_allowed(&report), "woke up\n");
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let h = Harness::new();
    let message = assert_limit(h.probe(&["alloc"], |m| m.limits.memory = mib(32)).await, LimitKind::Memory, "32MiB");
    assert!(message.contains("the guest asked for"), "{message}");
    let result = h.probe_tool(r#"{"action":"alloc"}"#, |m| m.limits.memory = mib(32)).await;
    assert_limit(result, LimitKind::Memory, "32MiB");
    h.still_serves().await;
}

#[tokio::test]
async fn a_memory_limit_below_the_initial_memory_refuses_to_start() {
    let h = Harness::new();
    let result = h.probe(&["args"], |m| m.limits.memory = ByteSize(64 << 10)).await;
    assert_limit(result, LimitKind::Memory, "64KiB");
}

#[tokio::test]
async fn deep_recursion_hits_the_stack_limit() {
    let h = Harness::new();
    let message = assert_limit(h.probe(&["recurse"], |_| {}).await, LimitKind::Stack, "1MiB");
    assert!(message.contains("call stack"), "{message}");
    h.still_serves().await;
}

#[tokio::test]
async fn an_output_flood_hits_the_output_limit() {
    let h = Harness::new();
    let result = h.probe(&["flood"], |m| m.limits.max_output = ByteSize(64 << 10)).await;
    assert_limit(result, LimitKind::Output, "64KiB");
    h.still_serves().await;
}

#[tokio::test]
async fn a_log_flood_hits_the_output_limit() {
    let h = Harness::new();
    let result = h.probe_tool(r#"{"action":"log","lines":100000}"#, |m| m.limits.max_output = ByteSize(4 << 10)).await;
    assert_limit(result, LimitKind::Output, "4KiB");
}

#[tokio::test]
async fn an_oversized_result_hits_the_output_limit() {
    let h = Harness::new();
    let result =
        h.probe_tool(r#"{"action":"big-output","bytes":20000}"#, |m| m.limits.max_output = ByteSize(16 << 10)).await;
    assert_limit(result, LimitKind::Output, "16KiB");
    // Just under the limit passes.
    let report = h
        .probe_tool(r#"{"action":"big-output","bytes":1000}"#, |m| m.limits.max_output = ByteSize(16 << 10))
        .await
        .unwrap();
    assert!(matches!(report.result, CallResult::Output(ref s) if s.len() > 1000));
}

#[tokio::test]
async fn oversized_input_is_refused_before_the_guest_runs() {
    let h = Harness::new();
    let big = format!(r#"{{"action":"echo","pad":"{}"}}"#, "z".repeat(5000));
    let result = h.probe_tool(&big, |m| m.limits.max_input = ByteSize(4 << 10)).await;
    assert_limit(result, LimitKind::Input, "4KiB");
    let long_arg = "a".repeat(5000);
    let result = h.probe(&["args", &long_arg], |m| m.limits.max_input = ByteSize(4 << 10)).await;
    assert_limit(result, LimitKind::Input, "4KiB");
    let events = h.audit_events();
    assert_eq!(events.iter().filter(|e| e["event"] == "limit_hit" && e["limit"] == "max_input").count(), 2);
}
