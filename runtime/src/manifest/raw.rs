//! The raw shape of a manifest file, as serde reads it: every section and
//! key, each value with its place in the file (for located errors). Unknown
//! keys are errors. Nothing here is validated; `validate.rs` does that.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::policy::credential::ProviderKind;
use crate::policy::dir::DirMode;
use crate::policy::socket::SocketProtocol;
use crate::units::{ByteSize, TimeSpan};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestFile {
    pub(super) tool: ToolSection,
    #[serde(default)]
    pub(super) filesystem: Vec<DirEntry>,
    #[serde(default)]
    pub(super) env: EnvSection,
    pub(super) scratch: Option<ScratchSection>,
    #[serde(default)]
    pub(super) egress: Vec<EgressEntry>,
    #[serde(default)]
    pub(super) sockets: Vec<SocketEntry>,
    #[serde(default)]
    pub(super) credentials: Vec<CredentialEntry>,
    #[serde(default)]
    pub(super) limits: LimitsSection,
    #[serde(default)]
    pub(super) rate_limits: RateLimitsSection,
}

/// `[rate_limits]`: this tool's own limits, for all callers together, and
/// `[rate_limits.per_principal]` for each principal.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitsSection {
    pub(super) calls_per_minute: Option<u64>,
    pub(super) requests_per_minute: Option<u64>,
    pub(super) bytes_out_per_minute: Option<ByteSize>,
    pub(super) mints_per_minute: Option<u64>,
    #[serde(default)]
    pub(super) per_principal: crate::policy::rate::PerMinute,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CredentialEntry {
    pub(super) name: Spanned<String>,
    pub(super) provider: Spanned<ProviderKind>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    pub(super) audience: String,
    pub(super) max_ttl: Option<TimeSpan>,
    #[serde(default)]
    pub(super) exposure: Option<Spanned<String>>,
    pub(super) inject: Option<InjectEntry>,
    pub(super) approval: Option<ApprovalEntry>,
}

/// `approval = { reason = "...", methods = [...] }` (egress) or `scopes` (credentials).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalEntry {
    pub(super) reason: Spanned<String>,
    pub(super) methods: Option<Vec<String>>,
    pub(super) scopes: Option<Vec<String>>,
}

/// One rule URL, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InjectEntry {
    pub(super) egress: Spanned<OneOrMany>,
    #[serde(default = "authorization")]
    pub(super) header: Spanned<String>,
    #[serde(default = "bearer")]
    pub(super) format: String,
}

fn authorization() -> Spanned<String> {
    Spanned::new(0..0, "authorization".to_owned())
}

fn bearer() -> String {
    "Bearer {token}".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SocketEntry {
    pub(super) protocol: SocketProtocol,
    pub(super) address: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EgressEntry {
    pub(super) url: Spanned<String>,
    pub(super) methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    pub(super) max_requests: Option<u32>,
    pub(super) max_request_body: Option<ByteSize>,
    pub(super) max_response_body: Option<ByteSize>,
    pub(super) connect_timeout: Option<TimeSpan>,
    pub(super) first_byte_timeout: Option<TimeSpan>,
    pub(super) total_timeout: Option<TimeSpan>,
    pub(super) approval: Option<ApprovalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ToolSection {
    pub(super) name: Spanned<String>,
    pub(super) owner: Spanned<String>,
    pub(super) purpose: Spanned<String>,
    pub(super) review_by: Spanned<toml::value::Datetime>,
    pub(super) component: Spanned<PathBuf>,
    pub(super) sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DirEntry {
    pub(super) host: Spanned<PathBuf>,
    pub(super) guest: Spanned<String>,
    #[serde(default = "read_only")]
    pub(super) mode: DirMode,
}

fn read_only() -> DirMode {
    DirMode::ReadOnly
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvSection {
    #[serde(default)]
    pub(super) pass: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) set: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScratchSection {
    pub(super) guest: Spanned<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSection {
    pub(super) memory: Option<ByteSize>,
    pub(super) cpu: Option<TimeSpan>,
    pub(super) timeout: Option<TimeSpan>,
    pub(super) max_input: Option<ByteSize>,
    pub(super) max_output: Option<ByteSize>,
    pub(super) max_refusals: Option<u32>,
    pub(super) max_credentials: Option<u32>,
}
