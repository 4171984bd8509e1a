//! `fs-search`: finds the lines containing a string in the text files under
//! a directory. It reads with plain `std::fs`; the manifest grants the one
//! directory it may read (read-only), and nothing outside it exists for it.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toolcell_sdk::ToolError;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The text to look for.
    query: String,
    /// The directory to search, as the tool sees it (default `/data`, where the manifest mounts it).
    #[serde(default = "default_root")]
    path: String,
    /// Match case exactly (default: ignore case).
    #[serde(default)]
    case_sensitive: bool,
    /// Stop after this many matching lines (default 50).
    #[serde(default = "default_max_results")]
    max_results: u32,
}

fn default_root() -> String {
    "/data".to_owned()
}

fn default_max_results() -> u32 {
    50
}

#[derive(Serialize, JsonSchema)]
struct Match {
    /// The file, as the tool sees it.
    file: String,
    /// 1-based line number.
    line: usize,
    /// The line's text (cut at 500 characters).
    text: String,
}

#[derive(Serialize, JsonSchema)]
struct Found {
    /// Matching lines, in file order.
    matches: Vec<Match>,
    /// Text files read.
    files_searched: usize,
    /// True when `max_results` stopped the search.
    truncated: bool,
}

/// Files larger than this are skipped: the search is for documents, not dumps.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Searches the text files under a directory for lines containing a string.
#[toolcell_sdk::tool]
fn fs_search(input: Input) -> Result<Found, ToolError> {
    if input.query.is_empty() {
        return Err(ToolError::InvalidInput("field `query`: must not be empty".into()));
    }
    let needle = if input.case_sensitive { input.query.clone() } else { input.query.to_lowercase() };
    let mut found = Found { matches: Vec::new(), files_searched: 0, truncated: false };
    let mut pending = vec![PathBuf::from(&input.path)];
    // The root must be readable; below it, unreadable entries are skipped.
    std::fs::read_dir(&input.path).map_err(|e| ToolError::Denied(format!("{}: {e}", input.path)))?;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && search_file(&path, &needle, input.case_sensitive, input.max_results, &mut found)
            {
                found.truncated = true;
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// Adds the file's matching lines; true once `max` matches are reached.
fn search_file(path: &Path, needle: &str, case_sensitive: bool, max: u32, found: &mut Found) -> bool {
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_FILE_BYTES);
    let Some(text) = small.then(|| std::fs::read_to_string(path).ok()).flatten() else { return false };
    found.files_searched += 1;
    for (number, line) in text.lines().enumerate() {
        let hit = if case_sensitive { line.contains(needle) } else { line.to_lowercase().contains(needle) };
        if hit {
            if found.matches.len() as u32 >= max {
                return true;
            }
            found.matches.push(Match {
                file: path.display().to_string(),
                line: number + 1,
                text: line.chars().take(500).collect(),
            });
        }
    }
    false
}
