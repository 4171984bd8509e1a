//! `toolcell policy`: check manifests and request-time policies, print the
//! Cedar schema policies are checked against, and explain one decision.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use toolcell_runtime::request_policy::{
    Counters, Digest, PolicyAction, PolicyMode, PolicyQuery, PolicySource, PolicyVerdict, RequestPolicies, ToolFacts,
    schema_text,
};
use toolcell_runtime::{Manifest, RuntimeConfig, component_digest, limits_table};

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate manifests (*.toml) and request-time policies (*.cedar); a
    /// directory means every such file in it. Exits 1 if any is invalid.
    Check {
        /// Manifest files, policy files, or directories of them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print the Cedar schema request-time policies are validated against.
    Schema,
    /// Decide one request against the policies and print the decision and
    /// the policies that determined it. Exits 0 when allowed (or allowed
    /// once approved), 1 when denied.
    #[command(after_help = "\
Examples:
  toolcell policy explain --policies policies --principal alice --tool github-issues \\
      --action http --method POST --resource https://api.github.com/repos/acme/app/issues
  toolcell policy explain --policies policies --principal bob --tool http-get --action credential \\
      --resource api --counter task_total.mints=5
  toolcell policy explain --policies policies --principal alice --tool github-issues --action http \\
      --method POST --resource https://api.github.com/repos/a/b/issues --at 2026-12-05T10:00:00Z")]
    Explain(Box<ExplainArgs>),
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The directory of *.cedar files (default: the config's [policy] dir).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// The tool's manifest (default: the one named --tool in the policies directory).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// On whose behalf (roles and groups come from the config's [principals.NAME]).
    #[arg(long, value_name = "NAME")]
    principal: String,
    /// The tool's name.
    #[arg(long, value_name = "NAME")]
    tool: String,
    /// `call`, `http`, `credential` or `socket`.
    #[arg(long, value_name = "ACTION", value_parser = ["call", "http", "credential", "socket"])]
    action: String,
    /// http: the URL; credential: the credential's name; socket: IP:PORT; call: unused.
    #[arg(long, value_name = "RESOURCE")]
    resource: Option<String>,
    /// http: the method.
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// http: the request body's size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    body_size: u64,
    /// credential: the scopes asked for (default: all the manifest grants).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// socket: `tcp_connect` or `udp_send`.
    #[arg(long, value_name = "OPERATION", default_value = "tcp_connect")]
    operation: String,
    /// A counter of the context, like task_total.bytes_sent=1000000 or invocation.requests=3 (repeatable).
    #[arg(long = "counter", value_name = "NAME=N")]
    counters: Vec<String>,
    /// The call's input size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    input_size: u64,
    /// Decide as if a person had approved it.
    #[arg(long)]
    approved: bool,
    /// Decide at this UTC time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// `ceiling` or `strict` (default: the config's).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
}

pub fn run(command: PolicyCommand, config: Option<&Path>) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check { paths } => check(&paths, config),
        PolicyCommand::Schema => {
            outln!("{}", schema_text().trim_end());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Explain(args) => explain(*args, config),
    }
}

/// The manifests and policy files `paths` name.
fn files(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut manifests, mut policies) = (Vec::new(), Vec::new());
    for path in paths {
        let listed: Vec<PathBuf> = if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading `{}`", path.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| file.extension().is_some_and(|ext| ext == "toml" || ext == "cedar"))
                .collect();
            found.sort();
            found
        } else {
            vec![path.clone()]
        };
        for file in listed {
            if file.extension().is_some_and(|ext| ext == "cedar") {
                policies.push(file);
            } else {
                manifests.push(file);
            }
        }
    }
    Ok((manifests, policies))
}

/// `--mode`, or the config's mode.
fn mode_of(configured: PolicyMode, flag: Option<&str>) -> Result<PolicyMode> {
    match flag {
        Some("ceiling") => Ok(PolicyMode::Ceiling),
        Some("strict") => Ok(PolicyMode::Strict),
        Some(other) => bail!("--mode `{other}`: use `ceiling` or `strict`"),
        None => Ok(configured),
    }
}

/// The runtime config `config` names, or the defaults.
fn runtime_config(config: Option<&Path>) -> Result<RuntimeConfig> {
    Ok(config.map(RuntimeConfig::load).transpose()?.unwrap_or_default())
}

