//! The layer after the grant: request-time policy and human approval.
//! Asked by capabilities, through [`govern`], about each action policies
//! decide (`call`, `http`, `credential`, `socket` connects and sends) once
//! the grant has allowed it and its facts are known (an HTTP request's body
//! digest, a mint's lifetime). It can only deny or hold what the grant
//! allowed: a policy never widens a manifest.
//!
//! With no policy written (`ceiling` mode) and no approval in the manifest,
//! nothing is built and nothing is written: the grant's answer stands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use sha2::Digest as _;

use crate::approval::{ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approvals, Asking};
use crate::audit::{AuditKind, AuditScope, clip, rfc3339};
use crate::decide::{Action, CallContext, Denial, Request, record_refusal};
use crate::oversight::{EgressSoFar, Kill, Oversight, RateLimited, Seen};
use crate::policy::rate::{RateMetric, ToolRateLimits};
use crate::request_policy::{
    Counters, MANIFEST_POLICY, PolicyAction, PolicyQuery, PolicyVerdict, PrincipalAttributes, RequestPolicies,
    TaskEntities, ToolFacts,
};

/// What the decision point's second layer shares across the runtime: the
/// policies in force (replaced whole on reload), what each principal is, the
/// approval requests, and oversight (what is running, kills, rate limits).
#[derive(Debug)]
pub(crate) struct PolicyPoint {
    policies: RwLock<Arc<RequestPolicies>>,
    principals: RwLock<Arc<HashMap<String, PrincipalAttributes>>>,
    pub(crate) approvals: Arc<Approvals>,
    pub(crate) oversight: Arc<Oversight>,
}

impl PolicyPoint {
    pub(crate) fn new(
        policies: RequestPolicies,
        principals: HashMap<String, PrincipalAttributes>,
        approvals: Arc<Approvals>,
        oversight: Arc<Oversight>,
    ) -> PolicyPoint {
        PolicyPoint {
            policies: RwLock::new(Arc::new(policies)),
            principals: RwLock::new(Arc::new(principals)),
            approvals,
            oversight,
        }
    }

    /// The policies in force now. A decision keeps the set it started with.
    pub(crate) fn policies(&self) -> Arc<RequestPolicies> {
        self.policies.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the policies; decisions already asked keep the old set.
    pub(crate) fn set_policies(&self, policies: RequestPolicies) {
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policies);
    }

    /// Replaces what principals are.
    pub(crate) fn set_principals(&self, principals: HashMap<String, PrincipalAttributes>) {
        *self.principals.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(principals);
    }

    /// What the config says of `principal` (nothing: no roles, no groups).
    pub(crate) fn principal(&self, principal: &str) -> PrincipalAttributes {
        self.principals.read().unwrap_or_else(|p| p.into_inner()).get(principal).cloned().unwrap_or_default()
    }
}

/// What a call or task has done so far, counted as it happens.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    mints: AtomicU64,
    denials: AtomicU64,
    /// The hosts requests went to, the first [`MAX_HOSTS`] of them.
    hosts: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The granted socket addresses connected or sent to (`tcp 127.0.0.1:5432`):
    /// at most the grant's, so bounded; access review reads them.
    sockets: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Hosts a tally keeps: enough to show where a task went, bounded whatever a tool does.
const MAX_HOSTS: usize = 32;

impl Tally {
    pub(crate) fn read(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::Acquire),
            bytes_sent: self.bytes_sent.load(Ordering::Acquire),
            bytes_received: self.bytes_received.load(Ordering::Acquire),
            mints: self.mints.load(Ordering::Acquire),
            denials: self.denials.load(Ordering::Acquire),
        }
    }

    fn add_host(&self, host: &str) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if hosts.len() < MAX_HOSTS && !hosts.contains(host) {
            hosts.insert(host.to_owned());
        }
    }

    /// Notes a granted socket address used.
    pub(crate) fn used_socket(&self, address: String) {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).insert(address);
    }

    /// The socket addresses used so far.
    pub(crate) fn sockets_used(&self) -> Vec<String> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Egress so far, as `toolcell tasks` shows it.
    pub(crate) fn egress(&self) -> EgressSoFar {
        let counters = self.read();
        EgressSoFar {
            requests: counters.requests,
            bytes_sent: counters.bytes_sent,
            bytes_received: counters.bytes_received,
            hosts: self.hosts.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect(),
        }
    }
}

