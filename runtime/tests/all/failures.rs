//! Tool failures (a tool's error value, a non-zero exit, a crash) are
//! reported as such; components that are not runnable are refused at load
//! with an error that says why.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use toolcell_runtime::{CallResult, InvokeError, LoadError, Manifest, ToolError};

#[tokio::test]
async fn a_guest_panic_is_a_trap_with_its_message_on_stderr() {
    let h = Harness::new();
    let err = h.probe(&["panic"], |_| {}).await.unwrap_err();
    let InvokeError::Trap { reason, detail } = &err else { panic!("expected a trap, got {err:?}") };
    assert!(reason.contains("unreachable"), "{reason}");
    assert!(!detail.is_empty());
    assert_eq!(err.outcome(), "trap");

    let err = h.probe_tool(r#"{"action":"panic"}"#, |_| {}).await.unwrap_err();
    assert!(matches!(err, InvokeError::Trap { .. }), "{err:?}");
    h.still_serves().await;
    let events = h.audit_events();
    assert_eq!(events.iter().filter(|e| e["event"] == "invocation_ended" && e["outcome"] == "trap").count(), 2);
}

#[tokio::test]
async fn panic_message_reaches_stderr_when_streamed() {
    let h = Harness::new();
    let tool = h.load(Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND)));
    let task = h
        .runtime
        .open_task(&tool, toolcell_runtime::TaskRequest::new("t", std::time::Duration::from_secs(60)))
        .unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let call = toolcell_runtime::Call::command(vec!["panic".into()], vec![]).streaming(sender);
    assert!(task.invoke(call).await.is_err());
    let mut stderr = Vec::new();
    while let Ok(chunk) = receiver.try_recv() {
        if let toolcell_runtime::OutputChunk::Stderr(bytes) = chunk {
            stderr.extend(bytes);
        }
    }
    assert!(String::from_utf8_lossy(&stderr).contains("probe panicked on purpose"));
}

#[tokio::test]
async fn a_non_zero_exit_is_the_tools_failure() {
    let h = Harness::new();
    let report = h.probe(&["exit", "7"], |_| {}).await.unwrap();
    // WASI 0.2 carries success or failure only; any failing code arrives as 1.
    assert_eq!(report.result, CallResult::Exit(1));
    assert!(!report.succeeded());
    let report = h.probe(&["exit", "0"], |_| {}).await.unwrap();
    assert_eq!(report.result, CallResult::Exit(0));
    let events = h.audit_events();
    assert!(events.iter().any(|e| e["event"] == "invocation_ended" && e["outcome"] == "exit" && e["exit_code"] == 1));
}

#[tokio::test]
async fn a_tool_error_is_returned_as_a_value() {
    let h = Harness::new();
    let report = h.probe_tool(r#"{"action":"fail"}"#, |_| {}).await.unwrap();
    assert_eq!(report.result, CallResult::ToolError(ToolError::Failed("asked to fail".into())));
    let report = h.probe_tool("not json", |_| {}).await.unwrap();
    assert!(matches!(report.result, CallResult::ToolError(ToolError::InvalidInput(_))));
}

#[tokio::test]
async fn calling_with_the_wrong_shape_is_refused() {
    let h = Harness::new();
    let err =
        h.call(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL)), toolcell_runtime::Call::command(vec![], vec![])).await;
    assert!(matches!(err, Err(InvokeError::WrongShape(ref m)) if m.contains("is a tool component")), "{err:?}");
    let err = h.call(Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND)), toolcell_runtime::Call::tool("{}")).await;
    assert!(matches!(err, Err(InvokeError::WrongShape(ref m)) if m.contains("is a WASI command")), "{err:?}");
}

fn load(h: &Harness, path: &Path) -> LoadError {
    h.runtime.load_tool(Manifest::ad_hoc(path)).unwrap_err()
}

#[test]
fn a_corrupt_file_is_refused() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not webassembly at all").unwrap();
    let err = load(&h, &garbage);
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err:?}");
    assert!(err.to_string().contains("not a WebAssembly file"));

    // A real component cut in half: right preamble, broken body.
    let bytes = std::fs::read(guests::WORD_COUNT).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&h, &truncated);
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("is invalid"), "{err}");

    let missing = dir.path().join("missing.wasm");
    assert!(matches!(load(&h, &missing), LoadError::Read { .. }));
}

