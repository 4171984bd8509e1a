//! Blast radius: everything a tool (or a task of it, or a principal through
//! every tool it may call) could reach if it were compromised, read from
//! the manifests, the request-time policies and the operator's config —
//! the same sources the runtime decides with — and one score to compare by.
//!
//! Policies are asked the way the runtime asks them, in sampled contexts: a
//! fresh task (every counter zero), not yet approved, at a weekday noon and
//! a weekend night (UTC), for each principal considered. What they forbid
//! in every sample is taken away; what they forbid in some is shown as
//! conditional; what needs approval is marked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::RuntimeConfig;
use crate::grant::{Narrowing, WideningError};
use crate::manifest::Manifest;
use crate::oversight::Kill;
use crate::policy::credential::{Exposure, ProviderKind};
use crate::policy::dir::DirMode;
use crate::policy::egress::{AddressClass, EgressRule, HostPattern, classify_address};
use crate::request_policy::{
    Counters, Digest, PolicyAction, PolicyQuery, PolicyVerdict, PrincipalAttributes, RequestPolicies, ToolFacts,
};

/// The principal policies are asked about when none is named: one with no
/// roles or groups, standing for any caller the config does not describe.
pub const ANY_PRINCIPAL: &str = "*";

/// How policies decide one thing a tool could do, over every sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `allowed`, `approval` (allowed once a person approves), `conditional`
    /// (forbidden in some samples) or `forbidden` (in every sample).
    pub outcome: Outcome,
    /// Why approval is asked, where it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The policies that forbid it (in some or every sample).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forbidden_by: Vec<String>,
}

/// See [`Decision::outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Forbidden,
    Conditional,
    Approval,
    Allowed,
}

impl Decision {
    /// Whether it can happen at all (in some sample, perhaps once approved).
    pub fn reachable(&self) -> bool {
        self.outcome != Outcome::Forbidden
    }

    /// A manifest's own approval on top of what policies said.
    fn with_manifest_approval(mut self, reason: Option<&str>) -> Decision {
        if let Some(reason) = reason
            && self.reachable()
        {
            self.approval.get_or_insert_with(|| reason.to_owned());
            if self.outcome == Outcome::Allowed {
                self.outcome = Outcome::Approval;
            }
        }
        self
    }

    /// In words, for text reports: empty when plainly allowed.
    pub fn words(&self) -> String {
        match self.outcome {
            Outcome::Allowed => String::new(),
            Outcome::Approval => format!("needs approval: {}", self.approval.as_deref().unwrap_or_default()),
            Outcome::Conditional => {
                let mut words =
                    format!("forbidden at some times or for some principals by {}", self.forbidden_by.join(", "));
                if let Some(approval) = &self.approval {
                    words.push_str(&format!("; otherwise needs approval: {approval}"));
                }
                words
            }
            Outcome::Forbidden => format!("forbidden by {}", self.forbidden_by.join(", ")),
        }
    }
}

/// One egress rule's reach.
#[derive(Clone, Debug, Serialize)]
pub struct EgressReach {
    /// The rule as written.
    pub rule: String,
    pub scheme: &'static str,
    /// The host, or `*.suffix`.
    pub host: String,
    pub port: u16,
    /// The path pattern.
    pub path: String,
    /// Each method the manifest allows, with what policies say of it.
    pub methods: BTreeMap<String, Decision>,
    /// Addresses outside the public internet the rule may reach (loopback,
    /// private, link-local, metadata), with their class.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub internal_addresses: Vec<String>,
    /// Requests per call through it.
    pub max_requests: u32,
    /// Credentials the host injects into its requests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<String>,
}

/// One directory's reach.
#[derive(Clone, Debug, Serialize)]
pub struct DirReach {
    pub guest: String,
    pub host: PathBuf,
    /// `read-only` or `read-write`.
    pub mode: String,
}

/// One raw socket grant's reach.
#[derive(Clone, Debug, Serialize)]
pub struct SocketReach {
    /// `tcp 127.0.0.1:5432`.
    pub address: String,
    /// Its address class.
    pub class: &'static str,
    pub decision: Decision,
}

