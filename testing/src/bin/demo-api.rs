//! A stand-in for a real API, for `scripts/demo`: it listens on a free
//! 127.0.0.1 port (printed as `port N` on stdout) and answers `GET /whoami`
//! with who the bearer token says is calling — its workload, principal,
//! scopes and remaining life — or 401 without one. It decodes the token's
//! claims without verifying them (a real service verifies against
//! `toolcell jwks`); it never prints the token.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use base64::Engine as _;

fn main() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    println!("port {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        let mut authorization = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("authorization")
            {
                authorization = Some(value.trim().to_owned());
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let claims = authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| token.split('.').nth(1))
            .and_then(|payload| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok())
            .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
        eprintln!(
            "demo-api: GET {path} {}",
            if claims.is_some() { "with a bearer token" } else { "without a credential" }
        );
        let (status, body) = match (path.as_str(), claims) {
            ("/whoami", Some(claims)) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let left = claims["exp"].as_u64().unwrap_or(0).saturating_sub(now);
                let body = serde_json::json!({
                    "workload": claims["sub"],
                    "on_behalf_of": claims["act"]["sub"],
                    "scope": claims["scope"],
                    "token_expires_in_s": left,
                });
                ("200 OK", body)
            }
            ("/whoami", None) => ("401 Unauthorized", serde_json::json!({ "error": "no bearer token" })),
            _ => ("404 Not Found", serde_json::json!({ "error": "no such path" })),
        };
        let body = body.to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
