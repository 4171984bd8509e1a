//! Oversight through real processes: `toolcell serve --http` driven by the
//! Python MCP client, with a real OpenBao behind the tool's credential;
//! `toolcell tasks`, `kill` and `unkill` through the admin socket; kills
//! kept across a restart; rate limits the client can act on.

use std::process::Output;
use std::time::{Duration, Instant};

use toolcell_test_guests::openbao::openbao;

use super::policies::{Served, outcome, webhook_sink};
use crate::common::text;

/// The served `github-issues` tool, holding an OpenBao certificate, with
/// OpenBao configured and `extra` in the runtime config.
fn served_with_openbao(extra: &str) -> (Served, std::path::PathBuf) {
    let served = Served::new(&[], "60s");
    let bao = openbao();
    std::fs::write(served.dir.path().join("bao-token"), &bao.root_token).unwrap();
    let manifest = served.dir.path().join("policies/github-issues.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[[credentials]]\nname = \"cert\"\nprovider = \"openbao\"\nscopes = [\"tool-pki\"]\n\
         audience = \"pki:tool\"\nexposure = \"reveal\"\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let config = served.config(&format!(
        "lease_journal = \"leases\"\nkill_file = \"kills.json\"\n{extra}\n\n[openbao]\naddress = \"{}\"\n\
         token = {{ file = \"bao-token\" }}\ntimeout = \"2s\"\n\n[[openbao.secrets]]\naudience = \"pki:tool\"\n\
         path = \"pki/issue/tool\"\ndata = {{ common_name = \"{{task}}.toolcell.test\", ttl = \"{{ttl}}\" }}\n\
         field = \"certificate\"\n",
        bao.address
    ));
    (served, config)
}

/// `toolcell ARGS` against the served admin socket.
fn admin(served: &Served, args: &[&str]) -> Output {
    served.toolcell().args(args).arg("--socket").arg(served.socket()).output().unwrap()
}

fn echo() -> serde_json::Value {
    serde_json::json!({ "action": "echo" })
}

