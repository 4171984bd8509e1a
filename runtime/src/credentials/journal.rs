//! The durable lease journal: every credential that outlives an invocation
//! upstream (an OpenBao lease or child token, an issuer token id) is written
//! here before the tool can use it, and marked closed once it is revoked.
//! A runtime that crashed mid-task leaves its entries open; the next runtime
//! to start on the same journal directory adopts and revokes them.
//!
//! Entries hold ids (lease ids, token accessors, `jti`s), never a secret value:
//! an exchanged OAuth token is not journaled, because its id is its value; it
//! dies at its expiry, which is never past the invocation's deadline.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Something that must be revoked upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leftover {
    /// An OpenBao lease, by id.
    OpenbaoLease {
        /// The lease id.
        lease_id: String,
    },
    /// An OpenBao child token, by accessor.
    OpenbaoToken {
        /// The token's accessor.
        accessor: String,
    },
    /// An issuer token, deny-listed until `exp`.
    IssuerToken {
        /// Its `jti`.
        jti: String,
        /// Its expiry, seconds since the epoch.
        exp: u64,
    },
}

impl Leftover {
    /// The id it is journaled and audited under.
    pub fn id(&self) -> String {
        match self {
            Leftover::OpenbaoLease { lease_id } => lease_id.clone(),
            Leftover::OpenbaoToken { accessor } => format!("accessor:{accessor}"),
            Leftover::IssuerToken { jti, .. } => format!("jti:{jti}"),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Open {
        #[serde(flatten)]
        what: Leftover,
        task: String,
    },
    Closed {
        id: String,
    },
}

/// This runtime's journal: one file in the journal directory, locked for as
/// long as the runtime lives. Each runtime has its own file, so runtimes
/// sharing a directory never take each other's leases; a file whose lock
/// can be taken belongs to a runtime that is gone.
#[derive(Debug)]
pub struct LeaseJournal {
    path: PathBuf,
    file: Mutex<JournalFile>,
}

#[derive(Debug)]
struct JournalFile {
    file: File,
    /// Entries still open, by id; the file is removed when a runtime ends
    /// with none.
    open: HashMap<String, (Leftover, String)>,
    /// Lines written since the file was last compacted.
    lines: usize,
}

/// After this many lines the file is rewritten with only the open entries,
/// so a long-running runtime's journal stays small.
const COMPACT_AFTER: usize = 4096;

/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("lease journal `{path}`: {cause}")]
pub struct JournalError {
    /// The journal file or directory.
    pub path: PathBuf,
    /// The I/O error (in the message, not a `source`, so a chain names it once).
    pub cause: std::io::Error,
}

/// The entries of a journal file still open, in order.
fn still_open(file: &File) -> std::io::Result<Vec<(Leftover, String)>> {
    let mut open: Vec<(Leftover, String)> = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        // A torn last line (a crash mid-write) is skipped: a lease is
        // journaled before the tool gets it, so that one was never handed out.
        let Ok(entry) = serde_json::from_str::<Entry>(&line?) else { continue };
        match entry {
            Entry::Open { what, task } => open.push((what, task)),
            Entry::Closed { id } => open.retain(|(what, _)| what.id() != id),
        }
    }
    Ok(open)
}

/// How old a hidden temporary file must be before a free lock on it means
/// its maker is gone (a maker locks it right after creating it).
pub(crate) const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// True when the file was last modified more than `age` ago.
pub(crate) fn older_than(file: &File, age: std::time::Duration) -> bool {
    file.metadata().and_then(|m| m.modified()).is_ok_and(|modified| modified.elapsed().is_ok_and(|e| e > age))
}

/// Makes a directory's entries (a created, renamed or removed file) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// True when `path` still names the file `file` has open. A lock taken on a
/// file that has since been replaced under its name (a compaction renamed a
/// new file over it) or removed proves nothing about the file the name holds now.
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Creates `path` (which must not exist) readable by this user only, and
/// locks it before anyone can see it under a journal name.
fn create_locked(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().create_new(true).append(true).read(true).mode(0o600).open(path)?;
    file.lock()?;
    Ok(file)
}

