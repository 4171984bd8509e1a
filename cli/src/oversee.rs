//! `toolcell tasks`, `toolcell kill` and `toolcell unkill`: what a running
//! `toolcell serve` is doing, and stopping it, through its admin socket.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use toolcell_runtime::{Kill, KillReport, KillTarget, LiveTask, TimeSpan};

use crate::serve::admin::{AdminRequest, Answer, asked};

const SOCKET_HELP: &str = "\
The server's admin socket is [serve] admin_socket in the runtime config, or
admin.sock in toolcell's state directory ($XDG_STATE_HOME/toolcell or
~/.local/state/toolcell).";

/// Where to ask, and how to print.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The server's admin socket (default: [serve] admin_socket, or admin.sock in the state directory).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
#[command(after_help = SOCKET_HELP)]
pub struct TasksArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// What a kill or unkill names: exactly one (checked by the command, as
/// `kill --list` names none).
#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct TargetArgs {
    /// One task, by id (from `toolcell tasks`).
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// Every task of a tool.
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// Every task acting for a principal.
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Everything.
    #[arg(long)]
    all: bool,
}

impl TargetArgs {
    fn target(&self) -> KillTarget {
        match (&self.task, &self.tool, &self.principal) {
            (Some(id), _, _) => KillTarget::Task(id.clone()),
            (_, Some(name), _) => KillTarget::Tool(name.clone()),
            (_, _, Some(name)) => KillTarget::Principal(name.clone()),
            _ => KillTarget::All,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every call the kill names is stopped at once and torn down: its credentials are
revoked (issuer tokens deny-listed, OpenBao leases and tokens revoked), and the
revocations are audited with the kill. Its tasks are closed. New tasks and calls
are refused with an error naming the kill and its reason, until `toolcell unkill`
with the same target, or until --for runs out. Kills are kept in the server's
kill file (kill_file in the config, or kills.json in the state directory), so
they survive a restart.

Examples:
  toolcell kill --tool github-issues --reason \"exfiltrating issue bodies\"
  toolcell kill --principal agent-7 --for 30m
  toolcell kill --all --reason \"incident 4121\"
  toolcell kill --list

The server's admin socket is [serve] admin_socket in the runtime config, or
admin.sock in toolcell's state directory.")]
pub struct KillArgs {
    #[command(flatten)]
    target: Option<TargetArgs>,
    /// Why; shown in every refusal and recorded in the audit trail.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The kill lapses after this long (e.g. 30m, 2h); default: until `toolcell unkill`.
    #[arg(long = "for", value_name = "DURATION")]
    lasting: Option<TimeSpan>,
    /// List the kills in force instead.
    #[arg(long, conflicts_with_all = ["reason", "lasting"])]
    list: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Lifts the kills of exactly this target (`toolcell kill --list` shows them).\n\n\
The server's admin socket is [serve] admin_socket in the runtime config, or\n\
admin.sock in toolcell's state directory.")]
pub struct UnkillArgs {
    #[command(flatten)]
    target: Option<TargetArgs>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `toolcell tasks`.
pub async fn tasks(args: TasksArgs, config: Option<&Path>) -> Result<ExitCode> {
    let result = match asked(args.admin.socket.as_deref(), args.admin.json, config, AdminRequest::Tasks).await? {
        Answer::Result(result) => result,
        other => return Ok(other.code()),
    };
    let tasks: Vec<LiveTask> = serde_json::from_value(result)?;
    if tasks.is_empty() {
        outln!("no tasks running");
    }
    for task in tasks {
        let egress = &task.egress;
        outln!(
            "{}  {:<8} {} via {}  age {}  calls {}  egress {} req, {} B out, {} B in{}  mints {}  denials {}",
            task.task,
            task.state,
            task.principal,
            task.tool,
            seconds(task.age_ms),
            task.invocations,
            egress.requests,
            egress.bytes_sent,
            egress.bytes_received,
            hosts(&egress.hosts),
            task.mints,
            task.denials
        );
        outln!("    workload {}", task.workload);
        for call in task.calls {
            let held: Vec<String> =
                call.credentials.iter().map(|c| format!("{} ({} {})", c.name, c.provider, c.id)).collect();
            outln!(
                "    call {}  running {}  egress {} req, {} B out{}  credentials: {}",
                call.invocation,
                seconds(call.age_ms),
                call.egress.requests,
                call.egress.bytes_sent,
                hosts(&call.egress.hosts),
                if held.is_empty() { "none".to_owned() } else { held.join(", ") }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `toolcell kill`.
pub async fn kill(args: KillArgs, config: Option<&Path>) -> Result<ExitCode> {
    let request = match (&args.target, args.list) {
        (_, true) => AdminRequest::Kills,
        (Some(target), false) => AdminRequest::Kill {
            target: target.target(),
            reason: args.reason.clone(),
            for_seconds: args.lasting.map(|d| d.0.as_secs().max(1)),
        },
        (None, false) => anyhow::bail!("name what to kill: --task ID, --tool NAME, --principal P or --all (or --list)"),
    };
    let result = match asked(args.admin.socket.as_deref(), args.admin.json, config, request).await? {
        Answer::Result(result) => result,
        other => return Ok(other.code()),
    };
    if args.list {
        let kills: Vec<Kill> = serde_json::from_value(result)?;
        if kills.is_empty() {
            outln!("no kills in force");
        }
        for kill in kills {
            outln!("{kill}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report: KillReport = serde_json::from_value(result)?;
    let contained = &report.contained;
    outln!("{}", report.kill);
    outln!(
        "stopped {} call(s) in {} task(s); {} credential(s) revoked; contained in {:.1} ms",
        contained.calls,
        contained.tasks,
        contained.credentials,
        contained.contained_ms
    );
    if let Some(problem) = report.not_kept {
        eprintln!("toolcell: warning: the kill is in force but will not survive a restart: {problem}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `toolcell unkill`.
pub async fn unkill(args: UnkillArgs, config: Option<&Path>) -> Result<ExitCode> {
    let Some(target) = &args.target else {
        anyhow::bail!("name the kill to lift: --task ID, --tool NAME, --principal P or --all (`toolcell kill --list`)");
    };
    let request = AdminRequest::Unkill { target: target.target() };
    let result = match asked(args.admin.socket.as_deref(), args.admin.json, config, request).await? {
        Answer::Result(result) => result,
        other => return Ok(other.code()),
    };
    let lifted: Vec<Kill> = serde_json::from_value(result)?;
    for kill in lifted {
        outln!("lifted kill {} of {}", kill.id, kill.target);
    }
    Ok(ExitCode::SUCCESS)
}

fn seconds(ms: u64) -> String {
    TimeSpan(std::time::Duration::from_millis(ms)).to_string()
}

fn hosts(hosts: &[String]) -> String {
    if hosts.is_empty() { String::new() } else { format!(" ({})", hosts.join(", ")) }
}
