#![forbid(unsafe_code)]
//! Paths of the guest components built by this crate's build script, for
//! tests. Each is a real component compiled from source in this repository.

/// WASI command that performs one hostile or ordinary action per run.
pub const PROBE_COMMAND: &str = env!("TOOLCELL_GUEST_PROBE_COMMAND");
/// toolcell tool that performs one hostile or ordinary action per call.
pub const PROBE_TOOL: &str = env!("TOOLCELL_GUEST_PROBE_TOOL");
/// A plain component (no toolcell world) exporting functions over every kind of WIT type.
pub const PLAIN_CALC: &str = env!("TOOLCELL_GUEST_PLAIN_CALC");
/// The `word-count` example tool.
pub const WORD_COUNT: &str = env!("TOOLCELL_GUEST_WORD_COUNT");
/// The `file-stats` example command.
pub const FILE_STATS: &str = env!("TOOLCELL_GUEST_FILE_STATS");
/// The `http-get` example tool.
pub const HTTP_GET: &str = env!("TOOLCELL_GUEST_HTTP_GET");
/// The `fs-search` example tool.
pub const FS_SEARCH: &str = env!("TOOLCELL_GUEST_FS_SEARCH");
/// The `github-issues` example tool.
pub const GITHUB_ISSUES: &str = env!("TOOLCELL_GUEST_GITHUB_ISSUES");

pub mod oauth;
pub mod openbao;