impl LeaseJournal {
    /// Opens this runtime's journal in `dir`, and adopts what runtimes that
    /// are gone left open there: those entries are returned (with the task
    /// each belonged to), moved into the new journal, and their files removed.
    ///
    /// Safe with any number of runtimes starting, running, compacting and
    /// dying on one directory at once:
    /// - a journal is created under a hidden name, locked, and only then
    ///   renamed to `<id>.jsonl`, so no runtime ever sees one unlocked while
    ///   its owner lives;
    /// - a file is adopted only when its lock can be taken (its owner is gone:
    ///   the lock dies with the process) and the name still refers to the
    ///   locked file (not one a compaction has renamed over it since);
    /// - adopted entries are synced into the new journal before the old file
    ///   is removed, so a crash mid-adoption revokes twice, never zero times.
    pub fn open(dir: &Path) -> Result<(LeaseJournal, Vec<(Leftover, String)>), JournalError> {
        let fail = |path: &Path| {
            let path = path.to_owned();
            move |cause| JournalError { path, cause }
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            // Ambient authority: the operator's journal directory.
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail(dir))?;
        }
        let id = uuid::Uuid::new_v4();
        let creating = dir.join(format!(".{id}.creating"));
        let path = dir.join(format!("{id}.jsonl"));
        let file = create_locked(&creating).map_err(fail(&creating))?;
        std::fs::rename(&creating, &path).map_err(fail(&path))?;
        sync_dir(dir).map_err(fail(dir))?;
        let journal =
            LeaseJournal { path: path.clone(), file: Mutex::new(JournalFile { file, open: HashMap::new(), lines: 0 }) };

        let mut leftovers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(fail(dir))? {
            let other = entry.map_err(fail(dir))?.path();
            let name = other.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let temporary = name.starts_with('.') && (name.ends_with(".creating") || name.ends_with(".compacting"));
            if other == path || !(name.ends_with(".jsonl") || temporary) {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&other) else { continue };
            match file.try_lock() {
                Ok(()) => {}
                // Its runtime is alive: its leases are its own.
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(error)) => return Err(fail(&other)(error)),
            }
            if !still_named(&file, &other) {
                continue;
            }
            if temporary {
                // A journal that was never renamed in holds nothing; a
                // compaction that never finished left its original in place.
                // Its maker locks it right after creating it, so a free lock
                // only means "abandoned" once the file has some age.
                if older_than(&file, ABANDONED_AFTER) {
                    let _ = std::fs::remove_file(&other);
                }
                continue;
            }
            let open = still_open(&file).map_err(fail(&other))?;
            for (what, task) in &open {
                journal.append(&Entry::Open { what: what.clone(), task: task.clone() }, true)?;
            }
            // Adopted (and on disk in ours) before the old file goes.
            std::fs::remove_file(&other).map_err(fail(&other))?;
            sync_dir(dir).map_err(fail(dir))?;
            leftovers.extend(open);
        }
        Ok((journal, leftovers))
    }

    /// This runtime's journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, entry: &Entry, durable: bool) -> Result<(), JournalError> {
        let line = serde_json::to_string(entry).expect("entries serialize");
        let mut journal = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let fail = |cause| JournalError { path: self.path.clone(), cause };
        // Written before the tool gets the credential, so a crashed process
        // leaves it in the file.
        writeln!(journal.file, "{line}").map_err(fail)?;
        if durable {
            // And on disk, so a crashed machine does too.
            journal.file.sync_data().map_err(fail)?;
        }
        match entry {
            Entry::Open { what, task } => {
                journal.open.insert(what.id(), (what.clone(), task.clone()));
            }
            Entry::Closed { id } => {
                journal.open.remove(id);
            }
        }
        journal.lines += 1;
        if journal.lines >= COMPACT_AFTER {
            self.compact(&mut journal).map_err(fail)?;
        }
        Ok(())
    }

    /// Rewrites the file with only its open entries, dropping issuer tokens
    /// that have expired (an expired token is refused anyway). The new file
    /// is written under a hidden name, locked, synced and renamed over the
    /// old one (atomic), and the directory synced; the old file's lock is
    /// released only after the rename, so a runtime that then takes that
    /// lock finds the name no longer refers to it and leaves it alone.
    fn compact(&self, journal: &mut JournalFile) -> std::io::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        journal.open.retain(|_, (what, _)| !matches!(what, Leftover::IssuerToken { exp, .. } if *exp <= now));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temporary = dir.join(format!(".{}.compacting", uuid::Uuid::new_v4()));
        let mut file = create_locked(&temporary)?;
        for (what, task) in journal.open.values() {
            let line = serde_json::to_string(&Entry::Open { what: what.clone(), task: task.clone() })
                .expect("entries serialize");
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
        sync_dir(dir)?;
        // The new file is the journal from now on (its offset is at its end);
        // the old handle, and its lock on the replaced file, go.
        journal.file = file;
        journal.lines = 0;
        Ok(())
    }

    /// Records a credential that must be revoked. OpenBao entries are synced
    /// to disk; issuer token ids only written (they expire within one call,
    /// and a sync per mint would cost more than the mint).
    pub fn opened(&self, what: &Leftover, task: &str) -> Result<(), JournalError> {
        let durable = !matches!(what, Leftover::IssuerToken { .. });
        self.append(&Entry::Open { what: what.clone(), task: task.to_owned() }, durable)
    }

    /// Records that `id` was revoked.
    pub fn closed(&self, id: &str) -> Result<(), JournalError> {
        // Not synced: losing it only means revoking again, which is harmless.
        self.append(&Entry::Closed { id: id.to_owned() }, false)
    }
}

