//! Oversight against real credentials: what is running (ids, never values),
//! the kill switch stopping calls mid-flight with their OpenBao leases and
//! issuer tokens revoked, kills kept across a restart, and rate limits that
//! say which limit refused and when to retry.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::http_server::TestServer;
use crate::common::{Harness, guests, kinds, secs};
use crate::credentials::{AUDIENCE, bearer, events_of, harness, output, probe, spec};
use crate::openbao::{Bao, acquire_then, bao_config, manifest as bao_manifest};
use secrecy::SecretString;
use toolcell_runtime::credentials::config::ProviderConfig;
use toolcell_runtime::credentials::issuer::VerifyError;
use toolcell_runtime::policy::credential::{CredentialSpec, Exposure, ProviderKind};
use toolcell_runtime::policy::rate::{PerMinute, RateLimitRule};
use toolcell_runtime::{
    ByteSize, Call, InvokeError, KillTarget, Manifest, Runtime, RuntimeConfig, TaskError, TaskRequest, TimeSpan,
};
use toolcell_test_guests::openbao::openbao;

/// Waits until `ready` holds, for at most 20 s.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The OpenBao certificate plus an issuer token, both revealed, then a long sleep.
fn two_credentials_then_sleep() -> (Manifest, Call) {
    let mut manifest = bao_manifest();
    manifest.name = "leaky".into();
    manifest.credentials.push(CredentialSpec {
        name: "api".into(),
        provider: ProviderKind::Issuer,
        scopes: vec!["read".into()],
        audience: "https://api.test".into(),
        max_ttl: TimeSpan(Duration::from_secs(120)),
        exposure: Exposure::Reveal,
        approval: None,
    });
    manifest.limits.timeout = secs(60);
    let then = serde_json::json!({ "action": "acquire", "name": "api", "reveal": true,
        "then": { "action": "sleep", "seconds": 50 } });
    (manifest, acquire_then(then))
}

