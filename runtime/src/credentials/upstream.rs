//! The host's own HTTP client for credential providers (OpenBao, OAuth token
//! endpoints). These are servers the operator configured, not guest egress:
//! no egress rules apply, but every call has a timeout, a response size cap
//! and errors that name the endpoint without echoing secrets.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::io::TokioIo;

use crate::credentials::error::{ProviderError, TransportError};
use crate::transport;

/// The largest provider response read (a PKI bundle is a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// A provider answered, with this status and body. The body may hold a
/// secret (a token, a private key), so toolcell's copy is zeroized when the
/// answer is dropped; hyper's own read buffers are beyond its reach.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: zeroize::Zeroizing<Vec<u8>>,
}

impl Answer {
    /// The body as JSON, or an error naming `what` failed to parse.
    pub(crate) fn json(&self, what: &str) -> Result<serde_json::Value, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|cause| ProviderError::NotJson { what: what.to_owned(), cause })
    }

    /// The provider's error, as the answer to doing `what`.
    pub(crate) fn refusal(&self, what: impl Into<String>) -> ProviderError {
        ProviderError::Answered { what: what.into(), answer: self.error_text() }
    }

    /// A provider's own error text (OpenBao `errors`, OAuth `error` and
    /// `error_description`), which never carries a secret, or the status.
    pub(crate) fn error_text(&self) -> String {
        let detail = serde_json::from_slice::<serde_json::Value>(&self.body).ok().and_then(|v| {
            if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
                Some(errors.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("; "))
            } else {
                let error = v.get("error")?.as_str()?.to_owned();
                Some(match v.get("error_description").and_then(|d| d.as_str()) {
                    Some(description) => format!("{error}: {description}"),
                    None => error,
                })
            }
        });
        match detail {
            Some(detail) if !detail.is_empty() => format!("HTTP {}: {detail}", self.status),
            _ => format!("HTTP {}", self.status),
        }
    }
}

/// Sends one request to a provider and reads the whole answer, all within
/// `timeout`. `url` is absolute (`http` or `https`).
pub(crate) async fn send(
    tls: &crate::transport::Tls,
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, ProviderError> {
    let uri: http::Uri = url.parse().map_err(|cause| ProviderError::Transport {
        endpoint: url.to_owned(),
        cause: TransportError::BadUrl { url: url.to_owned(), cause },
    })?;
    let endpoint =
        format!("{}://{}{}", uri.scheme_str().unwrap_or("?"), uri.authority().map_or("", |a| a.as_str()), uri.path());
    let exchange = async {
        let host = uri.host().ok_or(TransportError::NoHost)?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(TransportError::Scheme),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // The operator's own server, by name: the system resolver
        // (ambient authority), and no egress rule applies.
        let addresses: Vec<std::net::IpAddr> = match host.parse() {
            Ok(ip) => vec![ip],
            // Ambient authority: the system resolver, for a server the operator configured.
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|cause| TransportError::Resolve { host: host.clone(), cause })?
                .map(|a| a.ip())
                .collect(),
        };
        let io = transport::connect(&addresses, port, &host, https.then_some(tls), timeout).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(TransportError::Handshake)?;
        tokio::spawn(async move {
            // The connection ends with the exchange; its error is the request's.
            let _ = conn.await;
        });
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, uri.authority().map_or("", |a| a.as_str()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Full::new(Bytes::from(body))).map_err(TransportError::Build)?;
        for value in request.headers_mut().values_mut() {
            // Keeps tokens out of any debug print of the request.
            value.set_sensitive(true);
        }
        let response = sender.send_request(request).await.map_err(TransportError::Send)?;
        let status = response.status().as_u16();
        let mut incoming = Limited::new(response.into_body(), MAX_RESPONSE);
        let mut body = zeroize::Zeroizing::new(Vec::new());
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(TransportError::Read)?;
            if let Some(data) = frame.data_ref() {
                body.extend_from_slice(data);
            }
        }
        Ok(Answer { status, body })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(cause)) => Err(ProviderError::Transport { endpoint, cause }),
        Err(_) => Err(ProviderError::NoAnswer { endpoint, within: crate::units::TimeSpan(timeout) }),
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub(crate) fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of `pairs` (RFC 6749 §B).
pub(crate) fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let encoded: Vec<String> =
        pairs.iter().map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value))).collect();
    encoded.join("&").into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_encoding_escapes_reserved_bytes() {
        assert_eq!(super::form(&[("a b", "x&y=z"), ("scope", "repo:read")]), b"a+b=x%26y%3Dz&scope=repo%3Aread");
    }
}
