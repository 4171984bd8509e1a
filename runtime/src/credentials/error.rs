//! What a tool is told when it does not get a credential, and why a mint
//! failed before that is decided.

use crate::policy::credential::ProviderKind;

/// Why the guest did not get a credential. The text names the rule or the
/// provider; it never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The grant does not allow it.
    #[error("denied: {0}")]
    Denied(String),
    /// The provider failed or did not answer in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Why a mint failed, before it is shown to the tool.
pub(crate) enum MintError {
    /// Shown to the tool as it is (names a rule or a limit, never a provider's answer).
    Refused(CredentialError),
    /// A provider failed: the detail (endpoint, the provider's own error
    /// text) goes to the audit trail only; the tool learns which provider failed.
    Provider { provider: ProviderKind, detail: String },
}