#[tokio::test]
async fn a_kill_stops_the_call_mid_flight_revokes_everything_it_held_and_refuses_the_tool_until_lifted() {
    let harness = Harness::new();
    let config = RuntimeConfig {
        kill_file: Some(harness.dir.path().join("kills.json")),
        ..bao_config(&harness, openbao().address.clone())
    };
    let bao = Bao::with_config(harness, config);
    let runtime = &bao.harness.runtime;
    let (manifest, call) = two_credentials_then_sleep();
    let tool = bao.harness.load(manifest.clone());
    let task = runtime.open_task(&tool, TaskRequest::new("agent-7", Duration::from_secs(120))).unwrap();
    let running = tokio::spawn(async move {
        let outcome = task.invoke(call).await;
        (task, outcome)
    });
    let lease = bao.minted_lease(1).await;
    until("the issuer token", || events_of(&bao.harness.audit_events(), "credential_minted").len() == 3).await;
    let task_token = bao.task_token();

    // `toolcell tasks` sees the call and what it holds, by id.
    let tasks = runtime.controls().tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(
        (tasks[0].state.as_str(), tasks[0].principal.as_str(), tasks[0].tool.as_str()),
        ("running", "agent-7", "leaky")
    );
    let held: Vec<&str> = tasks[0].calls[0].credentials.iter().map(|c| c.id.as_str()).collect();
    assert!(held.contains(&lease.as_str()), "{held:?}");

    let started = Instant::now();
    let report = runtime
        .controls()
        .kill(KillTarget::Tool("leaky".into()), Some("exfiltration suspected".into()), "local:ops", None)
        .await;
    let (contained, killed_in) = (report.contained.clone(), started.elapsed());
    assert_eq!((contained.tasks, contained.calls, contained.credentials), (1, 1, 2), "{report:?}");
    assert!(report.not_kept.is_none(), "{report:?}");
    // When the kill returns, the lease, the task's token and the issuer token are dead.
    assert!(!bao.lease_exists(&lease).await, "the lease outlived the kill");
    assert!(!bao.token_exists(&task_token).await, "the task token outlived the kill");
    let (task, outcome) = tokio::time::timeout(Duration::from_secs(5), running).await.unwrap().unwrap();
    match outcome {
        Err(InvokeError::Killed { kill, running: true }) => {
            assert_eq!(kill.id, report.kill.id);
            assert!(kill.to_string().contains("exfiltration suspected"), "{kill}");
        }
        other => panic!("the call was not stopped by the kill: {other:?}"),
    }
    println!("kill of 1 call with 2 credentials contained in {killed_in:?}");

    let events = bao.harness.audit_events();
    let revoked = events_of(&events, "credential_revoked");
    for name in ["cert", "api", "task token"] {
        let event = revoked.iter().find(|e| e["credential"] == name).unwrap_or_else(|| panic!("{name} not revoked"));
        assert!(event["reason"].as_str().unwrap().contains(&report.kill.id), "{event}");
    }
    let api = revoked.iter().find(|e| e["credential"] == "api").unwrap();
    assert_eq!(api["outcome"], "deny_listed");
    let ended = events_of(&events, "invocation_ended");
    assert_eq!(ended[0]["outcome"], "killed");
    let closed = events_of(&events, "task_closed");
    assert_eq!(closed[0]["how"], "killed");
    let kill_event = events_of(&events, "kill");
    assert_eq!((kill_event[0]["decision"].as_str(), kill_event[0]["calls"].as_u64()), (Some("kill"), Some(1)));
    assert_eq!(kill_event[0]["tool"], "leaky");

    // The killed task refuses its next call; the tool refuses new tasks, naming the kill.
    match task.invoke(Call::tool(r#"{"action":"echo"}"#)).await {
        Err(InvokeError::Killed { running: false, .. }) => {}
        other => panic!("a killed task ran a call: {other:?}"),
    }
    task.close().await;
    let refused = runtime.open_task(&tool, TaskRequest::new("someone-else", Duration::from_secs(60))).unwrap_err();
    assert!(matches!(&refused, TaskError::Killed(kill) if kill.id == report.kill.id), "{refused}");
    assert!(refused.to_string().contains("exfiltration suspected"), "{refused}");
    assert!(kinds(&bao.harness.audit_events()).contains(&"task_refused".to_owned()));
    // Another tool is not touched.
    let other = bao.harness.load(Manifest { name: "other".into(), ..manifest.clone() });
    let task = runtime.open_task(&other, TaskRequest::new("agent-7", Duration::from_secs(60))).unwrap();
    assert!(task.invoke(Call::tool(r#"{"action":"echo"}"#)).await.unwrap().succeeded());
    task.close().await;

    // Lifted, the tool serves again; lifting twice finds nothing.
    let lifted = runtime.controls().unkill(&KillTarget::Tool("leaky".into()), "local:ops").unwrap();
    assert_eq!(lifted.len(), 1);
    let task = runtime.open_task(&tool, TaskRequest::new("agent-7", Duration::from_secs(60))).unwrap();
    assert!(task.invoke(Call::tool(r#"{"action":"echo"}"#)).await.unwrap().succeeded());
    task.close().await;
    assert!(runtime.controls().unkill(&KillTarget::Tool("leaky".into()), "local:ops").unwrap().is_empty());
    assert!(runtime.controls().tasks().is_empty(), "closed tasks are not listed");
}

#[tokio::test]
async fn kills_survive_a_restart_and_lapse_when_their_time_is_up() {
    let harness = Harness::new();
    let kills = harness.dir.path().join("state/kills.json");
    let config = || RuntimeConfig {
        kill_file: Some(kills.clone()),
        audit_log: Some(harness.dir.path().join("audit.jsonl")),
        ..RuntimeConfig::default()
    };
    let first = Runtime::with_engine(harness.runtime.engine().clone(), config()).unwrap();
    let lasting = Some(Duration::from_secs(5));
    let report = first
        .controls()
        .kill(KillTarget::Principal("mallory".into()), Some("probing".into()), "local:ops", lasting)
        .await;
    assert_eq!(report.contained.tasks, 0);
    drop(first);

    let restarted = Runtime::with_engine(harness.runtime.engine().clone(), config()).unwrap();
    let tool = restarted.load_tool(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL))).unwrap();
    let refused = restarted.open_task(&tool, TaskRequest::new("mallory", Duration::from_secs(60))).unwrap_err();
    assert!(refused.to_string().contains("principal `mallory` was killed by local:ops"), "{refused}");
    assert!(refused.to_string().contains("in force until 20"), "the refusal says until when: {refused}");
    // Others are served.
    restarted.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap().close().await;
    assert_eq!(restarted.controls().kills().len(), 1);
    // The kill lapses by itself, at the second it names.
    let until = std::time::UNIX_EPOCH + Duration::from_secs(report.kill.until.unwrap());
    let left = until.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(100)).await;
    restarted.open_task(&tool, TaskRequest::new("mallory", Duration::from_secs(60))).unwrap().close().await;
    assert!(restarted.controls().kills().is_empty());

    // A kill file that cannot be read stops the runtime from starting, naming it.
    std::fs::write(&kills, "{ not json").unwrap();
    let error = Runtime::with_engine(harness.runtime.engine().clone(), config()).unwrap_err().to_string();
    assert!(error.contains("kills.json") && error.contains("malformed"), "{error}");
}

#[tokio::test]
async fn tasks_show_held_credentials_by_id_never_by_value_and_a_task_kill_deny_lists_its_token() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = harness(ProviderConfig::default());
    let mut manifest = probe(port, vec![bearer(port, "api", ProviderKind::Issuer, &["read"])]);
    manifest.limits.timeout = secs(60);
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(120))).unwrap();
    let task_id = task.id().to_owned();
    let call = serde_json::json!({ "action": "http", "method": "GET", "url": format!("http://api.test:{port}/ok"),
        "then": { "action": "sleep", "seconds": 50 } });
    let running = tokio::spawn(async move { task.invoke(Call::tool(call.to_string())).await });
    until("the injected request", || !server.seen().is_empty()).await;
    let token = server.seen()[0].header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    until("the request's record", || !events_of(&h.audit_events(), "egress").is_empty()).await;

    let tasks = h.runtime.controls().tasks();
    let shown = serde_json::to_string(&tasks).unwrap();
    assert!(!shown.contains(&token), "`toolcell tasks` showed a credential's value");
    let call = &tasks[0].calls[0];
    assert_eq!((call.egress.requests, call.egress.hosts.clone()), (1, vec!["api.test".to_owned()]));
    assert_eq!(tasks[0].egress.hosts, ["api.test"]);
    let minted = events_of(&h.audit_events(), "credential_minted")[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(call.credentials[0].id, minted, "the credential is shown by its jti");
    assert_eq!(call.credentials[0].provider, "issuer");

    let report = h.runtime.controls().kill(KillTarget::Task(task_id), None, "local:ops", None).await;
    assert_eq!((report.contained.calls, report.contained.credentials), (1, 1));
    assert!(matches!(running.await.unwrap(), Err(InvokeError::Killed { running: true, .. })));
    let token = SecretString::from(token);
    assert!(matches!(h.runtime.verify_token(&token, AUDIENCE), Err(VerifyError::Revoked(_))));
    // A task kill refuses nothing else, and is not kept: a new task of the same tool runs.
    assert!(h.runtime.controls().kills().is_empty());
    let again = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    let report = again
        .invoke(Call::tool(
            serde_json::json!({ "action": "http", "method": "GET",
        "url": format!("http://api.test:{port}/ok") })
            .to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(output(&report)["status"], 200);
    again.close().await;
}

/// A runtime with `rules`, resolving api.test to the loopback test server.
fn rate_limited(rules: Vec<RateLimitRule>) -> Harness {
    let mut h = Harness::new();
    let config = RuntimeConfig { rate_limits: rules, ..RuntimeConfig::default() };
    crate::credentials::runtime_with(&mut h, ProviderConfig::default(), config);
    h
}

#[tokio::test]
async fn a_call_over_its_rate_limit_is_refused_naming_the_limit_and_when_to_retry() {
    let h = rate_limited(vec![RateLimitRule {
        tool: Some("*".into()),
        principal: Some("*".into()),
        calls_per_minute: Some(2),
        ..RateLimitRule::default()
    }]);
    let tool = h.load(Manifest::ad_hoc(Path::new(guests::PROBE_TOOL)));
    let echo = || Call::tool(r#"{"action":"echo"}"#);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    for _ in 0..2 {
        assert!(task.invoke(echo()).await.unwrap().succeeded());
    }
    match task.invoke(echo()).await {
        Err(InvokeError::RateLimited(limited)) => {
            assert_eq!((limited.metric, limited.limit), ("calls_per_minute", 2));
            assert_eq!(limited.scope, "principal `alice` on tool `probe-tool`");
            assert!(limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_secs(60));
            assert!(limited.to_string().contains("retry in"), "{limited}");
        }
        other => panic!("the third call in a minute ran: {other:?}"),
    }
    // Per pair: another principal still has its own two.
    let other = h.runtime.open_task(&tool, TaskRequest::new("bob", Duration::from_secs(60))).unwrap();
    assert!(other.invoke(echo()).await.unwrap().succeeded());
    other.close().await;
    task.close().await;
    let ended = events_of(&h.audit_events(), "invocation_ended").into_iter().cloned().collect::<Vec<_>>();
    let limited = ended.iter().find(|e| e["outcome"] == "rate_limited").expect("the refusal is audited");
    assert!(limited["reason"].as_str().unwrap().contains("calls_per_minute"), "{limited}");
}

#[tokio::test]
async fn egress_requests_and_bytes_over_their_limits_are_refused_to_the_tool() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = rate_limited(Vec::new());
    let mut manifest = probe(port, Vec::new());
    manifest.egress[1].methods = vec!["GET".into(), "POST".into()];
    // The tool's own limit, below anything the operator set.
    manifest.rate_limits.tool = PerMinute { requests_per_minute: Some(3), ..PerMinute::default() };
    let tool = h.load(manifest);
    let task = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();

    // Four GETs: the manifest's requests_per_minute = 3 refuses the fourth.
    let get = serde_json::json!({ "action": "http", "method": "GET", "url": format!("http://other.test:{port}/ok") });
    let repeat = serde_json::json!({ "action": "repeat", "times": 4, "do": get });
    let report = task.invoke(Call::tool(repeat.to_string())).await.unwrap();
    let out = output(&report);
    assert_eq!((out["ok"].as_u64(), out["failed"].as_u64()), (Some(3), Some(1)), "{out}");
    let error = out["last_error"].as_str().unwrap();
    assert!(error.contains("requests_per_minute = 3 for tool `probe-tool`") && error.contains("retry in"), "{error}");
    task.close().await;

    // A body that would pass bytes_out_per_minute is refused before it is sent.
    let h = rate_limited(vec![RateLimitRule {
        tool: Some("probe-tool".into()),
        bytes_out_per_minute: Some(ByteSize(1000)),
        ..RateLimitRule::default()
    }]);
    let tool = h.load(tool.manifest.clone());
    let task = h.runtime.open_task(&tool, TaskRequest::new("carol", Duration::from_secs(60))).unwrap();
    let post = |bytes: u32| {
        serde_json::json!({ "action": "http", "method": "POST", "url": format!("http://other.test:{port}/post"),
            "headers": [format!("body-bytes={bytes}")] })
    };
    let report = task.invoke(Call::tool(post(600).to_string())).await.unwrap();
    assert_eq!(output(&report)["body"], "got 600 bytes");
    let seen_before = server.seen().len();
    let report = task.invoke(Call::tool(post(500).to_string())).await.unwrap();
    assert!(!report.succeeded(), "1100 bytes passed a 1000-byte minute");
    assert!(format!("{:?}", report.result).contains("bytes_out_per_minute"), "{:?}", report.result);
    assert_eq!(server.seen().len(), seen_before, "the refused body reached the server");
    task.close().await;
}

#[tokio::test]
async fn a_mint_over_its_rate_limit_is_refused_to_the_tool_naming_the_limit() {
    let server = TestServer::start(None).await;
    let port = server.port;
    let h = rate_limited(vec![RateLimitRule {
        principal: Some("alice".into()),
        mints_per_minute: Some(1),
        ..RateLimitRule::default()
    }]);
    let token = spec("token", ProviderKind::Issuer, &["read"], Exposure::Reveal);
    let tool = h.load(probe(port, vec![token]));
    // The second mint in a minute for alice is refused, naming the limit.
    let mints = h.runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60))).unwrap();
    let acquire = || Call::tool(r#"{"action":"acquire","name":"token","reveal":true}"#);
    assert!(mints.invoke(acquire()).await.unwrap().succeeded());
    let refused = mints.invoke(acquire()).await.unwrap();
    let text = format!("{:?}", refused.result);
    assert!(text.contains("mints_per_minute = 1 for principal `alice`"), "{text}");
    mints.close().await;
    let refused = events_of(&h.audit_events(), "credential_refused").into_iter().cloned().collect::<Vec<_>>();
    assert!(refused[0]["reason"].as_str().unwrap().contains("mints_per_minute"), "{refused:?}");
}
