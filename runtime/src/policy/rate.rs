//! Rate limits: calls, egress requests, bytes out and credential mints per
//! minute, per tool, per principal and per (principal, tool). The operator
//! sets them in the runtime config (`[[rate_limits]]`); a manifest can set
//! lower ones for its own tool (`[rate_limits]`). They are counted in
//! `oversight/rate.rs`.

use serde::Deserialize;

use crate::units::ByteSize;

/// What a rate limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateMetric {
    /// Calls started.
    Calls,
    /// Egress requests allowed.
    Requests,
    /// Bytes of request bodies sent.
    BytesOut,
    /// Credentials minted.
    Mints,
}

impl RateMetric {
    /// Its name in configs, manifests and errors.
    pub fn name(self) -> &'static str {
        match self {
            RateMetric::Calls => "calls_per_minute",
            RateMetric::Requests => "requests_per_minute",
            RateMetric::BytesOut => "bytes_out_per_minute",
            RateMetric::Mints => "mints_per_minute",
        }
    }

    pub(crate) const ALL: [RateMetric; 4] =
        [RateMetric::Calls, RateMetric::Requests, RateMetric::BytesOut, RateMetric::Mints];
}

/// Limits per minute; an absent one does not limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerMinute {
    #[serde(default)]
    pub calls_per_minute: Option<u64>,
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub bytes_out_per_minute: Option<ByteSize>,
    #[serde(default)]
    pub mints_per_minute: Option<u64>,
}

impl PerMinute {
    /// The limit on `metric`, if one is set.
    pub fn of(&self, metric: RateMetric) -> Option<u64> {
        match metric {
            RateMetric::Calls => self.calls_per_minute,
            RateMetric::Requests => self.requests_per_minute,
            RateMetric::BytesOut => self.bytes_out_per_minute.map(|b| b.0),
            RateMetric::Mints => self.mints_per_minute,
        }
    }

    /// True when nothing is limited.
    pub fn is_empty(&self) -> bool {
        RateMetric::ALL.iter().all(|metric| self.of(*metric).is_none())
    }

    /// The first limit set to zero (which would refuse everything: a kill
    /// says that better), by name.
    pub fn zero(&self) -> Option<&'static str> {
        RateMetric::ALL.into_iter().find(|metric| self.of(*metric) == Some(0)).map(RateMetric::name)
    }
}

/// One operator rate limit (`[[rate_limits]]` in the runtime config).
/// `tool` alone limits per tool; `principal` alone per principal; both, per
/// (principal, tool) pair. Each is a name, or `*` for every one separately.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub calls_per_minute: Option<u64>,
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub bytes_out_per_minute: Option<ByteSize>,
    #[serde(default)]
    pub mints_per_minute: Option<u64>,
}

impl RateLimitRule {
    pub(crate) fn per_minute(&self) -> PerMinute {
        PerMinute {
            calls_per_minute: self.calls_per_minute,
            requests_per_minute: self.requests_per_minute,
            bytes_out_per_minute: self.bytes_out_per_minute,
            mints_per_minute: self.mints_per_minute,
        }
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.tool.is_none() && self.principal.is_none() {
            return Some("a rate limit names a `tool`, a `principal`, or both (`*` for each one)".into());
        }
        if self.per_minute().is_empty() {
            return Some("a rate limit sets at least one of calls_per_minute, requests_per_minute, bytes_out_per_minute, mints_per_minute".into());
        }
        self.per_minute().zero().map(|name| format!("{name} = 0 refuses everything; use `toolcell kill` for that"))
    }
}

/// The limits a manifest sets for its own tool (`[rate_limits]`): for all
/// callers together, and (`[rate_limits.per_principal]`) for each principal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolRateLimits {
    pub tool: PerMinute,
    pub per_principal: PerMinute,
}
