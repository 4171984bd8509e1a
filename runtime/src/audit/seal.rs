//! Checkpoint signatures: the audit trail's own Ed25519 key (never the
//! issuer's, so whoever holds one cannot vouch for the other), and the exact
//! bytes a checkpoint signs.
//!
//! A checkpoint signs its sequence number, the SHA-256 of the line before it
//! and its time. Since every line carries the hash of the line before it, a
//! valid checkpoint vouches for every line up to it.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::key_file::{Placing, write_whole};

/// How a public key is written: in checkpoints, by `toolcell audit key`, and
/// in the files `toolcell audit verify --key` reads.
const PUBLIC_PREFIX: &str = "ed25519:";

/// The audit trail's signing key.
pub struct SealKey {
    signing: SigningKey,
    public: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("public", &self.public).finish_non_exhaustive()
    }
}

/// The key file: a JSON object holding the 32-byte seed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    ed25519_seed: String,
}

/// The signing key could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("audit signing key `{path}`: {reason}")]
pub struct SealKeyError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong (never the key).
    pub reason: String,
}

impl SealKey {
    /// Reads the key file, or makes one (mode 0600) where none exists yet.
    pub fn open_or_create(path: &Path) -> Result<SealKey, SealKeyError> {
        let error = |reason: String| SealKeyError { path: path.to_owned(), reason };
        // Ambient authority: the operator's key file.
        match std::fs::read(path) {
            Ok(bytes) => SealKey::from_file_bytes(&bytes).map_err(error),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                getrandom::fill(seed.as_mut()).map_err(|e| error(format!("no randomness: {e}")))?;
                let text = zeroize::Zeroizing::new(
                    serde_json::to_string(&KeyFile { ed25519_seed: B64.encode(seed.as_ref()) })
                        .expect("key file serializes")
                        + "\n",
                );
                // Written whole: a runtime starting at the same moment
                // never reads a half-written key file.
                let placed = write_whole(path, text.as_bytes(), Placing::Create);
                match placed {
                    Ok(()) => Ok(SealKey::from_seed(&seed)),
                    // Another runtime made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => SealKey::open_or_create(path),
                    Err(e) => Err(error(e.to_string())),
                }
            }
            Err(e) => Err(error(e.to_string())),
        }
    }

    fn from_file_bytes(bytes: &[u8]) -> Result<SealKey, String> {
        let file: KeyFile = serde_json::from_slice(bytes)
            .map_err(|_| "not a key file (a JSON object with `ed25519_seed`, as toolcell writes it)".to_owned())?;
        let seed =
            zeroize::Zeroizing::new(B64.decode(&file.ed25519_seed).map_err(|_| "`ed25519_seed` is not base64url")?);
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| "`ed25519_seed` is not 32 bytes".to_owned())?;
        Ok(SealKey::from_seed(seed))
    }

    fn from_seed(seed: &[u8; 32]) -> SealKey {
        let signing = SigningKey::from_bytes(seed);
        let public = format!("{PUBLIC_PREFIX}{}", B64.encode(signing.verifying_key().as_bytes()));
        SealKey { signing, public }
    }

    /// The public key, as `ed25519:<base64url>`.
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The signature of a checkpoint, base64url.
    pub(crate) fn sign(&self, seq: u64, prev: &str, time: &str) -> String {
        B64.encode(self.signing.sign(&signed_bytes(seq, prev, time, &self.public)).to_bytes())
    }
}

/// A public key that checks checkpoint signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealPublicKey {
    key: VerifyingKey,
    text: String,
}

