//! The audit file as a hash chain: every line carries its sequence number
//! and the SHA-256 of the line before it, so a line edited, deleted,
//! inserted or moved breaks a link; signed checkpoints vouch for everything
//! before them, so a rewrite of the whole file shows too.
//!
//! Several runtimes may append to one file (`toolcell run` beside a running
//! `toolcell serve`). Each append holds an exclusive lock on a sibling lock
//! file, and first checks whether the file grew or was replaced since this
//! process last wrote: if so it re-reads the last line, so the chain stays
//! one chain whoever writes. The lock file is never renamed, so rotation is
//! atomic for every writer.
//!
//! Durability: a checkpoint is written, then the file is `fdatasync`'d, at
//! every task close, every `checkpoint_every` events, every
//! `checkpoint_interval` with unsealed events, and when the runtime is
//! dropped. Lines between checkpoints are in the page cache until then.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::seal::SealKey;

/// The `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest last line read back when resuming a file: audit lines are
/// clipped far below this, so anything longer is not one of ours.
const MAX_TAIL: u64 = 1 << 20;

/// The SHA-256 of one line, without its newline, in hex.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// The sibling files of an audit file: hidden, so `audit.jsonl*` globs
/// match the audit files only.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// The last checkpoint, kept beside the audit file: `verify` checks that
/// the file still holds it, so a tail cut after a checkpoint shows.
pub fn head_path(path: &Path) -> PathBuf {
    sibling(path, "head")
}

/// When checkpoints are written and the file rotated.
#[derive(Clone, Debug)]
pub(crate) struct ChainSettings {
    pub(crate) every: u64,
    pub(crate) rotate_at: Option<u64>,
}

/// An audit file being appended to.
pub(crate) struct ChainWriter {
    path: PathBuf,
    head: PathBuf,
    key: Option<SealKey>,
    settings: ChainSettings,
    /// The sibling lock file: its `flock` orders appends between processes
    /// (taken inside `state`'s mutex, which orders them within this one).
    lock: File,
    state: Mutex<ChainState>,
    /// The last sequence number this process has synced to disk. Syncs take
    /// turns under it, outside `state`, so appends go on during a sync and
    /// tasks closing together share one (group commit).
    durable: Mutex<u64>,
}

/// A checkpoint written, not yet synced.
struct Unsynced {
    /// The checkpoint's sequence number (everything up to it is covered).
    seq: u64,
    /// The file it was written to (a rotation may have moved it since).
    file: File,
    /// The checkpoint line, for the head file once it is on disk; `None`
    /// when another caller wrote the checkpoint (and keeps the head).
    line: Option<String>,
}

impl std::fmt::Debug for ChainWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainWriter").field("path", &self.path).field("key", &self.key).finish_non_exhaustive()
    }
}

struct ChainState {
    file: File,
    /// The inode `file` is, to notice a rotation by another writer.
    ino: u64,
    /// The file's length after the last line this process knows of.
    end: u64,
    /// The last line's sequence number (0: the file is empty).
    seq: u64,
    /// The last line's hash ([`GENESIS`] for an empty file).
    hash: String,
    /// The sequence number of the last checkpoint (0: none known).
    sealed: u64,
    since_seal: u64,
    last_seal: Instant,
}

/// Holds the lock file's exclusive lock until dropped.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn take(file: &'a File) -> std::io::Result<Locked<'a>> {
        file.lock()?;
        Ok(Locked(file))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// What the end of an existing file says.
enum Tail {
    Empty,
    /// The last line is a chained line.
    Chained {
        seq: u64,
        hash: String,
        checkpoint: bool,
    },
    /// The last line is not one (written before chaining, or torn by a
    /// crash mid-write): a new chain starts after it, linked to it.
    Broken {
        hash: String,
        newline_missing: bool,
        why: &'static str,
    },
}

impl ChainWriter {
    pub(crate) fn open(path: &Path, key: Option<SealKey>, settings: ChainSettings) -> std::io::Result<ChainWriter> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(sibling(path, "lock"))?;
        let file = open_append(path)?;
        let ino = file.metadata()?.ino();
        let state = ChainState {
            file,
            ino,
            end: 0,
            seq: 0,
            hash: GENESIS.to_owned(),
            sealed: 0,
            since_seal: 0,
            last_seal: Instant::now(),
        };
        let writer = ChainWriter {
            path: path.to_owned(),
            head: head_path(path),
            key,
            settings,
            lock,
            state: Mutex::new(state),
            durable: Mutex::new(0),
        };
        {
            let mut state = writer.state();
            let _locked = Locked::take(&writer.lock)?;
            writer.resume(&mut state)?;
        }
        Ok(writer)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one event (a JSON object) as the chain's next line; a
    /// checkpoint follows every `every` events.
    pub(crate) fn append(&self, event: &str) -> std::io::Result<()> {
        let unsynced = {
            let mut state = self.state();
            let _locked = Locked::take(&self.lock)?;
            self.catch_up(&mut state)?;
            self.write_line(&mut state, event)?;
            if state.since_seal < self.settings.every {
                return Ok(());
            }
            self.checkpoint(&mut state)?
        };
        self.make_durable(unsynced)
    }

