//! Exposure measured from the audit trail: for each credential, how long
//! minted values really lived (mint to revocation) and how long they stayed
//! valid after revocation, against what a static key would have been.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::trail::{AuditRecord, TrailError, read_trail};

/// What the audit shows of one credential of one tool.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeasuredExposure {
    /// Mints recorded.
    pub mints: usize,
    /// Mints with a revocation recorded.
    pub revoked: usize,
    /// Milliseconds from mint to revocation: p50 and max.
    pub window_ms_p50: Option<u64>,
    pub window_ms_max: Option<u64>,
    /// Seconds a value stayed valid after it was revoked, where the system
    /// could not revoke it (`expires`) or only deny-lists it (`deny_listed`:
    /// verifiers that do not read the deny list accept it until expiry).
    pub residual_s_p50: Option<u64>,
    pub residual_s_max: Option<u64>,
    /// Revocations that failed for good (`gave_up`).
    pub gave_up: usize,
}

/// Measured exposure by tool, then credential name.
pub type ExposureByTool = BTreeMap<String, BTreeMap<String, MeasuredExposure>>;

/// Reads mints and revocations from `audits`.
pub fn measure_exposure(audits: &[impl AsRef<Path>]) -> Result<ExposureByTool, TrailError> {
    struct Minted {
        tool: String,
        credential: String,
        at_ms: i64,
        expires_at: i64,
    }
    let mut minted: HashMap<String, Minted> = HashMap::new();
    let mut windows: HashMap<(String, String), Vec<u64>> = HashMap::new();
    let mut residuals: HashMap<(String, String), Vec<u64>> = HashMap::new();
    let mut result = ExposureByTool::new();
    for record in read_trail(audits)?.records {
        let AuditRecord { event, at_ms, .. } = &record;
        let text = |field: &str| event.get(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        match text("event").as_str() {
            "credential_minted" => {
                let (tool, credential) = (text("tool"), text("credential"));
                result.entry(tool.clone()).or_default().entry(credential.clone()).or_default().mints += 1;
                let expires_at = event.get("expires_at").and_then(|v| v.as_i64()).unwrap_or_default();
                minted.insert(text("id"), Minted { tool, credential, at_ms: *at_ms, expires_at });
            }
            "credential_revoked" => {
                let outcome = text("outcome");
                if outcome == "retrying" {
                    continue;
                }
                let Some(mint) = minted.remove(&text("id")) else { continue };
                let key = (mint.tool.clone(), mint.credential.clone());
                let entry = result.entry(mint.tool).or_default().entry(mint.credential).or_default();
                if outcome == "gave_up" {
                    entry.gave_up += 1;
                    continue;
                }
                entry.revoked += 1;
                windows.entry(key.clone()).or_default().push((at_ms - mint.at_ms).max(0) as u64);
                let residual = match outcome.as_str() {
                    "expires" | "deny_listed" => (mint.expires_at - at_ms / 1000).max(0) as u64,
                    _ => 0,
                };
                residuals.entry(key).or_default().push(residual);
            }
            _ => {}
        }
    }
    for ((tool, credential), mut values) in windows {
        let entry = result.entry(tool).or_default().entry(credential).or_default();
        values.sort_unstable();
        entry.window_ms_p50 = Some(values[values.len() / 2]);
        entry.window_ms_max = values.last().copied();
    }
    for ((tool, credential), mut values) in residuals {
        let entry = result.entry(tool).or_default().entry(credential).or_default();
        values.sort_unstable();
        entry.residual_s_p50 = Some(values[values.len() / 2]);
        entry.residual_s_max = values.last().copied();
    }
    Ok(result)
}
