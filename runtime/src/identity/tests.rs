//! The resource server against tokens signed here with real keys (ES256,
//! EdDSA) and an authorization server's metadata and JWKS served on
//! loopback. The tests against a real authorization server (RS256 from
//! oidc-provider, introspection, rotation there) are in the CLI's tests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::units::TimeSpan;

const RESOURCE: &str = "http://127.0.0.1:1/mcp";

/// A signing key and its public JWK.
enum Key {
    Es256(EcdsaKeyPair, String),
    EdDsa(Ed25519KeyPair, String),
}

impl Key {
    fn es256(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key::Es256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
            kid.into(),
        )
    }

    fn eddsa(kid: &str) -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Key::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(), kid.into())
    }

    fn jwk(&self) -> Value {
        match self {
            Key::Es256(pair, kid) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                       "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
            }
            Key::EdDsa(pair, kid) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64.encode(pair.public_key().as_ref())})
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(..) => "ES256",
            Key::EdDsa(..) => "EdDSA",
        }
    }

    fn kid(&self) -> &str {
        match self {
            Key::Es256(_, kid) | Key::EdDsa(_, kid) => kid,
        }
    }

    /// A token with this key's `alg` and `kid` in a header of `typ: at+jwt`.
    fn token(&self, claims: &Value) -> String {
        self.token_with(&json!({"alg": self.alg(), "typ": "at+jwt", "kid": self.kid()}), claims)
    }

    fn token_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let signature = match self {
            Key::Es256(pair, _) => pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec(),
            Key::EdDsa(pair, _) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", B64.encode(signature))
    }
}

/// An authorization server's metadata and JWKS on a loopback port.
struct KeyServer {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    up: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(keys: &[&Key]) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})));
        let (up, fetches) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
        let (served, serving, counted, named) = (jwks.clone(), up.clone(), fetches.clone(), issuer.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                if !serving.load(Ordering::SeqCst) {
                    // Down: the connection is dropped unanswered.
                    continue;
                }
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = match path.as_str() {
                    "/.well-known/oauth-authorization-server" => {
                        ("200 OK", json!({"issuer": named, "jwks_uri": format!("{named}/jwks")}).to_string())
                    }
                    "/jwks" => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", served.lock().unwrap().to_string())
                    }
                    _ => ("404 Not Found", "{}".to_owned()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        KeyServer { issuer, jwks, up, fetches }
    }

    fn publish(&self, keys: &[&Key]) {
        *self.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }
}

fn config(issuer: &str) -> OAuthConfig {
    let mut config: OAuthConfig = toml::from_str(&format!("issuer = \"{issuer}\"")).unwrap();
    config.resource = Some(RESOURCE.into());
    config.tool_scopes = [("github-issues", "tools:github"), ("*", "tools:call")]
        .into_iter()
        .map(|(t, s)| (t.to_owned(), s.to_owned()))
        .collect();
    config
}

fn server(config: OAuthConfig) -> ResourceServer {
    let tls = crate::transport::Tls::new(&[]).unwrap();
    ResourceServer::new(config, "http://unused/mcp", tls).unwrap()
}

fn claims(issuer: &str) -> Value {
    let now = super::now();
    json!({"iss": issuer, "aud": RESOURCE, "sub": "alice", "client_id": "research-agent",
           "scope": "tools:call openid", "iat": now, "exp": now + 300, "jti": "t1"})
}

fn with(mut value: Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    edit(value.as_object_mut().unwrap());
    value
}

