//! 200 invocations in parallel, several rounds: after a warm-up round the
//! process holds no more file descriptors and no more memory than before.
//! Alone in its test binary so other tests' files and threads do not blur
//! the counts.

// The shared helpers, of which this binary uses a few.
#[path = "all/common/mod.rs"]
#[allow(dead_code, reason = "this binary uses only some of the shared helpers")]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use toolcell_runtime::{Call, DirMode, Manifest, TaskRequest, Tool};

const PARALLEL: usize = 200;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

async fn round(h: &Arc<Harness>, command: &Arc<Tool>, tool: &Arc<Tool>) {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..PARALLEL {
        let (h, command, tool) = (h.clone(), command.clone(), tool.clone());
        calls.spawn(async move {
            let (tool, call) = if i % 2 == 0 {
                (command, Call::command(vec!["write".into(), "/scratch/f".into(), "x".into()], Vec::new()))
            } else {
                (tool, Call::tool(r#"{"action":"read","path":"/data/file.txt"}"#))
            };
            let task = h.runtime.open_task(&tool, TaskRequest::new("load", Duration::from_secs(120))).unwrap();
            let report = task.invoke(call).await.unwrap();
            assert!(report.succeeded(), "{report:?}");
            task.close().await;
        });
    }
    while let Some(joined) = calls.join_next().await {
        joined.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_invocations_leak_no_memory_or_descriptors() {
    let h = Arc::new(Harness::new());
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file.txt"), "data").unwrap();

    let mut command = Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND));
    command.scratch = Some("/scratch".into());
    let mut tool = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    tool.filesystem = vec![dir(data.path(), "/data", DirMode::ReadOnly)];
    let (command, tool) = (h.load(command), h.load(tool));

    // The first round fills the instance pool and the executor's threads.
    round(&h, &command, &tool).await;
    let (fds_before, rss_before) = (open_fds(), rss_bytes());
    for _ in 0..3 {
        round(&h, &command, &tool).await;
    }
    let (fds_after, rss_after) = (open_fds(), rss_bytes());

    assert_eq!(fds_after, fds_before, "file descriptors leaked over {} invocations", 3 * PARALLEL);
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 32 << 20,
        "resident memory grew by {} KiB over {} invocations ({} -> {} KiB)",
        growth >> 10,
        3 * PARALLEL,
        rss_before >> 10,
        rss_after >> 10
    );
    // Only the runtime's lock file is left in its scratch directory.
    assert_eq!(std::fs::read_dir(h.runtime.scratch_dir()).unwrap().count(), 1, "scratch dirs left behind");
    let events = h.audit_events();
    let ended = events.iter().filter(|e| e["event"] == "invocation_ended" && e["outcome"] == "ok").count();
    assert_eq!(ended, 4 * PARALLEL);
    eprintln!("fds {fds_before} -> {fds_after}, rss {} -> {} KiB", rss_before >> 10, rss_after >> 10);
}
