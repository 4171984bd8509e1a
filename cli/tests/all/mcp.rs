//! `toolcell serve` driven by the official Python MCP client SDK (`mcp` from
//! PyPI, installed by `scripts/test`), over stdio and streamable HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use toolcell_test_guests as guests;

pub(super) fn python() -> PathBuf {
    let python = std::env::var_os("TOOLCELL_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "TOOLCELL_PYTHON is not set: the MCP tests need a Python with the `mcp` client SDK. \
             Run `scripts/test`, which installs it and sets the variable."
        )
    });
    assert!(python.is_file(), "TOOLCELL_PYTHON={} does not exist", python.display());
    python
}

pub(super) fn client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testing/mcp/client.py")
}

/// A policies directory with the probe tool, word-count and one broken manifest.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let manifest = |name: &str, component: &str, extra: &str| {
            format!(
                "[tool]\nname = \"{name}\"\nowner = \"tests\"\npurpose = \"{name} for the MCP tests\"\n\
                 review_by = 2099-01-01\ncomponent = \"{component}\"\n{extra}"
            )
        };
        std::fs::write(
            policies.join("probe.toml"),
            manifest("probe", guests::PROBE_TOOL, "[limits]\nmemory = \"32MiB\"\ntimeout = \"20s\"\n"),
        )
        .unwrap();
        std::fs::write(policies.join("word-count.toml"), manifest("word-count", guests::WORD_COUNT, "")).unwrap();
        std::fs::write(policies.join("file-stats.toml"), manifest("file-stats", guests::FILE_STATS, "")).unwrap();
        std::fs::write(policies.join("broken.toml"), "[tool]\nname = \"broken\"\nnetwork = true\n").unwrap();
        Setup { dir }
    }

    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        crate::common::audit_in(self.dir.path())
    }

    fn env(&self, command: &mut Command) {
        command
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
            .env_remove("RUST_LOG");
    }

    /// Runs one scenario over stdio: the client spawns `toolcell serve`.
    fn stdio(&self, scenario: serde_json::Value) -> serde_json::Value {
        let args = serde_json::json!([
            "--audit-log",
            self.dir.path().join("audit.jsonl"),
            "serve",
            "--policies",
            self.policies(),
            "--watch-interval",
            "200ms"
        ]);
        let mut command = stdio_client(&scenario, &args);
        self.env(&mut command);
        run_client(command)
    }

    /// Starts `toolcell serve --http` on a free loopback port.
    fn http_server(&self, config: &str) -> Server {
        let config_path = self.dir.path().join("toolcell.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
        command
            .arg("--config")
            .arg(&config_path)
            .arg("--audit-log")
            .arg(self.dir.path().join("audit.jsonl"))
            .args(["serve", "--http", "127.0.0.1:0", "--policies"])
            .arg(self.policies())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.env(&mut command);
        let mut child = command.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "toolcell serve --http exited before serving");
            if let Some(url) = line.trim().strip_prefix("toolcell: serving MCP on ") {
                break url.to_owned();
            }
        };
        std::thread::spawn(move || for _ in stderr.lines() {});
        Server { child, url }
    }

    fn http(
        &self,
        server: &Server,
        scenario: serde_json::Value,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> serde_json::Value {
        let mut command = Command::new(python());
        command.arg(client()).arg(scenario.to_string()).env("MCP_TRANSPORT", "http").env("MCP_URL", &server.url);
        if let Some(token) = token {
            command.env("MCP_TOKEN", token);
        }
        if let Some(origin) = origin {
            command.env("MCP_ORIGIN", origin);
        }
        self.env(&mut command);
        run_client(command)
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python MCP client running `scenario` against `toolcell ARGS` over stdio.
pub(super) fn stdio_client(scenario: &serde_json::Value, toolcell_args: &serde_json::Value) -> Command {
    let mut command = Command::new(python());
    command
        .arg(client())
        .arg(scenario.to_string())
        .env("MCP_TRANSPORT", "stdio")
        .env("TOOLCELL", env!("CARGO_BIN_EXE_toolcell"))
        .env("TOOLCELL_ARGS", toolcell_args.to_string());
    command
}

pub(super) fn run_client(mut command: Command) -> serde_json::Value {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the MCP client failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("client printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

fn call(tool: &str, arguments: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "do": "call", "tool": tool, "arguments": arguments })
}

#[test]
fn stdio_lists_tools_with_schemas_and_skips_a_broken_manifest() {
    let setup = Setup::new();
    let listed = setup.stdio(serde_json::json!({ "do": "list" }));
    let tools = listed["tools"].as_object().unwrap();
    let mut names: Vec<&String> = tools.keys().collect();
    names.sort();
    assert_eq!(names, ["file-stats", "probe", "word-count"], "the broken manifest is skipped, the rest served");
    let word_count = &tools["word-count"];
    assert_eq!(word_count["description"], "Counts the words, lines and bytes of a text.");
    assert_eq!(word_count["inputSchema"]["required"], serde_json::json!(["text"]));
    assert_eq!(word_count["outputSchema"]["required"], serde_json::json!(["bytes", "lines", "words"]));
    assert_eq!(tools["file-stats"]["inputSchema"]["properties"]["args"]["type"], "array");
}

#[test]
fn stdio_calls_answer_with_structured_content_errors_and_limits() {
    let setup = Setup::new();
    let ok = setup.stdio(call("word-count", serde_json::json!({ "text": "one two three" })));
    assert_eq!(ok["isError"], false);
    assert_eq!(ok["structured"], serde_json::json!({ "bytes": 13, "lines": 1, "words": 3 }));
    assert_eq!(ok["text"][0], r#"{"bytes":13,"lines":1,"words":3}"#);

    let invalid = setup.stdio(call("word-count", serde_json::json!({ "txt": "x" })));
    assert_eq!(invalid["isError"], true);
    assert!(invalid["text"][0].as_str().unwrap().contains("invalid input: field `txt`"), "{invalid}");

    let tool_error = setup.stdio(call("probe", serde_json::json!({ "action": "fail" })));
    assert_eq!(
        (tool_error["isError"].as_bool(), tool_error["text"][0].as_str()),
        (Some(true), Some("failed: asked to fail"))
    );

    let limit = setup.stdio(call("probe", serde_json::json!({ "action": "alloc" })));
    assert!(limit["text"][0].as_str().unwrap().starts_with("memory limit of 32MiB exceeded"), "{limit}");

    let unknown = setup.stdio(call("nope", serde_json::json!({})));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert!(unknown["error"]["message"].as_str().unwrap().contains("unknown tool `nope`"));

    let command = setup.stdio(call("file-stats", serde_json::json!({ "args": ["/"] })));
    assert_eq!(command["structured"]["exit_code"], 1, "nothing granted: {command}");

    // A narrowing in _meta lowers the grant; a widening is refused.
    let mut narrowed = call("probe", serde_json::json!({ "action": "sleep", "seconds": 2 }));
    narrowed["meta"] = serde_json::json!({ "toolcell/narrowing": { "timeout": "300ms" } });
    let narrowed = setup.stdio(narrowed);
    assert_eq!(narrowed["text"][0], "timeout limit of 300ms exceeded");
    let mut widened = call("probe", serde_json::json!({ "action": "echo" }));
    widened["meta"] = serde_json::json!({ "toolcell/narrowing": { "memory": "1GiB" } });
    let widened = setup.stdio(widened);
    assert!(widened["text"][0].as_str().unwrap().contains("would widen the grant"), "{widened}");

    // Every call is a task for the local user, its events tagged with the MCP request id.
    let events = setup.audit();
    let opened: Vec<_> = events.iter().filter(|e| e["event"] == "task_opened").collect();
    assert!(opened.iter().all(|e| e["principal"].as_str().unwrap().starts_with("local:")), "{opened:?}");
    // (Checkpoints seal the chain of every task; they belong to none.)
    let of_tasks = events.iter().filter(|e| e["event"] != "task_refused" && e["event"] != "checkpoint");
    assert!(of_tasks.clone().all(|e| e["request"].is_string()), "{events:?}");
}

#[test]
fn progress_is_reported_and_a_cancelled_call_is_torn_down() {
    let setup = Setup::new();
    let progress = setup.stdio(serde_json::json!({
        "do": "progress", "tool": "probe", "arguments": { "action": "sleep", "seconds": 3 }
    }));
    assert_eq!(progress["result"]["structured"], serde_json::json!({ "slept": 3 }));
    assert!(progress["progress"].as_array().unwrap().len() >= 2, "{progress}");

    let cancelled = setup.stdio(serde_json::json!({
        "do": "cancel", "tool": "probe", "arguments": { "action": "sleep", "seconds": 15 }, "after": 1.0
    }));
    assert_eq!(cancelled["cancelled"], true);
    let events = setup.audit();
    let ended: Vec<_> = events.iter().filter(|e| e["event"] == "invocation_ended").collect();
    let last = ended.last().unwrap();
    assert_eq!(last["outcome"], "cancelled", "{ended:?}");
    assert!(last["duration_ms"].as_u64().unwrap() < 10_000, "the call ran on after the cancel: {last}");
    assert!(events.iter().any(|e| e["event"] == "task_closed" && e["request"] == last["request"]));
}

#[test]
fn a_changed_policies_dir_is_announced_and_served() {
    let setup = Setup::new();
    let policies = setup.policies();
    let watched = setup.stdio(serde_json::json!({
        "do": "watch",
        "rename_from": policies.join("word-count.toml"),
        "rename_to": policies.join("word-count.disabled"),
    }));
    assert_eq!(watched["notified"], true, "{watched}");
    assert_eq!(watched["before"], serde_json::json!(["file-stats", "probe", "word-count"]));
    assert_eq!(watched["after"], serde_json::json!(["file-stats", "probe"]));
}

#[test]
fn http_serves_with_tokens_and_refuses_bad_tokens_origins_and_overload() {
    let setup = Setup::new();
    let token = "test-token-0123456789abcdef";
    std::fs::write(setup.dir.path().join("token"), token).unwrap();
    let server = setup.http_server(
        "[serve]\nmax_concurrent_calls = 2\nmax_request_body = \"64KiB\"\n\
         [[serve.tokens]]\nprincipal = \"agent:ci\"\ntoken = { file = \"token\" }\n",
    );
    let ok = setup.http(&server, call("word-count", serde_json::json!({ "text": "a b" })), Some(token), None);
    assert_eq!(ok["structured"]["words"], 2, "{ok}");
    let opened = setup.audit().into_iter().find(|e| e["event"] == "task_opened").unwrap();
    assert_eq!(opened["principal"], "agent:ci");
    let audit = std::fs::read_to_string(setup.dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(token), "the bearer token is in the audit log");

    let bad = setup.http(&server, serde_json::json!({ "do": "list" }), Some("wrong-token-0123456789"), None);
    assert!(bad["failed"].is_string(), "a bad token must be refused: {bad}");
    let none = setup.http(&server, serde_json::json!({ "do": "list" }), None, None);
    assert!(none["failed"].is_string(), "no token must be refused: {none}");
    let origin = setup.http(&server, serde_json::json!({ "do": "list" }), Some(token), Some("http://evil.example"));
    assert!(origin["failed"].is_string(), "a foreign Origin must be refused: {origin}");

    // Two calls at once are the cap: the others are told so, not queued.
    let busy = setup.http(
        &server,
        serde_json::json!({ "do": "concurrent", "tool": "probe", "arguments": { "action": "sleep", "seconds": 2 }, "calls": 4 }),
        Some(token),
        None,
    );
    let outcomes = busy["outcomes"].as_array().unwrap();
    let refused = outcomes
        .iter()
        .filter(|o| o["error"]["message"].as_str().is_some_and(|m| m.contains("max_concurrent_calls")))
        .count();
    let served = outcomes.iter().filter(|o| o["structured"]["slept"] == 2).count();
    assert_eq!((served, refused), (2, 2), "{busy}");
}

#[test]
fn http_refuses_a_body_over_the_cap_and_a_foreign_host() {
    let setup = Setup::new();
    let server = setup.http_server("[serve]\nmax_request_body = \"1KiB\"\n");
    let big = call("word-count", serde_json::json!({ "text": "x".repeat(4096) }));
    let refused = setup.http(
        &server,
        serde_json::json!({ "do": "call", "tool": big["tool"], "arguments": big["arguments"] }),
        None,
        None,
    );
    assert!(refused["failed"].is_string() || refused["error"].is_object(), "{refused}");
    // Raw HTTP: the status says which rule refused.
    let address = server.url.trim_start_matches("http://").trim_end_matches("/mcp").to_owned();
    let send = |host: &str, body: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "POST /mcp HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(send(&address, &"x".repeat(2048)).starts_with("HTTP/1.1 413"));
    assert!(send("evil.example", "{}").starts_with("HTTP/1.1 403"));
}

#[test]
fn http_on_a_non_loopback_address_needs_tokens() {
    let setup = Setup::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
    command.args(["serve", "--http", "0.0.0.0:0", "--policies"]).arg(setup.policies());
    setup.env(&mut command);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without authentication") && stderr.contains("[serve] tokens"), "{stderr}");
}

#[test]
fn a_plain_component_is_one_tool_per_function() {
    let setup = Setup::new();
    std::fs::write(
        setup.policies().join("calc.toml"),
        format!(
            "[tool]\nname = \"calc\"\nowner = \"tests\"\npurpose = \"Arithmetic and geometry\"\n\
             review_by = 2099-01-01\ncomponent = \"{}\"\n",
            guests::PLAIN_CALC
        ),
    )
    .unwrap();
    let listed = setup.stdio(serde_json::json!({ "do": "list" }));
    let tools = listed["tools"].as_object().unwrap();
    assert!(tools.contains_key("calc.add") && tools.contains_key("calc.geometry.midpoint"), "{listed}");
    assert_eq!(tools["calc.add"]["inputSchema"]["properties"]["a"]["maximum"], 255);
    assert!(tools["calc.add"]["description"].as_str().unwrap().contains("add: func(a: u8, b: u8) -> u16"));
    let midpoint = setup
        .stdio(call("calc.geometry.midpoint", serde_json::json!({ "a": { "x": 0, "y": 0 }, "b": { "x": 2, "y": 4 } })));
    assert_eq!(midpoint["structured"], serde_json::json!({ "result": { "x": 1, "y": 2 } }), "{midpoint}");
    let bad = setup.stdio(call("calc.add", serde_json::json!({ "a": 1000, "b": 1 })));
    assert_eq!(bad["isError"], true);
    assert!(bad["text"][0].as_str().unwrap().contains("`a`: 1000 is outside 0..=255"), "{bad}");
}

/// One HTTP/1.1 request to the server behind `url` (`http://HOST:PORT/mcp`),
/// by hand, so a test controls every header; returns status, headers
/// (lowercase names) and body.
pub(super) fn http_request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

#[test]
fn http_publishes_jwks_and_says_a_token_is_active_only_while_its_call_runs() {
    let setup = Setup::new();
    let (api, seen) = crate::common::recording_api();
    std::fs::write(
        setup.policies().join("api.toml"),
        format!(
            "[tool]\nname = \"api\"\nowner = \"tests\"\npurpose = \"calls an API with an injected token\"\n\
             review_by = 2099-01-01\ncomponent = \"{}\"\n\n[[egress]]\nurl = \"http://127.0.0.1:{api}/*\"\n\n\
             [[credentials]]\nname = \"api\"\nprovider = \"issuer\"\nscopes = [\"read\"]\naudience = \"https://api.test\"\n\
             inject = {{ egress = \"http://127.0.0.1:{api}/*\" }}\n",
            guests::PROBE_TOOL
        ),
    )
    .unwrap();
    let secret = "resource-server-secret-0123456789";
    std::fs::write(setup.dir.path().join("rs-secret"), secret).unwrap();
    let server = setup.http_server(
        "plaintext_credential_hosts = [\"127.0.0.1\"]\n\n[serve]\n\
         introspection_clients = [{ client_id = \"rs\", secret = { file = \"rs-secret\" } }]\n",
    );
    // The public keys, for anyone verifying signatures.
    let (status, _, body) = http_request(&server.url, "GET", "/.well-known/jwks.json", &[], "");
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP", "{jwks}");

    use base64::Engine as _;
    let basic = |id: &str, secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    };
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let introspect = |token: &str, auth: Option<String>| {
        let mut headers: Vec<(&str, &str)> = form.to_vec();
        let auth = auth.unwrap_or_default();
        if !auth.is_empty() {
            headers.push(("authorization", &auth));
        }
        let (status, _, body) = http_request(&server.url, "POST", "/introspect", &headers, &format!("token={token}"));
        (status, serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default())
    };
    // Only configured resource servers may ask.
    assert_eq!(introspect("x", None).0, 401);
    assert_eq!(introspect("x", Some(basic("rs", "not-the-secret-0123456789"))).0, 401);
    assert_eq!(introspect("x", Some(basic("other", secret))).0, 401);
    assert_eq!(introspect("not-a-token", Some(basic("rs", secret))), (200, serde_json::json!({ "active": false })));

    // A call that sends its token to the API, then keeps running a while.
    let scenario = call(
        "api",
        serde_json::json!({
            "action": "http", "method": "GET", "url": format!("http://127.0.0.1:{api}/x"),
            "then": { "action": "sleep", "seconds": 3 },
        }),
    );
    let client = std::thread::scope(|scope| {
        let running = scope.spawn(|| setup.http(&server, scenario, None, None));
        let started = std::time::Instant::now();
        let token = loop {
            let authorization = seen
                .lock()
                .unwrap()
                .first()
                .and_then(|head| crate::common::request_header(head, "authorization").map(str::to_owned));
            if let Some(value) = authorization {
                break value.strip_prefix("Bearer ").unwrap().to_owned();
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "the API never got the token");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let (status, live) = introspect(&token, Some(basic("rs", secret)));
        assert_eq!(status, 200);
        assert_eq!(live["active"], true, "{live}");
        assert_eq!(live["aud"], "https://api.test");
        assert_eq!(live["scope"], "read");
        assert!(live["sub"].as_str().unwrap().starts_with("spiffe://"), "{live}");
        assert!(live["act"]["sub"].as_str().unwrap().starts_with("local:"), "{live}");
        (running.join().unwrap(), token)
    });
    let (result, token) = client;
    assert_eq!(result["isError"], false, "{result}");
    // The call has ended: the same token is now inactive, to any verifier that asks.
    assert_eq!(introspect(&token, Some(basic("rs", secret))), (200, serde_json::json!({ "active": false })));
    let audit = std::fs::read_to_string(setup.dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(&token) && !audit.contains(secret));
}

#[test]
fn http_sessions_belong_to_their_principal_and_calls_are_capped_per_principal() {
    let setup = Setup::new();
    let (alice, bob) = ("alice-token-0123456789abcdef", "bob-token-0123456789abcdef");
    std::fs::write(setup.dir.path().join("alice"), alice).unwrap();
    std::fs::write(setup.dir.path().join("bob"), bob).unwrap();
    let server = setup.http_server(
        "[serve]\nmax_calls_per_principal = 1\n\
         [[serve.tokens]]\nprincipal = \"alice\"\ntoken = { file = \"alice\" }\n\
         [[serve.tokens]]\nprincipal = \"bob\"\ntoken = { file = \"bob\" }\n",
    );
    let json = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")];
    let as_who = |token: &'static str, session: Option<&str>| -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = json.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        headers.push(("authorization".into(), format!("Bearer {token}")));
        if let Some(session) = session {
            headers.push(("mcp-session-id".into(), session.to_owned()));
        }
        headers
    };
    let send = |method: &str, headers: Vec<(String, String)>, body: &str| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        http_request(&server.url, method, "/mcp", &headers, body)
    };
    let (status, headers, _) = send("POST", as_who(alice, None), INITIALIZE);
    assert_eq!(status, 200);
    let session = header(&headers, "mcp-session-id").expect("a session id").to_owned();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    // Bob cannot use, resume or delete Alice's session: to him it does not exist.
    assert_eq!(send("POST", as_who(bob, Some(&session)), list).0, 404);
    assert_eq!(send("GET", as_who(bob, Some(&session)), "").0, 404);
    assert_eq!(send("DELETE", as_who(bob, Some(&session)), "").0, 404);
    // A session id toolcell never handed out is refused, whoever presents it.
    assert_eq!(send("POST", as_who(alice, Some("made-up-session-id")), list).0, 404);
    // Alice still can.
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert!(send("POST", as_who(alice, Some(&session)), initialized).0 < 300);
    let (status, _, body) = send("POST", as_who(alice, Some(&session)), list);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("word-count"), "{body}");

    // One call at a time per principal: Alice's second is refused by name, Bob is not held up.
    let sleep = serde_json::json!({ "do": "concurrent", "tool": "probe", "arguments": { "action": "sleep", "seconds": 2 }, "calls": 2 });
    let (busy, other) = std::thread::scope(|scope| {
        let busy = scope.spawn(|| setup.http(&server, sleep.clone(), Some(alice), None));
        std::thread::sleep(std::time::Duration::from_millis(500));
        let other = setup.http(&server, call("word-count", serde_json::json!({ "text": "a b" })), Some(bob), None);
        (busy.join().unwrap(), other)
    });
    let outcomes = busy["outcomes"].as_array().unwrap();
    let refused = outcomes
        .iter()
        .filter(|o| {
            o["error"]["message"].as_str().is_some_and(|m| m.contains("principal `alice` is running its limit of 1"))
        })
        .count();
    let served = outcomes.iter().filter(|o| o["structured"]["slept"] == 2).count();
    assert_eq!((served, refused), (1, 1), "{busy}");
    assert_eq!(other["structured"]["words"], 2, "{other}");
}

