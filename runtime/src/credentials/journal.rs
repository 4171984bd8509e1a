//! The durable lease journal: every credential that outlives an invocation
//! upstream (an OpenBao lease or child token, an issuer token id) is written
//! here before the tool can use it, and marked closed once it is revoked.
//! A runtime that crashed mid-task finds the entries still open at its next
//! start and revokes them.
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

/// The journal file.
#[derive(Debug)]
pub struct LeaseJournal {
    path: PathBuf,
    file: Mutex<File>,
}

/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("lease journal `{path}`: {source}")]
pub struct JournalError {
    /// The journal file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

impl LeaseJournal {
    /// Opens the journal, returning what a previous run left open (with the
    /// task each belonged to). The file is rewritten to hold only those.
    pub fn open(path: &Path) -> Result<(LeaseJournal, Vec<(Leftover, String)>), JournalError> {
        let fail = |source| JournalError { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut open: Vec<(Leftover, String)> = Vec::new();
        match File::open(path) {
            Ok(file) => {
                let mut index: HashMap<String, usize> = HashMap::new();
                for line in std::io::BufReader::new(file).lines() {
                    // A torn last line (a crash mid-write) is skipped; its
                    // lease was not yet handed to any tool.
                    let Ok(entry) = serde_json::from_str::<Entry>(&line.map_err(fail)?) else { continue };
                    match entry {
                        Entry::Open { what, task } => {
                            index.insert(what.id(), open.len());
                            open.push((what, task));
                        }
                        Entry::Closed { id } => {
                            if let Some(at) = index.remove(&id) {
                                open[at].1.clear();
                            }
                        }
                    }
                }
                open.retain(|(_, task)| !task.is_empty());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(fail(error)),
        }
        // Compact: only the leftovers stay open.
        let temporary = path.with_extension("tmp");
        {
            let mut out = File::create(&temporary).map_err(fail)?;
            for (what, task) in &open {
                let line = serde_json::to_string(&Entry::Open { what: what.clone(), task: task.clone() })
                    .expect("entries serialize");
                writeln!(out, "{line}").map_err(fail)?;
            }
            out.sync_all().map_err(fail)?;
        }
        std::fs::rename(&temporary, path).map_err(fail)?;
        let file = OpenOptions::new().append(true).open(path).map_err(fail)?;
        Ok((LeaseJournal { path: path.to_owned(), file: Mutex::new(file) }, open))
    }

    fn append(&self, entry: &Entry) -> Result<(), JournalError> {
        let line = serde_json::to_string(entry).expect("entries serialize");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let fail = |source| JournalError { path: self.path.clone(), source };
        writeln!(file, "{line}").map_err(fail)?;
        // On disk before the tool gets the credential: that is the point.
        file.sync_data().map_err(fail)
    }

    /// Records a credential that must be revoked.
    pub fn opened(&self, what: &Leftover, task: &str) -> Result<(), JournalError> {
        self.append(&Entry::Open { what: what.clone(), task: task.to_owned() })
    }

    /// Records that `id` was revoked.
    pub fn closed(&self, id: &str) -> Result<(), JournalError> {
        self.append(&Entry::Closed { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_entries_survive_a_restart_and_closed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.jsonl");
        let (journal, leftovers) = LeaseJournal::open(&path).unwrap();
        assert!(leftovers.is_empty());
        let lease = Leftover::OpenbaoLease { lease_id: "pki/issue/tool/abc".into() };
        let token = Leftover::OpenbaoToken { accessor: "acc1".into() };
        let jti = Leftover::IssuerToken { jti: "j1".into(), exp: 99 };
        journal.opened(&lease, "t1").unwrap();
        journal.opened(&token, "t1").unwrap();
        journal.opened(&jti, "t2").unwrap();
        journal.closed(&lease.id()).unwrap();
        drop(journal);
        // A torn line from a crash mid-write is skipped.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"op\":\"clo").unwrap();
        let (journal, leftovers) = LeaseJournal::open(&path).unwrap();
        assert_eq!(leftovers, vec![(token.clone(), "t1".to_owned()), (jti.clone(), "t2".to_owned())]);
        journal.closed(&token.id()).unwrap();
        journal.closed(&jti.id()).unwrap();
        drop(journal);
        let (_, leftovers) = LeaseJournal::open(&path).unwrap();
        assert!(leftovers.is_empty());
    }
}
