//! What the benches of `toolcell` share.

use std::path::{Path, PathBuf};

use toolcell_test_guests as guests;

/// Writes `word-count.toml` in `dir`: the word-count test component as a
/// tool with nothing granted. Returns its path.
pub fn word_count_manifest(dir: &Path) -> PathBuf {
    let path = dir.join("word-count.toml");
    std::fs::write(
        &path,
        format!(
            "[tool]\nname = \"word-count\"\nowner = \"bench\"\npurpose = \"bench\"\nreview_by = 2099-01-01\n\
             component = \"{}\"\n",
            guests::WORD_COUNT
        ),
    )
    .unwrap();
    path
}
