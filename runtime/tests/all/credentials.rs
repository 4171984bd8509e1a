//! Credentials with the built-in issuer and host-held static secrets: minted
//! just in time, injected at the egress boundary into the bound rule's
//! requests only, revealed only where the manifest says so, revoked at
//! teardown on every path, and never visible where they should not be.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::http_server::TestServer;
use crate::common::{Harness, guests, secs};
use secrecy::SecretString;
use toolcell_runtime::credentials::config::{OpenBaoConfig, ProviderConfig, SecretSource, StaticSecret};
use toolcell_runtime::credentials::issuer::{VerifyError, verify_with_jwks};
use toolcell_runtime::policy::credential::{CredentialSpec, Exposure, Injection, ProviderKind};
use toolcell_runtime::{
    Call, CallReport, CallResult, EgressRule, Manifest, Runtime, RuntimeConfig, StaticResolver, TaskRequest, TimeSpan,
    ToolError,
};

pub(crate) const AUDIENCE: &str = "https://api.test";

pub(crate) fn runtime(harness: &mut Harness, credentials: ProviderConfig) {
    runtime_with(harness, credentials, RuntimeConfig::default());
}

/// A runtime on `base` with `credentials`, resolving the test names to loopback.
pub(crate) fn runtime_with(harness: &mut Harness, credentials: ProviderConfig, base: RuntimeConfig) {
    let loopback = vec!["127.0.0.1".parse().unwrap()];
    let hosts = HashMap::from([
        ("api.test".to_owned(), loopback.clone()),
        ("other.test".to_owned(), loopback.clone()),
        ("internal.test".to_owned(), loopback),
    ]);
    let config = RuntimeConfig {
        audit_log: Some(harness.dir.path().join("audit.jsonl")),
        scratch_root: Some(harness.scratch_root()),
        resolver: Arc::new(StaticResolver { hosts, fallback: None }),
        credentials,
        // The test API is plain http on loopback: the operator allows credentials there.
        plaintext_credential_hosts: vec!["api.test".into(), "internal.test".into()],
        ..base
    };
    harness.runtime = Runtime::with_engine(harness.runtime.engine().clone(), config).unwrap();
}

pub(crate) fn harness(credentials: ProviderConfig) -> Harness {
    let mut harness = Harness::new();
    runtime(&mut harness, credentials);
    harness
}

pub(crate) fn rule(url: &str) -> EgressRule {
    let mut rule = EgressRule::parse(url).unwrap();
    rule.methods = vec!["GET".into()];
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    rule
}

pub(crate) fn spec(name: &str, provider: ProviderKind, scopes: &[&str], exposure: Exposure) -> CredentialSpec {
    CredentialSpec {
        name: name.into(),
        provider,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        audience: AUDIENCE.into(),
        max_ttl: TimeSpan(Duration::from_secs(300)),
        exposure,
        approval: None,
    }
}

pub(crate) fn inject_into(rule_url: &str, header: &str, format: &str) -> Exposure {
    Exposure::Inject(Injection { egress: vec![rule_url.into()], header: header.into(), format: format.into() })
}

/// The egress rule credentials are bound to: everything on api.test.
pub(crate) fn api_rule(port: u16) -> String {
    format!("http://api.test:{port}/*")
}

/// A credential injected as `Authorization: Bearer` into requests to api.test.
pub(crate) fn bearer(port: u16, name: &str, provider: ProviderKind, scopes: &[&str]) -> CredentialSpec {
    spec(name, provider, scopes, inject_into(&api_rule(port), "authorization", "Bearer {token}"))
}

/// The probe tool's GET of `url`.
pub(crate) fn get(url: &str) -> Call {
    Call::tool(serde_json::json!({ "action": "http", "method": "GET", "url": url }).to_string())
}

/// The probe tool granted `credentials`, and GET on api.test and other.test.
pub(crate) fn probe(port: u16, credentials: Vec<CredentialSpec>) -> Manifest {
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.egress = vec![rule(&api_rule(port)), rule(&format!("http://other.test:{port}/*"))];
    manifest.credentials = credentials;
    manifest.limits.timeout = secs(20);
    manifest
}

