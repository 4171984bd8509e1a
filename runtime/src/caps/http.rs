//! Egress: outbound HTTP through `wasi:http`, checked by the host on every
//! request before a byte leaves.
//!
//! [`EgressHooks::send_request`] is the only way out (toolcell builds
//! wasmtime-wasi-http without its default sender). For each request, in
//! order, it: refuses paths that servers normalise into other paths
//! (`policy::egress::check_request_path`); matches a grant rule (scheme,
//! host, port, method, path) and the rule's request count, and refuses TRACE
//! and CONNECT on a rule that carries a credential; strips credential
//! headers; resolves the name with the runtime's resolver and checks every
//! address (loopback, private, link-local, metadata and special ranges are
//! refused unless the rule names the address); only then mints and injects
//! the credentials bound to the rule; connects to an address it checked (no
//! rebinding between check and connect); clamps timeouts to the rule and the
//! call's deadline; caps both bodies; never follows redirects; and records
//! one audit event. A refusal reaches the guest as an error naming the rule
//! or reason, and counts against the call's `max_refusals`.
//!
//! The connection driving below follows wasmtime-wasi-http's own
//! `default_send_request` (Apache-2.0 WITH LLVM-exception).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderName;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use crate::audit::{AuditKind, AuditScope, clip};
use crate::credentials::broker::Broker;
use crate::grant::Grant;
use crate::meter::Meter;
use crate::policy::credential::Exposure;
use crate::policy::egress::{
    EgressRule, NEVER_WITH_CREDENTIALS, RequestLine, Scheme, check_addresses, check_request_path, refusal,
};
use crate::transport::{self, ConnectError, Network};

/// Headers the guest may never set: wasi-http's own list, every header that
/// carries a credential, and every header the grant injects a credential
/// into. The host strips them again before sending.
fn is_guest_forbidden(name: &HeaderName, injected: &[HeaderName]) -> bool {
    DEFAULT_FORBIDDEN_HEADERS.contains(name) || CREDENTIAL_HEADERS.contains(&name.as_str()) || injected.contains(name)
}

const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// The egress state of one invocation.
pub(crate) struct EgressHooks {
    /// The task's grant: its egress rules are what this hook enforces.
    pub(crate) grant: Arc<Grant>,
    pub(crate) sent: Vec<u32>,
    pub(crate) network: Network,
    pub(crate) audit: AuditScope,
    pub(crate) invocation: String,
    /// When the whole call must be over; every timeout is clamped to it.
    pub(crate) deadline: Instant,
    /// The call's credentials, injected into requests their rule allows.
    pub(crate) credentials: Arc<Broker>,
    /// Headers the grant injects credentials into, on any rule.
    pub(crate) injected: Arc<[HeaderName]>,
    /// Counts refused requests against the call's `max_refusals`.
    pub(crate) meter: Arc<Meter>,
}

impl EgressHooks {
    /// The egress state of one invocation: the grant's rules with no requests sent yet.
    pub(crate) fn new(
        grant: Arc<Grant>,
        network: Network,
        audit: AuditScope,
        invocation: String,
        deadline: Instant,
        credentials: Arc<Broker>,
        meter: Arc<Meter>,
    ) -> EgressHooks {
        let mut injected: Vec<HeaderName> = Vec::new();
        for spec in &grant.credentials {
            if let Exposure::Inject(injection) = &spec.exposure {
                let name = HeaderName::from_bytes(injection.header.as_bytes()).expect("checked in the manifest");
                if !injected.contains(&name) {
                    injected.push(name);
                }
            }
        }
        EgressHooks {
            sent: vec![0; grant.egress.len()],
            grant,
            network,
            audit,
            invocation,
            deadline,
            credentials,
            injected: injected.into(),
            meter,
        }
    }
}

