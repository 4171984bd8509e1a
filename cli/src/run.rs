//! `toolcell run` and `toolcell describe`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use toolcell_runtime::{
    ByteSize, Call, CallResult, LogLevel, Manifest, OutputChunk, Runtime, RuntimeConfig, Shape, TaskRequest, TimeSpan,
};

use crate::exit;
use crate::grants::{DirFlag, EnvFlag, GrantFlags, HttpFlag, parse_dir, parse_env, parse_http};
use crate::signals::Signals;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Without --manifest and grant flags nothing is granted: no files, no variables, no network.
Egress goes through wasi:http only; raw sockets are always refused.
With --manifest, the flags narrow the manifest's grants and may not widen them.

Examples:
  toolcell run word_count.wasm --input '{\"text\":\"hello world\"}'
  toolcell run --dir ./docs::/docs:ro file-stats.wasm -- /docs
  toolcell run --allow-http 'GET,POST=http://127.0.0.1:8080/api/*' tool.wasm --input '{}'
  toolcell run --manifest policies/file-stats.toml --timeout 2s -- /docs")]
pub struct RunArgs {
    /// The tool's manifest; its grants are the most the run may have.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Grant a directory: read-write unless `:ro`; GUEST defaults to HOST's absolute path.
    #[arg(long = "dir", value_name = "HOST[::GUEST][:ro]", value_parser = parse_dir)]
    dirs: Vec<DirFlag>,
    /// Grant a variable: its host value, or VALUE.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    env: Vec<EnvFlag>,
    /// Allow outbound HTTP matching a pattern like https://api.example.com/v1/*
    /// (GET only, unless prefixed with methods: POST,GET=URL).
    #[arg(long = "allow-http", value_name = "[METHODS=]URL_PATTERN", value_parser = parse_http)]
    allow_http: Vec<HttpFlag>,
    /// Wall-clock limit of the call, like 500ms, 2s, 1m.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<TimeSpan>,
    /// Memory limit of the call, like 64MiB, 1GiB.
    #[arg(long, value_name = "SIZE")]
    memory: Option<ByteSize>,
    /// On whose behalf the task acts (recorded in the audit log).
    #[arg(long, value_name = "NAME")]
    principal: Option<String>,
    /// The component (a toolcell tool or a WASI command); optional with --manifest.
    component: Option<PathBuf>,
    /// JSON input of a tool component (for a plain component: the function's
    /// arguments as an object); `-` reads it from stdin.
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// The function of a plain component to call (`name`, or `interface.name`).
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// On SIGTERM or SIGINT the call is cancelled and its credentials
    /// revoked; how long to wait for revocations before exiting.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    grace: TimeSpan,
    /// Arguments of a command component.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The tool's manifest.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The component; optional with --manifest.
    component: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The runtime config: the file's, with `--audit-log` on top. By default
/// every run leaves a durable audit trail, keeps a lease journal (so a crash
/// mid-task is cleaned up at the next start) and signs with the same issuer
/// keys (so `toolcell jwks` names the keys tokens are really signed with),
/// and seals the audit with the same audit key (so `toolcell audit verify`
/// checks with it).
pub fn runtime_config(config: Option<&Path>, audit_log: Option<&Path>) -> Result<RuntimeConfig> {
    let mut config = match config {
        Some(path) => RuntimeConfig::load(path)?,
        None => RuntimeConfig::default(),
    };
    if let Some(path) = audit_log {
        config.audit_log = Some(path.to_owned());
    }
    let state = state_dir();
    if config.audit_log.is_none() {
        config.audit_log = state.as_ref().map(|dir| dir.join("audit.jsonl"));
    }
    if config.lease_journal.is_none() {
        config.lease_journal = state.as_ref().map(|dir| dir.join("leases"));
    }
    if config.credentials.issuer.keys.is_none() {
        config.credentials.issuer.keys = state.as_ref().map(|dir| dir.join("issuer-keys.json"));
    }
    if config.kill_file.is_none() {
        config.kill_file = state.as_ref().map(|dir| dir.join("kills.json"));
    }
    if config.audit.signing_key.is_none() {
        config.audit.signing_key = state.as_ref().map(|dir| dir.join("audit-key.json"));
    }
    Ok(config)
}

/// A runtime that leaves no trail: audit events go to tracing only and no
/// lease journal is kept (or adopted). For commands that inspect or measure
/// a tool rather than serve an agent: `describe` and `bench`.
pub fn traceless_runtime(config: Option<&Path>) -> Result<Runtime> {
    Ok(Runtime::new(traceless_config(config)?)?)
}

/// The runtime config of [`traceless_runtime`].
pub fn traceless_config(config: Option<&Path>) -> Result<RuntimeConfig> {
    let mut config = runtime_config(config, None)?;
    config.audit_log = None;
    config.lease_journal = None;
    Ok(config)
}

/// `$XDG_STATE_HOME/toolcell`, or `~/.local/state/toolcell`.
pub fn state_dir() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
    Some(state.join("toolcell"))
}