impl Drop for LeaseJournal {
    fn drop(&mut self) {
        let journal = self.file.get_mut().unwrap_or_else(|p| p.into_inner());
        // Nothing left to revoke: the file has done its job. Otherwise it
        // stays, unlocked, for the next runtime to adopt.
        if journal.open.is_empty() && std::fs::remove_file(&self.path).is_ok() {
            // Removed while still locked: no runtime can adopt it in between.
            let _ = sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_open_entries_and_drops_expired_token_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = LeaseJournal::open(dir.path()).unwrap();
        let far = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        let live = Leftover::IssuerToken { jti: "live".into(), exp: far };
        let lease = Leftover::OpenbaoLease { lease_id: "l1".into() };
        journal.opened(&live, "t").unwrap();
        journal.opened(&lease, "t").unwrap();
        for n in 0..COMPACT_AFTER {
            let expired = Leftover::IssuerToken { jti: format!("old{n}"), exp: 1 };
            journal.opened(&expired, "t").unwrap();
        }
        let lines = std::fs::read_to_string(journal.path()).unwrap().lines().count();
        assert!(lines < 10, "the journal was not compacted: {lines} lines");
        // Still locked after compaction, and still what a crash would leave.
        let (other, adopted) = LeaseJournal::open(dir.path()).unwrap();
        assert!(adopted.is_empty(), "a live runtime's compacted journal was adopted");
        drop(other);
        journal.opened(&Leftover::OpenbaoLease { lease_id: "l2".into() }, "t").unwrap();
        drop(journal);
        let (_, adopted) = LeaseJournal::open(dir.path()).unwrap();
        let ids: Vec<String> = adopted.iter().map(|(what, _)| what.id()).collect();
        // Expired ids written after the compaction may remain; recovery skips them.
        assert!(ids.len() < 10, "{ids:?}");
        for id in ["jti:live", "l1", "l2"] {
            assert!(ids.contains(&id.to_owned()), "{ids:?}");
        }
    }

    #[test]
    fn runtimes_starting_and_compacting_at_once_never_take_each_others_leases() {
        // Many runtimes start on one directory while others compact over and
        // over: none may adopt (or remove) a journal whose owner is alive.
        let dir = tempfile::tempdir().unwrap();
        let far = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        let owners: Vec<_> = (0..3)
            .map(|n| {
                let (journal, _) = LeaseJournal::open(dir.path()).unwrap();
                journal.opened(&Leftover::OpenbaoLease { lease_id: format!("live-{n}") }, "t").unwrap();
                std::sync::Arc::new(journal)
            })
            .collect();
        let compactors: Vec<_> = owners
            .iter()
            .map(|journal| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for n in 0..3 * COMPACT_AFTER {
                        journal.opened(&Leftover::IssuerToken { jti: format!("j{n}"), exp: far }, "t").unwrap();
                        journal.closed(&format!("jti:j{n}")).unwrap();
                    }
                })
            })
            .collect();
        let starters: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || {
                    let mut adopted = Vec::new();
                    for _ in 0..40 {
                        let (journal, leftovers) = LeaseJournal::open(&dir).unwrap();
                        adopted.extend(leftovers.into_iter().map(|(what, _)| what.id()));
                        drop(journal);
                    }
                    adopted
                })
            })
            .collect();
        for compactor in compactors {
            compactor.join().unwrap();
        }
        for starter in starters {
            let adopted = starter.join().unwrap();
            assert!(
                adopted.iter().all(|id| !id.starts_with("live-")),
                "a live runtime's lease was adopted: {adopted:?}"
            );
        }
        for (n, journal) in owners.iter().enumerate() {
            let text = std::fs::read_to_string(journal.path()).unwrap();
            assert!(text.contains(&format!("live-{n}")), "runtime {n}'s journal lost its lease");
        }
        // The owners go; the next start adopts exactly their leases.
        drop(owners);
        let (_, leftovers) = LeaseJournal::open(dir.path()).unwrap();
        let mut ids: Vec<String> = leftovers.iter().map(|(what, _)| what.id()).collect();
        ids.sort();
        assert_eq!(ids, vec!["live-0", "live-1", "live-2"]);
    }

    #[test]
    fn open_entries_outlive_their_runtime_and_are_adopted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, leftovers) = LeaseJournal::open(dir.path()).unwrap();
        assert!(leftovers.is_empty());
        let lease = Leftover::OpenbaoLease { lease_id: "pki/issue/tool/abc".into() };
        let token = Leftover::OpenbaoToken { accessor: "acc1".into() };
        let jti = Leftover::IssuerToken { jti: "j1".into(), exp: 99 };
        journal.opened(&lease, "t1").unwrap();
        journal.opened(&token, "t1").unwrap();
        journal.opened(&jti, "t2").unwrap();
        journal.closed(&lease.id()).unwrap();

        // A second runtime on the same directory leaves a live runtime's leases alone.
        let (second, leftovers) = LeaseJournal::open(dir.path()).unwrap();
        assert!(leftovers.is_empty());
        drop(second);

        // The first "crashes" (its lock goes with it) after a torn write.
        std::fs::OpenOptions::new().append(true).open(journal.path()).unwrap().write_all(b"{\"op\":\"clo").unwrap();
        let crashed = journal.path().to_owned();
        drop(journal);
        assert!(crashed.exists(), "a journal with open entries stays for the next start");

        let (third, leftovers) = LeaseJournal::open(dir.path()).unwrap();
        assert_eq!(leftovers, vec![(token.clone(), "t1".to_owned()), (jti.clone(), "t2".to_owned())]);
        assert!(!crashed.exists(), "the adopted file is removed");
        third.closed(&token.id()).unwrap();
        third.closed(&jti.id()).unwrap();
        let path = third.path().to_owned();
        drop(third);
        assert!(!path.exists(), "a journal with nothing open is removed at the end");
        let (_, leftovers) = LeaseJournal::open(dir.path()).unwrap();
        assert!(leftovers.is_empty());
    }
}
