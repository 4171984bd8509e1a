//! Checks audit files written by [`super::chain`]: each link, each
//! checkpoint's signature, the links between rotated files, and the head
//! kept beside the live file. The first break is reported with its place
//! and what it means.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::chain::{GENESIS, head_path, line_hash};
use super::seal::SealPublicKey;

/// What kind of tampering (or damage) a break shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A line's content changed after it was written.
    Edited,
    /// Lines are missing from the middle.
    Deleted,
    /// A line was added that the runtime did not write.
    Inserted,
    /// Lines are out of order.
    Reordered,
    /// The end of the file was cut: mid-line, or after the last checkpoint
    /// the head names.
    Truncated,
    /// A checkpoint whose signature does not check.
    BadSignature,
    /// A checkpoint signed by another key than the one given.
    OtherKey,
    /// Nothing (or a checkpoint) is unsigned.
    Unsigned,
    /// A line that is not a chained audit line at all.
    Malformed,
    /// A file does not continue the one before it.
    Unlinked,
}

/// The first break found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChainBreak {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line (1-based).
    pub line: usize,
    /// What it shows.
    pub kind: BreakKind,
    /// What it means, in words.
    pub detail: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.detail)
    }
}

/// What one file holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifiedFile {
    /// The file.
    pub file: PathBuf,
    /// Lines read.
    pub lines: usize,
    /// The first and last sequence numbers.
    pub seqs: Option<(u64, u64)>,
    /// Checkpoints in it.
    pub checkpoints: usize,
    /// The line of its last checkpoint.
    pub last_checkpoint: Option<usize>,
    /// Lines after its last checkpoint: not yet vouched for by a signature.
    pub unsealed: usize,
    /// The time of its first and last event.
    pub times: Option<(String, String)>,
}

/// The result of [`verify`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verification {
    /// Each file, in chain order.
    pub files: Vec<VerifiedFile>,
    /// Whether checkpoint signatures were checked (a key was given).
    pub signatures_checked: bool,
    /// The first break, if any.
    #[serde(rename = "break")]
    pub first_break: Option<ChainBreak>,
    /// Things worth knowing that are not breaks.
    pub notes: Vec<String>,
}

/// An audit file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("audit file `{path}` cannot be read: {cause}")]
pub struct VerifyError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub cause: std::io::Error,
}

/// One line as read.
struct Line {
    file: usize,
    number: usize,
    bytes: Vec<u8>,
    chained: Option<Chained>,
    /// Why it is not chained.
    problem: Option<&'static str>,
}

struct Chained {
    seq: u64,
    prev: String,
    event: String,
    time: Option<String>,
    key: Option<String>,
    signature: Option<String>,
}

fn parse(bytes: &[u8]) -> Result<Chained, &'static str> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| "is not JSON")?;
    let text = |field: &str| value.get(field).and_then(|v| v.as_str()).map(str::to_owned);
    let seq = value.get("seq").and_then(|v| v.as_u64()).ok_or("has no `seq`")?;
    let prev = text("prev").ok_or("has no `prev`")?;
    Ok(Chained {
        seq,
        prev,
        event: text("event").ok_or("has no `event`")?,
        time: text("time"),
        key: text("key"),
        signature: text("signature"),
    })
}

/// Checks `files` (any order: they are put in chain order by their first
/// sequence number) against `key`; without a key, signatures are not checked.
pub fn verify(files: &[PathBuf], key: Option<&SealPublicKey>) -> Result<Verification, VerifyError> {
    let mut read: Vec<(PathBuf, Vec<Line>, bool)> = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|cause| VerifyError { path: path.clone(), cause })?;
        let ends_cleanly = bytes.is_empty() || bytes.ends_with(b"\n");
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let lines = if body.is_empty() && ends_cleanly {
            Vec::new()
        } else {
            body.split(|&b| b == b'\n')
                .enumerate()
                .map(|(index, bytes)| {
                    let (chained, problem) = match parse(bytes) {
                        Ok(chained) => (Some(chained), None),
                        Err(problem) => (None, Some(problem)),
                    };
                    Line { file: 0, number: index + 1, bytes: bytes.to_vec(), chained, problem }
                })
                .collect()
        };
        read.push((path.clone(), lines, ends_cleanly));
    }
    // Chain order: by each file's first sequence number.
    read.sort_by_key(|(_, lines, _)| lines.iter().find_map(|l| l.chained.as_ref().map(|c| c.seq)).unwrap_or(0));
    let mut files = Vec::new();
    let mut ends = Vec::new();
    let mut lines: Vec<Line> = Vec::new();
    for (index, (path, file_lines, ends_cleanly)) in read.into_iter().enumerate() {
        files.push(path);
        ends.push(ends_cleanly);
        lines.extend(file_lines.into_iter().map(|line| Line { file: index, ..line }));
    }
    let mut check = Checker { files: &files, lines: &lines, key, notes: Vec::new() };
    let first_break = check.walk(&ends).err();
    let mut notes = std::mem::take(&mut check.notes);
    let first_break = first_break.or_else(|| check.heads().err());
    if key.is_none() {
        notes.push("signatures not checked: no key given".into());
    }
    let summaries = files.iter().enumerate().map(|(index, path)| summarize(path, index, &lines)).collect::<Vec<_>>();
    if first_break.is_none() {
        for file in &summaries {
            if file.unsealed > 0 {
                notes.push(format!(
                    "{}: the last {} line(s) come after the last checkpoint: no signature vouches for them yet \
                     (a running runtime seals them at the next task close, within its checkpoint interval, or when it stops)",
                    file.file.display(),
                    file.unsealed
                ));
            }
        }
    }
    Ok(Verification { files: summaries, signatures_checked: key.is_some(), first_break, notes })
}

