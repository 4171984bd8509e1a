//! The kill switch: what the operator has stopped (a task, a tool, a
//! principal, or everything), why, by whom and until when. Kills are kept in
//! a file, rewritten whole and synced at each change, so a restarted server
//! refuses what was killed before it stopped.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a kill stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KillTarget {
    /// One task, by id.
    Task(String),
    /// Every task of a tool.
    Tool(String),
    /// Every task acting for a principal.
    Principal(String),
    /// Everything.
    All,
}

impl KillTarget {
    /// True when a task of `tool` for `principal` (with the id `task`, for a
    /// task already open) is stopped by this.
    pub fn matches(&self, principal: &str, tool: &str, task: Option<&str>) -> bool {
        match self {
            KillTarget::Task(id) => task == Some(id.as_str()),
            KillTarget::Tool(name) => name == tool,
            KillTarget::Principal(name) => name == principal,
            KillTarget::All => true,
        }
    }
}

impl std::fmt::Display for KillTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillTarget::Task(id) => write!(f, "task {id}"),
            KillTarget::Tool(name) => write!(f, "tool `{name}`"),
            KillTarget::Principal(name) => write!(f, "principal `{name}`"),
            KillTarget::All => f.write_str("every tool and principal"),
        }
    }
}

/// One kill in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    /// Its id, for the audit trail and for the errors it causes.
    pub id: String,
    /// What it stops.
    pub target: KillTarget,
    /// Why, as the operator (or the anomaly rule) said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who: `local:USER` on the admin socket, the admin token's name over
    /// HTTP, `anomaly:RULE` for a rule's quarantine.
    pub by: String,
    /// When, seconds since the epoch.
    pub at: u64,
    /// When it lapses by itself (`--for`), seconds since the epoch; none:
    /// until it is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

impl Kill {
    /// A kill of `target` made now, lasting `lasting` (or until lifted).
    pub fn new(target: KillTarget, reason: Option<String>, by: &str, lasting: Option<Duration>) -> Kill {
        let at = unix(SystemTime::now());
        Kill {
            id: uuid::Uuid::new_v4().to_string(),
            target,
            reason: reason.filter(|r| !r.trim().is_empty()).map(|r| crate::audit::clip(&r, 512)),
            by: by.to_owned(),
            at,
            until: lasting.map(|d| at.saturating_add(d.as_secs().max(1))),
        }
    }

    /// The kills in force now that `file` keeps (none when it does not
    /// exist), for reports that run beside the server.
    pub fn read_in_force(file: &Path) -> Result<Vec<Kill>, KillError> {
        let now = SystemTime::now();
        Ok(read(file)?.into_iter().filter(|kill| kill.in_force(now)).collect())
    }

    /// True while it stops what it names.
    pub fn in_force(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| unix(now) < until)
    }
}

impl std::fmt::Display for Kill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} was killed by {} (kill {})", self.target, self.by, self.id)?;
        match &self.reason {
            Some(reason) => write!(f, ": {reason}")?,
            None => f.write_str(", no reason given")?,
        }
        match self.until {
            Some(until) => {
                write!(f, "; in force until {}", crate::audit::rfc3339(UNIX_EPOCH + Duration::from_secs(until)))
            }
            None => f.write_str("; in force until `toolcell unkill`"),
        }
    }
}

/// The kill file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// Reading or writing the file failed.
    #[error("kill file `{path}`: {cause}")]
    Io {
        /// The kill file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is not what this runtime writes.
    #[error(
        "kill file `{path}` is malformed ({reason}); fix or remove it: the server will not start without knowing what is killed"
    )]
    Malformed {
        /// The kill file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The kill file's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillFile {
    version: u32,
    kills: Vec<Kill>,
}

/// The kills in force, and where they are kept.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch {
    kills: RwLock<Vec<Kill>>,
    file: Option<PathBuf>,
}

impl KillSwitch {
    /// The kills kept in `file` (none when it does not exist yet); with no
    /// file, kills last as long as the runtime.
    pub(crate) fn open(file: Option<PathBuf>) -> Result<KillSwitch, KillError> {
        let kills = match &file {
            Some(path) => read(path)?,
            None => Vec::new(),
        };
        Ok(KillSwitch { kills: RwLock::new(kills), file })
    }

    /// The kills in force now.
    pub(crate) fn in_force(&self) -> Vec<Kill> {
        let now = SystemTime::now();
        self.read().iter().filter(|kill| kill.in_force(now)).cloned().collect()
    }

    /// The kill in force that stops a task of `tool` for `principal`, if any.
    pub(crate) fn matching(&self, principal: &str, tool: &str, task: Option<&str>) -> Option<Kill> {
        let kills = self.read();
        if kills.is_empty() {
            return None;
        }
        let now = SystemTime::now();
        kills.iter().find(|kill| kill.in_force(now) && kill.target.matches(principal, tool, task)).cloned()
    }

