//! Anomalies: live behaviour compared with the learned baseline, and the
//! built-in deny-storm rule. Each rule names what happens when it fires:
//! `alert` (an `anomaly` audit event, and the webhook where one is set),
//! `deny` (that request or call is refused) or `kill` (the task ends, its
//! credentials are revoked, and the principal or tool is quarantined: a kill
//! that stays until it is lifted).
//!
//! The documented rules, each per tool and per principal where the
//! baseline has one learned from at least `min_calls` calls:
//! - `new_host`: a request to a host the baseline never saw;
//! - `bytes_out`: a call's bytes out (this request's body included) above
//!   `factor` × the learned p99 per call (at least 1 KiB);
//! - `call_rate`: calls in the last minute above `factor` × the learned p99
//!   of calls per minute (at least 1);
//! - `denials`: a call's denials above `factor` × the learned p99 per call
//!   (at least 1);
//! - `deny_storm` (no baseline needed): a principal denied more than
//!   `denials` times within `seconds` is quarantined.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::oversight::baseline::{Baseline, Behaviour};
use crate::oversight::rate::Window;

/// What a rule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyAction {
    /// Record it (and post it to the webhook).
    Alert,
    /// Refuse the request or call that raised it.
    Deny,
    /// End the task and quarantine the principal or tool.
    Kill,
}

/// What a `kill` rule quarantines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quarantine {
    /// The principal the task acts for (a prompt-injected agent).
    #[default]
    Principal,
    /// The tool (a compromised tool).
    Tool,
}

/// One rule's settings.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRule {
    pub action: AnomalyAction,
    /// How far past the learned p99 counts as anomalous (not used by `new_host`).
    #[serde(default = "default_factor")]
    pub factor: f64,
    #[serde(default)]
    pub quarantine: Quarantine,
}

fn default_factor() -> f64 {
    10.0
}

impl AnomalyRule {
    const fn alert(factor: f64) -> AnomalyRule {
        AnomalyRule { action: AnomalyAction::Alert, factor, quarantine: Quarantine::Principal }
    }
}

/// The built-in deny-storm rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DenyStorm {
    /// More than this many denials...
    pub denials: u64,
    /// ...within this many seconds (at most 3600) quarantines the principal.
    pub seconds: u64,
    /// Off: `enabled = false`.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Default for DenyStorm {
    fn default() -> DenyStorm {
        DenyStorm { denials: 50, seconds: 60, enabled: true }
    }
}

/// `[monitor]` in the runtime config.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// The baseline file (`toolcell baseline learn`); none: only the deny storm is watched.
    #[serde(default)]
    pub baseline: Option<std::path::PathBuf>,
    /// Where alerts are also posted (JSON), by the server.
    #[serde(default)]
    pub webhook: Option<String>,
    /// A baseline learned from fewer calls than this is not compared with.
    #[serde(default = "default_min_calls")]
    pub min_calls: u64,
    #[serde(default = "new_host")]
    pub new_host: AnomalyRule,
    #[serde(default = "ten_times")]
    pub bytes_out: AnomalyRule,
    #[serde(default = "ten_times")]
    pub call_rate: AnomalyRule,
    #[serde(default = "ten_times")]
    pub denials: AnomalyRule,
    #[serde(default)]
    pub deny_storm: DenyStorm,
}

fn default_min_calls() -> u64 {
    20
}

fn new_host() -> AnomalyRule {
    AnomalyRule::alert(1.0)
}

fn ten_times() -> AnomalyRule {
    AnomalyRule::alert(10.0)
}

impl Default for MonitorSettings {
    fn default() -> MonitorSettings {
        MonitorSettings {
            baseline: None,
            webhook: None,
            min_calls: default_min_calls(),
            new_host: new_host(),
            bytes_out: ten_times(),
            call_rate: ten_times(),
            denials: ten_times(),
            deny_storm: DenyStorm::default(),
        }
    }
}

impl MonitorSettings {
    /// What is wrong with the settings, if anything: (field, problem).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (name, rule) in [("bytes_out", &self.bytes_out), ("call_rate", &self.call_rate), ("denials", &self.denials)]
        {
            if !(rule.factor.is_finite() && rule.factor >= 1.0) {
                return Some((name, format!("factor {} must be a number of at least 1", rule.factor)));
            }
        }
        let storm = &self.deny_storm;
        if storm.enabled && (storm.denials == 0 || storm.seconds == 0 || storm.seconds > 3600) {
            return Some(("deny_storm", "needs denials of at least 1 and seconds from 1 to 3600".into()));
        }
        None
    }
}

