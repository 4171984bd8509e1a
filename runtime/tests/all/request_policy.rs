//! Request-time policy and approvals against a real loopback HTTP server:
//! the repository's example policies deny what they should with their ids
//! in the tool's error and the audit trail, counters stop the request that
//! would cross a budget, an approval lets exactly one request through, and
//! no answer is a denial.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::http_server::TestServer;
use crate::common::*;
use toolcell_runtime::request_policy::{PolicyMode, PolicySource, PrincipalAttributes, RequestPolicies};
use toolcell_runtime::{
    ApprovalError, Call, CallReport, EgressRule, InvokeError, Manifest, Runtime, RuntimeConfig, StaticResolver,
    TaskRequest,
};

/// The repository's example policies.
fn examples() -> Vec<PolicySource> {
    PolicySource::read_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap()
}

fn harness(principals: &[(&str, &[&str])], policies: Vec<PolicySource>) -> Harness {
    let mut harness = Harness::new();
    let hosts = HashMap::from([("api.test".to_owned(), vec!["127.0.0.1".parse().unwrap()])]);
    let config = RuntimeConfig {
        audit_log: Some(harness.dir.path().join("audit.jsonl")),
        scratch_root: Some(harness.scratch_root()),
        resolver: Arc::new(StaticResolver { hosts, fallback: None }),
        principals: principals
            .iter()
            .map(|(name, roles)| {
                let roles = roles.iter().map(|r| r.to_string()).collect();
                (name.to_string(), PrincipalAttributes { roles, ..Default::default() })
            })
            .collect(),
        ..RuntimeConfig::default()
    };
    harness.runtime = Runtime::with_engine(harness.runtime.engine().clone(), config).unwrap();
    harness.runtime.set_policies(RequestPolicies::load(&policies, PolicyMode::Ceiling).unwrap());
    harness
}

/// A `name` tool (the probe command) allowed GET and POST to api.test.
fn manifest(name: &str, port: u16) -> Manifest {
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND));
    manifest.name = name.into();
    let mut rule = EgressRule::parse(&format!("http://api.test:{port}/*")).unwrap();
    rule.methods = vec!["GET".into(), "POST".into()];
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    manifest.egress = vec![rule];
    manifest.limits.timeout = secs(20);
    manifest
}

fn request(method: &str, port: u16, extra: &[&str]) -> Call {
    let mut args = vec!["http".to_owned(), method.to_owned(), format!("http://api.test:{port}/issues")];
    args.extend(extra.iter().map(|e| e.to_string()));
    Call::command(args, Vec::new())
}

async fn run(harness: &Harness, principal: &str, manifest: Manifest, call: Call) -> CallReport {
    let tool = harness.load(manifest);
    let task = harness.runtime.open_task(&tool, TaskRequest::one_call(principal, &tool, Default::default())).unwrap();
    let report = task.invoke(call).await.unwrap();
    task.close().await;
    report
}

fn policy_events(harness: &Harness) -> Vec<serde_json::Value> {
    harness.audit_events().into_iter().filter(|e| e["event"] == "policy").collect()
}

