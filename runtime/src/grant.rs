//! The grant: the validated intersection of a manifest and a task's narrowing.
//!
//! This is the one place that decides what an invocation may touch. A task can
//! only attenuate what the manifest grants: ask for fewer directories, a weaker
//! mode, fewer variables, lower limits. Anything that would widen the manifest
//! is refused with an error naming what it tried to widen. Capability code
//! reads the [`Grant`] and nothing else.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::manifest::Manifest;
use crate::policy::credential::{CredentialSpec, ProviderKind};
use crate::policy::dir::{DirGrant, DirMode};
use crate::policy::egress::EgressRule;
use crate::policy::env::EnvSource;
use crate::policy::limits::Limits;
use crate::policy::socket::SocketGrant;
use crate::units::{ByteSize, TimeSpan};

/// What a task asks to keep of its manifest's grants. `None` fields keep the
/// manifest's value; an empty list drops everything of that kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// The directories to keep, by guest path, each with the mode to use.
    pub filesystem: Option<Vec<DirNarrowing>>,
    /// The variables to keep, by name.
    pub env: Option<Vec<String>>,
    /// `Some(false)` drops the scratch dir; `Some(true)` requires the manifest to grant one.
    pub scratch: Option<bool>,
    /// The egress rules to keep, by their URL pattern, each with fewer methods or requests.
    pub egress: Option<Vec<EgressNarrowing>>,
    /// The socket grants to keep.
    pub sockets: Option<Vec<SocketGrant>>,
    /// The credentials to keep, each with fewer scopes or a shorter life.
    pub credentials: Option<Vec<CredentialNarrowing>>,
    /// Lower limits.
    pub limits: LimitsNarrowing,
}

/// The narrowing's one JSON shape, as callers send it (an MCP client in
/// `_meta["toolcell/narrowing"]`, an embedder from its own config): every
/// key optional, unknown keys refused.
///
/// ```json
/// {"timeout": "2s", "memory": "32MiB", "cpu": "1s", "max_output": "64KiB",
///  "filesystem": [{"guest": "/data", "read_only": true}], "env": ["LANG"],
///  "egress": ["https://api.example.com/v1/*"],
///  "credentials": [{"name": "github", "scopes": ["issues:read"], "max_ttl": "1m"}]}
/// ```
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NarrowingJson {
    timeout: Option<TimeSpan>,
    memory: Option<ByteSize>,
    cpu: Option<TimeSpan>,
    max_output: Option<ByteSize>,
    filesystem: Option<Vec<DirJson>>,
    env: Option<Vec<String>>,
    egress: Option<Vec<String>>,
    credentials: Option<Vec<CredentialJson>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialJson {
    name: String,
    scopes: Option<Vec<String>>,
    max_ttl: Option<TimeSpan>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DirJson {
    guest: String,
    #[serde(default)]
    read_only: bool,
}

impl Narrowing {
    /// A narrowing from its JSON shape (see the example on `NarrowingJson` in the source: the keys are the limits, `filesystem`, `env`, `egress` and `credentials`);
    /// the error names the key that was wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Narrowing, serde_json::Error> {
        let json: NarrowingJson = serde_json::from_value(value.clone())?;
        Ok(Narrowing {
            filesystem: json.filesystem.map(|dirs| {
                dirs.into_iter()
                    .map(|d| DirNarrowing {
                        guest: d.guest,
                        mode: if d.read_only { DirMode::ReadOnly } else { DirMode::ReadWrite },
                    })
                    .collect()
            }),
            env: json.env,
            egress: json.egress.map(|urls| {
                urls.into_iter().map(|url| EgressNarrowing { url, methods: None, max_requests: None }).collect()
            }),
            credentials: json.credentials.map(|c| {
                c.into_iter()
                    .map(|c| CredentialNarrowing { name: c.name, scopes: c.scopes, max_ttl: c.max_ttl })
                    .collect()
            }),
            limits: LimitsNarrowing {
                timeout: json.timeout,
                memory: json.memory,
                cpu: json.cpu,
                max_output: json.max_output,
                ..LimitsNarrowing::default()
            },
            ..Narrowing::default()
        })
    }
}

/// One directory a task keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirNarrowing {
    /// The guest path, exactly as the manifest grants it.
    pub guest: String,
    /// The mode, no stronger than the manifest's.
    pub mode: DirMode,
}

