//! A real HTTP/1.1 server on 127.0.0.1 (an ephemeral port), plain or TLS
//! with a CA made for the test, that records every connection and request.
//!
//! Paths: `/ok`, `/echo-headers`, `/big?bytes=N`, `/chunked?bytes=N` (no
//! length), `/stall` (never answers), `/redirect?to=URL`, `/post` (reports
//! the body's size), and a GitHub-shaped `/repos/OWNER/REPO/issues` (GET lists,
//! POST creates; 401 without an `authorization` header).

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct TestServer {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA and a server certificate for the names given, signed by it.
pub struct TestCa {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn test_ca(names: &[&str]) -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "toolcell test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    TestCa { ca_pem: ca_cert.pem(), server: Arc::new(server) }
}

impl TestServer {
    pub async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, tls) = (r.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                                serve(stream, r).await;
                            }
                        }
                        None => serve(stream, r).await,
                    }
                });
            }
        });
        TestServer { port, connections, requests, task }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, seen: Arc<Mutex<Vec<SeenRequest>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match read_chunked(&mut stream).await {
            Some(body) => body,
            None => return,
        }
    } else {
        let mut body = vec![0u8; header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        body
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).unwrap_or("").to_owned()
    };
    seen.lock().unwrap().push(SeenRequest {
        method: method.clone(),
        path: path.to_owned(),
        headers: headers.clone(),
        body_len: body.len(),
        body: body.clone(),
    });
    let respond = |status: &str, extra: &str, body: &[u8]| {
        let mut out = Vec::new();
        write!(out, "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n{extra}\r\n", body.len()).unwrap();
        out.extend_from_slice(body);
        out
    };
    let response = match path {
        "/ok" => respond("200 OK", "", b"hello from the test server"),
        "/echo-headers" => {
            let text: String = headers.iter().map(|(k, v)| format!("{}: {v}\n", k.to_ascii_lowercase())).collect();
            respond("200 OK", "", text.as_bytes())
        }
        "/post" => respond("200 OK", "", format!("got {} bytes", body.len()).as_bytes()),
        "/big" => respond("200 OK", "", &vec![b'z'; param("bytes").parse().unwrap_or(0)]),
        "/chunked" => {
            let size: usize = param("bytes").parse().unwrap_or(0);
            let mut out = b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for chunk in vec![b'c'; size].chunks(8192) {
                write!(out, "{:x}\r\n", chunk.len()).unwrap();
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        "/stall" => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return;
        }
        "/redirect" => respond("302 Found", &format!("location: {}\r\n", param("to")), b""),
        issues if issues.starts_with("/repos/") && issues.ends_with("/issues") => {
            github_issues(&method, issues, header("authorization").is_some(), &body, respond)
        }
        _ => respond("404 Not Found", "", b"no such path"),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// The shape of GitHub's issues API, enough for a client to be tested against.
fn github_issues(
    method: &str,
    path: &str,
    authorized: bool,
    body: &[u8],
    respond: impl Fn(&str, &str, &[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let json = "content-type: application/json\r\n";
    if !authorized {
        return respond("401 Unauthorized", json, br#"{"message":"Requires authentication"}"#);
    }
    let page = format!("https://github.example{}", path.trim_end_matches("/issues").trim_start_matches("/repos"));
    match method {
        "GET" => {
            let issues = serde_json::json!([
                { "number": 1, "title": "First issue", "state": "open", "html_url": format!("{page}/issues/1") },
                { "number": 2, "title": "Second issue", "state": "open", "html_url": format!("{page}/issues/2") },
            ]);
            respond("200 OK", json, issues.to_string().as_bytes())
        }
        "POST" => {
            let Ok(created) = serde_json::from_slice::<serde_json::Value>(body) else {
                return respond("400 Bad Request", json, br#"{"message":"Problems parsing JSON"}"#);
            };
            let issue = serde_json::json!({
                "number": 3, "title": created["title"], "state": "open", "html_url": format!("{page}/issues/3"),
            });
            respond("201 Created", json, issue.to_string().as_bytes())
        }
        _ => respond("404 Not Found", json, br#"{"message":"Not Found"}"#),
    }
}

async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        line.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
}

async fn read_chunked<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = usize::from_str_radix(read_line(stream).await?.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            read_line(stream).await?;
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).await.ok()?;
        read_line(stream).await?;
    }
}
