//! Rate limits as they are counted (their vocabulary is `policy/rate.rs`):
//! every limit that applies to an action is checked, so the lowest wins.
//! Each limit counts over a sliding minute, in one-second buckets: a refusal
//! says when enough of the minute will have passed for the refused action
//! to fit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(test)]
use crate::policy::rate::{PerMinute, RateLimitRule};
use crate::policy::rate::{RateMetric, ToolRateLimits};
#[cfg(test)]
use crate::units::ByteSize;

/// What a limit is counted over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scope {
    Tool,
    Principal,
    Pair,
}

/// A refusal: which limit, over what, and when to try again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limit {metric} = {limit} for {scope} reached ({used} in the last minute); retry in {}s", retry_after.as_secs_f64().ceil())]
pub struct RateLimited {
    /// The limit's name (`calls_per_minute`, …).
    pub metric: &'static str,
    /// Its value.
    pub limit: u64,
    /// What it counts over: `tool x`, `principal p`, `principal p on tool x`.
    pub scope: String,
    /// What the last minute holds.
    pub used: u64,
    /// When the refused action would fit.
    pub retry_after: Duration,
}

/// A count over a sliding span of seconds, in one-second buckets.
#[derive(Debug)]
pub(crate) struct Window {
    /// Per bucket: the second it counts (since its owner's start), and its count.
    buckets: Vec<(u64, u64)>,
}

impl Window {
    /// A window over the last `seconds` seconds.
    pub(crate) fn new(seconds: usize) -> Window {
        Window { buckets: vec![(u64::MAX, 0); seconds.max(1)] }
    }

    fn span(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn live(&self, second: u64, now: u64) -> bool {
        second != u64::MAX && second <= now && now - second < self.span()
    }

    /// The count of the span ending in second `now`.
    pub(crate) fn used(&self, now: u64) -> u64 {
        self.buckets.iter().filter(|(second, _)| self.live(*second, now)).map(|(_, count)| count).sum()
    }

    /// How long until `amount` more fits under `limit`: the oldest buckets
    /// leave the span first.
    fn retry_after(&self, now: u64, amount: u64, limit: u64) -> Duration {
        let mut live: Vec<(u64, u64)> =
            self.buckets.iter().copied().filter(|(second, _)| self.live(*second, now)).collect();
        live.sort_unstable();
        let mut used: u64 = live.iter().map(|(_, count)| count).sum();
        for (second, count) in live {
            used -= count;
            if used.saturating_add(amount) <= limit {
                // That bucket leaves the span at `second + span`.
                return Duration::from_secs((second + self.span()).saturating_sub(now));
            }
        }
        Duration::from_secs(self.span())
    }

    pub(crate) fn add(&mut self, now: u64, amount: u64) {
        let span = self.span();
        let bucket = &mut self.buckets[(now % span) as usize];
        if bucket.0 != now {
            *bucket = (now, 0);
        }
        bucket.1 = bucket.1.saturating_add(amount);
    }
}

/// The operator's rate limits and what each has counted.
#[derive(Debug)]
pub(crate) struct RateLimits {
    rules: Vec<crate::policy::rate::RateLimitRule>,
    windows: Mutex<HashMap<(Scope, String, RateMetric), Window>>,
    start: Instant,
}

impl RateLimits {
    pub(crate) fn new(rules: Vec<crate::policy::rate::RateLimitRule>) -> RateLimits {
        RateLimits { rules, windows: Mutex::new(HashMap::new()), start: Instant::now() }
    }

    /// True when nothing could be limited: no operator rule and none in
    /// `tool`'s manifest.
    pub(crate) fn idle(&self, tool: &ToolRateLimits) -> bool {
        self.rules.is_empty() && tool.tool.is_empty() && tool.per_principal.is_empty()
    }

    /// The lowest limit on `metric` over `scope` for this principal and tool.
    fn limit(
        &self,
        scope: Scope,
        metric: RateMetric,
        principal: &str,
        tool: &str,
        own: &ToolRateLimits,
    ) -> Option<u64> {
        let named = |pattern: &Option<String>, name: &str| pattern.as_deref().is_some_and(|p| p == "*" || p == name);
        let operator = self.rules.iter().filter(|rule| match scope {
            Scope::Tool => rule.principal.is_none() && named(&rule.tool, tool),
            Scope::Principal => rule.tool.is_none() && named(&rule.principal, principal),
            Scope::Pair => named(&rule.tool, tool) && named(&rule.principal, principal),
        });
        let manifest = match scope {
            Scope::Tool => own.tool.of(metric),
            Scope::Pair => own.per_principal.of(metric),
            Scope::Principal => None,
        };
        operator.filter_map(|rule| rule.per_minute().of(metric)).chain(manifest).min()
    }

