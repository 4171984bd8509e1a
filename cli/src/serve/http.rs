//! `toolcell serve --http ADDR`: MCP over streamable HTTP, with what a
//! network service needs in front of it:
//!
//! - bearer tokens map each request to a caller: static tokens from
//!   `[serve] tokens`, and OAuth 2.1 access tokens from the authorization
//!   server of `[serve.oauth]` (toolcell is then a resource server: RFC 9728
//!   metadata, `WWW-Authenticate` challenges, scopes per tool); binding
//!   anything but loopback without either is refused at start;
//! - the caller's token stops here: the MCP layer and the tools never see
//!   it (no token passthrough);
//! - `Host` and browser `Origin` are checked against allowlists (loopback by
//!   default), so a web page cannot reach the server through DNS rebinding;
//! - request bodies are capped (`[serve] max_request_body`);
//! - calls past `[serve] max_concurrent_calls` get an overload error
//!   (in the handler) instead of waiting in a queue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::{ExposeSecret, SecretString};

use toolcell_runtime::identity::{ResourceServer, ToolAccess};

use super::config::{ServeConfig, Token};
use super::handler::{Caller, Server, State};

/// The one path the MCP endpoint answers on.
pub const ENDPOINT: &str = "/mcp";

/// A JSON answer with `status`.
fn json(
    status: http::StatusCode,
    body: String,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn reply(
    status: http::StatusCode,
    message: &str,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    let mut response = json(status, serde_json::json!({ "error": message }).to_string());
    if status == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    response
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The bearer token of a request, if it has one.
fn bearer<B>(request: &http::Request<B>) -> Option<&str> {
    let value = request.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn principal_of(tokens: &[Token], request: &http::Request<Incoming>) -> Option<String> {
    let presented = bearer(request)?;
    tokens.iter().find(|t| same(t.value.expose_secret().as_bytes(), presented.as_bytes())).map(|t| t.principal.clone())
}

type Answer = http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>>;

/// Who is calling the MCP endpoint: a static token's principal, an OAuth
/// token's subject (with its actor and scopes), or, where no
/// authentication is configured (loopback), the default principal. A
/// refused token is audited with the reason, never the token.
async fn identify(state: &State, tokens: &[Token], request: &http::Request<Incoming>) -> Result<Caller, Answer> {
    let oauth = state.oauth.get();
    if tokens.is_empty() && oauth.is_none() {
        return Ok(Caller::local(state.default_principal.clone()));
    }
    if let Some(principal) = principal_of(tokens, request) {
        return Ok(Caller::local(principal));
    }
    let Some(oauth) = oauth else {
        return Err(reply(
            http::StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer ...)",
        ));
    };
    let outcome = match bearer(request) {
        Some(token) => oauth.authenticate(token).await,
        None => Err(toolcell_runtime::identity::TokenRefusal::Missing),
    };
    match outcome {
        Ok(caller) => Ok(Caller { principal: caller.principal, actor: caller.actor, scopes: Some(caller.scopes) }),
        Err(refusal) => {
            // A request without a token is how every OAuth client starts; only refusals of tokens are audited.
            if refusal != toolcell_runtime::identity::TokenRefusal::Missing {
                state.runtime.record_caller_refused("http", &refusal);
            }
            let status = if refusal.is_unavailable() {
                http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                http::StatusCode::UNAUTHORIZED
            };
            let mut response = json(status, serde_json::json!({ "error": refusal.to_string() }).to_string());
            if let Ok(challenge) = http::HeaderValue::from_str(&oauth.challenge(&refusal)) {
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
            }
            Err(response)
        }
    }
}

/// A `tools/call` of a tool the caller's token lacks the scope for is
/// answered 403 with the scope to ask for (the MCP step-up challenge); the
/// handler refuses it as well, whatever the transport.
fn scope_step_up(oauth: &ResourceServer, caller: &Caller, body: &[u8]) -> Option<Answer> {
    let scopes = caller.scopes.as_ref()?;
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    if message.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    let tool = message.get("params")?.get("name")?.as_str()?;
    let ToolAccess::NeedsScope(scope) = oauth.tool_access(scopes, tool) else { return None };
    let mut response = reply(
        http::StatusCode::FORBIDDEN,
        &format!("tool `{tool}` needs scope `{scope}`, which the token does not carry"),
    );
    if let Ok(challenge) = http::HeaderValue::from_str(&oauth.scope_challenge(&scope)) {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    Some(response)
}

/// Which principal opened each MCP session: a session is answered only for
/// the principal that opened it, so another token can neither resume its
/// stream, nor send into it (and so cancel its calls), nor delete it.
#[derive(Default)]
struct Sessions {
    owners: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// The most sessions remembered; past it the owners are forgotten, and
/// their sessions answer no one (an unknown session is refused): clients
/// then open new ones.
const MAX_SESSIONS: usize = 10_000;

impl Sessions {
    fn owner(&self, session: &str) -> Option<String> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).get(session).cloned()
    }

    fn opened(&self, session: &str, principal: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.len() >= MAX_SESSIONS {
            owners.clear();
        }
        owners.insert(session.to_owned(), principal.to_owned());
    }

    fn closed(&self, session: &str) {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
    }
}

const SESSION_HEADER: &str = "mcp-session-id";

/// `POST /introspect` (RFC 7662): is this token one of this server's live
/// issuer tokens? Only configured resource servers may ask (HTTP Basic with
/// their client id and secret); the answer for a revoked, expired, foreign
/// or malformed token is `{"active": false}` and nothing else.
async fn introspect(
    state: &State,
    clients: &[Token],
    request: http::Request<Incoming>,
    max_body: usize,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    if request.method() != http::Method::POST {
        return reply(http::StatusCode::METHOD_NOT_ALLOWED, "introspection takes POST (RFC 7662)");
    }
    let client = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok()?.strip_prefix("Basic "))
        .and_then(|encoded| {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
            let decoded = zeroize::Zeroizing::new(String::from_utf8(decoded).ok()?);
            let (id, secret) = decoded.split_once(':')?;
            clients
                .iter()
                .find(|c| c.principal == id && same(c.value.expose_secret().as_bytes(), secret.as_bytes()))
                .map(|c| c.principal.clone())
        });
    let Some(client) = client else {
        let mut response = reply(
            http::StatusCode::UNAUTHORIZED,
            "introspection needs client authentication ([serve] introspection_clients, HTTP Basic)",
        );
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Basic realm=\"toolcell\""));
        return response;
    };
    let body = match Limited::new(request.into_body(), max_body).collect().await {
        Ok(collected) => zeroize::Zeroizing::new(collected.to_bytes().to_vec()),
        Err(_) => return reply(http::StatusCode::PAYLOAD_TOO_LARGE, "request body over the limit"),
    };
    let token = form_value(&body, "token");
    let Some(token) = token else {
        return reply(http::StatusCode::BAD_REQUEST, "the form has no `token` (RFC 7662 section 2.1)");
    };
    let answer = state.runtime.introspect(&token);
    tracing::info!(target: "toolcell::introspect", client = %client, active = %answer["active"], "introspection");
    let mut response = json(http::StatusCode::OK, answer.to_string());
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_value(body: &[u8], name: &str) -> Option<SecretString> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| SecretString::from(percent_decode(value)))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /admin`: the admin interface over HTTP, for holders of an admin
/// token (`[serve] admin_tokens`); the approver is the token's name. The
/// same JSON requests as the admin socket.
async fn admin(
    state: &State,
    tokens: &[Token],
    request: http::Request<Incoming>,
    max_body: usize,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    if tokens.is_empty() {
        return reply(http::StatusCode::NOT_FOUND, "no admin interface over HTTP ([serve] admin_tokens is empty)");
    }
    if request.method() != http::Method::POST {
        return reply(http::StatusCode::METHOD_NOT_ALLOWED, "the admin interface takes POST");
    }
    let Some(approver) = principal_of(tokens, &request) else {
        return reply(http::StatusCode::UNAUTHORIZED, "an admin token is required (Authorization: Bearer ...)");
    };
    let body = match Limited::new(request.into_body(), max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply(http::StatusCode::PAYLOAD_TOO_LARGE, "request body over the limit"),
    };
    let answered = match serde_json::from_slice::<super::admin::AdminRequest>(&body) {
        Ok(asked) => super::admin::answer(asked, &approver, &state.runtime.controls()).await,
        Err(error) => return reply(http::StatusCode::BAD_REQUEST, &format!("bad request: {error}")),
    };
    let status = if answered.ok { http::StatusCode::OK } else { http::StatusCode::CONFLICT };
    json(status, serde_json::to_string(&answered).expect("answers serialize"))
}

pub async fn serve(state: Arc<State>, address: SocketAddr, config: ServeConfig) -> Result<()> {
    let tokens = Arc::new(config.tokens()?);
    let admin_tokens = Arc::new(config.admin_tokens()?);
    let introspection_clients = Arc::new(config.introspection_clients()?);
    if !address.ip().is_loopback() && tokens.is_empty() && config.oauth.is_none() {
        bail!(
            "refusing to serve on {address} without authentication: binding anything but loopback needs \
             [serve] tokens (bearer tokens mapped to principals) or [serve.oauth] (an authorization server)"
        );
    }
    let mut mcp_config = StreamableHttpServerConfig::default();
    mcp_config.allowed_hosts = config.allowed_hosts.clone();
    mcp_config.allowed_origins = config.allowed_origins.clone();
    let handler_state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Server { state: handler_state.clone() }),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr()?;
    if let Some(oauth) = config.oauth.clone() {
        let served = format!("http://{bound}{ENDPOINT}");
        let server = state.runtime.resource_server(oauth, &served)?;
        // A problem with the authorization server shows at start; tokens
        // are refused (and say why) until it is reachable.
        if let Err(problem) = server.prefetch().await {
            eprintln!("toolcell: warning: {problem}");
        }
        eprintln!(
            "toolcell: OAuth resource {} (authorization server {}; metadata at {})",
            server.resource(),
            server.issuer(),
            server.metadata_url()
        );
        let _ = state.oauth.set(Arc::new(server));
    }
    // The line a supervisor (or a test) waits for.
    eprintln!("toolcell: serving MCP on http://{bound}{ENDPOINT}");
    let max_body = config.max_request_body.0 as usize;
    let header_timeout = config.header_read_timeout.0;
    let body_timeout = config.body_read_timeout.0;
    let sessions = Arc::new(Sessions::default());
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accept: {error}");
                    continue;
                }
            },
            // Stopping: no new connections (running calls are cancelled by the handlers).
            () = state.shutdown.cancelled() => return Ok(()),
        };
        // An answer goes out as several writes (head, SSE event, end of
        // stream): with Nagle's algorithm the later ones wait for the
        // client's delayed ACK, 40ms a call on Linux.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {error}");
        }
        let (mcp, tokens, sessions, state) = (mcp.clone(), tokens.clone(), sessions.clone(), state.clone());
        let introspection_clients = introspection_clients.clone();
        let admin_tokens = admin_tokens.clone();
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let (mcp, tokens, sessions, state) = (mcp.clone(), tokens.clone(), sessions.clone(), state.clone());
            let introspection_clients = introspection_clients.clone();
            let admin_tokens = admin_tokens.clone();
            async move {
                let path = request.uri().path();
                if let Some(oauth) = state.oauth.get()
                    && (path == oauth.metadata_path() || path == "/.well-known/oauth-protected-resource")
                {
                    // RFC 9728: public, so clients can find where to get a token.
                    return Ok(json(http::StatusCode::OK, oauth.metadata().to_string()));
                }
                match path {
                    ENDPOINT => {}
                    // Public keys: anyone may verify a token's signature.
                    "/.well-known/jwks.json" => {
                        return Ok(json(http::StatusCode::OK, state.runtime.jwks().to_string()));
                    }
                    "/introspect" => return Ok(introspect(&state, &introspection_clients, request, max_body).await),
                    "/admin" => return Ok(admin(&state, &admin_tokens, request, max_body).await),
                    _ => {
                        return Ok::<_, Infallible>(reply(
                            http::StatusCode::NOT_FOUND,
                            "the MCP endpoint is /mcp (also: /.well-known/jwks.json, /introspect, /admin)",
                        ));
                    }
                }
                let caller = match identify(&state, &tokens, &request).await {
                    Ok(caller) => caller,
                    Err(refused) => return Ok(refused),
                };
                let principal = caller.principal.clone();
                let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                if let Some(session) = &session
                    && sessions.owner(session).is_none_or(|owner| owner != principal)
                {
                    // Another principal's session, or one toolcell never
                    // handed out (or has forgotten): as if it did not exist.
                    return Ok(reply(http::StatusCode::NOT_FOUND, "no such MCP session"));
                }
                let too_large = request
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                    .is_some_and(|length| length > max_body);
                let message = format!("request body over the limit of {max_body} bytes ([serve] max_request_body)");
                if too_large {
                    return Ok(reply(http::StatusCode::PAYLOAD_TOO_LARGE, &message));
                }
                let is_delete = request.method() == http::Method::DELETE;
                let (mut parts, body) = request.into_parts();
                let body = match tokio::time::timeout(body_timeout, Limited::new(body, max_body).collect()).await {
                    Ok(Ok(collected)) => collected.to_bytes(),
                    Ok(Err(_)) => return Ok(reply(http::StatusCode::PAYLOAD_TOO_LARGE, &message)),
                    Err(_) => {
                        return Ok(reply(
                            http::StatusCode::REQUEST_TIMEOUT,
                            "the request body did not arrive in time ([serve] body_read_timeout)",
                        ));
                    }
                };
                if let Some(oauth) = state.oauth.get()
                    && let Some(refused) = scope_step_up(oauth, &caller, &body)
                {
                    return Ok(refused);
                }
                // No token passthrough: the caller's credential goes no further.
                parts.headers.remove(http::header::AUTHORIZATION);
                parts.extensions.insert(caller);
                let request = http::Request::from_parts(parts, Full::new(body));
                let response = mcp.handle(request).await;
                match (&session, response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())) {
                    // A new session: it belongs to whoever opened it.
                    (None, Some(opened)) => sessions.opened(opened, &principal),
                    (Some(session), _) if is_delete && response.status().is_success() => sessions.closed(session),
                    _ => {}
                }
                Ok(response.map(|body| body.map_err(|never| match never {}).boxed_unsync()))
            }
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                // Bounds both a slow request head and an idle keep-alive connection.
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!("connection: {error}");
            }
        });
    }
}
