//! `toolcell blast-radius`: what each tool, a task of it, or a principal
//! could reach if compromised, with one score to compare by; `--diff` says
//! what a change widens.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use toolcell_runtime::reports::{
    self, ExposureByTool, Outcome, PrincipalReach, ReachInputs, SCORING, ToolReach, diff_reach, measure_exposure,
    principal_reach, tool_reach,
};
use toolcell_runtime::request_policy::RequestPolicies;
use toolcell_runtime::{Kill, Manifest, Narrowing, RuntimeConfig};

#[derive(clap::Args, Debug)]
#[command(after_help = help())]
pub struct BlastArgs {
    /// Manifests to report on (default: every manifest in --policies, or in the config's [policy] dir).
    manifests: Vec<PathBuf>,
    /// A directory of manifests (*.toml) and request-time policies (*.cedar).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// A task's narrowing (JSON, or @FILE), applied to each tool.
    #[arg(long, value_name = "JSON")]
    narrowing: Option<String>,
    /// Ask policies about this principal only, and add what it reaches through every tool.
    #[arg(long, value_name = "NAME")]
    principal: Option<String>,
    /// `text`, `json` or `dot` (Graphviz).
    #[arg(long, default_value = "text", value_parser = ["text", "json", "dot"])]
    format: String,
    /// Audit files to measure credential exposure from (mint to revocation, validity after it).
    #[arg(long = "audit", value_name = "FILE")]
    audits: Vec<PathBuf>,
    /// Compare two directories (or manifest files) of manifests and policies; exit 1 if NEW widens anything.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    diff: Option<Vec<PathBuf>>,
}

fn help() -> String {
    let how = concat!(
        "Reach comes from the manifests (the ceiling), narrowed by --narrowing, with what\n",
        "request-time policies forbid taken away. Policies are asked as the runtime asks them,\n",
        "for a fresh task (every counter zero, not approved) at a weekday noon and a weekend\n",
        "night (UTC), for --principal or else every principal in the config plus `*` (anyone\n",
        "else): forbidden in every sample is taken away; forbidden in some is `conditional`.\n\n",
        "Exposure: each credential's longest life (the least of its manifest max_ttl, the\n",
        "operator's max_credential_ttl and the call timeout) against a static key for the same\n",
        "system (valid until someone rotates it); with --audit, the measured mint-to-revocation\n",
        "windows and how long values stayed valid after revocation.\n\n",
        "Examples:\n",
        "  toolcell blast-radius --policies policies\n",
        "  toolcell blast-radius policies/github-issues.toml --narrowing '{\"egress\":[\"https://api.github.com/repos/*\"]}'\n",
        "  toolcell blast-radius --policies policies --principal alice --format dot | dot -Tsvg > reach.svg\n",
        "  toolcell blast-radius --diff old-policies/ policies/",
    );
    format!("{how}\n\n{SCORING}")
}

