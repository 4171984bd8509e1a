//! The `[serve]` section of the runtime config file: who may call over HTTP
//! (bearer tokens mapped to principals) and the transport's limits.

use std::path::Path;

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use toolcell_runtime::credentials::config::SecretSource;
use toolcell_runtime::identity::OAuthConfig;
use toolcell_runtime::{ByteSize, TimeSpan};

/// What `toolcell serve` reads from `[serve]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Bearer tokens accepted over HTTP, each the identity of one client.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Calls running at once; more are refused with an overload error.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_calls: usize,
    /// Calls one principal may have running at once, so one caller cannot
    /// take every slot.
    #[serde(default = "default_per_principal")]
    pub max_calls_per_principal: usize,
    /// How long a client may take to send a request's headers, and how long
    /// an idle connection is kept between requests.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout: TimeSpan,
    /// How long a client may take to send a request's body.
    #[serde(default = "default_body_timeout")]
    pub body_read_timeout: TimeSpan,
    /// Resource servers allowed to ask `POST /introspect` (RFC 7662) whether
    /// a tool's issuer token is still active, each with its own secret
    /// (HTTP Basic). None by default: the endpoint then refuses everyone.
    #[serde(default)]
    pub introspection_clients: Vec<IntrospectionClient>,
    /// The largest HTTP request body accepted.
    #[serde(default = "default_body")]
    pub max_request_body: ByteSize,
    /// `Host` values accepted over HTTP (DNS-rebinding defence); loopback names by default.
    #[serde(default = "default_hosts")]
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted over HTTP; loopback origins by default. A
    /// request without `Origin` (not from a browser) is not affected.
    #[serde(default = "default_origins")]
    pub allowed_origins: Vec<String>,
    /// The admin socket (approvals); relative to the config file's directory.
    #[serde(default)]
    pub admin_socket: Option<std::path::PathBuf>,
    /// Bearer tokens for the admin interface over HTTP (`POST /admin`, with
    /// `--http`), each naming its approver in `principal`. None by default:
    /// the endpoint then does not exist. They are not MCP tokens.
    #[serde(default)]
    pub admin_tokens: Vec<TokenEntry>,
    /// An OAuth 2.1 authorization server whose access tokens identify
    /// callers over HTTP (toolcell is then a resource server); static
    /// tokens keep working beside it.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
}

/// One accepted bearer token and the principal it stands for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// On whose behalf calls with this token act.
    pub principal: String,
    /// Where the token is: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub token: SecretSource,
}

/// One resource server that may introspect tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionClient {
    /// Its client id (the HTTP Basic user name).
    pub client_id: String,
    /// Its secret: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub secret: SecretSource,
}

fn default_concurrency() -> usize {
    16
}

fn default_per_principal() -> usize {
    8
}

fn default_header_timeout() -> TimeSpan {
    TimeSpan(std::time::Duration::from_secs(10))
}

fn default_body_timeout() -> TimeSpan {
    TimeSpan(std::time::Duration::from_secs(30))
}

fn default_body() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1", "[::1]"].map(String::from).to_vec()
}

fn default_origins() -> Vec<String> {
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"].map(String::from).to_vec()
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            tokens: Vec::new(),
            max_concurrent_calls: default_concurrency(),
            max_calls_per_principal: default_per_principal(),
            header_read_timeout: default_header_timeout(),
            body_read_timeout: default_body_timeout(),
            introspection_clients: Vec::new(),
            max_request_body: default_body(),
            allowed_hosts: default_hosts(),
            allowed_origins: default_origins(),
            admin_socket: None,
            admin_tokens: Vec::new(),
            oauth: None,
        }
    }
}

#[derive(Deserialize)]
struct File {
    serve: Option<ServeConfig>,
}

/// A token resolved to its value, for comparison only.
pub struct Token {
    pub principal: String,
    pub value: SecretString,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("principal", &self.principal).finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// The `[serve]` section of `path`, or the defaults. Relative token files
    /// are resolved against the file's directory.
    pub fn load(path: Option<&Path>) -> Result<ServeConfig> {
        let Some(path) = path else { return Ok(ServeConfig::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
        // The runtime has validated the rest of the file already.
        let file: File = toml::from_str(&text).with_context(|| format!("`{}` [serve]", path.display()))?;
        let mut config = file.serve.unwrap_or_default();
        let base = path.parent().unwrap_or(Path::new("."));
        config.admin_socket = config.admin_socket.map(|socket| base.join(socket));
        let sources = config.tokens.iter_mut().chain(config.admin_tokens.iter_mut()).map(|t| &mut t.token);
        let oauth = config.oauth.as_mut().and_then(|o| o.introspection.as_mut()).map(|i| &mut i.client_secret);
        for source in sources.chain(config.introspection_clients.iter_mut().map(|c| &mut c.secret)).chain(oauth) {
            if let SecretSource::File(file) = source {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// Where this section reads secrets from: the runtime refuses any
    /// manifest that would pass these variables or grant these files to a tool.
    pub fn secret_sources(&self) -> impl Iterator<Item = &SecretSource> {
        self.tokens
            .iter()
            .chain(&self.admin_tokens)
            .map(|t| &t.token)
            .chain(self.introspection_clients.iter().map(|c| &c.secret))
            .chain(self.oauth.iter().filter_map(|o| o.introspection.as_ref()).map(|i| &i.client_secret))
    }

    /// Reads every introspection client's secret now.
    pub fn introspection_clients(&self) -> Result<Vec<Token>> {
        self.introspection_clients
            .iter()
            .map(|client| {
                let name = format!("introspection client `{}`", client.client_id);
                read_secret(&client.secret, &client.client_id, &name, &format!("{name}: secret"))
            })
            .collect()
    }

    /// Reads every admin token now; an admin token may not also be an MCP token.
    pub fn admin_tokens(&self) -> Result<Vec<Token>> {
        let admin = read_tokens(&self.admin_tokens, "admin token")?;
        let mcp = self.tokens()?;
        if admin.iter().any(|a| mcp.iter().any(|m| a.value.expose_secret() == m.value.expose_secret())) {
            anyhow::bail!("[serve] an admin token is also an MCP token; give the admin interface its own");
        }
        Ok(admin)
    }

    /// Reads every token now, so a missing one stops the server at start.
    pub fn tokens(&self) -> Result<Vec<Token>> {
        read_tokens(&self.tokens, "token")
    }
}

/// Reads `entries` now, so a missing one stops the server at start.
fn read_tokens(entries: &[TokenEntry], kind: &str) -> Result<Vec<Token>> {
    entries
        .iter()
        .map(|entry| {
            let principal = &entry.principal;
            let context = format!("{kind} for principal `{principal}`");
            read_secret(&entry.token, principal, &context, &format!("{kind} for `{principal}` is"))
        })
        .collect()
}

/// Reads one `[serve]` secret for `owner`; `context` names it in a read
/// error, `short` starts the message for one under 16 characters.
fn read_secret(source: &SecretSource, owner: &str, context: &str, short: &str) -> Result<Token> {
    let value = source.read().map_err(anyhow::Error::msg).with_context(|| format!("[serve] {context}"))?;
    if value.expose_secret().len() < 16 {
        anyhow::bail!("[serve] {short} shorter than 16 characters");
    }
    Ok(Token { principal: owner.to_owned(), value })
}
