//! The runtime's own configuration: the operator's settings, never a tool's.
//! Read from a TOML file (`toolcell --config FILE`) or built in code.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde::Deserialize;

use crate::transport::{Resolver, StaticResolver, SystemResolver};

use crate::approval::ApprovalSettings;
use crate::credentials::config::{IssuerConfig, OpenBaoConfig, ProviderConfig, StaticSecret, TokenExchangeConfig};
use crate::engine::EngineSettings;
use crate::manifest::{Locator, ManifestError};
use crate::request_policy::{PolicyMode, PrincipalAttributes};
use crate::units::{ByteSize, TimeSpan};

/// How a runtime is set up. The operator's settings, never a tool's.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Engine settings (pool size, memory ceiling, stack, cache).
    pub engine: EngineSettings,
    /// The JSON-lines audit file; `None` sends audit events to `tracing` only.
    pub audit_log: Option<PathBuf>,
    /// How the audit file is chained, signed and rotated (`[audit]`).
    pub audit: crate::audit::AuditSettings,
    /// Trust domain of workload ids (`spiffe://<trust-domain>/tool/<tool>/task/<task>`).
    pub trust_domain: String,
    /// Where per-invocation scratch dirs are made; defaults to the system temp dir.
    pub scratch_root: Option<PathBuf>,
    /// Resolves host names for egress; the system resolver by default.
    pub resolver: Arc<dyn Resolver>,
    /// PEM files of TLS roots trusted for egress (and by credential
    /// providers) besides the system's.
    pub tls_roots: Vec<PathBuf>,
    /// The credential providers manifests may name.
    pub credentials: ProviderConfig,
    /// The durable lease journal's directory: each runtime keeps its own
    /// locked file there, and adopts the files of runtimes that are gone.
    /// `None` keeps no journal, so a runtime that crashes mid-task cannot
    /// revoke what it left (OpenBao leases still end with the task token's
    /// TTL, issuer tokens at their `exp`).
    pub lease_journal: Option<PathBuf>,
    /// The longest life any credential may have: a manifest whose
    /// credential's `max_ttl` is above it is refused at load. 5 minutes by default.
    pub max_credential_ttl: TimeSpan,
    /// Hosts (as egress rules write them, like `127.0.0.1` or
    /// `api.internal.test`) to which a credential may be injected over
    /// plain `http://`. Empty by default: credentials travel over TLS only.
    pub plaintext_credential_hosts: Vec<String>,
    /// Environment variables no manifest may pass through, besides every
    /// `TOOLCELL_*` variable and every variable this config reads a secret
    /// from. An embedder adds those its own settings read (`toolcell serve`
    /// adds its bearer tokens').
    pub reserved_env: Vec<String>,
    /// Files and directories of the operator's own (besides the audit log,
    /// lease journal, issuer keys, precompile cache, scratch root and secret
    /// files this config names) that no manifest may grant a directory over;
    /// [`RuntimeConfig::load`] adds the config file itself.
    pub reserved_paths: Vec<PathBuf>,
    /// Where request-time policies (`*.cedar`) are read from; `None`: the
    /// embedder says (`toolcell` reads those beside the manifests).
    pub policy_dir: Option<PathBuf>,
    /// How policies combine with manifests.
    pub policy_mode: PolicyMode,
    /// What policies see of each principal (roles, groups), by name.
    pub principals: std::collections::HashMap<String, PrincipalAttributes>,
    /// How approvals are asked and answered.
    pub approvals: ApprovalSettings,
    /// Where kills are kept across restarts (none: they last as long as the runtime).
    pub kill_file: Option<PathBuf>,
    /// The operator's rate limits (`[[rate_limits]]`).
    pub rate_limits: Vec<crate::policy::rate::RateLimitRule>,
    /// Behaviour monitoring: the baseline and the anomaly rules (`[monitor]`).
    pub monitor: crate::oversight::MonitorSettings,
    /// What happens when a tool's `review_by` has passed (`[review] overdue`).
    pub overdue_review: crate::reports::OverdueReview,
}

