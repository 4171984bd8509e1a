//! The example tools under toolcell, from their manifests in `policies/`:
//! `word-count` in Rust, Python (componentize-py) and JavaScript (jco) gives
//! the same answers under the same rules, and the other examples do what
//! their manifests allow and nothing else.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Harness, guests};
use toolcell_runtime::{Call, CallResult, Manifest, TaskRequest, ToolError};

fn policy(name: &str) -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies").join(name);
    Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The manifest of a word-count, with its component as built for the tests.
fn word_count(language: &str) -> Manifest {
    match language {
        // The tests' own build of the Rust example (testing/build.rs).
        "rust" => Manifest { component: PathBuf::from(guests::WORD_COUNT), ..policy("word-count.toml") },
        other => {
            let manifest = policy(&format!("word-count-{other}.toml"));
            assert!(
                manifest.component.is_file(),
                "{} is missing: scripts/test builds the {other} example (componentize-py / jco) before the tests",
                manifest.component.display()
            );
            manifest
        }
    }
}

#[tokio::test]
async fn word_count_answers_the_same_in_rust_python_and_javascript() {
    let h = Harness::new();
    let cases = [
        (r#"{"text":"agents act at machine speed"}"#, r#"{"bytes":27,"lines":1,"words":5}"#),
        (r#"{"text":"one\ntwo three\n"}"#, r#"{"bytes":14,"lines":2,"words":3}"#),
        (r#"{"text":""}"#, r#"{"bytes":0,"lines":0,"words":0}"#),
        (r#"{"text":"naïve café ☕"}"#, r#"{"bytes":16,"lines":1,"words":3}"#),
    ];
    for language in ["rust", "py", "js"] {
        let manifest = word_count(language);
        let tool = h.load(manifest);
        let info = h.runtime.describe(&tool).await.unwrap();
        assert_eq!(info.input_schema["required"], serde_json::json!(["text"]), "{language}");
        let task = h.runtime.open_task(&tool, TaskRequest::new("test", Duration::from_secs(120))).unwrap();
        for (input, expected) in cases {
            let report = task.invoke(Call::tool(input)).await.unwrap();
            assert_eq!(report.result, CallResult::Output(expected.into()), "{language}: {input}");
        }
        for (input, error) in [(r#"{"txt":"x"}"#, "field `txt`: unknown field"), (r#"{"text":5}"#, "field `text`")] {
            match task.invoke(Call::tool(input)).await.unwrap().result {
                CallResult::ToolError(ToolError::InvalidInput(message)) => {
                    assert!(message.starts_with(error), "{language}: {message}")
                }
                other => panic!("{language}: expected invalid input for {input}, got {other:?}"),
            }
        }
        // Granted nothing: the grant the task holds is empty.
        let grant = task.grant();
        assert!(grant.filesystem.is_empty() && grant.egress.is_empty() && grant.credentials.is_empty());
        task.close().await;
    }
    h.still_serves().await;
}
