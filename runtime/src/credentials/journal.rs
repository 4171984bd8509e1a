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
#[error("lease journal `{path}`: {source}")]
pub struct JournalError {
    /// The journal file or directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
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

impl LeaseJournal {
    /// Opens this runtime's journal in `dir`, and adopts what runtimes that
    /// are gone left open there: those entries are returned (with the task
    /// each belonged to), moved into the new journal, and their files removed.
    pub fn open(dir: &Path) -> Result<(LeaseJournal, Vec<(Leftover, String)>), JournalError> {
        let fail = |path: &Path| {
            let path = path.to_owned();
            move |source| JournalError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(fail(dir))?;
        let path = dir.join(format!("{}.jsonl", uuid::Uuid::new_v4()));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(fail(&path))?;
        file.lock().map_err(fail(&path))?;
        let journal =
            LeaseJournal { path: path.clone(), file: Mutex::new(JournalFile { file, open: HashMap::new(), lines: 0 }) };

        let mut leftovers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(fail(dir))? {
            let other = entry.map_err(fail(dir))?.path();
            if other == path || other.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&other) else { continue };
            match file.try_lock() {
                Ok(()) => {}
                // Its runtime is alive: its leases are its own.
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(error)) => return Err(fail(&other)(error)),
            }
            let open = still_open(&file).map_err(fail(&other))?;
            for (what, task) in &open {
                journal.opened(what, task)?;
            }
            // Adopted (and on disk in ours) before the old file goes.
            std::fs::remove_file(&other).map_err(fail(&other))?;
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
        let fail = |source| JournalError { path: self.path.clone(), source };
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
    /// is locked before it replaces the old, so no other runtime adopts it.
    fn compact(&self, journal: &mut JournalFile) -> std::io::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        journal.open.retain(|_, (what, _)| !matches!(what, Leftover::IssuerToken { exp, .. } if *exp <= now));
        let temporary = self.path.with_extension("compacting");
        let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&temporary)?;
        file.lock()?;
        for (what, task) in journal.open.values() {
            let line = serde_json::to_string(&Entry::Open { what: what.clone(), task: task.clone() })
                .expect("entries serialize");
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
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
        if journal.open.is_empty() {
            let _ = std::fs::remove_file(&self.path);
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
