//! Exit codes. A command component's own exit code passes through (WASI 0.2
//! carries only success or failure, so it is 0 or 1); toolcell's own
//! outcomes use codes a tool cannot produce.

use toolcell_runtime::{InvokeError, LimitKind};

/// The tool returned an error value, or a command exited non-zero.
pub const TOOL_FAILED: u8 = 1;
/// A limit stopped the call (memory, cpu, input, output, stack).
pub const LIMIT: u8 = 121;
/// The wall-clock timeout (or the task deadline) stopped the call.
pub const TIMEOUT: u8 = 124;
/// toolcell refused to run: bad flags, manifest or policies, component refused, grant widened, a
/// request-time policy or an approver refused the call, host error.
pub const REFUSED: u8 = 125;
/// The tool crashed: a panic, an unreachable instruction, a bad memory access.
pub const CRASHED: u8 = 126;
/// Stopped by SIGINT after cancelling the running call and revoking its credentials.
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM after cancelling the running call and revoking its credentials.
pub const TERMINATED: u8 = 143;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    the tool returned an error, or the command exited non-zero
  2    command-line usage error
  121  a limit stopped the call (memory, cpu, max_input, max_output, stack)
  124  the wall-clock timeout stopped the call
  125  toolcell refused: invalid manifest, policies or flags, component refused, grant widened,
       a request-time policy or an approver refused the call, host error
  126  the tool crashed (panic, trap)
  130  stopped by SIGINT: running calls cancelled, their credentials revoked (a second signal exits at once)
  143  stopped by SIGTERM: the same";

/// The exit code for a call that produced no result.
pub fn for_error(error: &InvokeError) -> u8 {
    match error {
        InvokeError::Limit(hit) if hit.kind == LimitKind::Timeout => TIMEOUT,
        InvokeError::Limit(_) => LIMIT,
        InvokeError::Trap { .. } => CRASHED,
        _ => REFUSED,
    }
}
