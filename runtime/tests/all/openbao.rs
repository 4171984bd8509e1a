//! The `openbao` provider against a real OpenBao server (dev mode on a free
//! 127.0.0.1 port, started by the harness): each task gets a child token
//! that dies at its deadline, each invocation leases a PKI certificate under
//! it, and teardown revokes the lease when the call ends — however it ends —
//! and the child token when the task closes.

use crate::common::slow_proxy::SlowProxy;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Harness, guests, secs};
use toolcell_runtime::credentials::config::{OpenBaoConfig, ProviderConfig, SecretSource};
use toolcell_runtime::policy::credential::{CredentialSpec, Exposure, ProviderKind};
use toolcell_runtime::{Call, CallResult, InvokeError, Manifest, Runtime, RuntimeConfig, TaskRequest, TimeSpan};
use toolcell_test_guests::openbao::{OpenBao, openbao};

pub(crate) struct Bao {
    pub(crate) harness: Harness,
    server: &'static OpenBao,
}

fn setup() -> Bao {
    setup_at(openbao().address.clone())
}

/// A runtime whose OpenBao requests go to `address` (the server, or a proxy in front of it).
fn setup_at(address: String) -> Bao {
    let harness = Harness::new();
    let config = bao_config(&harness, address);
    Bao::with_config(harness, config)
}

/// The config of a runtime whose OpenBao requests go to `address`, auditing in the harness's dir.
pub(crate) fn bao_config(harness: &Harness, address: String) -> RuntimeConfig {
    let server = openbao();
    let token = harness.dir.path().join("bao-token");
    std::fs::write(&token, &server.root_token).unwrap();
    let secret = toml::from_str(
        r#"
audience = "pki:tool"
path = "pki/issue/tool"
data = { common_name = "{task}.toolcell.test", ttl = "{ttl}" }
field = "certificate"
"#,
    )
    .unwrap();
    RuntimeConfig {
        audit_log: Some(harness.dir.path().join("audit.jsonl")),
        scratch_root: Some(harness.scratch_root()),
        lease_journal: Some(harness.dir.path().join("leases")),
        credentials: ProviderConfig {
            openbao: Some(OpenBaoConfig {
                address,
                token: SecretSource::File(token),
                timeout: TimeSpan(Duration::from_secs(5)),
                secrets: vec![secret],
            }),
            ..ProviderConfig::default()
        },
        ..RuntimeConfig::default()
    }
}

impl Bao {
    /// A runtime on `config` (from [`bao_config`]) in `harness`.
    pub(crate) fn with_config(mut harness: Harness, config: RuntimeConfig) -> Bao {
        harness.runtime = Runtime::with_engine(harness.runtime.engine().clone(), config).unwrap();
        Bao { harness, server: openbao() }
    }
}

pub(crate) fn manifest() -> Manifest {
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    manifest.credentials = vec![CredentialSpec {
        name: "cert".into(),
        provider: ProviderKind::Openbao,
        scopes: vec!["tool-pki".into()],
        audience: "pki:tool".into(),
        max_ttl: TimeSpan(Duration::from_secs(120)),
        exposure: Exposure::Reveal,
        approval: None,
    }];
    manifest.limits.timeout = secs(4);
    manifest
}

/// Acquire the certificate, reveal it, then do `then` in the same call.
pub(crate) fn acquire_then(then: serde_json::Value) -> Call {
    Call::tool(serde_json::json!({ "action": "acquire", "name": "cert", "reveal": true, "then": then }).to_string())
}