pub(crate) fn output(report: &CallReport) -> serde_json::Value {
    match &report.result {
        CallResult::Output(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected output, got {other:?}"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub(crate) fn events_of<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[tokio::test]
async fn an_injected_issuer_token_reaches_the_bound_host_only_and_dies_at_teardown() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    let manifest = probe(port, vec![bearer(port, "api", ProviderKind::Issuer, &["repo:read", "issues:write"])]);
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();

    let report = task.invoke(get(&format!("http://api.test:{port}/ok"))).await.unwrap();
    assert_eq!(output(&report)["status"], 200);
    let seen = server.seen();
    let header = seen[0].header("authorization").expect("the bound host gets the credential").to_owned();
    let token = SecretString::from(header.strip_prefix("Bearer ").unwrap().to_owned());
    // What a downstream service sees, with only the JWKS: an RFC 9068 token for this workload and principal.
    let claims = verify_with_jwks(&h.runtime.jwks(), &token, "https://toolcell.local", AUDIENCE).unwrap();
    assert_eq!(claims.sub, task.workload());
    assert_eq!(claims.act.as_ref().unwrap().sub, "alice");
    assert_eq!(claims.scope, "repo:read issues:write");
    assert_eq!(claims.client_id, "probe-tool");
    assert!(claims.exp <= now() + 20, "exp {} is past the call's 20s deadline", claims.exp);
    // Teardown deny-listed it: the runtime refuses it from now until its expiry.
    assert_eq!(h.runtime.verify_token(&token, AUDIENCE), Err(VerifyError::Revoked(claims.jti.clone())));

    // Another granted origin never gets it; neither does the same host on a second call without a new mint.
    let report = task.invoke(get(&format!("http://other.test:{port}/ok"))).await.unwrap();
    assert_eq!(output(&report)["status"], 200);
    assert_eq!(server.seen()[1].header("authorization"), None);
    task.close().await;

    let events = h.audit_events();
    let minted = events_of(&events, "credential_minted");
    assert_eq!(minted.len(), 1, "one mint, on first use: {minted:?}");
    assert_eq!(minted[0]["id"], claims.jti.as_str());
    assert_eq!(minted[0]["exposure"], "inject");
    let injected = events_of(&events, "credential_injected");
    assert_eq!(injected.len(), 1);
    assert_eq!(injected[0]["host"], "api.test");
    let revoked = events_of(&events, "credential_revoked");
    assert_eq!((revoked.len(), revoked[0]["outcome"].as_str()), (1, Some("deny_listed")));
    let value = header.strip_prefix("Bearer ").unwrap();
    assert!(!h.audit_text().contains(value), "the token leaked into the audit log");
}

#[tokio::test]
async fn nothing_is_minted_until_a_credential_is_used() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    let manifest = probe(port, vec![bearer(port, "api", ProviderKind::Issuer, &["a"])]);
    let report = h.call(manifest, Call::tool(r#"{"action":"echo"}"#)).await.unwrap();
    assert!(report.succeeded());
    assert!(events_of(&h.audit_events(), "credential_minted").is_empty());
}

#[tokio::test]
async fn the_guest_cannot_set_or_see_an_injected_credential() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    // A custom header: the guest's own attempt to set it is stripped too.
    let api = spec("api", ProviderKind::Issuer, &["a"], inject_into(&api_rule(port), "X-Api-Key", "key={token}"));
    let manifest = probe(port, vec![api]);
    let forge = serde_json::json!({
        "action": "http", "method": "GET", "url": format!("http://api.test:{port}/echo-headers"),
        "headers": ["x-api-key: forged", "authorization: Bearer forged"],
    });
    let report = h.call(manifest.clone(), Call::tool(forge.to_string())).await.unwrap();
    let seen = server.seen();
    let injected = seen[0].header("x-api-key").unwrap().to_owned();
    assert!(injected.starts_with("key=") && !injected.contains("forged"), "{injected}");
    assert_eq!(seen[0].header("authorization"), None);
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(stderr.contains("header x-api-key refused"), "the guest was told its header is refused: {stderr}");

    // Everything the guest can look at: env, args, reveal, its response headers.
    let snoop = serde_json::json!({ "action": "snoop", "name": "api", "url": format!("http://api.test:{port}/ok") });
    let report = h.call(manifest, Call::tool(snoop.to_string())).await.unwrap();
    let seen = output(&report);
    assert_eq!(seen["status"], 200);
    assert!(seen["reveal"].as_str().unwrap().contains("never revealed"), "{seen}");
    let sent = server.seen()[1].header("x-api-key").unwrap().strip_prefix("key=").unwrap().to_owned();
    for place in [
        seen.to_string(),
        String::from_utf8_lossy(&report.stdout).into(),
        String::from_utf8_lossy(&report.stderr).into(),
        format!("{report:?}"),
        h.audit_text(),
    ] {
        assert!(!place.contains(&sent), "the injected value is visible to the guest or in the record: {place}");
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_does_not_carry_the_credential() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    let manifest = probe(port, vec![bearer(port, "api", ProviderKind::Issuer, &["a"])]);
    let elsewhere = format!("http://other.test:{port}/ok");
    let url = format!("http://api.test:{port}/redirect?to={elsewhere}");
    let report = h.call(manifest.clone(), get(&url)).await.unwrap();
    // Not followed by the host; the guest's follow-up is a new request to another origin.
    assert_eq!(output(&report)["status"], 302);
    let report = h.call(manifest, get(&elsewhere)).await.unwrap();
    assert_eq!(output(&report)["status"], 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].header("authorization").is_some());
    assert_eq!(seen[1].header("authorization"), None, "the credential followed the redirect");
}

#[tokio::test]
async fn scopes_narrow_and_never_widen_and_ungranted_credentials_are_denied() {
    let h = harness(ProviderConfig::default());
    let manifest = probe(1, vec![spec("api", ProviderKind::Issuer, &["repo:read", "issues:write"], Exposure::Reveal)]);
    let acquire = |name: &str, scopes: &[&str]| {
        Call::tool(
            serde_json::json!({ "action": "acquire", "name": name, "scopes": scopes, "reveal": true }).to_string(),
        )
    };
    let report = h.call(manifest.clone(), acquire("api", &["repo:read"])).await.unwrap();
    let got = output(&report);
    assert_eq!(got["scopes"], serde_json::json!(["repo:read"]));
    assert_eq!(got["audience"], AUDIENCE);
    let token = SecretString::from(got["reveal"]["value"].as_str().unwrap().to_owned());
    let claims = verify_with_jwks(&h.runtime.jwks(), &token, "https://toolcell.local", AUDIENCE).unwrap();
    assert_eq!(claims.scope, "repo:read");
    assert_eq!(got["expires_at"].as_u64(), Some(claims.exp));

    let report = h.call(manifest.clone(), acquire("api", &["repo:read", "admin"])).await.unwrap();
    assert_eq!(
        report.result,
        CallResult::ToolError(ToolError::Denied(
            "scope `admin` is beyond what credential `api` grants ([repo:read issues:write])".into()
        ))
    );
    let report = h.call(manifest.clone(), acquire("aws", &[])).await.unwrap();
    assert_eq!(
        report.result,
        CallResult::ToolError(ToolError::Denied("credential `aws` is not granted to this task (granted: api)".into()))
    );
    // A tool whose manifest names no credential gets `denied` too.
    let report = h.call(probe(1, vec![]), acquire("api", &[])).await.unwrap();
    assert_eq!(
        report.result,
        CallResult::ToolError(ToolError::Denied("credential `api` is not granted to this task (granted: none)".into()))
    );
    let refused = events_of(&h.audit_events(), "credential_refused").len();
    assert_eq!(refused, 3);
}

#[tokio::test]
async fn a_revealed_token_dies_at_teardown_on_every_exit_path() {
    let h = harness(ProviderConfig::default());
    let mut manifest = probe(1, vec![spec("api", ProviderKind::Issuer, &["a"], Exposure::Reveal)]);
    manifest.limits.timeout = secs(3);
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::new("bob", Duration::from_secs(60))).unwrap();
    let acquire = |then: serde_json::Value| {
        serde_json::json!({ "action": "acquire", "name": "api", "reveal": true, "then": then }).to_string()
    };

    // Success: the tool had a working token during the call; it is refused after.
    let report = task.invoke(Call::tool(acquire(serde_json::json!({"action": "echo"})))).await.unwrap();
    let token = SecretString::from(output(&report)["reveal"]["value"].as_str().unwrap().to_owned());
    assert!(matches!(h.runtime.verify_token(&token, AUDIENCE), Err(VerifyError::Revoked(_))));

    // A trap, a timeout and a cancelled call each revoke what they minted.
    let trap = task.invoke(Call::tool(acquire(serde_json::json!({"action": "panic"})))).await;
    assert!(matches!(trap, Err(toolcell_runtime::InvokeError::Trap { .. })), "{trap:?}");
    let timeout = task.invoke(Call::tool(acquire(serde_json::json!({"action": "sleep", "seconds": 30})))).await;
    assert!(matches!(timeout, Err(toolcell_runtime::InvokeError::Limit(_))), "{timeout:?}");
    let cancelled = task.invoke(Call::tool(acquire(serde_json::json!({"action": "sleep", "seconds": 30}))));
    assert!(tokio::time::timeout(Duration::from_secs(1), cancelled).await.is_err());
    task.close().await;

    let events = h.audit_events();
    let minted: Vec<String> =
        events_of(&events, "credential_minted").iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let revoked: Vec<String> =
        events_of(&events, "credential_revoked").iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(minted.len(), 4, "{events:?}");
    assert_eq!(minted, revoked, "every minted token is revoked, in order");
    for event in events_of(&events, "credential_minted") {
        // Deny-listed until it expires; after that, expiry refuses it anyway.
        let (jti, exp) = (event["id"].as_str().unwrap(), event["expires_at"].as_u64().unwrap());
        assert!(h.runtime.issuer().is_revoked(jti) || exp <= now(), "{jti} is still accepted");
    }
    assert_eq!(events_of(&events, "credential_revealed").len(), 4);
    h.still_serves().await;
}

#[tokio::test]
async fn a_static_secret_is_injected_never_revealed_and_never_logged() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("github-token");
    let secret = format!("ghp_static_{}", now());
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let h = harness(ProviderConfig {
        statics: vec![StaticSecret {
            audience: AUDIENCE.into(),
            secret: SecretSource::File(secret_file),
            origins: vec![format!("http://api.test:{port}")],
        }],
        ..ProviderConfig::default()
    });
    let root = spec("root", ProviderKind::Static, &[], inject_into(&api_rule(port), "authorization", "token {token}"));
    let manifest = probe(port, vec![root]);
    let snoop = serde_json::json!({ "action": "snoop", "name": "root", "url": format!("http://api.test:{port}/ok") });
    let report = h.call(manifest, Call::tool(snoop.to_string())).await.unwrap();
    assert_eq!(server.seen()[0].header("authorization"), Some(format!("token {secret}").as_str()));
    let seen = output(&report);
    assert!(seen["reveal"].as_str().unwrap().contains("never revealed"));
    for place in [seen.to_string(), format!("{report:?}"), h.audit_text()] {
        assert!(!place.contains(&secret), "the static secret leaked: {place}");
    }
    let events = h.audit_events();
    assert_eq!(events_of(&events, "credential_revoked")[0]["outcome"], "released");

    // A manifest cannot ask to reveal a static secret at all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(
        &path,
        format!(
            "[tool]\nname = \"t\"\ncomponent = \"{}\"\nowner = \"o\"\npurpose = \"p\"\nreview_by = 2099-01-01\n\
             [[credentials]]\nname = \"root\"\nprovider = \"static\"\naudience = \"a\"\nexposure = \"reveal\"\n",
            guests::PROBE_TOOL
        ),
    )
    .unwrap();
    let error = Manifest::load(&path).unwrap_err();
    assert!(error.to_string().contains("static credentials are root secrets: they can only be injected"), "{error}");
}

