//! The runtime: the public API's entry point. It loads tools (checking the
//! operator's boundary and the component's pin), describes them, opens
//! tasks, and holds what every task shares: the engine, the network, the
//! audit trail, the scratch root and the credential providers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use secrecy::SecretString;

use crate::approval::{ApprovalChannel, Approvals};
use crate::audit::{Audit, AuditKind, AuditScope};
use crate::bindings::ToolPre;
use crate::boundary::Boundary;
use crate::call::{TaskRequest, ToolInfo};
use crate::caps::stdio::OutputSink;
use crate::config::RuntimeConfig;
use crate::credentials::broker::Broker;
use crate::credentials::issuer::{AccessClaims, Issuer, VerifyError};
use crate::credentials::journal::LeaseJournal;
use crate::credentials::providers::Providers;
use crate::credentials::task_token::{TaskCredentials, Workload};
use crate::decide::task::OpenTask;
use crate::decide::{CallContext, Denial, PolicyPoint, Request, TaskFacts, decide};
use crate::described::{Described, DescribedIndex};
use crate::engine::{Pre, Shape, Tool, ToolEngine};
use crate::error::{InvokeError, LoadError, RuntimeError, TaskError};
use crate::grant::{Grant, Narrowing, WideningError};
use crate::invocation::{StoreParts, build_store, classify, millis, new_id, with_timeout};
use crate::manifest::Manifest;
use crate::meter::Meter;
use crate::oversight::{
    Anomaly, Baseline, Kill, KillError, KillReport, KillSwitch, KillTarget, LiveTask, Oversight, RateLimits, TaskLife,
    Watch,
};
use crate::reports::{OverdueReview, ReviewOverdue};
use crate::request_policy::{PrincipalAttributes, RequestPolicies, ToolFacts};
use crate::scratch::ScratchRoot;
use crate::store::{InvocationIds, InvocationState, WitToolInfo};
use crate::task::Task;
use crate::transport::Network;

/// Runs tools: loads components, opens tasks, records the audit trail.
#[derive(Debug)]
pub struct Runtime {
    engine: Arc<ToolEngine>,
    network: Network,
    audit: Arc<Audit>,
    trust_domain: String,
    scratch: Arc<ScratchRoot>,
    boundary: Boundary,
    providers: Arc<Providers>,
    /// Request-time policies, principals and approvals.
    policy: Arc<PolicyPoint>,
    /// What a tool past its review date gets.
    overdue_review: OverdueReview,
}

/// Today's date, UTC.
fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

