//! `call`: opening a task on a tool. The grant is the manifest intersected
//! with the caller's narrowing; a narrowing that would widen it is refused.

use crate::audit::AuditKind;
use crate::decide::{Action, CallContext, Denial};
use crate::grant::{Grant, Narrowing};
use crate::manifest::Manifest;

/// Opening a task: the tool's manifest, narrowed as the caller asks.
pub(crate) struct OpenTask<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) narrowing: &'a Narrowing,
}

impl Action for OpenTask<'_> {
    type Allowed = Grant;
    const NAME: &'static str = "call";

    fn within_grant(&self, _call: Option<&CallContext>) -> Result<Grant, Denial> {
        // The denial's reason is what the narrowing asked for beyond the
        // manifest; the caller names the tool around it (`WideningError`).
        Grant::new(self.manifest, self.narrowing).map_err(|error| Denial::denied(error.what))
    }

    fn denied(&self, _call: Option<&CallContext>, denial: &Denial) -> Option<AuditKind> {
        Some(AuditKind::TaskRefused { reason: denial.reason.clone() })
    }
}
