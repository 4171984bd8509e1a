//! Behaviour compared with a learned baseline, against real credentials and
//! a loopback API: a host the tool never used, a call sending far more than
//! usual, and a storm of denials each raise an `anomaly` and get their
//! rule's action — the request refused, or the task killed with its issuer
//! token and OpenBao lease revoked and the principal quarantined.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::http_server::TestServer;
use crate::common::{Harness, secs};
use crate::credentials::{events_of, output, probe, spec};
use crate::openbao::{Bao, bao_config, manifest as bao_manifest};
use toolcell_runtime::policy::credential::{Exposure, ProviderKind};
use toolcell_runtime::{
    AnomalyAction, AnomalyRule, Baseline, Behaviour, Call, DenyStorm, InvokeError, MonitorSettings, Quarantine,
    Runtime, RuntimeConfig, Spread, StaticResolver, TaskError, TaskRequest,
};
use toolcell_test_guests::openbao::openbao;

/// A learned baseline: `probe-tool` calls api.test with GETs, about 100
/// bytes out per call, a few calls a minute.
fn baseline() -> Baseline {
    let usual = Behaviour {
        calls: 50,
        requests_per_call: Spread { p50: 1.0, p90: 1.0, p99: 2.0, max: 2.0 },
        hosts_per_call: Spread { p50: 1.0, p90: 1.0, p99: 1.0, max: 1.0 },
        bytes_out_per_call: Spread { p50: 50.0, p90: 90.0, p99: 100.0, max: 120.0 },
        bytes_in_per_call: Spread { p50: 500.0, p90: 800.0, p99: 1000.0, max: 1200.0 },
        denials_per_call: Spread::default(),
        mints_per_call: Spread { p50: 1.0, p90: 1.0, p99: 1.0, max: 1.0 },
        calls_per_minute: Spread { p50: 2.0, p90: 3.0, p99: 4.0, max: 4.0 },
        hosts: BTreeSet::from(["api.test".to_owned()]),
        methods: BTreeSet::from(["GET".to_owned(), "POST".to_owned()]),
    };
    Baseline {
        version: 1,
        learned_at: "2026-11-30T00:00:00Z".into(),
        since: None,
        tools: [("probe-tool".to_owned(), usual.clone())].into(),
        principals: Default::default(),
    }
}

fn rule(action: AnomalyAction, factor: f64) -> AnomalyRule {
    AnomalyRule { action, factor, quarantine: Quarantine::Principal }
}

/// `base` with `monitor`, and api.test and other.test on loopback.
fn watched(base: RuntimeConfig, monitor: MonitorSettings) -> RuntimeConfig {
    let loopback = vec!["127.0.0.1".parse().unwrap()];
    let hosts = HashMap::from([("api.test".to_owned(), loopback.clone()), ("other.test".to_owned(), loopback)]);
    RuntimeConfig {
        resolver: Arc::new(StaticResolver { hosts, fallback: None }),
        plaintext_credential_hosts: vec!["api.test".into()],
        monitor,
        ..base
    }
}

/// A harness whose runtime has `monitor`, and `baseline` in force.
fn harness_watching(monitor: MonitorSettings, baseline: Option<Baseline>) -> Harness {
    let mut h = Harness::new();
    let base = RuntimeConfig { audit_log: Some(h.dir.path().join("audit.jsonl")), ..RuntimeConfig::default() };
    h.runtime = Runtime::with_engine(h.runtime.engine().clone(), watched(base, monitor)).unwrap();
    h.runtime.controls().set_baseline(baseline);
    h
}

fn get(url: String) -> serde_json::Value {
    serde_json::json!({ "action": "http", "method": "GET", "url": url })
}