#[test]
fn http_drops_a_client_that_sends_its_request_too_slowly() {
    use std::io::{Read, Write};
    let setup = Setup::new();
    let server = setup.http_server("[serve]\nheader_read_timeout = \"1s\"\n");
    let authority = server.url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let mut slow = std::net::TcpStream::connect(&authority).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the slow client was kept");
    // An idle connection is dropped the same way, and the server keeps serving.
    let mut idle = std::net::TcpStream::connect(&authority).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let _ = idle.read_to_end(&mut rest);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "an idle connection was kept");
    let (status, _, _) = http_request(&server.url, "GET", "/.well-known/jwks.json", &[], "");
    assert_eq!(status, 200);
}

#[test]
fn serve_stops_on_sigterm_after_revoking_what_running_calls_hold() {
    use std::io::Write;
    use toolcell_test_guests::openbao::openbao;
    let bao = openbao();
    let setup = Setup::new();
    std::fs::write(setup.dir.path().join("bao-token"), &bao.root_token).unwrap();
    let config = setup.dir.path().join("toolcell.toml");
    std::fs::write(
        &config,
        format!(
            "[openbao]\naddress = \"{}\"\ntoken = {{ file = \"bao-token\" }}\n\n[[openbao.secrets]]\naudience = \"pki:tool\"\n\
             path = \"pki/issue/tool\"\ndata = {{ common_name = \"{{task}}.toolcell.test\", ttl = \"{{ttl}}\" }}\nfield = \"certificate\"\n",
            bao.address
        ),
    )
    .unwrap();
    std::fs::write(
        setup.policies().join("cert.toml"),
        format!(
            "[tool]\nname = \"cert\"\nowner = \"tests\"\npurpose = \"holds a certificate\"\nreview_by = 2099-01-01\n\
             component = \"{}\"\n\n[[credentials]]\nname = \"cert\"\nprovider = \"openbao\"\nscopes = [\"tool-pki\"]\n\
             audience = \"pki:tool\"\nexposure = \"reveal\"\n\n[limits]\ntimeout = \"60s\"\n",
            guests::PROBE_TOOL
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
    command
        .arg("--config")
        .arg(&config)
        .arg("--audit-log")
        .arg(setup.dir.path().join("audit.jsonl"))
        .args(["serve", "--policies"])
        .arg(setup.policies())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    setup.env(&mut command);
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(stdin, "{INITIALIZE}").unwrap();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
    let arguments =
        serde_json::json!({ "action": "acquire", "name": "cert", "then": { "action": "sleep", "seconds": 60 } });
    let request = serde_json::json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "cert", "arguments": arguments } });
    writeln!(stdin, "{request}").unwrap();
    let started = std::time::Instant::now();
    let (lease, accessor) = loop {
        let events = setup.audit();
        let id = |name: &str| {
            events
                .iter()
                .find(|e| e["event"] == "credential_minted" && e["credential"] == name)
                .map(|e| e["id"].as_str().unwrap().to_owned())
        };
        if let (Some(lease), Some(accessor)) = (id("cert"), id("task token")) {
            break (lease, accessor);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no lease was minted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // The running call is answered (cancelled), and the server exits 143.
    let mut answer = String::new();
    stdout.read_line(&mut answer).unwrap();
    assert!(answer.contains("\"id\":2") && answer.contains("shutting down"), "{answer}");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "toolcell serve did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(!bao.lease_exists(&lease), "the lease outlived the server");
    assert!(!bao.token_exists(&accessor), "the task token outlived the server");
    let events = setup.audit();
    let ended = events.iter().find(|e| e["event"] == "invocation_ended").unwrap();
    assert_eq!(ended["outcome"], "cancelled");
    assert!(events.iter().any(|e| e["event"] == "task_closed"));
}