/// What `WasiHttpHooks::send_request` returns: the response head, and the
/// future that drives the rest of the connection.
pub type SendRequestFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let injected = self.injected.clone();
        Arc::new(move |name| is_guest_forbidden(name, &injected))
    }

    fn is_supported_scheme(&mut self, scheme: &http::uri::Scheme) -> bool {
        *scheme == http::uri::Scheme::HTTP || *scheme == http::uri::Scheme::HTTPS
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendRequestFuture {
        let started = Instant::now();
        let method = request.method().as_str().to_owned();
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let path = uri.path().to_owned();
        let scheme = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { Scheme::Https } else { Scheme::Http };
        let port = uri.port_u16().unwrap_or(if scheme == Scheme::Https { 443 } else { 80 });
        let record = Record {
            audit: self.audit.clone(),
            invocation: self.invocation.clone(),
            method: clip(&method, 32),
            host: clip(&host, 256),
            path: clip(&path, 512),
            started,
            meter: self.meter.clone(),
        };

        let line = RequestLine { scheme, host: &host, port, method: &method, path: &path };
        let decision = check_request_path(&path).and_then(|()| {
            let rules = &self.grant.egress;
            match rules.iter().position(|rule| rule.allows(&line)) {
                None => Err(refusal(rules, &line)),
                Some(index) if self.sent[index] >= rules[index].max_requests => Err(format!(
                    "{method} {host}{path}: rule {} allows {} requests per call and they are used",
                    rules[index].url, rules[index].max_requests
                )),
                Some(index) if NEVER_WITH_CREDENTIALS.contains(&method.as_str()) && self.carries_credentials(index) => {
                    Err(format!(
                        "{method} {host}{path}: rule {} carries a credential, and {method} is never sent with one",
                        rules[index].url
                    ))
                }
                Some(index) => {
                    self.sent[index] += 1;
                    Ok(rules[index].clone())
                }
            }
        });
        let rule = match decision {
            Ok(rule) => rule,
            Err(reason) => {
                record.refused(&reason);
                return Box::new(std::future::ready(Err(denied(&clip(&reason, 1024)))));
            }
        };

        for name in CREDENTIAL_HEADERS {
            request.headers_mut().remove(name);
        }
        for name in self.injected.iter() {
            request.headers_mut().remove(name);
        }
        let network = self.network.clone();
        let deadline = self.deadline;
        let credentials = self.credentials.clone();
        Box::new(async move {
            let connect_timeout = clamp(rule.connect_timeout.0, options.and_then(|o| o.connect_timeout), deadline);
            let addresses = resolve_checked(&rule, &host, connect_timeout, &network).await;
            let addresses = addresses.map_err(|failure| record.failure(&rule.url, failure))?;
            // Credentials bound to `rule` are minted and added only now: after
            // the strip, and after the addresses passed their checks, so a
            // request that is refused never causes a mint or an injection.
            // They only travel to the origins this rule allows; a redirect is
            // a new request, matched afresh. A provider that fails stops the
            // request before it leaves.
            // The recorded host is the clipped one: a wildcard rule lets a tool choose long names.
            match credentials.injections(&rule.url, &record.host).await {
                Ok(headers) => {
                    for injected in headers {
                        request.headers_mut().insert(injected.header, injected.value);
                    }
                }
                Err(error) => {
                    // The broker has audited and counted the refusal itself.
                    let reason = format!("{method} {host}{path}: {error}");
                    record.write("denied", None, Some(&clip(&reason, 1024)), None, 0, 0);
                    return Err(denied(&clip(&reason, 1024)));
                }
            }
            send_to(request, &rule, &addresses, &host, port, scheme, options, &network, deadline, record.clone())
                .await
                .map_err(|failure| record.failure(&rule.url, failure))
        })
    }
}

impl EgressHooks {
    /// True when a credential is injected into requests the rule at `index` allows.
    fn carries_credentials(&self, index: usize) -> bool {
        let url = &self.grant.egress[index].url;
        self.grant.credentials.iter().any(|spec| match &spec.exposure {
            Exposure::Inject(injection) => injection.egress.contains(url),
            Exposure::Reveal => false,
        })
    }
}

