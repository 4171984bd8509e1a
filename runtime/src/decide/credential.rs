//! `credential`: what a tool asks of the credentials its grant names. A
//! tool's `acquire` names a granted credential and scopes within it; each
//! mint stays within the call's `max_credentials` and leaves a second at
//! least before the call's deadline; `reveal` shows only credentials whose
//! exposure is `reveal`.

use std::time::{Duration, SystemTime};

use crate::audit::{AuditKind, clip};
use crate::decide::{Action, CallContext, Denial, Refused};
use crate::policy::credential::{CredentialSpec, Exposure};

/// Longest credential name a tool may ask for (manifest names are at most 64).
pub(crate) const MAX_NAME: usize = 64;
/// Longest scope a tool may ask for.
const MAX_SCOPE: usize = 256;
/// Most scopes in one `acquire`.
const MAX_SCOPES: usize = 32;

/// The audit event of a credential the tool did not get.
pub(crate) fn refused(call: Option<&CallContext>, credential: &str, decision: Refused, reason: &str) -> AuditKind {
    AuditKind::CredentialRefused {
        invocation: call.map_or_else(String::new, |call| call.invocation.clone()),
        credential: clip(credential, MAX_NAME),
        decision: decision.name(),
        reason: clip(reason, 1024),
    }
}

/// A tool's `acquire`: a credential by name, with `scopes` (empty: all
/// the grant allows). Allowed with the granted credential and the scopes to mint.
pub(crate) struct Acquire<'a> {
    pub(crate) name: &'a str,
    pub(crate) scopes: &'a [String],
}

impl Action for Acquire<'_> {
    type Allowed = (CredentialSpec, Vec<String>);
    const NAME: &'static str = "credential";

    fn within_grant(&self, call: Option<&CallContext>) -> Result<Self::Allowed, Denial> {
        let call = call.expect("credentials are acquired by calls");
        let (name, scopes) = (self.name, self.scopes);
        if name.len() > MAX_NAME {
            return Err(Denial::denied(format!("a credential name is at most {MAX_NAME} bytes")));
        }
        if scopes.len() > MAX_SCOPES || scopes.iter().any(|s| s.len() > MAX_SCOPE) {
            return Err(Denial::denied(format!(
                "an acquire asks for at most {MAX_SCOPES} scopes of at most {MAX_SCOPE} bytes"
            )));
        }
        let granted = &call.grant.credentials;
        let Some(spec) = granted.iter().find(|s| s.name == name) else {
            let names: Vec<&str> = granted.iter().map(|s| s.name.as_str()).collect();
            return Err(Denial::denied(format!(
                "credential `{name}` is not granted to this task (granted: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )));
        };
        let scopes = if scopes.is_empty() { spec.scopes.clone() } else { scopes.to_vec() };
        if let Some(extra) = scopes.iter().find(|s| !spec.scopes.contains(s)) {
            return Err(Denial::denied(format!(
                "scope `{extra}` is beyond what credential `{name}` grants ([{}])",
                spec.scopes.join(" ")
            )));
        }
        Ok((spec.clone(), scopes))
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        Some(refused(call, self.name, denial.decision, &denial.reason))
    }
}

/// One mint of a granted credential, before its provider is asked.
pub(crate) struct Mint<'a> {
    pub(crate) spec: &'a CredentialSpec,
    /// The call's deadline; everything minted expires by then.
    pub(crate) not_after: SystemTime,
}

impl Action for Mint<'_> {
    /// The time left for the mint.
    type Allowed = Duration;
    const NAME: &'static str = "credential";

    fn within_grant(&self, call: Option<&CallContext>) -> Result<Duration, Denial> {
        let call = call.expect("credentials are minted by calls");
        let max = call.grant.limits.max_credentials;
        if !call.take_mint(max) {
            return Err(Denial::denied(format!(
                "this call has minted its limit of {max} credentials (limits.max_credentials)"
            )));
        }
        let left = self.not_after.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        if left < Duration::from_secs(1) {
            return Err(Denial::unavailable(format!(
                "credential `{}`: less than a second is left before the call's deadline",
                self.spec.name
            )));
        }
        Ok(left)
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        Some(refused(call, &self.spec.name, denial.decision, &denial.reason))
    }
}

/// A tool's `reveal` of a credential it holds (`None`: a handle that names none).
pub(crate) struct Reveal<'a> {
    pub(crate) spec: Option<&'a CredentialSpec>,
}

impl Action for Reveal<'_> {
    type Allowed = ();
    const NAME: &'static str = "credential";

    fn within_grant(&self, _call: Option<&CallContext>) -> Result<(), Denial> {
        let Some(spec) = self.spec else { return Err(Denial::denied("no such credential handle")) };
        match &spec.exposure {
            Exposure::Reveal => Ok(()),
            Exposure::Inject(injection) => Err(Denial::denied(format!(
                "credential `{}` is injected by the host into requests matching {}; it is never revealed",
                spec.name,
                injection.egress.join(", ")
            ))),
        }
    }

    fn denied(&self, call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        Some(refused(call, self.spec.map_or("", |spec| spec.name.as_str()), denial.decision, &denial.reason))
    }
}