    /// Writes a checkpoint and syncs the file, if anything was written since
    /// the last one (another task's close may already have sealed this one's
    /// events: one sync then serves both).
    pub(crate) fn seal(&self) -> std::io::Result<()> {
        self.seal_if(|_| true)
    }

    /// [`ChainWriter::seal`], if the last checkpoint is older than `age`.
    pub(crate) fn seal_if_older(&self, age: Duration) -> std::io::Result<()> {
        self.seal_if(|state| state.last_seal.elapsed() >= age)
    }

    fn seal_if(&self, due: impl Fn(&ChainState) -> bool) -> std::io::Result<()> {
        let unsynced = {
            let mut state = self.state();
            let _locked = Locked::take(&self.lock)?;
            self.catch_up(&mut state)?;
            if state.seq != state.sealed && due(&state) {
                self.checkpoint(&mut state)?
            } else if state.seq == state.sealed && state.sealed > 0 {
                // Another caller's checkpoint covers everything: it may
                // still be syncing, so wait for (or do) a sync of it.
                Unsynced { seq: state.sealed, file: state.file.try_clone()?, line: None }
            } else {
                return Ok(());
            }
        };
        self.make_durable(unsynced)
    }

    /// Syncs the file up to `unsynced`'s checkpoint, unless a sync that
    /// covers it has been done already, then keeps the checkpoint as the head.
    fn make_durable(&self, unsynced: Unsynced) -> std::io::Result<()> {
        let mut durable = self.durable.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *durable >= unsynced.seq {
            return Ok(());
        }
        unsynced.file.sync_data()?;
        *durable = unsynced.seq;
        if let Some(line) = &unsynced.line {
            self.keep_head(line)?;
        }
        Ok(())
    }

    /// Re-reads the end of the file if another writer appended to it or
    /// rotated it since this process last wrote.
    fn catch_up(&self, state: &mut ChainState) -> std::io::Result<()> {
        let on_disk = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match on_disk {
            Some(meta) if meta.ino() == state.ino => {
                if meta.len() != state.end {
                    self.resume(state)?;
                }
            }
            // Rotated by another writer, or moved or removed by hand: write
            // to what is at the path now.
            _ => {
                state.file = open_append(&self.path)?;
                state.ino = state.file.metadata()?.ino();
                self.resume(state)?;
            }
        }
        Ok(())
    }

    /// Takes up the chain where the file ends.
    fn resume(&self, state: &mut ChainState) -> std::io::Result<()> {
        let length = state.file.metadata()?.len();
        state.end = length;
        match read_tail(&mut state.file, length)? {
            // A file moved away by hand (not rotated by a runtime): the new
            // one links to the last line this process wrote.
            Tail::Empty if state.seq > 0 => {
                let event = serde_json::json!({
                    "time": super::now_rfc3339(),
                    "event": "audit_rotated",
                    "previous": serde_json::Value::Null,
                });
                self.write_line(state, &event.to_string())?;
            }
            Tail::Empty => {}
            Tail::Chained { seq, hash, checkpoint } => {
                state.seq = seq;
                state.hash = hash;
                if checkpoint {
                    state.sealed = seq;
                    state.since_seal = 0;
                }
            }
            Tail::Broken { hash, newline_missing, why } => {
                if newline_missing {
                    state.file.write_all(b"\n")?;
                    state.end += 1;
                }
                state.seq = 0;
                state.hash = hash;
                state.sealed = 0;
                let event =
                    serde_json::json!({ "time": super::now_rfc3339(), "event": "audit_resumed", "reason": why });
                self.write_line(state, &event.to_string())?;
            }
        }
        Ok(())
    }