/// One egress rule a task keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressNarrowing {
    /// The rule's URL pattern, exactly as the manifest writes it.
    pub url: String,
    /// Methods to keep; `None` keeps the rule's.
    pub methods: Option<Vec<String>>,
    /// A lower request cap; `None` keeps the rule's.
    pub max_requests: Option<u32>,
}

/// One credential a task keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialNarrowing {
    /// The credential's name in the manifest.
    pub name: String,
    /// Scopes to keep; `None` keeps the manifest's.
    pub scopes: Option<Vec<String>>,
    /// A shorter life; `None` keeps the manifest's.
    pub max_ttl: Option<TimeSpan>,
}

/// Limits a task lowers; each must be at most the manifest's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitsNarrowing {
    /// Memory cap.
    pub memory: Option<ByteSize>,
    /// Guest CPU time.
    pub cpu: Option<TimeSpan>,
    /// Wall-clock time of a call.
    pub timeout: Option<TimeSpan>,
    /// Input bytes.
    pub max_input: Option<ByteSize>,
    /// Output bytes.
    pub max_output: Option<ByteSize>,
    /// Refusals before the call is stopped.
    pub max_refusals: Option<u32>,
    /// Distinct credentials minted per call.
    pub max_credentials: Option<u32>,
}

/// A narrowing that asked for more than the manifest grants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("narrowing would widen the grant of tool `{tool}`: {what}")]
pub struct WideningError {
    /// The tool whose manifest would be widened.
    pub tool: String,
    /// What the narrowing asked for beyond the manifest.
    pub what: String,
}

/// The validated, immutable set of capabilities one task holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The tool it is for.
    pub tool: String,
    /// Directories, with their modes.
    pub filesystem: Vec<DirGrant>,
    /// Variables with their values, read when the grant was made.
    pub env: Vec<(String, String)>,
    /// Guest path of the per-invocation scratch dir, if any.
    pub scratch: Option<String>,
    /// Outbound HTTP rules.
    pub egress: Vec<EgressRule>,
    /// Raw socket addresses.
    pub sockets: Vec<SocketGrant>,
    /// Credentials the tool may acquire.
    pub credentials: Vec<CredentialSpec>,
    /// Limits of each invocation.
    pub limits: Limits,
}

// Variable values stay out of Debug output (they may be tokens).
impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Grant")
            .field("tool", &self.tool)
            .field("filesystem", &self.filesystem)
            .field("env", &env)
            .field("scratch", &self.scratch)
            .field("egress", &self.egress)
            .field("sockets", &self.sockets)
            .field("credentials", &self.credentials)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What a grant holds, in the shape audit events and `policy check` print:
/// names and modes, never values.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GrantSummary {
    /// `guest path -> "read-only (host path)"`.
    pub filesystem: BTreeMap<String, String>,
    /// Variable names.
    pub env: Vec<String>,
    /// Scratch dir guest path.
    pub scratch: Option<String>,
    /// Limits, as written in manifests.
    pub limits: BTreeMap<&'static str, String>,
    /// Egress rules as `METHODS url`.
    pub egress: Vec<String>,
    /// Raw socket grants as `tcp 127.0.0.1:5432`; name lookup is always denied.
    pub sockets: Vec<String>,
    /// Credentials: name, provider, scopes, audience, life and exposure — never a value.
    pub credentials: Vec<String>,
}

