//! Governance reports, read from what the runtime itself decides with and
//! writes: blast radius from manifests, policies and the operator's config;
//! exposure and access review from the audit trail. Nothing comes from a
//! second source of truth.

pub mod blast;
pub mod diff;
pub mod exposure;
pub mod review;
#[cfg(test)]
mod tests;
pub mod trail;

pub use blast::{
    ANY_PRINCIPAL, CredentialReach, Decision, DirReach, EgressReach, Outcome, PrincipalReach, ReachInputs, SCORING,
    Score, SocketReach, ToolReach, principal_reach, tool_reach,
};
pub use diff::{ReachChange, diff_reach};
pub use exposure::{ExposureByTool, MeasuredExposure, measure_exposure};
pub use review::{OverdueReview, ReviewOverdue, ToolReview, Unused, review, socket_words, suggest};
pub use trail::{AuditRecord, KNOWN_EVENTS, Trail, TrailError, read_trail, read_trail_partially};
