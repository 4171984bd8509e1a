//! `toolcell serve --http` as an OAuth 2.1 resource server, with a real
//! authorization server (oidc-provider, `testing/oauth/authorization-server.mjs`)
//! and the official Python MCP client: discovery (RFC 9728), client
//! credentials, a person's sign-in and an agent's token exchange, scopes
//! per tool, introspection of opaque tokens, the delegation chain in the
//! tool's credential and the audit, every kind of bad token, key rotation
//! and an authorization server that goes down.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use toolcell_test_guests as guests;
use toolcell_test_guests::oauth::AuthorizationServer;

use super::mcp::{client, http_request, python, run_client};
use crate::common::{audit_in, recording_api, request_header};

const OPS_TOKEN: &str = "ops-static-token-0123456789";

/// A served policies directory (word-count, and the probe as
/// `github-issues` with an issuer token injected into its API calls) and
/// the authorization server its callers get tokens from.
struct Protected {
    dir: tempfile::TempDir,
    auth: AuthorizationServer,
    api_port: u16,
    api_seen: Arc<Mutex<Vec<String>>>,
}

impl Protected {
    fn new() -> Protected {
        let dir = tempfile::tempdir().unwrap();
        let auth = AuthorizationServer::start(&dir.path().join("as-keys.json"));
        let (api_port, api_seen) = recording_api();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let header = |name: &str, component: &str| {
            format!(
                "[tool]\nname = \"{name}\"\nowner = \"tests\"\npurpose = \"{name} for the OAuth tests\"\n\
                 review_by = 2099-01-01\ncomponent = \"{component}\"\n"
            )
        };
        std::fs::write(policies.join("word-count.toml"), header("word-count", guests::WORD_COUNT)).unwrap();
        std::fs::write(
            policies.join("github-issues.toml"),
            format!(
                "{}\n[[egress]]\nurl = \"http://api.test:{api_port}/*\"\nmethods = [\"GET\"]\naddresses = [\"127.0.0.1\"]\n\n\
                 [[credentials]]\nname = \"api\"\nprovider = \"issuer\"\nscopes = [\"issues:read\"]\n\
                 audience = \"http://api.test\"\nmax_ttl = \"1m\"\n\
                 inject = {{ egress = \"http://api.test:{api_port}/*\", header = \"Authorization\", format = \"Bearer {{token}}\" }}\n",
                header("github-issues", guests::PROBE_TOOL)
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("ops.token"), OPS_TOKEN).unwrap();
        std::fs::write(dir.path().join("as.secret"), &auth.client_secret).unwrap();
        Protected { dir, auth, api_port, api_seen }
    }

    /// The runtime config: static `ops` token beside `[serve.oauth]`, with `oauth_extra` in that section.
    fn config(&self, oauth_extra: &str) -> PathBuf {
        let path = self.dir.path().join("toolcell.toml");
        std::fs::write(
            &path,
            format!(
                "hosts = {{ \"api.test\" = [\"127.0.0.1\"] }}\nplaintext_credential_hosts = [\"api.test\"]\n\n\
                 [serve]\nadmin_socket = \"admin.sock\"\n\n[[serve.tokens]]\nprincipal = \"ops\"\n\
                 token = {{ file = \"ops.token\" }}\n\n[serve.oauth]\nissuer = \"{}\"\n\
                 tool_scopes = {{ \"github-issues\" = \"tools:github\", \"*\" = \"tools:call\" }}\n{oauth_extra}\n\n\
                 [serve.oauth.introspection]\nclient_id = \"toolcell\"\nclient_secret = {{ file = \"as.secret\" }}\n",
                self.auth.issuer
            ),
        )
        .unwrap();
        path
    }

    fn serve(&self, oauth_extra: &str) -> Serving {
        let mut command = Command::new(env!("CARGO_BIN_EXE_toolcell"));
        command
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
            .env_remove("RUST_LOG")
            .arg("--config")
            .arg(self.config(oauth_extra))
            .arg("--audit-log")
            .arg(self.dir.path().join("audit.jsonl"))
            .args(["serve", "--http", "127.0.0.1:0", "--policies"])
            .arg(self.dir.path().join("policies"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        let url = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "toolcell serve --http exited before serving:\n{said}");
            said.push_str(&line);
            if let Some(url) = line.trim().strip_prefix("toolcell: serving MCP on ") {
                break url.to_owned();
            }
        };
        std::thread::spawn(move || for _ in stderr.lines() {});
        Serving { child, url, said }
    }

    /// The Python MCP client with `env` set.
    fn client(&self, serving: &Serving, scenario: serde_json::Value, env: &[(&str, String)]) -> serde_json::Value {
        let mut command = Command::new(python());
        command
            .arg(client())
            .arg(scenario.to_string())
            .env("MCP_TRANSPORT", "http")
            .env("MCP_URL", &serving.url)
            .env_remove("RUST_LOG");
        for (name, value) in env {
            command.env(name, value);
        }
        run_client(command)
    }

    /// The SDK's own OAuth flow as `client_id`, asking for `scope`.
    fn as_client(
        &self,
        serving: &Serving,
        scenario: serde_json::Value,
        client_id: &str,
        scope: &str,
    ) -> serde_json::Value {
        let oauth = serde_json::json!({
            "issuer": self.auth.issuer, "client_id": client_id,
            "client_secret": self.auth.client_secret, "scope": scope,
        });
        self.client(serving, scenario, &[("MCP_OAUTH", oauth.to_string())])
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        audit_in(self.dir.path())
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }
}

struct Serving {
    child: Child,
    url: String,
    said: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn list() -> serde_json::Value {
    serde_json::json!({ "do": "list" })
}

fn call(tool: &str, arguments: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "do": "call", "tool": tool, "arguments": arguments })
}

