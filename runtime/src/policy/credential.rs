//! What a manifest says about a credential: its provider, scopes, audience,
//! longest life, and how the tool gets it — injected by the host into
//! requests matching one egress rule (the default), or revealed to the tool.

use std::fmt;

use crate::units::TimeSpan;

/// Which provider mints a credential. Providers are configured by the
/// operator in the runtime config; a manifest only names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// The built-in token issuer (Ed25519 RFC 9068 access tokens).
    Issuer,
    /// A Vault-compatible secrets engine (dynamic secrets under a task token).
    Openbao,
    /// RFC 8693 token exchange at an OAuth token endpoint.
    OauthTokenExchange,
    /// A root secret the host holds; inject only, never revealed.
    Static,
}

impl ProviderKind {
    /// Its name as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Issuer => "issuer",
            ProviderKind::Openbao => "openbao",
            ProviderKind::OauthTokenExchange => "oauth-token-exchange",
            ProviderKind::Static => "static",
        }
    }
}

/// How the tool gets the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// The host adds it to requests matching `egress` (rules' URL patterns);
    /// the tool never sees the value.
    Inject(Injection),
    /// The tool may call `reveal` and hold the (short-lived) value.
    Reveal,
}

impl Exposure {
    /// `inject` or `reveal`, as manifests and audit events write it.
    pub fn name(&self) -> &'static str {
        match self {
            Exposure::Inject(_) => "inject",
            Exposure::Reveal => "reveal",
        }
    }
}

/// Where and how an injected credential is added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The egress rules (their URL patterns) whose requests carry it.
    pub egress: Vec<String>,
    /// The header it goes in, lowercase.
    pub header: String,
    /// The header's value, with `{token}` where the credential goes.
    pub format: String,
}

/// One credential a manifest allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSpec {
    /// The name a tool acquires it by.
    pub name: String,
    /// Who mints it.
    pub provider: ProviderKind,
    /// The most scopes it may carry.
    pub scopes: Vec<String>,
    /// The one audience it is for.
    pub audience: String,
    /// Its longest life; never past the invocation's deadline either.
    pub max_ttl: TimeSpan,
    /// Inject (default) or reveal.
    pub exposure: Exposure,
    /// Mints with these scopes wait for a person's approval.
    pub approval: Option<super::ManifestApproval>,
}

impl fmt::Display for CredentialSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, scopes [{}], audience {}, max_ttl {}",
            self.name,
            self.provider.name(),
            self.scopes.join(" "),
            self.audience,
            self.max_ttl
        )?;
        match &self.exposure {
            Exposure::Inject(injection) => {
                write!(f, ", injected as `{}` into {})", injection.header, injection.egress.join(", "))
            }
            Exposure::Reveal => write!(f, ", revealable)"),
        }
    }
}

/// Headers a credential may never be injected into: wasi-http's hop-by-hop
/// and routing headers.
const NOT_INJECTABLE: [&str; 8] =
    ["host", "connection", "keep-alive", "transfer-encoding", "upgrade", "te", "proxy-connection", "content-length"];

/// Why a credential cannot be injected as a manifest asks.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InjectionError {
    /// Not a header name, or one that routes or frames the request.
    #[error("`{0}` cannot carry a credential")]
    Header(String),
    /// The format does not hold exactly one `{token}`.
    #[error("format `{0}` must contain `{{token}}` exactly once")]
    Format(String),
}

/// Checks an injection target; returns the header name lowercased.
pub(crate) fn check_injection_header(header: &str, format: &str) -> Result<String, InjectionError> {
    let lower = header.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() || NOT_INJECTABLE.contains(&lower.as_str()) {
        return Err(InjectionError::Header(header.to_owned()));
    }
    if format.matches("{token}").count() != 1 {
        return Err(InjectionError::Format(format.to_owned()));
    }
    Ok(lower)
}