#[tokio::test]
async fn a_role_is_required_for_post_and_the_denial_names_the_policy() {
    let server = TestServer::start(None).await;
    let h = harness(&[("writer-alice", &["writer"])], examples());
    let port = server.port;
    // Without the role: refused before anything leaves, with the policy's id and reason.
    let report = run(&h, "bob", manifest("http-get", port), request("POST", port, &["body=hi"])).await;
    assert_denied(&report);
    let err = stderr(&report);
    assert!(
        err.contains("denied by policy `post-needs-writer-role`: a POST needs the principal to have the `writer` role"),
        "{err}"
    );
    assert!(server.seen().is_empty());
    // A GET needs no role.
    assert_allowed(&run(&h, "bob", manifest("http-get", port), request("GET", port, &[])).await);
    // With the role, the POST goes out.
    assert_allowed(&run(&h, "writer-alice", manifest("http-get", port), request("POST", port, &["body=hi"])).await);
    assert_eq!(server.seen().len(), 2);

    let events = policy_events(&h);
    let decisions: Vec<(&str, &str, Vec<&str>)> = events
        .iter()
        .filter(|e| e["action"] == "http")
        .map(|e| {
            let ids = e["policies"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
            (e["principal"].as_str().unwrap(), e["decision"].as_str().unwrap(), ids)
        })
        .collect();
    // Allows only the manifest determined are the grant's, recorded by the
    // egress events as before; the denial names its policy.
    assert_eq!(decisions, [("bob", "denied", vec!["post-needs-writer-role"])]);
    let denied: Vec<_> =
        h.audit_events().into_iter().filter(|e| e["event"] == "egress" && e["decision"] == "denied").collect();
    assert_eq!(denied.len(), 1);
    assert!(denied[0]["reason"].as_str().unwrap().contains("post-needs-writer-role"));
    h.still_serves().await;
}

#[tokio::test]
async fn a_byte_budget_stops_the_request_that_would_cross_it() {
    let server = TestServer::start(None).await;
    let h = harness(&[("alice", &["writer"])], examples());
    let port = server.port;
    let tool = h.load(manifest("uploader", port));
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    // 600 000 bytes, then 600 000 more in a second call of the same task: 1 200 000 > 1 MiB.
    let first = task.invoke(request("POST", port, &["body-bytes=600000"])).await.unwrap();
    assert_allowed(&first);
    let second = task.invoke(request("POST", port, &["body-bytes=600000"])).await.unwrap();
    assert_denied(&second);
    assert!(stderr(&second).contains("denied by policy `egress-byte-budget`"), "{}", stderr(&second));
    // What still fits goes.
    let third = task.invoke(request("POST", port, &["body-bytes=400000"])).await.unwrap();
    assert_allowed(&third);
    task.close().await;
    let sizes: Vec<u64> = server.seen().iter().map(|r| r.body_len as u64).collect();
    assert_eq!(sizes, [600_000, 400_000]);
}

#[tokio::test]
async fn an_approval_lets_exactly_that_request_through_once() {
    let server = TestServer::start(None).await;
    let h = harness(&[("alice", &["writer"])], examples());
    let port = server.port;
    let approvals = h.runtime.approvals().clone();
    let approver = tokio::spawn(async move {
        // Wait for the request, try a wrong digest and self-approval, then approve.
        let pending = loop {
            if let Some(pending) = approvals.list().into_iter().next() {
                break pending;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let wrong = approvals.answer(&pending.id, Some(&"0".repeat(64)), "carol", "admin", true, None);
        assert!(matches!(wrong, Err(ApprovalError::DigestMismatch { .. })), "{wrong:?}");
        let own = approvals.answer(&pending.id, None, "alice", "admin", true, None);
        assert!(matches!(own, Err(ApprovalError::SelfApproval { .. })), "{own:?}");
        approvals.answer(&pending.id, Some(&pending.digest), "carol", "admin", true, None).unwrap();
        let replay = approvals.answer(&pending.id, Some(&pending.digest), "carol", "admin", true, None);
        assert!(matches!(replay, Err(ApprovalError::Answered { .. })), "{replay:?}");
        pending
    });
    // Business hours are not this test's business: only the approval policy is loaded.
    let policies: Vec<PolicySource> =
        examples().into_iter().filter(|s| s.file.ends_with("github-issues-approval.cedar")).collect();
    h.runtime.set_policies(RequestPolicies::load(&policies, PolicyMode::Ceiling).unwrap());
    let report = run(&h, "alice", manifest("github-issues", port), request("POST", port, &["body=new issue"])).await;
    assert_allowed(&report);
    let pending = approver.await.unwrap();
    assert_eq!(pending.principal, "alice");
    assert_eq!(pending.why, "opening an issue is visible to customers");
    assert!(
        pending.what.starts_with(&format!("POST http://api.test:{port}/issues (query 0 bytes, body 9 bytes")),
        "{}",
        pending.what
    );
    assert_eq!(pending.reach.egress, [format!("GET,POST http://api.test:{port}/*")]);
    assert_eq!(server.seen().len(), 1);
    // A GET needs none.
    assert_allowed(&run(&h, "alice", manifest("github-issues", port), request("GET", port, &[])).await);

    let approvals: Vec<_> = h.audit_events().into_iter().filter(|e| e["event"] == "approval").collect();
    let steps: Vec<&str> = approvals.iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(steps, ["requested", "approved"]);
    assert_eq!(approvals[1]["approver"], "carol");
    assert_eq!(approvals[1]["digest"], pending.digest.as_str());
    let last_policy = policy_events(&h).into_iter().find(|e| e["approval"] == pending.id.as_str()).unwrap();
    assert_eq!(last_policy["decision"], "allowed");
    // An allow a policy of the operator's took part in is recorded with its ids.
    let read = policy_events(&h).into_iter().find(|e| e["resource"].as_str().unwrap().starts_with("GET ")).unwrap();
    assert_eq!(
        (read["decision"].as_str(), &read["policies"]),
        (Some("allowed"), &serde_json::json!(["manifest", "read-issues"]))
    );
}

#[tokio::test]
async fn no_answer_is_a_denial_at_the_deadline_and_the_call_ends_cleanly() {
    let server = TestServer::start(None).await;
    let h = harness(&[("alice", &["writer"])], vec![]);
    let port = server.port;
    let mut manifest = manifest("github-issues", port);
    manifest.egress[0].approval = Some(toolcell_runtime::policy::ManifestApproval {
        reason: "writes are reviewed".into(),
        covers: vec!["POST".into()],
    });
    manifest.limits.timeout = secs(2);
    let started = std::time::Instant::now();
    let report = run(&h, "alice", manifest, request("POST", port, &["body=x"])).await;
    assert_denied(&report);
    let err = stderr(&report);
    assert!(err.contains("(writes are reviewed) was not answered before it expired or the call's deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(server.seen().is_empty());
    assert!(h.runtime.approvals().list().is_empty());
    let expired: Vec<_> = h.audit_events().into_iter().filter(|e| e["event"] == "approval").collect();
    assert_eq!(expired.last().unwrap()["decision"], "expired");
    let id = expired[0]["id"].as_str().unwrap();
    let late = h.runtime.approvals().answer(id, None, "carol", "admin", true, None).unwrap_err();
    assert_eq!(late, ApprovalError::Expired(id.to_owned()));
}

#[tokio::test]
async fn a_call_policy_refuses_the_call_before_anything_runs() {
    let text = "@id(\"no-tool-for-bob\")\n@reason(\"bob is off this tool\")\nforbid (principal == Principal::\"bob\", action == Action::\"call\", resource == Tool::\"word-count\")\nwhen { context.input.size > 0 };";
    let h = harness(&[], vec![PolicySource { file: "bob.cedar".into(), text: text.into() }]);
    let mut manifest = Manifest::ad_hoc(Path::new(guests::WORD_COUNT));
    manifest.name = "word-count".into();
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::one_call("bob", &tool, Default::default())).unwrap();
    let error = task.invoke(Call::tool(r#"{"text":"a b"}"#)).await.unwrap_err();
    let InvokeError::Denied { reason, policies } = &error else { panic!("{error}") };
    assert_eq!(reason, "denied by policy `no-tool-for-bob`: bob is off this tool");
    assert_eq!(policies, &["no-tool-for-bob"]);
    assert_eq!(error.outcome(), "denied");
    task.close().await;
    let task = h.runtime.open_task(&tool, TaskRequest::one_call("alice", &tool, Default::default())).unwrap();
    assert!(task.invoke(Call::tool(r#"{"text":"a b"}"#)).await.is_ok());
    task.close().await;
    let ended: Vec<_> = h.audit_events().into_iter().filter(|e| e["event"] == "invocation_ended").collect();
    assert_eq!(ended[0]["outcome"], "denied");
    assert_eq!(ended[1]["outcome"], "ok");
}

#[tokio::test]
async fn a_reload_takes_effect_on_the_next_decision() {
    let server = TestServer::start(None).await;
    let h = harness(&[], vec![]);
    let port = server.port;
    assert_allowed(&run(&h, "alice", manifest("http-get", port), request("GET", port, &[])).await);
    let text = "@id(\"no-api\") forbid (principal, action == Action::\"http\", resource) when { resource.host == \"api.test\" };";
    h.runtime.set_policies(
        RequestPolicies::load(&[PolicySource { file: "n.cedar".into(), text: text.into() }], PolicyMode::Ceiling)
            .unwrap(),
    );
    let report = run(&h, "alice", manifest("http-get", port), request("GET", port, &[])).await;
    assert!(stderr(&report).contains("denied by policy `no-api`"), "{}", stderr(&report));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_decision_kept_for_a_task_gives_way_to_a_reload() {
    // Reads only the tool's tags and the principal's groups: fixed for the
    // task, so its first allow stands for its later calls, until a reload.
    let allow_all = "@id(\"internal\") forbid (principal, action == Action::\"call\", resource) when { resource.tags.contains(\"internal\") && principal.groups.contains(\"contractors\") };";
    let h = harness(&[], vec![PolicySource { file: "c.cedar".into(), text: allow_all.into() }]);
    let mut manifest = Manifest::ad_hoc(Path::new(guests::WORD_COUNT));
    manifest.tags = vec!["internal".into()];
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    for _ in 0..3 {
        assert!(task.invoke(Call::tool(r#"{"text":"a"}"#)).await.is_ok());
    }
    let deny_alice = "@id(\"not-alice\") forbid (principal == Principal::\"alice\", action == Action::\"call\", resource) when { resource.tags.contains(\"internal\") };";
    let reloaded =
        RequestPolicies::load(&[PolicySource { file: "n.cedar".into(), text: deny_alice.into() }], PolicyMode::Ceiling);
    h.runtime.set_policies(reloaded.unwrap());
    let error = task.invoke(Call::tool(r#"{"text":"a"}"#)).await.unwrap_err();
    assert!(error.to_string().contains("denied by policy `not-alice`"), "{error}");
    task.close().await;
}

#[tokio::test]
async fn an_http_policy_sees_the_calls_input_with_no_call_policy_written() {
    let server = TestServer::start(None).await;
    let text = "@id(\"small-inputs-only\") forbid (principal, action == Action::\"http\", resource) when { context.input.size > 200 };";
    let h = harness(&[], vec![PolicySource { file: "i.cedar".into(), text: text.into() }]);
    let port = server.port;
    assert_allowed(&run(&h, "alice", manifest("http-get", port), request("GET", port, &[])).await);
    let padding = format!("x-pad: {}", "a".repeat(300));
    let report = run(&h, "alice", manifest("http-get", port), request("GET", port, &[&padding])).await;
    assert!(stderr(&report).contains("denied by policy `small-inputs-only`"), "{}", stderr(&report));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_socket_policy_decides_each_connect_the_grant_allows() {
    use toolcell_runtime::{SocketGrant, SocketProtocol};
    // Two granted peers; a policy forbids one of them. Decided on the
    // guest's stack, which Cedar's own stack check cannot measure.
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let (allowed_addr, forbidden_addr) = (allowed.local_addr().unwrap(), forbidden.local_addr().unwrap());
    let text = format!(
        "@id(\"not-that-port\") @reason(\"that service is retired\")\nforbid (principal, action == Action::\"socket\", resource) when {{ resource.port == {} }};",
        forbidden_addr.port()
    );
    let h = harness(&[], vec![PolicySource { file: "s.cedar".into(), text }]);
    let grant = |m: &mut Manifest| {
        m.sockets = vec![
            SocketGrant { protocol: SocketProtocol::Tcp, address: allowed_addr },
            SocketGrant { protocol: SocketProtocol::Tcp, address: forbidden_addr },
        ];
    };
    assert_eq!(
        assert_allowed(&h.probe(&["tcp-connect", &allowed_addr.to_string()], grant).await.unwrap()),
        "connected\n"
    );
    assert_denied(&h.probe(&["tcp-connect", &forbidden_addr.to_string()], grant).await.unwrap());
    assert!(forbidden.accept().is_err(), "a connection the policy forbids arrived");
    let denied: Vec<_> = policy_events(&h).into_iter().filter(|e| e["decision"] == "denied").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["policies"], serde_json::json!(["not-that-port"]));
    assert_eq!(denied[0]["resource"], format!("tcp_connect {forbidden_addr}").as_str());
    let sockets: Vec<_> = h.audit_events().into_iter().filter(|e| e["event"] == "socket").collect();
    assert!(sockets[0]["reason"].as_str().unwrap().contains("that service is retired"), "{sockets:?}");
    h.still_serves().await;
}

#[tokio::test]
async fn the_operator_webhook_is_posted_over_tls_with_the_configured_roots() {
    use crate::common::http_server::test_ca;
    let ca = test_ca(&["127.0.0.1"]);
    let server = TestServer::start(Some(ca.server.clone())).await;
    let mut harness = Harness::new();
    let roots = harness.dir.path().join("ca.pem");
    std::fs::write(&roots, &ca.ca_pem).unwrap();
    let config = RuntimeConfig {
        tls_roots: vec![roots],
        scratch_root: Some(harness.scratch_root()),
        ..RuntimeConfig::default()
    };
    harness.runtime = Runtime::with_engine(harness.runtime.engine().clone(), config).unwrap();
    let url = format!("https://127.0.0.1:{}/post", server.port);
    let status = harness.runtime.post_operator_json(&url, r#"{"approval":{}}"#.into(), Duration::from_secs(5)).await;
    assert_eq!(status, Ok(200));
    assert_eq!(server.seen()[0].body_len, 15);
    // Without the root, the server is not trusted.
    let untrusted = Runtime::with_engine(harness.runtime.engine().clone(), RuntimeConfig::default()).unwrap();
    let refused = untrusted.post_operator_json(&url, "{}".into(), Duration::from_secs(5)).await.unwrap_err();
    assert!(refused.contains("127.0.0.1"), "{refused}");
}
