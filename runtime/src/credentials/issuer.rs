//! The built-in `issuer` provider: Ed25519-signed access tokens shaped like
//! RFC 9068 (`typ: at+jwt`), a JWKS for downstream verifiers, key rotation
//! by `kid`, and a deny-list that refuses a token after teardown until its
//! `exp` has passed.
//!
//! Token values are `SecretString`s: they never appear in Debug output, and
//! the host's copies are zeroized when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::key_file::{Placing, write_whole};

/// Why the key file was not written.
enum WriteError {
    /// Creating: another runtime created it first.
    Exists,
    /// Anything else, as text for [`KeyFileError`].
    Failed(String),
}

/// The claims of one access token (RFC 9068 shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer URL.
    pub iss: String,
    /// The workload: `spiffe://<trust-domain>/tool/<tool>/task/<task>`.
    pub sub: String,
    /// Exactly one audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry; never past the invocation's deadline.
    pub exp: u64,
    /// Unique token id, deny-listed at teardown.
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The actor chain (RFC 8693 §4.1 `act`): on whose behalf the workload
    /// acts (the principal), and under it the agent acting for the
    /// principal, nearest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// OAuth client id (RFC 9068 requires it): the tool's name.
    pub client_id: String,
}

pub use crate::identity::Actor;

/// What a mint asks for.
#[derive(Clone, Debug)]
pub struct MintRequest {
    /// The token's subject: the workload id (or, for an RFC 8693 actor
    /// token, the principal).
    pub subject: String,
    /// The `act` chain.
    pub act: Option<Actor>,
    /// The tool's name.
    pub client_id: String,
    /// The one audience.
    pub audience: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Longest life the manifest allows.
    pub max_ttl: Duration,
    /// The invocation's deadline, as wall-clock time: `exp` never passes it.
    pub not_after: SystemTime,
}

/// A minted token. Its value is secret; the rest is for audit.
pub struct MintedToken {
    /// The compact JWS. Exposed only to the egress hook (inject) or a
    /// `reveal` the manifest allows.
    pub token: SecretString,
    /// Token id.
    pub jti: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Key id it was signed with.
    pub kid: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &"<secret>")
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .field("kid", &self.kid)
            .finish()
    }
}

/// Why a token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url parts of JSON.
    #[error("token is malformed")]
    Malformed,
    /// Header is not `alg: EdDSA`, `typ: at+jwt` with a known `kid`.
    #[error("token header is not an EdDSA at+jwt with a known kid")]
    Header,
    /// Signature does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// Issuer or audience is not the expected one.
    #[error("token is for another issuer or audience")]
    Audience,
    /// Past `exp` or before `nbf`.
    #[error("token is expired or not yet valid")]
    Expired,
    /// Revoked at teardown.
    #[error("token was revoked (jti {0})")]
    Revoked(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

struct Key {
    kid: String,
    signing: SigningKey,
}

/// Revoked token ids, each until its expiry. Expired entries are useless
/// (an expired token is refused anyway), so each insert drops those at the
/// front of the expiry heap: O(log n) per revocation, however many are live.
#[derive(Default)]
struct DenyList {
    until: HashMap<String, u64>,
    by_expiry: std::collections::BinaryHeap<std::cmp::Reverse<(u64, String)>>,
}

impl DenyList {
    fn insert(&mut self, jti: &str, exp: u64, now: u64) {
        while let Some(std::cmp::Reverse((exp, _))) = self.by_expiry.peek()
            && *exp <= now
        {
            let std::cmp::Reverse((at, expired)) = self.by_expiry.pop().expect("peeked");
            // Only if it was not revoked again with a later expiry.
            if self.until.get(&expired) == Some(&at) {
                self.until.remove(&expired);
            }
        }
        if exp > now {
            self.until.insert(jti.to_owned(), exp);
            self.by_expiry.push(std::cmp::Reverse((exp, jti.to_owned())));
        }
    }
}

/// The issuer: its keys (the newest signs), and the deny-list.
pub struct Issuer {
    url: String,
    /// Where the signing keys are kept across restarts; `None` keeps them in memory only.
    key_file: Option<PathBuf>,
    keys: Mutex<Vec<Key>>,
    denied: Mutex<DenyList>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> =
            self.keys.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|k| k.kid.clone()).collect();
        f.debug_struct("Issuer").field("url", &self.url).field("kids", &kids).finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes
}

