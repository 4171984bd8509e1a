//! Filesystem: the granted directories, each preopened at its guest path
//! with its mode, plus the invocation's scratch dir.
//!
//! Containment is cap-std's: every path the guest opens is resolved inside
//! the preopened directory handle, so `..`, absolute paths outside the grants
//! and symlinks leading out (planted by the host or by the guest) all fail.

use std::path::Path;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::InvokeError;
use crate::grant::Grant;
use crate::policy::dir::DirMode;

pub(crate) fn grant_dirs(wasi: &mut WasiCtxBuilder, grant: &Grant, scratch: Option<&Path>) -> Result<(), InvokeError> {
    for dir in &grant.filesystem {
        let perms = match dir.mode {
            DirMode::ReadOnly => FsPerms::ReadOnly,
            DirMode::ReadWrite => FsPerms::ReadWrite,
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|error| InvokeError::host(format!("opening granted directory `{}`", dir.host.display()), error))?;
    }
    if let (Some(guest), Some(host)) = (&grant.scratch, scratch) {
        wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|error| InvokeError::host("opening the call's scratch dir", error))?;
    }
    Ok(())
}
