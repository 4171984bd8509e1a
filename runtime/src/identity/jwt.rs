//! JWS compact tokens from an authorization server: the header, the
//! algorithm allowlist, public keys from a JWKS (RFC 7517), and signature
//! verification with `ring` (the crypto rustls already links).
//!
//! Nothing here keeps or prints a token: errors name the header's `alg`,
//! `typ` and `kid`, never the token or its signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use super::TokenRefusal;

/// The JWS algorithms toolcell can verify. `none` and the HMAC family are
/// never among them: a resource server holds no shared secret with the
/// authorization server.
pub const SUPPORTED_ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// The header fields toolcell reads.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    /// Critical extensions: toolcell understands none, so any is refused.
    #[serde(default)]
    pub(crate) crit: Option<serde_json::Value>,
}

/// A token split into its parts, the signature not yet checked.
pub(crate) struct Parsed<'a> {
    pub(crate) header: Header,
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Whether `token` has the shape of a JWS compact token (three base64url
/// parts, the last possibly empty, as an unsigned `alg: none` token has it,
/// so that one is refused for its algorithm); anything else is opaque.
pub(crate) fn looks_like_jws(token: &str) -> bool {
    let mut parts = token.split('.');
    let base64url = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let filled = |part: Option<&str>| part.is_some_and(|p| !p.is_empty() && base64url(p));
    filled(parts.next()) && filled(parts.next()) && parts.next().is_some_and(base64url) && parts.next().is_none()
}

/// Splits and decodes `token`; nothing is trusted yet.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, TokenRefusal> {
    let malformed = |what: &str| TokenRefusal::Malformed(what.to_owned());
    let (signing_input, signature) = token.rsplit_once('.').ok_or_else(|| malformed("not three parts"))?;
    let (header, claims) = signing_input.split_once('.').ok_or_else(|| malformed("not three parts"))?;
    let header = B64.decode(header).map_err(|_| malformed("the header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| malformed("the header is not a JWS header"))?;
    let claims = B64.decode(claims).map_err(|_| malformed("the claims are not base64url"))?;
    let claims = serde_json::from_slice(&claims).map_err(|_| malformed("the claims are not a JSON object"))?;
    let signature = B64.decode(signature).map_err(|_| malformed("the signature is not base64url"))?;
    Ok(Parsed { header, claims, signing_input, signature })
}

/// One public key of the authorization server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`) on P-256 or P-384.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

/// A key as the JWKS lists it.
#[derive(Clone, Debug)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The one algorithm the key is for, where the JWKS says so.
    pub(crate) alg: Option<String>,
    pub(crate) key: PublicKey,
}

impl Jwk {
    /// Reads one JWK; `None` for keys toolcell cannot use for signatures
    /// (encryption keys, unknown types), which are skipped, not fatal.
    pub(crate) fn parse(value: &serde_json::Value) -> Option<Jwk> {
        let field = |name: &str| value.get(name).and_then(|v| v.as_str());
        let bytes = |name: &str| field(name).and_then(|v| B64.decode(v).ok());
        if field("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let key = match (field("kty")?, field("crv")) {
            ("RSA", _) => PublicKey::Rsa { n: bytes("n")?, e: bytes("e")? },
            ("EC", Some(crv)) => {
                let (curve, size) = match crv {
                    "P-256" => (Curve::P256, 32),
                    "P-384" => (Curve::P384, 48),
                    _ => return None,
                };
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != size || y.len() != size {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::Ec { curve, point }
            }
            ("OKP", Some("Ed25519")) => PublicKey::Ed25519(bytes("x")?),
            _ => return None,
        };
        Some(Jwk { kid: field("kid").map(str::to_owned), alg: field("alg").map(str::to_owned), key })
    }

    /// Whether this key can verify `alg` at all.
    pub(crate) fn fits(&self, alg: &str) -> bool {
        if self.alg.as_deref().is_some_and(|own| own != alg) {
            return false;
        }
        match (&self.key, alg) {
            (PublicKey::Rsa { .. }, a) => a.starts_with("RS") || a.starts_with("PS"),
            (PublicKey::Ec { curve: Curve::P256, .. }, "ES256") => true,
            (PublicKey::Ec { curve: Curve::P384, .. }, "ES384") => true,
            (PublicKey::Ed25519(_), "EdDSA") => true,
            _ => false,
        }
    }
}

impl Parsed<'_> {
    /// Checks the signature with `key`, which must fit the header's `alg`.
    pub(crate) fn verify(&self, key: &Jwk) -> Result<(), TokenRefusal> {
        let message = self.signing_input.as_bytes();
        let signature = &self.signature;
        let verified = match (&key.key, self.header.alg.as_str()) {
            (PublicKey::Rsa { n, e }, alg) => {
                let parameters: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(TokenRefusal::Signature),
                };
                RsaPublicKeyComponents { n, e }.verify(parameters, message, signature).is_ok()
            }
            (PublicKey::Ec { curve: Curve::P256, point }, "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
            (PublicKey::Ec { curve: Curve::P384, point }, "ES384") => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point).verify(message, signature).is_ok()
            }
            (PublicKey::Ed25519(x), "EdDSA") => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature).is_ok()
            }
            _ => false,
        };
        if verified { Ok(()) } else { Err(TokenRefusal::Signature) }
    }
}
