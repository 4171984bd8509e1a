//! Egress through wasi:http against real servers on 127.0.0.1. Test names
//! map to loopback through the runtime's replaceable resolver; nothing is
//! ever aimed at a non-loopback address (the metadata name is refused on its
//! resolved address before any connection is tried).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::http_server::{TestServer, test_ca};
use crate::common::*;
use toolcell_runtime::{
    Call, CallReport, EgressNarrowing, EgressRule, Manifest, Narrowing, Runtime, RuntimeConfig, StaticResolver,
    TaskError, TaskRequest,
};

struct Egress {
    harness: Harness,
}

fn resolver() -> Arc<StaticResolver> {
    let loopback = vec!["127.0.0.1".parse().unwrap()];
    let hosts = HashMap::from([
        ("api.test".to_owned(), loopback.clone()),
        ("other.test".to_owned(), loopback.clone()),
        ("secure.test".to_owned(), loopback.clone()),
        ("metadata.test".to_owned(), vec!["169.254.169.254".parse().unwrap()]),
        ("mixed.test".to_owned(), vec!["127.0.0.1".parse().unwrap(), "10.0.0.7".parse().unwrap()]),
    ]);
    Arc::new(StaticResolver { hosts, fallback: None })
}

impl Egress {
    fn new(extra_roots: Vec<std::path::PathBuf>) -> Egress {
        let mut harness = Harness::new();
        let config = RuntimeConfig {
            audit_log: Some(harness.dir.path().join("audit.jsonl")),
            scratch_root: Some(harness.scratch_root()),
            resolver: resolver(),
            tls_roots: extra_roots,
            ..RuntimeConfig::default()
        };
        harness.runtime = Runtime::with_engine(harness.runtime.engine().clone(), config).unwrap();
        Egress { harness }
    }

    /// Runs `probe http ...` with the given rules.
    async fn http(&self, rules: Vec<EgressRule>, args: &[&str]) -> CallReport {
        let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND));
        manifest.egress = rules;
        manifest.limits.timeout = secs(20);
        let args = args.iter().map(|a| a.to_string()).collect();
        self.harness.call(manifest, Call::command(args, Vec::new())).await.unwrap()
    }
}

/// A rule for a test host that resolves to loopback: the loopback address is named explicitly.
fn rule(url: &str, methods: &[&str]) -> EgressRule {
    let mut rule = EgressRule::parse(url).unwrap();
    rule.methods = methods.iter().map(|m| m.to_string()).collect();
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    rule
}

#[tokio::test]
async fn allowed_get_and_post_reach_the_server() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let url = format!("http://api.test:{}/*", server.port);
    let rules = vec![rule(&url, &["GET", "POST"])];
    let report = e.http(rules.clone(), &["http", "GET", &format!("http://api.test:{}/ok", server.port)]).await;
    assert_eq!(assert_allowed(&report), "status 200\nhello from the test server\n");
    let report =
        e.http(rules, &["http", "POST", &format!("http://api.test:{}/post", server.port), "body=0123456789"]).await;
    assert_eq!(assert_allowed(&report), "status 200\ngot 10 bytes\n");
    let seen = server.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/ok"));
    assert_eq!(seen[0].header("host"), Some(format!("api.test:{}", server.port).as_str()));
    assert_eq!((seen[1].method.as_str(), seen[1].body_len), ("POST", 10));

    let events = e.harness.audit_events();
    let egress: Vec<_> = events.iter().filter(|e| e["event"] == "egress").collect();
    assert_eq!(egress.len(), 2);
    assert_eq!(egress[0]["decision"], "allowed");
    assert_eq!(egress[0]["status"], 200);
    assert_eq!(egress[0]["bytes_received"], 26);
    assert_eq!(egress[1]["bytes_sent"], 10);
    assert_eq!(egress[0]["rule"], url.as_str());
}

