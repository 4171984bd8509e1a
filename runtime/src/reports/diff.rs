//! What a change to manifests or policies does to reach: each difference
//! one line, marked as widening or narrowing, for code review and CI.

use std::collections::BTreeMap;

use serde::Serialize;

use super::blast::{Decision, Outcome, ToolReach};
use crate::policy::egress::path_matches;

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReachChange {
    pub tool: String,
    /// True when the new reach is wider here.
    pub widens: bool,
    /// What changed, in words.
    pub what: String,
}

impl std::fmt::Display for ReachChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", if self.widens { "+" } else { "-" }, self.tool, self.what)
    }
}

/// The differences from `old` to `new`, tool by tool.
pub fn diff_reach(old: &[ToolReach], new: &[ToolReach]) -> Vec<ReachChange> {
    let old: BTreeMap<&str, &ToolReach> = old.iter().map(|t| (t.tool.as_str(), t)).collect();
    let new: BTreeMap<&str, &ToolReach> = new.iter().map(|t| (t.tool.as_str(), t)).collect();
    let mut changes = Vec::new();
    for (name, tool) in &new {
        match old.get(name) {
            None => changes.push(change(name, true, format!("new tool (score {})", tool.score.total))),
            Some(before) => compare(before, tool, &mut changes),
        }
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        changes.push(change(name, false, "tool removed".into()));
    }
    changes
}

fn change(tool: &str, widens: bool, what: String) -> ReachChange {
    ReachChange { tool: tool.to_owned(), widens, what }
}

/// Whether `decision` lets more happen than `before` did.
fn looser(before: &Decision, decision: &Decision) -> bool {
    decision.outcome > before.outcome
}

fn host_covered(old: &str, new: &str) -> bool {
    match (old.strip_prefix("*."), new.strip_prefix("*.")) {
        (None, None) => old == new,
        (Some(suffix), None) => new.len() > suffix.len() + 1 && new.ends_with(&format!(".{suffix}")),
        (Some(suffix), Some(new_suffix)) => new_suffix == suffix || new_suffix.ends_with(&format!(".{suffix}")),
        (None, Some(_)) => false,
    }
}