fn check(paths: &[PathBuf], config: Option<&Path>) -> Result<ExitCode> {
    let (manifests, policy_files) = files(paths)?;
    let mut invalid = 0;
    for file in &manifests {
        match Manifest::load(file).map_err(|e| e.to_string()).and_then(|m| check_component(&m).map(|c| (m, c))) {
            Ok((manifest, component)) => print_grants(file, &manifest, &component),
            Err(error) => {
                invalid += 1;
                outln!("{}: INVALID\n  {error}", file.display());
            }
        }
    }
    if !policy_files.is_empty() {
        let mut sources = Vec::new();
        for file in &policy_files {
            match PolicySource::read(file) {
                Ok(source) => sources.push(source),
                Err(error) => {
                    invalid += 1;
                    outln!("{}: INVALID\n  cannot be read: {error}", file.display());
                }
            }
        }
        // One set: ids must be unique across the files, as when they are loaded.
        match RequestPolicies::load(&sources, runtime_config(config)?.policy_mode) {
            Ok(policies) => {
                outln!(
                    "{} request-time policies in {} file(s): ok (mode {})",
                    policies.len(),
                    sources.len(),
                    policies.mode().name()
                );
            }
            Err(errors) => {
                let files: std::collections::BTreeSet<&PathBuf> = errors.problems.iter().map(|p| &p.file).collect();
                invalid += files.len().max(1);
                for problem in &errors.problems {
                    outln!("{problem}");
                }
            }
        }
    }
    let total = manifests.len() + policy_files.len();
    outln!("{total} checked, {} valid, {invalid} invalid", total - invalid.min(total));
    Ok(if invalid == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn explain(args: ExplainArgs, config: Option<&Path>) -> Result<ExitCode> {
    let runtime_config = runtime_config(config)?;
    let dir = args
        .policies
        .clone()
        .or(runtime_config.policy_dir.clone())
        .context("name the policies: --policies DIR, or [policy] dir in the runtime config")?;
    let mode = mode_of(runtime_config.policy_mode, args.mode.as_deref())?;
    let policies = RequestPolicies::load_dir(&dir, mode)
        .map_err(|errors| anyhow::anyhow!("the policies in {} are invalid:\n{errors}", dir.display()))?;
    let manifest = find_manifest(&args, &dir)?;
    let tool = ToolFacts {
        name: args.tool.clone(),
        owner: manifest.as_ref().map(|m| m.owner.clone()).unwrap_or_default(),
        tags: manifest.as_ref().map(|m| m.tags.clone()).unwrap_or_default(),
    };
    let time = match &args.at {
        Some(at) => time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("--at `{at}` is not an RFC 3339 time like 2026-12-01T10:00:00Z"))?,
        None => time::OffsetDateTime::now_utc(),
    };
    let (invocation, task_total) = counters(&args.counters)?;
    let action = action(&args, manifest.as_ref())?;
    let query = PolicyQuery {
        principal: args.principal.clone(),
        principal_attributes: runtime_config.principals.get(&args.principal).cloned().unwrap_or_default(),
        tool,
        task: "explain".into(),
        workload: format!("spiffe://{}/tool/{}/task/explain", runtime_config.trust_domain, args.tool),
        task_age_seconds: 0,
        time,
        invocation,
        task_total,
        input: Digest { size: args.input_size, sha256: String::new() },
        approved: args.approved,
        action,
        task_entities: None,
    };
    let verdict = policies.evaluate(&query);
    outln!(
        "request   {} {} by {} through {}",
        query.action.name(),
        query.action.resource(&args.tool),
        args.principal,
        args.tool
    );
    outln!("policies  {} from {} (mode {})", policies.len(), dir.display(), mode.name());
    outln!("decision  {}", verdict.name());
    let ids = verdict.policies();
    outln!("by        {}", if ids.is_empty() { "no policy".to_owned() } else { ids.join(", ") });
    match &verdict {
        PolicyVerdict::Allow { .. } => Ok(ExitCode::SUCCESS),
        PolicyVerdict::Approval { reason, .. } => {
            outln!("approval  {reason}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyVerdict::Deny { reason, .. } => {
            outln!("reason    {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The tool's manifest: `--manifest`, or the one in the policies directory whose tool is `--tool`.
fn find_manifest(args: &ExplainArgs, dir: &Path) -> Result<Option<Manifest>> {
    if let Some(path) = &args.manifest {
        return Ok(Some(Manifest::load(path)?));
    }
    // The manifests `toolcell serve --policies DIR` would serve.
    let (files, _) = crate::serve::catalog::Sources { dir: Some(dir.to_owned()), files: Vec::new() }.manifests();
    Ok(files.iter().filter_map(|file| Manifest::load(file).ok()).find(|manifest| manifest.name == args.tool))
}

/// `--counter invocation.NAME=N` and `task_total.NAME=N`.
fn counters(given: &[String]) -> Result<(Counters, Counters)> {
    let (mut invocation, mut task_total) = (Counters::default(), Counters::default());
    for counter in given {
        let parsed = counter.split_once('=').and_then(|(name, value)| Some((name, value.parse::<u64>().ok()?)));
        let Some((name, value)) = parsed else { bail!("--counter `{counter}`: write NAME=N, like task_total.mints=5") };
        let (scope, field) = name.split_once('.').unwrap_or(("", name));
        let target = match scope {
            "invocation" => &mut invocation,
            "task_total" => &mut task_total,
            _ => bail!("--counter `{counter}`: the name starts with `invocation.` or `task_total.`"),
        };
        let slot = match field {
            "requests" => &mut target.requests,
            "bytes_sent" => &mut target.bytes_sent,
            "bytes_received" => &mut target.bytes_received,
            "mints" => &mut target.mints,
            "denials" => &mut target.denials,
            _ => bail!("--counter `{counter}`: counters are requests, bytes_sent, bytes_received, mints and denials"),
        };
        *slot = value;
    }
    Ok((invocation, task_total))
}

/// The action `--action` and `--resource` describe.
fn action(args: &ExplainArgs, manifest: Option<&Manifest>) -> Result<PolicyAction> {
    let resource = || args.resource.clone().with_context(|| format!("--action {} needs --resource", args.action));
    Ok(match args.action.as_str() {
        "call" => PolicyAction::Call,
        "http" => {
            let url = resource()?;
            let uri: http::Uri = url.parse().with_context(|| format!("--resource `{url}` is not a URL"))?;
            let scheme = uri.scheme_str().context("--resource needs a scheme (http or https)")?.to_owned();
            let host = uri.host().context("--resource needs a host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
            PolicyAction::Http {
                method: args.method.to_ascii_uppercase(),
                scheme,
                host,
                port,
                path: uri.path().to_owned(),
                query: Digest::of(uri.query().unwrap_or("").as_bytes()),
                body: Digest { size: args.body_size, sha256: String::new() },
            }
        }
        "credential" => {
            let name = resource()?;
            let spec = manifest.and_then(|m| m.credentials.iter().find(|c| c.name == name));
            let spec =
                spec.with_context(|| format!("the manifest of `{}` grants no credential `{name}`", args.tool))?;
            PolicyAction::Credential {
                name,
                provider: spec.provider.name().to_owned(),
                audience: spec.audience.clone(),
                scopes: if args.scopes.is_empty() { spec.scopes.clone() } else { args.scopes.clone() },
                lifetime_seconds: spec.max_ttl.0.as_secs(),
                exposure: spec.exposure.name().to_owned(),
            }
        }
        _ => {
            let address: std::net::SocketAddr =
                resource()?.parse().context("--resource for a socket is IP:PORT, like 127.0.0.1:5432")?;
            let protocol = if args.operation == "udp_send" { "udp" } else { "tcp" };
            PolicyAction::Socket {
                operation: args.operation.clone(),
                protocol: protocol.into(),
                ip: address.ip(),
                port: address.port(),
            }
        }
    })
}

/// The component must exist and match its pin for the manifest to be usable.
fn check_component(manifest: &Manifest) -> Result<String, String> {
    let path = &manifest.component;
    let digest = component_digest(path, manifest.sha256.as_ref()).map_err(|e| format!("tool.component: {e}"))?;
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(match manifest.sha256 {
        Some(_) => format!("{} (sha256 pinned, matches)", path.display()),
        None => format!("{} (sha256 {hex}, not pinned)", path.display()),
    })
}

fn print_grants(file: &std::path::Path, manifest: &Manifest, component: &str) {
    let today = time::OffsetDateTime::now_utc().date();
    outln!("{}: ok", file.display());
    outln!("  tool        {} — {}", manifest.name, manifest.purpose);
    let review = match manifest.review_by {
        Some(date) if date < today => format!("{date} (OVERDUE)"),
        Some(date) => date.to_string(),
        None => "none".into(),
    };
    outln!("  owner       {} (review by {review})", manifest.owner);
    outln!("  component   {component}");
    if manifest.filesystem.is_empty() {
        outln!("  filesystem  nothing");
    }
    for dir in &manifest.filesystem {
        outln!("  filesystem  {} -> {} ({})", dir.host.display(), dir.guest, dir.mode);
    }
    let env: Vec<&str> = manifest.env.iter().map(|e| e.name.as_str()).collect();
    outln!("  env         {}", if env.is_empty() { "nothing".into() } else { env.join(", ") });
    outln!("  scratch     {}", manifest.scratch.as_deref().unwrap_or("none"));
    if manifest.egress.is_empty() {
        outln!("  egress      nothing");
    }
    for rule in &manifest.egress {
        let mut caps = format!(
            "{} requests, bodies {} up / {} down",
            rule.max_requests, rule.max_request_body, rule.max_response_body
        );
        if !rule.addresses.is_empty() {
            let addresses: Vec<String> = rule.addresses.iter().map(|a| a.to_string()).collect();
            caps.push_str(&format!(", may reach {}", addresses.join(", ")));
        }
        outln!("  egress      {} {} ({caps})", rule.methods.join(","), rule.url);
    }
    if manifest.sockets.is_empty() {
        outln!("  sockets     nothing (raw TCP, UDP and name lookup refused)");
    }
    for socket in &manifest.sockets {
        outln!("  sockets     {:?} {}", socket.protocol, socket.address);
    }
    if manifest.credentials.is_empty() {
        outln!("  credentials nothing");
    }
    for credential in &manifest.credentials {
        outln!("  credentials {credential}");
    }
    let limits: Vec<String> = limits_table(&manifest.limits).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    outln!("  limits      {}", limits.join(", "));
}