pub fn manifest_or_component(manifest: Option<&Path>, component: Option<&Path>) -> Result<(Manifest, bool)> {
    match (manifest, component) {
        (Some(_), Some(component)) => bail!(
            "give a component or a manifest, not both (the manifest names its component; got `{}` too)",
            component.display()
        ),
        (Some(path), None) => Ok((Manifest::load(path)?, true)),
        (None, Some(component)) => Ok((Manifest::ad_hoc(component), false)),
        (None, None) => bail!("name a component to run, or a manifest with --manifest"),
    }
}

pub async fn run(args: RunArgs, config: Option<&Path>, audit_log: Option<&Path>) -> Result<ExitCode> {
    let (mut manifest, from_file) = manifest_or_component(args.manifest.as_deref(), args.component.as_deref())?;
    let flags = GrantFlags {
        dirs: args.dirs,
        env: args.env,
        http: args.allow_http,
        timeout: args.timeout,
        memory: args.memory,
    };
    let narrowing = if from_file {
        flags.narrowing(&manifest)?
    } else {
        flags.apply_to_ad_hoc(&mut manifest)?;
        Default::default()
    };
    let runtime_config = runtime_config(config, audit_log)?;
    // Request-time policies: the config's [policy] dir (the runtime reads
    // it), or the `*.cedar` files beside the manifest.
    let beside = manifest.source.as_deref().and_then(Path::parent).filter(|_| runtime_config.policy_dir.is_none());
    let beside = beside.map(|dir| if dir.as_os_str().is_empty() { Path::new(".") } else { dir }).map(Path::to_owned);
    let mode = runtime_config.policy_mode;
    let runtime = Runtime::new(runtime_config)?;
    if let Some(dir) = beside {
        let policies = toolcell_runtime::request_policy::RequestPolicies::load_dir(&dir, mode)
            .map_err(|errors| anyhow::anyhow!("request-time policies beside the manifest refused:\n{errors}"))?;
        runtime.set_policies(policies);
    }
    let tool = runtime.load_tool(manifest)?;
    // Where a person may be asked, `toolcell approvals` can answer while the call runs.
    let _admin = approvals_while_running(&runtime, &tool, config).await?;
    let principal = args.principal.unwrap_or_else(default_principal);
    let task = runtime.open_task(&tool, TaskRequest::one_call(principal, &tool, narrowing))?;
    let max_input = task.grant().limits.max_input;

    if args.function.is_some() && tool.component.shape != Shape::Plain {
        bail!(
            "--function is for plain components; `{}` is a {} component",
            tool.manifest.name,
            tool.component.shape.name()
        );
    }
    let call = match tool.component.shape {
        Shape::Plain => {
            let names: Vec<&str> = tool.component.functions.iter().map(|f| f.name.as_str()).collect();
            let Some(function) = args.function.clone() else {
                bail!(
                    "`{}` is a plain component: name a function with --function ({})",
                    tool.manifest.name,
                    names.join(", ")
                );
            };
            let input = match args.input.as_deref() {
                Some("-") => String::from_utf8(read_stdin(max_input)?).context("stdin is not UTF-8")?,
                Some(json) => json.to_owned(),
                None => "{}".to_owned(),
            };
            Call::function(function, input)
        }
        Shape::Tool => {
            if !args.args.is_empty() {
                bail!("`{}` is a tool component: give it --input JSON, not arguments", tool.manifest.name);
            }
            let input = match args.input.as_deref() {
                Some("-") => String::from_utf8(read_stdin(max_input)?).context("stdin is not UTF-8")?,
                Some(json) => json.to_owned(),
                None => "{}".to_owned(),
            };
            Call::tool(input)
        }
        Shape::Command => {
            if args.input.is_some() {
                bail!("`{}` is a WASI command: give it arguments after `--`, not --input", tool.manifest.name);
            }
            let stdin = if std::io::stdin().is_terminal() { Vec::new() } else { read_stdin(max_input)? };
            Call::command(args.args, stdin)
        }
    };

    let mut signals = Signals::listen()?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(print_output(receiver, tool.manifest.name.clone()));
    let (result, stopped) = tokio::select! {
        result = task.invoke(call.streaming(sender)) => (Some(result), None),
        // Dropping the call cancels it; its teardown runs on the runtime's
        // side and revokes what it minted.
        stop = signals.next() => (None, Some(stop)),
    };
    if let Some(stop) = stopped {
        eprintln!("toolcell: {}: cancelling the call and revoking its credentials", stop.name());
    }
    // The call's output senders are gone with its store; the printer drains and ends.
    printer.await.context("output printer")?;
    let grace = args.grace.0;
    let pending = signals
        .or_exit_on_second(async {
            task.close().await;
            // Teardowns and revocations that failed once go on in the
            // background; give them a moment before the process exits. Any
            // still pending stay in the lease journal, and the next start
            // revokes them.
            runtime.settle_revocations(grace).await
        })
        .await;
    crate::signals::report_unsettled(pending, grace);
    let Some(result) = result else {
        let stop = stopped.expect("no result means a signal stopped the call");
        return Ok(ExitCode::from(stop.code()));
    };

    match result {
        Ok(report) => match report.result {
            CallResult::Output(json) => {
                outln!("{json}");
                Ok(ExitCode::SUCCESS)
            }
            CallResult::ToolError(error) => {
                eprintln!("toolcell: {} returned an error: {error}", tool.manifest.name);
                Ok(ExitCode::from(exit::TOOL_FAILED))
            }
            CallResult::Exit(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(exit::TOOL_FAILED))),
        },
        Err(error) => {
            eprintln!("toolcell: {}: {error}", tool.manifest.name);
            if let toolcell_runtime::InvokeError::Trap { detail, .. } = &error {
                tracing::info!("trap detail: {detail}");
            }
            Ok(ExitCode::from(exit::for_error(&error)))
        }
    }
}