#[tokio::test]
async fn a_host_the_tool_never_used_is_refused_and_recorded_as_an_anomaly() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let monitor = MonitorSettings { new_host: rule(AnomalyAction::Deny, 1.0), ..MonitorSettings::default() };
    let h = harness_watching(monitor, Some(baseline()));
    let tool = h.load(probe(port, Vec::new()));
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();

    let usual = task.invoke(Call::tool(get(format!("http://api.test:{port}/ok")).to_string())).await.unwrap();
    assert_eq!(output(&usual)["status"], 200);
    let seen = server.seen().len();
    let new = task.invoke(Call::tool(get(format!("http://other.test:{port}/ok")).to_string())).await.unwrap();
    let text = format!("{:?}", new.result);
    assert!(text.contains("anomaly new_host for tool `probe-tool`: a request to other.test"), "{text}");
    assert_eq!(server.seen().len(), seen, "the refused request left");
    task.close().await;

    let events = h.audit_events();
    let anomaly = events_of(&events, "anomaly");
    assert_eq!(anomaly.len(), 1, "{anomaly:?}");
    assert_eq!((anomaly[0]["metric"].as_str(), anomaly[0]["action"].as_str()), (Some("new_host"), Some("deny")));
    assert_eq!(anomaly[0]["baseline"], "api.test");
    let denied = events_of(&events, "egress").into_iter().filter(|e| e["decision"] == "denied").count();
    assert_eq!(denied, 1, "the refusal is in the egress record too");

    // Without a baseline the same request goes: the server runs as it would without monitoring.
    h.runtime.controls().set_baseline(None);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    let report = task.invoke(Call::tool(get(format!("http://other.test:{port}/ok")).to_string())).await.unwrap();
    assert_eq!(output(&report)["status"], 200);
    task.close().await;
}

