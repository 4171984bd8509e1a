//! `toolcell serve`: every managed tool as an MCP tool, over stdio (the
//! default) or streamable HTTP. Each `tools/call` is one task with its own
//! grant, deadline and teardown; the MCP layer only calls the runtime's
//! public API.

pub mod admin;
mod baseline;
pub mod catalog;
pub mod config;
mod elicit;
mod handler;
mod http;
pub mod policies;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use rmcp::ServiceExt;
use toolcell_runtime::{Runtime, TimeSpan};

use crate::run::{default_principal, runtime_config};
use crate::signals::Signals;
use admin::AdminSocket;
use baseline::BaselineFile;
use catalog::{Catalog, Sources};
use config::ServeConfig;
use handler::{Server, State};
use policies::PolicyFiles;
use toolcell_runtime::credentials::config::SecretSource;
use webhook::Webhook;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Tools: one per manifest in --policies DIR (re-read when files change; an invalid
manifest is reported and skipped) and each --manifest FILE.
Request-time policies: the *.cedar files of the config's [policy] dir, or of
--policies DIR; re-read when they change (a set that fails keeps the last good
one). Approvals are answered with `toolcell approvals` through the admin socket.
Transport: stdio by default (the principal is the local user); --http ADDR serves
streamable HTTP at http://ADDR/mcp (loopback only unless [serve] tokens or
[serve.oauth] are configured; with [serve.oauth], callers bring access tokens
from your authorization server and discover it at
/.well-known/oauth-protected-resource/mcp; see the README).
A call may narrow its grant with _meta[\"toolcell/narrowing\"], e.g.
  {\"timeout\":\"2s\",\"memory\":\"32MiB\",\"egress\":[\"https://api.example.com/v1/*\"]}

Register it with an MCP client, e.g.:
  {\"mcpServers\":{\"toolcell\":{\"command\":\"toolcell\",\"args\":[\"serve\",\"--policies\",\"/path/to/policies\"]}}}")]
pub struct ServeArgs {
    /// A directory of manifests (*.toml), watched for changes.
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// A manifest to serve (repeatable).
    #[arg(long = "manifest", value_name = "FILE")]
    manifests: Vec<PathBuf>,
    /// Serve streamable HTTP on this address (e.g. 127.0.0.1:8750) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// How often the policies directory is checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    watch_interval: TimeSpan,
    /// On SIGTERM or SIGINT: how long to wait for cancelled calls' teardowns
    /// and their revocations before exiting (a second signal exits at once).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    grace: TimeSpan,
    /// The admin socket `toolcell approvals` answers through (default:
    /// [serve] admin_socket, or admin.sock in toolcell's state directory).
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
}

pub async fn run(args: ServeArgs, config: Option<&Path>, audit_log: Option<&Path>) -> Result<ExitCode> {
    if args.policies.is_none() && args.manifests.is_empty() {
        bail!("name the tools to serve: --policies DIR and/or --manifest FILE");
    }
    let serve_config = ServeConfig::load(config)?;
    let mut signals = Signals::listen()?;
    let mut runtime_config = runtime_config(config, audit_log)?;
    // The server's own secrets are as far from tools as the runtime's.
    for source in serve_config.secret_sources() {
        match source {
            SecretSource::Env(name) => runtime_config.reserved_env.push(name.clone()),
            SecretSource::File(path) => runtime_config.reserved_paths.push(path.clone()),
        }
    }
    // Request-time policies: the config's [policy] dir, or beside the manifests.
    let policy_files = PolicyFiles::new(
        runtime_config.policy_dir.clone().or_else(|| args.policies.clone()),
        runtime_config.policy_mode,
    );
    let webhook = runtime_config.approvals.webhook.as_deref().map(|url| Webhook::parse(url, "[approvals] webhook"));
    let webhook = webhook.transpose()?;
    let alerts = runtime_config.monitor.webhook.as_deref().map(|url| Webhook::parse(url, "[monitor] webhook"));
    let alerts = alerts.transpose()?;
    let baseline = BaselineFile::new(runtime_config.monitor.baseline.clone());
    // The policies load with the tools, below, off the path to `initialize`.
    runtime_config.policy_dir = None;
    let runtime = Runtime::new(runtime_config)?;
    // The [serve] section is read already: no second read of the config.
    let admin_path = admin::socket_path(args.admin_socket.as_deref().or(serve_config.admin_socket.as_deref()), None)?;
    // Its file is removed when the server stops, with `_admin`.
    let _admin = AdminSocket::start(&admin_path, runtime.controls()).await?;
    eprintln!("toolcell: admin socket {}", admin_path.display());
    let sources = Sources { dir: args.policies.clone(), files: args.manifests.clone() };
    let principal = match args.http {
        None => default_principal(),
        Some(_) => format!("{}@http", default_principal()),
    };
    let limits = (serve_config.max_concurrent_calls, serve_config.max_calls_per_principal);
    let state = Arc::new(State::new(runtime, sources, limits, principal));
    if let Some(webhook) = webhook {
        tokio::spawn(webhook.approvals(state.clone()));
    }
    if let Some(alerts) = alerts {
        tokio::spawn(alerts.anomalies(state.clone()));
    }
    // The request-time policies and the tools load while the transport
    // starts: a client's `initialize` is answered at once, its `tools/list`
    // and `tools/call` when both are in (no call is decided before the
    // policies are). Loading blocks (parsing and validating policies,
    // reading and linking components), so it has a thread of its own and
    // the runtime's workers stay free to serve. Policies that are refused
    // stop the server, as they would before it served anything.
    let loading = state.clone();
    let tokio = tokio::runtime::Handle::current();
    let (refused, policies_refused) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        if let Err(errors) = policy_files.load(&loading.runtime) {
            let _ = refused.send(errors);
            return;
        }
        let catalog = tokio.block_on(Catalog::load(&loading.runtime, &loading.sources));
        report(&catalog);
        loading.first_catalog(catalog);
        tokio.spawn(watch(loading, (policy_files, baseline), args.watch_interval));
    });

    let serving = async {
        match args.http {
            Some(address) => http::serve(state.clone(), address, serve_config).await,
            None => {
                let service = Server { state: state.clone() }.serve(stdio()).await?;
                service.waiting().await?;
                Ok(())
            }
        }
    };
    // Pinned, not dropped, on a signal: the transport (its own task) keeps
    // delivering answers while the running calls are cancelled below.
    tokio::pin!(serving);
    let stopped = tokio::select! {
        served = &mut serving => {
            served?;
            None
        }
        stop = signals.next() => Some(stop),
        Ok(errors) = policies_refused => bail!("request-time policies refused:\n{errors}"),
    };
    if let Some(stop) = stopped {
        // No new calls; every running one is cancelled, and its teardown
        // revokes what it minted.
        state.shutdown.cancel();
        eprintln!("toolcell: {}: stopping; cancelling {} running call(s)", stop.name(), state.running());
    }
    let grace = args.grace.0;
    let pending = signals
        .or_exit_on_second(async {
            let started = std::time::Instant::now();
            // Revocations are settled only once every cancelled handler has
            // reached its teardown, so none is missed.
            if tokio::time::timeout(grace, state.calls_finished()).await.is_err() {
                eprintln!("toolcell: {} call(s) still running after {}", state.running(), TimeSpan(grace));
            }
            if stopped.is_some() {
                // The cancelled calls' answers are on their way to the clients.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            state.runtime.settle_revocations(grace.saturating_sub(started.elapsed())).await
        })
        .await;
    crate::signals::report_unsettled(pending, grace);
    // `serving` (and with it the transport) goes when this function returns.
    Ok(match stopped {
        Some(stop) => ExitCode::from(stop.code()),
        None => ExitCode::SUCCESS,
    })
}

