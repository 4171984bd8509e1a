//! The grant vocabulary: what a manifest, a narrowing and a grant are made
//! of — directories, environment variables, raw sockets, egress rules,
//! credentials, limits and rate limits — and the pure decisions on them (does this rule
//! allow this request line, what class is this address). No wasmtime, no
//! I/O: everything above (manifests, grants, capabilities) reads these
//! types, and nothing here reads anything above.

pub mod credential;
pub mod dir;
pub mod egress;
pub mod env;
pub mod limits;
pub mod rate;
pub mod socket;

/// A manifest's own demand that a person approve an action it grants:
/// `approval = { reason = "...", methods = [...] }` on an egress rule, or
/// `approval = { reason = "...", scopes = [...] }` on a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestApproval {
    /// Why, shown to the approver.
    pub reason: String,
    /// The methods (egress) or scopes (credentials) it covers; empty: every one.
    pub covers: Vec<String>,
}

impl ManifestApproval {
    /// True when an action with these methods or scopes needs the approval.
    pub fn covers_any<'a>(&self, asked: impl IntoIterator<Item = &'a str>) -> bool {
        let mut asked = asked.into_iter().peekable();
        self.covers.is_empty() || asked.peek().is_none() || asked.any(|a| self.covers.iter().any(|c| c == a))
    }
}
