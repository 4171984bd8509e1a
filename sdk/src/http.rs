//! Outbound HTTP over `wasi:http`, the safe path for a tool: every request
//! is checked by the host against the manifest's egress rules, and
//! credentials bound to a rule are added by the host — the tool never
//! handles the token. Redirects are returned, not followed.
//!
//! ```ignore
//! let response = toolcell_sdk::http::Request::get("https://api.github.com/repos/o/r/issues")
//!     .header("accept", "application/vnd.github+json")
//!     .max_body(1 << 20)
//!     .send()?;
//! let issues: serde_json::Value = serde_json::from_slice(&response.body)?;
//! ```

use std::fmt;
use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

/// A request being built.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_body: usize,
}

/// A response, its body read up to the request's `max_body`.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, at most `max_body` bytes.
    pub body: Vec<u8>,
    /// True when the body was longer than `max_body` and was cut.
    pub truncated: bool,
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request failed. `Denied` is the host's egress policy refusing it,
/// with the rule or reason it named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The URL or a header is not valid.
    Invalid(String),
    /// The host's egress policy refused the request.
    Denied(String),
    /// The network or the server failed.
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(reason) => write!(f, "invalid request: {reason}"),
            Error::Denied(reason) => write!(f, "{reason}"),
            Error::Failed(reason) => write!(f, "request failed: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Error {
        match code {
            ErrorCode::InternalError(Some(text)) if text.starts_with("denied by toolcell") => Error::Denied(text),
            other => Error::Failed(format!("{other:?}")),
        }
    }
}

impl Request {
    /// A request with `method` to `url` (`http://` or `https://`).
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_body: 10 << 20,
        }
    }

    /// A GET request.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header. Credential headers are the host's to set; it refuses them.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(self, value: &str) -> Request {
        self.header("content-type", "application/json").body(value.as_bytes())
    }

    /// Time to the first byte of the response (the host clamps it to the
    /// rule's and the call's limits).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Reads at most this many body bytes (default 10 MiB); the rest is dropped.
    pub fn max_body(mut self, bytes: usize) -> Request {
        self.max_body = bytes;
        self
    }

    /// Sends the request and reads the response body, up to `max_body` bytes.
    pub fn send(self) -> Result<Response, Error> {
        let max_body = self.max_body;
        let mut streaming = self.send_streaming()?;
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = streaming.next_chunk()? {
            let room = max_body - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend(chunk);
        }
        Ok(Response { status: streaming.status, headers: streaming.headers, body, truncated })
    }

    /// Sends the request and returns the response head at once; the body is
    /// read as it arrives (`next_chunk`, or `std::io::Read`), so a large body
    /// never has to fit in memory. `max_body` does not apply.
    pub fn send_streaming(self) -> Result<StreamingResponse, Error> {
        let (scheme, rest) =
            self.url.split_once("://").ok_or_else(|| Error::Invalid(format!("`{}` has no scheme", self.url)))?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(Error::Invalid(format!("scheme `{other}` is not http or https"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| Error::Invalid(format!("header `{name}` refused: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_owned()),
        };
        let invalid = |what: &str| Error::Invalid(format!("{what} of `{}`", self.url));
        request.set_method(&method).map_err(|()| invalid("method"))?;
        request.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| invalid("authority"))?;
        request.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;
        let options = self.timeout.map(|timeout| {
            let options = RequestOptions::new();
            let _ = options.set_first_byte_timeout(Some(timeout.as_nanos() as u64));
            options
        });
        let outgoing = request.body().map_err(|()| invalid("body"))?;
        let future = outgoing_handler::handle(request, options)?;
        if !self.body.is_empty() {
            let stream = outgoing.write().map_err(|()| invalid("body stream"))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| Error::Failed(format!("sending the body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(outgoing, None)?;
        future.subscribe().block();
        let response = future
            .get()
            .ok_or_else(|| Error::Failed("no response".into()))?
            .map_err(|()| Error::Failed("the response was already taken".into()))??;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let body = response.consume().map_err(|()| Error::Failed("the body was already taken".into()))?;
        let stream = body.stream().map_err(|()| Error::Failed("the body stream was already taken".into()))?;
        Ok(StreamingResponse { status, headers, stream: Some(stream), _body: body, pending: Vec::new() })
    }
}

/// A response whose body is read as it arrives.
pub struct StreamingResponse {
    /// HTTP status.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    // The stream is a child of the body resource and must be dropped first:
    // fields drop in declaration order.
    stream: Option<wasip2::io::streams::InputStream>,
    _body: wasip2::http::types::IncomingBody,
    pending: Vec<u8>,
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("finished", &self.stream.is_none())
            .finish_non_exhaustive()
    }
}

impl StreamingResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The next piece of the body, or `None` at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let Some(stream) = &self.stream else { return Ok(None) };
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(error)) => {
                self.stream = None;
                Err(Error::Failed(format!("reading the body: {}", error.to_debug_string())))
            }
        }
    }
}

impl std::io::Read for StreamingResponse {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.next_chunk().map_err(std::io::Error::other)? {
                Some(chunk) => self.pending = chunk,
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.pending.len());
        buffer[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}
