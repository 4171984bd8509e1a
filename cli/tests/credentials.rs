//! Credentials through the `toolcell` binary: `toolcell jwks` and its key
//! rotation, and crash recovery — a runtime killed mid-task leaves an
//! OpenBao lease and task token behind, and the next start revokes them.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use toolcell_test_guests as guests;
use toolcell_test_guests::openbao::openbao;

fn toolcell(state: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
    command
        .env("XDG_STATE_HOME", state)
        .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(state: &Path, args: &[&str]) -> Output {
    toolcell(state).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn jwks_prints_the_keys_tokens_are_signed_with_and_rotates_them() {
    let state = tempfile::tempdir().unwrap();
    let out = run(state.path(), &["jwks"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jwks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!((jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    let keys = state.path().join("toolcell/issuer-keys.json");
    let key_file = std::fs::read_to_string(&keys).unwrap();
    // The file holds the private seeds; the JWKS never does.
    assert!(!text(&out.stdout).contains("seed") && key_file.contains("seed"));
    // The same keys on every start.
    let again: serde_json::Value = serde_json::from_slice(&run(state.path(), &["jwks"]).stdout).unwrap();
    assert_eq!(again, jwks);

    let rotated = run(state.path(), &["jwks", "--rotate"]);
    assert!(text(&rotated.stderr).contains("added signing key"), "{}", text(&rotated.stderr));
    let rotated: serde_json::Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2);
    let newest = rotated["keys"][1]["kid"].as_str().unwrap().to_owned();
    let retired: serde_json::Value =
        serde_json::from_slice(&run(state.path(), &["jwks", "--retire-old"]).stdout).unwrap();
    assert_eq!(retired["keys"].as_array().unwrap().len(), 1);
    assert_eq!(retired["keys"][0]["kid"], newest.as_str());
    assert_ne!(first, newest);
}

/// Kills the child on drop, so a failed assertion leaves no runtime behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_runtime_killed_mid_task_has_its_leases_revoked_at_the_next_start() {
    let bao = openbao();
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    std::fs::write(dir.join("bao-token"), &bao.root_token).unwrap();
    std::fs::write(
        dir.join("toolcell.toml"),
        format!(
            r#"
audit_log = "audit.jsonl"
lease_journal = "leases"

[openbao]
address = "{}"
token = {{ file = "bao-token" }}

[[openbao.secrets]]
audience = "pki:tool"
path = "pki/issue/tool"
data = {{ common_name = "{{task}}.toolcell.test", ttl = "{{ttl}}" }}
field = "certificate"
"#,
            bao.address
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("probe.toml"),
        format!(
            r#"
[tool]
name = "probe"
component = "{}"
owner = "tests"
purpose = "holds a certificate while it sleeps"
review_by = 2099-01-01

[[credentials]]
name = "cert"
provider = "openbao"
scopes = ["tool-pki"]
audience = "pki:tool"
exposure = "reveal"

[limits]
timeout = "60s"
"#,
            guests::PROBE_TOOL
        ),
    )
    .unwrap();
    let config = dir.join("toolcell.toml");
    let input = r#"{"action":"acquire","name":"cert","then":{"action":"sleep","seconds":60}}"#;
    let child = toolcell(dir)
        .args(["--config", config.to_str().unwrap(), "run", "--manifest"])
        .arg(dir.join("probe.toml"))
        .args(["--input", input])
        .spawn()
        .unwrap();
    let mut child = Killed(child);

    // Wait until the call holds its lease, then kill the runtime outright.
    let audit = dir.join("audit.jsonl");
    let started = Instant::now();
    let (lease, accessor) = loop {
        let events: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let id = |credential: &str| {
            events
                .iter()
                .find(|e| e["event"] == "credential_minted" && e["credential"] == credential)
                .map(|e| e["id"].as_str().unwrap().to_owned())
        };
        if let (Some(lease), Some(accessor)) = (id("cert"), id("task token")) {
            break (lease, accessor);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no lease was minted: {:?}", child.0.try_wait());
        std::thread::sleep(Duration::from_millis(50));
    };
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(bao.lease_exists(&lease), "nothing revoked the lease: the runtime died");
    assert!(bao.token_exists(&accessor));

    // The next start, for any tool, revokes what the dead runtime left.
    let out = toolcell(dir)
        .args(["--config", config.to_str().unwrap(), "run", guests::WORD_COUNT, "--input", r#"{"text":"hi"}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!bao.lease_exists(&lease), "the leftover lease is still alive");
    assert!(!bao.token_exists(&accessor), "the leftover task token is still alive");
    let audit = std::fs::read_to_string(&audit).unwrap();
    let recovered =
        audit.lines().filter(|l| l.contains("\"credential_revoked\"") && l.contains("left over by a runtime")).count();
    assert_eq!(recovered, 2, "{audit}");
    assert!(!audit.contains(&bao.root_token) && !audit.contains("BEGIN CERTIFICATE"));
    // Nothing is left to adopt.
    let journals = std::fs::read_dir(dir.join("leases")).unwrap().count();
    assert_eq!(journals, 0);
}
