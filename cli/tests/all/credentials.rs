//! Credentials through the `toolcell` binary: `toolcell jwks` and its key
//! rotation, and crash recovery — a runtime killed mid-task leaves an
//! OpenBao lease and task token behind, and the next start revokes them.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use toolcell_test_guests as guests;
use toolcell_test_guests::openbao::openbao;

use crate::common::text;

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

/// Writes `probe.toml` in `dir`: the probe tool with one credential (its
/// TOML fields after `name`), a 60s call timeout unless `timeout` says less.
fn probe_manifest(dir: &Path, purpose: &str, credential: &str, timeout: &str) {
    std::fs::write(
        dir.join("probe.toml"),
        format!(
            "[tool]\nname = \"probe\"\ncomponent = \"{}\"\nowner = \"tests\"\npurpose = \"{purpose}\"\n\
             review_by = 2099-01-01\n\n[[credentials]]\n{credential}\n\n[limits]\ntimeout = \"{timeout}\"\n",
            guests::PROBE_TOOL
        ),
    )
    .unwrap();
}

/// A fresh state directory with a runtime config for the shared OpenBao server
/// (lease journal and audit log inside it) and a probe manifest whose `cert`
/// credential is a PKI lease. Returns the directory and the config's path.
fn bao_state() -> (tempfile::TempDir, std::path::PathBuf) {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let bao = openbao();
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
timeout = "2s"

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
    probe_manifest(
        dir,
        "holds a certificate while it sleeps",
        "name = \"cert\"\nprovider = \"openbao\"\nscopes = [\"tool-pki\"]\naudience = \"pki:tool\"\nexposure = \"reveal\"",
        "60s",
    );
    let config = dir.join("toolcell.toml");
    (state, config)
}

/// `run_holding_a_lease` without a shared journal, once its lease and task
/// token are minted: the child, the lease id and the token's accessor.
fn holding_one_lease(dir: &Path) -> (Killed, String, String) {
    let mut child = run_holding_a_lease(dir, None);
    let (lease, accessor) = minted(dir, 1, std::slice::from_mut(&mut child)).remove(0);
    (child, lease, accessor)
}

/// `toolcell run` of the probe holding its lease for a minute; with
/// `journal`, its lease journal is that directory (several runtimes sharing
/// one journal directory is the default for parallel runs).
fn run_holding_a_lease(dir: &Path, journal: Option<&Path>) -> Killed {
    let mut config = dir.join("toolcell.toml");
    if let Some(journal) = journal {
        config = dir.join("shared.toml");
        if !config.exists() {
            let text = std::fs::read_to_string(dir.join("toolcell.toml"))
                .unwrap()
                .replace("lease_journal = \"leases\"", &format!("lease_journal = \"{}\"", journal.display()));
            std::fs::write(&config, text).unwrap();
        }
    }
    let input = r#"{"action":"acquire","name":"cert","then":{"action":"sleep","seconds":60}}"#;
    let mut command = toolcell(dir);
    command.args(["--config", config.to_str().unwrap(), "run", "--manifest"]).arg(dir.join("probe.toml"));
    command.args(["--input", input, "--grace", "5s"]);
    Killed(command.spawn().unwrap())
}

