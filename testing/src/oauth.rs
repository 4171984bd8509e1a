//! A real OAuth 2.0 authorization server for the tests: the npm package
//! `oidc-provider`, with the project's RFC 8693 token exchange grant
//! (`testing/oauth/token-exchange-server.mjs`), on a free 127.0.0.1 port.
//! `scripts/test` installs it; a missing install is a loud failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct OAuthServer {
    /// `http://127.0.0.1:PORT`: its issuer URL and the subject tokens' audience.
    pub issuer: String,
    /// toolcell's client secret there (a test secret).
    pub client_secret: String,
    port: u16,
    child: Child,
    issued: Arc<Mutex<Vec<String>>>,
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oauth")
}

impl OAuthServer {
    /// Starts a server that trusts subject tokens from `toolcell_issuer`
    /// signed by a key in `jwks`, and grants at most `audience_scopes`
    /// (audience -> scopes) in exchange.
    pub fn start(jwks: &serde_json::Value, toolcell_issuer: &str, audience_scopes: &serde_json::Value) -> OAuthServer {
        OAuthServer::start_with(jwks, toolcell_issuer, audience_scopes, &serde_json::json!({}))
    }

    /// Like [`OAuthServer::start`], with `audience_lifetime` (audience ->
    /// seconds, or `"unstated"`) overriding how long its tokens live.
    pub fn start_with(
        jwks: &serde_json::Value,
        toolcell_issuer: &str,
        audience_scopes: &serde_json::Value,
        audience_lifetime: &serde_json::Value,
    ) -> OAuthServer {
        let dir = server_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the OAuth test server is not installed ({} has no node_modules/oidc-provider). Run `scripts/test`, \
             which runs `npm install` there.",
            dir.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let jwks_file = std::env::temp_dir().join(format!("toolcell-jwks-{}-{port}.json", std::process::id()));
        std::fs::write(&jwks_file, jwks.to_string()).unwrap();
        let client_secret = format!("test-client-secret-{port}-{}", std::process::id());
        let mut child = Command::new("node")
            .arg(dir.join("token-exchange-server.mjs"))
            .env("PORT", port.to_string())
            .env("TOOLCELL_JWKS", &jwks_file)
            .env("TOOLCELL_ISSUER", toolcell_issuer)
            .env("CLIENT_SECRET", &client_secret)
            .env("AUDIENCE_SCOPES", audience_scopes.to_string())
            .env("AUDIENCE_LIFETIME", audience_lifetime.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node for the OAuth test server: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening "), "the OAuth test server did not start: {line:?}");
        // The server prints notices later; its stdout must stay open or it dies of EPIPE.
        let issued = Arc::new(Mutex::new(Vec::new()));
        let seen = issued.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                match line.strip_prefix("issued ") {
                    Some(token) => seen.lock().unwrap().push(token.to_owned()),
                    None => eprintln!("oauth test server: {line}"),
                }
            }
        });
        OAuthServer { issuer: format!("http://127.0.0.1:{port}"), client_secret, port, child, issued }
    }

    /// Every token this server has issued so far, oldest first.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    /// RFC 7662 introspection of `token`, as toolcell's client.
    pub fn introspect(&self, token: &str) -> serde_json::Value {
        let body = format!("token={}", form_encode(token));
        let response = self.post("/token/introspection", &body);
        serde_json::from_str(&response).unwrap_or_else(|e| panic!("introspection answered {response:?}: {e}"))
    }

    fn post(&self, path: &str, body: &str) -> String {
        post_form(self.port, path, "toolcell", &self.client_secret, body)
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    out
}

/// The authorization server MCP clients get tokens from
/// (`testing/oauth/authorization-server.mjs`): oidc-provider with resource
/// indicators, JWT and opaque access tokens, client credentials, a
/// development login for people, and a token exchange for agents acting for
/// them. Its signing keys live in a file, so a restart can keep or rotate them.
#[derive(Debug)]
pub struct AuthorizationServer {
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// Every client's secret there (a test secret).
    pub client_secret: String,
    port: u16,
    keys: PathBuf,
    child: Option<Child>,
}

impl Drop for AuthorizationServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl AuthorizationServer {
    /// Starts a server on a free port with fresh keys in `keys` (a file path).
    pub fn start(keys: &std::path::Path) -> AuthorizationServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = AuthorizationServer {
            issuer: format!("http://127.0.0.1:{port}"),
            client_secret: format!("test-client-secret-{port}-{}", std::process::id()),
            port,
            keys: keys.to_owned(),
            child: None,
        };
        server.spawn(None);
        server
    }

    /// Another server on its own port that signs with the same keys (so
    /// only its issuer differs).
    pub fn impostor(&self) -> AuthorizationServer {
        AuthorizationServer::start(&self.keys)
    }

    /// Stops the server (its keys stay in their file).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port; `rotate` is `Some("add")` (a new
    /// signing key, the old one still published) or `Some("replace")` (only
    /// the new key).
    pub fn restart(&mut self, rotate: Option<&str>) {
        self.stop();
        self.spawn(rotate);
    }

    fn spawn(&mut self, rotate: Option<&str>) {
        let dir = server_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the OAuth test server is not installed ({} has no node_modules/oidc-provider). Run `scripts/test`, \
             which runs `npm install` there.",
            dir.display()
        );
        let mut command = Command::new("node");
        command
            .arg(dir.join("authorization-server.mjs"))
            .env("PORT", self.port.to_string())
            .env("KEYS_FILE", &self.keys)
            .env("CLIENT_SECRET", &self.client_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(rotate) = rotate {
            command.env("ROTATE", rotate);
        }
        let mut child =
            command.spawn().unwrap_or_else(|e| panic!("cannot start node for the authorization server: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening "), "the authorization server did not start: {line:?}");
        std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
        self.child = Some(child);
    }

    /// A client-credentials token for `client` with `scope`, for `resource`.
    pub fn client_token(&self, client: &str, scope: &str, resource: &str) -> String {
        let body =
            format!("grant_type=client_credentials&scope={}&resource={}", form_encode(scope), form_encode(resource));
        let answer = post_form(self.port, "/token", client, &self.client_secret, &body);
        let answer: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("the token endpoint answered {answer:?}: {e}"));
        answer["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {answer}")).to_owned()
    }
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// POSTs a form with HTTP Basic client authentication; the answer's body.
fn post_form(port: u16, path: &str, client: &str, secret: &str, body: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Basic {auth}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_owned() }
}