#[tokio::test]
async fn requests_outside_the_rules_never_reach_any_server() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let rules = vec![rule(&format!("http://api.test:{port}/v1/*"), &["GET"])];
    let cases = [
        ("GET", format!("http://other.test:{port}/v1/x"), "host `other.test` matches no egress rule"),
        ("DELETE", format!("http://api.test:{port}/v1/x"), "method DELETE not allowed"),
        ("GET", format!("http://api.test:{port}/admin"), "path outside the rule's pattern"),
        ("GET", format!("http://api.test:{}/v1/x", port + 1), "scheme or port not allowed"),
        ("GET", format!("https://api.test:{port}/v1/x"), "scheme or port not allowed"),
        ("GET", format!("http://api.test:{port}/v1/../admin"), "dot segments"),
        ("GET", format!("http://api.test:{port}/v1/%2e%2e/admin"), "percent-encoded `/`"),
        // Forms that servers normalise into a path outside `/v1/*`.
        ("GET", format!("http://api.test:{port}/v1/..;/admin"), "`;` path parameters"),
        ("GET", format!("http://api.test:{port}/v1/..%5cadmin"), "percent-encoded `/`"),
        ("GET", format!("http://api.test:{port}/v1/%252e%252e/admin"), "double-encoded"),
        ("GET", format!("http://api.test:{port}/v1/.%2e/admin"), "percent-encoded `/`"),
        ("GET", format!("http://api.test:{port}/v1/%c0%ae%c0%ae/admin"), "not UTF-8"),
    ];
    let refused = cases.len() + 1;
    for (method, url, expected) in cases {
        let report = e.http(rules.clone(), &["http", method, &url]).await;
        assert_denied(&report);
        let err = stderr(&report);
        assert!(err.contains("denied by toolcell egress policy") && err.contains(expected), "{method} {url}: {err}");
    }
    // Nothing granted at all.
    let report = e.http(vec![], &["http", "GET", &format!("http://api.test:{port}/ok")]).await;
    assert!(stderr(&report).contains("no egress is granted"));
    assert_eq!(server.connection_count(), 0, "a refused request reached the server");
    let denied =
        e.harness.audit_events().iter().filter(|e| e["event"] == "egress" && e["decision"] == "denied").count();
    assert_eq!(denied, refused, "one audit event per refused request");
}

#[tokio::test]
async fn names_resolving_to_loopback_or_metadata_are_refused_unless_granted() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    // The rule allows the name but not its loopback address.
    let unnamed = EgressRule::parse(&format!("http://api.test:{port}/*")).unwrap();
    let report = e.http(vec![unnamed], &["http", "GET", &format!("http://api.test:{port}/ok")]).await;
    assert_denied(&report);
    assert!(stderr(&report).contains("address 127.0.0.1 is loopback"), "{}", stderr(&report));
    // The metadata address is refused before any connection is tried.
    let metadata = EgressRule::parse(&format!("http://metadata.test:{port}/*")).unwrap();
    let report =
        e.http(vec![metadata], &["http", "GET", &format!("http://metadata.test:{port}/latest/meta-data")]).await;
    assert!(stderr(&report).contains("169.254.169.254 is cloud metadata"), "{}", stderr(&report));
    // One private address among the answers refuses the whole name.
    let mixed = rule(&format!("http://mixed.test:{port}/*"), &["GET"]);
    let report = e.http(vec![mixed], &["http", "GET", &format!("http://mixed.test:{port}/ok")]).await;
    assert!(stderr(&report).contains("10.0.0.7 is private"), "{}", stderr(&report));
    assert_eq!(server.connection_count(), 0);
    let refusals: Vec<_> = e.harness.audit_events().into_iter().filter(|e| e["event"] == "egress").collect();
    assert_eq!(refusals.len(), 3);
    assert!(refusals.iter().all(|e| e["decision"] == "denied"), "{refusals:?}");
    // Naming the address grants it; an IP-literal rule names its own address.
    let named = rule(&format!("http://api.test:{port}/*"), &["GET"]);
    assert_allowed(&e.http(vec![named], &["http", "GET", &format!("http://api.test:{port}/ok")]).await);
    let literal = EgressRule::parse(&format!("http://127.0.0.1:{port}/*")).unwrap();
    assert_allowed(&e.http(vec![literal], &["http", "GET", &format!("http://127.0.0.1:{port}/ok")]).await);
}

