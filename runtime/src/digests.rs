//! Known digests of component files, kept beside the precompile cache, so a
//! restart does not read and hash again a component it has hashed before.
//!
//! Reading and hashing were most of `toolcell serve`'s start-up with the
//! example tools (a JavaScript and a Python component of tens of MB each):
//! the sha256 names the precompiled artifact and checks the manifest's pin,
//! so it is needed on every load, but not its recomputation.
//!
//! An entry is keyed by the file's device and inode and holds its size,
//! modification time and status-change time (`ctime`) at hashing. It is used
//! only when all of them still match. Any write to the file, or a rename or
//! chmod, sets its `ctime` to the current time, and no user can set `ctime`
//! back (only the system clock can), so a matching entry means the bytes
//! hashed then are the bytes there now. One gap remains: file timestamps
//! tick coarsely (a few ms on many filesystems), so a write in the same tick
//! as an earlier one can leave both stamps unchanged. An entry is therefore
//! only written for a file whose stamps are [`SETTLED`] old: a later write
//! then lands in a later tick and changes them.
//!
//! Entries live in the cache directory and are trusted like its artifacts:
//! only files owned by the runtime's user and writable by nobody else count
//! (whoever could forge an entry could forge native code there anyway).
//! An entry that is missing, stale, untrusted or unreadable only costs a
//! read and a hash; writing one that fails costs the same next time.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::Hex;

/// How old a file's stamps must be before its digest is kept.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// The digest entries under one directory.
#[derive(Clone, Debug)]
pub(crate) struct DigestIndex {
    dir: PathBuf,
}

/// What identifies one version of a file's contents.
#[derive(Debug)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp { size: meta.size(), mtime: (meta.mtime(), meta.mtime_nsec()), ctime: (meta.ctime(), meta.ctime_nsec()) }
    }

    /// The stamp as an entry writes it, before the digest.
    fn text(&self) -> String {
        format!("v1 {} {}.{:09} {}.{:09}", self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1)
    }
}

impl DigestIndex {
    pub(crate) fn new(dir: &Path) -> DigestIndex {
        DigestIndex { dir: dir.to_owned() }
    }

    fn entry(&self, meta: &Metadata) -> PathBuf {
        self.dir.join(format!("digest-{:x}-{:x}", meta.dev(), meta.ino()))
    }

    /// The digest recorded for the file at `path`, if its stamps still match.
    pub(crate) fn lookup(&self, path: &Path) -> Option<[u8; 32]> {
        // Ambient authority: the component file the manifest names.
        let meta = std::fs::metadata(path).ok()?;
        let entry = self.entry(&meta);
        let text = String::from_utf8(crate::engine::read_cache_entry(&entry)?).ok()?;
        let (recorded, hex) = text.trim_end().rsplit_once(' ')?;
        if recorded != Stamp::of(&meta).text() {
            return None;
        }
        crate::manifest::parse_sha256(hex).ok()
    }

    /// Records `sha256` for the file whose metadata (taken before its bytes
    /// were read) is `meta`, if its stamps have settled.
    pub(crate) fn record(&self, meta: &Metadata, sha256: &[u8; 32]) {
        let settled = |stamp: std::io::Result<SystemTime>| {
            stamp.ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= SETTLED)
        };
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().clamp(0, 999_999_999) as u32);
        if !settled(meta.modified()) || !settled(Ok(changed)) {
            return;
        }
        let entry = self.entry(meta);
        let line = format!("{} {}\n", Stamp::of(meta).text(), Hex(sha256));
        let written =
            std::fs::create_dir_all(&self.dir).and_then(|()| crate::engine::write_cache_entry(&entry, line.as_bytes()));
        if let Err(error) = written {
            tracing::debug!(path = %entry.display(), "cannot keep a component digest: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn digest(bytes: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(bytes).into()
    }

    /// A file whose stamps are `age` old.
    fn aged(path: &Path, bytes: &[u8], age: Duration) -> Metadata {
        std::fs::write(path, bytes).unwrap();
        let then = SystemTime::now() - age;
        std::fs::File::options().write(true).open(path).unwrap().set_modified(then).unwrap();
        std::fs::metadata(path).unwrap()
    }

    #[test]
    fn a_settled_file_is_hashed_once_and_any_change_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let index = DigestIndex::new(&dir.path().join("cache"));
        let file = dir.path().join("tool.wasm");
        let meta = aged(&file, b"first", Duration::from_secs(60));
        // `ctime` is now (the write and the utime just set it): not settled.
        index.record(&meta, &digest(b"first"));
        assert_eq!(index.lookup(&file), None, "a file changed just now is not trusted to its stamps");

        std::thread::sleep(SETTLED + Duration::from_millis(100));
        let meta = std::fs::metadata(&file).unwrap();
        index.record(&meta, &digest(b"first"));
        assert_eq!(index.lookup(&file), Some(digest(b"first")));

        // Rewritten with the same size, and its mtime put back: the ctime moved.
        let mtime = meta.modified().unwrap();
        std::fs::write(&file, b"fakes").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
        assert_eq!(index.lookup(&file), None, "a rewrite with the old size and mtime still shows");
        // A file renamed over it is another inode: its own entry, none yet.
        let other = dir.path().join("other.wasm");
        std::fs::write(&other, b"first").unwrap();
        std::fs::rename(&other, &file).unwrap();
        assert_eq!(index.lookup(&file), None);
    }

    #[test]
    fn an_entry_anyone_else_could_write_or_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let index = DigestIndex::new(&cache);
        let file = dir.path().join("tool.wasm");
        aged(&file, b"bytes", Duration::from_secs(60));
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        let meta = std::fs::metadata(&file).unwrap();
        index.record(&meta, &digest(b"bytes"));
        let entry = index.entry(&meta);
        assert_eq!(index.lookup(&file), Some(digest(b"bytes")));

        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(index.lookup(&file), None, "a world-writable entry is not trusted");
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = std::fs::read_to_string(&entry).unwrap();
        std::fs::write(&entry, text.replace(&Hex(&digest(b"bytes")).to_string(), "zz")).unwrap();
        assert_eq!(index.lookup(&file), None, "a malformed digest is not used");
    }
}