/// One credential's reach.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialReach {
    pub name: String,
    pub provider: &'static str,
    pub audience: String,
    pub scopes: Vec<String>,
    /// Its longest possible life, in seconds: the least of the manifest's
    /// `max_ttl`, the operator's ceiling and the call's timeout. `None` for
    /// a static secret: it lives until someone rotates it.
    pub longest_life_seconds: Option<u64>,
    /// What bounds that life: `manifest`, `operator` or `call timeout`.
    pub bounded_by: &'static str,
    /// `inject` (the tool never sees it) or `reveal`.
    pub exposure: &'static str,
    pub decision: Decision,
}

/// Everything one tool can reach.
#[derive(Clone, Debug, Serialize)]
pub struct ToolReach {
    pub tool: String,
    pub owner: String,
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// Whether the principals considered may call it at all.
    pub call: Decision,
    pub egress: Vec<EgressReach>,
    pub filesystem: Vec<DirReach>,
    /// Variable names it sees.
    pub env: Vec<String>,
    /// Its per-call scratch directory, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<String>,
    pub sockets: Vec<SocketReach>,
    pub credentials: Vec<CredentialReach>,
    /// Rate limits that apply to it, in words.
    pub rate_limits: Vec<String>,
    /// The kill that stops it now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub killed: Option<String>,
    pub score: Score,
}

/// The score: points per reachable thing, by kind (see [`SCORING`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Score {
    pub total: u32,
    pub parts: BTreeMap<&'static str, u32>,
}

/// How the score is counted, as documented for users (`toolcell
/// blast-radius --help` prints it).
pub const SCORING: &str = "\
Score: points for each thing a tool can reach, so tools and changes compare.
  egress rule       2 for read methods (GET, HEAD, OPTIONS), +5 if it allows any write method,
                    x3 for a wildcard host (*.example.com), +3 if it reaches internal addresses
                    (loopback, private, link-local, metadata)
  directory         2 read-only, 5 read-write (a scratch dir scores nothing: it is empty and removed)
  variable          1 each
  raw socket        3 each
  credential        4, +1 per scope, +1 per started minute of its longest life (a static
                    secret: +10), x2 when revealed to the tool
Something that needs a person's approval scores half; something policies forbid in
every sample scores nothing; a killed tool scores 0 while the kill lasts.";

/// What reach is computed from.
#[derive(Debug)]
pub struct ReachInputs<'a> {
    pub policies: &'a RequestPolicies,
    pub config: &'a RuntimeConfig,
    /// Kills in force.
    pub kills: &'a [Kill],
    /// The principals to ask policies about; empty: every principal the
    /// config describes, and [`ANY_PRINCIPAL`].
    pub principals: Vec<String>,
}

/// The sampled instants: a weekday noon and a weekend night, UTC.
fn sample_times() -> [OffsetDateTime; 2] {
    [
        OffsetDateTime::from_unix_timestamp(1_796_212_800).expect("a valid time"), // Wed 2026-12-02 12:00Z
        OffsetDateTime::from_unix_timestamp(1_796_439_600).expect("a valid time"), // Sat 2026-12-05 03:00Z
    ]
}

impl ReachInputs<'_> {
    fn principals(&self) -> Vec<String> {
        if !self.principals.is_empty() {
            return self.principals.clone();
        }
        let mut all: Vec<String> = self.config.principals.keys().cloned().collect();
        all.sort();
        all.push(ANY_PRINCIPAL.to_owned());
        all
    }

    /// What policies say of `action` by `tool`, over every sample.
    fn decide(&self, manifest: &Manifest, action: &PolicyAction) -> Decision {
        let tool =
            ToolFacts { name: manifest.name.clone(), owner: manifest.owner.clone(), tags: manifest.tags.clone() };
        let mut verdicts = Vec::new();
        for principal in self.principals() {
            for time in sample_times() {
                let query = PolicyQuery {
                    principal_attributes: self
                        .config
                        .principals
                        .get(&principal)
                        .cloned()
                        .unwrap_or_else(PrincipalAttributes::default),
                    principal: principal.clone(),
                    tool: tool.clone(),
                    task: "blast-radius".into(),
                    workload: format!("spiffe://{}/tool/{}/task/blast-radius", self.config.trust_domain, manifest.name),
                    task_age_seconds: 0,
                    time,
                    invocation: Counters::default(),
                    task_total: Counters::default(),
                    input: Digest::default(),
                    approved: false,
                    action: action.clone(),
                    task_entities: None,
                };
                verdicts.push(self.policies.evaluate(&query));
            }
        }
        combine(&verdicts)
    }
}