fn tools(outcome: &serde_json::Value) -> Vec<String> {
    let listed = outcome["tools"].as_object().unwrap_or_else(|| panic!("no tools listed: {outcome}"));
    let mut names: Vec<String> = listed.keys().cloned().collect();
    names.sort();
    names
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// A POST of an `initialize` to the MCP endpoint with `authorization`.
fn initialize(serving: &Serving, authorization: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let mut headers = vec![("content-type", "application/json"), ("accept", "application/json, text/event-stream")];
    let bearer = authorization.map(|token| format!("Bearer {token}"));
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    http_request(&serving.url, "POST", "/mcp", &headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

#[test]
fn an_mcp_client_discovers_authorizes_and_sees_the_tools_its_scopes_allow() {
    let protected = Protected::new();
    let serving = protected.serve("");
    let resource = serving.url.clone();

    // No token: 401, and where to learn how to get one (RFC 9728, MCP authorization).
    let (status, headers, _) = initialize(&serving, None);
    assert_eq!(status, 401);
    let challenge = header(&headers, "www-authenticate");
    let metadata_url = resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp");
    assert_eq!(challenge, format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"tools:call\""));
    let (status, _, body) = http_request(&serving.url, "GET", "/.well-known/oauth-protected-resource/mcp", &[], "");
    assert_eq!(status, 200);
    let metadata: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["resource"], resource.as_str());
    assert_eq!(metadata["authorization_servers"], serde_json::json!([protected.auth.issuer]));
    assert_eq!(metadata["scopes_supported"], serde_json::json!(["tools:call", "tools:github"]));
    assert_eq!(metadata["bearer_methods_supported"], serde_json::json!(["header"]));

    // The SDK finds the authorization server from that and gets a token
    // for this resource with the scope the challenge named (the least).
    let listed = protected.as_client(&serving, list(), "research-agent", "tools:call");
    assert_eq!(tools(&listed), ["word-count"], "{listed}");
    assert_eq!(listed["oauth"]["resource"], resource.as_str());
    assert_eq!(listed["oauth"]["token_endpoint"], format!("{}/token", protected.auth.issuer));
    // Calling a tool that needs more gets a 403 naming its scope; the SDK
    // steps up (asks for both scopes) and the call goes through.
    let stepped = protected.as_client(
        &serving,
        call("github-issues", serde_json::json!({"action": "echo"})),
        "research-agent",
        "tools:call",
    );
    assert_eq!(stepped["isError"], false, "{stepped}");
    // reader-agent may not have tools:github: its step-up is refused at the
    // authorization server, and the call never runs.
    let refused = protected.as_client(
        &serving,
        call("github-issues", serde_json::json!({"action": "echo"})),
        "reader-agent",
        "tools:call",
    );
    assert!(refused["failed"].as_str().is_some_and(|f| f.contains("invalid_scope")), "{refused}");

    // tools/list differs by scope.
    let wide = protected.auth.client_token("research-agent", "tools:call tools:github", &resource);
    let listed = protected.client(&serving, list(), &[("MCP_TOKEN", wide)]);
    assert_eq!(tools(&listed), ["github-issues", "word-count"], "{listed}");
    let token = protected.auth.client_token("reader-agent", "tools:call", &resource);
    let listed = protected.client(&serving, list(), &[("MCP_TOKEN", token.clone())]);
    assert_eq!(tools(&listed), ["word-count"], "{listed}");
    // At the HTTP layer a call without the scope is a 403 naming it (step-up).
    let (_, headers, _) = initialize(&serving, Some(&token));
    let session = header(&headers, "mcp-session-id").to_owned();
    let bearer = format!("Bearer {token}");
    let (status, headers, _) = http_request(
        &serving.url,
        "POST",
        "/mcp",
        &[
            ("authorization", &bearer),
            ("mcp-session-id", &session),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"github-issues","arguments":{"action":"echo"}}}"#,
    );
    assert_eq!(status, 403);
    let challenge = header(&headers, "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"tools:github\""),
        "{challenge}"
    );

    // An opaque token is introspected at the authorization server.
    let listed = protected.as_client(&serving, list(), "opaque-agent", "tools:call");
    assert_eq!(tools(&listed), ["word-count"], "{listed}");
    let opaque = protected.auth.client_token("opaque-agent", "tools:call", &resource);
    assert!(!opaque.contains('.'), "expected an opaque token: {opaque}");
    let counted =
        protected.client(&serving, call("word-count", serde_json::json!({"text": "x"})), &[("MCP_TOKEN", opaque)]);
    assert_eq!(counted["isError"], false, "{counted}");

    // The static token still works beside OAuth, and sees every tool.
    let listed = protected.client(&serving, list(), &[("MCP_TOKEN", OPS_TOKEN.to_owned())]);
    assert_eq!(tools(&listed), ["github-issues", "word-count"], "{listed}");

    // Each task's principal is the token's subject; a client acting for itself has no actor.
    let opened: Vec<(String, String, Option<String>)> = protected
        .audit()
        .iter()
        .filter(|e| e["event"] == "task_opened")
        .map(|e| {
            let text = |name: &str| e[name].as_str().map(str::to_owned);
            (text("principal").unwrap(), text("tool").unwrap(), text("actor"))
        })
        .collect();
    let expected = [("research-agent", "github-issues"), ("opaque-agent", "word-count")];
    assert_eq!(
        opened,
        expected.map(|(p, t)| (p.to_owned(), t.to_owned(), None)),
        "reader-agent's call must not have opened a task"
    );
    assert!(!serving.said.contains("warning"), "{}", serving.said);
}