#[test]
fn a_core_module_is_refused() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let err = load(&h, &module);
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err:?}");
    assert!(err.to_string().contains("core WebAssembly module, not a component"));
}

#[test]
fn a_component_of_another_shape_is_refused() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    // The smallest valid component: it exports nothing.
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let err = load(&h, &empty);
    assert!(matches!(err, LoadError::UnsupportedShape { .. }), "{err:?}");
    assert!(err.to_string().contains("exports: nothing"), "{err}");
}

#[test]
fn a_sha256_mismatch_is_refused_and_a_match_loads() {
    let h = Harness::new();
    let mut manifest = Manifest::ad_hoc(Path::new(guests::WORD_COUNT));
    manifest.sha256 = Some([0xab; 32]);
    let err = h.runtime.load_tool(manifest.clone()).unwrap_err();
    assert!(matches!(err, LoadError::HashMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&"ab".repeat(32)), "{err}");

    use sha2::Digest;
    manifest.sha256 = Some(sha2::Sha256::digest(std::fs::read(guests::WORD_COUNT).unwrap()).into());
    h.runtime.load_tool(manifest).unwrap();
}

/// A small engine of its own whose precompile cache (and digests) is `dir`.
fn engine_caching_in(dir: &Path) -> std::sync::Arc<toolcell_runtime::ToolEngine> {
    let settings = toolcell_runtime::EngineSettings {
        cache_dir: Some(dir.to_owned()),
        max_concurrent_invocations: 4,
        ..Default::default()
    };
    toolcell_runtime::ToolEngine::new(settings).unwrap()
}

#[test]
fn a_damaged_precompiled_artifact_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_caching_in(dir.path());
    engine.load(Path::new(guests::WORD_COUNT), None).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "one precompiled artifact is cached");
    std::fs::write(&artifacts[0], b"garbage where native code was").unwrap();
    engine.load(Path::new(guests::WORD_COUNT), None).unwrap();
    assert_ne!(std::fs::read(&artifacts[0]).unwrap(), b"garbage where native code was");
}

#[test]
fn a_component_changed_after_its_digest_was_kept_is_hashed_again_and_its_pin_holds() {
    use sha2::Digest;
    let cache = tempfile::tempdir().unwrap();
    let engine = engine_caching_in(cache.path());
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("tool.wasm");
    std::fs::copy(guests::WORD_COUNT, &component).unwrap();
    let pin: [u8; 32] = sha2::Sha256::digest(std::fs::read(&component).unwrap()).into();
    // Digests are kept only for files whose stamps have settled (2s).
    std::thread::sleep(Duration::from_millis(2100));
    engine.load(&component, Some(&pin)).unwrap();
    let kept = || {
        std::fs::read_dir(cache.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("digest-"))
    };
    assert_eq!(kept().count(), 1, "the digest is kept");
    assert_eq!(engine.load(&component, Some(&pin)).unwrap().sha256, pin, "and used");

    // The attack: another component in its place, its mtime put back.
    let mtime = std::fs::metadata(&component).unwrap().modified().unwrap();
    std::fs::write(&component, std::fs::read(guests::PROBE_TOOL).unwrap()).unwrap();
    std::fs::File::options().write(true).open(&component).unwrap().set_modified(mtime).unwrap();
    let err = engine.load(&component, Some(&pin)).unwrap_err();
    assert!(matches!(err, LoadError::HashMismatch { .. }), "{err:?}");
    let probe: [u8; 32] = sha2::Sha256::digest(std::fs::read(guests::PROBE_TOOL).unwrap()).into();
    assert_eq!(engine.load(&component, None).unwrap().sha256, probe, "unpinned, the new bytes are what load");
}

#[test]
fn a_memory_limit_above_the_runtime_ceiling_is_refused() {
    let h = Harness::new();
    let mut manifest = Manifest::ad_hoc(Path::new(guests::WORD_COUNT));
    manifest.limits.memory = toolcell_runtime::ByteSize(8 << 30);
    let err = h.runtime.load_tool(manifest).unwrap_err();
    assert_eq!(err.to_string(), "limits.memory 8GiB of tool `word-count` is above the runtime's max_memory 4GiB");
}

