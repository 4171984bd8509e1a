//! Access review: for each tool, who answers for it, whether its review is
//! due, when it was last used, and which of its entitlements were granted
//! but not exercised in the window — read from the audit trail — with a
//! narrowed manifest that keeps only what was used.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::trail::Trail;
use crate::manifest::Manifest;

/// What the runtime does when a tool's `review_by` has passed (`[review]
/// overdue` in the runtime config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverdueReview {
    /// A `review_overdue` audit event and a warning when the tool is loaded.
    #[default]
    Warn,
    /// That, and every task of the tool is refused, naming the owner and date.
    Refuse,
}

impl OverdueReview {
    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            OverdueReview::Warn => "warn",
            OverdueReview::Refuse => "refuse",
        }
    }
}

/// A tool whose review date has passed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "tool `{tool}` was due for access review by {review_by} and has not been reviewed: its owner {owner} must review its grants and set a new review_by"
)]
pub struct ReviewOverdue {
    pub tool: String,
    pub owner: String,
    pub review_by: time::Date,
}

impl ReviewOverdue {
    /// The manifest's overdue review, as of `today`.
    pub fn of(manifest: &Manifest, today: time::Date) -> Option<ReviewOverdue> {
        let review_by = manifest.review_by.filter(|date| *date < today)?;
        Some(ReviewOverdue { tool: manifest.name.clone(), owner: manifest.owner.clone(), review_by })
    }
}

/// An entitlement granted but not exercised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unused {
    /// `egress_rule`, `method`, `credential`, `scope` or `socket`.
    pub kind: &'static str,
    /// What it is (`https://api.example.com/*`, `POST on https://…`, `github`, …).
    pub item: String,
}

/// One tool's review.
#[derive(Clone, Debug, Serialize)]
pub struct ToolReview {
    pub tool: String,
    pub owner: String,
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_by: Option<String>,
    /// The review date has passed.
    pub overdue: bool,
    /// Calls in the window.
    pub calls: usize,
    /// The last call's time (RFC 3339), in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    /// Granted, never exercised in the window.
    pub unused: Vec<Unused>,
    /// Entitlements whose use the audit does not record, so cannot be judged.
    pub not_recorded: Vec<String>,
}

/// What the trail shows one tool did.
#[derive(Default)]
struct Used {
    calls: usize,
    last: Option<(i64, String)>,
    rules: BTreeSet<String>,
    methods: BTreeSet<(String, String)>,
    credentials: BTreeSet<String>,
    scopes: BTreeSet<(String, String)>,
    sockets: BTreeSet<String>,
}

