//! The hash chain, checkpoints and rotation, and `verify` catching each way
//! of tampering with the place it happened.

use std::path::PathBuf;

use super::chain::{GENESIS, head_path, line_hash};
use super::*;

struct Trail {
    _dir: tempfile::TempDir,
    path: PathBuf,
    key: PathBuf,
}

impl Trail {
    fn new() -> Trail {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = dir.path().join("keys/audit-key.json");
        Trail { _dir: dir, path, key }
    }

    fn settings(&self) -> AuditSettings {
        AuditSettings { signing_key: Some(self.key.clone()), ..AuditSettings::default() }
    }

    fn audit(&self) -> Audit {
        Audit::to_file(&self.path, &self.settings()).unwrap()
    }

    fn public(&self) -> SealPublicKey {
        SealPublicKey::read(&self.key).unwrap()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path).unwrap().lines().map(str::to_owned).collect()
    }

    fn write_lines(&self, lines: &[String]) {
        std::fs::write(&self.path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    fn verify(&self) -> Verification {
        verify(std::slice::from_ref(&self.path), Some(&self.public())).unwrap()
    }

    fn first_break(&self) -> ChainBreak {
        let result = self.verify();
        result.first_break.unwrap_or_else(|| panic!("no break found in {:#?}", self.lines()))
    }
}

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        time: now_rfc3339(),
        task: format!("task-{n}"),
        tool: "echo".into(),
        principal: "alice".into(),
        actor: None,
        request: None,
        kind: AuditKind::TaskRefused { reason: format!("reason {n}") },
    }
}

/// A trail of `events` events with a checkpoint after every `seal_every`.
fn written(trail: &Trail, events: usize, seal_every: usize) {
    let audit = trail.audit();
    for n in 0..events {
        audit.record(event(n)).unwrap();
        if (n + 1) % seal_every == 0 {
            audit.seal().unwrap();
        }
    }
    drop(audit);
}

fn field(line: &str, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap()[name].clone()
}

#[test]
fn every_line_links_to_the_one_before_and_checkpoints_sign_them() {
    let trail = Trail::new();
    written(&trail, 5, 2);
    let lines = trail.lines();
    // 5 events, a checkpoint after the 2nd and 4th, and one when the audit is dropped.
    assert_eq!(lines.len(), 8, "{lines:#?}");
    assert_eq!(field(&lines[0], "seq"), 1);
    assert_eq!(field(&lines[0], "prev"), GENESIS);
    for pair in lines.windows(2) {
        assert_eq!(field(&pair[1], "prev"), line_hash(pair[0].as_bytes()).as_str());
        assert_eq!(field(&pair[1], "seq").as_u64().unwrap(), field(&pair[0], "seq").as_u64().unwrap() + 1);
    }
    let checkpoints: Vec<&String> = lines.iter().filter(|l| field(l, "event") == "checkpoint").collect();
    assert_eq!(checkpoints.len(), 3);
    assert_eq!(field(checkpoints[0], "key"), trail.public().as_str());
    assert_eq!(lines.last(), checkpoints.last().copied(), "a dropped runtime leaves its file sealed");
    let result = trail.verify();
    assert!(result.first_break.is_none(), "{result:#?}");
    assert_eq!(result.files[0].seqs, Some((1, 8)));
    assert_eq!(result.files[0].unsealed, 0);
    // The head beside the file is the last checkpoint.
    assert_eq!(std::fs::read_to_string(head_path(&trail.path)).unwrap().trim_end(), lines[7]);
}

#[test]
fn a_restarted_runtime_continues_the_chain() {
    let trail = Trail::new();
    written(&trail, 2, 100);
    written(&trail, 2, 100);
    let lines = trail.lines();
    assert_eq!(lines.len(), 6);
    assert_eq!(field(&lines[5], "seq"), 6);
    assert!(trail.verify().first_break.is_none());
}

#[test]
fn an_edited_line_is_named_by_the_link_after_it() {
    let trail = Trail::new();
    written(&trail, 6, 3);
    let mut lines = trail.lines();
    lines[1] = lines[1].replace("reason 1", "reason X");
    trail.write_lines(&lines);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Edited, 3), "{broken}");
    assert!(broken.detail.contains("line 2") && broken.detail.contains("edited"), "{broken}");
}

#[test]
fn a_deleted_line_shows_as_a_gap() {
    let trail = Trail::new();
    written(&trail, 6, 3);
    let mut lines = trail.lines();
    lines.remove(2);
    trail.write_lines(&lines);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Deleted, 3), "{broken}");
    assert!(broken.detail.contains("seq 4 follows seq 2") && broken.detail.contains("1 line(s)"), "{broken}");
}

