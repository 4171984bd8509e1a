//! Key files written whole. Several runtimes may start at once on one state
//! directory, and each may find no key file and make one: a reader must see
//! no file, or a whole one, never one created but not yet written.

use std::io::Write;
use std::path::Path;

/// How [`write_whole`] puts the new file in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placing {
    /// Only where no file exists yet; `AlreadyExists` where one does (another
    /// runtime made it first: read that one).
    Create,
    /// Over whatever is there.
    Replace,
}

/// Writes `bytes` to a temporary file of this process's own beside `path`
/// (mode 0600, synced), then puts it in place as `placing` says: linked in,
/// or renamed over the old file. Atomic either way: a crash leaves the old
/// file or the new one, never half of it. Makes the parent directory if needed.
pub(crate) fn write_whole(path: &Path, bytes: &[u8], placing: Placing) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let placed = options
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| match placing {
            Placing::Create => std::fs::hard_link(&temporary, path),
            Placing::Replace => std::fs::rename(&temporary, path),
        });
    let _ = std::fs::remove_file(&temporary);
    placed
}