impl Grant {
    /// Intersects `manifest` with `narrowing`, reading granted host variables now.
    pub fn new(manifest: &Manifest, narrowing: &Narrowing) -> Result<Grant, WideningError> {
        let narrowed = narrowing.apply(manifest)?;
        // A host variable that is not set is simply absent in the guest.
        let env = narrowed
            .env
            .into_iter()
            .filter_map(|grant| match grant.source {
                EnvSource::Value(value) => Some((grant.name, value)),
                // Ambient authority: a granted variable's value comes from the host's environment.
                EnvSource::Host => std::env::var(&grant.name).ok().map(|value| (grant.name, value)),
            })
            .collect();
        Ok(Grant {
            tool: narrowed.name,
            filesystem: narrowed.filesystem,
            env,
            scratch: narrowed.scratch,
            egress: narrowed.egress,
            sockets: narrowed.sockets,
            credentials: narrowed.credentials,
            limits: narrowed.limits,
        })
    }

    /// The grant's shape for audit events and reports.
    pub fn summary(&self) -> GrantSummary {
        GrantSummary {
            filesystem: self
                .filesystem
                .iter()
                .map(|dir| (dir.guest.clone(), format!("{} ({})", dir.mode, dir.host.display())))
                .collect(),
            env: self.env.iter().map(|(name, _)| name.clone()).collect(),
            scratch: self.scratch.clone(),
            limits: limits_table(&self.limits),
            egress: self.egress.iter().map(|rule| format!("{} {}", rule.methods.join(","), rule.url)).collect(),
            sockets: self.sockets.iter().map(|s| format!("{:?} {}", s.protocol, s.address).to_lowercase()).collect(),
            credentials: self.credentials.iter().map(ToString::to_string).collect(),
        }
    }
}

impl Narrowing {
    /// The manifest as this narrowing leaves it: what a task holding it may
    /// reach, with variables by name (nothing is read from the host). Refused
    /// with what it would widen.
    pub fn apply(&self, manifest: &Manifest) -> Result<Manifest, WideningError> {
        let widen = |what: String| WideningError { tool: manifest.name.clone(), what };

        let filesystem = match &self.filesystem {
            None => manifest.filesystem.clone(),
            Some(kept) => {
                let mut dirs: Vec<DirGrant> = Vec::new();
                for want in kept {
                    let granted =
                        manifest.filesystem.iter().find(|dir| dir.guest == want.guest).ok_or_else(|| {
                            widen(format!("directory `{}` is not granted by the manifest", want.guest))
                        })?;
                    if want.mode > granted.mode {
                        return Err(widen(format!(
                            "directory `{}` asked {} but the manifest grants {}",
                            want.guest, want.mode, granted.mode
                        )));
                    }
                    if dirs.iter().any(|dir| dir.guest == want.guest) {
                        return Err(widen(format!("directory `{}` is named twice", want.guest)));
                    }
                    dirs.push(DirGrant { mode: want.mode, ..granted.clone() });
                }
                dirs
            }
        };

        let env_grants = match &self.env {
            None => manifest.env.clone(),
            Some(names) => names
                .iter()
                .map(|name| {
                    manifest
                        .env
                        .iter()
                        .find(|grant| &grant.name == name)
                        .cloned()
                        .ok_or_else(|| widen(format!("variable `{name}` is not granted by the manifest")))
                })
                .collect::<Result<_, _>>()?,
        };
        let scratch = match self.scratch {
            None | Some(true) if manifest.scratch.is_some() => manifest.scratch.clone(),
            Some(true) => return Err(widen("a scratch dir is not granted by the manifest".to_owned())),
            None | Some(false) => None,
        };

        let egress = match &self.egress {
            None => manifest.egress.clone(),
            Some(kept) => {
                kept.iter().map(|want| narrow_rule(&manifest.egress, want, &widen)).collect::<Result<_, _>>()?
            }
        };

        let sockets = match &self.sockets {
            None => manifest.sockets.clone(),
            Some(kept) => {
                if let Some(extra) = kept.iter().find(|s| !manifest.sockets.contains(s)) {
                    return Err(widen(format!(
                        "socket {:?} {} is not granted by the manifest",
                        extra.protocol, extra.address
                    )));
                }
                kept.clone()
            }
        };

        let credentials = match &self.credentials {
            None => manifest.credentials.clone(),
            Some(kept) => kept
                .iter()
                .map(|want| narrow_credential(&manifest.credentials, want, &widen))
                .collect::<Result<_, _>>()?,
        };

        let limits = narrow_limits(&manifest.limits, &self.limits, &widen)?;
        Ok(Manifest { filesystem, env: env_grants, scratch, egress, sockets, credentials, limits, ..manifest.clone() })
    }
}

