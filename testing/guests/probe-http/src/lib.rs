//! One outbound HTTP request through `wasi:http/outgoing-handler`, made the
//! way any guest would make it; shared by the probe guests.

/// A response as the guest saw it.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    pub fn summary(&self) -> String {
        format!("status {}\n{}", self.status, String::from_utf8_lossy(&self.body))
    }
}

/// One request through `wasi:http/outgoing-handler`, as any guest would make it.
pub fn request(method: &str, url: &str, extra: &[String]) -> std::io::Result<HttpResponse> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    let fail = |what: String| std::io::Error::other(what);
    let (scheme, rest) = url.split_once("://").ok_or_else(|| fail(format!("bad url {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    let mut body = None;
    for item in extra {
        if let Some(text) = item.strip_prefix("body=") {
            body = Some(text.as_bytes().to_vec());
        } else if let Some(size) = item.strip_prefix("body-bytes=") {
            body = Some(vec![b'b'; size.parse().unwrap()]);
        } else if let Some((name, value)) = item.split_once(':') {
            // A refused header is reported and the request goes on without it.
            if let Err(error) = fields.append(name, value.trim().as_bytes()) {
                eprintln!("header {name} refused: {error:?}");
            }
        }
    }
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_owned()),
    };
    request.set_method(&method).map_err(|()| fail("method".into()))?;
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| fail("scheme".into()))?;
    request.set_authority(Some(authority)).map_err(|()| fail("authority".into()))?;
    request.set_path_with_query(Some(path)).map_err(|()| fail("path".into()))?;
    let outgoing = request.body().map_err(|()| fail("body".into()))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| fail(format!("{e:?}")))?;
    if let Some(bytes) = body {
        let stream = outgoing.write().map_err(|()| fail("body stream".into()))?;
        for chunk in bytes.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| fail(format!("writing body: {e:?}")))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| fail(format!("{e:?}")))?;
    future.subscribe().block();
    let response = future.get().expect("ready").expect("once").map_err(|e| fail(format!("{e:?}")))?;
    let status = response.status();
    let headers =
        response.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
    let incoming = response.consume().map_err(|()| fail("consume".into()))?;
    let stream = incoming.stream().map_err(|()| fail("stream".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => body.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(fail(format!("reading body: {}", error.to_debug_string())));
            }
        }
    }
    Ok(HttpResponse { status, headers, body })
}