/// Reviews `manifests` against the trail's events at or after `since_ms`
/// (milliseconds since the epoch), as of `today`.
pub fn review(manifests: &[Manifest], trail: &Trail, since_ms: Option<i64>, today: time::Date) -> Vec<ToolReview> {
    let mut used: BTreeMap<String, Used> = BTreeMap::new();
    for record in trail.records.iter().filter(|r| since_ms.is_none_or(|since| r.at_ms >= since)) {
        let event = &record.event;
        let text = |field: &str| event.get(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let strings = |field: &str| -> Vec<String> {
            event
                .get(field)
                .and_then(|v| v.as_array())
                .map(|values| values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let tool = used.entry(text("tool")).or_default();
        match text("event").as_str() {
            "invocation_started" => {
                tool.calls += 1;
                if tool.last.as_ref().is_none_or(|(at, _)| record.at_ms >= *at) {
                    tool.last = Some((record.at_ms, text("time")));
                }
            }
            "egress" if text("decision") == "allowed" => {
                let rule = text("rule");
                tool.methods.insert((rule.clone(), text("method")));
                tool.rules.insert(rule);
            }
            "credential_minted" => {
                let credential = text("credential");
                for scope in strings("scopes") {
                    tool.scopes.insert((credential.clone(), scope));
                }
                tool.credentials.insert(credential);
            }
            "invocation_ended" => tool.sockets.extend(strings("sockets")),
            _ => {}
        }
    }
    manifests
        .iter()
        .map(|manifest| {
            let none = Used::default();
            let used = used.get(&manifest.name).unwrap_or(&none);
            let mut unused = Vec::new();
            for rule in &manifest.egress {
                if !used.rules.contains(&rule.url) {
                    unused.push(Unused { kind: "egress_rule", item: rule.url.clone() });
                    continue;
                }
                for method in rule.methods.iter().filter(|m| !used.methods.contains(&(rule.url.clone(), (*m).clone())))
                {
                    unused.push(Unused { kind: "method", item: format!("{method} on {}", rule.url) });
                }
            }
            for credential in &manifest.credentials {
                if !used.credentials.contains(&credential.name) {
                    unused.push(Unused { kind: "credential", item: credential.name.clone() });
                    continue;
                }
                for scope in
                    credential.scopes.iter().filter(|s| !used.scopes.contains(&(credential.name.clone(), (*s).clone())))
                {
                    unused.push(Unused { kind: "scope", item: format!("{scope} of {}", credential.name) });
                }
            }
            for socket in &manifest.sockets {
                let address = socket_words(socket);
                if !used.sockets.contains(&address) {
                    unused.push(Unused { kind: "socket", item: address });
                }
            }
            let mut not_recorded = Vec::new();
            if !manifest.filesystem.is_empty() {
                not_recorded.push(format!(
                    "directories ({}): which a call opens is not recorded (wasmtime-wasi gives the host no hook on \
                     filesystem opens short of replacing its filesystem implementation)",
                    manifest.filesystem.iter().map(|d| d.guest.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            if !manifest.env.is_empty() {
                not_recorded.push(format!(
                    "variables ({}): reads of the environment are not recorded (a guest receives it whole at start)",
                    manifest.env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            ToolReview {
                tool: manifest.name.clone(),
                owner: manifest.owner.clone(),
                purpose: manifest.purpose.clone(),
                review_by: manifest.review_by.map(|d| d.to_string()),
                overdue: manifest.review_by.is_some_and(|date| date < today),
                calls: used.calls,
                last_used: used.last.as_ref().map(|(_, time)| time.clone()),
                unused,
                not_recorded,
            }
        })
        .collect()
}

/// A socket grant as the audit writes it: `tcp 127.0.0.1:5432`.
pub fn socket_words(socket: &crate::policy::socket::SocketGrant) -> String {
    format!("{:?} {}", socket.protocol, socket.address).to_lowercase()
}

/// The manifest's text with only what was used kept, and comments saying
/// what was dropped and why. Relative paths are made absolute (resolved as
/// the original manifest resolved them), so the suggestion works wherever it
/// is written. Fails only if `text` is not TOML.
pub fn suggest(manifest: &Manifest, text: &str, review: &ToolReview, window: &str) -> Result<String, String> {
    use toml_edit::{DocumentMut, Item, Value};
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut dropped: Vec<String> = Vec::new();
    let unused = |kind: &str, item: &str| review.unused.iter().any(|u| u.kind == kind && u.item == item);

    if let Some(tool) = doc.get_mut("tool").and_then(Item::as_table_mut) {
        // Ambient authority: the working directory, against which a manifest
        // loaded by a relative path resolved its component.
        let component = std::path::absolute(&manifest.component).unwrap_or_else(|_| manifest.component.clone());
        tool["component"] = toml_edit::value(component.display().to_string());
    }
    if let Some(dirs) = doc.get_mut("filesystem").and_then(Item::as_array_of_tables_mut) {
        for (table, grant) in dirs.iter_mut().zip(&manifest.filesystem) {
            table["host"] = toml_edit::value(grant.host.display().to_string());
        }
    }
    if let Some(rules) = doc.get_mut("egress").and_then(Item::as_array_of_tables_mut) {
        rules.retain(|table| {
            let url = table.get("url").and_then(Item::as_str).unwrap_or_default().to_owned();
            let keep = !unused("egress_rule", &url);
            if !keep {
                dropped.push(format!("egress rule {url}: never matched in {window}"));
            }
            keep
        });
        for table in rules.iter_mut() {
            let url = table.get("url").and_then(Item::as_str).unwrap_or_default().to_owned();
            let Some(methods) = table.get_mut("methods").and_then(Item::as_array_mut) else { continue };
            let before: Vec<String> = methods.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect();
            methods.retain(|m| m.as_str().is_none_or(|m| !unused("method", &format!("{m} on {url}"))));
            for method in before.iter().filter(|m| unused("method", &format!("{m} on {url}"))) {
                dropped.push(format!("method {method} of {url}: never used in {window}"));
            }
        }
    }
    // Credentials injected into a dropped rule are dropped too: a manifest
    // cannot inject into a rule it does not have.
    let kept_rules: BTreeSet<String> = doc
        .get("egress")
        .and_then(Item::as_array_of_tables)
        .map(|rules| rules.iter().filter_map(|t| t.get("url").and_then(Item::as_str).map(str::to_owned)).collect())
        .unwrap_or_default();
    if let Some(credentials) = doc.get_mut("credentials").and_then(Item::as_array_of_tables_mut) {
        credentials.retain(|table| {
            let name = table.get("name").and_then(Item::as_str).unwrap_or_default().to_owned();
            if unused("credential", &name) {
                dropped.push(format!("credential {name}: never minted in {window}"));
                return false;
            }
            let injected_into = table
                .get("inject")
                .and_then(|i| {
                    i.as_inline_table()
                        .and_then(|t| t.get("egress"))
                        .or_else(|| i.get("egress").and_then(Item::as_value))
                })
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(rule) = injected_into.filter(|rule| !kept_rules.contains(rule)) {
                dropped.push(format!("credential {name}: injected only into {rule}, which is dropped"));
                return false;
            }
            true
        });
        for table in credentials.iter_mut() {
            let name = table.get("name").and_then(Item::as_str).unwrap_or_default().to_owned();
            let Some(scopes) = table.get_mut("scopes").and_then(Item::as_array_mut) else { continue };
            let before: Vec<String> = scopes.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect();
            scopes.retain(|s| s.as_str().is_none_or(|s| !unused("scope", &format!("{s} of {name}"))));
            for scope in before.iter().filter(|s| unused("scope", &format!("{s} of {name}"))) {
                dropped.push(format!("scope {scope} of {name}: never requested in {window}"));
            }
        }
    }
    if let Some(sockets) = doc.get_mut("sockets").and_then(Item::as_array_of_tables_mut) {
        let grants = manifest.sockets.clone();
        let mut index = 0;
        sockets.retain(|_| {
            let keep = grants.get(index).is_none_or(|grant| !unused("socket", &socket_words(grant)));
            if !keep {
                dropped.push(format!("socket {}: never connected in {window}", socket_words(&grants[index])));
            }
            index += 1;
            keep
        });
    }
    for key in ["egress", "credentials", "sockets"] {
        if doc.get(key).and_then(Item::as_array_of_tables).is_some_and(|tables| tables.is_empty()) {
            doc.remove(key);
        }
    }
    let mut header =
        format!("# Suggested by `toolcell review` for {}: what the audit shows was used in {window}.\n", manifest.name);
    if dropped.is_empty() {
        header.push_str("# Nothing was dropped: every recorded entitlement was used.\n");
    } else {
        header.push_str("# Dropped:\n");
        for line in &dropped {
            header.push_str(&format!("#   - {line}\n"));
        }
    }
    for line in &review.not_recorded {
        header.push_str(&format!("# Kept, since its use is not recorded: {line}\n"));
    }
    header.push('\n');
    Ok(header + &doc.to_string())
}
