//! Behaviour baselines: what each tool and each principal normally does,
//! learned from the audit trail (`toolcell baseline learn`), and the file
//! the server compares live behaviour with.
//!
//! Per call: requests, distinct hosts, bytes out and in, denials, mints;
//! per minute in which calls ran: calls; and the hosts and methods seen.
//! Each distribution is kept as p50, p90, p99 and max.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A distribution's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// The summary of `values` (all zeros for none).
    pub fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least q of the values at or below it.
        let at = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Spread { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: values[values.len() - 1] }
    }
}

/// What one tool, or one principal, normally does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Calls the baseline was learned from.
    pub calls: u64,
    pub requests_per_call: Spread,
    pub hosts_per_call: Spread,
    pub bytes_out_per_call: Spread,
    pub bytes_in_per_call: Spread,
    pub denials_per_call: Spread,
    pub mints_per_call: Spread,
    /// Calls per minute, over the minutes in which calls ran.
    pub calls_per_minute: Spread,
    /// Hosts requests went to.
    pub hosts: BTreeSet<String>,
    /// Request methods used.
    pub methods: BTreeSet<String>,
}

/// A baseline file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// `1`.
    pub version: u32,
    /// When it was learned (RFC 3339).
    pub learned_at: String,
    /// The earliest event it read (RFC 3339), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Per tool.
    pub tools: BTreeMap<String, Behaviour>,
    /// Per principal, across its tools.
    pub principals: BTreeMap<String, Behaviour>,
}

/// A baseline could not be learned, read or used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Reading a file failed.
    #[error("`{path}`: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The baseline file is not one this runtime reads.
    #[error("baseline `{path}` is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (with its place in the file).
        reason: String,
    },
    /// An audit line is not an audit event.
    #[error("audit `{path}` line {line}: {reason}")]
    Audit {
        /// The audit file.
        path: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Baseline {
    /// Reads and checks a baseline file.
    // Ambient authority: the baseline file the operator's config names.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|cause| BaselineError::Io { path: path.to_owned(), cause })?;
        let malformed = |reason: String| BaselineError::Malformed { path: path.to_owned(), reason };
        let baseline: Baseline = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        if baseline.version != 1 {
            return Err(malformed(format!("version {} is not one this runtime reads (1)", baseline.version)));
        }
        let spreads = |b: &Behaviour| {
            [
                b.requests_per_call,
                b.hosts_per_call,
                b.bytes_out_per_call,
                b.bytes_in_per_call,
                b.denials_per_call,
                b.mints_per_call,
                b.calls_per_minute,
            ]
        };
        for (kind, name, behaviour) in baseline
            .tools
            .iter()
            .map(|(n, b)| ("tool", n, b))
            .chain(baseline.principals.iter().map(|(n, b)| ("principal", n, b)))
        {
            for spread in spreads(behaviour) {
                let ordered = spread.p50 <= spread.p90 && spread.p90 <= spread.p99 && spread.p99 <= spread.max;
                let finite =
                    [spread.p50, spread.p90, spread.p99, spread.max].iter().all(|v| v.is_finite() && *v >= 0.0);
                if !ordered || !finite {
                    return Err(malformed(format!(
                        "{kind} `{name}`: a distribution must be finite, non-negative and ordered p50 <= p90 <= p99 <= max"
                    )));
                }
            }
        }
        Ok(baseline)
    }

    /// Learns a baseline from audit trails (JSON lines), from the events at
    /// or after `since` (unix seconds). Lines that are not events of this
    /// runtime are refused with their place.
    // Ambient authority: the audit files the operator names.
    pub fn learn(audits: &[PathBuf], since: Option<i64>) -> Result<Baseline, BaselineError> {
        let mut calls: HashMap<String, CallSeen> = HashMap::new();
        let mut earliest: Option<i64> = None;
        for path in audits {
            let io = |cause| BaselineError::Io { path: path.to_owned(), cause };
            let file = std::fs::File::open(path).map_err(io)?;
            for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let bad = |reason: String| BaselineError::Audit { path: path.to_owned(), line: index + 1, reason };
                let event: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                let Some(at) = event["time"].as_str() else { return Err(bad("no `time`".into())) };
                let at = OffsetDateTime::parse(at, &Rfc3339).map_err(|e| bad(format!("`time`: {e}")))?.unix_timestamp();
                if since.is_some_and(|since| at < since) {
                    continue;
                }
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                see(&mut calls, &event, at);
            }
        }
        let mut tools: BTreeMap<String, Vec<&CallSeen>> = BTreeMap::new();
        let mut principals: BTreeMap<String, Vec<&CallSeen>> = BTreeMap::new();
        for call in calls.values().filter(|call| call.started.is_some()) {
            tools.entry(call.tool.clone()).or_default().push(call);
            principals.entry(call.principal.clone()).or_default().push(call);
        }
        let rfc = |at: i64| {
            OffsetDateTime::from_unix_timestamp(at).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
        };
        Ok(Baseline {
            version: 1,
            learned_at: crate::audit::now_rfc3339(),
            since: earliest.map(rfc),
            tools: tools.into_iter().map(|(name, calls)| (name, behaviour(&calls))).collect(),
            principals: principals.into_iter().map(|(name, calls)| (name, behaviour(&calls))).collect(),
        })
    }
}

/// What one call did, from its events.
#[derive(Debug, Default)]
struct CallSeen {
    tool: String,
    principal: String,
    /// Unix seconds.
    started: Option<i64>,
    requests: u64,
    hosts: BTreeSet<String>,
    methods: BTreeSet<String>,
    bytes_out: u64,
    bytes_in: u64,
    denials: u64,
    mints: u64,
}