/// Folds the samples' verdicts into one decision.
fn combine(verdicts: &[PolicyVerdict]) -> Decision {
    let mut forbidden_by = BTreeSet::new();
    let (mut denied, mut approval) = (0, None);
    for verdict in verdicts {
        match verdict {
            PolicyVerdict::Allow { .. } => {}
            PolicyVerdict::Approval { reason, .. } => {
                approval.get_or_insert_with(|| reason.clone());
            }
            PolicyVerdict::Deny { policies, .. } => {
                denied += 1;
                if policies.is_empty() {
                    forbidden_by.insert("(no permit: strict mode)".to_owned());
                }
                forbidden_by.extend(policies.iter().cloned());
            }
        }
    }
    let outcome = if denied == verdicts.len() && denied > 0 {
        Outcome::Forbidden
    } else if denied > 0 {
        Outcome::Conditional
    } else if approval.is_some() {
        Outcome::Approval
    } else {
        Outcome::Allowed
    };
    Decision { outcome, approval, forbidden_by: forbidden_by.into_iter().collect() }
}

const READ_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

/// A concrete request inside a rule's pattern, for asking policies.
fn sample_request(rule: &EgressRule, method: &str) -> PolicyAction {
    let host = match &rule.host {
        HostPattern::Exact(host) => host.clone(),
        HostPattern::Subdomains(suffix) => format!("any.{suffix}"),
    };
    PolicyAction::Http {
        method: method.to_owned(),
        scheme: rule.scheme.name().to_owned(),
        host,
        port: rule.port,
        path: rule.path.replace('*', "x"),
        query: Digest::of(b""),
        body: Digest::default(),
    }
}