    /// Adds `kill` and keeps it. The kill is in force even if keeping it
    /// fails (the error says it will not survive a restart).
    pub(crate) fn add(&self, kill: Kill) -> Result<(), KillError> {
        let mut kills = self.write();
        let now = SystemTime::now();
        kills.retain(|kept| kept.in_force(now));
        kills.push(kill);
        self.keep(&kills)
    }

    /// Lifts every kill of exactly `target`; returns them. The kills are
    /// lifted even if keeping the change fails.
    pub(crate) fn lift(&self, target: &KillTarget) -> Result<Vec<Kill>, KillError> {
        let mut kills = self.write();
        let now = SystemTime::now();
        let (lifted, kept): (Vec<Kill>, Vec<Kill>) =
            kills.drain(..).filter(|kill| kill.in_force(now)).partition(|kill| &kill.target == target);
        *kills = kept;
        self.keep(&kills)?;
        Ok(lifted)
    }

    fn keep(&self, kills: &[Kill]) -> Result<(), KillError> {
        match &self.file {
            Some(path) => write(path, kills),
            None => Ok(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Kill>> {
        self.kills.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Kill>> {
        self.kills.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// Ambient authority: the kill file the operator's config (or the server's
// state directory) names.
fn read(path: &Path) -> Result<Vec<Kill>, KillError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => return Err(KillError::Io { path: path.to_owned(), cause }),
    };
    let malformed = |reason: String| KillError::Malformed { path: path.to_owned(), reason };
    let file: KillFile = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if file.version != 1 {
        return Err(malformed(format!("version {} is not one this runtime reads (1)", file.version)));
    }
    Ok(file.kills)
}

/// Writes the file whole: a new file synced, then renamed over the old one
/// and the directory synced, so a crash leaves the old set or the new one.
fn write(path: &Path, kills: &[Kill]) -> Result<(), KillError> {
    use std::io::Write;
    let io = |cause| KillError::Io { path: path.to_owned(), cause };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let text = serde_json::to_string_pretty(&KillFile { version: 1, kills: kills.to_vec() }).expect("kills serialize");
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_match_what_they_name_and_only_that() {
        let tool = KillTarget::Tool("github-issues".into());
        assert!(tool.matches("alice", "github-issues", None));
        assert!(!tool.matches("alice", "github-issues-2", None));
        let principal = KillTarget::Principal("alice".into());
        assert!(principal.matches("alice", "x", Some("t1")));
        assert!(!principal.matches("alicex", "x", Some("t1")));
        let task = KillTarget::Task("t1".into());
        assert!(task.matches("bob", "x", Some("t1")));
        // A task that is not open yet has no id to match.
        assert!(!task.matches("bob", "x", None));
        assert!(KillTarget::All.matches("anyone", "anything", None));
    }

    #[test]
    fn kills_survive_a_reopen_and_lapse_at_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/kills.json");
        let switch = KillSwitch::open(Some(path.clone())).unwrap();
        switch.add(Kill::new(KillTarget::Tool("t".into()), Some("leaking".into()), "local:ops", None)).unwrap();
        let mut lapsed = Kill::new(KillTarget::Principal("p".into()), None, "local:ops", Some(Duration::from_secs(60)));
        lapsed.until = Some(unix(SystemTime::now()) - 1);
        switch.add(lapsed).unwrap();

        let reopened = KillSwitch::open(Some(path.clone())).unwrap();
        let kill = reopened.matching("anyone", "t", None).expect("the tool's kill survived");
        assert_eq!(kill.reason.as_deref(), Some("leaking"));
        assert!(kill.to_string().contains("tool `t` was killed by local:ops"), "{kill}");
        assert!(reopened.matching("p", "other", None).is_none(), "a lapsed kill stops nothing");

        let lifted = reopened.lift(&KillTarget::Tool("t".into())).unwrap();
        assert_eq!(lifted.len(), 1);
        assert!(KillSwitch::open(Some(path)).unwrap().in_force().is_empty());
    }

    #[test]
    fn a_malformed_kill_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kills.json");
        std::fs::write(&path, r#"{"version":1,"kills":[{"id":"k","target":"everything"}]}"#).unwrap();
        let error = KillSwitch::open(Some(path.clone())).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()) && error.contains("malformed"), "{error}");
        std::fs::write(&path, r#"{"version":2,"kills":[]}"#).unwrap();
        let error = KillSwitch::open(Some(path)).unwrap_err().to_string();
        assert!(error.contains("version 2"), "{error}");
    }
}
