//! `toolcell new`: the generated crate builds and runs unchanged, and its
//! manifest grants nothing.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::text;

fn toolcell(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_toolcell"))
        .args(args)
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
        .output()
        .unwrap()
}

#[test]
fn a_new_tool_builds_and_runs_as_generated() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolcell(dir.path(), &["new", "greeter"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let crate_dir = dir.path().join("greeter");
    for file in ["Cargo.toml", ".cargo/config.toml", "src/lib.rs", "greeter.toml", "README.md"] {
        assert!(crate_dir.join(file).is_file(), "{file} was not generated");
    }

    // Built exactly as the README says, in its own target dir.
    let build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release"])
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    assert!(build.status.success(), "the generated crate does not build:\n{}", text(&build.stderr));

    // Its unit tests run natively, as its README says.
    let host = Command::new("rustc").arg("-vV").output().unwrap();
    let host = text(&host.stdout).lines().find_map(|l| l.strip_prefix("host: ").map(str::to_owned)).unwrap();
    let test = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--target", &host])
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(test.status.success(), "the generated unit tests fail:\n{}{}", text(&test.stdout), text(&test.stderr));
    assert!(text(&test.stdout).contains("2 passed"), "{}", text(&test.stdout));

    let out = toolcell(&crate_dir, &["run", "--manifest", "greeter.toml", "--input", r#"{"name":"world"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"greeting\":\"hello, world\"}\n");
    let out = toolcell(&crate_dir, &["run", "--manifest", "greeter.toml", "--input", r#"{"nam":"x"}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid input: field `nam`: unknown field `nam`"), "{}", text(&out.stderr));

    let out = toolcell(&crate_dir, &["describe", "--manifest", "greeter.toml", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["name"], "greeter");
    assert!(info["description"].as_str().unwrap().starts_with("Greets someone by name."));
    assert_eq!(info["input_schema"]["required"], serde_json::json!(["name"]));

    let out = toolcell(&crate_dir, &["policy", "check", "greeter.toml"]);
    assert!(out.status.success());
    for line in ["filesystem  nothing", "egress      nothing", "credentials nothing"] {
        assert!(text(&out.stdout).contains(line), "{}", text(&out.stdout));
    }
}

#[test]
fn new_refuses_bad_names_and_existing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolcell(dir.path(), &["new", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("is not a tool name"), "{}", text(&out.stderr));
    let out = toolcell(dir.path(), &["new", "9lives"]);
    assert!(text(&out.stderr).contains("must start with a letter"), "{}", text(&out.stderr));
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let out = toolcell(dir.path(), &["new", "taken"]);
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
}
