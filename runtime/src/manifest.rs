//! Manifests: one TOML file per tool, stating who owns it, which component it
//! runs, and the ceiling of what it may ever be granted. Deny by default: a
//! manifest that writes nothing grants nothing.
//!
//! Parsing happens in two steps, like ripgrep's flags and its built options:
//! [`ManifestFile`] is the raw serde shape (unknown fields are errors), and
//! [`Manifest`] is the validated value the rest of the runtime reads. Every
//! error names the file, line, column and field that caused it.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Component as PathPart, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::policy::credential::{CredentialSpec, Exposure, Injection, ProviderKind, check_injection_header};
use crate::policy::dir::{DirGrant, DirMode};
use crate::policy::egress::{EgressRule, NEVER_WITH_CREDENTIALS};
use crate::policy::env::{EnvGrant, EnvSource};
use crate::policy::limits::{Limits, validate_limits};
use crate::policy::socket::{SocketGrant, SocketProtocol};
use crate::units::{ByteSize, TimeSpan};

/// Methods an egress rule may allow.
const HTTP_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

/// A validated manifest: identity, component, and the grant ceiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Tool name, lowercase letters, digits and dashes.
    pub name: String,
    /// Who answers for this tool (a team or a person).
    pub owner: String,
    /// Why the tool exists, for reviewers.
    pub purpose: String,
    /// When the grants must be reviewed again; `None` only for ad-hoc manifests.
    pub review_by: Option<time::Date>,
    /// The component file, absolute or relative to the working directory.
    pub component: PathBuf,
    /// The sha256 the component must have, if pinned.
    pub sha256: Option<[u8; 32]>,
    /// Directories the tool may see.
    pub filesystem: Vec<DirGrant>,
    /// Environment variables the tool may see.
    pub env: Vec<EnvGrant>,
    /// A fresh, empty, read-write directory for each invocation, removed at teardown.
    pub scratch: Option<String>,
    /// Outbound HTTP a tool may send, through `wasi:http` only.
    pub egress: Vec<EgressRule>,
    /// Exact addresses a tool may reach with raw TCP or UDP sockets.
    pub sockets: Vec<SocketGrant>,
    /// Credentials a tool may acquire, each from a provider the operator configures.
    pub credentials: Vec<CredentialSpec>,
    /// Resource limits of each invocation.
    pub limits: Limits,
    /// The file this manifest came from, if any.
    pub source: Option<PathBuf>,
}

/// A manifest that failed to parse or validate, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file (or `<command line>` for flags).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// The field, dotted (`limits.memory`, `filesystem[1].host`); empty when unknown.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ManifestError {
    /// A file that could not be read at all.
    pub(crate) fn unreadable(file: &Path, what: &str, error: &std::io::Error) -> ManifestError {
        ManifestError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read {what}: {error}"),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------------------
// The raw file shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    tool: ToolSection,
    #[serde(default)]
    filesystem: Vec<DirEntry>,
    #[serde(default)]
    env: EnvSection,
    scratch: Option<ScratchSection>,
    #[serde(default)]
    egress: Vec<EgressEntry>,
    #[serde(default)]
    sockets: Vec<SocketEntry>,
    #[serde(default)]
    credentials: Vec<CredentialEntry>,
    #[serde(default)]
    limits: LimitsSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    name: Spanned<String>,
    provider: Spanned<ProviderKind>,
    #[serde(default)]
    scopes: Vec<String>,
    audience: String,
    max_ttl: Option<TimeSpan>,
    #[serde(default)]
    exposure: Option<Spanned<String>>,
    inject: Option<InjectEntry>,
}

/// One rule URL, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectEntry {
    egress: Spanned<OneOrMany>,
    #[serde(default = "authorization")]
    header: Spanned<String>,
    #[serde(default = "bearer")]
    format: String,
}

fn authorization() -> Spanned<String> {
    Spanned::new(0..0, "authorization".to_owned())
}

