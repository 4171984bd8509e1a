//! Request-time policy and approvals through real processes: `toolcell
//! policy check/explain`, and `toolcell serve` over streamable HTTP and
//! stdio, driven by the Python MCP client, with `toolcell approvals`
//! answering through the admin socket and a real loopback API behind the tool.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use toolcell_test_guests as guests;

use super::mcp::{client, http_request, python, run_client, stdio_client};
use crate::common::{recording_api, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A loopback webhook receiver: answers 204 and keeps each request's body.
pub(crate) fn webhook_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

/// A served policies directory: a `github-issues` tool (the probe tool,
/// allowed GET and POST to the loopback API) and example policies.
pub(crate) struct Served {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) api_port: u16,
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
}

pub(crate) const ALICE_TOKEN: &str = "alice-token-0123456789";

impl Served {
    pub(crate) fn new(examples: &[&str], timeout: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let (api_port, seen) = recording_api();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(
            policies.join("github-issues.toml"),
            format!(
                "[tool]\nname = \"github-issues\"\nowner = \"tests\"\npurpose = \"opens issues\"\n\
                 review_by = 2099-01-01\ncomponent = \"{}\"\n\n[[egress]]\nurl = \"http://api.test:{api_port}/*\"\n\
                 methods = [\"GET\", \"POST\"]\naddresses = [\"127.0.0.1\"]\n\n[limits]\ntimeout = \"{timeout}\"\n",
                guests::PROBE_TOOL
            ),
        )
        .unwrap();
        for example in examples {
            std::fs::copy(repo().join("policies").join(example), policies.join(example)).unwrap();
        }
        std::fs::write(dir.path().join("alice.token"), ALICE_TOKEN).unwrap();
        Served { dir, api_port, seen }
    }

    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The runtime config: `api.test` on loopback, alice's token, roles, and `extra`.
    pub(crate) fn config(&self, extra: &str) -> PathBuf {
        self.config_serving(extra, "")
    }

    /// The same, with `serve_extra` at the end of its `[serve]` section.
    fn config_serving(&self, extra: &str, serve_extra: &str) -> PathBuf {
        let path = self.dir.path().join("toolcell.toml");
        std::fs::write(
            &path,
            format!(
                "hosts = {{ \"api.test\" = [\"127.0.0.1\"] }}\n{extra}\n\n[principals.alice]\nroles = [\"writer\"]\n\n\
                 [serve]\nadmin_socket = \"admin.sock\"\n\n[[serve.tokens]]\nprincipal = \"alice\"\n\
                 token = {{ file = \"alice.token\" }}\n{serve_extra}"
            ),
        )
        .unwrap();
        path
    }

    pub(crate) fn toolcell(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
        command
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
            .env_remove("RUST_LOG");
        command
    }

    /// `toolcell serve --http` on a free loopback port; its stderr is kept.
    pub(crate) fn serve(&self, extra_config: &str) -> Serving {
        self.serve_with(self.config(extra_config))
    }

