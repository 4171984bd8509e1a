//! The operator's trust boundary. Manifests are written by tool authors; the
//! runtime config by the operator. A manifest states the most a tool may be
//! granted, but some things are never a tool author's to grant, however the
//! manifest is written. [`Boundary::check`] refuses, at load, a manifest that:
//!
//! - gives a credential a longer life than the operator's `max_credential_ttl`;
//! - binds a `static` (operator-held root) secret to an origin the operator
//!   did not list for it;
//! - injects a credential over plain `http://` to a host the operator did not
//!   allow plaintext for;
//! - passes through an environment variable the runtime reads a secret from,
//!   or any `TOOLCELL_*` variable;
//! - grants a directory that holds, or lies inside, the runtime's own state
//!   (audit log, lease journal, issuer keys, precompile cache, scratch root,
//!   config file, secret files).
//!
//! Each refusal names the manifest field and what it would cross.

use std::path::{Path, PathBuf};

use crate::config::RuntimeConfig;
use crate::credentials::config::{SecretSource, StaticSecret};
use crate::manifest::Manifest;
use crate::policy::credential::{Exposure, ProviderKind};
use crate::policy::egress::{EgressRule, Scheme};
use crate::policy::env::EnvSource;
use crate::units::TimeSpan;

/// What the operator's config fences off, kept by the runtime.
#[derive(Debug)]
pub(crate) struct Boundary {
    max_credential_ttl: TimeSpan,
    plaintext_hosts: Vec<String>,
    statics: Vec<StaticSecret>,
    reserved_env: Vec<String>,
    reserved_paths: Vec<PathBuf>,
}

/// A manifest field that would cross the operator's boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Crossing {
    /// The manifest field, dotted (`credentials[0].max_ttl`).
    pub(crate) field: String,
    /// What it would cross, naming both sides.
    pub(crate) reason: String,
}

impl Boundary {
    /// The boundary of `config`, with `scratch_root` (the runtime's resolved one).
    pub(crate) fn new(config: &RuntimeConfig, scratch_root: &Path) -> Boundary {
        let providers = &config.credentials;
        let mut reserved_env = config.reserved_env.clone();
        let mut reserved_paths = config.reserved_paths.clone();
        for source in providers.secret_sources() {
            match source {
                SecretSource::Env(name) => reserved_env.push(name.clone()),
                SecretSource::File(path) => reserved_paths.push(path.clone()),
            }
        }
        reserved_paths.extend(config.audit_log.clone());
        reserved_paths.extend(config.audit.signing_key.clone());
        reserved_paths.extend(config.lease_journal.clone());
        reserved_paths.extend(providers.issuer.keys.clone());
        reserved_paths.extend(config.engine.cache_dir.clone());
        reserved_paths.push(scratch_root.to_owned());
        Boundary {
            max_credential_ttl: config.max_credential_ttl,
            plaintext_hosts: config.plaintext_credential_hosts.clone(),
            statics: providers.statics.clone(),
            reserved_env,
            reserved_paths,
        }
    }

    /// Refuses the first field of `manifest` that crosses the boundary.
    pub(crate) fn check(&self, manifest: &Manifest) -> Result<(), Crossing> {
        self.check_credentials(manifest)?;
        self.check_env(manifest)?;
        self.check_dirs(manifest)
    }