fn bearer() -> String {
    "Bearer {token}".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketEntry {
    protocol: SocketProtocol,
    address: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressEntry {
    url: Spanned<String>,
    methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    max_requests: Option<u32>,
    max_request_body: Option<ByteSize>,
    max_response_body: Option<ByteSize>,
    connect_timeout: Option<TimeSpan>,
    first_byte_timeout: Option<TimeSpan>,
    total_timeout: Option<TimeSpan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolSection {
    name: Spanned<String>,
    owner: Spanned<String>,
    purpose: Spanned<String>,
    review_by: Spanned<toml::value::Datetime>,
    component: Spanned<PathBuf>,
    sha256: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirEntry {
    host: Spanned<PathBuf>,
    guest: Spanned<String>,
    #[serde(default = "read_only")]
    mode: DirMode,
}

fn read_only() -> DirMode {
    DirMode::ReadOnly
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvSection {
    #[serde(default)]
    pass: Vec<Spanned<String>>,
    #[serde(default)]
    set: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScratchSection {
    guest: Spanned<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory: Option<ByteSize>,
    cpu: Option<TimeSpan>,
    timeout: Option<TimeSpan>,
    max_input: Option<ByteSize>,
    max_output: Option<ByteSize>,
    max_refusals: Option<u32>,
    max_credentials: Option<u32>,
}

// ---------------------------------------------------------------------------
// Parsing and validation.

impl Manifest {
    /// Reads and validates a manifest file. Relative paths in it are resolved
    /// against the directory that holds it.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text =
            // Ambient authority: the manifest file.
            std::fs::read_to_string(path).map_err(|error| ManifestError::unreadable(path, "manifest", &error))?;
        Manifest::parse(&text, path)
    }

    /// Validates manifest text as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let at = Locator { text, file: path };
        let deserializer = toml::Deserializer::parse(text).map_err(|error| at.toml_error(&error, String::new()))?;
        let raw: ManifestFile = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            // `Spanned` fields deserialize through a private wrapper; its
            // segments say nothing to the reader.
            let field = error.path().to_string().replace(".$__serde_spanned_private_value", "");
            at.toml_error(error.inner(), if field == "." { String::new() } else { field })
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        raw.validate(base, &at)
    }

    /// A manifest for a component run without one: nothing granted, default limits.
    pub fn ad_hoc(component: &Path) -> Manifest {
        let name = component
            .file_stem()
            .map(|stem| tool_name_from(&stem.to_string_lossy()))
            .unwrap_or_else(|| "tool".to_owned());
        Manifest {
            name,
            owner: "(ad hoc)".to_owned(),
            purpose: "(ad hoc run without a manifest)".to_owned(),
            review_by: None,
            component: component.to_owned(),
            sha256: None,
            filesystem: Vec::new(),
            env: Vec::new(),
            scratch: None,
            egress: Vec::new(),
            sockets: Vec::new(),
            credentials: Vec::new(),
            limits: Limits::DEFAULT,
            source: None,
        }
    }
}

/// Field checks for grants written elsewhere than a manifest file (command-line flags).
impl Manifest {
    /// Checks a guest path: absolute, no `.` or `..` parts; returns it normalised.
    pub fn guest_path(path: &str) -> Result<String, String> {
        guest_path(path)
    }

    /// Checks that `path` is an existing directory; returns its canonical form.
    pub fn host_dir(path: &Path) -> Result<PathBuf, String> {
        host_dir(path)
    }

    /// Checks an environment variable name.
    pub fn env_name(name: &str) -> Result<(), String> {
        env_name(name)
    }
}

/// Turns a file stem like `word_count` into a valid tool name (`word-count`).
fn tool_name_from(stem: &str) -> String {
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "tool".to_owned() } else { name }
}

/// Turns byte offsets into line and column for error messages.
pub(crate) struct Locator<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a Path,
}

impl Locator<'_> {
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        let (line, column) = match span {
            Some(span) => {
                let before = &self.text[..span.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            }
            None => (0, 0),
        };
        ManifestError { file: self.file.to_owned(), line, column, field: field.into(), message: message.into() }
    }

    pub(crate) fn toml_error(&self, error: &toml::de::Error, field: String) -> ManifestError {
        self.error(error.span(), field, error.message().trim().to_owned())
    }

    fn at<T>(&self, value: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        self.error(Some(value.span()), field, message)
    }
}

impl ManifestFile {
    fn validate(self, base: &Path, at: &Locator<'_>) -> Result<Manifest, ManifestError> {
        let tool = self.tool;
        validate_tool_name(tool.name.get_ref()).map_err(|m| at.at(&tool.name, "tool.name", m))?;
        for (value, field) in [(&tool.owner, "tool.owner"), (&tool.purpose, "tool.purpose")] {
            if value.get_ref().trim().is_empty() {
                return Err(at.at(value, field, "must not be empty"));
            }
        }
        let review_by =
            parse_review_date(tool.review_by.get_ref()).map_err(|m| at.at(&tool.review_by, "tool.review_by", m))?;
        let sha256 = match &tool.sha256 {
            Some(pin) => Some(parse_sha256(pin.get_ref()).map_err(|m| at.at(pin, "tool.sha256", m))?),
            None => None,
        };

        let mut guests = BTreeSet::new();
        let mut filesystem = Vec::new();
        for (index, entry) in self.filesystem.iter().enumerate() {
            let field = |name: &str| format!("filesystem[{index}].{name}");
            let host = host_dir(&base.join(entry.host.get_ref())).map_err(|m| at.at(&entry.host, field("host"), m))?;
            let guest = guest_path(entry.guest.get_ref()).map_err(|m| at.at(&entry.guest, field("guest"), m))?;
            if !guests.insert(guest.clone()) {
                return Err(at.at(&entry.guest, field("guest"), format!("`{guest}` is granted twice")));
            }
            filesystem.push(DirGrant { host, guest, mode: entry.mode });
        }

        let scratch = match &self.scratch {
            Some(section) => {
                let guest =
                    guest_path(section.guest.get_ref()).map_err(|m| at.at(&section.guest, "scratch.guest", m))?;
                if !guests.insert(guest.clone()) {
                    return Err(at.at(
                        &section.guest,
                        "scratch.guest",
                        format!("`{guest}` is also a filesystem grant"),
                    ));
                }
                Some(guest)
            }
            None => None,
        };

        let mut env = Vec::new();
        let mut names = BTreeSet::new();
        for (index, name) in self.env.pass.iter().enumerate() {
            let field = format!("env.pass[{index}]");
            env_name(name.get_ref()).map_err(|m| at.at(name, &field, m))?;
            if !names.insert(name.get_ref().clone()) {
                return Err(at.at(name, field, format!("`{}` is granted twice", name.get_ref())));
            }
            env.push(EnvGrant { name: name.get_ref().clone(), source: EnvSource::Host });
        }
        for (name, value) in &self.env.set {
            let field = format!("env.set.{name}");
            env_name(name).map_err(|m| at.at(value, &field, m))?;
            if !names.insert(name.clone()) {
                return Err(at.at(value, field, format!("`{name}` is also in env.pass")));
            }
            env.push(EnvGrant { name: name.clone(), source: EnvSource::Value(value.get_ref().clone()) });
        }

        let mut egress = Vec::new();
        for (index, entry) in self.egress.iter().enumerate() {
            let field = |name: &str| format!("egress[{index}].{name}");
            let mut rule = EgressRule::parse(entry.url.get_ref()).map_err(|m| at.at(&entry.url, field("url"), m))?;
            if let Some(methods) = &entry.methods {
                rule.methods.clear();
                for method in methods {
                    let name = method.get_ref().to_ascii_uppercase();
                    if !HTTP_METHODS.contains(&name.as_str()) {
                        return Err(at.at(
                            method,
                            field("methods"),
                            format!("`{}` is not an HTTP method", method.get_ref()),
                        ));
                    }
                    rule.methods.push(name);
                }
            }
            for address in &entry.addresses {
                let ip = address.get_ref().parse().map_err(|_| {
                    at.at(address, field("addresses"), format!("`{}` is not an IP address", address.get_ref()))
                })?;
                rule.addresses.push(ip);
            }
            rule.max_requests = entry.max_requests.unwrap_or(rule.max_requests);
            rule.max_request_body = entry.max_request_body.unwrap_or(rule.max_request_body);
            rule.max_response_body = entry.max_response_body.unwrap_or(rule.max_response_body);
            rule.connect_timeout = entry.connect_timeout.unwrap_or(rule.connect_timeout);
            rule.first_byte_timeout = entry.first_byte_timeout.unwrap_or(rule.first_byte_timeout);
            rule.total_timeout = entry.total_timeout.unwrap_or(rule.total_timeout);
            if egress.iter().any(|r: &EgressRule| r.url == rule.url) {
                return Err(at.at(&entry.url, field("url"), format!("`{}` is written twice", rule.url)));
            }
            egress.push(rule);
        }

        let mut sockets = Vec::new();
        for (index, entry) in self.sockets.iter().enumerate() {
            let address = entry.address.get_ref().parse().map_err(|_| {
                at.at(
                    &entry.address,
                    format!("sockets[{index}].address"),
                    format!("`{}` is not an exact address and port, like 127.0.0.1:5432", entry.address.get_ref()),
                )
            })?;
            sockets.push(SocketGrant { protocol: entry.protocol, address });
        }

        let mut credentials: Vec<CredentialSpec> = Vec::new();
        for (index, entry) in self.credentials.iter().enumerate() {
            let field = |name: &str| format!("credentials[{index}].{name}");
            let name = entry.name.get_ref();
            validate_tool_name(name)
                .map_err(|m| at.at(&entry.name, field("name"), m.replace("tool name", "credential name")))?;
            if credentials.iter().any(|c| &c.name == name) {
                return Err(at.at(&entry.name, field("name"), format!("`{name}` is written twice")));
            }
            let provider = *entry.provider.get_ref();
            let exposure = match (entry.exposure.as_ref().map(|e| e.get_ref().as_str()), &entry.inject) {
                (None | Some("inject"), Some(inject)) => {
                    let header = check_injection_header(inject.header.get_ref(), &inject.format)
                        .map_err(|m| at.at(&inject.header, field("inject"), m))?;
                    let rules = match inject.egress.get_ref() {
                        OneOrMany::One(url) => vec![url.clone()],
                        OneOrMany::Many(urls) => urls.clone(),
                    };
                    if rules.is_empty() {
                        return Err(at.at(&inject.egress, field("inject.egress"), "names no egress rule"));
                    }
                    if let Some(unknown) = rules.iter().find(|url| !egress.iter().any(|rule| &rule.url == *url)) {
                        return Err(at.at(
                            &inject.egress,
                            field("inject.egress"),
                            format!("`{unknown}` is not one of this manifest's egress rules"),
                        ));
                    }
                    for url in &rules {
                        let rule = egress.iter().find(|rule| &rule.url == url).expect("checked above");
                        if let Some(method) = rule.methods.iter().find(|m| NEVER_WITH_CREDENTIALS.contains(&m.as_str()))
                        {
                            return Err(at.at(
                                &inject.egress,
                                field("inject.egress"),
                                format!(
                                    "rule `{url}` allows {method}, which is never sent with a credential \
                                     (TRACE echoes the injected header back to the tool; CONNECT tunnels past the host)"
                                ),
                            ));
                        }
                    }
                    Exposure::Inject(Injection { egress: rules, header, format: inject.format.clone() })
                }
                (None | Some("inject"), None) => {
                    return Err(at.at(
                        &entry.name,
                        field("inject"),
                        "an injected credential needs `inject = { egress = \"<rule url>\" }`",
                    ));
                }
                (Some("reveal"), None) if provider == ProviderKind::Static => {
                    return Err(at.at(
                        &entry.provider,
                        field("exposure"),
                        "static credentials are root secrets: they can only be injected",
                    ));
                }
                (Some("reveal"), None) => Exposure::Reveal,
                (Some("reveal"), Some(_)) => {
                    return Err(at.at(
                        &entry.name,
                        field("inject"),
                        "a revealed credential is not injected; drop `inject`",
                    ));
                }
                (Some(other), _) => {
                    let spanned = entry.exposure.as_ref().expect("matched Some");
                    return Err(at.at(spanned, field("exposure"), format!("`{other}` is not `inject` or `reveal`")));
                }
            };
            if provider == ProviderKind::Static && !entry.scopes.is_empty() {
                return Err(at.at(
                    &entry.provider,
                    field("scopes"),
                    "a static secret carries no scopes toolcell could narrow; drop `scopes`",
                ));
            }
            if provider == ProviderKind::Openbao && entry.scopes.is_empty() {
                return Err(at.at(
                    &entry.provider,
                    field("scopes"),
                    "an openbao credential names the OpenBao policies its task token carries in `scopes`; \
                     with none, OpenBao would give the token the runtime's own policies",
                ));
            }
            let max_ttl = entry.max_ttl.unwrap_or(TimeSpan(std::time::Duration::from_secs(300)));
            if max_ttl.0.as_secs() == 0 {
                return Err(at.at(&entry.name, field("max_ttl"), "must be at least 1s"));
            }
            credentials.push(CredentialSpec {
                name: name.clone(),
                provider,
                scopes: entry.scopes.clone(),
                audience: entry.audience.clone(),
                max_ttl,
                exposure,
            });
        }

        let raw = self.limits;
        let defaults = Limits::DEFAULT;
        let limits = Limits {
            memory: raw.memory.unwrap_or(defaults.memory),
            cpu: raw.cpu.unwrap_or(defaults.cpu),
            timeout: raw.timeout.unwrap_or(defaults.timeout),
            max_input: raw.max_input.unwrap_or(defaults.max_input),
            max_output: raw.max_output.unwrap_or(defaults.max_output),
            max_refusals: raw.max_refusals.unwrap_or(defaults.max_refusals),
            max_credentials: raw.max_credentials.unwrap_or(defaults.max_credentials),
        };
        validate_limits(&limits).map_err(|(field, m)| at.error(None, format!("limits.{field}"), m))?;

        Ok(Manifest {
            name: tool.name.into_inner(),
            owner: tool.owner.into_inner(),
            purpose: tool.purpose.into_inner(),
            review_by: Some(review_by),
            component: base.join(tool.component.into_inner()),
            sha256,
            filesystem,
            env,
            scratch,
            egress,
            sockets,
            credentials,
            limits,
            source: Some(at.file.to_owned()),
        })
    }
}

// ---------------------------------------------------------------------------
// Field checks, shared by manifest files and command-line grants.

/// Checks a tool name: lowercase ASCII letters, digits and single dashes.
/// Checks a tool name: lowercase letters, digits and single dashes, at most 64.
pub fn validate_tool_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!("`{name}` is not a tool name: use lowercase letters, digits and single dashes, at most 64"))
    }
}

