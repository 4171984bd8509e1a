//! Manifests: one TOML file per tool, stating who owns it, which component it
//! runs, and the ceiling of what it may ever be granted. Deny by default: a
//! manifest that writes nothing grants nothing.
//!
//! Parsing happens in two steps, like ripgrep's flags and its built options:
//! [`ManifestFile`] is the raw serde shape (unknown fields are errors), and
//! [`Manifest`] is the validated value the rest of the runtime reads. Every
//! error names the file, line, column and field that caused it.

use std::path::{Component as PathPart, Path, PathBuf};

mod error;
mod raw;
mod validate;

pub(crate) use error::Locator;
pub use error::{FieldError, ManifestError};
use raw::ManifestFile;

use crate::policy::credential::CredentialSpec;
use crate::policy::dir::DirGrant;
use crate::policy::egress::EgressRule;
use crate::policy::env::EnvGrant;
use crate::policy::limits::Limits;
use crate::policy::socket::SocketGrant;

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
    /// The tool's own rate limits, below the operator's.
    pub rate_limits: crate::policy::rate::ToolRateLimits,
    /// Labels for policies (`resource in Tool::"x" when { resource.tags.contains("pii") }`).
    pub tags: Vec<String>,
    /// The file this manifest came from, if any.
    pub source: Option<PathBuf>,
}

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
            rate_limits: Default::default(),
            tags: Vec::new(),
            source: None,
        }
    }
}

/// Field checks for grants written elsewhere than a manifest file (command-line flags).
impl Manifest {
    /// Checks a guest path: absolute, no `.` or `..` parts; returns it normalised.
    pub fn guest_path(path: &str) -> Result<String, FieldError> {
        guest_path(path)
    }

    /// Checks that `path` is an existing directory; returns its canonical form.
    pub fn host_dir(path: &Path) -> Result<PathBuf, FieldError> {
        host_dir(path)
    }

    /// Checks an environment variable name.
    pub fn env_name(name: &str) -> Result<(), FieldError> {
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

// ---------------------------------------------------------------------------
// Field checks, shared by manifest files and command-line grants.

/// Checks a tool name: lowercase letters, digits and single dashes, at most 64.
pub fn validate_tool_name(name: &str) -> Result<(), FieldError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid { Ok(()) } else { Err(FieldError::ToolName(name.to_owned())) }
}

fn parse_review_date(value: &toml::value::Datetime) -> Result<time::Date, FieldError> {
    let (Some(date), None) = (value.date, value.time) else {
        return Err(FieldError::NotADate(value.to_string()));
    };
    let month = time::Month::try_from(date.month).map_err(FieldError::Date)?;
    time::Date::from_calendar_date(i32::from(date.year), month, date.day).map_err(FieldError::Date)
}

/// Parses a lowercase or uppercase hex sha256.
pub(crate) fn parse_sha256(text: &str) -> Result<[u8; 32], FieldError> {
    let bytes = hex::decode(text.trim()).map_err(|cause| FieldError::NotHex { text: text.to_owned(), cause })?;
    bytes.try_into().map_err(|_| FieldError::Sha256Length)
}

/// Checks that `path` is an existing directory and returns its canonical form.
pub(crate) fn host_dir(path: &Path) -> Result<PathBuf, FieldError> {
    let canonical =
        // Ambient authority: a granted host directory is resolved on the host filesystem.
        path.canonicalize().map_err(|cause| FieldError::HostDir { path: path.to_owned(), cause })?;
    if !canonical.is_dir() {
        return Err(FieldError::NotADirectory(path.to_owned()));
    }
    Ok(canonical)
}

/// Checks a guest path: absolute, no `.` or `..` parts, normalised.
pub(crate) fn guest_path(path: &str) -> Result<String, FieldError> {
    let parsed = Path::new(path);
    if !parsed.is_absolute() {
        return Err(FieldError::GuestRelative(path.to_owned()));
    }
    let mut normal = String::new();
    for part in parsed.components() {
        match part {
            PathPart::RootDir => {}
            PathPart::Normal(name) => {
                normal.push('/');
                normal.push_str(&name.to_string_lossy());
            }
            _ => return Err(FieldError::GuestDots(path.to_owned())),
        }
    }
    Ok(if normal.is_empty() { "/".to_owned() } else { normal })
}

/// Checks an environment variable name.
pub(crate) fn env_name(name: &str) -> Result<(), FieldError> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(()) } else { Err(FieldError::EnvName(name.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::credential::Exposure;
    use crate::units::{ByteSize, TimeSpan};

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
    fn approvals_and_tags_parse_and_name_what_they_cover() {
        let rule = "\n[[egress]]\nurl = \"https://api.github.com/repos/*/issues\"\nmethods = [\"GET\", \"POST\"]\n";
        let text = format!(
            "{}tags = [\"customer-facing\"]\n{rule}approval = {{ reason = \"issues are public\", methods = [\"post\"] }}\n\n\
             [[credentials]]\nname = \"gh\"\nprovider = \"issuer\"\nscopes = [\"read\", \"write\"]\naudience = \"a\"\n\
             exposure = \"reveal\"\napproval = {{ reason = \"writes\", scopes = [\"write\"] }}\n",
            MINIMAL
        );
        let manifest = parse(&text).unwrap();
        assert_eq!(manifest.tags, ["customer-facing"]);
        let approval = manifest.egress[0].approval.as_ref().unwrap();
        assert_eq!((approval.reason.as_str(), approval.covers.clone()), ("issues are public", vec!["POST".to_owned()]));
        assert!(approval.covers_any(["POST"]) && !approval.covers_any(["GET"]));
        let approval = manifest.credentials[0].approval.as_ref().unwrap();
        assert!(approval.covers_any(["read", "write"]) && !approval.covers_any(["read"]));
        let cases = [
            (
                format!("{MINIMAL}{rule}approval = {{ reason = \"x\", methods = [\"DELETE\"] }}\n"),
                "`DELETE` is not one of the rule's methods",
            ),
            (format!("{MINIMAL}{rule}approval = {{ reason = \" \" }}\n"), "says why a person must approve"),
            (
                format!("{MINIMAL}{rule}approval = {{ reason = \"x\", scopes = [\"a\"] }}\n"),
                "names `methods`, not `scopes`",
            ),
            (format!("{MINIMAL}{rule}approval = {{ reason = \"x\", who = \"me\" }}\n"), "unknown field `who`"),
        ];
        for (text, says) in cases {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(says) && error.contains("egress[0].approval"), "{error}");
        }
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