/// What policy sees of one task, shared by its calls.
#[derive(Debug)]
pub(crate) struct TaskFacts {
    pub(crate) point: Arc<PolicyPoint>,
    pub(crate) attributes: PrincipalAttributes,
    pub(crate) tool: ToolFacts,
    pub(crate) workload: String,
    pub(crate) opened: Instant,
    /// Every call of the task together.
    pub(crate) totals: Tally,
    /// Where a person at the caller can answer an approval (MCP elicitation).
    pub(crate) channel: Option<Arc<dyn ApprovalChannel>>,
    /// The rate limits the tool's manifest sets for itself.
    pub(crate) rate_limits: ToolRateLimits,
    /// The principal's and task's policy entities, built at the first decision.
    pub(crate) entities: std::sync::OnceLock<Arc<TaskEntities>>,
    /// Allows and denials of actions whose policies read only what is fixed
    /// for the task, with the policy set that decided them.
    pub(crate) kept: std::sync::Mutex<Vec<(Arc<RequestPolicies>, &'static str, PolicyVerdict)>>,
}

impl TaskFacts {
    /// The verdict `policies` gave this task for `action`, if one is kept.
    fn kept(&self, policies: &Arc<RequestPolicies>, action: &'static str) -> Option<PolicyVerdict> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|(set, name, _)| Arc::ptr_eq(set, policies) && *name == action).map(|(_, _, v)| v.clone())
    }

    /// Keeps an allow or denial (an approval is asked each time).
    fn keep(&self, policies: &Arc<RequestPolicies>, action: &'static str, verdict: &PolicyVerdict) {
        if matches!(verdict, PolicyVerdict::Approval { .. }) {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        // A reload replaces the set: what the old one decided is dropped.
        kept.retain(|(set, _, _)| Arc::ptr_eq(set, policies));
        kept.push((policies.clone(), action, verdict.clone()));
    }
}

impl TaskFacts {
    /// A task no policy and no person governs, for unit tests.
    #[cfg(test)]
    pub(crate) fn ungoverned() -> TaskFacts {
        let approvals = Arc::new(Approvals::new(Default::default()));
        let oversight = Arc::new(Oversight::unconfigured());
        TaskFacts {
            point: Arc::new(PolicyPoint::new(RequestPolicies::none(), HashMap::new(), approvals, oversight)),
            attributes: PrincipalAttributes::default(),
            tool: ToolFacts::default(),
            workload: String::new(),
            opened: Instant::now(),
            totals: Tally::default(),
            channel: None,
            rate_limits: ToolRateLimits::default(),
            entities: Default::default(),
            kept: Default::default(),
        }
    }
}

impl CallContext {
    pub(crate) fn count_request(&self, host: &str) {
        for tally in [&self.tally, &self.task.totals] {
            tally.requests.fetch_add(1, Ordering::AcqRel);
            tally.add_host(host);
        }
    }

    pub(crate) fn count_bytes(&self, sent: u64, received: u64) {
        for tally in [&self.tally, &self.task.totals] {
            tally.bytes_sent.fetch_add(sent, Ordering::AcqRel);
            tally.bytes_received.fetch_add(received, Ordering::AcqRel);
        }
    }