#[tokio::test]
async fn a_provider_that_is_down_fails_closed_with_a_clear_error() {
    let server = TestServer::start(None).await;
    let port = server.port;
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "unused").unwrap();
    let h = harness(ProviderConfig {
        openbao: Some(OpenBaoConfig {
            address: format!("http://127.0.0.1:{closed}"),
            token: SecretSource::File(dir.path().join("token")),
            timeout: TimeSpan(Duration::from_secs(2)),
            secrets: vec![toml::from_str(&format!("audience = \"{AUDIENCE}\"\npath = \"pki/issue/tool\"")).unwrap()],
        }),
        ..ProviderConfig::default()
    });
    let cert = spec("cert", ProviderKind::Openbao, &["tool-pki"], Exposure::Reveal);
    let manifest = probe(port, vec![cert, bearer(port, "api", ProviderKind::Openbao, &["tool-pki"])]);

    let report = h.call(manifest.clone(), Call::tool(r#"{"action":"acquire","name":"cert"}"#)).await.unwrap();
    match &report.result {
        CallResult::ToolError(ToolError::Upstream(message)) => {
            // The tool learns which credential and provider failed; where the
            // provider is and what it answered stay with the operator.
            assert!(message.starts_with("credential `cert`: the openbao provider could not mint it"), "{message}");
            assert!(!message.contains(&closed.to_string()) && !message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("expected the tool to get an error value: {other:?}"),
    }
    // A request through a bound rule is stopped before it leaves.
    let report = h.call(manifest, get(&format!("http://api.test:{port}/ok"))).await.unwrap();
    assert!(
        matches!(&report.result, CallResult::ToolError(ToolError::Upstream(m)) if m.contains("credential `api`")),
        "{:?}",
        report.result
    );
    assert_eq!(server.connection_count(), 0);
    let events = h.audit_events();
    let refused = events_of(&events, "credential_refused");
    assert_eq!(refused.len(), 2);
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("creating the task's child token") && reason.contains(&format!("127.0.0.1:{closed}")),
        "{reason}"
    );
    h.still_serves().await;
}

/// The probe tool doing `action` `times` times (`{n}` in it is the round).
fn repeat(times: u32, action: serde_json::Value) -> Call {
    Call::tool(serde_json::json!({ "action": "repeat", "times": times, "do": action }).to_string())
}

#[tokio::test]
async fn a_tool_flooding_mints_and_refusals_is_bounded_and_stopped() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    let scopes: Vec<String> = (0..10).map(|n| format!("s{n}")).collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let mut manifest = probe(port, vec![spec("api", ProviderKind::Issuer, &scopes, Exposure::Reveal)]);
    manifest.limits.max_credentials = 3;

    // Each distinct scope list would mint again: the call's cap stops it at 3.
    let report = h
        .call(
            manifest.clone(),
            repeat(10, serde_json::json!({ "action": "acquire", "name": "api", "scopes": ["s{n}"] })),
        )
        .await
        .unwrap();
    let counts = output(&report);
    assert_eq!((counts["ok"].as_u64(), counts["failed"].as_u64()), (Some(3), Some(7)), "{counts}");
    assert!(
        counts["last_error"].as_str().unwrap().contains("minted its limit of 3 credentials (limits.max_credentials)"),
        "{counts}"
    );
    let events = h.audit_events();
    assert_eq!(events_of(&events, "credential_minted").len(), 3);

    // A tool looping on refused requests is stopped at max_refusals, and
    // the audit trail grows by that much, not by the loop's length.
    let before = h.audit_text().len();
    let refused = serde_json::json!({ "action": "http", "method": "GET", "url": format!("http://api.test:{port}/{}..;/x", "a/".repeat(2000)) });
    let report = h.call(manifest.clone(), repeat(100_000, refused)).await;
    match report {
        Err(toolcell_runtime::InvokeError::Limit(hit)) => {
            assert_eq!(hit.kind, toolcell_runtime::LimitKind::Refusals);
            assert!(hit.to_string().starts_with("max_refusals limit of 16 exceeded"), "{hit}");
        }
        other => panic!("the flood was not stopped: {other:?}"),
    }
    let events = h.audit_events();
    let denied = events.iter().filter(|e| e["event"] == "egress" && e["decision"] == "denied").count();
    assert_eq!(denied, 17, "one refusal past the limit stops the call");
    let grown = h.audit_text().len() - before;
    assert!(grown < 64 << 10, "a refusal flood wrote {grown} bytes of audit");
    assert!(events.iter().all(|e| e.to_string().len() < 4096), "an audit line a tool made long");
    assert_eq!(server.connection_count(), 0);

    // Names and scopes a tool makes up are bounded too, and refused by name.
    let long = serde_json::json!({ "action": "acquire", "name": "x".repeat(10_000), "scopes": ["s{n}"] });
    let report = h.call(manifest, repeat(1, long)).await.unwrap();
    assert!(output(&report)["last_error"].as_str().unwrap().contains("a credential name is at most 64 bytes"));
    let refused = events_of(&h.audit_events(), "credential_refused").last().unwrap().to_string();
    assert!(refused.len() < 1024, "the refusal's record carries the whole name: {} bytes", refused.len());
    h.still_serves().await;
}

#[tokio::test]
async fn credentials_are_minted_only_for_requests_that_pass_every_check() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    // `internal.test` resolves to loopback, which its rule does not name.
    let mut internal = rule(&format!("http://internal.test:{port}/*"));
    internal.addresses.clear();
    // Built in code, past manifest validation: a rule that also allows TRACE.
    let mut traced = rule(&api_rule(port));
    traced.methods = vec!["GET".into(), "TRACE".into()];
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.egress = vec![traced, internal];
    let bound = Exposure::Inject(Injection {
        egress: vec![api_rule(port), format!("http://internal.test:{port}/*")],
        header: "authorization".into(),
        format: "Bearer {token}".into(),
    });
    manifest.credentials = vec![spec("api", ProviderKind::Issuer, &["read"], bound)];
    manifest.limits.timeout = secs(20);

    let call = |method: &str, url: String| {
        Call::tool(serde_json::json!({ "action": "http", "method": method, "url": url }).to_string())
    };
    let refusals = [
        (call("GET", format!("http://internal.test:{port}/x")), "is loopback and rule"),
        (call("TRACE", format!("http://api.test:{port}/x")), "TRACE is never sent with one"),
        (call("GET", format!("http://api.test:{port}/v1/..;/admin")), "`;` path parameters"),
        (call("GET", format!("http://api.test:{port}/v1/%2e%2e/admin")), "percent-encoded"),
    ];
    for (request, expected) in refusals {
        let report = h.call(manifest.clone(), request).await.unwrap();
        match &report.result {
            CallResult::ToolError(ToolError::Upstream(message)) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected a refusal naming `{expected}`: {other:?}"),
        }
    }
    let events = h.audit_events();
    assert!(events_of(&events, "credential_minted").is_empty(), "a refused request caused a mint: {events:?}");
    assert!(events_of(&events, "credential_injected").is_empty());
    assert_eq!(server.connection_count(), 0, "a refused request reached the server");
    // The same credential on an allowed request is minted, injected, and arrives.
    let report = h.call(manifest, call("GET", format!("http://api.test:{port}/ok"))).await.unwrap();
    assert!(report.succeeded(), "{:?}", report.result);
    assert!(server.seen()[0].header("authorization").unwrap().starts_with("Bearer "));
}