struct Checker<'a> {
    files: &'a [PathBuf],
    lines: &'a [Line],
    key: Option<&'a SealPublicKey>,
    notes: Vec<String>,
}

impl Checker<'_> {
    fn broken(&self, at: &Line, kind: BreakKind, detail: String) -> ChainBreak {
        ChainBreak { file: self.files[at.file].clone(), line: at.number, kind, detail }
    }

    fn place(&self, line: &Line) -> String {
        if self.files.len() > 1 {
            format!("{}:{}", self.files[line.file].display(), line.number)
        } else {
            format!("line {}", line.number)
        }
    }

    fn walk(&mut self, ends: &[bool]) -> Result<(), ChainBreak> {
        // Where each sequence number appears, to tell a deletion from a move.
        let mut places: HashMap<u64, Vec<usize>> = HashMap::new();
        for (index, line) in self.lines.iter().enumerate() {
            if let Some(chained) = &line.chained {
                places.entry(chained.seq).or_default().push(index);
            }
        }
        let mut checkpoints = 0;
        for (index, line) in self.lines.iter().enumerate() {
            let last_of_file = self.lines.get(index + 1).is_none_or(|next| next.file != line.file);
            if last_of_file && !ends[line.file] {
                return Err(self.broken(
                    line,
                    BreakKind::Truncated,
                    "the file ends inside this line: its end was cut (or a crash tore the last write)".into(),
                ));
            }
            let Some(chained) = &line.chained else {
                return Err(self.broken(
                    line,
                    BreakKind::Malformed,
                    format!(
                        "this line {} — it is not a line the runtime wrote: inserted, or edited",
                        line.problem.unwrap_or("is not a chained audit line")
                    ),
                ));
            };
            let before = index.checked_sub(1).map(|i| &self.lines[i]);
            match before {
                None => {
                    if chained.seq == 1 && chained.prev != GENESIS {
                        return Err(self.broken(
                            line,
                            BreakKind::Edited,
                            "the first line of the chain does not start from the genesis link: it was edited".into(),
                        ));
                    }
                    if chained.seq != 1 {
                        self.notes.push(format!(
                            "{} starts at seq {}: it continues an earlier file that was not given, so its first link is not checked",
                            self.files[line.file].display(),
                            chained.seq
                        ));
                    }
                }
                Some(before) => self.link(before, line, index, &places)?,
            }
            if chained.event == "checkpoint" {
                checkpoints += 1;
                self.checkpoint(line, chained)?;
            }
        }
        if checkpoints == 0
            && let Some(last) = self.lines.last()
        {
            return Err(self.broken(
                last,
                BreakKind::Unsigned,
                "no checkpoint anywhere: no signature vouches for any line, so the whole file could have been rewritten"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Checks the link from `before` to `line`.
    fn link(
        &self,
        before: &Line,
        line: &Line,
        index: usize,
        places: &HashMap<u64, Vec<usize>>,
    ) -> Result<(), ChainBreak> {
        let chained = line.chained.as_ref().expect("checked by the caller");
        let previous = before.chained.as_ref().expect("checked on the line before");
        let expected = previous.seq + 1;
        if before.file != line.file && (chained.seq != expected || chained.prev != line_hash(&before.bytes)) {
            return Err(self.broken(
                line,
                BreakKind::Unlinked,
                format!(
                    "this file does not continue {} (which ends at seq {}): a file between them is missing, or one of them was changed",
                    self.files[before.file].display(),
                    previous.seq
                ),
            ));
        }
        if chained.seq > expected {
            let moved = places.get(&expected).and_then(|at| at.iter().find(|&&i| i > index));
            return Err(match moved {
                Some(&later) => self.broken(
                    line,
                    BreakKind::Reordered,
                    format!(
                        "seq {} comes here, but seq {expected} comes later ({}): lines were moved",
                        chained.seq,
                        self.place(&self.lines[later])
                    ),
                ),
                None => self.broken(
                    line,
                    BreakKind::Deleted,
                    format!(
                        "seq {} follows seq {}: {} line(s) were deleted before this one",
                        chained.seq,
                        previous.seq,
                        chained.seq - expected
                    ),
                ),
            });
        }
        if chained.seq < expected {
            let earlier = places.get(&chained.seq).and_then(|at| at.iter().find(|&&i| i < index));
            return Err(match earlier {
                Some(&earlier) => self.broken(
                    line,
                    BreakKind::Inserted,
                    format!(
                        "seq {} appears a second time (first at {}): a line was inserted",
                        chained.seq,
                        self.place(&self.lines[earlier])
                    ),
                ),
                None => self.broken(
                    line,
                    BreakKind::Reordered,
                    format!("seq {} comes after seq {}: lines were moved", chained.seq, previous.seq),
                ),
            });
        }
        if chained.prev != line_hash(&before.bytes) {
            return Err(self.broken(
                line,
                BreakKind::Edited,
                format!(
                    "this line's link is not the hash of the line before it ({}): that line was edited",
                    self.place(before)
                ),
            ));
        }
        Ok(())
    }

    fn checkpoint(&self, line: &Line, chained: &Chained) -> Result<(), ChainBreak> {
        let Some(signer) = &chained.key else {
            return Err(self.broken(
                line,
                BreakKind::Unsigned,
                "this checkpoint is unsigned: the runtime had no audit signing key, so the file could have been rewritten"
                    .into(),
            ));
        };
        let Some(key) = self.key else { return Ok(()) };
        if signer != key.as_str() {
            return Err(self.broken(
                line,
                BreakKind::OtherKey,
                format!("this checkpoint is signed by {signer}, not by the key given ({})", key.as_str()),
            ));
        }
        let time = chained.time.as_deref().unwrap_or_default();
        let signature = chained.signature.as_deref().unwrap_or_default();
        if !key.verifies(chained.seq, &chained.prev, time, signature) {
            return Err(self.broken(
                line,
                BreakKind::BadSignature,
                "this checkpoint's signature does not check: it was forged, or the lines before it were rewritten"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Checks each given file's head (its last checkpoint, kept beside it)
    /// against the lines: a head beyond the end means the end was cut.
    fn heads(&self) -> Result<(), ChainBreak> {
        for (file, path) in self.files.iter().enumerate() {
            let Ok(text) = std::fs::read(head_path(path)) else { continue };
            let head = text.strip_suffix(b"\n").unwrap_or(&text);
            let Ok(chained) = parse(head) else {
                return Err(ChainBreak {
                    file: head_path(path),
                    line: 1,
                    kind: BreakKind::Malformed,
                    detail: "the head file is not a checkpoint line".into(),
                });
            };
            let last = self.lines.iter().rev().find(|l| l.file == file);
            let held = self.lines.iter().find(|l| l.chained.as_ref().is_some_and(|c| c.seq == chained.seq));
            match held {
                Some(line) if line.bytes == head => {}
                Some(line) => {
                    return Err(self.broken(
                        line,
                        BreakKind::Edited,
                        format!(
                            "the head kept beside the file names a different checkpoint at seq {}: this line was replaced",
                            chained.seq
                        ),
                    ));
                }
                None => {
                    let first = self.lines.iter().find_map(|l| l.chained.as_ref().map(|c| c.seq));
                    if first.is_some_and(|first| chained.seq < first) {
                        continue;
                    }
                    let ends_at = last.and_then(|l| l.chained.as_ref()).map_or(0, |c| c.seq);
                    let at = last.map_or(0, |l| l.number);
                    return Err(ChainBreak {
                        file: path.clone(),
                        line: at,
                        kind: BreakKind::Truncated,
                        detail: format!(
                            "the file ends at seq {ends_at}, but its head names a checkpoint at seq {}: lines were cut from the end",
                            chained.seq
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

fn summarize(path: &Path, file: usize, lines: &[Line]) -> VerifiedFile {
    let mine: Vec<&Line> = lines.iter().filter(|l| l.file == file).collect();
    let chained: Vec<&Chained> = mine.iter().filter_map(|l| l.chained.as_ref()).collect();
    let last_checkpoint = mine.iter().rposition(|l| l.chained.as_ref().is_some_and(|c| c.event == "checkpoint"));
    let times: Vec<&String> = chained.iter().filter_map(|c| c.time.as_ref()).collect();
    VerifiedFile {
        file: path.to_owned(),
        lines: mine.len(),
        seqs: chained.first().zip(chained.last()).map(|(a, b)| (a.seq, b.seq)),
        checkpoints: chained.iter().filter(|c| c.event == "checkpoint").count(),
        last_checkpoint: last_checkpoint.map(|i| mine[i].number),
        unsealed: mine.len() - last_checkpoint.map_or(0, |i| i + 1),
        times: times.first().zip(times.last()).map(|(a, b)| ((*a).clone(), (*b).clone())),
    }
}