    /// Writes `event` (a JSON object with at least one field) as the next
    /// line, with `seq` and `prev` in front. Returns the line, without its newline.
    fn write_line(&self, state: &mut ChainState, event: &str) -> std::io::Result<String> {
        debug_assert!(event.starts_with('{') && event.len() > 2);
        let seq = state.seq + 1;
        let mut line = format!("{{\"seq\":{seq},\"prev\":\"{}\",", state.hash);
        line.push_str(&event[1..]);
        let hash = line_hash(line.as_bytes());
        line.push('\n');
        state.file.write_all(line.as_bytes())?;
        line.pop();
        state.end += line.len() as u64 + 1;
        state.seq = seq;
        state.hash = hash;
        state.since_seal += 1;
        Ok(line)
    }

    /// Writes a checkpoint and rotates the file if it has grown past
    /// `rotate_at`; the caller syncs it ([`ChainWriter::make_durable`]),
    /// outside the state's lock.
    fn checkpoint(&self, state: &mut ChainState) -> std::io::Result<Unsynced> {
        let time = super::now_rfc3339();
        let event = match &self.key {
            Some(key) => serde_json::json!({
                "time": time,
                "event": "checkpoint",
                "key": key.public(),
                "signature": key.sign(state.seq + 1, &state.hash, &time),
            }),
            None => serde_json::json!({ "time": time, "event": "checkpoint", "key": serde_json::Value::Null }),
        };
        let line = self.write_line(state, &event.to_string())?;
        state.sealed = state.seq;
        state.since_seal = 0;
        state.last_seal = Instant::now();
        let unsynced = Unsynced { seq: state.seq, file: state.file.try_clone()?, line: Some(line) };
        if self.settings.rotate_at.is_some_and(|at| state.end >= at) {
            self.rotate(state)?;
        }
        Ok(unsynced)
    }

    /// Writes the head file whole (a temporary file renamed over it). It is
    /// not synced: a head lost in a crash is an older one, which still checks.
    fn keep_head(&self, line: &str) -> std::io::Result<()> {
        // Unique to this write: writers sync (and so keep heads) outside
        // the file lock, so two may be here at once, in one process or two.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = sibling(&self.path, &format!("head.{}.{n}", std::process::id()));
        std::fs::write(&temporary, format!("{line}\n"))?;
        std::fs::rename(&temporary, &self.head)
    }

    /// Moves the file aside as `<name>.<last seq>` and starts a new one whose
    /// first line links to the old one's last.
    fn rotate(&self, state: &mut ChainState) -> std::io::Result<()> {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rotated = self.path.with_file_name(format!("{name}.{:012}", state.seq));
        if rotated.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("cannot rotate to `{}`: it exists", rotated.display()),
            ));
        }
        std::fs::rename(&self.path, &rotated)?;
        state.file = open_append(&self.path)?;
        state.ino = state.file.metadata()?.ino();
        state.end = 0;
        let event = serde_json::json!({
            "time": super::now_rfc3339(),
            "event": "audit_rotated",
            "previous": rotated.file_name().map(|n| n.to_string_lossy().into_owned()),
        });
        self.write_line(state, &event.to_string())?;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Reads the file's last line.
fn read_tail(file: &mut File, length: u64) -> std::io::Result<Tail> {
    if length == 0 {
        return Ok(Tail::Empty);
    }
    let start = length.saturating_sub(MAX_TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((length - start) as usize);
    file.take(length - start).read_to_end(&mut bytes)?;
    let newline_missing = bytes.last() != Some(&b'\n');
    let body = if newline_missing { &bytes[..] } else { &bytes[..bytes.len() - 1] };
    let line = match body.iter().rposition(|&b| b == b'\n') {
        Some(at) => &body[at + 1..],
        None if start == 0 => body,
        None => {
            return Ok(Tail::Broken {
                hash: line_hash(body),
                newline_missing,
                why: "the file's last line is longer than any audit line",
            });
        }
    };
    let hash = line_hash(line);
    if newline_missing {
        return Ok(Tail::Broken {
            hash,
            newline_missing,
            why: "the file ended inside a line (a write torn by a crash)",
        });
    }
    let parsed: Option<(u64, bool)> = serde_json::from_slice::<serde_json::Value>(line).ok().and_then(|value| {
        let seq = value.get("seq")?.as_u64()?;
        value.get("prev")?.as_str()?;
        Some((seq, value.get("event").and_then(|e| e.as_str()) == Some("checkpoint")))
    });
    Ok(match parsed {
        Some((seq, checkpoint)) => Tail::Chained { seq, hash, checkpoint },
        None => Tail::Broken { hash, newline_missing, why: "the file's last line is not a chained audit line" },
    })
}