fn see(calls: &mut HashMap<String, CallSeen>, event: &serde_json::Value, at: i64) {
    let Some(invocation) = event["invocation"].as_str() else { return };
    let call = calls.entry(invocation.to_owned()).or_default();
    if call.tool.is_empty() {
        call.tool = event["tool"].as_str().unwrap_or_default().to_owned();
        call.principal = event["principal"].as_str().unwrap_or_default().to_owned();
    }
    match event["event"].as_str().unwrap_or_default() {
        "invocation_started" => call.started = Some(at),
        "egress" if event["decision"] == "allowed" => {
            call.requests += 1;
            call.hosts.insert(event["host"].as_str().unwrap_or_default().to_owned());
            call.methods.insert(event["method"].as_str().unwrap_or_default().to_owned());
            call.bytes_out += event["bytes_sent"].as_u64().unwrap_or(0);
            call.bytes_in += event["bytes_received"].as_u64().unwrap_or(0);
        }
        "egress" | "socket" | "credential_refused" => call.denials += 1,
        "policy" if event["decision"] == "deny" => call.denials += 1,
        "credential_minted" => call.mints += 1,
        _ => {}
    }
}

fn behaviour(calls: &[&CallSeen]) -> Behaviour {
    let spread = |value: fn(&CallSeen) -> f64| Spread::of(calls.iter().map(|call| value(call)).collect());
    let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for call in calls {
        *per_minute.entry(call.started.unwrap_or(0).div_euclid(60)).or_default() += 1;
    }
    Behaviour {
        calls: calls.len() as u64,
        requests_per_call: spread(|c| c.requests as f64),
        hosts_per_call: spread(|c| c.hosts.len() as f64),
        bytes_out_per_call: spread(|c| c.bytes_out as f64),
        bytes_in_per_call: spread(|c| c.bytes_in as f64),
        denials_per_call: spread(|c| c.denials as f64),
        mints_per_call: spread(|c| c.mints as f64),
        calls_per_minute: Spread::of(per_minute.values().map(|n| *n as f64).collect()),
        hosts: calls.iter().flat_map(|c| c.hosts.iter().cloned()).collect(),
        methods: calls.iter().flat_map(|c| c.methods.iter().cloned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_nearest_rank() {
        let spread = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!((spread.p50, spread.p90, spread.p99, spread.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Spread::of(vec![7.0]).p99, 7.0);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    fn line(event: serde_json::Value) -> String {
        let mut event = event;
        event["time"] = "2026-11-30T10:00:05Z".into();
        event["task"] = "t".into();
        event.to_string()
    }

    #[test]
    fn learning_reads_calls_per_tool_and_principal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut lines = Vec::new();
        for (n, bytes) in [(1, 100), (2, 300)] {
            let who = |mut e: serde_json::Value| {
                e["tool"] = "gh".into();
                e["principal"] = "alice".into();
                e["invocation"] = format!("i{n}").into();
                line(e)
            };
            lines.push(who(serde_json::json!({ "event": "invocation_started", "shape": "tool" })));
            lines.push(who(serde_json::json!({ "event": "egress", "decision": "allowed", "method": "POST",
                "host": "api.github.com", "path": "/x", "bytes_sent": bytes, "bytes_received": 10, "duration_ms": 1 })));
            lines.push(who(serde_json::json!({ "event": "credential_minted", "credential": "c" })));
        }
        lines.push(line(serde_json::json!({ "event": "egress", "decision": "denied", "tool": "gh",
            "principal": "alice", "invocation": "i2", "method": "GET", "host": "evil.test", "path": "/" })));
        std::fs::write(&path, lines.join("\n")).unwrap();
        let baseline = Baseline::learn(std::slice::from_ref(&path), None).unwrap();
        let gh = &baseline.tools["gh"];
        assert_eq!(gh.calls, 2);
        assert_eq!((gh.bytes_out_per_call.p50, gh.bytes_out_per_call.max), (100.0, 300.0));
        assert_eq!(gh.hosts.iter().collect::<Vec<_>>(), ["api.github.com"], "a denied host is not a usual one");
        assert_eq!(gh.denials_per_call.max, 1.0);
        assert_eq!(gh.mints_per_call.p50, 1.0);
        assert_eq!(gh.calls_per_minute.max, 2.0);
        assert_eq!(baseline.principals["alice"].calls, 2);
        // Everything before `since` is left out.
        let later = OffsetDateTime::parse("2026-12-01T00:00:00Z", &Rfc3339).unwrap().unix_timestamp();
        assert!(Baseline::learn(std::slice::from_ref(&path), Some(later)).unwrap().tools.is_empty());

        // Written and read back; a broken one is refused with its reason.
        let file = dir.path().join("baseline.json");
        std::fs::write(&file, serde_json::to_string_pretty(&baseline).unwrap()).unwrap();
        assert_eq!(Baseline::load(&file).unwrap(), baseline);
        let mut broken = baseline.clone();
        broken.tools.get_mut("gh").unwrap().bytes_out_per_call.p50 = 1e9;
        std::fs::write(&file, serde_json::to_string(&broken).unwrap()).unwrap();
        assert!(Baseline::load(&file).unwrap_err().to_string().contains("ordered"));
        std::fs::write(&path, "not json\n").unwrap();
        let error = Baseline::learn(&[path], None).unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }
}