/// The default of [`RuntimeConfig::max_credential_ttl`].
pub const DEFAULT_MAX_CREDENTIAL_TTL: TimeSpan = TimeSpan(std::time::Duration::from_secs(300));

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            engine: EngineSettings::default(),
            audit_log: None,
            audit: crate::audit::AuditSettings::default(),
            trust_domain: "toolcell.local".to_owned(),
            scratch_root: None,
            resolver: Arc::new(SystemResolver),
            tls_roots: Vec::new(),
            credentials: ProviderConfig::default(),
            lease_journal: None,
            max_credential_ttl: DEFAULT_MAX_CREDENTIAL_TTL,
            plaintext_credential_hosts: Vec::new(),
            reserved_env: Vec::new(),
            reserved_paths: Vec::new(),
            policy_dir: None,
            policy_mode: PolicyMode::Ceiling,
            principals: std::collections::HashMap::new(),
            approvals: ApprovalSettings::default(),
            kill_file: None,
            rate_limits: Vec::new(),
            monitor: crate::oversight::MonitorSettings::default(),
            overdue_review: crate::reports::OverdueReview::Warn,
        }
    }
}

/// `[review]` in the config file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewFile {
    #[serde(default)]
    overdue: crate::reports::OverdueReview,
}

/// `[policy]` in the config file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    dir: Option<PathBuf>,
    #[serde(default)]
    mode: PolicyMode,
}

/// `[approvals]` in the config file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsFile {
    expire: Option<TimeSpan>,
    allow_self_approval: Option<bool>,
    elicitation: Option<bool>,
    webhook: Option<String>,
}

/// The file shape of [`RuntimeConfig`]; every field is optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    audit_log: Option<PathBuf>,
    #[serde(default)]
    audit: crate::audit::AuditSettings,
    trust_domain: Option<String>,
    scratch_root: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    max_concurrent_invocations: Option<u32>,
    max_memory: Option<ByteSize>,
    max_wasm_stack: Option<ByteSize>,
    #[serde(default)]
    tls_roots: Vec<PathBuf>,
    /// Fixed addresses for names, ahead of the system resolver.
    #[serde(default)]
    hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    lease_journal: Option<PathBuf>,
    max_credential_ttl: Option<TimeSpan>,
    #[serde(default)]
    plaintext_credential_hosts: Vec<String>,
    #[serde(default)]
    issuer: IssuerConfig,
    #[serde(default, rename = "static")]
    statics: Vec<StaticSecret>,
    openbao: Option<OpenBaoConfig>,
    oauth_token_exchange: Option<TokenExchangeConfig>,
    #[serde(default)]
    policy: PolicyFile,
    #[serde(default)]
    principals: std::collections::HashMap<String, PrincipalAttributes>,
    #[serde(default)]
    approvals: ApprovalsFile,
    kill_file: Option<PathBuf>,
    #[serde(default)]
    rate_limits: Vec<crate::policy::rate::RateLimitRule>,
    #[serde(default)]
    monitor: crate::oversight::MonitorSettings,
    #[serde(default)]
    review: ReviewFile,
    /// `toolcell serve`'s own settings; the CLI reads and checks them.
    #[serde(default, rename = "serve")]
    _serve: Option<toml::Table>,
}

