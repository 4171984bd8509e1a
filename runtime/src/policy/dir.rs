//! Directory grants: a host directory, where the guest sees it, and what it
//! may do there.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// One directory a tool may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// Host directory (canonical, so later checks compare real paths).
    pub host: PathBuf,
    /// Absolute path inside the guest.
    pub guest: String,
    /// What the tool may do there.
    pub mode: DirMode,
}

/// Access to a granted directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirMode {
    /// List and read only.
    ReadOnly,
    /// Read, create, write, rename and remove.
    ReadWrite,
}

impl fmt::Display for DirMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirMode::ReadOnly => "read-only",
            DirMode::ReadWrite => "read-write",
        })
    }
}
