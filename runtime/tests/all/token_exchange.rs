//! The `oauth-token-exchange` provider against a real authorization server
//! (oidc-provider with the project's RFC 8693 grant, started by the harness):
//! the task's issuer token is exchanged for a narrower upstream token, which
//! is injected into the bound API's requests and revoked (RFC 7009) when the
//! call ends.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::http_server::TestServer;
use crate::common::{Harness, guests, secs};
use toolcell_runtime::credentials::config::{IssuerConfig, ProviderConfig, SecretSource, TokenExchangeConfig};
use toolcell_runtime::policy::credential::{CredentialSpec, Exposure, Injection, ProviderKind};
use toolcell_runtime::{
    Call, CallResult, EgressRule, Manifest, Runtime, RuntimeConfig, StaticResolver, TaskRequest, TimeSpan, ToolError,
};
use toolcell_test_guests::oauth::OAuthServer;

const API: &str = "https://api.test";

/// A runtime with persisted issuer keys, and a server trusting its JWKS.
fn setup(revocation: bool) -> (Harness, OAuthServer) {
    setup_with(revocation, &serde_json::json!({}))
}

/// The same, with the server's token lifetimes overridden per audience.
fn setup_with(revocation: bool, lifetimes: &serde_json::Value) -> (Harness, OAuthServer) {
    let mut harness = Harness::new();
    let keys = harness.dir.path().join("issuer-keys.json");
    let issuer = "https://toolcell.test";
    let jwks = toolcell_runtime::credentials::issuer::Issuer::open(issuer, &keys).unwrap().jwks();
    let scopes = serde_json::json!({ API: ["repo:read"], "https://long.test": ["repo:read"], "https://vague.test": ["repo:read"] });
    let server = OAuthServer::start_with(&jwks, issuer, &scopes, lifetimes);
    let secret = harness.dir.path().join("client-secret");
    std::fs::write(&secret, &server.client_secret).unwrap();
    let loopback = vec!["127.0.0.1".parse().unwrap()];
    let config = RuntimeConfig {
        audit_log: Some(harness.dir.path().join("audit.jsonl")),
        scratch_root: Some(harness.scratch_root()),
        resolver: Arc::new(StaticResolver {
            hosts: HashMap::from([("api.test".to_owned(), loopback)]),
            fallback: None,
        }),
        // The test API is plain http on loopback: the operator allows credentials there.
        plaintext_credential_hosts: vec!["api.test".into()],
        credentials: ProviderConfig {
            issuer: IssuerConfig { url: Some(issuer.into()), keys: Some(keys) },
            oauth_token_exchange: Some(TokenExchangeConfig {
                token_endpoint: format!("{}/token", server.issuer),
                revocation_endpoint: revocation.then(|| format!("{}/token/revocation", server.issuer)),
                client_id: "toolcell".into(),
                client_secret: SecretSource::File(secret),
                subject_audience: server.issuer.clone(),
                send_actor_token: true,
                timeout: TimeSpan(Duration::from_secs(5)),
            }),
            ..ProviderConfig::default()
        },
        ..RuntimeConfig::default()
    };
    harness.runtime = Runtime::with_engine(harness.runtime.engine().clone(), config).unwrap();
    (harness, server)
}