fn compare(old: &ToolReach, new: &ToolReach, changes: &mut Vec<ReachChange>) {
    let tool = new.tool.as_str();
    let mut say = |widens: bool, what: String| changes.push(change(tool, widens, what));
    if looser(&old.call, &new.call) {
        say(true, format!("calls: {} (was {})", outcome(&new.call), outcome(&old.call)));
    } else if looser(&new.call, &old.call) {
        say(false, format!("calls: {} (was {})", outcome(&new.call), outcome(&old.call)));
    }
    // Egress: each method of each new rule must have been reachable through
    // an old rule on the same origin whose path pattern covers the new one.
    for rule in &new.egress {
        for (method, decision) in rule.methods.iter().filter(|(_, d)| d.reachable()) {
            let covering = old.egress.iter().filter(|o| {
                o.scheme == rule.scheme
                    && o.port == rule.port
                    && host_covered(&o.host, &rule.host)
                    && path_matches(&o.path, &rule.path)
            });
            let best = covering.filter_map(|o| o.methods.get(method)).max_by_key(|d| d.outcome);
            match best {
                None => say(true, format!("egress {method} {} (not reachable before)", rule.rule)),
                Some(before) if looser(before, decision) => {
                    say(true, format!("egress {method} {}: {} (was {})", rule.rule, outcome(decision), outcome(before)))
                }
                Some(_) => {}
            }
        }
        if let Some(before) = old.egress.iter().find(|o| o.rule == rule.rule) {
            if rule.max_requests > before.max_requests {
                say(
                    true,
                    format!("egress {}: max_requests {} (was {})", rule.rule, rule.max_requests, before.max_requests),
                );
            }
            for address in rule.internal_addresses.iter().filter(|a| !before.internal_addresses.contains(a)) {
                say(true, format!("egress {}: may reach internal address {address}", rule.rule));
            }
            for credential in rule.injected.iter().filter(|c| !before.injected.contains(c)) {
                say(true, format!("egress {}: credential {credential} now injected", rule.rule));
            }
        }
    }
    for rule in &old.egress {
        for method in rule.methods.iter().filter(|(_, d)| d.reachable()).map(|(m, _)| m) {
            let kept = new
                .egress
                .iter()
                .any(|n| n.rule == rule.rule && n.methods.get(method).is_some_and(Decision::reachable));
            if !kept {
                say(false, format!("egress {method} {} no longer reachable", rule.rule));
            }
        }
    }
    for dir in &new.filesystem {
        match old.filesystem.iter().find(|d| d.guest == dir.guest) {
            None => say(true, format!("directory {} ({}, {})", dir.guest, dir.host.display(), dir.mode)),
            Some(before) if before.host != dir.host => say(
                true,
                format!("directory {} now maps {} (was {})", dir.guest, dir.host.display(), before.host.display()),
            ),
            Some(before) if before.mode == "read-only" && dir.mode == "read-write" => {
                say(true, format!("directory {} is now read-write", dir.guest));
            }
            Some(before) if before.mode == "read-write" && dir.mode == "read-only" => {
                say(false, format!("directory {} is now read-only", dir.guest));
            }
            Some(_) => {}
        }
    }
    for dir in old.filesystem.iter().filter(|d| !new.filesystem.iter().any(|n| n.guest == d.guest)) {
        say(false, format!("directory {} removed", dir.guest));
    }
    for name in new.env.iter().filter(|n| !old.env.contains(n)) {
        say(true, format!("variable {name}"));
    }
    for name in old.env.iter().filter(|n| !new.env.contains(n)) {
        say(false, format!("variable {name} removed"));
    }
    for socket in new.sockets.iter().filter(|s| s.decision.reachable()) {
        if !old.sockets.iter().any(|o| o.address == socket.address && o.decision.reachable()) {
            say(true, format!("socket {}", socket.address));
        }
    }
    for credential in &new.credentials {
        let Some(before) = old.credentials.iter().find(|c| c.name == credential.name) else {
            say(
                true,
                format!(
                    "credential {} ({} for {}, scopes [{}])",
                    credential.name,
                    credential.provider,
                    credential.audience,
                    credential.scopes.join(" ")
                ),
            );
            continue;
        };
        let name = &credential.name;
        for scope in credential.scopes.iter().filter(|s| !before.scopes.contains(s)) {
            say(true, format!("credential {name}: scope {scope} added"));
        }
        for scope in before.scopes.iter().filter(|s| !credential.scopes.contains(s)) {
            say(false, format!("credential {name}: scope {scope} removed"));
        }
        if credential.audience != before.audience {
            say(true, format!("credential {name}: audience {} (was {})", credential.audience, before.audience));
        }
        let life = |seconds: Option<u64>| seconds.map_or("until rotated".to_owned(), |s| format!("{s}s"));
        let (new_life, old_life) =
            (credential.longest_life_seconds.unwrap_or(u64::MAX), before.longest_life_seconds.unwrap_or(u64::MAX));
        if new_life != old_life {
            say(
                new_life > old_life,
                format!(
                    "credential {name}: longest life {} (was {})",
                    life(credential.longest_life_seconds),
                    life(before.longest_life_seconds)
                ),
            );
        }
        if credential.exposure == "reveal" && before.exposure != "reveal" {
            say(true, format!("credential {name}: now revealed to the tool (was injected)"));
        }
        if looser(&before.decision, &credential.decision) {
            say(
                true,
                format!("credential {name}: {} (was {})", outcome(&credential.decision), outcome(&before.decision)),
            );
        }
    }
    for credential in old.credentials.iter().filter(|c| !new.credentials.iter().any(|n| n.name == c.name)) {
        say(false, format!("credential {} removed", credential.name));
    }
    if new.score.total != old.score.total {
        say(new.score.total > old.score.total, format!("score {} (was {})", new.score.total, old.score.total));
    }
}

fn outcome(decision: &Decision) -> String {
    match decision.outcome {
        Outcome::Allowed => "allowed".into(),
        Outcome::Approval => "allowed once approved".into(),
        Outcome::Conditional => format!("allowed unless {}", decision.forbidden_by.join(", ")),
        Outcome::Forbidden => format!("forbidden by {}", decision.forbidden_by.join(", ")),
    }
}