/// What `manifest` (narrowed by `narrowing`, if given) can reach.
pub fn tool_reach(
    manifest: &Manifest,
    narrowing: Option<&Narrowing>,
    inputs: &ReachInputs<'_>,
) -> Result<ToolReach, WideningError> {
    let manifest = match narrowing {
        Some(narrowing) => narrowing.apply(manifest)?,
        None => manifest.clone(),
    };
    let call = inputs.decide(&manifest, &PolicyAction::Call);
    let egress = manifest
        .egress
        .iter()
        .map(|rule| {
            let methods = rule
                .methods
                .iter()
                .map(|method| {
                    let manifest_approval = rule
                        .approval
                        .as_ref()
                        .filter(|approval| approval.covers_any([method.as_str()]))
                        .map(|approval| approval.reason.as_str());
                    let decision = inputs
                        .decide(&manifest, &sample_request(rule, method))
                        .with_manifest_approval(manifest_approval);
                    (method.clone(), decision)
                })
                .collect();
            let internal_addresses = rule
                .addresses
                .iter()
                .filter_map(|address| match classify_address(*address) {
                    AddressClass::Public => None,
                    class => Some(format!("{address} ({})", class.name())),
                })
                .collect();
            let injected = manifest
                .credentials
                .iter()
                .filter(|c| matches!(&c.exposure, Exposure::Inject(i) if i.egress.contains(&rule.url)))
                .map(|c| c.name.clone())
                .collect();
            EgressReach {
                rule: rule.url.clone(),
                scheme: rule.scheme.name(),
                host: rule.host.to_string(),
                port: rule.port,
                path: rule.path.clone(),
                methods,
                internal_addresses,
                max_requests: rule.max_requests,
                injected,
            }
        })
        .collect();
    let sockets = manifest
        .sockets
        .iter()
        .map(|socket| {
            let protocol = format!("{:?}", socket.protocol).to_lowercase();
            let action = PolicyAction::Socket {
                operation: if protocol == "udp" { "udp_send".into() } else { "tcp_connect".into() },
                protocol: protocol.clone(),
                ip: socket.address.ip(),
                port: socket.address.port(),
            };
            SocketReach {
                address: format!("{protocol} {}", socket.address),
                class: classify_address(socket.address.ip()).name(),
                decision: inputs.decide(&manifest, &action),
            }
        })
        .collect();
    let credentials = manifest
        .credentials
        .iter()
        .map(|spec| {
            let (longest, bounded_by) = longest_life(spec.provider, spec.max_ttl.0, inputs.config, &manifest);
            let action = PolicyAction::Credential {
                name: spec.name.clone(),
                provider: spec.provider.name().to_owned(),
                audience: spec.audience.clone(),
                scopes: spec.scopes.clone(),
                lifetime_seconds: longest.unwrap_or(spec.max_ttl.0.as_secs()),
                exposure: spec.exposure.name().to_owned(),
            };
            let manifest_approval = spec
                .approval
                .as_ref()
                .filter(|approval| approval.covers_any(spec.scopes.iter().map(String::as_str)))
                .map(|approval| approval.reason.as_str());
            CredentialReach {
                name: spec.name.clone(),
                provider: spec.provider.name(),
                audience: spec.audience.clone(),
                scopes: spec.scopes.clone(),
                longest_life_seconds: longest,
                bounded_by,
                exposure: spec.exposure.name(),
                decision: inputs.decide(&manifest, &action).with_manifest_approval(manifest_approval),
            }
        })
        .collect();
    let killed = inputs
        .kills
        .iter()
        .find(|kill| inputs.principals().iter().any(|p| kill.target.matches(p, &manifest.name, None)))
        .map(|kill| format!("{} ({})", kill.target, kill.id));
    let mut reach = ToolReach {
        tool: manifest.name.clone(),
        owner: manifest.owner.clone(),
        purpose: manifest.purpose.clone(),
        review_by: manifest.review_by.map(|date| date.to_string()),
        manifest: manifest.source.clone(),
        call,
        egress,
        filesystem: manifest
            .filesystem
            .iter()
            .map(|dir| DirReach { guest: dir.guest.clone(), host: dir.host.clone(), mode: dir.mode.to_string() })
            .collect(),
        env: manifest.env.iter().map(|grant| grant.name.clone()).collect(),
        scratch: manifest.scratch.clone(),
        sockets,
        credentials,
        rate_limits: rate_limits(&manifest, inputs.config),
        killed,
        score: Score::default(),
    };
    reach.score = score(&reach, &manifest);
    Ok(reach)
}

/// The longest a credential can live, and what bounds it.
fn longest_life(
    provider: ProviderKind,
    max_ttl: std::time::Duration,
    config: &RuntimeConfig,
    manifest: &Manifest,
) -> (Option<u64>, &'static str) {
    if provider == ProviderKind::Static {
        return (None, "rotation");
    }
    let bounds =
        [(max_ttl, "manifest"), (config.max_credential_ttl.0, "operator"), (manifest.limits.timeout.0, "call timeout")];
    let (life, by) = bounds.iter().min_by_key(|(life, _)| *life).expect("three bounds");
    (Some(life.as_secs().max(1)), by)
}

/// The rate limits that apply to a tool's calls, in words.
fn rate_limits(manifest: &Manifest, config: &RuntimeConfig) -> Vec<String> {
    use crate::policy::rate::{PerMinute, RateMetric};
    let words = |per: &PerMinute, scope: &str| -> Vec<String> {
        RateMetric::ALL
            .iter()
            .filter_map(|metric| per.of(*metric).map(|value| format!("{} {value} ({scope})", metric.name())))
            .collect()
    };
    let mut limits = words(&manifest.rate_limits.tool, "manifest, all callers");
    limits.extend(words(&manifest.rate_limits.per_principal, "manifest, each principal"));
    for rule in &config.rate_limits {
        let tool_matches = rule.tool.as_deref().is_none_or(|tool| tool == "*" || tool == manifest.name);
        if tool_matches {
            let scope = match &rule.principal {
                Some(principal) => format!("operator, principal {principal}"),
                None => "operator".to_owned(),
            };
            limits.extend(words(&rule.per_minute(), &scope));
        }
    }
    limits
}

/// The points of a reachable thing, halved where a person must approve it.
fn weighed(points: u32, decision: &Decision) -> u32 {
    match decision.outcome {
        Outcome::Forbidden => 0,
        Outcome::Approval => points.div_ceil(2),
        Outcome::Allowed | Outcome::Conditional => points,
    }
}