#[test]
fn an_agent_acting_for_a_person_carries_the_chain_into_the_tools_credential_and_the_audit() {
    let protected = Protected::new();
    let serving = protected.serve("");
    // Alice signs in at the portal; research-agent exchanges her token and its own for one that acts for her.
    let output = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testing/mcp/delegate.py"))
        .args([&protected.auth.issuer, &serving.url, "alice", "research-agent", &protected.auth.client_secret])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tokens: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let delegated = tokens["delegated"].as_str().unwrap().to_owned();
    assert_eq!(claims(&delegated)["act"], serde_json::json!({"sub": "research-agent"}));

    let url = format!("http://api.test:{}/repos/acme/app/issues", protected.api_port);
    let outcome = protected.client(
        &serving,
        call("github-issues", serde_json::json!({"action": "http", "method": "GET", "url": url})),
        &[("MCP_TOKEN", delegated.clone())],
    );
    assert_eq!(outcome["isError"], false, "{outcome}");

    // The API got toolcell's own token for the workload, acting for alice, through the agent.
    let seen = protected.api_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let injected = request_header(&seen[0], "authorization").unwrap().strip_prefix("Bearer ").unwrap();
    let issued = claims(injected);
    assert!(issued["sub"].as_str().unwrap().contains("/tool/github-issues/task/"), "{issued}");
    assert_eq!(issued["act"], serde_json::json!({"sub": "alice", "act": {"sub": "research-agent"}}));
    // No token passthrough: the caller's token reached neither the API nor the audit.
    for token in tokens.as_object().unwrap().values() {
        let token = token.as_str().unwrap();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!seen[0].contains(signature), "a caller's token reached the tool's API");
        assert!(!protected.audit_text().contains(signature), "a caller's token reached the audit");
    }

    // Every event of the task names alice and her agent.
    let events: Vec<serde_json::Value> =
        protected.audit().into_iter().filter(|e| e["tool"] == "github-issues").collect();
    assert!(events.iter().any(|e| e["event"] == "credential_minted"), "{events:?}");
    for event in &events {
        assert_eq!(
            (event["principal"].as_str(), event["actor"].as_str()),
            (Some("alice"), Some("research-agent")),
            "{event}"
        );
    }

    // Her own sign-in token works too: the portal is then her actor.
    let user = tokens["user"].as_str().unwrap().to_owned();
    let counted =
        protected.client(&serving, call("word-count", serde_json::json!({"text": "x"})), &[("MCP_TOKEN", user)]);
    assert_eq!(counted["isError"], false, "{counted}");
    let last = protected.audit().into_iter().rfind(|e| e["event"] == "task_opened").unwrap();
    assert_eq!((last["principal"].as_str(), last["actor"].as_str()), (Some("alice"), Some("portal")));
}