#[tokio::test]
async fn manifests_are_refused_what_only_the_operator_may_grant() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("root");
    std::fs::write(&secret_file, "root-secret-value").unwrap();
    let h = harness(ProviderConfig {
        statics: vec![StaticSecret {
            audience: AUDIENCE.into(),
            secret: SecretSource::File(secret_file.clone()),
            origins: vec![format!("http://api.test:{port}")],
        }],
        ..ProviderConfig::default()
    });
    let refused = |manifest: Manifest| match h.runtime.load_tool(manifest) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("the manifest was loaded"),
    };
    // A credential living longer than the operator's ceiling.
    let mut long = probe(port, vec![bearer(port, "api", ProviderKind::Issuer, &[])]);
    long.credentials[0].max_ttl = TimeSpan(Duration::from_secs(3600));
    let error = refused(long);
    assert!(error.contains("credentials[0].max_ttl") && error.contains("1h") && error.contains("5m"), "{error}");
    // The operator's root secret sent somewhere the operator did not list.
    let elsewhere = spec(
        "root",
        ProviderKind::Static,
        &[],
        inject_into(&format!("http://other.test:{port}/*"), "authorization", "token {token}"),
    );
    let error = refused(probe(port, vec![elsewhere]));
    assert!(error.contains("may go to http://api.test") && error.contains("other.test"), "{error}");
    // Plain http to a host the operator did not allow.
    let mut plain = probe(port, vec![]);
    plain.egress.push(rule(&format!("http://plain.test:{port}/*")));
    plain.credentials = vec![spec(
        "api",
        ProviderKind::Issuer,
        &[],
        inject_into(&format!("http://plain.test:{port}/*"), "authorization", "Bearer {token}"),
    )];
    assert!(refused(plain).contains("over plain http"));
    // The runtime's own state and secrets, by directory and by variable.
    for host in [h.dir.path().to_owned(), dir.path().to_owned()] {
        let mut manifest = probe(port, vec![]);
        manifest.filesystem = vec![toolcell_runtime::DirGrant {
            host: host.canonicalize().unwrap(),
            guest: "/x".into(),
            mode: toolcell_runtime::DirMode::ReadOnly,
        }];
        assert!(refused(manifest).contains("overlaps the runtime's own state"));
    }
    let mut manifest = probe(port, vec![]);
    manifest.env = vec![toolcell_runtime::EnvGrant {
        name: "TOOLCELL_OAUTH_SECRET".into(),
        source: toolcell_runtime::EnvSource::Host,
    }];
    assert!(refused(manifest).contains("`TOOLCELL_OAUTH_SECRET`"));
}