fn new_key() -> Key {
    key_from_seed(&random::<32>())
}

fn key_from_seed(seed: &[u8; 32]) -> Key {
    let signing = SigningKey::from_bytes(seed);
    // The kid is a digest of the public key, so it names the key everywhere.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(signing.verifying_key().as_bytes());
    Key { kid: B64.encode(&digest[..12]), signing }
}

/// The key file: each key's private seed, oldest first. Written 0600.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyFileEntry {
    kid: String,
    seed: String,
}

/// The issuer's key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("issuer key file `{path}`: {reason}")]
pub struct KeyFileError {
    /// The key file.
    pub path: PathBuf,
    /// What went wrong (never key material).
    pub reason: String,
}

impl Issuer {
    /// An issuer named `url` with one fresh key.
    pub fn new(url: impl Into<String>) -> Issuer {
        Issuer {
            url: url.into(),
            key_file: None,
            keys: Mutex::new(vec![new_key()]),
            denied: Mutex::new(DenyList::default()),
        }
    }

    /// An issuer whose keys live in `key_file`: read if it exists, created
    /// with one fresh key (mode 0600) if it does not. Rotation and
    /// retirement rewrite it, so the JWKS outlives the process.
    pub fn open(url: impl Into<String>, key_file: &Path) -> Result<Issuer, KeyFileError> {
        let fail = |reason: String| KeyFileError { path: key_file.to_owned(), reason };
        // Ambient authority: the operator's key file.
        let keys = match std::fs::read(key_file) {
            Ok(bytes) => {
                let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not a key file: {e}")))?;
                let mut keys = Vec::new();
                for entry in file.keys {
                    let seed: [u8; 32] = B64
                        .decode(&entry.seed)
                        .ok()
                        .and_then(|seed| seed.try_into().ok())
                        .ok_or_else(|| fail(format!("key `{}` is not a 32-byte Ed25519 seed", entry.kid)))?;
                    keys.push(key_from_seed(&seed));
                }
                if keys.is_empty() {
                    return Err(fail("it holds no keys".into()));
                }
                keys
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // First start: the new key file is created exclusively, so
                // runtimes starting at once agree on one set of keys (the
                // loser adopts the winner's instead of signing with a key
                // the file, and so the JWKS, does not hold).
                let url = url.into();
                let issuer = Issuer {
                    url: url.clone(),
                    key_file: Some(key_file.to_owned()),
                    keys: Mutex::new(vec![new_key()]),
                    denied: Mutex::new(DenyList::default()),
                };
                return match issuer.write_keys(true) {
                    Ok(()) => Ok(issuer),
                    Err(WriteError::Exists) => Issuer::open(url, key_file),
                    Err(WriteError::Failed(reason)) => Err(fail(reason)),
                };
            }
            Err(error) => return Err(fail(error.to_string())),
        };
        Ok(Issuer {
            url: url.into(),
            key_file: Some(key_file.to_owned()),
            keys: Mutex::new(keys),
            denied: Mutex::new(DenyList::default()),
        })
    }

    fn save(&self) -> Result<(), KeyFileError> {
        let Some(path) = &self.key_file else { return Ok(()) };
        self.write_keys(false).map_err(|error| KeyFileError {
            path: path.clone(),
            reason: match error {
                WriteError::Exists => "it exists".into(),
                WriteError::Failed(reason) => reason,
            },
        })
    }