fn parse_review_date(value: &toml::value::Datetime) -> Result<time::Date, String> {
    let (Some(date), None) = (value.date, value.time) else {
        return Err(format!("`{value}` is not a date: write it like 2027-06-30"));
    };
    let month = time::Month::try_from(date.month).map_err(|e| e.to_string())?;
    time::Date::from_calendar_date(i32::from(date.year), month, date.day).map_err(|e| e.to_string())
}

/// Parses a lowercase or uppercase hex sha256.
pub(crate) fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("`{text}` is not hex"))?;
    bytes.try_into().map_err(|_| "a sha256 is 64 hex digits".to_owned())
}

/// Checks that `path` is an existing directory and returns its canonical form.
pub(crate) fn host_dir(path: &Path) -> Result<PathBuf, String> {
    let canonical =
        // Ambient authority: a granted host directory is resolved on the host filesystem.
        path.canonicalize().map_err(|error| format!("directory `{}` cannot be used: {error}", path.display()))?;
    if !canonical.is_dir() {
        return Err(format!("`{}` is not a directory", path.display()));
    }
    Ok(canonical)
}

/// Checks a guest path: absolute, no `.` or `..` parts, normalised.
pub(crate) fn guest_path(path: &str) -> Result<String, String> {
    let parsed = Path::new(path);
    if !parsed.is_absolute() {
        return Err(format!("guest path `{path}` must be absolute, like /data"));
    }
    let mut normal = String::new();
    for part in parsed.components() {
        match part {
            PathPart::RootDir => {}
            PathPart::Normal(name) => {
                normal.push('/');
                normal.push_str(&name.to_string_lossy());
            }
            _ => return Err(format!("guest path `{path}` must not contain `.` or `..`")),
        }
    }
    Ok(if normal.is_empty() { "/".to_owned() } else { normal })
}