#[tokio::test]
async fn redirects_are_not_followed_and_the_guests_follow_up_is_checked() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let rules = vec![rule(&format!("http://api.test:{port}/*"), &["GET"])];
    let target = format!("http://other.test:{port}/ok");
    let report = e.http(rules, &["http-follow", "GET", &format!("http://api.test:{port}/redirect?to={target}")]).await;
    assert_denied(&report);
    assert!(stderr(&report).contains("host `other.test` matches no egress rule"), "{}", stderr(&report));
    // The host returned the 302 as it was; only the first request reached the server.
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].path, "/redirect");
}

#[tokio::test]
async fn credential_headers_set_by_the_guest_never_reach_the_server() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let rules = vec![rule(&format!("http://api.test:{port}/*"), &["GET"])];
    let report = e
        .http(
            rules,
            &[
                "http",
                "GET",
                &format!("http://api.test:{port}/echo-headers"),
                "Authorization: Bearer stolen-token",
                "Cookie: session=stolen",
                "Proxy-Authorization: Basic eA==",
                "X-Fine: yes",
            ],
        )
        .await;
    let out = assert_allowed(&report);
    assert!(out.contains("x-fine: yes"), "{out}");
    for header in ["authorization", "cookie", "proxy-authorization"] {
        assert!(stderr(&report).contains(&format!("header {}", header_case(header))), "{}", stderr(&report));
    }
    let seen = &server.seen()[0];
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("proxy-authorization"), None);
    assert!(!e.harness.audit_text().contains("stolen"));
}

fn header_case(name: &str) -> String {
    match name {
        "authorization" => "Authorization".into(),
        "cookie" => "Cookie".into(),
        _ => "Proxy-Authorization".into(),
    }
}

#[tokio::test]
async fn oversized_responses_and_stalled_servers_are_cut() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let mut capped = rule(&format!("http://api.test:{port}/*"), &["GET"]);
    capped.max_response_body = toolcell_runtime::ByteSize(64 << 10);
    capped.first_byte_timeout = millis(500);
    let report =
        e.http(vec![capped.clone()], &["http", "GET", &format!("http://api.test:{port}/big?bytes=200000")]).await;
    assert_denied(&report);
    assert!(stderr(&report).contains("HttpResponseBodySize"), "{}", stderr(&report));
    // Without a length the cap is enforced while the body streams.
    let report =
        e.http(vec![capped.clone()], &["http", "GET", &format!("http://api.test:{port}/chunked?bytes=200000")]).await;
    assert_denied(&report);
    assert!(stderr(&report).contains("response body size exceeds limit"), "{}", stderr(&report));
    let report =
        e.http(vec![capped.clone()], &["http", "GET", &format!("http://api.test:{port}/big?bytes=1000")]).await;
    assert!(assert_allowed(&report).starts_with("status 200"));
    let report = e.http(vec![capped], &["http", "GET", &format!("http://api.test:{port}/stall")]).await;
    assert_denied(&report);
    assert!(stderr(&report).contains("ConnectionReadTimeout"), "{}", stderr(&report));
    let events = e.harness.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "egress" && e["reason"].as_str().is_some_and(|r| r.contains("first-byte timeout")))
    );
}

#[tokio::test]
async fn oversized_request_bodies_are_refused() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let mut capped = rule(&format!("http://api.test:{port}/*"), &["POST"]);
    capped.max_request_body = toolcell_runtime::ByteSize(1024);
    let report =
        e.http(vec![capped], &["http", "POST", &format!("http://api.test:{port}/post"), "body-bytes=5000"]).await;
    assert_denied(&report);
    assert!(server.seen().iter().all(|r| r.body_len <= 1024));
}