    /// Writes the keys whole ([`write_whole`]): over the old file, or, when
    /// `create` is set, only if no key file exists yet.
    fn write_keys(&self, create: bool) -> Result<(), WriteError> {
        let Some(path) = &self.key_file else { return Ok(()) };
        let file = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            KeyFile {
                keys: keys
                    .iter()
                    .map(|k| KeyFileEntry { kid: k.kid.clone(), seed: B64.encode(k.signing.to_bytes()) })
                    .collect(),
            }
        };
        let bytes = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&file).expect("key file serializes"));
        let placing = if create { Placing::Create } else { Placing::Replace };
        match write_whole(path, &bytes, placing) {
            Ok(()) => Ok(()),
            Err(error) if create && error.kind() == std::io::ErrorKind::AlreadyExists => Err(WriteError::Exists),
            Err(error) => Err(WriteError::Failed(error.to_string())),
        }
    }

    /// The issuer URL (`iss`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a new signing key; older keys keep verifying the tokens they
    /// signed. Returns the new `kid`.
    pub fn rotate(&self) -> Result<String, KeyFileError> {
        let key = new_key();
        let kid = key.kid.clone();
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).push(key);
        self.save()?;
        Ok(kid)
    }

    /// Drops every key but the newest. Tokens signed by the dropped keys no
    /// longer verify; do it once they have expired.
    pub fn retire_old_keys(&self) -> Result<(), KeyFileError> {
        {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            let newest = keys.len() - 1;
            keys.drain(..newest);
        }
        self.save()
    }

    /// Mints a token. `exp` is the earlier of now + `max_ttl` and `not_after`.
    pub fn mint(&self, request: &MintRequest) -> MintedToken {
        let iat = now();
        let not_after = request.not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let exp = (iat + request.max_ttl.as_secs()).min(not_after);
        let claims = AccessClaims {
            iss: self.url.clone(),
            sub: request.subject.clone(),
            aud: request.audience.clone(),
            iat,
            nbf: iat,
            exp,
            jti: B64.encode(random::<16>()),
            scope: request.scopes.join(" "),
            act: request.act.clone(),
            client_id: request.client_id.clone(),
        };
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let key = keys.last().expect("an issuer always has a key");
        let header = Header { alg: "EdDSA".into(), typ: "at+jwt".into(), kid: key.kid.clone() };
        let signing_input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).expect("header serializes")),
            B64.encode(serde_json::to_vec(&claims).expect("claims serialize"))
        );
        let signature = key.signing.sign(signing_input.as_bytes());
        let token = format!("{signing_input}.{}", B64.encode(signature.to_bytes()));
        MintedToken { token: SecretString::from(token), jti: claims.jti, exp, kid: key.kid.clone() }
    }

    /// Verifies a token for `audience` as the runtime sees it: signed by one
    /// of its keys, unexpired, and not deny-listed.
    pub fn verify(&self, token: &SecretString, audience: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_live(token, Some(audience))
    }

    /// What an RFC 7662 introspection endpoint answers from: the token's
    /// claims when it is one of this issuer's, signed by a key it still
    /// holds, unexpired and not deny-listed (for any audience); an error
    /// otherwise, which the endpoint answers as `"active": false`.
    pub fn introspect(&self, token: &SecretString) -> Result<AccessClaims, VerifyError> {
        self.verify_live(token, None)
    }

    /// Signed by one of this issuer's keys, unexpired, for `audience` if
    /// one is given, and not deny-listed.
    fn verify_live(&self, token: &SecretString, audience: Option<&str>) -> Result<AccessClaims, VerifyError> {
        let claims = verify_signed(token, &self.url, audience, |kid| {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().find(|k| k.kid == kid).map(|k| k.signing.verifying_key())
        })?;
        if self.is_revoked(&claims.jti) {
            return Err(VerifyError::Revoked(claims.jti));
        }
        Ok(claims)
    }

    /// True while `jti` is deny-listed (revoked before its expiry).
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).until.get(jti).is_some_and(|until| *until > now())
    }

    /// Deny-lists a token id until its expiry (teardown calls this).
    pub fn revoke(&self, jti: &str, exp: u64) {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).insert(jti, exp, now());
    }

    /// The public keys as a JWKS (RFC 7517, OKP/Ed25519 per RFC 8037).
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|key| {
                let public: VerifyingKey = key.signing.verifying_key();
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": B64.encode(public.as_bytes()),
                    "kid": key.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Verifies a token the way a downstream service does with only the
/// issuer's published JWKS: signature by a listed key, `typ`, `iss`, `aud`
/// and lifetime. A service that must also refuse tokens revoked before their
/// expiry asks the runtime ([`Issuer::is_revoked`], or `Runtime::verify_token`).
pub fn verify_with_jwks(
    jwks: &serde_json::Value,
    token: &SecretString,
    issuer: &str,
    audience: &str,
) -> Result<AccessClaims, VerifyError> {
    verify_signed(token, issuer, Some(audience), |kid| {
        let key =
            jwks["keys"].as_array()?.iter().find(|k| k["kid"] == kid && k["kty"] == "OKP" && k["crv"] == "Ed25519")?;
        let x: [u8; 32] = B64.decode(key["x"].as_str()?).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&x).ok()
    })
}