/// The stdio transport. When stdin and stdout are pipes (as an MCP client
/// starts the server) they are read and written through the reactor, like
/// sockets; tokio's own stdin reads through its blocking pool instead, one
/// hand-off to another thread and back per message. Anything else (a
/// terminal, a file) goes through tokio's stdio.
fn stdio() -> (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Box<dyn tokio::io::AsyncWrite + Send + Unpin>) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(pipe::Receiver::from_file)
    {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: Box<dyn tokio::io::AsyncWrite + Send + Unpin> =
        match std::io::stdout().as_fd().try_clone_to_owned().map(std::fs::File::from).and_then(pipe::Sender::from_file)
        {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdout()),
        };
    (input, output)
}

fn report(catalog: &Catalog) {
    eprintln!("toolcell: serving {} tool(s)", catalog.len());
    for problem in &catalog.problems {
        eprintln!("toolcell: skipped {problem}");
    }
}

/// Rebuilds the catalog when a manifest or component changes, and reloads
/// the policies or the baseline when their files change.
async fn watch(state: Arc<State>, (policies, baseline): (PolicyFiles, BaselineFile), every: TimeSpan) {
    let mut ticks = tokio::time::interval(every.0);
    loop {
        ticks.tick().await;
        policies.reload_if_changed(&state.runtime);
        baseline.reload_if_changed(&state.runtime);
        if state.sources.changed(&state.catalog()) {
            let catalog = Catalog::load(&state.runtime, &state.sources).await;
            report(&catalog);
            state.replace_catalog(catalog).await;
        }
    }
}
