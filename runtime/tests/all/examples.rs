//! The example tools under toolcell, from their manifests in `policies/`:
//! `word-count` in Rust, Python (componentize-py) and JavaScript (jco) gives
//! the same answers under the same rules, and the other examples do what
//! their manifests allow and nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Harness, guests};
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

/// A policy's manifest with the tests' own build of its component.
fn example(policy_file: &str, component: &str) -> Manifest {
    Manifest { component: PathBuf::from(component), ..policy(policy_file) }
}

fn output(result: &CallResult) -> serde_json::Value {
    match result {
        CallResult::Output(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected output, got {other:?}"),
    }
}

#[tokio::test]
async fn fs_search_finds_lines_in_its_directory_and_nothing_outside_it() {
    let h = Harness::new();
    let manifest = example("fs-search.toml", guests::FS_SEARCH);
    let report = h.call(manifest.clone(), Call::tool(r#"{"query":"AGENTS"}"#)).await.unwrap();
    let found = output(&report.result);
    assert_eq!(found["files_searched"], 2);
    assert_eq!(found["matches"][0]["file"], "/data/threat-model.txt");
    assert_eq!(found["matches"][0]["line"], 1);
    let exact = h.call(manifest.clone(), Call::tool(r#"{"query":"AGENTS","case_sensitive":true}"#)).await.unwrap();
    assert_eq!(output(&exact.result)["matches"], serde_json::json!([]));

    // Outside the one granted directory there is nothing to search.
    for path in ["/data/../..", "/", "/etc", "/data/../../etc"] {
        let input = serde_json::json!({ "query": "root", "path": path }).to_string();
        let report = h.call(manifest.clone(), Call::tool(input)).await.unwrap();
        assert!(matches!(report.result, CallResult::ToolError(ToolError::Denied(_))), "{path}: {:?}", report.result);
    }
    // A symlink planted in a granted directory does not lead out of it.
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(docs.path().join("inside.txt"), "the word secret, inside\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("leak.txt"), "the word secret, outside\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), docs.path().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("leak.txt"), docs.path().join("leak.txt")).unwrap();
    let mut planted = manifest;
    planted.filesystem[0].host = docs.path().canonicalize().unwrap();
    let report = h.call(planted, Call::tool(r#"{"query":"secret"}"#)).await.unwrap();
    let found = output(&report.result);
    assert_eq!(found["matches"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["matches"][0]["file"], "/data/inside.txt");
}

/// A runtime that resolves `names` to loopback, trusts `ca_pem`, and holds
/// `statics` (audience, secret, the one origin it may go to) as the operator's static secrets.
fn runtime_for(h: &mut Harness, names: &[&str], ca_pem: Option<&str>, statics: &[(&str, &str, &str)]) {
    use toolcell_runtime::credentials::config::{ProviderConfig, SecretSource, StaticSecret};
    let loopback: Vec<std::net::IpAddr> = vec!["127.0.0.1".parse().unwrap()];
    let hosts = names.iter().map(|name| (name.to_string(), loopback.clone())).collect();
    let mut tls_roots = Vec::new();
    if let Some(pem) = ca_pem {
        let path = h.dir.path().join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        tls_roots.push(path);
    }
    let statics = statics
        .iter()
        .map(|(audience, secret, origin)| {
            let file = h.dir.path().join(format!("secret-{}", secret.len()));
            std::fs::write(&file, secret).unwrap();
            StaticSecret {
                audience: audience.to_string(),
                secret: SecretSource::File(file),
                origins: vec![origin.to_string()],
            }
        })
        .collect();
    let config = toolcell_runtime::RuntimeConfig {
        audit_log: Some(h.dir.path().join("audit.jsonl")),
        scratch_root: Some(h.scratch_root()),
        resolver: std::sync::Arc::new(toolcell_runtime::StaticResolver { hosts, fallback: None }),
        tls_roots,
        credentials: ProviderConfig { statics, ..ProviderConfig::default() },
        ..toolcell_runtime::RuntimeConfig::default()
    };
    h.runtime = toolcell_runtime::Runtime::with_engine(h.runtime.engine().clone(), config).unwrap();
}

/// Moves a policy's egress rules (and the credentials bound to them) onto
/// the test server's port, and lets them reach it on loopback.
fn onto_port(manifest: &mut Manifest, port: u16) {
    use toolcell_runtime::policy::credential::Exposure;
    let mut moved = Vec::new();
    for rule in &mut manifest.egress {
        let old = rule.url.clone();
        let authority_end = old.find("://").map(|i| i + 3).and_then(|start| old[start..].find('/').map(|i| start + i));
        let at = authority_end.unwrap_or(old.len());
        let url = format!("{}:{port}{}", &old[..at], &old[at..]);
        let mut replaced = toolcell_runtime::EgressRule::parse(&url).unwrap();
        replaced.methods = rule.methods.clone();
        replaced.addresses = vec!["127.0.0.1".parse().unwrap()];
        *rule = replaced;
        moved.push((old, url));
    }
    for credential in &mut manifest.credentials {
        if let Exposure::Inject(injection) = &mut credential.exposure {
            for bound in &mut injection.egress {
                if let Some((_, url)) = moved.iter().find(|(old, _)| old == bound) {
                    *bound = url.clone();
                }
            }
        }
    }
}

#[tokio::test]
async fn github_issues_lists_and_creates_with_a_token_it_never_sees() {
    use crate::common::http_server::{TestServer, test_ca};
    let ca = test_ca(&["api.github.com"]);
    let server = TestServer::start(Some(ca.server.clone())).await;
    let secret = "ghp_exampleStaticToken0123456789";
    let mut h = Harness::new();
    let api = format!("https://api.github.com:{}", server.port);
    runtime_for(&mut h, &["api.github.com"], Some(&ca.ca_pem), &[("https://api.github.com", secret, &api)]);
    let mut manifest = example("github-issues.toml", guests::GITHUB_ISSUES);
    onto_port(&mut manifest, server.port);

    let list = serde_json::json!({ "action": "list", "owner": "acme", "repo": "tools", "api": api });
    let report = h.call(manifest.clone(), Call::tool(list.to_string())).await.unwrap();
    let listed = output(&report.result);
    assert_eq!(listed["issues"][1]["title"], "Second issue", "{listed}");
    let create = serde_json::json!({
        "action": "create", "owner": "acme", "repo": "tools", "title": "Found by an agent", "body": "details", "api": api,
    });
    let report = h.call(manifest.clone(), Call::tool(create.to_string())).await.unwrap();
    assert_eq!(output(&report.result)["issue"]["title"], "Found by an agent");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/repos/acme/tools/issues"));
    assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("POST", "/repos/acme/tools/issues"));
    for request in &seen {
        assert_eq!(request.header("authorization"), Some(format!("Bearer {secret}").as_str()));
        assert_eq!(request.header("accept"), Some("application/vnd.github+json"));
    }
    let posted: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(posted, serde_json::json!({ "title": "Found by an agent", "body": "details" }));

    // Anything but the issues path shape is refused before it leaves, and
    // names that would rewrite the path are refused by the tool.
    let escape = serde_json::json!({ "action": "list", "owner": "..", "repo": "x", "api": api });
    let report = h.call(manifest.clone(), Call::tool(escape.to_string())).await.unwrap();
    assert!(matches!(report.result, CallResult::ToolError(ToolError::InvalidInput(_))), "{:?}", report.result);
    let other_api = serde_json::json!({ "action": "list", "owner": "a", "repo": "b", "api": format!("{api}/admin") });
    let report = h.call(manifest, Call::tool(other_api.to_string())).await.unwrap();
    assert!(
        matches!(&report.result, CallResult::ToolError(ToolError::Denied(m)) if m.contains("denied by toolcell egress policy")),
        "{:?}",
        report.result
    );
    assert_eq!(server.seen().len(), 2);
    assert!(!h.audit_text().contains(secret), "the token is in the audit log");
}

#[tokio::test]
async fn http_get_fetches_allowed_urls_only() {
    use crate::common::http_server::TestServer;
    let server = TestServer::start(None).await;
    let mut h = Harness::new();
    runtime_for(&mut h, &["api.test"], None, &[]);
    let mut manifest = example("http-get.toml", guests::HTTP_GET);
    let mut rule = toolcell_runtime::EgressRule::parse(&format!("http://api.test:{}/ok", server.port)).unwrap();
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    manifest.egress = vec![rule];
    let fetch = |url: String, max: u32| Call::tool(serde_json::json!({ "url": url, "max_bytes": max }).to_string());
    let report = h.call(manifest.clone(), fetch(format!("http://api.test:{}/ok", server.port), 5)).await.unwrap();
    let fetched = output(&report.result);
    assert_eq!((fetched["status"].as_u64(), fetched["body"].as_str()), (Some(200), Some("hello")));
    assert_eq!(fetched["truncated"], true);
    let report = h.call(manifest, fetch(format!("http://api.test:{}/echo-headers", server.port), 100)).await.unwrap();
    assert!(
        matches!(&report.result, CallResult::ToolError(ToolError::Denied(m)) if m.contains("outside the rule's pattern")),
        "{:?}",
        report.result
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn the_sdk_streams_a_response_body_as_it_arrives() {
    use crate::common::http_server::TestServer;
    let server = TestServer::start(None).await;
    let mut h = Harness::new();
    runtime_for(&mut h, &["api.test"], None, &[]);
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    let mut rule = toolcell_runtime::EgressRule::parse(&format!("http://api.test:{}/*", server.port)).unwrap();
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    manifest.egress = vec![rule];
    let url = format!("http://api.test:{}/chunked?bytes=300000", server.port);
    let input = serde_json::json!({ "action": "stream", "url": url }).to_string();
    let report = h.call(manifest, Call::tool(input)).await.unwrap();
    let streamed = output(&report.result);
    assert_eq!((streamed["status"].as_u64(), streamed["bytes"].as_u64()), (Some(200), Some(300_000)));
    assert!(streamed["chunks"].as_u64().unwrap() > 1, "{streamed}");
}