/// Opens the admin socket for the run when policies or the manifest can ask
/// for approval, and says on stderr how to answer each request. A socket
/// another process holds is reported; requests then wait for their expiry.
async fn approvals_while_running(
    runtime: &Runtime,
    tool: &toolcell_runtime::Tool,
    config: Option<&Path>,
) -> Result<Option<crate::serve::admin::AdminSocket>> {
    let manifest = &tool.manifest;
    let asks = manifest.egress.iter().any(|rule| rule.approval.is_some())
        || manifest.credentials.iter().any(|spec| spec.approval.is_some());
    if runtime.policies().is_inert() && !asks {
        return Ok(None);
    }
    let path = crate::serve::admin::socket_path(None, config)?;
    let mut raised = runtime.approvals().subscribe();
    tokio::spawn(async move {
        while let Ok(request) = raised.recv().await {
            eprintln!(
                "toolcell: approval needed ({}): {}\n  answer with: toolcell approvals approve {} --digest {}   (or deny {})",
                request.why, request.what, request.id, request.digest, request.id
            );
        }
    });
    match crate::serve::admin::AdminSocket::start(&path, runtime.controls()).await {
        Ok(admin) => Ok(Some(admin)),
        Err(error) => {
            eprintln!("toolcell: approvals cannot be answered during this run: {error:#}");
            Ok(None)
        }
    }
}

/// Reads stdin up to one byte past the input limit, so an endless stream
/// cannot exhaust memory and the runtime still sees it is too large.
fn read_stdin(limit: ByteSize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin().take(limit.0.saturating_add(1)).read_to_end(&mut bytes).context("reading stdin")?;
    Ok(bytes)
}

async fn print_output(mut receiver: tokio::sync::mpsc::UnboundedReceiver<OutputChunk>, tool: String) {
    while let Some(chunk) = receiver.recv().await {
        // Write errors (a closed pipe) lose output, never the call's outcome.
        let _ = match chunk {
            OutputChunk::Stdout(bytes) => std::io::stdout().write_all(&bytes).and_then(|()| std::io::stdout().flush()),
            OutputChunk::Stderr(bytes) => std::io::stderr().write_all(&bytes),
            OutputChunk::Log(line) => {
                let level = match line.level {
                    LogLevel::Trace => "trace",
                    LogLevel::Debug => "debug",
                    LogLevel::Info => "info",
                    LogLevel::Warn => "warn",
                    LogLevel::Error => "error",
                };
                writeln!(std::io::stderr(), "{tool}: {level}: {}", line.message)
            }
        };
    }
}

/// The principal of local calls: `local:<user>`, the name of the user the
/// process runs as (from the password database, not `$USER`, which the
/// caller sets), or `local:uid:<n>` when that user has no name.
pub fn default_principal() -> String {
    let uid = rustix::process::getuid().as_raw();
    match user_name(uid) {
        Some(name) => format!("local:{name}"),
        None => format!("local:uid:{uid}"),
    }
}

/// The name of `uid` in `/etc/passwd` (ambient authority: a host file).
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

pub async fn describe(args: DescribeArgs, config: Option<&Path>) -> Result<ExitCode> {
    let (manifest, _) = manifest_or_component(args.manifest.as_deref(), args.component.as_deref())?;
    // Describing runs the tool's `describe` with nothing granted: nothing to
    // audit and no credentials, so no journal to adopt.
    let runtime = traceless_runtime(config)?;
    let tool = runtime.load_tool(manifest)?;
    let info = match runtime.describe(&tool).await {
        Ok(info) => info,
        Err(error) => {
            eprintln!("toolcell: describing {}: {error}", tool.manifest.name);
            return Ok(ExitCode::from(exit::for_error(&error)));
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{} ({})", info.name, info.shape);
    outln!("  {}", info.description);
    outln!("component: {}", tool.component.path.display());
    if !info.functions.is_empty() {
        for function in &info.functions {
            outln!("function {}", function.signature);
            outln!("  arguments schema: {}", function.input_schema);
        }
        for skipped in &tool.component.skipped_functions {
            outln!("not offered: {skipped}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!("input schema:\n{}", serde_json::to_string_pretty(&info.input_schema)?);
    if let Some(schema) = &info.output_schema {
        outln!("output schema:\n{}", serde_json::to_string_pretty(schema)?);
    }
    Ok(ExitCode::SUCCESS)
}
