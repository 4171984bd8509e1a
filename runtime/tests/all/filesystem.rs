//! Filesystem grants: what is granted can be read (and written where
//! read-write); every way out of a granted directory fails.

use crate::common::*;
use toolcell_runtime::{CallResult, DirMode};

/// A host tree: `granted/` (with a file, a subdir and a symlink that points
/// outside), and `secret.txt` beside it that must never be reachable.
fn tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir_all(granted.join("sub")).unwrap();
    std::fs::write(granted.join("hello.txt"), "hello from the host").unwrap();
    std::fs::write(granted.join("sub/inner.txt"), "inner").unwrap();
    std::fs::write(root.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), granted.join("escape-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", granted.join("relative-link")).unwrap();
    std::os::unix::fs::symlink("/etc", granted.join("etc-link")).unwrap();
    root
}

#[tokio::test]
async fn granted_files_can_be_read() {
    let h = Harness::new();
    let root = tree();
    let grant = |m: &mut toolcell_runtime::Manifest| {
        m.filesystem = vec![dir(&root.path().join("granted"), "/data", DirMode::ReadOnly)]
    };
    let report = h.probe(&["read", "/data/hello.txt"], grant).await.unwrap();
    assert_eq!(assert_allowed(&report), "hello from the host\n");
    let report = h.probe(&["read", "/data/sub/inner.txt"], grant).await.unwrap();
    assert_eq!(assert_allowed(&report), "inner\n");
    let report = h.probe(&["list", "/data"], grant).await.unwrap();
    assert_eq!(assert_allowed(&report), "escape-link\netc-link\nhello.txt\nrelative-link\nsub\n");
}

#[tokio::test]
async fn nothing_is_visible_without_a_grant() {
    let h = Harness::new();
    let root = tree();
    let path = root.path().join("granted/hello.txt");
    for args in [["read", path.to_str().unwrap()], ["read", "/etc/passwd"], ["list", "/"]] {
        let report = h.probe(&args, |_| {}).await.unwrap();
        assert_denied(&report);
    }
}

#[tokio::test]
async fn escapes_from_a_granted_dir_fail() {
    let h = Harness::new();
    let root = tree();
    let granted = root.path().join("granted");
    let secret = root.path().join("secret.txt");
    let grant = |m: &mut toolcell_runtime::Manifest| m.filesystem = vec![dir(&granted, "/data", DirMode::ReadWrite)];
    let attempts = [
        // Absolute host paths outside the grant.
        secret.to_str().unwrap().to_owned(),
        "/etc/passwd".to_owned(),
        // `..` traversal, plain and hidden in the middle.
        "/data/../secret.txt".to_owned(),
        "/data/sub/../../secret.txt".to_owned(),
        "/data/../../../../etc/passwd".to_owned(),
        // Symlinks the host left in the granted dir.
        "/data/escape-link".to_owned(),
        "/data/relative-link".to_owned(),
        "/data/etc-link/passwd".to_owned(),
    ];
    for path in attempts {
        let report = h.probe(&["read", &path], grant).await.unwrap();
        assert_denied(&report);
        assert!(!stdout(&report).contains("TOP SECRET"), "{path} leaked the secret");
    }
}

#[tokio::test]
async fn symlinks_the_guest_plants_do_not_lead_out() {
    let h = Harness::new();
    let root = tree();
    let granted = root.path().join("granted");
    let secret = root.path().join("secret.txt");
    let grant = |m: &mut toolcell_runtime::Manifest| m.filesystem = vec![dir(&granted, "/data", DirMode::ReadWrite)];

    // An absolute target and a `..` target: either planting fails, or the
    // link cannot be followed; the secret is never read.
    for (target, link) in [(secret.to_str().unwrap(), "/data/planted-abs"), ("../secret.txt", "/data/planted-rel")] {
        let planted = h.probe(&["symlink", target, link], grant).await.unwrap();
        let read = h.probe(&["read", link], grant).await.unwrap();
        assert_denied(&read);
        assert!(!stdout(&read).contains("TOP SECRET"));
        if planted.result == CallResult::Exit(0) {
            // A link the guest made is only a file in the granted dir; the host's file is untouched.
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP SECRET");
        }
    }
    // Writing through a planted link must not reach outside either.
    let _ = h.probe(&["symlink", "../secret.txt", "/data/write-link"], grant).await.unwrap();
    let report = h.probe(&["write", "/data/write-link", "overwritten"], grant).await.unwrap();
    assert_denied(&report);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP SECRET");
}