#[tokio::test]
async fn a_call_sending_a_hundred_times_its_usual_bytes_is_killed_with_its_credentials_revoked() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let harness = Harness::new();
    let monitor = MonitorSettings { bytes_out: rule(AnomalyAction::Kill, 10.0), ..MonitorSettings::default() };
    let config = watched(bao_config(&harness, openbao().address.clone()), monitor);
    let bao = Bao::with_config(harness, config);
    let runtime = &bao.harness.runtime;
    runtime.controls().set_baseline(Some(baseline()));
    let cert = bao_manifest().credentials.remove(0);
    let mut manifest = probe(port, vec![cert, spec("api", ProviderKind::Issuer, &["read"], Exposure::Reveal)]);
    manifest.egress[0].methods = vec!["GET".into(), "POST".into()];
    manifest.limits.timeout = secs(60);
    let tool = bao.harness.load(manifest);
    let task = runtime.open_task(&tool, TaskRequest::new("agent-7", Duration::from_secs(120))).unwrap();
    // About 100 bytes a call is usual; this call sends 100 KiB.
    let post = serde_json::json!({ "action": "http", "method": "POST", "url": format!("http://api.test:{port}/post"),
        "headers": ["body-bytes=102400"], "then": { "action": "sleep", "seconds": 30 } });
    let call = serde_json::json!({ "action": "acquire", "name": "cert", "reveal": true,
        "then": { "action": "acquire", "name": "api", "reveal": true, "then": post } });
    let started = Instant::now();
    match task.invoke(Call::tool(call.to_string())).await {
        Err(InvokeError::Killed { kill, running: true }) => {
            assert_eq!(kill.by, "anomaly:bytes_out");
            assert!(kill.to_string().contains("102400 bytes out"), "{kill}");
        }
        other => panic!("the call was not killed: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "the kill did not stop the sleeping call");
    assert!(server.seen().iter().all(|seen| seen.path != "/post"), "the oversized body left");
    task.close().await;

    let lease = bao.minted_lease(1).await;
    bao.until_lease_gone(&lease).await;
    let events = bao.harness.audit_events();
    let anomaly = events_of(&events, "anomaly");
    assert_eq!((anomaly[0]["metric"].as_str(), anomaly[0]["action"].as_str()), (Some("bytes_out"), Some("kill")));
    let kill = anomaly[0]["kill"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let events = bao.harness.audit_events();
        let revoked = events_of(&events, "credential_revoked");
        let api = revoked.iter().find(|e| e["credential"] == "api");
        if let Some(api) = api {
            assert_eq!(api["outcome"], "deny_listed");
            assert!(api["reason"].as_str().unwrap().contains(&kill), "{api}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the issuer token was not revoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The principal is quarantined until the kill is lifted.
    let refused = runtime.open_task(&tool, TaskRequest::new("agent-7", Duration::from_secs(60))).unwrap_err();
    assert!(matches!(refused, TaskError::Killed(_)), "{refused}");
    assert!(refused.to_string().contains("anomaly bytes_out"), "{refused}");
}

#[tokio::test]
async fn a_storm_of_denials_quarantines_the_principal() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let monitor = MonitorSettings {
        deny_storm: DenyStorm { denials: 5, seconds: 60, enabled: true },
        ..MonitorSettings::default()
    };
    // No baseline: the deny storm is built in.
    let h = harness_watching(monitor, None);
    let tool = h.load(probe(port, Vec::new()));
    let task = h.runtime.open_task(&tool, TaskRequest::new("mallory", Duration::from_secs(60))).unwrap();
    // A prompt-injected agent probing for a way out: hosts it was never granted.
    let probing = serde_json::json!({ "action": "repeat", "times": 10,
        "do": get(format!("http://internal-{{n}}.test:{port}/admin")) });
    match task.invoke(Call::tool(probing.to_string())).await {
        Err(InvokeError::Killed { kill, running: true }) => {
            assert_eq!(kill.by, "anomaly:deny_storm");
            assert!(kill.to_string().contains("principal `mallory` was killed"), "{kill}");
        }
        other => panic!("the storm did not stop the call: {other:?}"),
    }
    task.close().await;
    let refused = h.runtime.open_task(&tool, TaskRequest::new("mallory", Duration::from_secs(60))).unwrap_err();
    assert!(matches!(refused, TaskError::Killed(_)), "{refused}");
    assert!(refused.to_string().contains("deny_storm"), "{refused}");
    // Others are served; lifting the quarantine serves mallory again.
    h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap().close().await;
    let target = toolcell_runtime::KillTarget::Principal("mallory".into());
    assert_eq!(h.runtime.controls().unkill(&target, "local:ops").unwrap().len(), 1);
    h.runtime.open_task(&tool, TaskRequest::new("mallory", Duration::from_secs(60))).unwrap().close().await;

    let events = h.audit_events();
    let anomaly = events_of(&events, "anomaly");
    assert_eq!((anomaly[0]["metric"].as_str(), anomaly[0]["action"].as_str()), (Some("deny_storm"), Some("kill")));
    assert!(anomaly[0]["kill"].is_string());
    let started = Instant::now();
    while events_of(&h.audit_events(), "kill").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "the quarantine's containment was never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_burst_of_calls_and_a_run_of_denials_are_anomalies_with_their_rules_actions() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let mut usual = baseline();
    let behaviour = usual.tools.get_mut("probe-tool").unwrap();
    behaviour.calls_per_minute = Spread { p50: 1.0, p90: 1.0, p99: 1.0, max: 1.0 };
    let monitor = MonitorSettings {
        call_rate: rule(AnomalyAction::Deny, 2.0),
        denials: rule(AnomalyAction::Alert, 2.0),
        ..MonitorSettings::default()
    };
    let h = harness_watching(monitor, Some(usual));
    let tool = h.load(probe(port, Vec::new()));
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    let echo = || Call::tool(r#"{"action":"echo"}"#);
    // Up to 2 × p99 (1) calls a minute go; the third is refused, naming the anomaly.
    for _ in 0..2 {
        assert!(task.invoke(echo()).await.unwrap().succeeded());
    }
    match task.invoke(echo()).await {
        Err(InvokeError::Denied { reason, .. }) => {
            assert!(reason.contains("anomaly call_rate for tool `probe-tool`: 3 calls in a minute"), "{reason}");
        }
        other => panic!("the burst was not refused: {other:?}"),
    }
    task.close().await;

    // Denials past 2 × p99 (at least 1) in one call raise an alert; the call goes on.
    let h = harness_watching(
        MonitorSettings { denials: rule(AnomalyAction::Alert, 2.0), ..MonitorSettings::default() },
        Some(baseline()),
    );
    let tool = h.load(probe(port, Vec::new()));
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    let probing = serde_json::json!({ "action": "repeat", "times": 3,
        "do": get(format!("http://not-granted.test:{port}/")) });
    let report = task.invoke(Call::tool(probing.to_string())).await.unwrap();
    assert_eq!(output(&report)["failed"], 3);
    task.close().await;
    let events = h.audit_events();
    let anomaly = events_of(&events, "anomaly");
    assert_eq!(anomaly.len(), 1, "one alert, at the third denial: {anomaly:?}");
    assert_eq!((anomaly[0]["metric"].as_str(), anomaly[0]["action"].as_str()), (Some("denials"), Some("alert")));
    assert_eq!(anomaly[0]["observed"], "3 denials in a call");
}