impl SealPublicKey {
    /// Parses `ed25519:<base64url>` (what `toolcell audit key` prints).
    pub fn parse(text: &str) -> Result<SealPublicKey, String> {
        let text = text.trim();
        let encoded = text.strip_prefix(PUBLIC_PREFIX).ok_or("a public key starts with `ed25519:`")?;
        let bytes = B64.decode(encoded).map_err(|_| "the public key is not base64url")?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| "the public key is not 32 bytes")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key")?;
        Ok(SealPublicKey { key, text: text.to_owned() })
    }

    /// Reads a key for `verify`: a public key file, or the signing key file
    /// itself (its public half is used).
    pub fn read(path: &Path) -> Result<SealPublicKey, SealKeyError> {
        let error = |reason: String| SealKeyError { path: path.to_owned(), reason };
        let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        if let Ok(key) = SealKey::from_file_bytes(&bytes) {
            return Ok(key.public_key());
        }
        SealPublicKey::parse(&String::from_utf8_lossy(&bytes)).map_err(|reason| {
            error(format!("{reason}; give the public key `toolcell audit key` prints, or the signing key file"))
        })
    }

    /// As written: `ed25519:<base64url>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `signature` is this key's over the checkpoint.
    pub(crate) fn verifies(&self, seq: u64, prev: &str, time: &str, signature: &str) -> bool {
        let Ok(bytes) = B64.decode(signature) else { return false };
        let Ok(signature) = Signature::from_slice(&bytes) else { return false };
        self.key.verify(&signed_bytes(seq, prev, time, &self.text), &signature).is_ok()
    }
}

impl SealKey {
    /// The public half.
    pub fn public_key(&self) -> SealPublicKey {
        SealPublicKey { key: self.signing.verifying_key(), text: self.public.clone() }
    }
}

/// What a checkpoint signs: a fixed label, so the signature means nothing
/// anywhere else, then its fields one per line.
fn signed_bytes(seq: u64, prev: &str, time: &str, key: &str) -> Vec<u8> {
    format!("toolcell audit checkpoint v1\nseq {seq}\nprev {prev}\ntime {time}\nkey {key}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_signs_what_its_public_half_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit-key.json");
        let key = SealKey::open_or_create(&path).unwrap();
        let again = SealKey::open_or_create(&path).unwrap();
        assert_eq!(key.public(), again.public(), "the file is kept and read back");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        let signature = key.sign(7, "ab", "2026-12-01T00:00:00Z");
        let public = SealPublicKey::parse(key.public()).unwrap();
        assert!(public.verifies(7, "ab", "2026-12-01T00:00:00Z", &signature));
        assert!(!public.verifies(8, "ab", "2026-12-01T00:00:00Z", &signature), "another seq");
        assert!(!public.verifies(7, "ac", "2026-12-01T00:00:00Z", &signature), "another line before it");
        assert!(!public.verifies(7, "ab", "2026-12-01T00:00:01Z", &signature), "another time");
        assert!(!public.verifies(7, "ab", "2026-12-01T00:00:00Z", "AAAA"), "garbage");
        // `verify --key` takes the key file itself, or the public key.
        assert_eq!(SealPublicKey::read(&path).unwrap(), public);
        let public_file = dir.path().join("audit.pub");
        std::fs::write(&public_file, format!("{}\n", key.public())).unwrap();
        assert_eq!(SealPublicKey::read(&public_file).unwrap(), public);
    }

    #[test]
    fn runtimes_starting_together_make_one_key_and_all_read_it_whole() {
        // Three `toolcell run` processes on one state directory once met a
        // key file created but not yet written, and one refused to start.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("audit-key-{round}.json"));
            let start = std::sync::Barrier::new(8);
            let keys: Vec<String> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            SealKey::open_or_create(&path).map(|key| key.public().to_owned())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]), "round {round}: {keys:?}");
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left.len(), 1, "no temporary file is left behind: {left:?}");
        }
    }

    #[test]
    fn the_seed_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-key.json");
        let key = SealKey::open_or_create(&path).unwrap();
        let file: KeyFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(!format!("{key:?}").contains(&file.ed25519_seed));
        std::fs::write(&path, "{\"ed25519_seed\":\"short\"}").unwrap();
        let error = SealKey::open_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("not 32 bytes") || error.contains("base64"), "{error}");
        assert!(!error.contains("short"), "{error}");
    }
}