/// Limits as `name -> value` in manifest syntax.
pub fn limits_table(limits: &Limits) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("memory", limits.memory.to_string()),
        ("cpu", limits.cpu.to_string()),
        ("timeout", limits.timeout.to_string()),
        ("max_input", limits.max_input.to_string()),
        ("max_output", limits.max_output.to_string()),
        ("max_refusals", limits.max_refusals.to_string()),
        ("max_credentials", limits.max_credentials.to_string()),
    ])
}

/// Makes the refusal of a narrowing from what it asked beyond the manifest.
type Widen<'a> = &'a dyn Fn(String) -> WideningError;

fn narrow_rule(rules: &[EgressRule], want: &EgressNarrowing, widen: Widen<'_>) -> Result<EgressRule, WideningError> {
    let granted = rules
        .iter()
        .find(|rule| rule.url == want.url)
        .ok_or_else(|| widen(format!("egress rule `{}` is not granted by the manifest", want.url)))?;
    let mut rule = granted.clone();
    if let Some(methods) = &want.methods {
        let methods: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        if let Some(extra) = methods.iter().find(|m| !granted.methods.contains(m)) {
            return Err(widen(format!("egress rule `{}` does not allow method {extra}", want.url)));
        }
        rule.methods = methods;
    }
    rule.max_requests =
        at_most(&format!("egress rule `{}` max_requests", want.url), granted.max_requests, want.max_requests, widen)?;
    Ok(rule)
}

fn narrow_credential(
    specs: &[CredentialSpec],
    want: &CredentialNarrowing,
    widen: Widen<'_>,
) -> Result<CredentialSpec, WideningError> {
    let granted = specs
        .iter()
        .find(|spec| spec.name == want.name)
        .ok_or_else(|| widen(format!("credential `{}` is not granted by the manifest", want.name)))?;
    let mut spec = granted.clone();
    if let Some(scopes) = &want.scopes {
        if let Some(extra) = scopes.iter().find(|s| !granted.scopes.contains(s)) {
            return Err(widen(format!("credential `{}` does not allow scope `{extra}`", want.name)));
        }
        if scopes.is_empty() && granted.provider == ProviderKind::Openbao {
            // Its scopes are the task token's policies, and a token created
            // with none would get the runtime token's: never an empty list.
            return Err(widen(format!(
                "credential `{}` narrowed to no scopes would grant no OpenBao policy; leave it out of the \
                 narrowing's credentials instead",
                want.name
            )));
        }
        spec.scopes = scopes.clone();
    }
    spec.max_ttl = at_most(&format!("credential `{}` max_ttl", want.name), granted.max_ttl, want.max_ttl, widen)?;
    Ok(spec)
}

/// `want` if it is at most `ceiling`, `ceiling` if nothing is asked; `what`
/// names the value in the refusal.
fn at_most<T: PartialOrd + fmt::Display + Copy>(
    what: &str,
    ceiling: T,
    want: Option<T>,
    widen: Widen<'_>,
) -> Result<T, WideningError> {
    match want {
        Some(value) if value > ceiling => Err(widen(format!("{what} {value} is above the manifest's {ceiling}"))),
        Some(value) => Ok(value),
        None => Ok(ceiling),
    }
}