/// The error a refused request gives the guest: `internal-error` is the one
/// WASI error code that carries text, and the text names the rule.
fn denied(reason: &str) -> HttpError {
    HttpError::InternalError(Some(format!("denied by toolcell egress policy: {reason}")))
}

/// The per-request audit record, written once: at refusal, at failure, or
/// when the response body ends or is dropped. Every field a tool chooses
/// (host, path, method) is clipped, so the record's size is bounded.
#[derive(Clone)]
struct Record {
    audit: AuditScope,
    invocation: String,
    method: String,
    host: String,
    path: String,
    started: Instant,
    meter: Arc<Meter>,
}

impl Record {
    #[allow(clippy::too_many_arguments, reason = "the fields of one audit event, each distinct")]
    fn write(
        &self,
        decision: &'static str,
        rule: Option<&str>,
        reason: Option<&str>,
        status: Option<u16>,
        sent: u64,
        received: u64,
    ) {
        self.audit.record_or_log(AuditKind::Egress {
            invocation: self.invocation.clone(),
            decision,
            rule: rule.map(str::to_owned),
            reason: reason.map(str::to_owned),
            method: self.method.clone(),
            host: self.host.clone(),
            path: self.path.clone(),
            status,
            bytes_sent: sent,
            bytes_received: received,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// A request the policy refused: audited, and counted against the
    /// call's `max_refusals` (past it, the call is stopped).
    fn refused(&self, reason: &str) {
        // Once a limit has stopped the call, a guest still running until it
        // is cut off writes nothing more: the record stays bounded.
        if self.meter.hit().is_some() {
            return;
        }
        let reason = clip(reason, 1024);
        tracing::info!(target: "toolcell::egress", host = %self.host, "denied: {reason}");
        self.write("denied", None, Some(&reason), None, 0, 0);
        let _ = self.meter.refused();
    }

    fn failed(&self, rule: &str, reason: &str) {
        self.write("allowed", Some(rule), Some(&clip(reason, 1024)), None, 0, 0);
    }

    /// Audits a request that did not complete; returns the guest's error.
    fn failure(&self, rule: &str, failure: Failure) -> HttpError {
        if failure.refused {
            self.refused(&failure.reason);
        } else {
            self.failed(rule, &failure.reason);
        }
        failure.error
    }
}

/// Why an allowed request still did not complete.
struct Failure {
    /// For the audit trail.
    reason: String,
    /// For the guest.
    error: HttpError,
    /// True when policy refused it (an address check), false when the network failed.
    refused: bool,
}

impl From<(String, HttpError)> for Failure {
    fn from((reason, error): (String, HttpError)) -> Failure {
        Failure { reason, error, refused: false }
    }
}

/// Time left before `deadline`, capped at `cap`.
fn clamp(cap: Duration, requested: Option<Duration>, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    requested.unwrap_or(cap).min(cap).min(left)
}

/// Resolves `host` on the host and checks every address against the rule;
/// the request may connect only to what this returns (no rebinding between
/// the check and the connect).
async fn resolve_checked(
    rule: &EgressRule,
    host: &str,
    connect_timeout: Duration,
    network: &Network,
) -> Result<Vec<IpAddr>, Failure> {
    let addresses = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::time::timeout(connect_timeout, network.resolver.resolve(host)).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(error)) => {
                return Err((format!("cannot resolve `{host}`: {error}"), HttpError::DestinationNotFound).into());
            }
            Err(_) => return Err((format!("resolving `{host}` timed out"), HttpError::DnsTimeout).into()),
        },
    };
    if let Err(reason) = check_addresses(rule, &addresses) {
        return Err(Failure { error: denied(&reason), reason, refused: true });
    }
    Ok(addresses)
}