#[test]
fn a_kill_stops_a_served_call_mid_flight_revokes_its_lease_and_outlives_a_restart() {
    let (served, config) = served_with_openbao("");
    let serving = served.serve_with(config.clone());
    let holding = served.call_with(
        &serving,
        serde_json::json!({ "action": "acquire", "name": "cert", "reveal": true,
            "then": { "action": "sleep", "seconds": 40 } }),
    );

    // `toolcell tasks` shows the call and its lease, by id.
    let started = Instant::now();
    let (task, lease) = loop {
        let listed = admin(&served, &["tasks", "--json"]);
        assert!(listed.status.success(), "{}", text(&listed.stderr));
        let tasks: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        let held = &tasks[0]["calls"][0]["credentials"][0];
        if let Some(lease) = held["id"].as_str() {
            assert_eq!(
                (tasks[0]["principal"].as_str(), tasks[0]["tool"].as_str()),
                (Some("alice"), Some("github-issues"))
            );
            assert_eq!(held["provider"], "openbao");
            break (tasks[0]["task"].as_str().unwrap().to_owned(), lease.to_owned());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the call never held its lease: {tasks}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(openbao().lease_exists(&lease));
    let listed = admin(&served, &["tasks"]);
    let shown = text(&listed.stdout);
    assert!(shown.contains(&task) && shown.contains("running") && shown.contains(&lease), "{shown}");

    let killed = admin(&served, &["kill", "--tool", "github-issues", "--reason", "exfiltrating issue bodies"]);
    assert!(killed.status.success(), "{}", text(&killed.stderr));
    let said = text(&killed.stdout);
    assert!(said.contains("stopped 1 call(s) in 1 task(s); 1 credential(s) revoked"), "{said}");
    assert!(!openbao().lease_exists(&lease), "the lease outlived the kill");
    let stopped = outcome(holding);
    let message = stopped["text"][0].as_str().unwrap_or_default();
    assert!(stopped["isError"] == true && message.contains("exfiltrating issue bodies"), "{stopped}");

    // New calls are refused, naming the kill; a restarted server still refuses them.
    let refused = outcome(served.call_with(&serving, echo()));
    assert!(refused["text"][0].as_str().unwrap().contains("tool `github-issues` was killed by local:"), "{refused}");
    drop(serving);
    let serving = served.serve_with(config);
    let refused = outcome(served.call_with(&serving, echo()));
    assert!(refused["text"][0].as_str().unwrap().contains("exfiltrating issue bodies"), "{refused}");
    let listed = admin(&served, &["kill", "--list"]);
    assert!(text(&listed.stdout).contains("tool `github-issues` was killed"), "{}", text(&listed.stdout));

    // Lifted, the tool serves again.
    let lifted = admin(&served, &["unkill", "--tool", "github-issues"]);
    assert!(lifted.status.success(), "{}", text(&lifted.stderr));
    let served_again = outcome(served.call_with(&serving, echo()));
    assert_eq!(served_again["isError"], false, "{served_again}");
    let again = admin(&served, &["unkill", "--tool", "github-issues"]);
    assert!(!again.status.success() && text(&again.stderr).contains("no kill of tool `github-issues`"));

    let audit = served.audit();
    let kills: Vec<&serde_json::Value> = audit.iter().filter(|e| e["event"] == "kill").collect();
    assert_eq!(kills.len(), 2, "the kill and the unkill are audited");
    assert!(kills[0]["by"].as_str().unwrap().starts_with("local:"));
    let revoked = audit.iter().find(|e| e["event"] == "credential_revoked" && e["id"] == lease.as_str()).unwrap();
    assert!(revoked["reason"].as_str().unwrap().contains("exfiltrating issue bodies"), "{revoked}");
}

#[test]
fn kill_and_unkill_refuse_what_they_cannot_do() {
    let served = Served::new(&[], "5s");
    let serving = served.serve("");
    // No target, two targets, an empty name.
    let none = admin(&served, &["kill"]);
    assert!(!none.status.success() && text(&none.stderr).contains("name what to kill"), "{}", text(&none.stderr));
    let none = admin(&served, &["unkill"]);
    assert!(!none.status.success() && text(&none.stderr).contains("name the kill to lift"), "{}", text(&none.stderr));
    let two = served.toolcell().args(["kill", "--tool", "a", "--principal", "b"]).output().unwrap();
    assert!(!two.status.success() && text(&two.stderr).contains("cannot be used with"), "{}", text(&two.stderr));
    let unknown = admin(&served, &["kill", "--task", "no-such-task"]);
    assert!(!unknown.status.success() && text(&unknown.stderr).contains("no task no-such-task is running"));
    let empty = admin(&served, &["kill", "--tool", " "]);
    assert!(!empty.status.success() && text(&empty.stderr).contains("names its task, tool or principal"));
    // A kill --for lapses; kills of one principal leave the others alone.
    let killed = admin(&served, &["kill", "--principal", "alice", "--for", "6s", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&killed.stdout).unwrap();
    let until = report["kill"]["until"].as_u64().expect("a kill --for has an end");
    let refused = outcome(served.call_with(&serving, echo()));
    assert!(refused["text"][0].as_str().unwrap().contains("principal `alice` was killed"), "{refused}");
    let until = std::time::UNIX_EPOCH + Duration::from_secs(until);
    std::thread::sleep(
        until.duration_since(std::time::SystemTime::now()).unwrap_or_default() + Duration::from_millis(100),
    );
    let served_again = outcome(served.call_with(&serving, echo()));
    assert_eq!(served_again["isError"], false, "{served_again}");
}

#[test]
fn a_call_over_its_rate_limit_is_an_mcp_error_that_says_when_to_retry() {
    let served = Served::new(&[], "5s");
    let serving = served.serve("[[rate_limits]]\ntool = \"github-issues\"\nprincipal = \"*\"\ncalls_per_minute = 2\n");
    for _ in 0..2 {
        let ok = outcome(served.call_with(&serving, echo()));
        assert_eq!(ok["isError"], false, "{ok}");
    }
    let refused = outcome(served.call_with(&serving, echo()));
    let error = &refused["error"];
    assert_eq!(error["code"], -32029, "{refused}");
    assert_eq!(error["data"]["type"], "rate_limited");
    assert_eq!(error["data"]["limit"], "calls_per_minute");
    assert_eq!(error["data"]["scope"], "principal `alice` on tool `github-issues`");
    let retry = error["data"]["retry_after_seconds"].as_u64().unwrap();
    assert!((1..=60).contains(&retry), "{refused}");
    assert!(error["message"].as_str().unwrap().contains("retry in"), "{refused}");
    // A rate limit that could mean nothing is refused at start, by name.
    let config = served.config("[[rate_limits]]\ncalls_per_minute = 5\n");
    let mut command = served.toolcell();
    let out = command.arg("--config").arg(&config).args(["serve", "--manifest", "x.toml"]).output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("rate_limits[0]"), "{}", text(&out.stderr));
}

/// A runtime config for `served` with api.test and other.test on loopback, and `monitor`.
fn watched_config(served: &Served, monitor: &str) -> std::path::PathBuf {
    let path = served.dir.path().join("watched.toml");
    std::fs::write(
        &path,
        format!(
            "hosts = {{ \"api.test\" = [\"127.0.0.1\"], \"other.test\" = [\"127.0.0.1\"] }}\n{monitor}\n\n\
             [serve]\nadmin_socket = \"admin.sock\"\n\n[[serve.tokens]]\nprincipal = \"alice\"\n\
             token = {{ file = \"alice.token\" }}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_baseline_learned_from_the_audit_trail_catches_a_new_host_and_survives_a_bad_reload() {
    let served = Served::new(&[], "10s");
    let manifest = served.dir.path().join("policies/github-issues.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    toml.push_str(&format!(
        "\n[[egress]]\nurl = \"http://other.test:{}/*\"\nmethods = [\"GET\"]\naddresses = [\"127.0.0.1\"]\n",
        served.api_port
    ));
    std::fs::write(&manifest, toml).unwrap();
    let get = |host: &str| serde_json::json!({ "action": "http", "method": "GET", "url": format!("http://{host}:{}/ok", served.api_port) });

    // A week of usual behaviour, in short: GETs to api.test.
    let serving = served.serve_with(watched_config(&served, ""));
    for _ in 0..3 {
        let usual = outcome(served.call_with(&serving, get("api.test")));
        assert_eq!(usual["isError"], false, "{usual}");
    }
    drop(serving);
    let baseline = served.dir.path().join("baseline.json");
    let learned = served
        .toolcell()
        .args(["baseline", "learn", "--since", "7d", "--out"])
        .arg(&baseline)
        .arg("--audit")
        .arg(served.dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    assert!(learned.status.success(), "{}", text(&learned.stderr));
    let said = text(&learned.stdout);
    assert!(said.contains("tool github-issues: 3 calls") && said.contains("hosts: api.test"), "{said}");

    // Served against it: a host the tool never used is refused, recorded, and posted to the webhook.
    let (sink, posted) = webhook_sink();
    let monitor = format!(
        "[monitor]\nbaseline = \"baseline.json\"\nmin_calls = 3\nwebhook = \"http://127.0.0.1:{sink}/anomalies\"\n\
         new_host = {{ action = \"deny\" }}\n"
    );
    let config = watched_config(&served, &monitor);
    let serving = served.serve_with(config.clone());
    let usual = outcome(served.call_with(&serving, get("api.test")));
    assert_eq!(usual["isError"], false, "{usual}");
    let new = outcome(served.call_with(&serving, get("other.test")));
    let message = new["text"][0].as_str().unwrap_or_default();
    assert!(new["isError"] == true && message.contains("anomaly new_host for tool `github-issues`"), "{new}");
    let started = Instant::now();
    while !posted.lock().unwrap().iter().any(|body| body.contains("new_host")) {
        assert!(started.elapsed() < Duration::from_secs(10), "the anomaly was not posted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let anomalies: Vec<serde_json::Value> = served.audit().into_iter().filter(|e| e["event"] == "anomaly").collect();
    assert_eq!((anomalies.len(), anomalies[0]["observed"].as_str()), (1, Some("a request to other.test")));

    // A broken baseline is not reloaded: the last good one stays in force.
    std::fs::write(&baseline, "{ broken").unwrap();
    let started = Instant::now();
    while !serving.log.lock().unwrap().contains("baseline not reloaded; the last good one stays in force") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", serving.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = outcome(served.call_with(&serving, get("other.test")));
    assert_eq!(still["isError"], true, "{still}");
    drop(serving);
    // And a server does not start on one.
    let out = served
        .toolcell()
        .arg("--config")
        .arg(&config)
        .args(["serve", "--policies"])
        .arg(served.dir.path().join("policies"))
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && stderr.contains("baseline.json") && stderr.contains("malformed"), "{stderr}");
}

/// A baseline in which `github-issues` sends about 100 bytes a call to api.test.
fn small_sender_baseline(path: &std::path::Path) {
    let spread = |p99: f64| toolcell_runtime::Spread { p50: p99 / 2.0, p90: p99, p99, max: p99 };
    let usual = toolcell_runtime::Behaviour {
        calls: 50,
        requests_per_call: spread(1.0),
        hosts_per_call: spread(1.0),
        bytes_out_per_call: spread(100.0),
        bytes_in_per_call: spread(1000.0),
        denials_per_call: spread(0.0),
        mints_per_call: spread(1.0),
        calls_per_minute: spread(4.0),
        hosts: ["api.test".to_owned()].into(),
        methods: ["GET".to_owned(), "POST".to_owned()].into(),
    };
    let baseline = toolcell_runtime::Baseline {
        version: 1,
        learned_at: "2026-11-30T00:00:00Z".into(),
        since: None,
        tools: [("github-issues".to_owned(), usual)].into(),
        principals: Default::default(),
    };
    std::fs::write(path, serde_json::to_string_pretty(&baseline).unwrap()).unwrap();
}

#[test]
fn a_call_sending_a_hundred_times_its_usual_bytes_is_killed_at_the_server_and_its_principal_quarantined() {
    let monitor =
        "[monitor]\nbaseline = \"baseline.json\"\nmin_calls = 3\nbytes_out = { action = \"kill\", factor = 10 }\n";
    let (served, config) = served_with_openbao(monitor);
    small_sender_baseline(&served.dir.path().join("baseline.json"));
    let serving = served.serve_with(config);
    let url = format!("http://api.test:{}/repos/acme/app/issues", served.api_port);
    let exfiltrating = serde_json::json!({ "action": "acquire", "name": "cert", "reveal": true,
        "then": { "action": "http", "method": "POST", "url": url, "headers": ["body-bytes=102400"],
            "then": { "action": "sleep", "seconds": 30 } } });
    let killed = outcome(served.call_with(&serving, exfiltrating));
    let message = killed["text"][0].as_str().unwrap_or_default();
    assert!(killed["isError"] == true && message.contains("anomaly bytes_out"), "{killed}");
    assert!(served.seen.lock().unwrap().iter().all(|head| !head.starts_with("POST")), "the body left");

    // The lease is revoked at OpenBao, and the principal refused until the quarantine is lifted.
    let audit = served.audit();
    let lease = audit.iter().find(|e| e["event"] == "credential_minted" && e["credential"] == "cert").unwrap();
    let lease = lease["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while openbao().lease_exists(&lease) {
        assert!(started.elapsed() < Duration::from_secs(10), "the lease outlived the kill");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = outcome(served.call_with(&serving, echo()));
    assert!(
        refused["text"][0].as_str().unwrap().contains("principal `alice` was killed by anomaly:bytes_out"),
        "{refused}"
    );
    let listed = admin(&served, &["kill", "--list"]);
    assert!(text(&listed.stdout).contains("anomaly:bytes_out"), "{}", text(&listed.stdout));
    let lifted = admin(&served, &["unkill", "--principal", "alice"]);
    assert!(lifted.status.success(), "{}", text(&lifted.stderr));
    assert_eq!(outcome(served.call_with(&serving, echo()))["isError"], false);
}

#[test]
fn a_storm_of_denials_at_the_server_quarantines_the_principal() {
    let served = Served::new(&[], "10s");
    let serving = served.serve("[monitor]\ndeny_storm = { denials = 3, seconds = 60 }\n");
    // Probing for a way out: hosts the tool was never granted.
    let probing = serde_json::json!({ "action": "repeat", "times": 6,
        "do": { "action": "http", "method": "GET", "url": "http://internal-{n}.test/admin" } });
    let stopped = outcome(served.call_with(&serving, probing));
    assert_eq!(stopped["isError"], true, "{stopped}");
    let refused = outcome(served.call_with(&serving, echo()));
    let message = refused["text"][0].as_str().unwrap_or_default();
    assert!(message.contains("principal `alice` was killed by anomaly:deny_storm"), "{refused}");
    let anomalies: Vec<serde_json::Value> = served.audit().into_iter().filter(|e| e["event"] == "anomaly").collect();
    assert_eq!((anomalies[0]["metric"].as_str(), anomalies[0]["action"].as_str()), (Some("deny_storm"), Some("kill")));
}