#[test]
fn an_inserted_line_shows_whatever_it_claims() {
    let trail = Trail::new();
    written(&trail, 6, 3);
    let original = trail.lines();

    // A copy of a real line (a replay).
    let mut lines = original.clone();
    lines.insert(3, lines[2].clone());
    trail.write_lines(&lines);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Inserted, 4), "{broken}");
    assert!(broken.detail.contains("first at line 3"), "{broken}");

    // A forged line with the right next seq and a correct link: the real
    // line after it then repeats its seq.
    let mut lines = original.clone();
    let forged = format!(
        "{{\"seq\":3,\"prev\":\"{}\",\"time\":\"2026-12-01T00:00:00Z\",\"task\":\"t\",\"tool\":\"echo\",\"principal\":\"mallory\",\"event\":\"task_refused\",\"reason\":\"nothing to see\"}}",
        line_hash(lines[1].as_bytes())
    );
    lines.insert(2, forged);
    trail.write_lines(&lines);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Inserted, 4), "{broken}");

    // A line that is not chained at all.
    let mut lines = original;
    lines.insert(1, r#"{"time":"2026-12-01T00:00:00Z","event":"task_refused"}"#.into());
    trail.write_lines(&lines);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Malformed, 2), "{broken}");
    assert!(broken.detail.contains("no `seq`"), "{broken}");
}

#[test]
fn reordered_lines_show_as_moved() {
    let trail = Trail::new();
    written(&trail, 6, 3);
    let mut lines = trail.lines();
    lines.swap(1, 2);
    trail.write_lines(&lines);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Reordered, 2), "{broken}");
    assert!(broken.detail.contains("seq 2 comes later (line 3)"), "{broken}");
}

#[test]
fn a_cut_tail_shows_mid_line_and_after_the_last_checkpoint() {
    let trail = Trail::new();
    written(&trail, 6, 3);
    let lines = trail.lines();

    // Cut inside the last line.
    let text = std::fs::read_to_string(&trail.path).unwrap();
    std::fs::write(&trail.path, &text[..text.len() - 10]).unwrap();
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Truncated, lines.len()), "{broken}");
    assert!(broken.detail.contains("ends inside this line"), "{broken}");

    // Cut cleanly back to an earlier checkpoint: every link holds, but the
    // head beside the file names a later checkpoint.
    let cut = lines.iter().position(|l| field(l, "event") == "checkpoint").unwrap();
    trail.write_lines(&lines[..=cut]);
    let broken = trail.first_break();
    assert_eq!(broken.kind, BreakKind::Truncated, "{broken}");
    assert!(broken.detail.contains("lines were cut from the end"), "{broken}");
}

#[test]
fn a_forged_or_foreign_checkpoint_does_not_check() {
    let trail = Trail::new();
    written(&trail, 4, 2);
    let lines = trail.lines();
    let at = lines.iter().position(|l| field(l, "event") == "checkpoint").unwrap();

    // The whole file rewritten with consistent links: only the signature shows it.
    let mut rewritten = Vec::new();
    let mut prev = GENESIS.to_owned();
    for line in &lines {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value["event"] == "task_refused" {
            value["principal"] = "mallory".into();
        }
        value["prev"] = prev.clone().into();
        let text = serde_json::to_string(&value).unwrap();
        prev = line_hash(text.as_bytes());
        rewritten.push(text);
    }
    trail.write_lines(&rewritten);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::BadSignature, at + 1), "{broken}");

    // Checkpoints signed by another key (the forger's own).
    let forger = Trail::new();
    let forger_key = SealKey::open_or_create(&forger.key).unwrap();
    let mut forged = Vec::new();
    let mut prev = GENESIS.to_owned();
    for line in &lines {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        value["prev"] = prev.clone().into();
        if value["event"] == "checkpoint" {
            let seq = value["seq"].as_u64().unwrap();
            let time = value["time"].as_str().unwrap().to_owned();
            value["key"] = forger_key.public().into();
            value["signature"] = forger_key.sign(seq, &prev, &time).into();
        }
        let text = serde_json::to_string(&value).unwrap();
        prev = line_hash(text.as_bytes());
        forged.push(text);
    }
    trail.write_lines(&forged);
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::OtherKey, at + 1), "{broken}");
}

#[test]
fn a_trail_without_a_key_is_reported_unprotected() {
    let trail = Trail::new();
    let audit = Audit::to_file(&trail.path, &AuditSettings::default()).unwrap();
    audit.record(event(1)).unwrap();
    audit.seal().unwrap();
    drop(audit);
    let key = SealKey::open_or_create(&trail.key).unwrap().public_key();
    let result = verify(std::slice::from_ref(&trail.path), Some(&key)).unwrap();
    let broken = result.first_break.unwrap();
    assert_eq!((broken.kind, broken.line), (BreakKind::Unsigned, 2), "{broken}");
}

