//! Who is calling over HTTP, from an OAuth 2.1 access token: toolcell as a
//! resource server, as the MCP authorization model makes an HTTP MCP
//! server.
//!
//! - JWT access tokens (RFC 9068) are verified against the authorization
//!   server's JWKS ([`keys`]), with an algorithm allowlist, `iss`, `aud` =
//!   this server's resource identifier, and `exp`/`nbf` within a bounded
//!   skew; opaque tokens, where configured, by RFC 7662 introspection.
//! - The caller's principal is the token's `sub`. Its actor (the agent) is
//!   the token's `act` claim when the token is itself delegated (RFC 8693
//!   §4.1), otherwise its `client_id`/`azp` when that is not the subject.
//! - Token scopes decide which tools a caller sees and may call
//!   (`tool_scopes`), and request-time policy reads them as
//!   `principal.scopes`.
//! - [`ResourceServer::metadata`] is the RFC 9728 protected resource
//!   metadata, and [`ResourceServer::challenge`] the `WWW-Authenticate`
//!   value that points clients at it.
//!
//! A token is never kept, logged, audited or passed on: refusals name the
//! claim or header that failed, and the caller's token goes no further
//! than this module (no token passthrough).

mod jwt;
mod keys;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

pub use jwt::SUPPORTED_ALGORITHMS;

use crate::credentials::config::SecretSource;
use crate::credentials::upstream::{form, form_encode};
use crate::units::{ByteSize, TimeSpan};

/// An actor in a delegation chain (RFC 8693 §4.1 `act`): who acts, and
/// (nested) on whose behalf that actor itself acts. The nearest actor is
/// outermost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's subject.
    pub sub: String,
    /// The actor before it in the chain, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// An actor acting for no one further.
    pub fn new(sub: impl Into<String>) -> Actor {
        Actor { sub: sub.into(), act: None }
    }

    /// The subjects of the chain, nearest first.
    pub fn chain(&self) -> Vec<&str> {
        let mut subjects = vec![self.sub.as_str()];
        let mut next = self.act.as_deref();
        while let Some(actor) = next {
            subjects.push(&actor.sub);
            next = actor.act.as_deref();
        }
        subjects
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.chain().join(" via "))
    }
}

/// The deepest `act` nesting accepted in a token.
const MAX_ACTOR_DEPTH: usize = 8;

/// `[serve.oauth]`: the authorization server toolcell trusts, and what its
/// tokens may do here.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier: tokens' `iss`, and
    /// where its metadata is discovered.
    pub issuer: String,
    /// This server's resource identifier (tokens' `aud`, RFC 8707); by
    /// default `http://ADDRESS/mcp` for the address served.
    #[serde(default)]
    pub resource: Option<String>,
    /// The JWKS; discovered from the server's metadata when not set.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// JWS algorithms accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// `typ` header values accepted (RFC 9068: `at+jwt`), so an ID token
    /// cannot be used as an access token.
    #[serde(default = "default_token_types")]
    pub token_types: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (at most 5m).
    #[serde(default = "default_leeway")]
    pub leeway: TimeSpan,
    /// How long fetched keys are trusted before they are fetched again.
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache: TimeSpan,
    /// The least time between two fetches for an unknown `kid`.
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh: TimeSpan,
    /// The longest token accepted (Authorization header value).
    #[serde(default = "default_max_token")]
    pub max_token_size: ByteSize,
    /// How long any request to the authorization server may take.
    #[serde(default = "default_timeout")]
    pub timeout: TimeSpan,
    /// Opaque tokens: RFC 7662 introspection. Without it, only JWTs are accepted.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// The scope a caller needs to see and call each tool; `"*"` for every
    /// tool not named. A tool with neither is not offered to OAuth callers.
    #[serde(default)]
    pub tool_scopes: BTreeMap<String, String>,
}

/// `[serve.oauth.introspection]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint; discovered from the server's metadata when not set.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// toolcell's client id at the authorization server.
    pub client_id: String,
    /// Its secret: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub client_secret: SecretSource,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"].map(String::from).to_vec()
}

fn default_token_types() -> Vec<String> {
    ["at+jwt", "application/at+jwt"].map(String::from).to_vec()
}

fn default_leeway() -> TimeSpan {
    TimeSpan(Duration::from_secs(30))
}

fn default_jwks_cache() -> TimeSpan {
    TimeSpan(Duration::from_secs(300))
}