/// One anomaly, as the audit trail and the webhook get it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// `new_host`, `bytes_out`, `call_rate`, `denials` or `deny_storm`.
    pub metric: String,
    /// Whose baseline it departs from: `tool x` or `principal p`.
    pub subject: String,
    /// What was seen (a host, a number).
    pub observed: String,
    /// What the baseline (or the rule) allows, in words.
    pub baseline: String,
    /// What the rule did.
    pub action: AnomalyAction,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "anomaly {} for {}: {} (baseline: {})", self.metric, self.subject, self.observed, self.baseline)
    }
}

/// What the watcher says about an action.
#[derive(Debug)]
pub(crate) enum Seen {
    /// Nothing unusual.
    Fine,
    /// An anomaly to record; the action goes ahead.
    Alert(Anomaly),
    /// Refuse it: the anomaly that says so.
    Deny(Anomaly),
    /// End the task and quarantine: the anomaly and what to quarantine.
    Kill(Anomaly, crate::oversight::KillTarget),
}

/// A count checked against a learned p99.
struct Past<'a> {
    metric: &'static str,
    subject: &'a str,
    observed: u64,
    p99: f64,
}

/// The watcher's state.
#[derive(Debug)]
pub(crate) struct Watch {
    settings: MonitorSettings,
    baseline: RwLock<Option<Arc<Baseline>>>,
    /// Calls per tool and per principal, over a sliding minute.
    calls: Mutex<HashMap<String, Window>>,
    /// Denials per principal, over the deny storm's seconds.
    denials: Mutex<HashMap<String, Window>>,
    start: Instant,
    /// Alerts for the server to post.
    alerts: tokio::sync::broadcast::Sender<Anomaly>,
}

impl Watch {
    pub(crate) fn new(settings: MonitorSettings, baseline: Option<Baseline>) -> Watch {
        Watch {
            settings,
            baseline: RwLock::new(baseline.map(Arc::new)),
            calls: Mutex::new(HashMap::new()),
            denials: Mutex::new(HashMap::new()),
            start: Instant::now(),
            alerts: tokio::sync::broadcast::channel(256).0,
        }
    }