#[test]
fn bad_tokens_rotation_and_an_unreachable_authorization_server_are_refused_and_audited() {
    let mut protected = Protected::new();
    // No skew, so a one-second-old expiry counts; keys trusted for 3s; a new kid may fetch at once.
    let serving = protected.serve("leeway = \"0s\"\njwks_cache = \"3s\"\njwks_min_refresh = \"0s\"");
    let resource = serving.url.clone();
    let good = protected.auth.client_token("research-agent", "tools:call", &resource);
    assert_eq!(initialize(&serving, Some(&good)).0, 200);

    let parts: Vec<&str> = good.split('.').collect();
    let jws_header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let with_header = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut header = jws_header.clone();
        edit(&mut header);
        format!("{}.{}.{}", B64.encode(header.to_string()), parts[1], parts[2])
    };
    let brief = protected.auth.client_token("brief-agent", "tools:call", &resource);
    let impostor = protected.auth.impostor();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            protected.auth.client_token("research-agent", "tools:call", "http://127.0.0.1:1/mcp"),
            "audience",
        ),
        ("wrong issuer, same keys", impostor.client_token("research-agent", "tools:call", &resource), "issuer"),
        ("alg none", format!("{}.{}.", B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#), parts[1]), "algorithm"),
        ("HS256", with_header(&|h| h["alg"] = "HS256".into()), "algorithm"),
        ("unknown kid", with_header(&|h| h["kid"] = "not-a-key".into()), "unknown_key"),
        ("forged signature", format!("{}.{}.{}", parts[0], parts[1], B64.encode([7u8; 256])), "signature"),
        ("oversized", format!("{good}{}", "A".repeat(9000)), "oversized"),
        ("an unknown opaque token", "opaque-but-never-issued-0123456789".to_owned(), "inactive"),
    ];
    drop(impostor);
    // brief-agent's token lived one second.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cases: Vec<(&str, String, &str)> = cases.into_iter().chain([("expired", brief, "expired")]).collect();
    for (name, token, reason) in &cases {
        let (status, headers, body) = initialize(&serving, Some(token));
        assert_eq!(status, 401, "{name}: {body}");
        let challenge = header(&headers, "www-authenticate");
        assert!(challenge.contains("error=\"invalid_token\""), "{name}: {challenge}");
        let refusal = protected.audit().into_iter().rfind(|e| e["event"] == "caller_refused").unwrap();
        assert_eq!(refusal["reason"], *reason, "{name}: {refusal}");
    }

    // Rotation: the server publishes a new key beside the old, then only the new one.
    protected.auth.restart(Some("add"));
    let rotated = protected.auth.client_token("research-agent", "tools:call", &resource);
    assert_ne!(claims(&rotated)["jti"], claims(&good)["jti"]);
    assert_eq!(initialize(&serving, Some(&rotated)).0, 200, "a token signed with the new key");
    assert_eq!(initialize(&serving, Some(&good)).0, 200, "the old key is still published");
    protected.auth.restart(Some("replace"));
    let newest = protected.auth.client_token("research-agent", "tools:call", &resource);
    assert_eq!(initialize(&serving, Some(&newest)).0, 200, "a token signed with the newest key");
    let (status, _, body) = initialize(&serving, Some(&good));
    assert_eq!(status, 401, "a key that rotated out still verified: {body}");
    assert!(body.contains("does not publish"), "{body}");

    // The authorization server goes down: cached keys serve until their 3s are up, then nothing is accepted.
    protected.auth.stop();
    assert_eq!(initialize(&serving, Some(&newest)).0, 200, "cached keys keep working");
    std::thread::sleep(std::time::Duration::from_millis(3300));
    let (status, _, body) = initialize(&serving, Some(&newest));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no token is accepted"), "{body}");
    protected.auth.restart(None);
    assert_eq!(initialize(&serving, Some(&newest)).0, 200, "accepted again once the server is back");

    // No refusal, log line or audit event holds a token.
    let audit = protected.audit_text();
    for (name, token, _) in &cases {
        for part in token.split('.').filter(|p| p.len() > 16) {
            assert!(!audit.contains(part), "{name}: the audit holds the token");
        }
    }
    // The server kept serving throughout.
    let listed = protected.client(&serving, list(), &[("MCP_TOKEN", OPS_TOKEN.to_owned())]);
    assert_eq!(tools(&listed).len(), 2);
}