fn default_min_refresh() -> TimeSpan {
    TimeSpan(Duration::from_secs(10))
}

fn default_max_token() -> ByteSize {
    ByteSize(8 * 1024)
}

fn default_timeout() -> TimeSpan {
    TimeSpan(Duration::from_secs(5))
}

/// The longest skew allowed.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// What is wrong with an `[serve.oauth]` section.
#[derive(Debug, thiserror::Error)]
#[error("[serve.oauth] {0}")]
pub struct OAuthConfigError(String);

/// Why a caller's token was refused. The text names the claim, header or
/// server that failed, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token (Authorization: Bearer ...)")]
    Missing,
    #[error("the token is {size} bytes, over the limit of {max} ([serve.oauth] max_token_size)")]
    Oversized { size: usize, max: u64 },
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm `{alg}` is not accepted (accepted: {accepted})")]
    Algorithm { alg: String, accepted: String },
    #[error("the token's type `{0}` is not an access token's (RFC 9068: at+jwt)")]
    Type(String),
    #[error("the token names critical header extensions toolcell does not understand")]
    Critical,
    #[error(
        "the token is signed with key {}, which the authorization server does not publish (rotated out, or not its own)",
        kid.as_deref().map_or("(no kid)".to_owned(), |k| format!("`{k}`"))
    )]
    UnknownKey { kid: Option<String> },
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token is from issuer `{found}`, not the one configured")]
    Issuer { found: String },
    #[error("the token is for audience {found}, not this server (`{expected}`)")]
    Audience { found: String, expected: String },
    #[error("the token expired {ago}s ago")]
    Expired { ago: u64 },
    #[error("the token is not valid for another {wait}s (`{claim}`)")]
    NotYetValid { claim: &'static str, wait: u64 },
    #[error("the token has no `exp`")]
    NoExpiry,
    #[error("the token has no usable `sub`: {0}")]
    Subject(String),
    #[error("the authorization server says the token is not active")]
    Inactive,
    #[error("the token's keys cannot be had, so no token is accepted: {0}")]
    KeysUnavailable(String),
    #[error("the token cannot be introspected, so it is not accepted: {0}")]
    IntrospectionUnavailable(String),
}

impl TokenRefusal {
    /// A short, stable name for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            TokenRefusal::Missing => "missing",
            TokenRefusal::Oversized { .. } => "oversized",
            TokenRefusal::Malformed(_) => "malformed",
            TokenRefusal::Algorithm { .. } => "algorithm",
            TokenRefusal::Type(_) => "type",
            TokenRefusal::Critical => "critical",
            TokenRefusal::UnknownKey { .. } => "unknown_key",
            TokenRefusal::Signature => "signature",
            TokenRefusal::Issuer { .. } => "issuer",
            TokenRefusal::Audience { .. } => "audience",
            TokenRefusal::Expired { .. } => "expired",
            TokenRefusal::NotYetValid { .. } => "not_yet_valid",
            TokenRefusal::NoExpiry => "no_expiry",
            TokenRefusal::Subject(_) => "subject",
            TokenRefusal::Inactive => "inactive",
            TokenRefusal::KeysUnavailable(_) => "keys_unavailable",
            TokenRefusal::IntrospectionUnavailable(_) => "introspection_unavailable",
        }
    }

    /// True when the fault is the authorization server's reachability, not
    /// the token (answered 503, not 401).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenRefusal::KeysUnavailable(_) | TokenRefusal::IntrospectionUnavailable(_))
    }
}

/// Clips text taken from a token before it is shown (a claim can be any size).
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 120;
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    match clean.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &clean[..at]),
        None => clean,
    }
}

/// A caller the token identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// On whose behalf the caller acts: the token's `sub`.
    pub principal: String,
    /// The agent acting, and any further chain.
    pub actor: Option<Actor>,
    /// The token's scopes.
    pub scopes: Vec<String>,
    /// When the token expires (seconds since the epoch).
    pub expires_at: u64,
}

/// Whether a caller may see and call a tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolAccess {
    Allowed,
    /// The caller's token lacks this scope.
    NeedsScope(String),
    /// `tool_scopes` names no scope for the tool (nor `*`).
    NotOffered,
}

/// toolcell as an OAuth resource server for one authorization server.
pub struct ResourceServer {
    config: OAuthConfig,
    resource: String,
    keys: keys::KeySource,
}