#[tokio::test]
async fn the_request_count_cap_holds() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let mut capped = rule(&format!("http://api.test:{port}/*"), &["GET"]);
    capped.max_requests = 1;
    // The redirect costs the one request; the guest's follow-up to the same host is over the cap.
    let report = e
        .http(
            vec![capped],
            &["http-follow", "GET", &format!("http://api.test:{port}/redirect?to=http://api.test:{port}/ok")],
        )
        .await;
    assert_denied(&report);
    assert!(stderr(&report).contains("allows 1 requests per call"), "{}", stderr(&report));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn raw_tcp_to_an_allowed_server_stays_refused() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let rules = vec![rule(&format!("http://127.0.0.1:{}/*", server.port), &["GET"])];
    let report = e.http(rules, &["tcp-connect", &format!("127.0.0.1:{}", server.port)]).await;
    assert_denied(&report);
    assert_eq!(server.connection_count(), 0);
}

#[tokio::test]
async fn https_works_with_an_extra_trusted_root() {
    let ca = test_ca(&["secure.test"]);
    let server = TestServer::start(Some(ca.server.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("ca.pem");
    std::fs::write(&roots, &ca.ca_pem).unwrap();
    let rules = vec![rule(&format!("https://secure.test:{}/*", server.port), &["GET"])];
    let url = format!("https://secure.test:{}/ok", server.port);

    let trusting = Egress::new(vec![roots]);
    assert_eq!(
        assert_allowed(&trusting.http(rules.clone(), &["http", "GET", &url]).await),
        "status 200\nhello from the test server\n"
    );
    // Without the test CA the certificate is refused.
    let untrusting = Egress::new(vec![]);
    let report = untrusting.http(rules, &["http", "GET", &url]).await;
    assert_denied(&report);
}

#[tokio::test]
async fn narrowing_to_fewer_hosts_is_honoured_and_widening_rejected() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let api = format!("http://api.test:{port}/*");
    let other = format!("http://other.test:{port}/*");
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_COMMAND));
    manifest.egress = vec![rule(&api, &["GET"]), rule(&other, &["GET"])];
    let tool = e.harness.load(manifest);
    let keep_api = Narrowing {
        egress: Some(vec![EgressNarrowing { url: api.clone(), methods: None, max_requests: None }]),
        ..Default::default()
    };
    let task = e
        .harness
        .runtime
        .open_task(&tool, TaskRequest { narrowing: keep_api, ..TaskRequest::new("t", Duration::from_secs(60)) })
        .unwrap();
    let call = |url: String| Call::command(vec!["http".into(), "GET".into(), url], vec![]);
    assert_allowed(&task.invoke(call(format!("http://api.test:{port}/ok"))).await.unwrap());
    assert_denied(&task.invoke(call(format!("http://other.test:{port}/ok"))).await.unwrap());
    assert_eq!(server.seen().len(), 1);

    let widen = Narrowing {
        egress: Some(vec![EgressNarrowing { url: api, methods: Some(vec!["POST".into()]), max_requests: None }]),
        ..Default::default()
    };
    let err = e
        .harness
        .runtime
        .open_task(&tool, TaskRequest { narrowing: widen, ..TaskRequest::new("t", Duration::from_secs(60)) })
        .unwrap_err();
    assert!(matches!(err, TaskError::Widening(_)) && err.to_string().contains("does not allow method POST"), "{err}");
}

#[tokio::test]
async fn tool_components_get_the_same_checks() {
    let server = TestServer::start(None).await;
    let e = Egress::new(vec![]);
    let port = server.port;
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.egress = vec![rule(&format!("http://api.test:{port}/*"), &["GET"])];
    let input = |url: String| serde_json::json!({ "action": "http", "method": "GET", "url": url }).to_string();
    let report =
        e.harness.call(manifest.clone(), Call::tool(input(format!("http://api.test:{port}/ok")))).await.unwrap();
    let toolcell_runtime::CallResult::Output(output) = report.result else { panic!("{:?}", report.result) };
    let output: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!((output["status"].as_u64(), output["body"].as_str()), (Some(200), Some("hello from the test server")));
    let report = e.harness.call(manifest, Call::tool(input(format!("http://other.test:{port}/ok")))).await.unwrap();
    match report.result {
        toolcell_runtime::CallResult::ToolError(toolcell_runtime::ToolError::Upstream(message)) => {
            assert!(message.contains("host `other.test` matches no egress rule"), "{message}")
        }
        other => panic!("expected the tool to report the refusal: {other:?}"),
    }
    assert_eq!(server.seen().len(), 1);
}
