//! `toolcell approvals`: the approval requests a running `toolcell serve`
//! is holding, and the answers to them, through its admin socket.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::serve::admin::{AdminRequest, Answer, asked};
use anyhow::Result;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The server's admin socket is [serve] admin_socket in the runtime config, or
admin.sock in toolcell's state directory ($XDG_STATE_HOME/toolcell or
~/.local/state/toolcell). The approver is the Unix user running this command;
it may not be the principal the call acts for unless [approvals]
allow_self_approval = true.

Examples:
  toolcell approvals list
  toolcell approvals show 5f0c…
  toolcell approvals approve 5f0c… --digest 9a1e…
  toolcell approvals deny 5f0c… --reason \"not on a Friday\"")]
pub struct ApprovalsArgs {
    /// The server's admin socket (default: [serve] admin_socket, or admin.sock in the state directory).
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ApprovalsCommand {
    /// The requests waiting for an answer, oldest first.
    List,
    /// One request: who, exactly what, why, its digest and the tool's reach.
    Show { id: String },
    /// Let the action go ahead, once.
    Approve {
        id: String,
        /// The digest you reviewed (from `show`); refused if the request's differs.
        #[arg(long, value_name = "SHA256")]
        digest: Option<String>,
    },
    /// Refuse the action.
    Deny {
        id: String,
        /// Why, shown to the tool and recorded in the audit trail.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// The digest you reviewed (from `show`); refused if the request's differs.
        #[arg(long, value_name = "SHA256")]
        digest: Option<String>,
    },
}

pub async fn run(args: ApprovalsArgs, config: Option<&std::path::Path>) -> Result<ExitCode> {
    let request = match &args.command {
        ApprovalsCommand::List => AdminRequest::List,
        ApprovalsCommand::Show { id } => AdminRequest::Show { id: id.clone() },
        ApprovalsCommand::Approve { id, digest } => {
            AdminRequest::Answer { id: id.clone(), approve: true, digest: digest.clone(), reason: None }
        }
        ApprovalsCommand::Deny { id, reason, digest } => {
            AdminRequest::Answer { id: id.clone(), approve: false, digest: digest.clone(), reason: reason.clone() }
        }
    };
    let result = match asked(args.socket.as_deref(), args.json, config, request).await? {
        Answer::Result(result) => result,
        other => return Ok(other.code()),
    };
    match args.command {
        ApprovalsCommand::List => {
            let waiting = result.as_array().cloned().unwrap_or_default();
            if waiting.is_empty() {
                outln!("no approval requests waiting");
            }
            for request in waiting {
                let field = |name: &str| request[name].as_str().unwrap_or("").to_owned();
                outln!(
                    "{}  {}  {} via {}: {}  (expires {}; {})",
                    field("id"),
                    field("action"),
                    field("principal"),
                    field("tool"),
                    field("what"),
                    field("expires_at"),
                    field("why")
                );
            }
        }
        ApprovalsCommand::Show { .. } => {
            print_request(&result);
        }
        ApprovalsCommand::Approve { .. } | ApprovalsCommand::Deny { .. } => {
            outln!(
                "{} {} as {}: {}",
                result["decision"].as_str().unwrap_or(""),
                result["id"].as_str().unwrap_or(""),
                result["approver"].as_str().unwrap_or(""),
                result["what"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_request(request: &serde_json::Value) {
    let field = |name: &str| request[name].as_str().unwrap_or("").to_owned();
    let list = |value: &serde_json::Value| {
        let items: Vec<String> = match value {
            serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
            serde_json::Value::Object(map) => {
                map.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or(""))).collect()
            }
            _ => Vec::new(),
        };
        if items.is_empty() { "nothing".to_owned() } else { items.join("; ") }
    };
    outln!("id          {}", field("id"));
    outln!("digest      {}", field("digest"));
    outln!("principal   {}", field("principal"));
    outln!("tool        {}  (task {}, invocation {})", field("tool"), field("task"), field("invocation"));
    outln!("workload    {}", field("workload"));
    outln!("action      {}", field("action"));
    outln!("what        {}", field("what"));
    outln!("why         {}", field("why"));
    outln!("policies    {}", list(&request["policies"]));
    outln!("raised      {}", field("raised_at"));
    outln!("expires     {}", field("expires_at"));
    let reach = &request["reach"];
    outln!("reach       egress: {}", list(&reach["egress"]));
    outln!("            credentials: {}", list(&reach["credentials"]));
    outln!("            sockets: {}", list(&reach["sockets"]));
    outln!("            filesystem: {}", list(&reach["filesystem"]));
    outln!("            env: {}", list(&reach["env"]));
}
