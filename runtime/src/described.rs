//! What tools said of themselves, kept beside the precompile cache, so a
//! restart does not instantiate every tool again only to ask its `describe`.
//!
//! `describe` runs in an instance granted nothing (no files, no network, no
//! environment, no credentials), so what it answers is a function of the
//! component's code alone: an entry is keyed by the component's sha256,
//! which the loader has just checked against the manifest's pin. Asking
//! cost `toolcell serve` an instance per tool at every start, and the pages
//! those instances touched stayed resident (the Python example's interpreter
//! image most of all).
//!
//! Entries live in the cache directory and are trusted like its artifacts
//! (owned by the runtime's user, writable by nobody else): whoever could
//! forge an entry could forge native code there anyway. An entry that is
//! missing, untrusted or unreadable only costs asking the tool again;
//! failing to write one costs the same next time.

use std::path::{Path, PathBuf};

use crate::error::Hex;

/// A tool's own description, as its `describe` returned it (the schemas
/// as the JSON text the tool wrote).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Described {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) input_schema: String,
    pub(crate) output_schema: Option<String>,
}

/// The descriptions kept under one directory.
#[derive(Clone, Debug)]
pub(crate) struct DescribedIndex {
    dir: PathBuf,
}

impl DescribedIndex {
    pub(crate) fn new(dir: &Path) -> DescribedIndex {
        DescribedIndex { dir: dir.to_owned() }
    }

    fn entry(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("described-{}.json", Hex(sha256)))
    }

    /// What the component with this digest said when it was last asked.
    pub(crate) fn lookup(&self, sha256: &[u8; 32]) -> Option<Described> {
        serde_json::from_slice(&crate::engine::read_cache_entry(&self.entry(sha256))?).ok()
    }

    /// Keeps what the component with this digest said.
    pub(crate) fn record(&self, sha256: &[u8; 32], described: &Described) {
        let entry = self.entry(sha256);
        let written = serde_json::to_vec(described)
            .map_err(std::io::Error::other)
            .and_then(|text| crate::engine::write_cache_entry(&entry, &text));
        if let Err(error) = written {
            tracing::debug!(path = %entry.display(), "cannot keep a tool's description: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described() -> Described {
        Described {
            name: "word-count".into(),
            description: "counts words".into(),
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
        }
    }

    #[test]
    fn a_description_is_kept_per_digest_and_one_anyone_else_could_write_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let index = DescribedIndex::new(dir.path());
        let (one, other) = ([1u8; 32], [2u8; 32]);
        assert_eq!(index.lookup(&one), None);
        index.record(&one, &described());
        assert_eq!(index.lookup(&one), Some(described()));
        assert_eq!(index.lookup(&other), None, "another component's digest has no entry");

        use std::os::unix::fs::PermissionsExt;
        let entry = index.entry(&one);
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert_eq!(index.lookup(&one), None, "a group-writable entry is not trusted");
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&entry, b"{\"name\":").unwrap();
        assert_eq!(index.lookup(&one), None, "a damaged entry is asked again, not half read");
    }
}
