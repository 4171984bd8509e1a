//! Scratch directories. Each runtime keeps one directory of its own under the
//! scratch root (`toolcell-<id>/`, mode 0700, holding a locked `.lock` file);
//! each invocation granted scratch space gets a fresh 0700 directory inside
//! it, removed at teardown. A runtime killed before its teardown leaves its
//! directory behind with its lock released; the next runtime to start on the
//! same root removes it. A directory whose lock is held belongs to a live
//! runtime and is left alone.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::credentials::journal::{ABANDONED_AFTER, older_than};

/// This runtime's directory under the scratch root.
#[derive(Debug)]
pub(crate) struct ScratchRoot {
    dir: PathBuf,
    /// Held for the runtime's life: the lock says the directory is in use.
    _lock: File,
}

const PREFIX: &str = "toolcell-";

fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// True when the directory's `.lock` can be taken: its runtime is gone. The
/// lock is released again when the returned handle drops.
fn abandoned(dir: &Path) -> bool {
    let hidden = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
    // A directory still being made gets its locked `.lock` right after it
    // is created: a hidden one counts as abandoned only once it has some age.
    if hidden && !File::open(dir).is_ok_and(|d| older_than(&d, ABANDONED_AFTER)) {
        return false;
    }
    match File::open(dir.join(".lock")) {
        Ok(lock) => lock.try_lock().is_ok(),
        // No lock file: a hidden directory never finished being made; a
        // visible one is not toolcell's.
        Err(_) => hidden,
    }
}

impl ScratchRoot {
    /// Removes what runtimes that are gone left under `root`, and makes this
    /// runtime's directory there. Creates `root` if needed (reads and writes
    /// the host filesystem: ambient authority, the operator's path).
    pub(crate) fn open(root: &Path) -> std::io::Result<ScratchRoot> {
        // Ambient authority: the operator's scratch root.
        std::fs::create_dir_all(root)?;
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let ours = name.starts_with(PREFIX) || (name.starts_with(".toolcell-") && name.ends_with(".creating"));
                if ours && entry.file_type().is_ok_and(|t| t.is_dir()) && abandoned(&entry.path()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        // Made under a hidden name and locked before it gets its real one,
        // so no other runtime ever finds it unlocked.
        let id = uuid::Uuid::new_v4();
        let creating = root.join(format!(".toolcell-{id}.creating"));
        private_dir(&creating)?;
        let lock = OpenOptions::new().create_new(true).write(true).mode(0o600).open(creating.join(".lock"))?;
        lock.lock()?;
        let dir = root.join(format!("{PREFIX}{id}"));
        std::fs::rename(&creating, &dir)?;
        Ok(ScratchRoot { dir, _lock: lock })
    }

    /// This runtime's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh directory for one invocation, readable by this user only;
    /// removed when the handle drops.
    pub(crate) fn invocation_dir(&self) -> std::io::Result<tempfile::TempDir> {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .prefix("call-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&self.dir)
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_dead_runtimes_scratch_is_removed_and_a_live_ones_is_not() {
        let root = tempfile::tempdir().unwrap();
        let live = ScratchRoot::open(root.path()).unwrap();
        let call = live.invocation_dir().unwrap();
        std::fs::write(call.path().join("f"), "x").unwrap();
        assert_eq!(std::fs::metadata(live.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(call.path()).unwrap().permissions().mode() & 0o777, 0o700);

        // A runtime killed outright: its directory stays, its lock is gone.
        let dead = root.path().join("toolcell-dead");
        std::fs::create_dir_all(dead.join("call-x")).unwrap();
        std::fs::write(dead.join(".lock"), "").unwrap();
        std::fs::write(dead.join("call-x/secret"), "left").unwrap();
        let unrelated = root.path().join("someone-else");
        std::fs::create_dir_all(&unrelated).unwrap();

        let next = ScratchRoot::open(root.path()).unwrap();
        assert!(!dead.exists(), "the dead runtime's scratch was left");
        assert!(call.path().join("f").exists(), "a live runtime's scratch was removed");
        assert!(unrelated.exists(), "a directory toolcell did not make was removed");
        let live_dir = live.dir().to_owned();
        drop(call);
        drop(live);
        assert!(!live_dir.exists(), "a runtime removes its own scratch when it ends");
        drop(next);
    }
}