/// Audit events of the state directory's log.
fn audit(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until `count` leases have been minted into the audit log by
/// `children`; returns (lease id, task token accessor) pairs by task.
fn minted(dir: &Path, count: usize, children: &mut [Killed]) -> Vec<(String, String)> {
    let started = Instant::now();
    loop {
        let events = audit(dir);
        let ids = |credential: &str| -> Vec<(String, String)> {
            events
                .iter()
                .filter(|e| e["event"] == "credential_minted" && e["credential"] == credential)
                .map(|e| (e["task"].as_str().unwrap().to_owned(), e["id"].as_str().unwrap().to_owned()))
                .collect()
        };
        let (leases, tokens) = (ids("cert"), ids("task token"));
        if leases.len() >= count && tokens.len() >= count {
            return leases
                .into_iter()
                .map(|(task, lease)| {
                    let token = tokens.iter().find(|(t, _)| *t == task).unwrap().1.clone();
                    (lease, token)
                })
                .collect();
        }
        for child in children.iter_mut() {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("toolcell exited ({status}) before its lease was minted: {}", stderr_of(child));
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no lease was minted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What an exited child printed on stderr.
fn stderr_of(child: &mut Killed) -> String {
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr);
    stderr
}

fn signal(child: &Killed, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.0.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} failed");
}

fn wait_exit(child: &mut Killed, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < within, "toolcell did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_cancels_the_call_revokes_its_credentials_and_exits_143() {
    let bao = openbao();
    let (state, _) = bao_state();
    let dir = state.path();
    let (mut child, lease, accessor) = holding_one_lease(dir);
    assert!(bao.lease_exists(&lease));
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{status:?}");
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("SIGTERM: cancelling the call and revoking its credentials"), "{stderr}");
    // Revoked by the process itself, before it exited: not left to the journal.
    assert!(!bao.lease_exists(&lease), "the lease outlived the stopped process");
    assert!(!bao.token_exists(&accessor), "the task token outlived the stopped process");
    let events = audit(dir);
    let ended = events.iter().find(|e| e["event"] == "invocation_ended").unwrap();
    assert_eq!(ended["outcome"], "cancelled");
    let revoked: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "credential_revoked" && e["outcome"] == "revoked")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(revoked.contains(&lease.as_str()) && revoked.contains(&accessor.as_str()), "{revoked:?}");
    assert_eq!(std::fs::read_dir(dir.join("leases")).unwrap().count(), 0, "the journal was left with open entries");
}