fn verify_signed(
    token: &SecretString,
    issuer: &str,
    audience: Option<&str>,
    key: impl FnOnce(&str) -> Option<VerifyingKey>,
) -> Result<AccessClaims, VerifyError> {
    let token = token.expose_secret();
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let decode = |part: &str| B64.decode(part).map_err(|_| VerifyError::Malformed);
    let header: Header = serde_json::from_slice(&decode(header)?).map_err(|_| VerifyError::Malformed)?;
    if header.alg != "EdDSA" || header.typ != "at+jwt" {
        return Err(VerifyError::Header);
    }
    let verifying = key(&header.kid).ok_or(VerifyError::Header)?;
    let signature: [u8; 64] = decode(signature)?.try_into().map_err(|_| VerifyError::Malformed)?;
    let signing_input = &token[..token.rfind('.').expect("three parts")];
    verifying
        .verify(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| VerifyError::Signature)?;
    let claims: AccessClaims = serde_json::from_slice(&decode(claims)?).map_err(|_| VerifyError::Malformed)?;
    if claims.iss != issuer || audience.is_some_and(|audience| claims.aud != audience) {
        return Err(VerifyError::Audience);
    }
    let now = now();
    if now >= claims.exp || now < claims.nbf {
        return Err(VerifyError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ttl: Duration, deadline: Duration) -> MintRequest {
        MintRequest {
            subject: "spiffe://toolcell.local/tool/gh/task/t1".into(),
            act: Some(Actor::new("alice")),
            client_id: "gh".into(),
            audience: "https://api.example.com".into(),
            scopes: vec!["repo:read".into(), "issues:write".into()],
            max_ttl: ttl,
            not_after: SystemTime::now() + deadline,
        }
    }

    #[test]
    fn minted_tokens_verify_with_rfc9068_claims() {
        let issuer = Issuer::new("https://toolcell.local");
        let minted = issuer.mint(&request(Duration::from_secs(300), Duration::from_secs(600)));
        let claims = issuer.verify(&minted.token, "https://api.example.com").unwrap();
        assert_eq!(claims.sub, "spiffe://toolcell.local/tool/gh/task/t1");
        assert_eq!(claims.act.unwrap().sub, "alice");
        assert_eq!(claims.scope, "repo:read issues:write");
        assert_eq!(claims.jti, minted.jti);
        assert!(claims.exp <= claims.iat + 300);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(minted.token.expose_secret().split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], minted.kid.as_str());
    }

    #[test]
    fn expiry_never_passes_the_deadline() {
        let issuer = Issuer::new("https://toolcell.local");
        let minted = issuer.mint(&request(Duration::from_secs(3600), Duration::from_secs(30)));
        assert!(minted.exp <= now() + 30);
    }

    #[test]
    fn tampering_other_audiences_and_revocation_are_refused() {
        let issuer = Issuer::new("https://toolcell.local");
        let minted = issuer.mint(&request(Duration::from_secs(300), Duration::from_secs(600)));
        assert_eq!(issuer.verify(&minted.token, "https://other.example.com"), Err(VerifyError::Audience));
        let token = minted.token.expose_secret();
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_claims = B64.encode(br#"{"iss":"https://toolcell.local","scope":"admin"}"#);
        let forged = SecretString::from(format!("{head}.{forged_claims}.{signature}"));
        assert_eq!(issuer.verify(&forged, "https://api.example.com"), Err(VerifyError::Signature));
        assert_eq!(issuer.verify(&SecretString::from("a.b"), "x"), Err(VerifyError::Malformed));
        issuer.revoke(&minted.jti, minted.exp);
        assert_eq!(
            issuer.verify(&minted.token, "https://api.example.com"),
            Err(VerifyError::Revoked(minted.jti.clone()))
        );
        // Another issuer's token does not verify here.
        let stranger =
            Issuer::new("https://toolcell.local").mint(&request(Duration::from_secs(60), Duration::from_secs(60)));
        assert_eq!(issuer.verify(&stranger.token, "https://api.example.com"), Err(VerifyError::Header));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_keys_retire() {
        let issuer = Issuer::new("https://toolcell.local");
        let old = issuer.mint(&request(Duration::from_secs(300), Duration::from_secs(600)));
        let kid = issuer.rotate().unwrap();
        let new = issuer.mint(&request(Duration::from_secs(300), Duration::from_secs(600)));
        assert_eq!(new.kid, kid);
        assert_ne!(old.kid, new.kid);
        assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(issuer.verify(&old.token, "https://api.example.com").is_ok());
        issuer.retire_old_keys().unwrap();
        assert_eq!(issuer.verify(&old.token, "https://api.example.com"), Err(VerifyError::Header));
        assert!(issuer.verify(&new.token, "https://api.example.com").is_ok());
        assert_eq!(issuer.jwks()["keys"][0]["kid"], kid.as_str());
    }

    #[test]
    fn keys_persist_across_restarts_and_downstream_verifies_with_the_jwks_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = Issuer::open("https://toolcell.local", &path).unwrap();
        let minted = first.mint(&request(Duration::from_secs(300), Duration::from_secs(600)));
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777,
            0o600
        );
        drop(first);
        let again = Issuer::open("https://toolcell.local", &path).unwrap();
        assert!(again.verify(&minted.token, "https://api.example.com").is_ok());
        let jwks = again.jwks();
        let claims =
            verify_with_jwks(&jwks, &minted.token, "https://toolcell.local", "https://api.example.com").unwrap();
        assert_eq!(claims.jti, minted.jti);
        assert_eq!(
            verify_with_jwks(&jwks, &minted.token, "https://other.issuer", "https://api.example.com"),
            Err(VerifyError::Audience)
        );
        let kid = again.rotate().unwrap();
        let reopened = Issuer::open("https://toolcell.local", &path).unwrap();
        assert_eq!(reopened.jwks()["keys"].as_array().unwrap().len(), 2);
        reopened.retire_old_keys().unwrap();
        let retired = Issuer::open("https://toolcell.local", &path).unwrap();
        assert_eq!(retired.jwks()["keys"][0]["kid"], kid.as_str());
        assert_eq!(retired.verify(&minted.token, "https://api.example.com"), Err(VerifyError::Header));
        std::fs::write(&path, "{\"keys\":[{\"kid\":\"x\",\"seed\":\"c2hvcnQ\"}]}").unwrap();
        let error = Issuer::open("https://toolcell.local", &path).unwrap_err();
        assert!(error.to_string().contains("not a 32-byte Ed25519 seed"), "{error}");
    }

    #[test]
    fn the_deny_list_forgets_only_what_has_expired() {
        let mut list = DenyList::default();
        list.insert("old", 10, 5);
        list.insert("live", 100, 5);
        assert_eq!(list.until.len(), 2);
        // At time 50 the next insert drops `old` and keeps `live`.
        list.insert("new", 200, 50);
        assert!(!list.until.contains_key("old"));
        assert!(list.until.contains_key("live") && list.until.contains_key("new"));
        // Already expired: nothing to remember.
        list.insert("stale", 40, 50);
        assert!(!list.until.contains_key("stale"));
        // Revoked again with a later expiry: the earlier heap entry does not drop it.
        list.insert("live", 300, 50);
        list.insert("x", 400, 150);
        assert_eq!(list.until.get("live"), Some(&300));
    }

    #[test]
    fn token_values_stay_out_of_debug_output() {
        let issuer = Issuer::new("https://toolcell.local");
        let minted = issuer.mint(&request(Duration::from_secs(300), Duration::from_secs(600)));
        let value = minted.token.expose_secret().to_owned();
        assert!(!format!("{minted:?}").contains(&value));
        assert!(!format!("{issuer:?}").contains(&value));
    }
}

#[cfg(test)]
mod key_file_tests {
    use super::*;

    #[test]
    fn runtimes_starting_at_once_agree_on_one_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/issuer-keys.json");
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Issuer::open("https://t", &path).map(|issuer| issuer.jwks()))
            })
            .collect();
        let jwks: Vec<serde_json::Value> = opened.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        assert!(jwks.iter().all(|j| *j == jwks[0]), "runtimes signing with different keys: {jwks:?}");
        let on_disk = Issuer::open("https://t", &path).unwrap().jwks();
        assert_eq!(on_disk, jwks[0], "a runtime signs with a key its file does not hold");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files were left: {leftovers:?}");
    }
}
