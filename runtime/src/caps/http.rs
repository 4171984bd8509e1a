//! Egress: outbound HTTP through `wasi:http`, checked by the host on every
//! request before a byte leaves.
//!
//! [`EgressHooks::send_request`] is the only way out (toolcell builds
//! wasmtime-wasi-http without its default sender). For each request, in
//! order, it: asks the decision point about the request line
//! (`decide::http::HttpRequest`: a path servers cannot normalise into
//! another, a grant rule for its scheme, host, port, method and path,
//! requests left on the rule, no TRACE or CONNECT on a rule that carries a
//! credential); strips credential headers; resolves the name with the
//! runtime's resolver and asks the decision point about every address
//! (`decide::http::HttpAddresses`: loopback, private, link-local, metadata
//! and special ranges only where the rule names the address); only then
//! mints and injects the credentials bound to the rule; connects to an
//! address it checked (no rebinding between check and connect); clamps
//! timeouts to the rule and the call's deadline; caps both bodies; never
//! follows redirects; and records one audit event. A refusal reaches the
//! guest as an error naming the rule or reason, and counts against the
//! call's `max_refusals`.
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

use crate::audit::{AuditScope, clip};
use crate::credentials::broker::Broker;
use crate::decide::http::{HttpAddresses, HttpRequest, RequestNames};
use crate::decide::{CallContext, Request, decide, govern};
use crate::policy::credential::Exposure;
use crate::policy::egress::{EgressRule, RequestLine, Scheme};
use crate::request_policy::{Digest, PolicyAction};
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
    /// The call: its grant's egress rules, the requests sent on each, its refusal budget.
    call: Arc<CallContext>,
    network: Network,
    who: AuditScope,
    /// When the whole call must be over; every timeout is clamped to it.
    deadline: Instant,
    /// The call's credentials, injected into requests their rule allows.
    credentials: Arc<Broker>,
    /// Headers the grant injects credentials into, on any rule.
    injected: Arc<[HeaderName]>,
}