impl std::fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServer")
            .field("issuer", &self.config.issuer)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Whether `url` is `https`, or `http` to a loopback host (for servers on
/// the same machine, as in tests).
fn acceptable_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    match uri.scheme_str() {
        Some("https") => !host.is_empty(),
        Some("http") => host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        _ => false,
    }
}

impl ResourceServer {
    /// Checks `config` and sets up key discovery. `served` is the resource
    /// identifier to use when the config sets none. (Callers outside the
    /// crate get one from `Runtime::resource_server`.)
    pub(crate) fn new(
        config: OAuthConfig,
        served: &str,
        tls: crate::transport::Tls,
    ) -> Result<ResourceServer, OAuthConfigError> {
        let problem = |text: String| Err(OAuthConfigError(text));
        if !acceptable_url(&config.issuer) {
            return problem(format!(
                "issuer `{}` must be an https URL (http only to a loopback address)",
                config.issuer
            ));
        }
        for (name, url) in [
            ("jwks_uri", &config.jwks_uri),
            ("introspection.endpoint", &config.introspection.as_ref().and_then(|i| i.endpoint.clone())),
        ] {
            if let Some(url) = url
                && !acceptable_url(url)
            {
                return problem(format!("{name} `{url}` must be an https URL (http only to a loopback address)"));
            }
        }
        if config.algorithms.is_empty() {
            return problem("algorithms is empty: no token could be accepted".into());
        }
        if let Some(alg) = config.algorithms.iter().find(|a| !SUPPORTED_ALGORITHMS.contains(&a.as_str())) {
            return problem(format!(
                "algorithm `{alg}` cannot be accepted (`none` and shared-secret HMAC never are); supported: {}",
                SUPPORTED_ALGORITHMS.join(", ")
            ));
        }
        if config.leeway.0 > MAX_LEEWAY {
            return problem(format!("leeway {} is over the most allowed, 5m", config.leeway));
        }
        if !(256..=65_536).contains(&config.max_token_size.0) {
            return problem(format!("max_token_size {} must be between 256B and 64KiB", config.max_token_size));
        }
        if let Some((tool, scope)) =
            config.tool_scopes.iter().find(|(_, s)| s.is_empty() || s.contains(char::is_whitespace))
        {
            return problem(format!("tool_scopes: `{tool}` names scope `{scope}`, which is empty or has spaces"));
        }
        let resource = config.resource.clone().unwrap_or_else(|| served.to_owned());
        let parsed = resource.parse::<http::Uri>().ok();
        if parsed.as_ref().is_none_or(|u| u.scheme().is_none() || u.host().is_none()) || resource.contains('#') {
            return problem(format!("resource `{resource}` must be an absolute URL without a fragment (RFC 8707)"));
        }
        let keys = keys::KeySource::new(&config, tls);
        Ok(ResourceServer { config, resource, keys })
    }

    /// This server's resource identifier.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The authorization server's issuer.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Fetches the authorization server's keys now (at start, so a problem
    /// shows at once); tokens are still refused later if they cannot be had.
    pub async fn prefetch(&self) -> Result<(), TokenRefusal> {
        self.keys.prefetch().await.map_err(TokenRefusal::KeysUnavailable)
    }

    /// The path of the RFC 9728 metadata for this resource: the well-known
    /// segment, then the resource's own path.
    pub fn metadata_path(&self) -> String {
        let path = self.resource.parse::<http::Uri>().map(|u| u.path().to_owned()).unwrap_or_default();
        format!("/.well-known/oauth-protected-resource{}", path.trim_end_matches('/'))
    }