#[tokio::test]
async fn a_valid_token_names_its_subject_actor_and_scopes() {
    let key = Key::es256("k1");
    let keys = KeyServer::start(&[&key]).await;
    let rs = server(config(&keys.issuer));

    let caller = rs.authenticate(&key.token(&claims(&keys.issuer))).await.unwrap();
    assert_eq!(caller.principal, "alice");
    assert_eq!(caller.actor, Some(Actor::new("research-agent")));
    assert_eq!(caller.scopes, ["tools:call", "openid"]);

    // A delegated token: its `act` chain is the actor, nearest first.
    let delegated = with(claims(&keys.issuer), |c| {
        c.insert("act".into(), json!({"sub": "research-agent", "act": {"sub": "orchestrator"}}));
    });
    let caller = rs.authenticate(&key.token(&delegated)).await.unwrap();
    assert_eq!(caller.actor.as_ref().unwrap().chain(), ["research-agent", "orchestrator"]);
    assert_eq!(caller.actor.unwrap().to_string(), "research-agent via orchestrator");

    // A client acting for itself (client credentials) has no separate actor;
    // an EdDSA key and an `aud` array work as well.
    let eddsa = Key::eddsa("k2");
    keys.publish(&[&key, &eddsa]);
    let own = with(claims(&keys.issuer), |c| {
        c.insert("sub".into(), json!("research-agent"));
        c.insert("aud".into(), json!(["https://other.example", RESOURCE]));
    });
    let mut cfg = config(&keys.issuer);
    cfg.jwks_min_refresh = TimeSpan(Duration::ZERO);
    let rs = server(cfg);
    let caller = rs.authenticate(&eddsa.token(&own)).await.unwrap();
    assert_eq!((caller.principal.as_str(), caller.actor), ("research-agent", None));
    // The keys were fetched once and kept.
    let before = keys.fetches.load(Ordering::SeqCst);
    rs.authenticate(&key.token(&claims(&keys.issuer))).await.unwrap();
    assert_eq!(keys.fetches.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason_that_never_shows_the_token() {
    let key = Key::es256("k1");
    let stranger = Key::es256("k1");
    let keys = KeyServer::start(&[&key]).await;
    let rs = server(config(&keys.issuer));
    let issuer = keys.issuer.as_str();
    let now = super::now();
    let good = claims(issuer);

    let header = |alg: &str, typ: &str| json!({"alg": alg, "typ": typ, "kid": "k1"});
    let unsigned = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        B64.encode(good.to_string())
    );
    // The classic confusion: HS256 keyed with the public key.
    let hmac = {
        let input = format!("{}.{}", B64.encode(header("HS256", "at+jwt").to_string()), B64.encode(good.to_string()));
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.jwk().to_string().as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", B64.encode(mac.as_ref()))
    };
    let tampered = {
        let token = key.token(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let wider = with(good.clone(), |c| {
            c.insert("scope".into(), json!("tools:call tools:github"));
        });
        format!("{}.{}.{}", parts[0], B64.encode(wider.to_string()), parts[2])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            key.token(&with(good.clone(), |c| {
                c.insert("exp".into(), json!(now - 31));
            })),
            "expired",
        ),
        (
            "not yet valid",
            key.token(&with(good.clone(), |c| {
                c.insert("nbf".into(), json!(now + 120));
            })),
            "not_yet_valid",
        ),
        (
            "issued in the future",
            key.token(&with(good.clone(), |c| {
                c.insert("iat".into(), json!(now + 120));
            })),
            "not_yet_valid",
        ),
        (
            "no exp",
            key.token(&with(good.clone(), |c| {
                c.remove("exp");
            })),
            "no_expiry",
        ),
        (
            "wrong audience",
            key.token(&with(good.clone(), |c| {
                c.insert("aud".into(), json!("http://127.0.0.1:2/mcp"));
            })),
            "audience",
        ),
        (
            "no audience",
            key.token(&with(good.clone(), |c| {
                c.remove("aud");
            })),
            "audience",
        ),
        (
            "wrong issuer",
            key.token(&with(good.clone(), |c| {
                c.insert("iss".into(), json!("http://127.0.0.1:3"));
            })),
            "issuer",
        ),
        (
            "no subject",
            key.token(&with(good.clone(), |c| {
                c.remove("sub");
            })),
            "subject",
        ),
        ("alg none", unsigned, "algorithm"),
        ("HS256", hmac, "algorithm"),
        ("an ID token", key.token_with(&header("ES256", "JWT"), &good), "type"),
        ("unknown kid", key.token_with(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "k9"}), &good), "unknown_key"),
        ("another key, same kid", stranger.token(&good), "signature"),
        ("claims edited", tampered, "signature"),
        ("oversized", format!("{}{}", key.token(&good), "A".repeat(9000)), "oversized"),
        ("not a JWT", "opaque-token-value-1234".to_owned(), "malformed"),
        (
            "crit header",
            key.token_with(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1", "crit": ["exp"]}), &good),
            "critical",
        ),
        (
            "deep act",
            key.token(&with(good.clone(), |c| {
                let mut act = json!({"sub": "a"});
                for _ in 0..10 {
                    act = json!({"sub": "a", "act": act});
                }
                c.insert("act".into(), act);
            })),
            "malformed",
        ),
    ];
    for (name, token, code) in cases {
        let refusal = rs.authenticate(&token).await.expect_err(name);
        assert_eq!(refusal.code(), code, "{name}: {refusal}");
        assert!(!refusal.is_unavailable(), "{name}");
        let text = format!("{refusal} {refusal:?} {}", rs.challenge(&refusal));
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!text.contains(part), "{name}: the refusal shows the token: {text}");
        }
    }
    // Within the skew, an expired token still passes.
    rs.authenticate(&key.token(&with(good, |c| {
        c.insert("exp".into(), json!(now - 5));
    })))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_rotation_is_picked_up_and_a_key_that_rotated_out_stops_verifying() {
    let (old, new) = (Key::es256("old"), Key::es256("new"));
    let keys = KeyServer::start(&[&old]).await;
    let mut cfg = config(&keys.issuer);
    cfg.jwks_min_refresh = TimeSpan(Duration::ZERO);
    let rs = server(cfg);
    let old_token = old.token(&claims(&keys.issuer));
    rs.authenticate(&old_token).await.unwrap();

    // The server rotates: only the new key is published now.
    keys.publish(&[&new]);
    rs.authenticate(&new.token(&claims(&keys.issuer))).await.unwrap();
    let refusal = rs.authenticate(&old_token).await.unwrap_err();
    assert_eq!(refusal, TokenRefusal::UnknownKey { kid: Some("old".into()) });
}