impl EgressHooks {
    /// The egress state of one invocation.
    pub(crate) fn new(
        call: Arc<CallContext>,
        network: Network,
        who: AuditScope,
        deadline: Instant,
        credentials: Arc<Broker>,
    ) -> EgressHooks {
        let mut injected: Vec<HeaderName> = Vec::new();
        for spec in &call.grant.credentials {
            if let Exposure::Inject(injection) = &spec.exposure {
                let name = HeaderName::from_bytes(injection.header.as_bytes()).expect("checked in the manifest");
                if !injected.contains(&name) {
                    injected.push(name);
                }
            }
        }
        EgressHooks { call, network, who, deadline, credentials, injected: injected.into() }
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
        let line = RequestLine { scheme, host: &host, port, method: &method, path: &path };
        let record =
            Record { who: self.who.clone(), call: self.call.clone(), names: RequestNames::new(&line, started) };
        let asked = HttpRequest { line: &line, names: &record.names };
        let rule = match decide(Request { who: &self.who, call: Some(&self.call), action: asked }) {
            Ok(rule) => rule,
            Err(denial) => return Box::new(std::future::ready(Err(denied(&denial.reason)))),
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
        let query = uri.query().unwrap_or("").to_owned();
        Box::new(async move {
            // Request-time policy sees the body as its digest and size, so
            // where a policy or an approval is in force the body (capped by
            // the rule) is read before anything is decided or sent.
            let approval = rule.approval.as_ref().filter(|a| a.covers_any([method.as_str()])).map(|a| a.reason.clone());
            let mut body = Digest::default();
            if record.call.governed("http") || approval.is_some() {
                let (parts, streamed) = request.into_parts();
                let whole = read_body(streamed, rule.max_request_body.0).await;
                let whole = whole.map_err(|failure| record.failure(&rule.url, failure))?;
                body = Digest::of(&whole);
                request = http::Request::from_parts(
                    parts,
                    http_body_util::Full::new(whole).map_err(|never| match never {}).boxed_unsync(),
                );
            }
            let line = RequestLine { scheme, host: &host, port, method: &method, path: &path };
            let asked = PolicyAction::Http {
                method: method.clone(),
                scheme: scheme.name().to_owned(),
                host: host.clone(),
                port,
                path: path.clone(),
                query: Digest::of(query.as_bytes()),
                body,
            };
            let action = HttpRequest { line: &line, names: &record.names };
            govern(Request { who: &record.who, call: Some(&record.call), action }, asked, approval.as_deref())
                .await
                .map_err(|denial| denied(&denial.reason))?;
            let connect_timeout = clamp(rule.connect_timeout.0, options.and_then(|o| o.connect_timeout), deadline);
            let addresses = resolve(&host, connect_timeout, &network).await;
            let addresses = addresses.map_err(|failure| record.failure(&rule.url, failure))?;
            let asked = HttpAddresses { rule: &rule, addresses: &addresses, names: &record.names };
            decide(Request { who: &record.who, call: Some(&record.call), action: asked })
                .map_err(|denial| denied(&denial.reason))?;
            // Credentials bound to `rule` are minted and added only now: after
            // the strip, and after the addresses passed their checks, so a
            // request that is refused never causes a mint or an injection.
            // They only travel to the origins this rule allows; a redirect is
            // a new request, matched afresh. A provider that fails stops the
            // request before it leaves.
            // The recorded host is the clipped one: a wildcard rule lets a tool choose long names.
            match credentials.injections(&rule.url, &record.names.host).await {
                Ok(headers) => {
                    for injected in headers {
                        request.headers_mut().insert(injected.header, injected.value);
                    }
                }
                Err(error) => {
                    // The broker has audited and counted the refusal itself.
                    let reason = format!("{method} {host}{path}: {error}");
                    record.write("denied", None, Some(&reason), (None, 0, 0));
                    return Err(denied(&reason));
                }
            }
            send_to(request, &rule, &addresses, &host, port, scheme, options, &network, deadline, record.clone())
                .await
                .map_err(|failure| record.failure(&rule.url, failure))
        })
    }
}

/// The error a refused request gives the guest: `internal-error` is the one
/// WASI error code that carries text, and the text names the rule.
fn denied(reason: &str) -> HttpError {
    HttpError::InternalError(Some(format!("denied by toolcell egress policy: {}", clip(reason, 1024))))
}

/// The per-request audit record of an allowed request, written once: at
/// failure, or when the response body ends or is dropped. (A refusal is
/// recorded by the decision point.)
#[derive(Clone)]
struct Record {
    who: AuditScope,
    call: Arc<CallContext>,
    names: RequestNames,
}

impl Record {
    fn write(
        &self,
        decision: &'static str,
        rule: Option<&str>,
        reason: Option<&str>,
        outcome: (Option<u16>, u64, u64),
    ) {
        self.call.count_bytes(outcome.1, outcome.2);
        self.who.record_or_log(self.names.event(&self.call.invocation, decision, rule, reason, outcome));
    }

    /// Audits an allowed request that did not complete; returns the guest's error.
    fn failure(&self, rule: &str, failure: Failure) -> HttpError {
        self.write("allowed", Some(rule), Some(&failure.reason), (None, 0, 0));
        failure.error
    }
}

/// Why an allowed request still did not complete.
struct Failure {
    /// For the audit trail.
    reason: String,
    /// For the guest.
    error: HttpError,
}

impl From<(String, HttpError)> for Failure {
    fn from((reason, error): (String, HttpError)) -> Failure {
        Failure { reason, error }
    }
}

/// Time left before `deadline`, capped at `cap`.
fn clamp(cap: Duration, requested: Option<Duration>, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    requested.unwrap_or(cap).min(cap).min(left)
}

/// Resolves `host` with the runtime's resolver. The request connects only
/// to what this returns, once the decision point has checked it (no
/// rebinding between the check and the connect).
async fn resolve(host: &str, connect_timeout: Duration, network: &Network) -> Result<Vec<IpAddr>, Failure> {
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

/// Reads a whole request body, refusing one over `limit` bytes.
async fn read_body(mut body: WasiBody, limit: u64) -> Result<Bytes, Failure> {
    let mut whole = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| Failure::from((format!("reading the request body: {error}"), error)))?;
        if let Some(data) = frame.data_ref() {
            if whole.len() as u64 + data.len() as u64 > limit {
                let reason = format!("request body over the rule's max_request_body of {limit}");
                return Err((reason, HttpError::HttpRequestBodySize(Some(limit))).into());
            }
            whole.extend_from_slice(data);
        }
    }
    Ok(whole.freeze())
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
            record.write("allowed", Some(&rule), reason, (Some(status), sent, self.received));
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
