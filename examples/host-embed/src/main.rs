//! How an agent framework embeds toolcell.
//!
//! It loads two tools from their manifests, opens one task per tool for a
//! principal — one of them narrowed — invokes them, closes the tasks, and
//! prints the audit trail the calls left. Run it after building the example
//! tools (`scripts/demo` does):
//!
//! ```sh
//! cargo run -p toolcell-host-embed
//! ```

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use toolcell_runtime::{
    Call, CallResult, LimitsNarrowing, Manifest, Narrowing, Runtime, RuntimeConfig, TaskRequest, TimeSpan,
};

#[tokio::main]
async fn main() -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let state = std::env::temp_dir().join(format!("toolcell-host-embed-{}", std::process::id()));
    let audit_log = state.join("audit.jsonl");

    // The operator's side: one runtime for the process, its audit trail in a file.
    let runtime = Runtime::new(RuntimeConfig { audit_log: Some(audit_log.clone()), ..RuntimeConfig::default() })?;

    // Tools come from manifests: each states the most its tool may be granted.
    let load = |name: &str| -> Result<_> {
        let path = repo.join("policies").join(name);
        let manifest = Manifest::load(&path)?;
        runtime.load_tool(manifest).with_context(|| format!("loading {name} (build the examples first: scripts/demo)"))
    };
    let word_count = load("word-count.toml")?;
    let fs_search = load("fs-search.toml")?;
    for tool in [&word_count, &fs_search] {
        let info = runtime.describe(tool).await?;
        println!("tool {}: {}", info.name, info.description);
    }

    // The agent's side: a task per unit of work, for a principal, with a
    // deadline — and here a narrowing: fs-search gets a shorter timeout
    // than its manifest allows (a widening would be refused).
    let principal = "agent:release-notes-bot";
    let counting = runtime.open_task(&word_count, TaskRequest::new(principal, Duration::from_secs(30)))?;
    let narrowed = Narrowing {
        limits: LimitsNarrowing { timeout: Some(TimeSpan(Duration::from_secs(2))), ..LimitsNarrowing::default() },
        ..Narrowing::default()
    };
    let searching = runtime.open_task(
        &fs_search,
        TaskRequest { narrowing: narrowed, ..TaskRequest::new(principal, Duration::from_secs(30)) },
    )?;

    let counted = counting.invoke(Call::tool(r#"{"text":"agents act at machine speed"}"#)).await?;
    let found = searching.invoke(Call::tool(r#"{"query":"manifest"}"#)).await?;
    for (what, report) in [("word-count", &counted), ("fs-search", &found)] {
        match &report.result {
            CallResult::Output(json) => println!("{what} -> {json}"),
            other => bail!("{what} did not succeed: {other:?}"),
        }
    }

    // Closing a task revokes what it still holds and seals its record.
    let summary = counting.close().await;
    println!("word-count task closed: {} call(s), {} failed", summary.invocations, summary.failures);
    let summary = searching.close().await;
    println!("fs-search task closed: {} call(s), {} failed", summary.invocations, summary.failures);

    println!("\naudit trail ({}):", audit_log.display());
    for line in std::fs::read_to_string(&audit_log)?.lines() {
        let event: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "  {:<18} {:<11} {}",
            event["event"].as_str().unwrap_or("?"),
            event["tool"].as_str().unwrap_or("?"),
            event["principal"].as_str().unwrap_or("?")
        );
    }
    std::fs::remove_dir_all(&state).ok();
    Ok(())
}
