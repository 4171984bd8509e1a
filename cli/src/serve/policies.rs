//! The request-time policies `toolcell serve` enforces: the `*.cedar` files
//! of the runtime config's `[policy] dir`, or of the `--policies` directory
//! beside the manifests. They are re-read when a file changes; a set that
//! fails to load is reported and the last good set stays in force.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use toolcell_runtime::Runtime;
use toolcell_runtime::request_policy::{PolicyErrors, PolicyMode, RequestPolicies};

/// Where the policies are read from, and what was read last.
pub struct PolicyFiles {
    dir: Option<PathBuf>,
    mode: PolicyMode,
    fingerprint: Mutex<Vec<(PathBuf, Option<SystemTime>, u64)>>,
}

/// The `*.cedar` files of `dir` with their change times and sizes.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cedar"))
        .collect();
    files.sort();
    super::catalog::stamps(files)
}

impl PolicyFiles {
    pub fn new(dir: Option<PathBuf>, mode: PolicyMode) -> PolicyFiles {
        PolicyFiles { dir, mode, fingerprint: Mutex::new(Vec::new()) }
    }

    /// Loads the policies into `runtime`; at start a bad set stops the server.
    pub fn load(&self, runtime: &Runtime) -> Result<(), PolicyErrors> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let seen = fingerprint(dir);
        let policies = RequestPolicies::load_dir(dir, self.mode)?;
        eprintln!(
            "toolcell: {} request-time polic{} from {} (mode {})",
            policies.len(),
            if policies.len() == 1 { "y" } else { "ies" },
            dir.display(),
            self.mode.name()
        );
        runtime.set_policies(policies);
        *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        Ok(())
    }

    /// Reloads when a policy file was added, removed or changed. A set that
    /// fails keeps the last good one in force, and says why.
    pub fn reload_if_changed(&self, runtime: &Runtime) {
        let Some(dir) = &self.dir else { return };
        let seen = fingerprint(dir);
        if seen == *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        match RequestPolicies::load_dir(dir, self.mode) {
            Ok(policies) => {
                eprintln!("toolcell: reloaded {} request-time policies from {}", policies.len(), dir.display());
                runtime.set_policies(policies);
            }
            Err(errors) => {
                eprintln!(
                    "toolcell: policies in {} not reloaded; the last good set ({} policies) stays in force:\n{errors}",
                    dir.display(),
                    runtime.policies().len()
                );
            }
        }
    }
}