impl Runtime {
    /// Builds a runtime with its own engine.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine = ToolEngine::new(config.engine.clone())?;
        Runtime::with_engine(engine, config)
    }

    /// Builds a runtime on an existing engine (`config.engine` is ignored).
    /// Runtimes sharing an engine share its compiled code and its
    /// concurrency limit.
    pub fn with_engine(engine: Arc<ToolEngine>, config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let audit = match &config.audit_log {
            Some(path) => Audit::to_file(path, &config.audit)?,
            None => Audit::tracing_only(),
        };
        let tls = crate::transport::Tls::new(&config.tls_roots).map_err(RuntimeError::Tls)?;
        let audit = Arc::new(audit);
        let issuer_url =
            config.credentials.issuer.url.clone().unwrap_or_else(|| format!("https://{}", config.trust_domain));
        let issuer = Arc::new(match &config.credentials.issuer.keys {
            Some(path) => Issuer::open(issuer_url, path)?,
            None => Issuer::new(issuer_url),
        });
        let (journal, leftovers) = match &config.lease_journal {
            Some(path) => {
                let (journal, leftovers) = LeaseJournal::open(path)?;
                (Some(journal), leftovers)
            }
            None => (None, Vec::new()),
        };
        // Ambient authority: the system temp dir, unless the operator names a scratch root.
        let scratch_root = config.scratch_root.clone().unwrap_or_else(std::env::temp_dir);
        let scratch = ScratchRoot::open(&scratch_root)
            .map_err(|cause| RuntimeError::Scratch { path: scratch_root.clone(), cause })?;
        let boundary = Boundary::new(&config, scratch.dir());
        let providers = Arc::new(Providers::new(config.credentials, issuer, journal, &tls));
        // What a runtime that crashed mid-task left is revoked first.
        providers.recover(leftovers, &audit);
        let policies = match &config.policy_dir {
            Some(dir) => RequestPolicies::load_dir(dir, config.policy_mode)?,
            None => RequestPolicies::load(&[], config.policy_mode)?,
        };
        let approvals = Arc::new(Approvals::new(config.approvals.clone()));
        let kills = KillSwitch::open(config.kill_file.clone())?;
        let baseline = config.monitor.baseline.as_deref().map(Baseline::load).transpose()?;
        let watch = Watch::new(config.monitor.clone(), baseline);
        let rates = RateLimits::new(config.rate_limits.clone());
        let oversight = Arc::new(Oversight::new(kills, rates, watch, audit.clone()));
        let policy = Arc::new(PolicyPoint::new(policies, config.principals.clone(), approvals, oversight));
        Ok(Runtime {
            engine,
            network: Network { resolver: config.resolver, tls },
            audit,
            trust_domain: config.trust_domain,
            scratch: Arc::new(scratch),
            boundary,
            providers,
            policy,
            overdue_review: config.overdue_review,
        })
    }

    /// The request-time policies in force.
    pub fn policies(&self) -> Arc<RequestPolicies> {
        self.policy.policies()
    }

    /// Replaces the request-time policies (a reload): decisions from now on
    /// use the new set; a decision already asked keeps the one it started with.
    pub fn set_policies(&self, policies: RequestPolicies) {
        self.policy.set_policies(policies);
    }

    /// Replaces what policies see of principals (roles, groups).
    pub fn set_principals(&self, principals: std::collections::HashMap<String, PrincipalAttributes>) {
        self.policy.set_principals(principals);
    }

    /// toolcell as an OAuth resource server for `config`'s authorization
    /// server, fetching its metadata and keys with the runtime's TLS roots;
    /// `served` is the resource identifier when the config names none.
    pub fn resource_server(
        &self,
        config: crate::identity::OAuthConfig,
        served: &str,
    ) -> Result<crate::identity::ResourceServer, crate::identity::OAuthConfigError> {
        crate::identity::ResourceServer::new(config, served, self.network.tls.clone())
    }

    /// Records that a caller's token was refused at `transport` (never the
    /// token: the refusal names the claim or key that failed).
    pub fn record_caller_refused(&self, transport: &'static str, refusal: &crate::identity::TokenRefusal) {
        tracing::warn!(target: "toolcell::oauth", reason = refusal.code(), "caller refused: {refusal}");
        let scope = AuditScope {
            audit: self.audit.clone(),
            task: String::new(),
            tool: String::new(),
            principal: String::new(),
            actor: None,
            request: None,
        };
        scope.record_or_log(AuditKind::CallerRefused {
            transport,
            reason: refusal.code(),
            detail: refusal.to_string(),
        });
    }

    /// POSTs `body` as JSON to an endpoint the operator configured (the
    /// approval webhook), `http` or `https` with the runtime's TLS roots,
    /// within `timeout`; returns the answer's status. No egress rule applies:
    /// it is the operator's own integration, never a tool's.
    pub async fn post_operator_json(&self, url: &str, body: String, timeout: Duration) -> Result<u16, String> {
        let headers = [("content-type", "application/json")];
        crate::credentials::upstream::send(
            &self.network.tls,
            http::Method::POST,
            url,
            &headers,
            body.into_bytes(),
            timeout,
        )
        .await
        .map(|answer| answer.status)
        .map_err(|error| error.to_string())
    }

    /// The approval requests waiting for a person, and the door their answers come through.
    pub fn approvals(&self) -> &Arc<Approvals> {
        &self.policy.approvals
    }

    /// The operator's controls over this runtime: approvals, what is
    /// running, kills. A cheap handle, for the admin interface.
    pub fn controls(&self) -> Controls {
        Controls { point: self.policy.clone() }
    }

    /// This runtime's scratch directory: each invocation granted scratch
    /// space gets a fresh directory inside it.
    pub fn scratch_dir(&self) -> &std::path::Path {
        self.scratch.dir()
    }

    /// The built-in issuer's public keys (a JWKS, RFC 7517), for services
    /// that verify the tokens tools carry.
    pub fn jwks(&self) -> serde_json::Value {
        self.providers.issuer.jwks()
    }

    /// The built-in issuer: its URL, rotation of its keys, and verification.
    pub fn issuer(&self) -> &Issuer {
        &self.providers.issuer
    }

    /// Verifies an issuer token for `audience` as this runtime sees it:
    /// revoked tokens (every token after its call's teardown) are refused.
    pub fn verify_token(&self, token: &SecretString, audience: &str) -> Result<AccessClaims, VerifyError> {
        self.providers.issuer.verify(token, audience)
    }

    /// An RFC 7662 introspection answer for `token`: `"active": true` with
    /// its claims while it is one of this runtime's issuer tokens, unexpired
    /// and not revoked; `"active": false` (and nothing else) otherwise — the
    /// moment the call that minted it ends, its token answers inactive.
    pub fn introspect(&self, token: &SecretString) -> serde_json::Value {
        match self.providers.issuer.introspect(token) {
            Ok(claims) => serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "iss": claims.iss,
                "sub": claims.sub,
                "aud": claims.aud,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "exp": claims.exp,
                "jti": claims.jti,
                "scope": claims.scope,
                "client_id": claims.client_id,
                "act": claims.act,
            }),
            Err(_) => serde_json::json!({ "active": false }),
        }
    }

    /// Waits until revocations retrying in the background have finished, or
    /// `within` has passed; returns how many are still pending. A process
    /// about to exit calls this; what is still pending stays in the lease
    /// journal for the next start.
    pub async fn settle_revocations(&self, within: Duration) -> usize {
        self.providers.revoker.settled(within).await
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<ToolEngine> {
        &self.engine
    }

    /// The audit trail.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Loads the component a manifest names, checking its pin, after
    /// checking the manifest against the operator's boundary (see
    /// `boundary.rs`: credential lifetimes, where static secrets and
    /// plaintext credentials may go, reserved variables and directories).
    pub fn load_tool(&self, manifest: Manifest) -> Result<Arc<Tool>, LoadError> {
        if let Err(crossing) = self.boundary.check(&manifest) {
            return Err(LoadError::Boundary {
                tool: manifest.name.clone(),
                field: crossing.field,
                reason: crossing.reason,
            });
        }
        let ceiling = self.engine.settings.max_memory;
        if manifest.limits.memory > ceiling {
            return Err(LoadError::MemoryAboveCeiling {
                tool: manifest.name.clone(),
                limit: manifest.limits.memory.to_string(),
                ceiling: ceiling.to_string(),
            });
        }
        let component = self.engine.load(&manifest.component, manifest.sha256.as_ref())?;
        if let Some(overdue) = ReviewOverdue::of(&manifest, today()) {
            let action = self.overdue_review.name();
            tracing::warn!(target: "toolcell::review", "{overdue} (tasks: {action})");
            let scope = AuditScope {
                audit: self.audit.clone(),
                task: String::new(),
                tool: manifest.name.clone(),
                principal: String::new(),
                actor: None,
                request: None,
            };
            scope.record_or_log(AuditKind::ReviewOverdue {
                owner: overdue.owner,
                review_by: overdue.review_by.to_string(),
                action,
            });
        }
        Ok(Arc::new(Tool { manifest, component }))
    }

    /// Describes a tool by calling its `describe` in a fresh instance that is
    /// granted nothing, or by what it answered before where the cache
    /// directory keeps that (see `described`). Commands and plain
    /// components are described from their manifest and exports.
    pub async fn describe(&self, tool: &Tool) -> Result<ToolInfo, InvokeError> {
        let manifest = &tool.manifest;
        if tool.component.shape == Shape::Plain {
            let names: Vec<&str> = tool.component.functions.iter().map(|f| f.name.as_str()).collect();
            return Ok(ToolInfo {
                name: manifest.name.clone(),
                description: format!("{} (exports {})", manifest.purpose, names.join(", ")),
                input_schema: serde_json::json!({
                    "type": "object",
                    "properties": {
                        "function": { "type": "string", "enum": names },
                        "arguments": { "type": "object" }
                    },
                    "required": ["function"]
                }),
                output_schema: None,
                shape: Shape::Plain.name(),
                functions: tool.component.functions.clone(),
            });
        }
        let Pre::Tool(pre) = &tool.component.pre else {
            return Ok(ToolInfo {
                name: manifest.name.clone(),
                description: format!("WASI command: {}", manifest.purpose),
                input_schema: serde_json::json!({
                    "type": "object",
                    "properties": {
                        "args": { "type": "array", "items": { "type": "string" } },
                        "stdin": { "type": "string" }
                    },
                    "additionalProperties": false
                }),
                output_schema: None,
                shape: Shape::Command.name(),
                functions: Vec::new(),
            });
        };
        // Granted nothing, `describe` answers from the component's code alone:
        // what it said at an earlier start is kept by the component's digest.
        let kept = self.engine.settings().cache_dir.as_deref().map(DescribedIndex::new);
        let sha256 = tool.component.sha256;
        let described = match kept.as_ref().and_then(|index| index.lookup(&sha256)) {
            Some(described) => described,
            None => {
                let described = self.ask_describe(manifest, pre).await?;
                if let Some(index) = &kept {
                    index.record(&sha256, &described);
                }
                described
            }
        };
        let parse = |what: &str, text: &str| {
            serde_json::from_str(text)
                .map_err(|error| InvokeError::host(format!("reading the tool's {what} as JSON"), error))
        };
        Ok(ToolInfo {
            input_schema: parse("input schema", &described.input_schema)?,
            output_schema: described.output_schema.as_deref().map(|s| parse("output schema", s)).transpose()?,
            name: described.name,
            description: described.description,
            shape: Shape::Tool.name(),
            functions: Vec::new(),
        })
    }

    /// Calls the tool's `describe` in a fresh instance granted nothing.
    async fn ask_describe(
        &self,
        manifest: &Manifest,
        pre: &ToolPre<InvocationState>,
    ) -> Result<Described, InvokeError> {
        let grant = Grant::new(
            &Manifest {
                filesystem: vec![],
                env: vec![],
                scratch: None,
                egress: vec![],
                sockets: vec![],
                credentials: vec![],
                ..manifest.clone()
            },
            &Narrowing::default(),
        )
        .map(Arc::new)
        .map_err(|error| InvokeError::host("building describe's empty grant", error))?;
        let ids = InvocationIds { task: "describe".into(), invocation: new_id(), tool: manifest.name.clone() };
        let timeout = grant.limits.timeout.0;
        let meter = Arc::new(Meter::new(&grant.limits));
        let work = async {
            let _slot = self.engine.slot().await?;
            // `describe` is granted nothing, egress included.
            let who = AuditScope {
                audit: self.audit.clone(),
                task: ids.task.clone(),
                tool: ids.tool.clone(),
                principal: "toolcell".into(),
                actor: None,
                request: None,
            };
            let facts = Arc::new(self.task_facts(manifest, "toolcell", String::new(), None));
            let deadline = Instant::now() + timeout;
            let call = Arc::new(CallContext::new(ids.invocation.clone(), grant, meter.clone(), facts, deadline));
            let broker = Arc::new(Broker::granting_nothing(self.providers.clone(), call.clone(), who.clone()));
            let parts = StoreParts {
                ids: &ids,
                who,
                call,
                broker,
                network: self.network.clone(),
                deadline,
                sink: OutputSink { forward: None, captured: Default::default() },
                args: &[],
                stdin: Vec::new(),
                scratch: None,
            };
            let mut store = build_store(&self.engine, parts)?;
            let info: WitToolInfo = async {
                let instance = pre.instantiate_async(&mut store).await?;
                instance.call_describe(&mut store).await
            }
            .await
            .map_err(|error| classify(error, &meter, &self.engine.settings))?;
            Ok::<_, InvokeError>(info)
        };
        let info = with_timeout(timeout, None, &meter, work).await?;
        Ok(Described {
            name: info.name,
            description: info.description,
            input_schema: info.input_schema,
            output_schema: info.output_schema,
        })
    }

    /// What policy sees of a task opened now.
    fn task_facts(
        &self,
        manifest: &Manifest,
        principal: &str,
        workload: String,
        channel: Option<Arc<dyn ApprovalChannel>>,
    ) -> TaskFacts {
        TaskFacts {
            point: self.policy.clone(),
            attributes: self.policy.principal(principal),
            tool: ToolFacts { name: manifest.name.clone(), owner: manifest.owner.clone(), tags: manifest.tags.clone() },
            workload,
            opened: Instant::now(),
            totals: Default::default(),
            channel,
            rate_limits: manifest.rate_limits,
            entities: Default::default(),
            kept: Default::default(),
        }
    }

    /// Opens a task: validates the narrowing against the manifest into a
    /// grant, and records the grant in the audit trail.
    pub fn open_task(&self, tool: &Arc<Tool>, request: TaskRequest) -> Result<Task, TaskError> {
        if request.principal.trim().is_empty() {
            return Err(TaskError::NoPrincipal);
        }
        let id = new_id();
        let who = AuditScope {
            audit: self.audit.clone(),
            task: id.clone(),
            tool: tool.manifest.name.clone(),
            principal: request.principal.clone(),
            actor: request.actor.as_ref().map(ToString::to_string),
            request: request.request_id.clone(),
        };
        let oversight = &self.policy.oversight;
        if let Some(kill) = oversight.kills.matching(&request.principal, &tool.manifest.name, None) {
            who.audit.record(who.event(AuditKind::TaskRefused { reason: kill.to_string() }))?;
            return Err(TaskError::Killed(Box::new(kill)));
        }
        if self.overdue_review == OverdueReview::Refuse
            && let Some(overdue) = ReviewOverdue::of(&tool.manifest, today())
        {
            who.audit.record(who.event(AuditKind::TaskRefused { reason: overdue.to_string() }))?;
            return Err(overdue.into());
        }
        let asked = OpenTask { manifest: &tool.manifest, narrowing: &request.narrowing };
        let grant = match decide(Request { who: &who, call: None, action: asked }) {
            Ok(grant) => grant,
            // A refusal is a decision too; a task is not refused unrecorded.
            Err(Denial { unrecorded: Some(error), .. }) => return Err(error.into()),
            Err(denial) => {
                return Err(WideningError { tool: tool.manifest.name.clone(), what: denial.reason }.into());
            }
        };
        let workload = format!("spiffe://{}/tool/{}/task/{id}", self.trust_domain, tool.manifest.name);
        let mut facts = self.task_facts(&tool.manifest, &request.principal, workload.clone(), request.approval_channel);
        facts.attributes.scopes = request.scopes;
        let credentials = Arc::new(TaskCredentials::new(
            self.providers.clone(),
            Workload {
                id: workload.clone(),
                principal: request.principal.clone(),
                actor: request.actor.clone(),
                tool: tool.manifest.name.clone(),
                task: id.clone(),
            },
            SystemTime::now() + request.deadline,
            who.clone(),
            &grant.credentials,
        ));
        let facts = Arc::new(facts);
        let life = Arc::new(TaskLife::new(who, workload.clone(), credentials, facts.clone()));
        let task = Task {
            life: life.clone(),
            oversight: oversight.clone(),
            providers: self.providers.clone(),
            id,
            workload,
            principal: request.principal,
            actor: request.actor,
            request_id: request.request_id,
            deadline: facts.opened + request.deadline,
            grant: Arc::new(grant),
            facts,
            tool: tool.clone(),
            engine: self.engine.clone(),
            network: self.network.clone(),
            audit: self.audit.clone(),
            scratch: self.scratch.clone(),
        };
        task.audit.record(task.event(AuditKind::TaskOpened {
            workload: task.workload.clone(),
            deadline_ms: millis(request.deadline),
            grant: task.grant.summary(),
        }))?;
        // Listed (and killable) once its record is open; a kill put in force
        // since the check above closes it as soon as it is listed.
        oversight.live.opened(life);
        if let Some(kill) = oversight.kills.matching(&task.principal, &tool.manifest.name, Some(&task.id)) {
            task.life.kill(&kill);
        }
        Ok(task)
    }
}