#[tokio::test]
async fn the_example_mint_cap_stops_the_sixth_mint_of_a_task_naming_the_policy() {
    use toolcell_runtime::request_policy::{PolicyMode, PolicySource, RequestPolicies};
    let h = harness(ProviderConfig::default());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/mint-cap.cedar");
    let policies = RequestPolicies::load(&[PolicySource::read(&dir).unwrap()], PolicyMode::Ceiling).unwrap();
    h.runtime.set_policies(policies);
    let manifest = probe(1, vec![spec("api", ProviderKind::Issuer, &["read"], Exposure::Reveal)]);
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    let acquire = || Call::tool(serde_json::json!({ "action": "acquire", "name": "api", "reveal": true }).to_string());
    // One mint per call; the task's sixth is over the cap of five.
    for _ in 0..5 {
        let report = task.invoke(acquire()).await.unwrap();
        assert!(matches!(report.result, CallResult::Output(_)), "{:?}", report.result);
    }
    let report = task.invoke(acquire()).await.unwrap();
    let CallResult::ToolError(error) = &report.result else { panic!("{:?}", report.result) };
    assert!(
        error.to_string().contains("denied by policy `mint-cap-per-task`: a task mints at most 5 credentials"),
        "{error}"
    );
    task.close().await;
    let events = h.audit_events();
    assert_eq!(events_of(&events, "credential_minted").len(), 5);
    let refused = events_of(&events, "credential_refused");
    assert_eq!(refused.len(), 1);
    assert!(refused[0]["reason"].as_str().unwrap().contains("mint-cap-per-task"));
    let denied: Vec<_> = events_of(&events, "policy").into_iter().filter(|e| e["decision"] == "denied").collect();
    assert_eq!(denied[0]["policies"], serde_json::json!(["mint-cap-per-task"]));
}