#[test]
fn a_second_signal_exits_at_once_and_the_next_start_revokes_the_rest() {
    let bao = openbao();
    let (state, _) = bao_state();
    let dir = state.path();
    let (mut child, lease, accessor) = holding_one_lease(dir);
    // The runtime's OpenBao token goes bad: the first signal's revocations
    // keep failing, and the process waits its grace for them.
    std::fs::write(dir.join("bao-token"), "not-a-valid-token").unwrap();
    signal(&child, "TERM");
    let started = Instant::now();
    while !audit(dir).iter().any(|e| e["event"] == "credential_revoked" && e["outcome"] == "retrying") {
        assert!(started.elapsed() < Duration::from_secs(10), "no revocation was attempted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.0.try_wait().unwrap().is_none(), "the process did not wait for its revocations");
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "{status:?}");
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("SIGINT again: exiting now") && stderr.contains("lease journal"), "{stderr}");
    assert!(bao.lease_exists(&lease), "nothing could revoke it with a bad token");

    // The operator fixes the token; the next start revokes what was left.
    std::fs::write(dir.join("bao-token"), &bao.root_token).unwrap();
    let config = dir.join("toolcell.toml");
    let out = toolcell(dir)
        .args(["--config", config.to_str().unwrap(), "run", guests::WORD_COUNT, "--input", r#"{"text":"hi"}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!bao.lease_exists(&lease), "the leftover lease is still alive");
    assert!(!bao.token_exists(&accessor), "the leftover task token is still alive");
}

#[test]
fn runtimes_sharing_a_journal_keep_their_leases_and_a_killed_ones_are_revoked() {
    let bao = openbao();
    let (state, _) = bao_state();
    let dir = state.path();
    let journal = dir.join("shared-leases");
    let mut runs: Vec<Killed> = (0..3).map(|_| run_holding_a_lease(dir, Some(&journal))).collect();
    let held = minted(dir, 3, &mut runs);
    for (lease, _) in &held {
        assert!(bao.lease_exists(lease));
    }
    // One runtime is killed outright; another starts on the same journal directory.
    drop(runs.remove(1));
    let out = toolcell(dir)
        .args(["--config", dir.join("shared.toml").to_str().unwrap(), "run", guests::WORD_COUNT])
        .args(["--input", r#"{"text":"hi"}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Exactly one lease (the dead runtime's) is gone; the live ones are untouched.
    let alive: Vec<&String> = held.iter().map(|(lease, _)| lease).filter(|lease| bao.lease_exists(lease)).collect();
    assert_eq!(alive.len(), 2, "a live runtime's lease was revoked, or the dead one's was not: {alive:?}");
    let recovered: Vec<serde_json::Value> = audit(dir)
        .into_iter()
        .filter(|e| e["event"] == "credential_revoked" && e["reason"].as_str().is_some_and(|r| r.contains("left over")))
        .collect();
    assert_eq!(recovered.len(), 2, "the dead runtime's lease and task token: {recovered:?}");
    let dead = held.iter().find(|(lease, _)| !alive.contains(&lease)).unwrap();
    let ids: Vec<&str> = recovered.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&dead.0.as_str()) && ids.contains(&dead.1.as_str()), "{ids:?} vs {dead:?}");
    // The survivors stop cleanly and revoke their own.
    for run in &runs {
        signal(run, "TERM");
    }
    for run in &mut runs {
        assert_eq!(wait_exit(run, Duration::from_secs(10)).code(), Some(143));
    }
    for (lease, _) in &held {
        assert!(!bao.lease_exists(lease), "a lease outlived every runtime");
    }
}

#[test]
fn a_runtime_killed_mid_task_has_its_leases_revoked_at_the_next_start() {
    let bao = openbao();
    let (state, config) = bao_state();
    let dir = state.path();
    let audit = dir.join("audit.jsonl");
    // Wait until the call holds its lease, then kill the runtime outright.
    let (mut child, lease, accessor) = holding_one_lease(dir);
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

#[test]
fn an_exchanged_token_is_dead_at_the_server_by_its_calls_deadline_even_after_kill_9() {
    use toolcell_test_guests::oauth::OAuthServer;
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    // The runtime's issuer keys first, so the authorization server trusts them.
    let keys = dir.join("issuer-keys.json");
    let issuer = "https://toolcell.test";
    let jwks = toolcell_runtime::credentials::issuer::Issuer::open(issuer, &keys).unwrap().jwks();
    let oauth = OAuthServer::start(&jwks, issuer, &serde_json::json!({ "https://api.test": ["repo:read"] }));
    std::fs::write(dir.join("client-secret"), &oauth.client_secret).unwrap();
    let config = dir.join("toolcell.toml");
    std::fs::write(
        &config,
        format!(
            r#"
audit_log = "audit.jsonl"
lease_journal = "leases"

[issuer]
url = "{issuer}"
keys = "issuer-keys.json"

[oauth_token_exchange]
token_endpoint = "{0}/token"
revocation_endpoint = "{0}/token/revocation"
client_id = "toolcell"
client_secret = {{ file = "client-secret" }}
subject_audience = "{0}"
"#,
            oauth.issuer
        ),
    )
    .unwrap();
    probe_manifest(
        dir,
        "holds an exchanged token while it sleeps",
        "name = \"github\"\nprovider = \"oauth-token-exchange\"\nscopes = [\"repo:read\"]\n\
         audience = \"https://api.test\"\nexposure = \"reveal\"",
        "6s",
    );
    let input = r#"{"action":"acquire","name":"github","then":{"action":"sleep","seconds":60}}"#;
    let started = Instant::now();
    let mut child = Killed(
        toolcell(dir)
            .args(["--config", config.to_str().unwrap(), "run", "--manifest"])
            .arg(dir.join("probe.toml"))
            .args(["--input", input])
            .spawn()
            .unwrap(),
    );
    let token = loop {
        if let Some(token) = oauth.issued().first() {
            break token.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no token was exchanged: {:?}", child.0.try_wait());
        std::thread::sleep(Duration::from_millis(20));
    };
    while !audit(dir).iter().any(|e| e["event"] == "credential_minted" && e["credential"] == "github") {
        assert!(started.elapsed() < Duration::from_secs(30), "the exchanged token was never handed over");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(oauth.introspect(&token)["active"], true, "the tool's token is live while its call runs");
    // The runtime dies with the token in hand: no teardown, no journal entry.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(oauth.introspect(&token)["active"], true, "nothing has revoked it yet");
    // A new runtime starts; by the call's deadline (6s from its start) the
    // server itself holds the token dead: its stated life never passed the deadline.
    let out = toolcell(dir)
        .args(["--config", config.to_str().unwrap(), "run", guests::WORD_COUNT, "--input", r#"{"text":"hi"}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Duration::from_secs(6) + Duration::from_secs(2);
    while started.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let info = oauth.introspect(&token);
    assert_eq!(info["active"], false, "an exchanged token outlived its call's deadline after a crash: {info}");
}