fn manifest(port: u16) -> Manifest {
    let url = format!("http://api.test:{port}/*");
    let mut rule = EgressRule::parse(&url).unwrap();
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.egress = vec![rule];
    manifest.credentials = vec![CredentialSpec {
        name: "github".into(),
        provider: ProviderKind::OauthTokenExchange,
        scopes: vec!["repo:read".into(), "issues:write".into()],
        audience: API.into(),
        max_ttl: TimeSpan(Duration::from_secs(120)),
        exposure: Exposure::Inject(Injection {
            egress: vec![url],
            header: "authorization".into(),
            format: "Bearer {token}".into(),
        }),
        approval: None,
    }];
    manifest.limits.timeout = secs(10);
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchanged_token_is_narrower_injected_and_revoked_at_teardown() {
    let (h, oauth) = setup(true);
    let api = TestServer::start(None).await;
    let tool = h.load(manifest(api.port));
    let task = h.runtime.open_task(&tool, TaskRequest::new("erin", Duration::from_secs(60))).unwrap();
    let input = serde_json::json!({
        "action": "http", "method": "GET", "url": format!("http://api.test:{}/ok", api.port),
        "then": { "action": "sleep", "seconds": 2 },
    });
    let call = task.invoke(Call::tool(input.to_string()));
    let look = async {
        let started = Instant::now();
        let header = loop {
            if let Some(seen) = api.seen().first() {
                break seen.header("authorization").expect("the API gets the exchanged token").to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the tool's request never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = header.strip_prefix("Bearer ").unwrap().to_owned();
        let info = tokio::task::block_in_place(|| oauth.introspect(&token));
        (token, info)
    };
    let (report, (token, info)) = tokio::join!(call, look);
    assert!(report.unwrap().succeeded());
    // While the call ran: active, for the task's workload, narrower than the
    // task token (repo:read and issues:write) it was exchanged for.
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["scope"], "repo:read");
    assert_eq!(info["sub"], task.workload(), "{info}");
    assert_eq!(info["aud"], API, "{info}");
    // After teardown the server says it is revoked.
    let after = tokio::task::block_in_place(|| oauth.introspect(&token));
    assert_eq!(after["active"], false, "{after}");
    task.close().await;

    let events = h.audit_events();
    let minted: Vec<_> = events.iter().filter(|e| e["event"] == "credential_minted").collect();
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0]["scopes"], serde_json::json!(["repo:read"]));
    assert!(minted[0]["id"].as_str().unwrap().starts_with("sha256:"));
    let revoked: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "credential_revoked")
        .map(|e| (e["credential"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    // The actor token (`send_actor_token`: the principal, as toolcell
    // vouches for it; the server checked it against the subject token's
    // `act`) is deny-listed once the exchange is done, like the subject token.
    assert_eq!(
        revoked,
        vec![("github (subject token)", "deny_listed"), ("github (actor token)", "deny_listed"), ("github", "revoked")]
    );
    assert!(!h.audit_text().contains(&token));
}

#[tokio::test]
async fn scopes_beyond_the_grant_never_reach_the_server_and_refusals_come_back_clearly() {
    let (h, _oauth) = setup(false);
    let api = TestServer::start(None).await;
    let acquire = |scopes: &[&str]| {
        Call::tool(serde_json::json!({ "action": "acquire", "name": "github", "scopes": scopes }).to_string())
    };
    let report = h.call(manifest(api.port), acquire(&["admin"])).await.unwrap();
    assert_eq!(
        report.result,
        CallResult::ToolError(ToolError::Denied(
            "scope `admin` is beyond what credential `github` grants ([repo:read issues:write])".into()
        ))
    );
    // Granted by the manifest, but this server does not know the audience.
    let mut other = manifest(api.port);
    other.credentials[0].audience = "https://unknown.test".into();
    let report = h.call(other, acquire(&[])).await.unwrap();
    match &report.result {
        CallResult::ToolError(ToolError::Upstream(message)) => {
            assert!(message.contains("the oauth-token-exchange provider could not mint it"), "{message}");
            assert!(!message.contains("invalid_target"), "the server's answer reached the tool: {message}");
        }
        other => panic!("expected the server's refusal: {other:?}"),
    }
    let events = h.audit_events();
    let refused = events.iter().rfind(|e| e["event"] == "credential_refused").unwrap();
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("token exchange for `https://unknown.test`: HTTP 400: invalid_target"), "{reason}");
    // Without a revocation endpoint the token dies at its expiry, and the record says so.
    let report = h.call(manifest(api.port), acquire(&["issues:write"])).await.unwrap();
    assert!(report.succeeded(), "{:?}", report.result);
    let events = h.audit_events();
    let outcome = events.iter().rfind(|e| e["event"] == "credential_revoked" && e["credential"] == "github").unwrap();
    assert_eq!(outcome["outcome"], "expires");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_would_outlive_its_call_is_revoked_before_any_use() {
    // The crash rule: an exchanged token is used only if its life, as the
    // server states it, ends by the call's deadline; then a runtime killed
    // mid-call leaves nothing behind that outlives the call. This server
    // gives `long.test` tokens 600s (the call has 10s) and `vague.test`
    // tokens no stated lifetime at all.
    let lifetimes = serde_json::json!({ "https://long.test": 600, "https://vague.test": "unstated" });
    let (h, oauth) = setup_with(true, &lifetimes);
    let api = TestServer::start(None).await;
    for audience in ["https://long.test", "https://vague.test"] {
        let mut manifest = manifest(api.port);
        manifest.credentials[0].audience = audience.into();
        let get =
            serde_json::json!({ "action": "http", "method": "GET", "url": format!("http://api.test:{}/ok", api.port) });
        let before = oauth.issued().len();
        let report = h.call(manifest, Call::tool(get.to_string())).await.unwrap();
        assert!(
            matches!(&report.result, CallResult::ToolError(ToolError::Upstream(m)) if m.contains("could not mint it")),
            "{audience}: {:?}",
            report.result
        );
        let issued = oauth.issued();
        assert_eq!(issued.len(), before + 1, "{audience}: the server issued a token");
        let token = issued.last().unwrap().clone();
        let info = tokio::task::block_in_place(|| oauth.introspect(&token));
        assert_eq!(info["active"], false, "{audience}: the over-long token was not revoked: {info}");
        let events = h.audit_events();
        let reason =
            events.iter().rfind(|e| e["event"] == "credential_refused").unwrap()["reason"].as_str().unwrap().to_owned();
        assert!(
            reason.contains("only uses exchanged tokens that die by the call's deadline, and it was revoked"),
            "{reason}"
        );
        assert!(!h.audit_text().contains(&token), "the token reached the audit trail");
    }
    // Nothing reached the API: the request stopped before it left.
    assert_eq!(api.connection_count(), 0);
}
