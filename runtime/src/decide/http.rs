//! `http`: one outbound request, decided twice. First its request line: the
//! path is one servers cannot normalise into another, a grant rule allows
//! its scheme, host, port, method and path, the rule has requests left in
//! this call, and TRACE or CONNECT never go out on a rule that carries a
//! credential. Then, once its host is resolved, every address it resolved
//! to: loopback, private, link-local, metadata and special ranges only
//! where the rule names the address.

use std::net::IpAddr;
use std::time::Instant;

use crate::audit::{AuditKind, clip};
use crate::decide::{Action, CallContext, Denial};
use crate::grant::Grant;
use crate::invocation::millis;
use crate::policy::credential::Exposure;
use crate::policy::egress::{
    EgressRule, NEVER_WITH_CREDENTIALS, RequestLine, check_addresses, check_request_path, refusal,
};

/// What the audit trail records of a request: each field a tool chooses,
/// clipped, so a record's size is bounded.
#[derive(Clone, Debug)]
pub(crate) struct RequestNames {
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    /// When the request was made.
    pub(crate) started: Instant,
}

impl RequestNames {
    pub(crate) fn new(line: &RequestLine<'_>, started: Instant) -> RequestNames {
        RequestNames { method: clip(line.method, 32), host: clip(line.host, 256), path: clip(line.path, 512), started }
    }

    /// The request's `egress` audit event.
    pub(crate) fn event(
        &self,
        invocation: &str,
        decision: &'static str,
        rule: Option<&str>,
        reason: Option<&str>,
        (status, sent, received): (Option<u16>, u64, u64),
    ) -> AuditKind {
        AuditKind::Egress {
            invocation: invocation.to_owned(),
            decision,
            rule: rule.map(str::to_owned),
            reason: reason.map(|reason| clip(reason, 1024)),
            method: self.method.clone(),
            host: self.host.clone(),
            path: self.path.clone(),
            status,
            bytes_sent: sent,
            bytes_received: received,
            duration_ms: millis(self.started.elapsed()),
        }
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        let invocation = call.map_or("", |call| call.invocation.as_str());
        tracing::info!(target: "toolcell::egress", host = %self.host, "denied: {}", clip(&denial.reason, 1024));
        Some(self.event(invocation, denial.decision.name(), None, Some(&denial.reason), (None, 0, 0)))
    }
}

/// A request, by its request line: allowed by the rule it matched.
pub(crate) struct HttpRequest<'a> {
    pub(crate) line: &'a RequestLine<'a>,
    pub(crate) names: &'a RequestNames,
}

impl Action for HttpRequest<'_> {
    type Allowed = EgressRule;
    const NAME: &'static str = "http";

    fn within_grant(&self, call: Option<&CallContext>) -> Result<EgressRule, Denial> {
        let call = call.expect("requests are made by calls");
        let line = self.line;
        let (method, host, path) = (line.method, line.host, line.path);
        check_request_path(path).map_err(|refused| Denial::denied(refused.to_string()))?;
        let rules = &call.grant.egress;
        let Some(index) = rules.iter().position(|rule| rule.allows(line)) else {
            return Err(Denial::denied(refusal(rules, line)));
        };
        let rule = &rules[index];
        let used = || {
            Denial::denied(format!(
                "{method} {host}{path}: rule {} allows {} requests per call and they are used",
                rule.url, rule.max_requests
            ))
        };
        if call.requests_sent(index) >= rule.max_requests {
            return Err(used());
        }
        if NEVER_WITH_CREDENTIALS.contains(&method) && carries_credentials(&call.grant, rule) {
            return Err(Denial::denied(format!(
                "{method} {host}{path}: rule {} carries a credential, and {method} is never sent with one",
                rule.url
            )));
        }
        if !call.take_request(index, rule.max_requests) {
            return Err(used());
        }
        Ok(rule.clone())
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        self.names.denied(call, denial)
    }
}

/// True when a credential is injected into requests `rule` allows.
fn carries_credentials(grant: &Grant, rule: &EgressRule) -> bool {
    grant.credentials.iter().any(|spec| match &spec.exposure {
        Exposure::Inject(injection) => injection.egress.contains(&rule.url),
        Exposure::Reveal => false,
    })
}

/// The addresses an allowed request's host resolved to; the request may
/// connect only to these.
pub(crate) struct HttpAddresses<'a> {
    pub(crate) rule: &'a EgressRule,
    pub(crate) addresses: &'a [IpAddr],
    pub(crate) names: &'a RequestNames,
}

impl Action for HttpAddresses<'_> {
    type Allowed = ();
    const NAME: &'static str = "http";

    fn within_grant(&self, _call: Option<&CallContext>) -> Result<(), Denial> {
        check_addresses(self.rule, self.addresses).map_err(|refused| Denial::denied(refused.to_string()))
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        self.names.denied(call, denial)
    }
}