/// Sends the request to one of the checked `addresses`.
#[allow(clippy::too_many_arguments, reason = "the request and what the hook checked about it, handed over whole")]
async fn send_to(
    mut request: http::Request<WasiBody>,
    rule: &EgressRule,
    addresses: &[IpAddr],
    host: &str,
    port: u16,
    scheme: Scheme,
    options: Option<RequestOptions>,
    network: &Network,
    deadline: Instant,
    record: Record,
) -> Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), Failure> {
    let connect_timeout = clamp(rule.connect_timeout.0, options.and_then(|o| o.connect_timeout), deadline);
    let first_byte_timeout = clamp(rule.first_byte_timeout.0, options.and_then(|o| o.first_byte_timeout), deadline);
    let total_deadline = Instant::now() + clamp(rule.total_timeout.0, None, deadline);
    let tls = (scheme == Scheme::Https).then_some(&network.tls);
    let io = transport::connect(addresses, port, host, tls, connect_timeout).await.map_err(|error| {
        let code = match &error {
            ConnectError::Refused(_) => HttpError::ConnectionRefused,
            ConnectError::Timeout(_) => HttpError::ConnectionTimeout,
            ConnectError::TlsName(_) | ConnectError::Tls(_) => HttpError::TlsCertificateError,
        };
        Failure::from((error.to_string(), code))
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::from((format!("HTTP handshake: {e}"), HttpError::from(e))))?;

    // Only the path and query go on the request line to an origin server.
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = http::Uri::builder().path_and_query(path_and_query).build().expect("from a valid URI");

    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let limit = rule.max_request_body.0;
    let request = request.map(|body| CappedBody { inner: body, limit, seen: 0, counter: sent.clone() }.boxed_unsync());

    let send = async {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| ("no response before the first-byte timeout".to_owned(), HttpError::ConnectionReadTimeout))?
            .map_err(|e| (format!("request: {e}"), HttpError::from(e)))?;
        Ok::<_, (String, HttpError)>(response)
    };
    let mut send = std::pin::pin!(send);
    let mut conn = Some(conn);
    // Drive the connection while waiting for the response head.
    let response = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else { return Poll::Pending };
            let done = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err((format!("connection: {e}"), HttpError::from(e)))),
            }
        }
    })
    .await
    .map_err(Failure::from)?;

    let status = response.status().as_u16();
    let max = rule.max_response_body.0;
    if let Some(length) =
        response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > max
    {
        let reason = format!("response of {length} bytes is over the rule's max_response_body of {max}");
        return Err((reason, HttpError::HttpResponseBodySize(Some(length))).into());
    }
    let (parts, incoming) = response.into_parts();
    let body = ResponseBody {
        inner: incoming,
        limit: max,
        received: 0,
        sleep: Box::pin(tokio::time::sleep_until(total_deadline.into())),
        record: Some((record, rule.url.clone(), status, sent)),
    };
    let response = http::Response::from_parts(parts, body.boxed_unsync());
    Ok((
        response,
        Box::new(async move {
            match conn {
                Some(conn) => conn.await.map_err(HttpError::from),
                None => Ok(()),
            }
        }),
    ))
}

/// A request body that stops at `limit` bytes.
struct CappedBody {
    inner: WasiBody,
    limit: u64,
    seen: u64,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.seen += data.len() as u64;
            self.counter.store(self.seen, std::sync::atomic::Ordering::Relaxed);
            if self.seen > self.limit {
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(self.limit)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body capped at `limit` bytes and at the total deadline; it
/// writes the request's audit record when it ends or is dropped.
struct ResponseBody {
    inner: hyper::body::Incoming,
    limit: u64,
    received: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
    record: Option<(Record, String, u16, Arc<std::sync::atomic::AtomicU64>)>,
}

impl ResponseBody {
    fn finish(&mut self, reason: Option<&str>) {
        if let Some((record, rule, status, sent)) = self.record.take() {
            let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
            record.write("allowed", Some(&rule), reason, Some(status), sent, self.received);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.finish(Some("the rule's total_timeout (or the call's deadline) ended the response"));
            return Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)));
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            None => {
                self.finish(None);
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                self.finish(Some(&error.to_string()));
                Poll::Ready(Some(Err(HttpError::from(error))))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    if self.received > self.limit {
                        let reason = format!("response body over the rule's max_response_body of {}", self.limit);
                        self.finish(Some(&reason));
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(self.received)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish(None);
    }
}