#[tokio::test]
async fn read_only_dirs_refuse_every_change() {
    let h = Harness::new();
    let root = tree();
    let granted = root.path().join("granted");
    let grant = |m: &mut toolcell_runtime::Manifest| m.filesystem = vec![dir(&granted, "/data", DirMode::ReadOnly)];
    let attempts: [&[&str]; 6] = [
        &["write", "/data/new.txt", "x"],
        &["write", "/data/hello.txt", "overwritten"],
        &["append", "/data/hello.txt", "more"],
        &["remove", "/data/hello.txt"],
        &["mkdir", "/data/newdir"],
        &["rename", "/data/hello.txt", "/data/moved.txt"],
    ];
    for args in attempts {
        let report = h.probe(args, grant).await.unwrap();
        assert_denied(&report);
    }
    assert_eq!(std::fs::read_to_string(granted.join("hello.txt")).unwrap(), "hello from the host");
    assert!(!granted.join("new.txt").exists() && !granted.join("newdir").exists());
}

#[tokio::test]
async fn read_write_dirs_accept_changes() {
    let h = Harness::new();
    let root = tree();
    let granted = root.path().join("granted");
    let grant = |m: &mut toolcell_runtime::Manifest| m.filesystem = vec![dir(&granted, "/data", DirMode::ReadWrite)];
    assert_allowed(&h.probe(&["write", "/data/new.txt", "made by the guest"], grant).await.unwrap());
    assert_eq!(std::fs::read_to_string(granted.join("new.txt")).unwrap(), "made by the guest");
    assert_allowed(&h.probe(&["remove", "/data/hello.txt"], grant).await.unwrap());
    assert!(!granted.join("hello.txt").exists());
}

#[tokio::test]
async fn scratch_dir_is_fresh_per_invocation_and_removed() {
    let h = Harness::new();
    let grant = |m: &mut toolcell_runtime::Manifest| m.scratch = Some("/scratch".into());
    assert_allowed(&h.probe(&["write", "/scratch/left-behind", "x"], grant).await.unwrap());
    // The next invocation gets an empty scratch dir: nothing survives a call.
    let report = h.probe(&["read", "/scratch/left-behind"], grant).await.unwrap();
    assert_denied(&report);
    let report = h.probe(&["list", "/scratch"], grant).await.unwrap();
    assert_eq!(assert_allowed(&report), "\n");
    // The runtime's own scratch directory (0700) holds only its lock file.
    let runtime_dir = h.runtime.scratch_dir();
    assert!(runtime_dir.starts_with(h.scratch_root()), "{}", runtime_dir.display());
    let leftovers: Vec<_> = std::fs::read_dir(runtime_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from(".lock")], "scratch dirs left behind");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(runtime_dir).unwrap().permissions().mode() & 0o777, 0o700);
}

#[tokio::test]
async fn a_scratch_dir_is_private_while_the_call_runs() {
    let h = Harness::new();
    let grant = |m: &mut toolcell_runtime::Manifest| m.scratch = Some("/scratch".into());
    let call = h.probe(&["write-and-sleep", "/scratch/f", "x", "2"], grant);
    let look = async {
        // While the call runs its directory exists, readable by this user only.
        for _ in 0..100 {
            let dirs: Vec<_> = std::fs::read_dir(h.runtime.scratch_dir())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .collect();
            if let Some(dir) = dirs.first() {
                use std::os::unix::fs::PermissionsExt;
                return std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no scratch directory appeared while the call ran");
    };
    let (report, mode) = tokio::join!(call, look);
    assert_allowed(&report.unwrap());
    assert_eq!(mode, 0o700, "a call's scratch directory is open to others");
}