impl RuntimeConfig {
    /// Reads a runtime config file. Relative paths are resolved against the
    /// file's directory; unknown keys are errors naming the line.
    pub fn load(path: &Path) -> Result<RuntimeConfig, ManifestError> {
        // Ambient authority: the operator's config file.
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError::unreadable(path, "config", &error))?;
        let at = Locator { text: &text, file: path };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| at.toml_error(&e, String::new()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let defaults = RuntimeConfig::default();
        let engine = EngineSettings {
            max_concurrent_invocations: file
                .max_concurrent_invocations
                .unwrap_or(defaults.engine.max_concurrent_invocations),
            max_memory: file.max_memory.unwrap_or(defaults.engine.max_memory),
            max_wasm_stack: file.max_wasm_stack.unwrap_or(defaults.engine.max_wasm_stack),
            cache_dir: file.cache_dir.map(|dir| base.join(dir)).or(defaults.engine.cache_dir),
            ..defaults.engine
        };
        let resolver: Arc<dyn Resolver> = if file.hosts.is_empty() {
            defaults.resolver
        } else {
            let hosts = file.hosts.into_iter().map(|(name, ips)| (name.to_ascii_lowercase(), ips)).collect();
            Arc::new(StaticResolver { hosts, fallback: Some(defaults.resolver) })
        };
        let mut credentials = ProviderConfig {
            issuer: file.issuer,
            statics: file.statics,
            openbao: file.openbao,
            oauth_token_exchange: file.oauth_token_exchange,
        };
        credentials.rebase(base);
        for (index, rule) in file.rate_limits.iter().enumerate() {
            if let Some(problem) = rule.problem() {
                return Err(at.error(None, format!("rate_limits[{index}]"), problem));
            }
        }
        if let Some((field, problem)) = file.monitor.problem() {
            return Err(at.error(None, format!("monitor.{field}"), problem));
        }
        if let Some((field, problem)) = file.audit.problem() {
            return Err(at.error(None, format!("audit.{field}"), problem));
        }
        let mut audit = file.audit;
        audit.signing_key = audit.signing_key.map(|p| base.join(p));
        let mut monitor = file.monitor;
        monitor.baseline = monitor.baseline.map(|p| base.join(p));
        Ok(RuntimeConfig {
            credentials,
            lease_journal: file.lease_journal.map(|p| base.join(p)),
            engine,
            audit_log: file.audit_log.map(|p| base.join(p)),
            audit,
            trust_domain: file.trust_domain.unwrap_or(defaults.trust_domain),
            scratch_root: file.scratch_root.map(|p| base.join(p)),
            resolver,
            tls_roots: file.tls_roots.into_iter().map(|p| base.join(p)).collect(),
            max_credential_ttl: file.max_credential_ttl.unwrap_or(defaults.max_credential_ttl),
            plaintext_credential_hosts: file
                .plaintext_credential_hosts
                .into_iter()
                .map(|host| host.to_ascii_lowercase())
                .collect(),
            reserved_env: Vec::new(),
            reserved_paths: vec![path.to_owned()],
            policy_dir: file.policy.dir.map(|dir| base.join(dir)),
            policy_mode: file.policy.mode,
            principals: file.principals,
            approvals: ApprovalSettings {
                expire: file.approvals.expire.unwrap_or(defaults.approvals.expire),
                allow_self_approval: file
                    .approvals
                    .allow_self_approval
                    .unwrap_or(defaults.approvals.allow_self_approval),
                elicitation: file.approvals.elicitation.unwrap_or(defaults.approvals.elicitation),
                webhook: file.approvals.webhook,
            },
            kill_file: file.kill_file.map(|p| base.join(p)),
            rate_limits: file.rate_limits,
            monitor,
            overdue_review: file.review.overdue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::config::SecretSource;

    #[test]
    fn config_file_sets_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolcell.toml");
        std::fs::write(&path, "audit_log = \"audit.jsonl\"\nmax_memory = \"1GiB\"\ntrust_domain = \"corp.example\"\n")
            .unwrap();
        let config = RuntimeConfig::load(&path).unwrap();
        assert_eq!(config.audit_log, Some(dir.path().join("audit.jsonl")));
        assert_eq!(config.engine.max_memory, ByteSize(1 << 30));
        assert_eq!(config.trust_domain, "corp.example");
        assert_eq!(config.engine.max_concurrent_invocations, 256);
    }

    #[test]
    fn credential_providers_are_read_with_paths_next_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolcell.toml");
        std::fs::write(
            &path,
            r#"
lease_journal = "leases"

[issuer]
url = "https://tools.example"
keys = "issuer-keys.json"

[[static]]
audience = "https://api.github.com"
secret = { env = "GITHUB_TOKEN" }
origins = ["https://api.github.com"]

[openbao]
address = "http://127.0.0.1:8200"
token = { file = "bao-token" }
timeout = "2s"

[[openbao.secrets]]
audience = "pki:tools"
path = "pki/issue/tool"
data = { common_name = "{task}.tools.test", ttl = "{ttl}" }
field = "certificate"
"#,
        )
        .unwrap();
        let config = RuntimeConfig::load(&path).unwrap();
        assert_eq!(config.lease_journal, Some(dir.path().join("leases")));
        assert_eq!(config.credentials.issuer.keys, Some(dir.path().join("issuer-keys.json")));
        assert_eq!(config.credentials.statics[0].secret, SecretSource::Env("GITHUB_TOKEN".into()));
        let openbao = config.credentials.openbao.unwrap();
        assert_eq!(openbao.token, SecretSource::File(dir.path().join("bao-token")));
        assert_eq!(openbao.secrets[0].field.as_deref(), Some("certificate"));
        std::fs::write(&path, "[[static]]\naudience = \"a\"\nsecret = { value = \"hunter2\" }\norigins = []\n")
            .unwrap();
        let error = RuntimeConfig::load(&path).unwrap_err();
        assert!(error.message.contains("unknown variant `value`"), "{error}");
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolcell.toml");
        std::fs::write(&path, "trust_domain = \"x\"\nallow_network = true\n").unwrap();
        let error = RuntimeConfig::load(&path).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("unknown field `allow_network`"), "{error}");
    }
}