    pub(crate) fn count_mint(&self) {
        for tally in [&self.tally, &self.task.totals] {
            tally.mints.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn count_denial(&self) {
        for tally in [&self.tally, &self.task.totals] {
            tally.denials.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// True when a policy, a rate limit or a baseline can change this
    /// call's decisions of `action` (an HTTP request's body is then read
    /// first, so its size counts).
    pub(crate) fn governed(&self, action: &str) -> bool {
        let oversight = &self.task.point.oversight;
        self.task.point.policies().decides(action, &self.task.tool.name)
            || !oversight.rates.idle(&self.task.rate_limits)
            || oversight.watch.watching()
    }

    /// Takes what `action` counts against the rate limits, or says which
    /// limit refuses it.
    fn take_rates(&self, who: &AuditScope, action: &PolicyAction) -> Result<(), RateLimited> {
        let wanted: &[(RateMetric, u64)] = match action {
            PolicyAction::Http { body, .. } => &[(RateMetric::Requests, 1), (RateMetric::BytesOut, body.size)],
            PolicyAction::Credential { .. } => &[(RateMetric::Mints, 1)],
            PolicyAction::Call | PolicyAction::Socket { .. } => return Ok(()),
        };
        self.task.point.oversight.rates.take(wanted, &who.principal, &who.tool, &self.task.rate_limits)
    }

    /// The policy request for `action`, as of now.
    fn query(&self, who: &AuditScope, action: PolicyAction) -> PolicyQuery {
        PolicyQuery {
            principal: who.principal.clone(),
            principal_attributes: self.task.attributes.clone(),
            tool: self.task.tool.clone(),
            task: who.task.clone(),
            workload: self.task.workload.clone(),
            task_age_seconds: self.task.opened.elapsed().as_secs(),
            time: time::OffsetDateTime::now_utc(),
            invocation: self.tally.read(),
            task_total: self.task.totals.read(),
            input: self.input.get().cloned().unwrap_or_default(),
            approved: false,
            action,
            task_entities: self.task.entities.get().cloned(),
        }
    }
}

/// Asks policy (and, where it or the manifest says so, a person) about an
/// action the grant allowed. A denial is recorded in the action's own
/// event shape and counted, like the grant's; every verdict is recorded as
/// a `policy` event naming the policies that determined it.
pub(crate) async fn govern<A: Action>(
    request: Request<'_, A>,
    asked: PolicyAction,
    manifest_approval: Option<&str>,
) -> Result<(), Denial> {
    let Request { who, call, action } = request;
    let call = call.expect("policies decide the actions of calls");
    // Rate limits first, then the baseline: an action over a limit, or one
    // an anomaly rule refuses, is refused before any policy is asked.
    if let Err(limited) = call.take_rates(who, &asked) {
        return Err(refuse(who, call, &action, limited.to_string()));
    }
    if let PolicyAction::Http { host, body, .. } = &asked {
        let oversight = &call.task.point.oversight;
        let sent = call.tally.read().bytes_sent;
        let seen = oversight.watch.request(&who.principal, &who.tool, host, sent, body.size);
        if let Err(stopped) = noticed(who, Some(&call.invocation), oversight, seen) {
            return Err(refuse(who, call, &action, stopped.to_string()));
        }
    }
    let policies = call.task.point.policies();
    if !policies.decides(asked.name(), &who.tool) && manifest_approval.is_none() {
        count(call, &asked);
        return Ok(());
    }
    let resource = asked.resource(&who.tool);
    let action_name = asked.name();
    let fixed = policies.fixed_for_a_task(action_name, &who.tool);
    let mut query = call.query(who, asked);
    // Where the policies read only what is fixed for the task, its first
    // allow or denial stands for the rest of them.
    let decided = match fixed.then(|| call.task.kept(&policies, action_name)).flatten() {
        Some(kept) => kept,
        None => {
            let verdict;
            (verdict, query) = evaluate(&policies, &call.task, query).await;
            if fixed {
                call.task.keep(&policies, action_name, &verdict);
            }
            verdict
        }
    };
    let mut verdict = with_manifest(decided, manifest_approval);
    record_verdict(who, call, &query, &resource, &verdict, None);
    if let PolicyVerdict::Approval { policies: ids, reason: why } = &verdict {
        let id = crate::invocation::new_id();
        let asking = approval_request(who, call, &query, &resource, (&id, ids, why));
        let request = asking.request.clone();
        let approvals = call.task.point.approvals.clone();
        record_approval(who, call, &request, &request.what, "requested", None);
        let outcome = approvals.ask(asking).await;
        let (decision, answered) = match &outcome {
            ApprovalOutcome::Approved { approver, channel } => {
                ("approved", Some((approver.as_str(), channel.as_str(), None)))
            }
            ApprovalOutcome::Denied { approver, channel, reason } => {
                ("denied", Some((approver.as_str(), channel.as_str(), reason.as_deref())))
            }
            ApprovalOutcome::Expired => ("expired", None),
        };
        record_approval(who, call, &request, &resource, decision, answered);
        verdict = match outcome {
            ApprovalOutcome::Approved { .. } => {
                // Asked again as of now: counters moved while it waited.
                let again;
                (again, query) =
                    evaluate(&policies, &call.task, PolicyQuery { approved: true, ..call.query(who, query.action) })
                        .await;
                record_verdict(who, call, &query, &resource, &again, Some(&id));
                again
            }
            ApprovalOutcome::Denied { approver, reason, .. } => PolicyVerdict::Deny {
                policies: ids.clone(),
                reason: match reason {
                    Some(reason) => format!("approval `{id}` was denied by {approver}: {}", clip(&reason, 512)),
                    None => format!("approval `{id}` was denied by {approver}"),
                },
            },
            ApprovalOutcome::Expired => PolicyVerdict::Deny {
                policies: ids.clone(),
                reason: format!("approval `{id}` ({why}) was not answered before it expired or the call's deadline"),
            },
        };
    }
    let (policies, reason) = match verdict {
        PolicyVerdict::Allow { .. } => {
            count(call, &query.action);
            return Ok(());
        }
        PolicyVerdict::Deny { policies, reason } => (policies, reason),
        // Answered above; one still pending here is not an allow.
        PolicyVerdict::Approval { policies, reason } => (policies, format!("not approved: {reason}")),
    };
    let mut denial = Denial::denied(reason);
    denial.policies = policies;
    if let Some(event) = action.denied(Some(call), &denial) {
        denial.unrecorded = record_refusal(who, Some(call), event);
    }
    Err(denial)
}

/// A refusal before policy (a rate limit, an anomaly rule), recorded in the
/// action's own event shape and counted, like the grant's.
fn refuse<A: Action>(who: &AuditScope, call: &CallContext, action: &A, reason: String) -> Denial {
    let mut denial = Denial::denied(reason);
    if let Some(event) = action.denied(Some(call), &denial) {
        denial.unrecorded = record_refusal(who, Some(call), event);
    }
    denial
}

/// What an anomaly rule's action does to the action that raised it.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// It is refused.
    Denied(String),
    /// Its task is ended and the principal or tool quarantined by this kill.
    Killed(Box<Kill>),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Denied(reason) => f.write_str(reason),
            Stopped::Killed(kill) => kill.fmt(f),
        }
    }
}

/// Records what the watcher saw (an `anomaly` event for each anomaly) and
/// carries out its rule. A `kill` rule's quarantine is put in force at once:
/// the calls it names, this one included, are stopped now, and the rest of
/// the containment (teardowns, revocations, tasks closed) runs on the
/// runtime's side, since this call cannot wait for its own end.
pub(crate) fn noticed(
    who: &AuditScope,
    invocation: Option<&str>,
    oversight: &Arc<Oversight>,
    seen: Seen,
) -> Result<(), Stopped> {
    let (anomaly, stopped) = match seen {
        Seen::Fine => return Ok(()),
        Seen::Alert(anomaly) => (anomaly, None),
        Seen::Deny(anomaly) => {
            let reason = format!("refused by {anomaly}");
            (anomaly, Some(Stopped::Denied(reason)))
        }
        Seen::Kill(anomaly, target) => {
            let kill = Kill::new(target, Some(anomaly.to_string()), &format!("anomaly:{}", anomaly.metric), None);
            let containing = oversight.kill(kill.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(containing)),
                // Outside a runtime nothing can be waiting on the calls it stopped.
                Err(_) => {
                    tracing::error!(target: "toolcell::oversight", "kill {} put in force outside a runtime", kill.id)
                }
            }
            (anomaly, Some(Stopped::Killed(Box::new(kill))))
        }
    };
    who.record_or_log(AuditKind::Anomaly {
        invocation: invocation.map(str::to_owned),
        metric: anomaly.metric,
        subject: anomaly.subject,
        observed: clip(&anomaly.observed, 512),
        baseline: clip(&anomaly.baseline, 512),
        action: anomaly.action,
        kill: match &stopped {
            Some(Stopped::Killed(kill)) => Some(kill.id.clone()),
            _ => None,
        },
    });
    stopped.map_or(Ok(()), Err)
}

/// Asks Cedar. A credential's `acquire` and a socket check are decided on
/// the wasm guest's fiber stack, which Cedar's stack-depth check cannot
/// measure (it would report a recursion limit); there the decision runs as
/// its own task, on the runtime's own stack. A `call` is decided before the
/// guest runs, in place. The task's entities are built at its first decision.
async fn evaluate(
    policies: &Arc<RequestPolicies>,
    task: &Arc<TaskFacts>,
    query: PolicyQuery,
) -> (PolicyVerdict, PolicyQuery) {
    if matches!(query.action, PolicyAction::Call) {
        return evaluate_here(policies, task, query);
    }
    let action = query.action.clone();
    let (policies, task) = (policies.clone(), task.clone());
    match tokio::spawn(async move { evaluate_here(&policies, &task, query) }).await {
        Ok(decided) => decided,
        // The decision's task failed: nothing is allowed on its account.
        Err(error) => {
            let reason = format!("the policy decision failed: {error}");
            (PolicyVerdict::Deny { policies: Vec::new(), reason }, PolicyQuery { action, ..PolicyQuery::failed() })
        }
    }
}

/// Asks Cedar on this stack, building the task's entities at its first decision.
fn evaluate_here(policies: &RequestPolicies, task: &TaskFacts, mut query: PolicyQuery) -> (PolicyVerdict, PolicyQuery) {
    if query.task_entities.is_none()
        && let Ok(built) = TaskEntities::of(&query)
    {
        query.task_entities = Some(task.entities.get_or_init(|| Arc::new(built)).clone());
    }
    (policies.evaluate(&query), query)
}

/// Counts an action that goes ahead.
fn count(call: &CallContext, action: &PolicyAction) {
    match action {
        PolicyAction::Http { host, .. } => call.count_request(host),
        PolicyAction::Credential { .. } => call.count_mint(),
        PolicyAction::Call | PolicyAction::Socket { .. } => {}
    }
}

/// The manifest's approval joins the policies' verdict: an allowed action
/// it covers waits too.
fn with_manifest(verdict: PolicyVerdict, manifest_approval: Option<&str>) -> PolicyVerdict {
    let Some(why) = manifest_approval else { return verdict };
    let (mut policies, reason) = match verdict {
        PolicyVerdict::Allow { policies } => (policies, why.to_owned()),
        PolicyVerdict::Approval { policies, reason } => (policies, format!("{reason}; {why}")),
        denied @ PolicyVerdict::Deny { .. } => return denied,
    };
    if !policies.iter().any(|id| id == MANIFEST_POLICY) {
        policies.push(MANIFEST_POLICY.to_owned());
    }
    PolicyVerdict::Approval { policies, reason }
}

fn record_verdict(
    who: &AuditScope,
    call: &CallContext,
    query: &PolicyQuery,
    resource: &str,
    verdict: &PolicyVerdict,
    approval: Option<&str>,
) {
    // Each datagram is a decision; allowing them is not written one by one
    // (denials are, and count against `max_refusals`).
    let datagram = matches!(&query.action, PolicyAction::Socket { operation, .. } if operation == "udp_send");
    if datagram && matches!(verdict, PolicyVerdict::Allow { .. }) {
        return;
    }
    // An allow no policy of the operator's took part in is the grant's, as
    // before policies: the capability's own event records it.
    if let PolicyVerdict::Allow { policies } = verdict
        && approval.is_none()
        && policies.iter().all(|id| id == MANIFEST_POLICY)
    {
        return;
    }
    let reason = match verdict {
        PolicyVerdict::Allow { .. } => None,
        PolicyVerdict::Deny { reason, .. } | PolicyVerdict::Approval { reason, .. } => Some(clip(reason, 1024)),
    };
    who.record_or_log(AuditKind::Policy {
        invocation: call.invocation.clone(),
        action: query.action.name(),
        resource: clip(resource, 1024),
        decision: verdict.name(),
        policies: verdict.policies().to_vec(),
        reason,
        approval: approval.map(str::to_owned),
    });
}

/// An `approval` audit event for `request`, naming it by `resource`; an
/// answer says who gave it, through which channel, and why.
fn record_approval(
    who: &AuditScope,
    call: &CallContext,
    request: &ApprovalRequest,
    resource: &str,
    decision: &'static str,
    answered: Option<(&str, &str, Option<&str>)>,
) {
    let (approver, channel, reason) = match answered {
        Some((approver, channel, reason)) => (Some(approver), Some(channel), reason),
        None => (None, None, None),
    };
    let named = |text: Option<&str>| text.filter(|text| !text.is_empty()).map(|text| clip(text, 256));
    who.record_or_log(AuditKind::Approval {
        invocation: call.invocation.clone(),
        id: request.id.clone(),
        action: request.action,
        resource: clip(resource, 1024),
        digest: request.digest.clone(),
        decision,
        approver: named(approver),
        channel: named(channel),
        reason: reason.map(|reason| clip(reason, 512)),
    });
}

/// The request an approver sees, bound by its digest to exactly this action.
fn approval_request(
    who: &AuditScope,
    call: &CallContext,
    query: &PolicyQuery,
    resource: &str,
    (id, policies, why): (&str, &[String], &str),
) -> Asking {
    let approvals = &call.task.point.approvals;
    let (until, expires) = approvals.expiry(call.deadline);
    let what = match &query.action {
        PolicyAction::Call => {
            format!("call {} with input of {} bytes (sha256 {})", who.tool, query.input.size, query.input.sha256)
        }
        PolicyAction::Http { body, query: q, .. } if body.size > 0 || q.size > 0 => {
            format!("{resource} (query {} bytes, body {} bytes, sha256 {})", q.size, body.size, body.sha256)
        }
        _ => resource.to_owned(),
    };
    let mut hasher = sha2::Sha256::new();
    for part in [
        "toolcell approval v1",
        &who.principal,
        &who.tool,
        &who.task,
        &call.invocation,
        query.action.name(),
        &what,
        &query.input.sha256,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let request = ApprovalRequest {
        id: id.to_owned(),
        digest: hex::encode(hasher.finalize()),
        principal: who.principal.clone(),
        tool: who.tool.clone(),
        task: who.task.clone(),
        workload: call.task.workload.clone(),
        invocation: call.invocation.clone(),
        action: query.action.name(),
        what,
        why: why.to_owned(),
        policies: policies.to_vec(),
        reach: call.grant.summary(),
        raised_at: rfc3339(SystemTime::now()),
        expires_at: rfc3339(expires),
    };
    Asking { request, until, channel: call.task.channel.clone() }
}
