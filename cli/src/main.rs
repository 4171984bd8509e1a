//! `toolcell`: run AI-agent tools as sandboxed WebAssembly components.
//!
//! The binary edge: it parses flags, calls `toolcell-runtime`'s public API,
//! and turns outcomes into output and exit codes. `anyhow` lives here only.

#![forbid(unsafe_code)]

/// `println!` for a command's output. A reader that went away (`toolcell
/// policy check ... | head`) ends the process quietly with the status a
/// SIGPIPE gives Unix tools (141), instead of a panic; any other write error
/// is reported once.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(error) = writeln!(out, $($arg)*).and_then(|()| out.flush()) {
            crate::stdout_failed(error);
        }
    }};
}

/// Ends the process after stdout failed (see `outln!`).
fn stdout_failed(error: std::io::Error) -> ! {
    if error.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("toolcell: writing to stdout: {error}");
    }
    std::process::exit(if error.kind() == std::io::ErrorKind::BrokenPipe { 141 } else { 1 })
}

mod approvals;
mod audit;
mod baseline;
mod bench;
mod blast;
mod exit;
mod grants;
mod jwks;
mod new;
mod oversee;
mod policy;
mod review;
mod run;
mod serve;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs AI-agent tools as WebAssembly components, each call in a fresh
/// sandbox that holds only what its task was granted.
#[derive(Parser, Debug)]
#[command(name = "toolcell", version, about, long_about = None, after_help = exit::EXIT_CODES_HELP)]
struct Cli {
    /// Runtime config file (TOML): audit log, cache dir, pool size, memory ceiling.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Audit log (JSON lines). Default: $XDG_STATE_HOME/toolcell/audit.jsonl
    /// or ~/.local/state/toolcell/audit.jsonl, unless the config file sets one.
    #[arg(long, global = true, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Print audit events and tool log lines on stderr as they happen.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a component once, in one task, with the grants given.
    Run(run::RunArgs),
    /// Print a component's description and input schema.
    Describe(run::DescribeArgs),
    /// Create a new tool crate: a typed handler and a manifest that grants nothing.
    New(new::NewArgs),
    /// Print the built-in issuer's public keys (JWKS) for token verifiers; rotate them.
    Jwks(jwks::JwksArgs),
    /// Serve the tools over MCP (stdio, or streamable HTTP with --http).
    Serve(serve::ServeArgs),
    /// Measure a tool's calls against the bare engine floor (p50, p99, ratio, throughput, RSS).
    Bench(bench::BenchArgs),
    /// List and answer the approval requests a running `toolcell serve` holds.
    Approvals(approvals::ApprovalsArgs),
    /// The tasks and calls a running `toolcell serve` has in flight.
    Tasks(oversee::TasksArgs),
    /// Stop a task, tool, principal or everything on a running `toolcell serve`, and keep it stopped.
    Kill(oversee::KillArgs),
    /// Lift a kill.
    Unkill(oversee::UnkillArgs),
    /// Verify the audit trail's hash chain and signatures; show it as a timeline.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// What each tool, a task of it, or a principal could reach if compromised; what a change widens.
    BlastRadius(blast::BlastArgs),
    /// Access review: owner, review date, last use, and entitlements granted but never used.
    Review(review::ReviewArgs),
    /// Learn behaviour baselines from the audit trail, for anomaly detection.
    Baseline {
        #[command(subcommand)]
        command: baseline::BaselineCommand,
    },
    /// Check manifests and request-time policies; print the policy schema; explain a decision.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, cli.config.as_deref(), cli.audit_log.as_deref()).await,
            Command::Describe(args) => run::describe(args, cli.config.as_deref()).await,
            Command::Bench(args) => bench::run(args, cli.config.as_deref()).await,
            Command::Jwks(args) => jwks::run(args, cli.config.as_deref()),
            Command::New(args) => new::run(args),
            Command::Serve(args) => serve::run(args, cli.config.as_deref(), cli.audit_log.as_deref()).await,
            Command::Policy { command } => policy::run(command, cli.config.as_deref()),
            Command::Approvals(args) => approvals::run(args, cli.config.as_deref()).await,
            Command::Baseline { command } => baseline::run(command),
            Command::BlastRadius(args) => blast::run(args, cli.config.as_deref()),
            Command::Review(args) => review::run(args, cli.config.as_deref(), cli.audit_log.as_deref()),
            Command::Audit { command } => audit::run(command, cli.config.as_deref(), cli.audit_log.as_deref()),
            Command::Tasks(args) => oversee::tasks(args, cli.config.as_deref()).await,
            Command::Kill(args) => oversee::kill(args, cli.config.as_deref()).await,
            Command::Unkill(args) => oversee::unkill(args, cli.config.as_deref()).await,
        }
    });
    // Everything the command owed (teardowns, revocations, audit lines) is
    // done: a blocking-pool thread still reading stdin (`serve` over stdio,
    // stopped by a signal) must not keep the process alive.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("toolcell: {error:#}");
            ExitCode::from(exit::REFUSED)
        }
    }
}

fn init_tracing(verbose: bool) {
    // Tool log lines are printed from the call's output stream; their tracing
    // copies would print them twice.
    let default = if verbose { "info,toolcell::guest=off" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}