impl Bao {
    /// Waits for the `n`th lease minted in this runtime (from 1); returns its id.
    pub(crate) async fn minted_lease(&self, n: usize) -> String {
        let started = Instant::now();
        loop {
            let leases: Vec<String> = self
                .harness
                .audit_events()
                .iter()
                .filter(|e| e["event"] == "credential_minted" && e["credential"] == "cert")
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            if let Some(lease) = leases.get(n - 1) {
                return lease.clone();
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no lease was minted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn task_token(&self) -> String {
        let events = self.harness.audit_events();
        let token = events.iter().find(|e| e["event"] == "credential_minted" && e["credential"] == "task token");
        token.expect("a task token was minted")["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn lease_exists(&self, lease: &str) -> bool {
        let (server, lease) = (self.server, lease.to_owned());
        tokio::task::spawn_blocking(move || server.lease_exists(&lease)).await.unwrap()
    }

    pub(crate) async fn token_exists(&self, accessor: &str) -> bool {
        let (server, accessor) = (self.server, accessor.to_owned());
        tokio::task::spawn_blocking(move || server.token_exists(&accessor)).await.unwrap()
    }

    /// Waits (for background revocation) until the lease is gone.
    pub(crate) async fn until_lease_gone(&self, lease: &str) {
        let started = Instant::now();
        while self.lease_exists(lease).await {
            assert!(started.elapsed() < Duration::from_secs(20), "lease {lease} was never revoked");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn the_lease_and_task_token_live_during_the_call_and_die_at_teardown() {
    let bao = setup();
    let tool = bao.harness.load(manifest());
    let task = bao.harness.runtime.open_task(&tool, TaskRequest::new("carol", Duration::from_secs(90))).unwrap();
    let call = task.invoke(acquire_then(serde_json::json!({ "action": "sleep", "seconds": 2 })));
    let look = async {
        let lease = bao.minted_lease(1).await;
        let accessor = bao.task_token();
        assert!(bao.lease_exists(&lease).await, "the lease exists while the call runs");
        assert!(bao.token_exists(&accessor).await, "the task token exists while the call runs");
        // The child token dies no later than the task's deadline.
        let (server, acc) = (bao.server, accessor.clone());
        let lookup =
            tokio::task::spawn_blocking(move || server.must(&["token", "lookup", "-format=json", "-accessor", &acc]))
                .await
                .unwrap();
        let ttl = serde_json::from_str::<serde_json::Value>(&lookup).unwrap()["data"]["ttl"].as_u64().unwrap();
        assert!(ttl <= 90, "task token ttl {ttl}s is past the task's deadline");
        (lease, accessor)
    };
    let (report, (lease, accessor)) = tokio::join!(call, look);
    let report = report.unwrap();
    let CallResult::Output(output) = &report.result else { panic!("{:?}", report.result) };
    let output: serde_json::Value = serde_json::from_str(output).unwrap();
    let certificate = output["reveal"]["value"].as_str().unwrap();
    assert!(certificate.starts_with("-----BEGIN CERTIFICATE-----"), "{certificate}");
    assert_eq!(output["scopes"], serde_json::json!(["tool-pki"]));

    // The call is over: its lease is revoked; the task's token lives until the task closes.
    assert!(!bao.lease_exists(&lease).await, "the lease outlived its call");
    assert!(bao.token_exists(&accessor).await);
    task.close().await;
    assert!(!bao.token_exists(&accessor).await, "the task token outlived its task");

    let events = bao.harness.audit_events();
    let revoked: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "credential_revoked")
        .map(|e| (e["id"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(revoked, vec![(lease.as_str(), "revoked"), (accessor.as_str(), "revoked")]);
    let audit = bao.harness.audit_text();
    assert!(!audit.contains(&bao.server.root_token) && !audit.contains("BEGIN CERTIFICATE"));
    // Everything journaled was closed.
    let journals: Vec<_> = std::fs::read_dir(bao.harness.dir.path().join("leases")).unwrap().collect();
    assert_eq!(journals.len(), 1);
    let journal = std::fs::read_to_string(journals[0].as_ref().unwrap().path()).unwrap();
    assert!(journal.contains(&lease) && journal.contains("\"op\":\"closed\""), "{journal}");
}

#[tokio::test]
async fn leases_are_revoked_after_a_trap_a_timeout_and_a_cancelled_call() {
    let bao = setup();
    let tool = bao.harness.load(manifest());
    let task = bao.harness.runtime.open_task(&tool, TaskRequest::new("dave", Duration::from_secs(90))).unwrap();

    let trap = task.invoke(acquire_then(serde_json::json!({ "action": "panic" }))).await;
    assert!(matches!(trap, Err(InvokeError::Trap { .. })), "{trap:?}");
    let lease = bao.minted_lease(1).await;
    assert!(!bao.lease_exists(&lease).await, "a trap left the lease");

    let timeout = task.invoke(acquire_then(serde_json::json!({ "action": "sleep", "seconds": 30 }))).await;
    assert!(matches!(timeout, Err(InvokeError::Limit(_))), "{timeout:?}");
    let lease = bao.minted_lease(2).await;
    assert!(!bao.lease_exists(&lease).await, "a timeout left the lease");

    let call = task.invoke(acquire_then(serde_json::json!({ "action": "sleep", "seconds": 30 })));
    let cancel = async {
        let lease = bao.minted_lease(3).await;
        assert!(bao.lease_exists(&lease).await);
        lease
    };
    let lease = tokio::select! {
        _ = call => panic!("the call should still be sleeping"),
        lease = cancel => lease,
    };
    // The call's future is dropped: its lease is revoked in the background.
    bao.until_lease_gone(&lease).await;
    let accessor = bao.task_token();
    // A task dropped without `close` still revokes its token.
    drop(task);
    let started = Instant::now();
    while bao.token_exists(&accessor).await {
        assert!(started.elapsed() < Duration::from_secs(20), "the dropped task's token was never revoked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bao.harness.runtime.settle_revocations(Duration::from_secs(5)).await, 0);
    bao.harness.still_serves().await;
}

#[tokio::test]
async fn the_task_token_carries_only_the_granted_scopes_as_policies() {
    let bao = setup();
    let mut manifest = manifest();
    // The child token's policies are the granted scopes: without `tool-pki`
    // OpenBao itself refuses the lease.
    manifest.credentials[0].scopes = vec!["default".into()];
    let report = bao.harness.call(manifest, acquire_then(serde_json::json!({ "action": "echo" }))).await.unwrap();
    match &report.result {
        CallResult::ToolError(toolcell_runtime::ToolError::Upstream(message)) => {
            // The tool hears that the provider refused; OpenBao's own answer is for the operator.
            assert!(message.contains("the openbao provider could not mint it"), "{message}");
            assert!(!message.contains("permission denied") && !message.contains(&bao.server.address), "{message}");
        }
        other => panic!("expected OpenBao to refuse: {other:?}"),
    }
    let events = bao.harness.audit_events();
    let refused = events.iter().find(|e| e["event"] == "credential_refused").expect("the refusal is audited");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("leasing `pki/issue/tool`") && reason.contains("permission denied"), "{reason}");
}

#[tokio::test]
async fn a_failed_revocation_is_retried_in_the_background_and_reported() {
    let bao = setup();
    let token_file = bao.harness.dir.path().join("bao-token");
    let tool = bao.harness.load(manifest());
    let task = bao.harness.runtime.open_task(&tool, TaskRequest::new("frank", Duration::from_secs(90))).unwrap();
    let call = task.invoke(acquire_then(serde_json::json!({ "action": "sleep", "seconds": 1 })));
    let sabotage = async {
        let lease = bao.minted_lease(1).await;
        // The runtime's own token goes bad while the call runs: teardown cannot revoke.
        std::fs::write(&token_file, "not-a-valid-token").unwrap();
        lease
    };
    let (report, lease) = tokio::join!(call, sabotage);
    assert!(report.unwrap().succeeded());
    assert!(bao.lease_exists(&lease).await, "the lease cannot have been revoked with a bad token");
    let retrying = |events: &[serde_json::Value]| {
        events
            .iter()
            .any(|e| e["event"] == "credential_revoked" && e["id"] == lease.as_str() && e["outcome"] == "retrying")
    };
    let events = bao.harness.audit_events();
    assert!(retrying(&events), "the failure is reported: {events:?}");
    let reason = events.iter().find(|e| e["outcome"] == "retrying").unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("permission denied") && !reason.contains("not-a-valid-token"), "{reason}");

    // The operator fixes the token; a background retry revokes the lease.
    std::fs::write(&token_file, &bao.server.root_token).unwrap();
    assert_eq!(bao.harness.runtime.settle_revocations(Duration::from_secs(20)).await, 0);
    assert!(!bao.lease_exists(&lease).await, "the retried revocation did not happen");
    let revoked = bao
        .harness
        .audit_events()
        .iter()
        .any(|e| e["event"] == "credential_revoked" && e["id"] == lease.as_str() && e["outcome"] == "revoked");
    assert!(revoked);
    task.close().await;
}

#[tokio::test]
async fn a_task_token_never_carries_a_policy_that_was_not_granted() {
    use toolcell_runtime::{CredentialNarrowing, Narrowing};
    let bao = setup();
    let tool = bao.harness.load(manifest());
    // Narrowed to no scopes, the child token would be created with no
    // policies, which OpenBao reads as "the parent's" (here: root). Refused.
    let empty = Narrowing {
        credentials: Some(vec![CredentialNarrowing { name: "cert".into(), scopes: Some(Vec::new()), max_ttl: None }]),
        ..Narrowing::default()
    };
    let request = TaskRequest { narrowing: empty, ..TaskRequest::new("mallory", Duration::from_secs(60)) };
    let error = bao.harness.runtime.open_task(&tool, request).unwrap_err().to_string();
    assert!(error.contains("credential `cert` narrowed to no scopes would grant no OpenBao policy"), "{error}");

    // The child token carries exactly the granted policies, as OpenBao itself reports.
    let task = bao.harness.runtime.open_task(&tool, TaskRequest::new("carol", Duration::from_secs(60))).unwrap();
    let call = task.invoke(acquire_then(serde_json::json!({ "action": "sleep", "seconds": 1 })));
    let look = async {
        bao.minted_lease(1).await;
        let (server, accessor) = (bao.server, bao.task_token());
        let lookup = tokio::task::spawn_blocking(move || {
            server.must(&["token", "lookup", "-format=json", "-accessor", &accessor])
        })
        .await
        .unwrap();
        serde_json::from_str::<serde_json::Value>(&lookup).unwrap()["data"]["policies"].clone()
    };
    let (report, policies) = tokio::join!(call, look);
    assert!(report.unwrap().succeeded());
    assert_eq!(policies, serde_json::json!(["tool-pki"]), "the task token carries more than its grant");
    task.close().await;
}

/// The server's `127.0.0.1:PORT`, for a proxy in front of it.
fn upstream() -> String {
    openbao().address.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_caller_that_goes_away_mid_teardown_cannot_stop_the_revocations() {
    // Every lease revocation is held 1.5s on its way to OpenBao, so the
    // teardown of a finished call is still revoking when its caller drops it.
    let proxy = SlowProxy::start(upstream(), "revoke", Duration::from_millis(1500)).await;
    let bao = setup_at(proxy.address.clone());
    let mut manifest = manifest();
    let mut second = manifest.credentials[0].clone();
    second.name = "cert2".into();
    manifest.credentials.push(second);
    let tool = bao.harness.load(manifest);
    let task = bao.harness.runtime.open_task(&tool, TaskRequest::new("grace", Duration::from_secs(90))).unwrap();
    let both = serde_json::json!({
        "action": "acquire", "name": "cert", "then": { "action": "acquire", "name": "cert2" },
    });
    tokio::select! {
        report = task.invoke(Call::tool(both.to_string())) => panic!("the teardown finished too soon: {report:?}"),
        // The call is over and its teardown is revoking the first lease: the caller goes away.
        () = proxy.holding() => {}
    }
    let lease_of = |name: &str| {
        let events = bao.harness.audit_events();
        let minted = events.iter().find(|e| e["event"] == "credential_minted" && e["credential"] == name);
        minted.expect("both leases were minted")["id"].as_str().unwrap().to_owned()
    };
    let (first, second) = (lease_of("cert"), lease_of("cert2"));
    // Both leases are revoked all the same: the teardown belongs to the runtime.
    bao.until_lease_gone(&first).await;
    bao.until_lease_gone(&second).await;
    assert_eq!(bao.harness.runtime.settle_revocations(Duration::from_secs(20)).await, 0);
    let events = bao.harness.audit_events();
    let revoked: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "credential_revoked" && e["outcome"] == "revoked")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(revoked.contains(&first.as_str()) && revoked.contains(&second.as_str()), "{revoked:?}");
    // The call had finished: its record says so, not `cancelled`.
    let ended = events.iter().find(|e| e["event"] == "invocation_ended").expect("the invocation's record is closed");
    assert_eq!(ended["outcome"], "ok", "{ended}");
    task.close().await;
}

#[tokio::test]
async fn a_lease_minted_after_its_call_ended_is_revoked_at_once() {
    // The lease request is held 3s; the call's deadline is 2s: the call ends
    // (timeout) while OpenBao is still issuing the lease.
    let proxy = SlowProxy::start(upstream(), "pki/issue", Duration::from_secs(3)).await;
    let bao = setup_at(proxy.address.clone());
    let mut manifest = manifest();
    manifest.limits.timeout = secs(2);
    let tool = bao.harness.load(manifest);
    // The task stays open (its token alive), so OpenBao does issue the lease.
    let task = bao.harness.runtime.open_task(&tool, TaskRequest::new("heidi", Duration::from_secs(90))).unwrap();
    let report = task.invoke(acquire_then(serde_json::json!({ "action": "echo" }))).await;
    assert!(matches!(report, Err(InvokeError::Limit(_))), "{report:?}");
    // The mint completes after the call ended; it is revoked at once.
    assert_eq!(bao.harness.runtime.settle_revocations(Duration::from_secs(20)).await, 0);
    let lease = bao.minted_lease(1).await;
    assert!(!bao.lease_exists(&lease).await, "a lease minted after its call ended is still alive");
    let events = bao.harness.audit_events();
    let revoked = events
        .iter()
        .find(|e| e["event"] == "credential_revoked" && e["id"] == lease.as_str())
        .expect("the late lease's revocation is audited");
    assert_eq!(revoked["outcome"], "revoked");
    assert_eq!(revoked["reason"], "minted after its call ended");
    task.close().await;
    bao.harness.still_serves().await;
}
