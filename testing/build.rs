//! Builds every guest component the tests run — the probes in
//! `testing/guests` and the tools in `examples` — for wasm32-wasip2, and
//! hands their paths to the tests as `TOOLCELL_GUEST_*` variables.
//! Nothing is checked in as a binary.

use std::path::{Path, PathBuf};
use std::process::Command;

const WORKSPACES: [(&str, &[(&str, &str)]); 2] = [
    (
        "testing/guests",
        &[
            ("PROBE_COMMAND", "probe-command.wasm"),
            ("PROBE_TOOL", "probe_tool.wasm"),
            ("PLAIN_CALC", "plain_calc.wasm"),
        ],
    ),
    (
        "examples",
        &[
            ("WORD_COUNT", "word_count.wasm"),
            ("FILE_STATS", "file-stats.wasm"),
            ("HTTP_GET", "http_get.wasm"),
            ("FS_SEARCH", "fs_search.wasm"),
            ("GITHUB_ISSUES", "github_issues.wasm"),
        ],
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    // Our own target dir: sharing the outer one would deadlock on its lock.
    let target = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for watched in ["wit", "sdk/src", "sdk/Cargo.toml", "testing/guests", "examples"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    for (workspace, outputs) in WORKSPACES {
        let manifest = root.join(workspace).join("Cargo.toml");
        let status = Command::new(&cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .current_dir(&root)
            // The outer build's flags are for the host, not for wasm.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .status()
            .unwrap_or_else(|error| panic!("cannot run cargo for {workspace}: {error}"));
        if !status.success() {
            panic!(
                "building the guest components in {workspace} failed (see the errors above); if the \
                 wasm32-wasip2 target is missing, run `rustup target add wasm32-wasip2`"
            );
        }
        for (name, file) in outputs.iter() {
            let path = target.join("wasm32-wasip2/release").join(file);
            assert!(Path::new(&path).exists(), "{} was not built", path.display());
            println!("cargo:rustc-env=TOOLCELL_GUEST_{name}={}", path.display());
        }
    }
}