fn narrow_limits(ceiling: &Limits, want: &LimitsNarrowing, widen: Widen<'_>) -> Result<Limits, WideningError> {
    let limits = Limits {
        memory: at_most("limits.memory", ceiling.memory, want.memory, widen)?,
        cpu: at_most("limits.cpu", ceiling.cpu, want.cpu, widen)?,
        timeout: at_most("limits.timeout", ceiling.timeout, want.timeout, widen)?,
        max_input: at_most("limits.max_input", ceiling.max_input, want.max_input, widen)?,
        max_output: at_most("limits.max_output", ceiling.max_output, want.max_output, widen)?,
        max_refusals: at_most("limits.max_refusals", ceiling.max_refusals, want.max_refusals, widen)?,
        max_credentials: at_most("limits.max_credentials", ceiling.max_credentials, want.max_credentials, widen)?,
    };
    crate::policy::limits::validate_limits(&limits)
        .map_err(|(name, message)| widen(format!("limits.{name}: {message}")))?;
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::policy::env::EnvGrant;

    fn manifest() -> Manifest {
        let mut manifest = Manifest::ad_hoc(Path::new("t.wasm"));
        manifest.filesystem = vec![
            DirGrant { host: "/tmp".into(), guest: "/data".into(), mode: DirMode::ReadWrite },
            DirGrant { host: "/".into(), guest: "/ro".into(), mode: DirMode::ReadOnly },
        ];
        manifest.env = vec![EnvGrant { name: "GREETING".into(), source: EnvSource::Value("hi".into()) }];
        manifest
    }

    #[test]
    fn no_narrowing_keeps_the_manifest() {
        let grant = Grant::new(&manifest(), &Narrowing::default()).unwrap();
        assert_eq!(grant.filesystem, manifest().filesystem);
        assert_eq!(grant.env, vec![("GREETING".to_owned(), "hi".to_owned())]);
        assert_eq!(grant.limits, Limits::DEFAULT);
    }

    #[test]
    fn narrowing_attenuates() {
        let narrowing = Narrowing {
            filesystem: Some(vec![DirNarrowing { guest: "/data".into(), mode: DirMode::ReadOnly }]),
            env: Some(vec![]),
            limits: LimitsNarrowing { memory: Some(ByteSize(1 << 20)), ..Default::default() },
            ..Default::default()
        };
        let grant = Grant::new(&manifest(), &narrowing).unwrap();
        assert_eq!(grant.filesystem.len(), 1);
        assert_eq!(grant.filesystem[0].mode, DirMode::ReadOnly);
        assert!(grant.env.is_empty());
        assert_eq!(grant.limits.memory, ByteSize(1 << 20));
    }

    #[test]
    fn widening_is_refused_and_named() {
        let cases = [
            (
                Narrowing {
                    filesystem: Some(vec![DirNarrowing { guest: "/etc".into(), mode: DirMode::ReadOnly }]),
                    ..Default::default()
                },
                "directory `/etc` is not granted",
            ),
            (
                Narrowing {
                    filesystem: Some(vec![DirNarrowing { guest: "/ro".into(), mode: DirMode::ReadWrite }]),
                    ..Default::default()
                },
                "directory `/ro` asked read-write but the manifest grants read-only",
            ),
            (Narrowing { env: Some(vec!["HOME".into()]), ..Default::default() }, "variable `HOME`"),
            (Narrowing { scratch: Some(true), ..Default::default() }, "scratch dir"),
            (
                Narrowing {
                    limits: LimitsNarrowing {
                        timeout: Some(TimeSpan(Duration::from_secs(3600))),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "limits.timeout 1h is above the manifest's 30s",
            ),
        ];
        for (narrowing, expected) in cases {
            let error = Grant::new(&manifest(), &narrowing).unwrap_err();
            assert!(error.to_string().contains(expected), "{error} lacks {expected}");
        }
    }

    #[test]
    fn a_narrowed_rule_keeps_its_approval() {
        let mut manifest = manifest();
        let mut rule = EgressRule::parse("https://api.example.com/*").unwrap();
        rule.methods = vec!["GET".into(), "POST".into()];
        rule.approval = Some(crate::policy::ManifestApproval { reason: "writes".into(), covers: vec!["POST".into()] });
        manifest.egress = vec![rule];
        let narrowing = Narrowing {
            egress: Some(vec![EgressNarrowing {
                url: "https://api.example.com/*".into(),
                methods: Some(vec!["POST".into()]),
                max_requests: Some(1),
            }]),
            ..Narrowing::default()
        };
        let grant = Grant::new(&manifest, &narrowing).unwrap();
        assert_eq!(grant.egress[0].approval, manifest.egress[0].approval);
    }

    #[test]
    fn egress_narrows_to_fewer_rules_and_methods_and_never_widens() {
        let mut manifest = manifest();
        let mut rule = EgressRule::parse("https://api.example.com/*").unwrap();
        rule.methods = vec!["GET".into(), "POST".into()];
        manifest.egress = vec![rule, EgressRule::parse("https://other.example.com/*").unwrap()];
        let keep = |methods: Option<Vec<&str>>, max: Option<u32>| Narrowing {
            egress: Some(vec![EgressNarrowing {
                url: "https://api.example.com/*".into(),
                methods: methods.map(|m| m.into_iter().map(String::from).collect()),
                max_requests: max,
            }]),
            ..Default::default()
        };
        let grant = Grant::new(&manifest, &keep(Some(vec!["get"]), Some(1))).unwrap();
        assert_eq!(grant.egress.len(), 1);
        assert_eq!((grant.egress[0].methods.clone(), grant.egress[0].max_requests), (vec!["GET".to_owned()], 1));
        let err = Grant::new(&manifest, &keep(Some(vec!["DELETE"]), None)).unwrap_err();
        assert!(err.to_string().contains("does not allow method DELETE"), "{err}");
        let err = Grant::new(&manifest, &keep(None, Some(1000))).unwrap_err();
        assert!(err.to_string().contains("max_requests 1000 is above"), "{err}");
        let other = Narrowing {
            egress: Some(vec![EgressNarrowing {
                url: "https://*.example.com/*".into(),
                methods: None,
                max_requests: None,
            }]),
            ..Default::default()
        };
        assert!(Grant::new(&manifest, &other).unwrap_err().to_string().contains("is not granted by the manifest"));
    }

    #[test]
    fn credentials_narrow_to_fewer_scopes_and_shorter_lives_only() {
        use crate::policy::credential::{Exposure, ProviderKind};
        let mut manifest = manifest();
        manifest.credentials = vec![CredentialSpec {
            name: "github".into(),
            provider: ProviderKind::Issuer,
            scopes: vec!["repo:read".into(), "issues:write".into()],
            audience: "https://api.github.com".into(),
            max_ttl: TimeSpan(Duration::from_secs(300)),
            exposure: Exposure::Reveal,
            approval: None,
        }];
        let keep = |scopes: Option<Vec<&str>>, ttl: Option<u64>, name: &str| Narrowing {
            credentials: Some(vec![CredentialNarrowing {
                name: name.into(),
                scopes: scopes.map(|s| s.into_iter().map(String::from).collect()),
                max_ttl: ttl.map(|t| TimeSpan(Duration::from_secs(t))),
            }]),
            ..Default::default()
        };
        let grant = Grant::new(&manifest, &keep(Some(vec!["repo:read"]), Some(60), "github")).unwrap();
        assert_eq!(grant.credentials[0].scopes, ["repo:read"]);
        assert_eq!(grant.credentials[0].max_ttl, TimeSpan(Duration::from_secs(60)));
        let err = Grant::new(&manifest, &keep(Some(vec!["admin"]), None, "github")).unwrap_err();
        assert!(err.to_string().contains("does not allow scope `admin`"), "{err}");
        let err = Grant::new(&manifest, &keep(None, Some(3600), "github")).unwrap_err();
        assert!(err.to_string().contains("max_ttl 1h is above the manifest's 5m"), "{err}");
        let err = Grant::new(&manifest, &keep(None, None, "aws")).unwrap_err();
        assert!(err.to_string().contains("credential `aws` is not granted"), "{err}");
        assert!(
            Grant::new(&manifest, &Narrowing { credentials: Some(vec![]), ..Default::default() })
                .unwrap()
                .credentials
                .is_empty()
        );
    }

    #[test]
    fn debug_and_summary_hide_values() {
        let grant = Grant::new(&manifest(), &Narrowing::default()).unwrap();
        assert!(!format!("{grant:?}").contains("\"hi\""));
        let summary = serde_json::to_string(&grant.summary()).unwrap();
        assert!(summary.contains("GREETING") && !summary.contains("\"hi\""));
    }
}