pub fn run(args: BlastArgs, config: Option<&Path>) -> Result<ExitCode> {
    let config = crate::run::runtime_config(config, None)?;
    if args.format == "dot" && args.diff.is_some() {
        bail!("--diff prints text or json, not dot");
    }
    let narrowing = args.narrowing.as_deref().map(read_narrowing).transpose()?;
    let kills = match &config.kill_file {
        Some(file) => Kill::read_in_force(file)?,
        None => Vec::new(),
    };
    let principals: Vec<String> = args.principal.iter().cloned().collect();
    if let Some(sides) = &args.diff {
        let old = reach_of(&Sources::of(&sides[0])?, &config, &kills, &principals, narrowing.as_ref())?;
        let new = reach_of(&Sources::of(&sides[1])?, &config, &kills, &principals, narrowing.as_ref())?;
        let changes = diff_reach(&old, &new);
        if args.format == "json" {
            outln!("{}", serde_json::to_string_pretty(&changes)?);
        } else if changes.is_empty() {
            outln!("no change in reach");
        } else {
            for change in &changes {
                outln!("{change}");
            }
        }
        let widened = changes.iter().filter(|c| c.widens).count();
        if args.format != "json" && widened > 0 {
            outln!("{widened} change(s) widen reach");
        }
        return Ok(if widened > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    let sources = match (&args.policies, args.manifests.is_empty()) {
        (Some(dir), true) => Sources::of(dir)?,
        (dir, false) => {
            Sources { manifests: args.manifests.clone(), policies: dir.clone().or(config.policy_dir.clone()) }
        }
        (None, true) => match &config.policy_dir {
            Some(dir) => Sources::of(dir)?,
            None => bail!("name manifests, or a directory of them with --policies DIR"),
        },
    };
    let tools = reach_of(&sources, &config, &kills, &principals, narrowing.as_ref())?;
    let exposure = if args.audits.is_empty() { None } else { Some(measure_exposure(&args.audits)?) };
    let principal = args.principal.as_deref().map(|p| principal_reach(p, &tools));
    match args.format.as_str() {
        "json" => {
            let report = serde_json::json!({
                "tools": tools,
                "principal": principal,
                "exposure": exposure,
                "narrowed": narrowing.is_some(),
            });
            outln!("{}", serde_json::to_string_pretty(&report)?);
        }
        "dot" => outln!("{}", dot(&tools, principal.as_ref(), &config)),
        _ => {
            for tool in &tools {
                print_tool(tool, exposure.as_ref());
            }
            if let Some(principal) = &principal {
                print_principal(principal);
            }
            if narrowing.is_some() {
                outln!("(each tool as a task with the narrowing given would hold it)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_narrowing(text: &str) -> Result<Narrowing> {
    let text = match text.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading --narrowing file `{file}`"))?,
        None => text.to_owned(),
    };
    let value: serde_json::Value = serde_json::from_str(&text).context("--narrowing is not JSON")?;
    Narrowing::from_json(&value).map_err(|e| anyhow::anyhow!("--narrowing: {e}"))
}

/// The manifests and policies a report reads.
struct Sources {
    manifests: Vec<PathBuf>,
    policies: Option<PathBuf>,
}

impl Sources {
    /// A directory (its manifests and policies), or one manifest file.
    fn of(path: &Path) -> Result<Sources> {
        if path.is_file() {
            return Ok(Sources { manifests: vec![path.to_owned()], policies: None });
        }
        let (manifests, problems) =
            crate::serve::catalog::Sources { dir: Some(path.to_owned()), files: Vec::new() }.manifests();
        if let Some(problem) = problems.first() {
            bail!("{problem}");
        }
        Ok(Sources { manifests, policies: Some(path.to_owned()) })
    }
}

fn reach_of(
    sources: &Sources,
    config: &RuntimeConfig,
    kills: &[Kill],
    principals: &[String],
    narrowing: Option<&Narrowing>,
) -> Result<Vec<ToolReach>> {
    let policies = match &sources.policies {
        Some(dir) => RequestPolicies::load_dir(dir, config.policy_mode)
            .map_err(|errors| anyhow::anyhow!("the policies in {} are invalid:\n{errors}", dir.display()))?,
        None => RequestPolicies::none(),
    };
    let inputs = ReachInputs { policies: &policies, config, kills, principals: principals.to_vec() };
    let mut tools = Vec::new();
    for file in &sources.manifests {
        // Any manifest that does not parse stops the report: a partial one would understate reach.
        let manifest = Manifest::load(file)?;
        tools.push(tool_reach(&manifest, narrowing, &inputs)?);
    }
    if tools.is_empty() {
        bail!("no manifests found");
    }
    Ok(tools)
}

fn print_tool(tool: &ToolReach, exposure: Option<&ExposureByTool>) {
    outln!("{}  score {}  {}", tool.tool, tool.score.total, parts(tool));
    outln!(
        "  owner {}; review by {}{}",
        tool.owner,
        tool.review_by.as_deref().unwrap_or("(never)"),
        tool.manifest.as_ref().map(|m| format!("; {}", m.display())).unwrap_or_default()
    );
    if let Some(kill) = &tool.killed {
        outln!("  KILLED    {kill}: nothing is reachable while the kill lasts");
    }
    if !tool.call.reachable() || tool.call.outcome != Outcome::Allowed {
        outln!("  calls     {}", or_allowed(&tool.call.words()));
    }
    for rule in &tool.egress {
        let methods: Vec<String> = rule
            .methods
            .iter()
            .map(|(method, decision)| match decision.words().as_str() {
                "" => method.clone(),
                words => format!("{method} ({words})"),
            })
            .collect();
        outln!(
            "  egress    {}://{}:{}{}  {}  ≤{} requests/call",
            rule.scheme,
            rule.host,
            rule.port,
            rule.path,
            methods.join(", "),
            rule.max_requests
        );
        if !rule.internal_addresses.is_empty() {
            outln!("            internal addresses: {}", rule.internal_addresses.join(", "));
        }
        if !rule.injected.is_empty() {
            outln!("            credentials injected by the host: {}", rule.injected.join(", "));
        }
    }
    for dir in &tool.filesystem {
        outln!("  files     {} {} ({})", dir.guest, dir.mode, dir.host.display());
    }
    if let Some(scratch) = &tool.scratch {
        outln!("  scratch   {scratch} (empty, removed after each call)");
    }
    if !tool.env.is_empty() {
        outln!("  env       {}", tool.env.join(", "));
    }
    for socket in &tool.sockets {
        outln!("  socket    {} ({}) {}", socket.address, socket.class, socket.decision.words());
    }
    for credential in &tool.credentials {
        let life = match credential.longest_life_seconds {
            Some(seconds) => format!("lives ≤{seconds}s (bound: {})", credential.bounded_by),
            None => "a static secret: valid until someone rotates it".to_owned(),
        };
        let scopes = if credential.scopes.is_empty() {
            "no scopes".to_owned()
        } else {
            format!("scopes [{}]", credential.scopes.join(" "))
        };
        let words = credential.decision.words();
        outln!(
            "  credential {} from {} for {}, {scopes}, {}, {life}{}",
            credential.name,
            credential.provider,
            credential.audience,
            credential.exposure,
            if words.is_empty() { String::new() } else { format!("; {words}") }
        );
        if credential.longest_life_seconds.is_some() {
            outln!("            a static key for {} would be valid until rotated", credential.audience);
        }
        if let Some(measured) = exposure.and_then(|e| e.get(&tool.tool)).and_then(|c| c.get(&credential.name)) {
            let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v}ms"));
            let s = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v}s"));
            outln!(
                "            measured: {} minted, {} revoked ({} gave up); mint→revoke p50 {} max {}; valid after revocation p50 {} max {}",
                measured.mints,
                measured.revoked,
                measured.gave_up,
                ms(measured.window_ms_p50),
                ms(measured.window_ms_max),
                s(measured.residual_s_p50),
                s(measured.residual_s_max)
            );
        }
    }
    for limit in &tool.rate_limits {
        outln!("  rate      {limit}");
    }
    outln!("");
}

/// `[a b] ` or nothing.
fn scopes_then(scopes: &[String]) -> String {
    if scopes.is_empty() { String::new() } else { format!("[{}] ", scopes.join(" ")) }
}

fn or_allowed(words: &str) -> &str {
    if words.is_empty() { "allowed" } else { words }
}

fn parts(tool: &ToolReach) -> String {
    let parts: Vec<String> = tool.score.parts.iter().map(|(kind, points)| format!("{kind} {points}")).collect();
    if parts.is_empty() { "(reaches nothing)".to_owned() } else { format!("({})", parts.join(", ")) }
}

fn print_principal(reach: &PrincipalReach) {
    outln!(
        "principal {}  score {}  through {} tool(s): {}",
        reach.principal,
        reach.score,
        reach.tools.len(),
        reach.tools.join(", ")
    );
    for egress in &reach.egress {
        outln!("  egress     {egress}");
    }
    for credential in &reach.credentials {
        outln!("  credential {credential}");
    }
    for dir in &reach.filesystem {
        outln!("  files      {dir}");
    }
    for socket in &reach.sockets {
        outln!("  socket     {socket}");
    }
}

/// The reach as a Graphviz graph: principal → tool → system or credential.
fn dot(tools: &[ToolReach], principal: Option<&PrincipalReach>, config: &RuntimeConfig) -> String {
    // Escapes what Graphviz reads specially; a newline becomes a line break in a label.
    let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
    let mut out = String::from(
        "digraph blast_radius {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    let principals: Vec<String> = match principal {
        Some(p) => vec![p.principal.clone()],
        None => {
            let mut all: Vec<String> = config.principals.keys().cloned().collect();
            all.sort();
            all.push(reports::ANY_PRINCIPAL.to_owned());
            all
        }
    };
    for name in &principals {
        let label = if name == reports::ANY_PRINCIPAL { "any principal".to_owned() } else { name.clone() };
        out += &format!(
            "  {} [shape=ellipse, style=filled, fillcolor=\"#e8f0fe\", label={}];\n",
            quote(&format!("p:{name}")),
            quote(&label)
        );
    }
    for tool in tools {
        let id = quote(&format!("t:{}", tool.tool));
        let colour = if tool.killed.is_some() { "#eeeeee" } else { "#fff4e5" };
        out += &format!(
            "  {id} [shape=box, style=\"rounded,filled\", fillcolor=\"{colour}\", label={}];\n",
            quote(&format!("{}\nscore {}", tool.tool, tool.score.total))
        );
        if tool.call.reachable() && tool.killed.is_none() {
            for name in &principals {
                out += &format!("  {} -> {id};\n", quote(&format!("p:{name}")));
            }
        }
        for rule in &tool.egress {
            let methods: Vec<String> = rule
                .methods
                .iter()
                .filter(|(_, d)| d.reachable())
                .map(|(m, d)| if d.outcome == Outcome::Allowed { m.clone() } else { format!("{m}*") })
                .collect();
            if methods.is_empty() {
                continue;
            }
            let host = quote(&format!("h:{}:{}", rule.host, rule.port));
            out += &format!(
                "  {host} [shape=component, label={}];\n",
                quote(&format!("{}://{}:{}", rule.scheme, rule.host, rule.port))
            );
            out += &format!("  {id} -> {host} [label={}];\n", quote(&format!("{} {}", methods.join(","), rule.path)));
        }
        for dir in &tool.filesystem {
            let node = quote(&format!("d:{}", dir.host.display()));
            out += &format!("  {node} [shape=folder, label={}];\n", quote(&dir.host.display().to_string()));
            out += &format!("  {id} -> {node} [label={}];\n", quote(&dir.mode));
        }
        for socket in tool.sockets.iter().filter(|s| s.decision.reachable()) {
            let node = quote(&format!("s:{}", socket.address));
            out += &format!("  {node} [shape=cds, label={}];\n", quote(&socket.address));
            out += &format!("  {id} -> {node};\n");
        }
        for credential in tool.credentials.iter().filter(|c| c.decision.reachable()) {
            let node = quote(&format!("c:{}:{}", tool.tool, credential.name));
            let life = credential.longest_life_seconds.map_or("static".to_owned(), |s| format!("≤{s}s"));
            out += &format!(
                "  {node} [shape=note, style=filled, fillcolor=\"#fde8e8\", label={}];\n",
                quote(&format!(
                    "{} ({})\n{}{life}",
                    credential.name,
                    credential.provider,
                    scopes_then(&credential.scopes)
                ))
            );
            out += &format!("  {id} -> {node} [label={}];\n", quote(credential.exposure));
            for rule in tool.egress.iter().filter(|r| r.injected.contains(&credential.name)) {
                out += &format!(
                    "  {node} -> {} [style=dashed, label=\"injected\"];\n",
                    quote(&format!("h:{}:{}", rule.host, rule.port))
                );
            }
        }
    }
    out.push('}');
    out
}