    /// Takes each `(metric, amount)` for this principal and tool, or
    /// refuses with the first limit one would pass, and takes nothing. Bytes
    /// out are a request's body, read before the request is decided.
    pub(crate) fn take(
        &self,
        wanted: &[(RateMetric, u64)],
        principal: &str,
        tool: &str,
        own: &ToolRateLimits,
    ) -> Result<(), RateLimited> {
        if self.idle(own) {
            return Ok(());
        }
        let now = self.start.elapsed().as_secs();
        let mut limits: Vec<(Scope, RateMetric, u64, u64)> = Vec::new();
        for &(metric, amount) in wanted {
            for scope in [Scope::Tool, Scope::Principal, Scope::Pair] {
                if let Some(limit) = self.limit(scope, metric, principal, tool, own) {
                    limits.push((scope, metric, amount, limit));
                }
            }
        }
        if limits.is_empty() {
            return Ok(());
        }
        let key = |scope: Scope| match scope {
            Scope::Tool => tool.to_owned(),
            Scope::Principal => principal.to_owned(),
            Scope::Pair => format!("{principal}\0{tool}"),
        };
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for &(scope, metric, amount, limit) in &limits {
            let window = windows.entry((scope, key(scope), metric)).or_insert_with(|| Window::new(60));
            let used = window.used(now);
            if used.saturating_add(amount) > limit {
                return Err(RateLimited {
                    metric: metric.name(),
                    limit,
                    scope: match scope {
                        Scope::Tool => format!("tool `{tool}`"),
                        Scope::Principal => format!("principal `{principal}`"),
                        Scope::Pair => format!("principal `{principal}` on tool `{tool}`"),
                    },
                    used,
                    retry_after: window.retry_after(now, amount.max(1), limit).max(Duration::from_secs(1)),
                });
            }
        }
        for (scope, metric, amount, _) in limits {
            windows.entry((scope, key(scope), metric)).or_insert_with(|| Window::new(60)).add(now, amount);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tool: Option<&str>, principal: Option<&str>, calls: u64) -> RateLimitRule {
        RateLimitRule {
            tool: tool.map(str::to_owned),
            principal: principal.map(str::to_owned),
            calls_per_minute: Some(calls),
            ..RateLimitRule::default()
        }
    }

    #[test]
    fn a_window_slides_and_says_when_the_oldest_leaves() {
        let mut window = Window::new(60);
        window.add(10, 3);
        window.add(30, 2);
        assert_eq!(window.used(30), 5);
        // Adding 1 under a limit of 5: the bucket of second 10 leaves at 70.
        assert_eq!(window.retry_after(30, 1, 5), Duration::from_secs(40));
        assert_eq!(window.used(70), 2, "second 10 has left the minute");
        assert_eq!(window.used(89), 2);
        assert_eq!(window.used(90), 0);
        // A bucket reused a minute later starts from nothing.
        window.add(70, 1);
        assert_eq!(window.used(70), 3);
    }

    #[test]
    fn each_scope_counts_apart_and_the_lowest_limit_wins() {
        let limits = RateLimits::new(vec![
            rule(Some("*"), None, 10),
            rule(None, Some("alice"), 3),
            rule(Some("search"), Some("*"), 2),
        ]);
        let own = ToolRateLimits::default();
        for _ in 0..2 {
            limits.take(&[(RateMetric::Calls, 1)], "bob", "search", &own).unwrap();
        }
        let refused = limits.take(&[(RateMetric::Calls, 1)], "bob", "search", &own).unwrap_err();
        assert_eq!((refused.metric, refused.limit), ("calls_per_minute", 2));
        assert_eq!(refused.scope, "principal `bob` on tool `search`");
        assert!(refused.retry_after >= Duration::from_secs(1) && refused.retry_after <= Duration::from_secs(60));
        assert!(refused.to_string().contains("retry in"), "{refused}");
        // Another principal on the same tool has its own pair count.
        limits.take(&[(RateMetric::Calls, 1)], "carol", "search", &own).unwrap();
        // Alice's own limit is across tools.
        for tool in ["a", "b", "c"] {
            limits.take(&[(RateMetric::Calls, 1)], "alice", tool, &own).unwrap();
        }
        let refused = limits.take(&[(RateMetric::Calls, 1)], "alice", "d", &own).unwrap_err();
        assert_eq!(refused.scope, "principal `alice`");
        // A manifest lowers its own tool's limit below the operator's.
        let lower = ToolRateLimits {
            tool: PerMinute { calls_per_minute: Some(1), ..PerMinute::default() },
            ..ToolRateLimits::default()
        };
        limits.take(&[(RateMetric::Calls, 1)], "dave", "quiet", &lower).unwrap();
        let refused = limits.take(&[(RateMetric::Calls, 1)], "erin", "quiet", &lower).unwrap_err();
        assert_eq!((refused.scope.as_str(), refused.limit), ("tool `quiet`", 1));
    }

    #[test]
    fn a_body_that_would_pass_the_byte_limit_is_refused_and_not_counted() {
        let limits = RateLimits::new(vec![RateLimitRule {
            tool: Some("up".into()),
            bytes_out_per_minute: Some(ByteSize(1000)),
            ..RateLimitRule::default()
        }]);
        let own = ToolRateLimits::default();
        limits.take(&[(RateMetric::BytesOut, 600)], "p", "up", &own).unwrap();
        let refused = limits.take(&[(RateMetric::BytesOut, 401)], "p", "up", &own).unwrap_err();
        assert_eq!((refused.used, refused.metric), (600, "bytes_out_per_minute"));
        // What was refused was not counted: a smaller body still fits.
        limits.take(&[(RateMetric::BytesOut, 400)], "p", "up", &own).unwrap();
        assert!(limits.take(&[(RateMetric::BytesOut, 1)], "p", "up", &own).is_err());
    }

    #[test]
    fn rules_that_would_mean_nothing_or_everything_are_refused() {
        assert!(RateLimitRule { calls_per_minute: Some(1), ..RateLimitRule::default() }.problem().is_some());
        assert!(RateLimitRule { tool: Some("x".into()), ..RateLimitRule::default() }.problem().is_some());
        let zero = rule(Some("x"), None, 0).problem().unwrap();
        assert!(zero.contains("calls_per_minute = 0"), "{zero}");
        assert!(rule(Some("x"), None, 1).problem().is_none());
    }
}