    pub(crate) fn serve_with(&self, config: PathBuf) -> Serving {
        let mut command = self.toolcell();
        command
            .arg("--config")
            .arg(&config)
            .arg("--audit-log")
            .arg(self.dir.path().join("audit.jsonl"))
            .args(["serve", "--http", "127.0.0.1:0", "--watch-interval", "100ms", "--policies"])
            .arg(self.policies())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let url = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "toolcell serve exited: {}", log.lock().unwrap());
            log.lock().unwrap().push_str(&line);
            if let Some(url) = line.trim().strip_prefix("toolcell: serving MCP on ") {
                break url.to_owned();
            }
        };
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Serving { child, url, log }
    }

    /// The Python MCP client calling `github-issues`, as alice, in the background.
    fn call(&self, serving: &Serving, method: &str, body: &str) -> Child {
        let url = format!("http://api.test:{}/repos/acme/app/issues", self.api_port);
        let mut headers = Vec::new();
        if !body.is_empty() {
            headers.push(format!("body={body}"));
        }
        self.call_with(
            serving,
            serde_json::json!({ "action": "http", "method": method, "url": url, "headers": headers }),
        )
    }

    /// The Python MCP client calling `github-issues` with `arguments`, as alice, in the background.
    pub(crate) fn call_with(&self, serving: &Serving, arguments: serde_json::Value) -> Child {
        let scenario = serde_json::json!({ "do": "call", "tool": "github-issues", "arguments": arguments });
        Command::new(python())
            .arg(client())
            .arg(scenario.to_string())
            .env("MCP_TRANSPORT", "http")
            .env("MCP_URL", &serving.url)
            .env("MCP_TOKEN", ALICE_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `toolcell approvals ARGS`.
    fn approvals(&self, args: &[&str]) -> Output {
        self.toolcell().arg("approvals").arg("--socket").arg(self.socket()).args(args).output().unwrap()
    }

    /// Waits for one approval request to be waiting, and returns it.
    fn pending(&self) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let listed = self.approvals(&["list", "--json"]);
            assert!(listed.status.success(), "{}", text(&listed.stderr));
            let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
            if let Some(first) = listed.as_array().and_then(|a| a.first()) {
                return first.clone();
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no approval request was raised");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn audit(&self) -> Vec<serde_json::Value> {
        crate::common::audit_in(self.dir.path())
    }
}

pub(crate) struct Serving {
    child: Child,
    pub(crate) url: String,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client's printed outcome.
pub(crate) fn outcome(child: Child) -> serde_json::Value {
    let output = child.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "client failed:\n{stdout}\n{}", text(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

#[test]
fn policy_check_and_explain_name_files_lines_and_deciding_policies() {
    let served = Served::new(&[], "20s");
    let run = |args: &[&str]| served.toolcell().args(args).output().unwrap();
    let checked = run(&["policy", "check", repo().join("policies").to_str().unwrap()]);
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    assert!(text(&checked.stdout).contains("7 request-time policies in 6 file(s): ok (mode ceiling)"));

    let bad = served.dir.path().join("bad.cedar");
    std::fs::write(&bad, "// a typo\npermit (principal, action == Action::\"http\", resource)\n  when { context.request.verb == \"GET\" };\n").unwrap();
    let checked = run(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(1));
    let out = text(&checked.stdout);
    assert!(out.starts_with(&format!("{}:3:", bad.display())), "{out}");
    assert!(out.contains("`request.verb`") && out.contains("bad.1"), "{out}");

    let explain = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--policies",
            "",
            "--principal",
            "alice",
            "--tool",
            "github-issues",
            "--action",
            "http",
            "--method",
            "POST",
            "--resource",
            "https://api.github.com/repos/acme/app/issues",
        ];
        let dir = repo().join("policies");
        args[3] = dir.to_str().unwrap();
        args.extend_from_slice(extra);
        let config = served.config("");
        served.toolcell().arg("--config").arg(config).args(&args).output().unwrap()
    };
    // Tuesday 10:00 UTC: alice is a writer; the POST waits for approval.
    let tuesday = explain(&["--at", "2026-12-01T10:00:00Z"]);
    assert_eq!(tuesday.status.code(), Some(0), "{}", text(&tuesday.stdout));
    assert!(text(&tuesday.stdout).contains("decision  approval_required\nby        approve-new-issues, manifest"));
    // Saturday: the business-hours forbid decides.
    let saturday = explain(&["--at", "2026-12-05T10:00:00Z"]);
    assert_eq!(saturday.status.code(), Some(1));
    assert!(
        text(&saturday.stdout).contains("by        github-writes-in-business-hours\n"),
        "{}",
        text(&saturday.stdout)
    );
    // A task that has sent its budget cannot send more.
    let spent =
        explain(&["--at", "2026-12-01T10:00:00Z", "--counter", "task_total.bytes_sent=1048576", "--body-size", "1"]);
    assert!(text(&spent.stdout).contains("by        egress-byte-budget"), "{}", text(&spent.stdout));
    let wrong = explain(&["--counter", "task_total.cookies=1"]);
    assert_eq!(wrong.status.code(), Some(125));
    assert!(text(&wrong.stderr).contains("counters are requests, bytes_sent"), "{}", text(&wrong.stderr));
}

#[test]
fn an_approval_from_the_admin_cli_lets_exactly_that_request_through_once() {
    let served = Served::new(&["github-issues-approval.cedar", "post-needs-writer.cedar"], "4s");
    let (hook, posted) = webhook_sink();
    let serving = served.serve(&format!("[approvals]\nwebhook = \"http://127.0.0.1:{hook}/approvals\"\n"));
    let call = served.call(&serving, "POST", "new issue");
    let pending = served.pending();
    let id = pending["id"].as_str().unwrap().to_owned();
    let digest = pending["digest"].as_str().unwrap().to_owned();
    assert_eq!(pending["principal"], "alice");
    assert_eq!(pending["why"], "opening an issue is visible to customers");
    assert!(pending["what"].as_str().unwrap().starts_with("POST http://api.test:"), "{pending}");

    // The webhook got the request, and how to answer it.
    let started = Instant::now();
    while posted.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the webhook was not called");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hooked: serde_json::Value = serde_json::from_str(&posted.lock().unwrap()[0]).unwrap();
    assert_eq!(hooked["approval"]["id"], id.as_str());
    assert_eq!(hooked["approval"]["digest"], digest.as_str());
    assert_eq!(
        hooked["answer_with"],
        format!("toolcell approvals approve {id} --digest {digest} (or deny {id} --reason TEXT)").as_str()
    );
    let shown = served.approvals(&["show", &id]);
    assert!(text(&shown.stdout).contains(&format!("digest      {digest}")), "{}", text(&shown.stdout));
    // An unknown id, and a digest that is not the one reviewed, change nothing.
    let unknown = served.approvals(&["approve", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no approval request `no-such-id`"), "{}", text(&unknown.stderr));
    let mismatched = served.approvals(&["approve", &id, "--digest", &"0".repeat(64)]);
    assert_eq!(mismatched.status.code(), Some(1));
    assert!(text(&mismatched.stderr).contains("not the one you reviewed"), "{}", text(&mismatched.stderr));
    let approved = served.approvals(&["approve", &id, "--digest", &digest]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));
    let replay = served.approvals(&["approve", &id, "--digest", &digest]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(
        text(&replay.stderr).contains("was already approved; an approval is used once"),
        "{}",
        text(&replay.stderr)
    );

    let result = outcome(call);
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(served.seen.lock().unwrap().len(), 1);
    assert!(served.seen.lock().unwrap()[0].starts_with("POST /repos/acme/app/issues "));

    // The same request again needs a new approval; none comes, and the deadline denies it.
    let again = served.call(&serving, "POST", "new issue");
    let second = served.pending();
    assert_ne!(second["id"], id.as_str());
    let result = outcome(again);
    assert_eq!(result["isError"], true, "{result}");
    assert!(result["text"][0].as_str().unwrap().contains("was not answered before it expired"), "{result}");
    let late = served.approvals(&["approve", second["id"].as_str().unwrap()]);
    assert!(text(&late.stderr).contains("has expired"), "{}", text(&late.stderr));
    assert_eq!(served.seen.lock().unwrap().len(), 1, "nothing more left");

    let audit = served.audit();
    let approvals: Vec<(&str, Option<&str>)> = audit
        .iter()
        .filter(|e| e["event"] == "approval")
        .map(|e| (e["decision"].as_str().unwrap(), e["approver"].as_str()))
        .collect();
    let me = format!("local:{}", text(&Command::new("id").arg("-un").output().unwrap().stdout).trim());
    assert_eq!(
        approvals,
        [("requested", None), ("approved", Some(me.as_str())), ("requested", None), ("expired", None)]
    );
    drop(serving);
}

#[test]
fn elicitation_approves_for_a_client_that_supports_it_and_is_skipped_for_one_that_does_not() {
    let served = Served::new(&["github-issues-approval.cedar"], "3s");
    let config = served.config("[approvals]\nallow_self_approval = true\n");
    let scenario = serde_json::json!({
        "do": "call",
        "tool": "github-issues",
        "arguments": {
            "action": "http", "method": "POST", "headers": ["body=x"],
            "url": format!("http://api.test:{}/repos/acme/app/issues", served.api_port),
        },
    });
    let stdio = |elicit: Option<&str>| {
        let args = serde_json::json!([
            "--config",
            config,
            "--audit-log",
            served.dir.path().join("audit.jsonl"),
            "serve",
            "--policies",
            served.policies()
        ]);
        let mut command = stdio_client(&scenario, &args);
        command
            .env("XDG_STATE_HOME", served.dir.path().join("state"))
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"));
        if let Some(elicit) = elicit {
            command.env("MCP_ELICIT", elicit);
        }
        run_client(command)
    };
    let accepted = stdio(Some("accept"));
    assert_eq!(accepted["isError"], false, "{accepted}");
    let asked = accepted["elicited"][0].as_str().unwrap();
    assert!(asked.contains("opening an issue is visible to customers") && asked.contains("Digest: "), "{asked}");
    let denied = stdio(Some("deny"));
    assert_eq!(denied["isError"], true);
    assert!(denied["text"][0].as_str().unwrap().contains("was denied by local:"), "{denied}");
    // A client without elicitation is not asked; with no other answer, the deadline denies.
    let silent = stdio(None);
    assert!(silent.get("elicited").is_none());
    assert!(silent["text"][0].as_str().unwrap().contains("was not answered"), "{silent}");
    assert_eq!(served.seen.lock().unwrap().len(), 1);
    let answers: Vec<(String, String)> = served
        .audit()
        .iter()
        .filter(|e| e["event"] == "approval" && e["decision"] != "requested")
        .map(|e| (e["decision"].as_str().unwrap().to_owned(), e["channel"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(answers[0], ("approved".to_owned(), "elicitation (mcp)".to_owned()));
    assert_eq!(answers[1].0, "denied");
    assert_eq!(answers[2], ("expired".to_owned(), String::new()));
}

#[test]
fn a_new_forbid_is_picked_up_without_restart_and_a_broken_one_keeps_the_last_good_set() {
    let served = Served::new(&["post-needs-writer.cedar"], "10s");
    let serving = served.serve("");
    assert_eq!(outcome(served.call(&serving, "GET", ""))["isError"], false);
    std::fs::write(
        served.policies().join("no-reads.cedar"),
        "@id(\"no-issue-reads\")\n@reason(\"reads are paused\")\nforbid (principal, action == Action::\"http\", resource in Tool::\"github-issues\")\n  when { context.request.method == \"GET\" };\n",
    )
    .unwrap();
    let started = Instant::now();
    while !serving.log.lock().unwrap().contains("reloaded 2 request-time policies") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", serving.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = outcome(served.call(&serving, "GET", ""));
    assert_eq!(refused["isError"], true);
    assert!(
        refused["text"][0].as_str().unwrap().contains("denied by policy `no-issue-reads`: reads are paused"),
        "{refused}"
    );
    // A broken file: reported, and the two policies stay in force.
    std::fs::write(served.policies().join("zz-broken.cedar"), "forbid (principal, action, resource) when { nope };\n")
        .unwrap();
    while !serving.log.lock().unwrap().contains("not reloaded; the last good set (2 policies) stays in force") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", serving.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(serving.log.lock().unwrap().contains("zz-broken.cedar:1:"), "{}", serving.log.lock().unwrap());
    assert_eq!(outcome(served.call(&serving, "GET", ""))["isError"], true);
    // The denials are audited with the deciding policy.
    let denied: Vec<serde_json::Value> =
        served.audit().into_iter().filter(|e| e["event"] == "policy" && e["decision"] == "denied").collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["policies"], serde_json::json!(["no-issue-reads"]));
}

#[test]
fn policies_refused_at_start_stop_the_server_before_it_serves_a_call() {
    // Policies load beside the tools, after the transport is up: a broken
    // set must still stop the server, not leave it serving without them.
    let served = Served::new(&["post-needs-writer.cedar"], "10s");
    std::fs::write(served.policies().join("broken.cedar"), "forbid (principal, action, resource)\n  when { nope };\n")
        .unwrap();
    let output = served
        .toolcell()
        .arg("--config")
        .arg(served.config(""))
        .args(["serve", "--http", "127.0.0.1:0", "--policies"])
        .arg(served.policies())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("request-time policies refused"), "{stderr}");
    assert!(stderr.contains("broken.cedar:2:"), "{stderr}");
    assert!(!stderr.contains("tool(s)"), "tools were served: {stderr}");
}

#[test]
fn the_admin_socket_is_private_and_a_second_server_does_not_take_it_over() {
    use std::os::unix::fs::PermissionsExt;
    let served = Served::new(&[], "10s");
    let serving = served.serve("");
    let mode = std::fs::metadata(served.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut second = served.toolcell();
    second
        .arg("--config")
        .arg(served.config(""))
        .args(["serve", "--http", "127.0.0.1:0", "--policies"])
        .arg(served.policies());
    let output = second.output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(text(&output.stderr).contains("is in use by another toolcell serve"), "{}", text(&output.stderr));
    // A malformed request is answered with an error, and the server keeps serving.
    let mut raw = std::os::unix::net::UnixStream::connect(served.socket()).unwrap();
    raw.write_all(b"{\"op\":\"approvals_answer\",\"id\":1}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&raw).read_line(&mut answer).unwrap();
    assert!(answer.contains("\"ok\":false") && answer.contains("bad request"), "{answer}");
    let listed = served.approvals(&["list"]);
    assert_eq!(text(&listed.stdout).trim(), "no approval requests waiting");
    let mut serving = serving;
    Command::new("kill").args(["-TERM", &serving.child.id().to_string()]).status().unwrap();
    assert_eq!(serving.child.wait().unwrap().code(), Some(143));
    assert!(!served.socket().exists(), "the socket is removed when the server stops");
}

#[test]
fn the_admin_interface_over_http_answers_admin_tokens_only() {
    const CAROL: &str = "carol-admin-token-0123456789";
    let served = Served::new(&["github-issues-approval.cedar", "post-needs-writer.cedar"], "6s");
    std::fs::write(served.dir.path().join("carol.token"), CAROL).unwrap();
    let config = served.config_serving(
        "",
        "\n[[serve.admin_tokens]]\nprincipal = \"ops:carol\"\ntoken = { file = \"carol.token\" }\n",
    );
    let serving = served.serve_with(config);
    let call = served.call(&serving, "POST", "new issue");
    let pending = served.pending();
    let answer = serde_json::json!({
        "op": "approvals_answer", "id": pending["id"], "approve": true, "digest": pending["digest"],
    })
    .to_string();
    let post_request = |token: Option<&str>, request: &str| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        http_request(&serving.url, "POST", "/admin", &headers, request)
    };
    let post = |token: Option<&str>| post_request(token, &answer);
    // No token, and an MCP token, are not admin tokens.
    assert_eq!(post(None).0, 401);
    assert_eq!(post(Some(ALICE_TOKEN)).0, 401);
    let (status, _, body) = post(Some(CAROL));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"approver\":\"ops:carol\""), "{body}");
    let (status, _, body) = post(Some(CAROL));
    assert_eq!(status, 409);
    assert!(body.contains("already approved"), "{body}");
    assert_eq!(outcome(call)["isError"], false);
    let approved = served.audit().into_iter().find(|e| e["event"] == "approval" && e["decision"] == "approved");
    let approved = approved.expect("the approval is audited");
    assert_eq!((approved["approver"].as_str(), approved["channel"].as_str()), (Some("ops:carol"), Some("admin")));

    // Kills too: only for an admin token, and made in its name.
    let kill = r#"{"op":"kill","target":{"tool":"github-issues"},"reason":"over http"}"#;
    assert_eq!(post_request(Some(ALICE_TOKEN), kill).0, 401);
    let (status, _, body) = post_request(Some(CAROL), kill);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"by\":\"ops:carol\""), "{body}");
    let refused = outcome(served.call(&serving, "GET", ""));
    assert!(refused["text"][0].as_str().unwrap().contains("killed by ops:carol"), "{refused}");
    let (status, _, body) = post_request(Some(CAROL), r#"{"op":"unkill","target":{"tool":"github-issues"}}"#);
    assert_eq!(status, 200, "{body}");
}