    /// The absolute URL of the RFC 9728 metadata.
    pub fn metadata_url(&self) -> String {
        let uri = self.resource.parse::<http::Uri>().expect("checked in new");
        let origin =
            format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map_or("", |a| a.as_str()));
        format!("{origin}{}", self.metadata_path())
    }

    /// RFC 9728 protected resource metadata.
    pub fn metadata(&self) -> serde_json::Value {
        let scopes: BTreeSet<&String> = self.config.tool_scopes.values().collect();
        serde_json::json!({
            "resource": self.resource,
            "authorization_servers": [self.config.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": self.config.algorithms,
            "resource_name": "toolcell",
        })
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 6750 §3, RFC 9728 §5.1):
    /// where the metadata is, and what was wrong with a token that was
    /// presented.
    ///
    /// It names the scope every OAuth caller needs (`tool_scopes`' `"*"`),
    /// where there is one, so a client asks for the least first; a call of a
    /// tool that needs more is answered with [`ResourceServer::scope_challenge`]
    /// (step-up).
    pub fn challenge(&self, refusal: &TokenRefusal) -> String {
        let mut value = format!("Bearer resource_metadata=\"{}\"", self.metadata_url());
        if let Some(scope) = self.config.tool_scopes.get("*") {
            value.push_str(&format!(", scope=\"{}\"", quoted(scope)));
        }
        if *refusal != TokenRefusal::Missing {
            value.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                quoted(&refusal.to_string())
            ));
        }
        value
    }

    /// The `WWW-Authenticate` value for a 403: the scope the call needs.
    pub fn scope_challenge(&self, scope: &str) -> String {
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
            quoted(scope),
            self.metadata_url()
        )
    }

    /// Whether a caller holding `scopes` may see and call `tool`.
    pub fn tool_access(&self, scopes: &[String], tool: &str) -> ToolAccess {
        let needed = self.config.tool_scopes.get(tool).or_else(|| self.config.tool_scopes.get("*"));
        match needed {
            None => ToolAccess::NotOffered,
            Some(scope) if scopes.contains(scope) => ToolAccess::Allowed,
            Some(scope) => ToolAccess::NeedsScope(scope.clone()),
        }
    }

    /// Who `token` identifies, or why it is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, TokenRefusal> {
        let max = self.config.max_token_size.0;
        if token.len() as u64 > max {
            return Err(TokenRefusal::Oversized { size: token.len(), max });
        }
        if token.is_empty() {
            return Err(TokenRefusal::Missing);
        }
        let claims = if jwt::looks_like_jws(token) {
            self.verified_claims(token).await?
        } else if self.config.introspection.is_some() {
            self.introspected_claims(token).await?
        } else {
            return Err(TokenRefusal::Malformed(
                "not a JWT, and opaque tokens are not accepted ([serve.oauth.introspection] is not set)".into(),
            ));
        };
        self.caller_from(&claims, now())
    }

    async fn verified_claims(&self, token: &str) -> Result<serde_json::Map<String, serde_json::Value>, TokenRefusal> {
        let parsed = jwt::parse(token)?;
        let header = &parsed.header;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(TokenRefusal::Algorithm {
                alg: clip(&header.alg),
                accepted: self.config.algorithms.join(", "),
            });
        }
        if header.crit.is_some() {
            return Err(TokenRefusal::Critical);
        }
        let typ = header.typ.as_deref().unwrap_or("(none)");
        if !self.config.token_types.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(TokenRefusal::Type(clip(typ)));
        }
        let key = self.keys.key_for(header.kid.as_deref(), &header.alg).await?;
        parsed.verify(&key)?;
        match parsed.claims.get("iss").and_then(|i| i.as_str()) {
            Some(iss) if iss == self.config.issuer => {}
            found => return Err(TokenRefusal::Issuer { found: clip(found.unwrap_or("(none)")) }),
        }
        Ok(parsed.claims)
    }

    async fn introspected_claims(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TokenRefusal> {
        let config = self.config.introspection.as_ref().expect("checked by the caller");
        let unavailable = TokenRefusal::IntrospectionUnavailable;
        let endpoint = self.keys.introspection_endpoint().await.map_err(unavailable)?;
        let secret = config.client_secret.read().map_err(|e| unavailable(format!("toolcell's client secret: {e}")))?;
        // RFC 6749 §2.3.1: both parts are form-encoded before joining.
        let pair = zeroize::Zeroizing::new(format!(
            "{}:{}",
            form_encode(&config.client_id),
            form_encode(secret.expose_secret())
        ));
        let authorization = zeroize::Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        ));
        let body = form(&[("token", token), ("token_type_hint", "access_token")]);
        let answer = self.keys.post_form(&endpoint, &authorization, body).await.map_err(unavailable)?;
        let serde_json::Value::Object(claims) = answer else {
            return Err(unavailable(format!("{endpoint} answered something other than a JSON object")));
        };
        if claims.get("active") != Some(&serde_json::Value::Bool(true)) {
            return Err(TokenRefusal::Inactive);
        }
        if let Some(kind) = claims.get("token_type").and_then(|t| t.as_str())
            && !["bearer", "access_token", "dpop"].contains(&kind.to_ascii_lowercase().as_str())
        {
            return Err(TokenRefusal::Type(clip(kind)));
        }
        if let Some(iss) = claims.get("iss").and_then(|i| i.as_str())
            && iss != self.config.issuer
        {
            return Err(TokenRefusal::Issuer { found: clip(iss) });
        }
        // RFC 7662 makes `sub` optional: a client-credentials token is the
        // client's own, and its subject is the client.
        let mut claims = claims;
        if !claims.contains_key("sub")
            && let Some(client) = claims.get("client_id").cloned()
        {
            claims.insert("sub".into(), client);
        }
        Ok(claims)
    }

    /// The caller the (verified or introspected) claims name, once their
    /// audience and times check out.
    fn caller_from(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: u64,
    ) -> Result<Caller, TokenRefusal> {
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(serde_json::Value::String(one)) => vec![one],
            Some(serde_json::Value::Array(many)) => many.iter().filter_map(|a| a.as_str()).collect(),
            _ => Vec::new(),
        };
        if !audiences.contains(&self.resource.as_str()) {
            let found = if audiences.is_empty() {
                "(none)".to_owned()
            } else {
                audiences.iter().map(|a| format!("`{}`", clip(a))).collect::<Vec<_>>().join(", ")
            };
            return Err(TokenRefusal::Audience { found, expected: self.resource.clone() });
        }
        let leeway = self.config.leeway.0.as_secs();
        let time = |name: &str| claims.get(name).and_then(|v| v.as_u64());
        let exp = time("exp").ok_or(TokenRefusal::NoExpiry)?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenRefusal::Expired { ago: now - exp });
        }
        for claim in ["nbf", "iat"] {
            if let Some(at) = time(claim)
                && at > now.saturating_add(leeway)
            {
                let claim = if claim == "nbf" { "nbf" } else { "iat" };
                return Err(TokenRefusal::NotYetValid { claim, wait: at - now });
            }
        }
        let principal = match claims.get("sub").and_then(|s| s.as_str()) {
            Some(sub) => checked_subject(sub)?,
            None => return Err(TokenRefusal::Subject("the claim is missing".into())),
        };
        let scopes: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
            (Some(serde_json::Value::String(scope)), _) => scope.split_whitespace().map(str::to_owned).collect(),
            (_, Some(serde_json::Value::Array(scp))) => {
                scp.iter().filter_map(|s| s.as_str()).map(str::to_owned).collect()
            }
            (_, Some(serde_json::Value::String(scp))) => scp.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let actor = match claims.get("act") {
            Some(act) => Some(actor_from(act, 0)?),
            None => claims
                .get("client_id")
                .or_else(|| claims.get("azp"))
                .and_then(|c| c.as_str())
                .filter(|client| *client != principal)
                .map(|client| checked_subject(client).map(Actor::new))
                .transpose()?,
        };
        Ok(Caller { principal, actor, scopes, expires_at: exp })
    }
}