    fn check_credentials(&self, manifest: &Manifest) -> Result<(), Crossing> {
        for (index, spec) in manifest.credentials.iter().enumerate() {
            let field = |name: &str| format!("credentials[{index}].{name}");
            if spec.max_ttl > self.max_credential_ttl {
                return Err(Crossing {
                    field: field("max_ttl"),
                    reason: format!(
                        "credential `{}` may live {}, above the runtime's max_credential_ttl of {}",
                        spec.name, spec.max_ttl, self.max_credential_ttl
                    ),
                });
            }
            let Exposure::Inject(injection) = &spec.exposure else { continue };
            for url in &injection.egress {
                let Some(rule) = manifest.egress.iter().find(|rule| &rule.url == url) else { continue };
                if spec.provider == ProviderKind::Static {
                    self.check_static_origin(&spec.name, &spec.audience, rule, field("inject.egress"))?;
                }
                if rule.scheme == Scheme::Http && !self.plaintext_hosts.contains(&rule.host.to_string()) {
                    return Err(Crossing {
                        field: field("inject.egress"),
                        reason: format!(
                            "credential `{}` would be injected over plain http into `{url}`; the runtime config \
                             allows plaintext credentials only for the hosts in plaintext_credential_hosts ({})",
                            spec.name,
                            list(&self.plaintext_hosts)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// A static secret goes only to the origins its `[[static]]` entry lists.
    fn check_static_origin(
        &self,
        name: &str,
        audience: &str,
        rule: &EgressRule,
        field: String,
    ) -> Result<(), Crossing> {
        let refuse =
            |reason: String| Crossing { field: field.clone(), reason: format!("credential `{name}`: {reason}") };
        let Some(secret) = self.statics.iter().find(|s| s.audience == audience) else {
            return Err(refuse(format!("the runtime config has no [[static]] secret for audience `{audience}`")));
        };
        let allowed = secret.origins.iter().any(|origin| {
            EgressRule::parse(origin)
                .is_ok_and(|o| o.scheme == rule.scheme && o.host == rule.host && o.port == rule.port)
        });
        if allowed {
            return Ok(());
        }
        Err(refuse(format!(
            "the operator's static secret for `{audience}` may go to {}, not to the origin of rule `{}` \
             ({}://{}:{})",
            list(&secret.origins),
            rule.url,
            rule.scheme.name(),
            rule.host,
            rule.port
        )))
    }

    fn check_env(&self, manifest: &Manifest) -> Result<(), Crossing> {
        for (index, grant) in manifest.env.iter().enumerate() {
            if grant.source != EnvSource::Host {
                continue;
            }
            let reserved = grant.name.starts_with("TOOLCELL_") || self.reserved_env.contains(&grant.name);
            if reserved {
                return Err(Crossing {
                    field: format!("env[{index}]"),
                    reason: format!(
                        "`{}` is where the runtime reads its own secrets or settings (every TOOLCELL_* variable, \
                         and each variable the runtime config reads a secret from); no tool may see it",
                        grant.name
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_dirs(&self, manifest: &Manifest) -> Result<(), Crossing> {
        let reserved: Vec<(PathBuf, &PathBuf)> =
            self.reserved_paths.iter().map(|path| (real_path(path), path)).collect();
        for (index, dir) in manifest.filesystem.iter().enumerate() {
            let granted = real_path(&dir.host);
            for (real, named) in &reserved {
                if real.starts_with(&granted) || granted.starts_with(real) {
                    return Err(Crossing {
                        field: format!("filesystem[{index}].host"),
                        reason: format!(
                            "`{}` overlaps the runtime's own state at `{}`; no tool may be granted it",
                            dir.host.display(),
                            named.display()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The real path of `path`: its nearest existing ancestor canonicalised (the
/// state may not exist yet: an audit log is made on first write), with the
/// rest appended. Reads the host filesystem (ambient authority).
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        // Ambient authority: the host filesystem resolves the runtime's state paths.
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |path: PathBuf, part| path.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::credential::{CredentialSpec, Injection};
    use crate::policy::dir::{DirGrant, DirMode};
    use crate::policy::env::EnvGrant;

    fn injected(provider: ProviderKind, audience: &str, rule: &str) -> CredentialSpec {
        CredentialSpec {
            name: "key".into(),
            provider,
            scopes: Vec::new(),
            audience: audience.into(),
            max_ttl: TimeSpan(Duration::from_secs(60)),
            exposure: Exposure::Inject(Injection {
                egress: vec![rule.into()],
                header: "authorization".into(),
                format: "Bearer {token}".into(),
            }),
            approval: None,
        }
    }

    fn manifest_with(rule: &str, spec: CredentialSpec) -> Manifest {
        let mut manifest = Manifest::ad_hoc(Path::new("t.wasm"));
        manifest.egress = vec![EgressRule::parse(rule).unwrap()];
        manifest.credentials = vec![spec];
        manifest
    }

    fn config() -> RuntimeConfig {
        let mut config = RuntimeConfig::default();
        config.credentials.statics = vec![StaticSecret {
            audience: "github".into(),
            secret: SecretSource::Env("GITHUB_TOKEN".into()),
            origins: vec!["https://api.github.com".into()],
        }];
        config
    }

    #[test]
    fn a_static_secret_goes_only_to_the_origins_the_operator_lists() {
        let boundary = Boundary::new(&config(), Path::new("/nonexistent/scratch"));
        let ok = manifest_with(
            "https://api.github.com/repos/*",
            injected(ProviderKind::Static, "github", "https://api.github.com/repos/*"),
        );
        assert_eq!(boundary.check(&ok), Ok(()));
        for elsewhere in ["https://evil.test/*", "https://api.github.com:8443/*", "https://*.github.com/*"] {
            let manifest = manifest_with(elsewhere, injected(ProviderKind::Static, "github", elsewhere));
            let crossing = boundary.check(&manifest).unwrap_err();
            assert_eq!(crossing.field, "credentials[0].inject.egress");
            assert!(crossing.reason.contains("may go to https://api.github.com"), "{}", crossing.reason);
        }
        let unknown = manifest_with("https://x.test/*", injected(ProviderKind::Static, "other", "https://x.test/*"));
        assert!(boundary.check(&unknown).unwrap_err().reason.contains("no [[static]] secret for audience `other`"));
    }

    #[test]
    fn credentials_go_over_plaintext_only_where_the_operator_allows_and_never_live_past_the_ceiling() {
        let mut config = config();
        let plain =
            manifest_with("http://127.0.0.1:9000/*", injected(ProviderKind::Issuer, "api", "http://127.0.0.1:9000/*"));
        let crossing = Boundary::new(&config, Path::new("/s")).check(&plain).unwrap_err();
        assert!(crossing.reason.contains("plain http") && crossing.reason.contains("(none)"), "{}", crossing.reason);
        config.plaintext_credential_hosts = vec!["127.0.0.1".into()];
        assert_eq!(Boundary::new(&config, Path::new("/s")).check(&plain), Ok(()));

        let mut long = plain.clone();
        long.credentials[0].max_ttl = TimeSpan(Duration::from_secs(3600));
        let crossing = Boundary::new(&config, Path::new("/s")).check(&long).unwrap_err();
        assert_eq!(crossing.field, "credentials[0].max_ttl");
        assert!(
            crossing.reason.contains("1h") && crossing.reason.contains("max_credential_ttl of 5m"),
            "{}",
            crossing.reason
        );
    }

    #[test]
    fn the_runtimes_secret_variables_and_state_directories_are_never_granted() {
        let state = tempfile::tempdir().unwrap();
        let mut config = config();
        config.audit_log = Some(state.path().join("logs/audit.jsonl"));
        config.lease_journal = Some(state.path().join("leases"));
        config.reserved_env = vec!["MCP_TOKEN".into()];
        let boundary = Boundary::new(&config, &state.path().join("scratch"));
        for name in ["GITHUB_TOKEN", "TOOLCELL_OAUTH_SECRET", "MCP_TOKEN"] {
            let mut manifest = Manifest::ad_hoc(Path::new("t.wasm"));
            manifest.env = vec![EnvGrant { name: name.into(), source: EnvSource::Host }];
            let crossing = boundary.check(&manifest).unwrap_err();
            assert!(crossing.field == "env[0]" && crossing.reason.contains(name), "{crossing:?}");
        }
        let mut literal = Manifest::ad_hoc(Path::new("t.wasm"));
        literal.env = vec![EnvGrant { name: "GITHUB_TOKEN".into(), source: EnvSource::Value("x".into()) }];
        assert_eq!(boundary.check(&literal), Ok(()), "a value the manifest writes itself is its own");

        std::fs::create_dir_all(state.path().join("docs")).unwrap();
        for (host, refused) in [(state.path().to_owned(), true), (state.path().join("docs"), false)] {
            let mut manifest = Manifest::ad_hoc(Path::new("t.wasm"));
            manifest.filesystem = vec![DirGrant { host, guest: "/d".into(), mode: DirMode::ReadOnly }];
            assert_eq!(boundary.check(&manifest).is_err(), refused, "{:?}", boundary.check(&manifest));
        }
        // Inside the state, through a symlink, is inside all the same.
        std::fs::create_dir_all(state.path().join("leases")).unwrap();
        let link = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(state.path().join("leases"), link.path().join("l")).unwrap();
        let mut manifest = Manifest::ad_hoc(Path::new("t.wasm"));
        manifest.filesystem =
            vec![DirGrant { host: link.path().join("l"), guest: "/d".into(), mode: DirMode::ReadOnly }];
        let crossing = boundary.check(&manifest).unwrap_err();
        assert!(crossing.reason.contains("leases"), "{}", crossing.reason);
    }
}
