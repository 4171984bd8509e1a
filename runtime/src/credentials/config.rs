//! The operator's credential providers, from the runtime config. A manifest
//! names a provider and an audience; this is where the operator says how
//! that audience is reached: the issuer's keys, which host-held secret a
//! `static` audience uses, which OpenBao path an `openbao` audience leases
//! from, and where RFC 8693 exchanges happen. A tool never sees any of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::credentials::error::SecretError;
use crate::units::TimeSpan;

/// Every provider the operator configured.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The built-in issuer.
    #[serde(default)]
    pub issuer: IssuerConfig,
    /// Host-held root secrets, each for one audience.
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticSecret>,
    /// The OpenBao server, if any.
    pub openbao: Option<OpenBaoConfig>,
    /// The RFC 8693 token endpoint, if any.
    pub oauth_token_exchange: Option<TokenExchangeConfig>,
}

/// The built-in issuer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// `iss` of its tokens; `https://<trust_domain>` by default.
    pub url: Option<String>,
    /// The signing keys' file, kept across restarts; without it each runtime
    /// makes fresh keys and the JWKS lives as long as the process.
    pub keys: Option<PathBuf>,
}

/// Where the host reads a secret from. The value is read when it is needed
/// and held only as a `SecretString`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable of the runtime process.
    Env(String),
    /// A file; surrounding whitespace is trimmed.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret. The error names the source, never a value.
    pub fn read(&self) -> Result<SecretString, SecretError> {
        let value = match self {
            // Ambient authority: the runtime's environment and files hold the operator's secrets.
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|cause| SecretError::Unset { name: name.clone(), cause })?
            }
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|cause| SecretError::File { path: path.clone(), cause })?
                .trim()
                .to_owned(),
        };
        if value.is_empty() {
            return Err(SecretError::Empty { source_name: self.to_string() });
        }
        Ok(SecretString::from(value))
    }

    fn rebase(&mut self, base: &Path) {
        if let SecretSource::File(path) = self {
            *path = base.join(&*path);
        }
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable `{name}`"),
            SecretSource::File(path) => write!(f, "secret file `{}`", path.display()),
        }
    }
}

/// A root secret for one audience, injected only, and only toward the
/// origins the operator names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSecret {
    /// The audience a manifest's `static` credential names.
    pub audience: String,
    /// Where the secret is: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub secret: SecretSource,
    /// The origins (`https://api.github.com`, `https://uploads.example.com:8443`,
    /// `https://*.example.com`) the secret may be sent to. A manifest that
    /// binds it to an egress rule for any other origin is refused at load:
    /// the tool author does not choose where the operator's root secret goes.
    pub origins: Vec<String>,
}

/// An OpenBao (or Vault-compatible) server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoConfig {
    /// Its address, like `http://127.0.0.1:8200`.
    pub address: String,
    /// The runtime's own token, which creates each task's child token.
    pub token: SecretSource,
    /// How long any one OpenBao request may take.
    #[serde(default = "five_seconds")]
    pub timeout: TimeSpan,
    /// The dynamic secrets, one per audience.
    #[serde(default)]
    pub secrets: Vec<OpenBaoSecret>,
}

/// One kind of dynamic secret a manifest may lease by its audience.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoSecret {
    /// The audience a manifest's `openbao` credential names.
    pub audience: String,
    /// The API path that issues a lease, like `pki/issue/tool`.
    pub path: String,
    /// The request's JSON fields. String values may use `{task}`, `{tool}`,
    /// `{invocation}` and `{ttl}` (the lease's life, like `42s`).
    #[serde(default)]
    pub data: BTreeMap<String, toml::Value>,
    /// The field of the answer's `data` that is the credential's value (what
    /// `reveal` returns and `{token}` injects); the whole `data` as JSON if unset.
    pub field: Option<String>,
}

/// An OAuth 2.0 authorization server with RFC 8693 token exchange.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The token endpoint.
    pub token_endpoint: String,
    /// The RFC 7009 revocation endpoint, where the server has one.
    pub revocation_endpoint: Option<String>,
    /// toolcell's client id at the server.
    pub client_id: String,
    /// toolcell's client secret (HTTP Basic client authentication).
    pub client_secret: SecretSource,
    /// The `aud` of the issuer token sent as the subject token; the server's
    /// issuer URL, usually.
    pub subject_audience: String,
    /// Send the caller's identity as the RFC 8693 `actor_token`: an issuer
    /// token whose `sub` is the principal and whose `act` is the agent
    /// acting for it (when the caller's token named one).
    #[serde(default)]
    pub send_actor_token: bool,
    /// How long any one request may take.
    #[serde(default = "five_seconds")]
    pub timeout: TimeSpan,
}

fn five_seconds() -> TimeSpan {
    TimeSpan(std::time::Duration::from_secs(5))
}

impl ProviderConfig {
    /// Every place this config reads a secret from.
    pub fn secret_sources(&self) -> Vec<&SecretSource> {
        let mut sources: Vec<&SecretSource> = self.statics.iter().map(|s| &s.secret).collect();
        sources.extend(self.openbao.as_ref().map(|o| &o.token));
        sources.extend(self.oauth_token_exchange.as_ref().map(|e| &e.client_secret));
        sources
    }

    /// Resolves relative file paths against the config file's directory.
    pub(crate) fn rebase(&mut self, base: &Path) {
        if let Some(keys) = &mut self.issuer.keys {
            *keys = base.join(&*keys);
        }
        for secret in &mut self.statics {
            secret.secret.rebase(base);
        }
        if let Some(openbao) = &mut self.openbao {
            openbao.token.rebase(base);
        }
        if let Some(exchange) = &mut self.oauth_token_exchange {
            exchange.client_secret.rebase(base);
        }
    }
}