fn score(reach: &ToolReach, manifest: &Manifest) -> Score {
    let mut parts: BTreeMap<&'static str, u32> = BTreeMap::new();
    if reach.killed.is_some() || !reach.call.reachable() {
        return Score { total: 0, parts };
    }
    for (rule, reached) in manifest.egress.iter().zip(&reach.egress) {
        let wildcard = if matches!(rule.host, HostPattern::Subdomains(_)) { 3 } else { 1 };
        let internal = if reached.internal_addresses.is_empty() { 0 } else { 3 };
        let mut points = 0;
        let reads = reached.methods.iter().filter(|(m, d)| READ_METHODS.contains(&m.as_str()) && d.reachable());
        if let Some(best) = reads.map(|(_, d)| weighed(2, d)).max() {
            points += best;
        }
        let writes = reached.methods.iter().filter(|(m, d)| !READ_METHODS.contains(&m.as_str()) && d.reachable());
        if let Some(best) = writes.map(|(_, d)| weighed(5, d)).max() {
            points += best;
        }
        if points > 0 {
            *parts.entry("egress").or_default() += points * wildcard + internal;
        }
    }
    for dir in &manifest.filesystem {
        *parts.entry("filesystem").or_default() += if dir.mode == DirMode::ReadWrite { 5 } else { 2 };
    }
    if !reach.env.is_empty() {
        parts.insert("env", reach.env.len() as u32);
    }
    for socket in &reach.sockets {
        *parts.entry("sockets").or_default() += weighed(3, &socket.decision);
    }
    for credential in &reach.credentials {
        let life = credential.longest_life_seconds.map_or(10, |seconds| seconds.div_ceil(60) as u32);
        let mut points = 4 + credential.scopes.len() as u32 + life;
        if credential.exposure == "reveal" {
            points *= 2;
        }
        *parts.entry("credentials").or_default() += weighed(points, &credential.decision);
    }
    parts.retain(|_, points| *points > 0);
    Score { total: parts.values().sum(), parts }
}

/// What one principal can reach through every tool it may call.
#[derive(Clone, Debug, Serialize)]
pub struct PrincipalReach {
    pub principal: String,
    /// The tools it may call.
    pub tools: Vec<String>,
    /// `METHOD scheme://host:port` it can send, through any tool.
    pub egress: BTreeSet<String>,
    /// `provider audience [scopes]` it can have minted.
    pub credentials: BTreeSet<String>,
    /// `host path (mode)` it can see.
    pub filesystem: BTreeSet<String>,
    pub sockets: BTreeSet<String>,
    /// The sum of its tools' scores.
    pub score: u32,
}

/// The union of `tools`' reach (each computed for `principal` alone).
pub fn principal_reach(principal: &str, tools: &[ToolReach]) -> PrincipalReach {
    let mut reach = PrincipalReach {
        principal: principal.to_owned(),
        tools: Vec::new(),
        egress: BTreeSet::new(),
        credentials: BTreeSet::new(),
        filesystem: BTreeSet::new(),
        sockets: BTreeSet::new(),
        score: 0,
    };
    for tool in tools.iter().filter(|tool| tool.call.reachable() && tool.killed.is_none()) {
        reach.tools.push(tool.tool.clone());
        reach.score += tool.score.total;
        for rule in &tool.egress {
            for (method, decision) in &rule.methods {
                if decision.reachable() {
                    reach.egress.insert(format!("{method} {}://{}:{}{}", rule.scheme, rule.host, rule.port, rule.path));
                }
            }
        }
        for credential in tool.credentials.iter().filter(|c| c.decision.reachable()) {
            reach.credentials.insert(format!(
                "{} {} [{}]",
                credential.provider,
                credential.audience,
                credential.scopes.join(" ")
            ));
        }
        for dir in &tool.filesystem {
            reach.filesystem.insert(format!("{} ({})", dir.host.display(), dir.mode));
        }
        for socket in tool.sockets.iter().filter(|s| s.decision.reachable()) {
            reach.sockets.insert(socket.address.clone());
        }
    }
    reach
}
