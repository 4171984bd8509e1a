//! The behaviour baseline `toolcell serve` compares live behaviour with
//! (`[monitor] baseline` in the runtime config). It is re-read when the
//! file changes; a file that fails to load is reported and the last good
//! baseline stays in force. At start, a bad file stops the server (that is
//! done by the runtime, which reads it first).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use toolcell_runtime::{Baseline, Runtime};

/// The baseline file, and what was read last.
pub struct BaselineFile {
    path: Option<PathBuf>,
    stamp: Mutex<Vec<(PathBuf, Option<SystemTime>, u64)>>,
}

impl BaselineFile {
    /// The file the runtime read at start (`None`: no baseline is watched).
    pub fn new(path: Option<PathBuf>) -> BaselineFile {
        let stamp = path.iter().cloned().collect::<Vec<_>>();
        BaselineFile { stamp: Mutex::new(super::catalog::stamps(stamp)), path }
    }

    /// Reloads when the file changed. A file that fails keeps the last good
    /// baseline in force, and says why.
    pub fn reload_if_changed(&self, runtime: &Runtime) {
        let Some(path) = &self.path else { return };
        let seen = super::catalog::stamps([path.clone()]);
        let mut stamp = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if seen == *stamp {
            return;
        }
        *stamp = seen;
        match Baseline::load(path) {
            Ok(baseline) => {
                eprintln!(
                    "toolcell: reloaded the baseline from {} ({} tools, {} principals)",
                    path.display(),
                    baseline.tools.len(),
                    baseline.principals.len()
                );
                runtime.controls().set_baseline(Some(baseline));
            }
            Err(error) => eprintln!("toolcell: baseline not reloaded; the last good one stays in force: {error}"),
        }
    }
}