#[tokio::test]
async fn unknown_kids_do_not_make_toolcell_fetch_the_keys_again_and_again() {
    let key = Key::es256("k1");
    let keys = KeyServer::start(&[&key]).await;
    let rs = server(config(&keys.issuer));
    rs.authenticate(&key.token(&claims(&keys.issuer))).await.unwrap();
    let unknown = key.token_with(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "k9"}), &claims(&keys.issuer));
    for _ in 0..20 {
        rs.authenticate(&unknown).await.unwrap_err();
    }
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 1, "within jwks_min_refresh, one fetch serves them all");
}

#[tokio::test]
async fn keys_outlive_an_outage_until_their_cache_expires_then_every_token_is_refused() {
    let key = Key::es256("k1");
    let keys = KeyServer::start(&[&key]).await;
    let mut cfg = config(&keys.issuer);
    cfg.jwks_cache = TimeSpan(Duration::from_millis(400));
    cfg.timeout = TimeSpan(Duration::from_millis(500));
    let rs = server(cfg);
    let token = key.token(&claims(&keys.issuer));
    rs.prefetch().await.unwrap();
    keys.up.store(false, Ordering::SeqCst);
    rs.authenticate(&token).await.expect("cached keys keep working during an outage");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refusal = rs.authenticate(&token).await.unwrap_err();
    assert!(refusal.is_unavailable() && refusal.code() == "keys_unavailable", "{refusal}");
    assert!(refusal.to_string().contains("no token is accepted"), "{refusal}");
    // Back up: accepted again.
    keys.up.store(true, Ordering::SeqCst);
    rs.authenticate(&token).await.unwrap();
}

#[test]
fn tool_scopes_metadata_and_challenges_say_what_an_mcp_client_needs() {
    let rs = server(config("http://127.0.0.1:9"));
    assert_eq!(rs.tool_access(&["tools:call".into()], "word-count"), ToolAccess::Allowed);
    assert_eq!(rs.tool_access(&["tools:call".into()], "github-issues"), ToolAccess::NeedsScope("tools:github".into()));
    let mut narrow = config("http://127.0.0.1:9");
    narrow.tool_scopes.remove("*");
    assert_eq!(server(narrow).tool_access(&["tools:call".into()], "word-count"), ToolAccess::NotOffered);

    assert_eq!(rs.metadata_path(), "/.well-known/oauth-protected-resource/mcp");
    assert_eq!(rs.metadata_url(), "http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp");
    let metadata = rs.metadata();
    assert_eq!(metadata["resource"], RESOURCE);
    assert_eq!(metadata["authorization_servers"], json!(["http://127.0.0.1:9"]));
    assert_eq!(metadata["scopes_supported"], json!(["tools:call", "tools:github"]));
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));

    assert_eq!(
        rs.challenge(&TokenRefusal::Missing),
        "Bearer resource_metadata=\"http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp\", scope=\"tools:call\""
    );
    let expired = rs.challenge(&TokenRefusal::Expired { ago: 40 });
    assert!(expired.contains("error=\"invalid_token\"") && expired.contains("expired 40s ago"), "{expired}");
    let scope = rs.scope_challenge("tools:github");
    assert!(scope.starts_with("Bearer error=\"insufficient_scope\", scope=\"tools:github\""), "{scope}");
}

#[test]
fn a_config_that_would_accept_too_much_is_refused() {
    let tls = || crate::transport::Tls::new(&[]).unwrap();
    let refused = |edit: &dyn Fn(&mut OAuthConfig)| {
        let mut cfg = config("http://127.0.0.1:9");
        edit(&mut cfg);
        ResourceServer::new(cfg, "http://127.0.0.1:1/mcp", tls()).unwrap_err().to_string()
    };
    assert!(refused(&|c| c.algorithms = vec!["none".into()]).contains("`none`"));
    assert!(refused(&|c| c.algorithms = vec!["HS256".into()]).contains("HMAC"));
    assert!(refused(&|c| c.issuer = "http://as.example".into()).contains("https"));
    assert!(refused(&|c| c.leeway = TimeSpan(Duration::from_secs(3600))).contains("5m"));
    assert!(refused(&|c| c.resource = Some("mcp".into())).contains("absolute URL"));
    assert!(
        refused(&|c| {
            c.tool_scopes.insert("x".into(), "a b".into());
        })
        .contains("`x`")
    );
}
