//! `toolcell serve --http ADDR`: MCP over streamable HTTP, with what a
//! network service needs in front of it:
//!
//! - bearer tokens (from `[serve] tokens`) map each request to a principal;
//!   binding anything but loopback without them is refused at start;
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
use secrecy::ExposeSecret;

use super::config::{ServeConfig, Token};
use super::handler::{Principal, Server, State};

/// The one path the MCP endpoint answers on.
pub const ENDPOINT: &str = "/mcp";

fn reply(
    status: http::StatusCode,
    message: &str,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = http::Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if status == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    response
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn principal_of(tokens: &[Token], request: &http::Request<Incoming>) -> Option<String> {
    let presented = request.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    tokens.iter().find(|t| same(t.value.expose_secret().as_bytes(), presented.as_bytes())).map(|t| t.principal.clone())
}

pub async fn serve(state: Arc<State>, address: SocketAddr, config: ServeConfig) -> Result<()> {
    let tokens = Arc::new(config.tokens()?);
    if !address.ip().is_loopback() && tokens.is_empty() {
        bail!(
            "refusing to serve on {address} without authentication: binding anything but loopback needs \
             [serve] tokens in the config (bearer tokens mapped to principals)"
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
    // The line a supervisor (or a test) waits for.
    eprintln!("toolcell: serving MCP on http://{bound}{ENDPOINT}");
    let max_body = config.max_request_body.0 as usize;
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("accept: {error}");
                continue;
            }
        };
        let (mcp, tokens, default_principal) = (mcp.clone(), tokens.clone(), state.default_principal.clone());
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let (mcp, tokens, default_principal) = (mcp.clone(), tokens.clone(), default_principal.clone());
            async move {
                if request.uri().path() != ENDPOINT {
                    return Ok::<_, Infallible>(reply(http::StatusCode::NOT_FOUND, "the MCP endpoint is /mcp"));
                }
                let principal = if tokens.is_empty() {
                    default_principal
                } else {
                    match principal_of(&tokens, &request) {
                        Some(principal) => principal,
                        None => {
                            return Ok(reply(
                                http::StatusCode::UNAUTHORIZED,
                                "a valid bearer token is required (Authorization: Bearer ...)",
                            ));
                        }
                    }
                };
                let too_large = request
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                    .is_some_and(|length| length > max_body);
                let message = format!("request body over the limit of {max_body} bytes ([serve] max_request_body)");
                if too_large {
                    return Ok(reply(http::StatusCode::PAYLOAD_TOO_LARGE, &message));
                }
                let (mut parts, body) = request.into_parts();
                let body = match Limited::new(body, max_body).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => return Ok(reply(http::StatusCode::PAYLOAD_TOO_LARGE, &message)),
                };
                parts.extensions.insert(Principal(principal));
                let request = http::Request::from_parts(parts, Full::new(body));
                let response = mcp.handle(request).await;
                Ok(response.map(|body| body.map_err(|never| match never {}).boxed_unsync()))
            }
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!("connection: {error}");
            }
        });
    }
}