    pub(crate) fn set_baseline(&self, baseline: Option<Baseline>) {
        *self.baseline.write().unwrap_or_else(|p| p.into_inner()) = baseline.map(Arc::new);
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Anomaly> {
        self.alerts.subscribe()
    }

    /// True when a baseline is loaded (an HTTP request's body is then read
    /// before it is decided, so its size counts).
    pub(crate) fn watching(&self) -> bool {
        self.baseline.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn baseline(&self) -> Option<Arc<Baseline>> {
        self.baseline.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The learned behaviours of `tool` and `principal` that are trusted
    /// (learned from at least `min_calls` calls), each with its subject.
    fn trusted<'a>(&self, baseline: &'a Baseline, principal: &str, tool: &str) -> Vec<(String, &'a Behaviour)> {
        let min = self.settings.min_calls;
        [
            (format!("tool `{tool}`"), baseline.tools.get(tool)),
            (format!("principal `{principal}`"), baseline.principals.get(principal)),
        ]
        .into_iter()
        .filter_map(|(subject, behaviour)| behaviour.filter(|b| b.calls >= min).map(|b| (subject, b)))
        .collect()
    }

    /// A call is starting.
    pub(crate) fn call(&self, principal: &str, tool: &str) -> Seen {
        let Some(baseline) = self.baseline() else { return Seen::Fine };
        let now = self.now();
        let mut counted = Vec::new();
        {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            for key in [format!("tool `{tool}`"), format!("principal `{principal}`")] {
                let window = calls.entry(key.clone()).or_insert_with(|| Window::new(60));
                window.add(now, 1);
                counted.push((key, window.used(now)));
            }
        }
        let who = (principal, tool);
        for (subject, behaviour) in self.trusted(&baseline, principal, tool) {
            let observed = counted.iter().find(|(key, _)| *key == subject).map_or(0, |(_, n)| *n);
            let past = Past { metric: "call_rate", subject: &subject, observed, p99: behaviour.calls_per_minute.p99 };
            if let Some(seen) = self.past_p99(self.settings.call_rate, past, 1.0, "calls in a minute", who) {
                return seen;
            }
        }
        Seen::Fine
    }

    /// An HTTP request to `host`, with a body of `body` bytes, in a call
    /// that has sent `sent` bytes so far.
    pub(crate) fn request(&self, principal: &str, tool: &str, host: &str, sent: u64, body: u64) -> Seen {
        let Some(baseline) = self.baseline() else { return Seen::Fine };
        for (subject, behaviour) in self.trusted(&baseline, principal, tool) {
            let rule = self.settings.new_host;
            if !behaviour.hosts.contains(host) {
                let seen: Vec<&str> = behaviour.hosts.iter().map(String::as_str).take(8).collect();
                let baseline = if seen.is_empty() { "no hosts".to_owned() } else { seen.join(", ") };
                let anomaly = self.anomaly("new_host", &subject, format!("a request to {host}"), baseline, rule.action);
                return self.verdict(anomaly, rule, principal, tool);
            }
            let observed = sent.saturating_add(body);
            let past = Past { metric: "bytes_out", subject: &subject, observed, p99: behaviour.bytes_out_per_call.p99 };
            if let Some(seen) =
                self.past_p99(self.settings.bytes_out, past, 1024.0, "bytes out in a call", (principal, tool))
            {
                return seen;
            }
        }
        Seen::Fine
    }

    /// A request of a call was denied; the call has had `in_call` denials.
    pub(crate) fn denied(&self, principal: &str, tool: &str, in_call: u64) -> Seen {
        let storm = self.settings.deny_storm;
        if storm.enabled {
            let now = self.now();
            let recent = {
                let mut denials = self.denials.lock().unwrap_or_else(|p| p.into_inner());
                let window = denials.entry(principal.to_owned()).or_insert_with(|| Window::new(storm.seconds as usize));
                window.add(now, 1);
                window.used(now)
            };
            if recent > storm.denials {
                let rule = AnomalyRule { action: AnomalyAction::Kill, factor: 1.0, quarantine: Quarantine::Principal };
                let anomaly = self.anomaly(
                    "deny_storm",
                    &format!("principal `{principal}`"),
                    format!("{recent} denials in {} s", storm.seconds),
                    format!("at most {} in {} s", storm.denials, storm.seconds),
                    AnomalyAction::Kill,
                );
                // Forget the storm: the quarantine holds until lifted, and a
                // lifted principal starts afresh.
                self.denials.lock().unwrap_or_else(|p| p.into_inner()).remove(principal);
                return self.verdict(anomaly, rule, principal, tool);
            }
        }
        let Some(baseline) = self.baseline() else { return Seen::Fine };
        for (subject, behaviour) in self.trusted(&baseline, principal, tool) {
            let past =
                Past { metric: "denials", subject: &subject, observed: in_call, p99: behaviour.denials_per_call.p99 };
            if let Some(seen) = self.past_p99(self.settings.denials, past, 1.0, "denials in a call", (principal, tool))
            {
                return seen;
            }
        }
        Seen::Fine
    }

    /// The anomaly, and its rule's verdict, when `past.observed` is above
    /// `rule.factor` × the learned p99 (taken as at least `floor`, so a
    /// baseline of zeros does not make every first one anomalous).
    fn past_p99(
        &self,
        rule: AnomalyRule,
        past: Past<'_>,
        floor: f64,
        unit: &str,
        (principal, tool): (&str, &str),
    ) -> Option<Seen> {
        let allowed = rule.factor * past.p99.max(floor);
        if past.observed as f64 <= allowed {
            return None;
        }
        let anomaly = self.anomaly(
            past.metric,
            past.subject,
            format!("{} {unit}", past.observed),
            format!("{} × p99 {} {unit}", rule.factor, past.p99),
            rule.action,
        );
        Some(self.verdict(anomaly, rule, principal, tool))
    }

    fn anomaly(
        &self,
        metric: &str,
        subject: &str,
        observed: String,
        baseline: String,
        action: AnomalyAction,
    ) -> Anomaly {
        Anomaly { metric: metric.to_owned(), subject: subject.to_owned(), observed, baseline, action }
    }

    fn verdict(&self, anomaly: Anomaly, rule: AnomalyRule, principal: &str, tool: &str) -> Seen {
        let _ = self.alerts.send(anomaly.clone());
        match rule.action {
            AnomalyAction::Alert => Seen::Alert(anomaly),
            AnomalyAction::Deny => Seen::Deny(anomaly),
            AnomalyAction::Kill => {
                let target = match rule.quarantine {
                    Quarantine::Principal => crate::oversight::KillTarget::Principal(principal.to_owned()),
                    Quarantine::Tool => crate::oversight::KillTarget::Tool(tool.to_owned()),
                };
                Seen::Kill(anomaly, target)
            }
        }
    }
}