/// Checks an environment variable name.
pub(crate) fn env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(()) } else { Err(format!("`{name}` is not a variable name: use letters, digits and `_`")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("/work/policies/t.toml"))
    }

    const MINIMAL: &str = r#"
[tool]
name = "word-count"
owner = "tools@example.com"
purpose = "Count words"
review_by = 2027-06-30
component = "word_count.wasm"
"#;

    #[test]
    fn minimal_manifest_grants_nothing() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.name, "word-count");
        assert!(manifest.filesystem.is_empty());
        assert!(manifest.env.is_empty());
        assert_eq!(manifest.scratch, None);
        assert_eq!(manifest.limits, Limits::DEFAULT);
        assert_eq!(manifest.component, Path::new("/work/policies/word_count.wasm"));
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = format!("{MINIMAL}\n[limits]\nmemory = \"64MiB\"\nnetwork = true\n");
        let error = parse(&text).unwrap_err();
        assert_eq!(error.field, "limits.network");
        assert_eq!(error.line, 11);
        assert!(error.message.contains("unknown field `network`"), "{error}");
        assert!(error.to_string().starts_with("/work/policies/t.toml:11:"), "{error}");
    }

    #[test]
    fn bad_size_and_duration_name_the_field() {
        let error = parse(&format!("{MINIMAL}\n[limits]\nmemory = \"64MB\"\n")).unwrap_err();
        assert_eq!(error.field, "limits.memory");
        assert!(error.message.contains("invalid size `64MB`"), "{error}");
        let error = parse(&format!("{MINIMAL}\n[limits]\ntimeout = \"5\"\n")).unwrap_err();
        assert_eq!(error.field, "limits.timeout");
        assert!(error.message.contains("invalid duration `5`"), "{error}");
    }

    #[test]
    fn missing_directory_names_line_and_field() {
        let text = format!("{MINIMAL}\n[[filesystem]]\nhost = \"/definitely/not/here\"\nguest = \"/data\"\n");
        let error = parse(&text).unwrap_err();
        assert_eq!(error.field, "filesystem[0].host");
        assert_eq!(error.line, 10);
        assert!(error.message.contains("/definitely/not/here"), "{error}");
    }

    #[test]
    fn guest_paths_must_be_absolute_and_plain() {
        assert_eq!(guest_path("/data/x/").unwrap(), "/data/x");
        assert!(guest_path("data").is_err());
        assert!(guest_path("/data/../etc").is_err());
        assert!(guest_path("/./data").is_ok(), "Path normalises `.` away after the root");
    }

    #[test]
    fn missing_identity_field_is_an_error() {
        let text = MINIMAL.replace("owner = \"tools@example.com\"\n", "");
        let error = parse(&text).unwrap_err();
        assert!(error.message.contains("missing field `owner`"), "{error}");
    }

    #[test]
    fn env_errors_point_at_the_value() {
        let error = parse(&format!("{MINIMAL}\n[env]\npass = [\"A\"]\nset = {{ A = \"x\" }}\n")).unwrap_err();
        assert_eq!((error.field.as_str(), error.line), ("env.set.A", 11));
        assert!(error.message.contains("also in env.pass"), "{error}");
        let error = parse(&format!("{MINIMAL}\n[env]\nset = {{ N = 5 }}\n")).unwrap_err();
        assert_eq!(error.field, "env.set.N");
    }

    #[test]
    fn egress_rules_parse_with_their_caps() {
        let text = format!(
            "{MINIMAL}\n[[egress]]\nurl = \"https://api.example.com/v1/*\"\nmethods = [\"get\", \"POST\"]\n\
             max_requests = 3\nmax_response_body = \"64KiB\"\n\n[[egress]]\nurl = \"http://svc.test:8080/*\"\n\
             addresses = [\"127.0.0.1\"]\n"
        );
        let manifest = parse(&text).unwrap();
        assert_eq!(manifest.egress.len(), 2);
        assert_eq!(manifest.egress[0].methods, ["GET", "POST"]);
        assert_eq!(manifest.egress[0].max_requests, 3);
        assert_eq!(manifest.egress[0].max_response_body, ByteSize(64 << 10));
        assert_eq!(manifest.egress[1].addresses, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        let error = parse(&format!("{MINIMAL}\n[[egress]]\nurl = \"ftp://x\"\n")).unwrap_err();
        assert_eq!((error.field.as_str(), error.line), ("egress[0].url", 10));
        let error =
            parse(&format!("{MINIMAL}\n[[egress]]\nurl = \"https://x/*\"\nmethods = [\"FETCH\"]\n")).unwrap_err();
        assert_eq!(error.field, "egress[0].methods");
    }

    #[test]
    fn socket_grants_need_exact_addresses() {
        let text = format!("{MINIMAL}\n[[sockets]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:5432\"\n");
        let manifest = parse(&text).unwrap();
        assert_eq!(manifest.sockets[0].address, "127.0.0.1:5432".parse().unwrap());
        let error = parse(&format!("{MINIMAL}\n[[sockets]]\nprotocol = \"tcp\"\naddress = \"db.internal:5432\"\n"))
            .unwrap_err();
        assert_eq!(error.field, "sockets[0].address");
        let error =
            parse(&format!("{MINIMAL}\n[[sockets]]\nprotocol = \"sctp\"\naddress = \"127.0.0.1:1\"\n")).unwrap_err();
        assert!(error.field.starts_with("sockets[0]"), "{error}");
    }

    #[test]
    fn credentials_parse_and_bind_to_an_egress_rule() {
        let egress = "\n[[egress]]\nurl = \"https://api.github.com/*\"\nmethods = [\"GET\", \"POST\"]\n";
        let text = format!(
            "{MINIMAL}{egress}\n[[credentials]]\nname = \"github\"\nprovider = \"issuer\"\nscopes = [\"repo:read\"]\n\
             audience = \"https://api.github.com\"\nmax_ttl = \"2m\"\ninject = {{ egress = \"https://api.github.com/*\" }}\n\n\
             [[credentials]]\nname = \"db\"\nprovider = \"openbao\"\nscopes = [\"db-read\"]\naudience = \"postgres\"\n\
             exposure = \"reveal\"\n"
        );
        // An openbao credential without scopes would give its task token the runtime's policies.
        let unscoped = text.replace("scopes = [\"db-read\"]\n", "");
        let error = parse(&unscoped).unwrap_err();
        assert_eq!(error.field, "credentials[1].scopes");
        assert!(error.message.contains("the runtime's own policies"), "{error}");
        // A rule that allows TRACE never carries a credential: TRACE echoes it back.
        let traced = text.replace("methods = [\"GET\", \"POST\"]", "methods = [\"GET\", \"TRACE\"]");
        assert_ne!(traced, text);
        let error = parse(&traced).unwrap_err();
        assert_eq!(error.field, "credentials[0].inject.egress");
        assert!(error.message.contains("TRACE"), "{error}");
        let manifest = parse(&text).unwrap();
        assert_eq!(manifest.credentials.len(), 2);
        let github = &manifest.credentials[0];
        assert_eq!(github.max_ttl, TimeSpan(std::time::Duration::from_secs(120)));
        let Exposure::Inject(injection) = &github.exposure else { panic!("inject by default") };
        assert_eq!((injection.header.as_str(), injection.format.as_str()), ("authorization", "Bearer {token}"));
        assert_eq!(manifest.credentials[1].exposure, Exposure::Reveal);

        let unbound = format!(
            "{MINIMAL}{egress}\n[[credentials]]\nname = \"gh\"\nprovider = \"issuer\"\naudience = \"a\"\n\
             inject = {{ egress = \"https://evil.example.com/*\" }}\n"
        );
        let error = parse(&unbound).unwrap_err();
        assert_eq!(error.field, "credentials[0].inject.egress");
        // A credential can be bound to several of the manifest's rules, each named.
        let two_rules = format!(
            "{MINIMAL}{egress}\n[[egress]]\nurl = \"https://uploads.github.com/*\"\n\n[[credentials]]\nname = \"gh\"\n\
             provider = \"issuer\"\naudience = \"a\"\n\
             inject = {{ egress = [\"https://api.github.com/*\", \"https://uploads.github.com/*\"] }}\n"
        );
        let manifest = parse(&two_rules).unwrap();
        let Exposure::Inject(injection) = &manifest.credentials[0].exposure else { panic!("injected") };
        assert_eq!(injection.egress.len(), 2);
        let one_unknown = two_rules.replace("\"https://uploads.github.com/*\"]", "\"https://evil.example.com/*\"]");
        assert!(parse(&one_unknown).unwrap_err().message.contains("`https://evil.example.com/*` is not one of"));
        let static_scoped = format!(
            "{MINIMAL}{egress}\n[[credentials]]\nname = \"root\"\nprovider = \"static\"\naudience = \"a\"\n\
             scopes = [\"admin\"]\ninject = {{ egress = \"https://api.github.com/*\" }}\n"
        );
        assert_eq!(parse(&static_scoped).unwrap_err().field, "credentials[0].scopes");
        let static_reveal = format!(
            "{MINIMAL}\n[[credentials]]\nname = \"root\"\nprovider = \"static\"\naudience = \"a\"\nexposure = \"reveal\"\n"
        );
        assert!(parse(&static_reveal).unwrap_err().message.contains("can only be injected"));
        let host_header = format!(
            "{MINIMAL}{egress}\n[[credentials]]\nname = \"gh\"\nprovider = \"issuer\"\naudience = \"a\"\n\
             inject = {{ egress = \"https://api.github.com/*\", header = \"Host\" }}\n"
        );
        assert!(parse(&host_header).unwrap_err().message.contains("cannot carry a credential"));
    }

    #[test]
    fn env_values_stay_out_of_debug_output() {
        let text = format!("{MINIMAL}\n[env]\nset = {{ API_TOKEN = \"s3cr3t-value\" }}\n");
        let manifest = parse(&text).unwrap();
        assert!(!format!("{manifest:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn bad_names_and_pins_are_refused() {
        let error = parse(&MINIMAL.replace("word-count", "Word Count")).unwrap_err();
        assert_eq!(error.field, "tool.name");
        let error = parse(&format!("{MINIMAL}sha256 = \"abc\"\n")).unwrap_err();
        assert_eq!(error.field, "tool.sha256");
    }
}