/// The operator's controls over a runtime (see [`Runtime::controls`]).
#[derive(Clone, Debug)]
pub struct Controls {
    point: Arc<PolicyPoint>,
}

impl Controls {
    /// The approval requests raised by the runtime's calls.
    pub fn approvals(&self) -> &Arc<Approvals> {
        &self.point.approvals
    }

    /// The tasks open now, with their calls in flight, oldest first.
    pub fn tasks(&self) -> Vec<LiveTask> {
        self.point.oversight.live.views()
    }

    /// True when the task `task` is open.
    pub fn task_is_open(&self, task: &str) -> bool {
        self.point.oversight.live.is_open(task)
    }

    /// The kills in force.
    pub fn kills(&self) -> Vec<Kill> {
        self.point.oversight.kills.in_force()
    }

    /// Puts a kill in force: every call it names is stopped at once and
    /// torn down (its credentials revoked, the revocations audited with the
    /// kill), every task it names is closed, and new tasks and calls are
    /// refused, naming the kill, until [`Controls::unkill`] or `lasting`
    /// runs out. Resolves when all of that is done; the report says how
    /// long it took. The kill is kept in the kill file, if the config names
    /// one, so a restarted runtime refuses the same.
    pub async fn kill(
        &self,
        target: KillTarget,
        reason: Option<String>,
        by: &str,
        lasting: Option<Duration>,
    ) -> KillReport {
        self.point.oversight.kill(Kill::new(target, reason, by, lasting)).await
    }

    /// Lifts the kills of exactly `target`; returns them (none: nothing was
    /// killed so).
    pub fn unkill(&self, target: &KillTarget, by: &str) -> Result<Vec<Kill>, KillError> {
        self.point.oversight.unkill(target, by)
    }

    /// Replaces the behaviour baseline live behaviour is compared with
    /// (`None`: only the deny storm is watched).
    pub fn set_baseline(&self, baseline: Option<Baseline>) {
        self.point.oversight.watch.set_baseline(baseline);
    }

    /// Every anomaly from now on, as it is raised (for the server's webhook).
    pub fn anomalies(&self) -> tokio::sync::broadcast::Receiver<Anomaly> {
        self.point.oversight.watch.subscribe()
    }
}