#[tokio::test]
async fn a_precompiled_artifact_others_could_write_is_never_loaded() {
    use std::os::unix::fs::PermissionsExt;
    use toolcell_runtime::{Call, EngineSettings, Runtime, RuntimeConfig, TaskRequest, ToolEngine};
    // The attack: whoever can write the cache puts another component's
    // native code under this one's name, bypassing the manifest's pin.
    let cache = tempfile::tempdir().unwrap();
    let engine = || {
        let settings = EngineSettings { cache_dir: Some(cache.path().to_owned()), ..EngineSettings::default() };
        let engine = ToolEngine::new(settings).unwrap();
        Runtime::with_engine(
            engine,
            RuntimeConfig { scratch_root: Some(cache.path().join("scratch")), ..RuntimeConfig::default() },
        )
        .unwrap()
    };
    let runtime = engine();
    let artifacts = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        found.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        found
    };
    runtime.load_tool(Manifest::ad_hoc(Path::new(guests::WORD_COUNT))).unwrap();
    let word_count = artifacts().pop().unwrap();
    runtime.load_tool(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL))).unwrap();
    let probe = artifacts().into_iter().find(|p| *p != word_count).unwrap();
    std::fs::copy(&word_count, &probe).unwrap();
    let call = |runtime: Runtime| async move {
        let tool = runtime.load_tool(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL))).unwrap();
        let task = runtime.open_task(&tool, TaskRequest::new("t", std::time::Duration::from_secs(30))).unwrap();
        let report = task.invoke(Call::tool(r#"{"action":"count"}"#)).await;
        task.close().await;
        report
    };
    // Swapped and writable by others: refused, and the probe is compiled from its own bytes.
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o666)).unwrap();
    let report = call(engine()).await.unwrap();
    assert_eq!(report.result, CallResult::Output(r#"{"count":1}"#.into()), "another tool's code ran");
    // Only a file the runtime's own user alone can write is trusted: swapped
    // again and kept private, the swap takes effect — which is why the cache
    // must be the operator's, and why group or world write disqualifies it.
    std::fs::copy(&word_count, &probe).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = call(engine()).await;
    assert!(
        !matches!(&report, Ok(r) if r.result == CallResult::Output(r#"{"count":1}"#.into())),
        "the check proved nothing: a private artifact was not loaded either"
    );
}

#[tokio::test]
async fn a_tool_is_described_once_per_component_and_only_a_trusted_description_is_reused() {
    use std::os::unix::fs::PermissionsExt;
    use toolcell_runtime::{Runtime, RuntimeConfig};
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::with_engine(
        engine_caching_in(cache.path()),
        RuntimeConfig { scratch_root: Some(cache.path().join("scratch")), ..RuntimeConfig::default() },
    )
    .unwrap();
    let word_count = runtime.load_tool(Manifest::ad_hoc(Path::new(guests::WORD_COUNT))).unwrap();
    let asked = runtime.describe(&word_count).await.unwrap();
    let kept: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("described-"))
        .collect();
    assert_eq!(kept.len(), 1, "what the tool said is kept");
    let entry = &kept[0];
    let digest: String = word_count.component.sha256.iter().map(|b| format!("{b:02x}")).collect();
    assert!(entry.to_string_lossy().contains(&digest), "kept by the component's digest: {}", entry.display());

    // The kept description answers (no instance is asked): a changed one shows.
    let text = std::fs::read_to_string(entry).unwrap();
    std::fs::write(entry, text.replace(&asked.description, "as kept")).unwrap();
    assert_eq!(runtime.describe(&word_count).await.unwrap().description, "as kept");
    // Another component is asked for itself, not answered by this one's entry.
    let probe = runtime.load_tool(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL))).unwrap();
    assert_ne!(runtime.describe(&probe).await.unwrap().description, "as kept");

    // The attack: whoever else could write the entry could rewrite a tool's schemas.
    std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(runtime.describe(&word_count).await.unwrap(), asked, "an entry others could write is not used");
}