#[test]
fn rotated_files_link_into_one_chain() {
    let trail = Trail::new();
    let settings = AuditSettings { rotate_at: Some(crate::units::ByteSize(4096)), ..trail.settings() };
    let audit = Audit::to_file(&trail.path, &settings).unwrap();
    for n in 0..40 {
        audit.record(event(n)).unwrap();
        audit.seal().unwrap();
    }
    drop(audit);
    let dir = trail.path.parent().unwrap();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("audit.jsonl."))
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 2, "{rotated:?}");
    // The live file starts with the link to the last rotated one.
    let first = trail.lines()[0].clone();
    assert_eq!(field(&first, "event"), "audit_rotated");
    assert_eq!(field(&first, "previous"), rotated.last().unwrap().file_name().unwrap().to_string_lossy().as_ref());
    let last_line = std::fs::read_to_string(rotated.last().unwrap()).unwrap().lines().last().unwrap().to_owned();
    assert_eq!(field(&first, "prev"), line_hash(last_line.as_bytes()).as_str());

    // Given in any order, they verify as one chain.
    let mut all = vec![trail.path.clone()];
    all.extend(rotated.iter().rev().cloned());
    let result = verify(&all, Some(&trail.public())).unwrap();
    assert!(result.first_break.is_none(), "{result:#?}");
    assert_eq!(result.files.first().unwrap().seqs.unwrap().0, 1);

    // A rotated file left out is a broken link.
    let mut missing = all.clone();
    missing.retain(|p| p != &rotated[rotated.len() - 1]);
    let broken = verify(&missing, Some(&trail.public())).unwrap().first_break.unwrap();
    assert_eq!(broken.kind, BreakKind::Unlinked, "{broken}");
    // The live file alone is checked from where it starts.
    let alone = verify(std::slice::from_ref(&trail.path), Some(&trail.public())).unwrap();
    assert!(alone.first_break.is_none(), "{alone:#?}");
    assert!(alone.notes.iter().any(|n| n.contains("earlier file that was not given")), "{:?}", alone.notes);
}

#[test]
fn two_runtimes_appending_to_one_file_keep_one_chain() {
    let trail = Trail::new();
    let first = trail.audit();
    let second = trail.audit();
    std::thread::scope(|scope| {
        for audit in [&first, &second] {
            scope.spawn(move || {
                for n in 0..200 {
                    audit.record(event(n)).unwrap();
                    if n % 50 == 0 {
                        audit.seal().unwrap();
                    }
                }
            });
        }
    });
    drop((first, second));
    let result = trail.verify();
    assert!(result.first_break.is_none(), "{result:#?}");
    let events = trail.lines().iter().filter(|l| field(l, "event") == "task_refused").count();
    assert_eq!(events, 400, "nothing lost");
}

#[test]
fn a_torn_or_unchained_tail_is_kept_and_the_chain_resumes_after_it() {
    let trail = Trail::new();
    written(&trail, 2, 100);
    let mut text = std::fs::read_to_string(&trail.path).unwrap();
    text.push_str("{\"seq\":9,\"prev\":\"ab"); // a write torn by a crash
    std::fs::write(&trail.path, &text).unwrap();
    written(&trail, 1, 100);
    let lines = trail.lines();
    assert!(lines[3].starts_with("{\"seq\":9,\"prev\":\"ab"), "the torn line is kept as evidence");
    assert_eq!(field(&lines[4], "event"), "audit_resumed");
    assert_eq!(field(&lines[4], "prev"), line_hash(lines[3].as_bytes()).as_str());
    let broken = trail.first_break();
    assert_eq!((broken.kind, broken.line), (BreakKind::Malformed, 4), "{broken}");
}

#[test]
fn the_checkpoint_timer_seals_what_waits() {
    let trail = Trail::new();
    let settings = AuditSettings {
        checkpoint_interval: crate::units::TimeSpan(std::time::Duration::from_millis(50)),
        ..trail.settings()
    };
    let audit = Audit::to_file(&trail.path, &settings).unwrap();
    audit.record(event(1)).unwrap();
    let sealed = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        trail.lines().last().is_some_and(|l| field(l, "event") == "checkpoint")
    });
    assert!(sealed, "{:#?}", trail.lines());
    drop(audit);
}

#[test]
fn settings_that_make_no_sense_are_refused() {
    let zero = AuditSettings { checkpoint_every: 0, ..AuditSettings::default() };
    assert_eq!(zero.problem().unwrap().0, "checkpoint_every");
    let tiny = AuditSettings { rotate_at: Some(crate::units::ByteSize(10)), ..AuditSettings::default() };
    assert_eq!(tiny.problem().unwrap().0, "rotate_at");
    assert!(AuditSettings::default().problem().is_none());
}
