//! `call`: opening a task on a tool. The grant is the manifest intersected
//! with the caller's narrowing; a narrowing that would widen it is refused.

use crate::audit::AuditKind;
use crate::decide::{Action, CallContext, Denial};
use crate::grant::{Grant, Narrowing};
use crate::manifest::Manifest;
use crate::request_policy::Digest;

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

/// Calling the tool, with this input. The grant was decided when the task
/// opened; this action is what request-time policy sees of each call.
pub(crate) struct InvokeTool;

impl Action for InvokeTool {
    type Allowed = ();
    const NAME: &'static str = "call";

    fn within_grant(&self, _call: Option<&CallContext>) -> Result<(), Denial> {
        Ok(())
    }

    fn denied(&self, _call: Option<&CallContext>, _denial: &Denial) -> Option<AuditKind> {
        // The `policy` event records it, and the invocation ends `denied` with its reason.
        None
    }
}

/// The digest of a call's input: its JSON, or a command's arguments and stdin.
pub(crate) fn input_digest(json: Option<&str>, args: &[String], stdin: &[u8]) -> Digest {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0;
    if let Some(json) = json {
        hasher.update(json.as_bytes());
        size += json.len();
    }
    for arg in args {
        hasher.update(arg.as_bytes());
        hasher.update([0]);
        size += arg.len() + 1;
    }
    hasher.update(stdin);
    size += stdin.len();
    Digest { size: size as u64, sha256: hex::encode(hasher.finalize()) }
}
