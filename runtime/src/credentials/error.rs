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
    /// A provider failed: the cause (endpoint, the provider's own error
    /// text) goes to the audit trail only; the tool learns which provider failed.
    Provider { provider: ProviderKind, cause: ProviderError },
}

/// A secret the runtime config points at could not be read. The text names
/// the source (a variable's name, a file's path), never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not Unicode).
    #[error("environment variable `{name}` is not set")]
    Unset {
        /// The variable.
        name: String,
        /// Why it could not be had.
        cause: std::env::VarError,
    },
    /// The secret file cannot be read.
    #[error("secret file `{}`: {cause}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The source holds nothing.
    #[error("{source_name} is empty")]
    Empty {
        /// The source, as the config names it.
        source_name: String,
    },
}

/// Why a provider request could not be made or read. Each variant keeps the
/// error underneath and prints it once, inline.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("`{url}` is not a URL: {cause}")]
    BadUrl { url: String, cause: http::uri::InvalidUri },
    #[error("no host")]
    NoHost,
    #[error("the scheme must be http or https")]
    Scheme,
    #[error("resolving `{host}`: {cause}")]
    Resolve { host: String, cause: std::io::Error },
    #[error(transparent)]
    Connect(#[from] crate::transport::ConnectError),
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
    #[error("request: {0}")]
    Build(http::Error),
    #[error("request: {0}")]
    Send(hyper::Error),
    #[error("reading the answer: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a credential provider (OpenBao, an OAuth token endpoint) did not give
/// what was asked. The text names the endpoint and the provider's own error
/// text; it never holds a secret. It goes to the audit trail; the tool
/// learns only which provider failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderError {
    /// A secret toolcell presents to the provider (or hands out, for a
    /// static credential) could not be read.
    #[error("{}{cause}", what.map(|what| format!("{what}: ")).unwrap_or_default())]
    Secret { what: Option<&'static str>, cause: SecretError },
    /// The provider could not be reached, or its answer not read.
    #[error("{endpoint}: {cause}")]
    Transport { endpoint: String, cause: TransportError },
    /// The provider did not answer in time.
    #[error("{endpoint}: no answer within {within}")]
    NoAnswer { endpoint: String, within: crate::units::TimeSpan },
    /// The provider answered with an error (its own text, or the status).
    #[error("{what}: {answer}")]
    Answered { what: String, answer: String },
    /// The answer is not JSON.
    #[error("{what}: the answer is not JSON ({cause})")]
    NotJson { what: String, cause: serde_json::Error },
    /// The answer cannot be used as it is (a field missing, wider than
    /// asked, living too long); the text says why and what was done about it.
    #[error("{0}")]
    Unusable(String),
    /// The runtime config lacks what this needs (a server, a secret for an audience).
    #[error("{0}")]
    NotConfigured(String),
    /// The lease journal could not record the credential, so it was not used.
    #[error(transparent)]
    Journal(#[from] crate::credentials::journal::JournalError),
    /// What toolcell was doing when the provider failed.
    #[error("{what}: {cause}")]
    During { what: String, cause: Box<ProviderError> },
}

impl ProviderError {
    /// This error, as part of doing `what`.
    pub(crate) fn during(self, what: impl Into<String>) -> ProviderError {
        ProviderError::During { what: what.into(), cause: Box::new(self) }
    }
}