/// A subject usable as a principal or actor name: not empty, not huge, no
/// control characters (it goes into audit lines and policy entities).
fn checked_subject(sub: &str) -> Result<String, TokenRefusal> {
    if sub.trim().is_empty() {
        return Err(TokenRefusal::Subject("it is empty".into()));
    }
    if sub.len() > 256 || sub.chars().any(char::is_control) {
        return Err(TokenRefusal::Subject("it is over 256 bytes or has control characters".into()));
    }
    Ok(sub.to_owned())
}

fn actor_from(value: &serde_json::Value, depth: usize) -> Result<Actor, TokenRefusal> {
    if depth >= MAX_ACTOR_DEPTH {
        return Err(TokenRefusal::Malformed(format!("the `act` chain is deeper than {MAX_ACTOR_DEPTH}")));
    }
    let sub = value
        .get("sub")
        .and_then(|s| s.as_str())
        .ok_or_else(|| TokenRefusal::Malformed("an `act` claim has no `sub`".into()))?;
    let act = match value.get("act") {
        Some(inner) => Some(Box::new(actor_from(inner, depth + 1)?)),
        None => None,
    };
    Ok(Actor { sub: checked_subject(sub)?, act })
}

/// Text safe inside a quoted-string of an HTTP header.
fn quoted(text: &str) -> String {
    text.chars().filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c)).collect()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
