//! The admin interface of a running `toolcell serve`: a Unix socket, mode
//! 0600 in a directory only its owner can enter, that answers one JSON
//! request per line. Approvals are listed, shown and answered through it
//! (`toolcell approvals`), running tasks listed (`toolcell tasks`), and
//! kills put in force and lifted (`toolcell kill`, `toolcell unkill`). Who
//! acts is who the kernel says is on the other end (`SO_PEERCRED`), never a
//! name the client claims; only the server's own user (or root) is answered
//! at all.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use toolcell_runtime::{Controls, KillTarget};

/// The longest request line read.
const MAX_LINE: usize = 64 << 10;

/// One request to the admin interface.
#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// The approval requests waiting.
    #[serde(rename = "approvals_list")]
    List,
    /// One of them.
    #[serde(rename = "approvals_show")]
    Show { id: String },
    /// An answer: approve or deny, optionally bound to the digest the approver reviewed.
    #[serde(rename = "approvals_answer")]
    Answer {
        id: String,
        approve: bool,
        #[serde(default)]
        digest: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// The tasks running now.
    Tasks,
    /// The kills in force.
    Kills,
    /// A kill: `target` is `{"task": ID}`, `{"tool": NAME}`, `{"principal": P}` or `"all"`.
    Kill {
        target: KillTarget,
        #[serde(default)]
        reason: Option<String>,
        /// It lapses after this many seconds (none: until unkilled).
        #[serde(default)]
        for_seconds: Option<u64>,
    },
    /// Lifts the kills of exactly `target`.
    Unkill { target: KillTarget },
}

/// The answer to one request.
#[derive(Debug, Deserialize, Serialize)]
pub struct AdminResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the admin socket is: `flag` (`--admin-socket`, `--socket`), else
/// `[serve] admin_socket` in the runtime config `config`, else `admin.sock`
/// in toolcell's state directory.
pub fn socket_path(flag: Option<&Path>, config: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    if let Some(path) = super::config::ServeConfig::load(config)?.admin_socket {
        return Ok(path);
    }
    crate::run::state_dir()
        .map(|dir| dir.join("admin.sock"))
        .context("no admin socket path: set [serve] admin_socket, or HOME or XDG_STATE_HOME")
}

/// A running admin socket: answered in the background, its file removed
/// when this is dropped (the listener's task may outlive the command).
pub struct AdminSocket {
    path: PathBuf,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl AdminSocket {
    /// Binds `path` and answers it in the background. A socket another
    /// server still answers on is not taken over; a stale one (its server
    /// gone) is replaced.
    pub async fn start(path: &Path, controls: Controls) -> Result<AdminSocket> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.exists() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
            // Only the owner may enter: nobody else can reach the socket, even in the moment before its chmod.
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making `{}` private", parent.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                bail!(
                    "admin socket `{}` is in use by another toolcell serve; give this one its own \
                     ([serve] admin_socket or --admin-socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path).with_context(|| format!("removing the stale socket `{}`", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding the admin socket `{}`", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making `{}` mode 0600", path.display()))?;
        tokio::spawn(serve(listener, controls));
        Ok(AdminSocket { path: path.to_owned() })
    }
}

/// Answers connections until the server stops.
async fn serve(listener: UnixListener, controls: Controls) {
    let own = rustix::process::geteuid().as_raw();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let controls = controls.clone();
        tokio::spawn(async move {
            if let Err(error) = connection(stream, own, controls).await {
                tracing::info!(target: "toolcell::admin", "admin connection: {error:#}");
            }
        });
    }
}

async fn connection(stream: UnixStream, own: u32, controls: Controls) -> Result<()> {
    let uid = stream.peer_cred().context("reading the peer's credentials")?.uid();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE as u64 * 64)).lines();
    if uid != own && uid != 0 {
        let refused = AdminResponse {
            ok: false,
            result: None,
            error: Some(format!("uid {uid} may not use this admin socket (only its owner, uid {own}, and root)")),
        };
        write.write_all(format!("{}\n", serde_json::to_string(&refused)?).as_bytes()).await?;
        return Ok(());
    }
    // Who answers is who the kernel says connected.
    // Named as the local principal is (`local:NAME`), so a local user cannot
    // approve what a call does on their own behalf.
    let approver = match crate::run::user_name(uid) {
        Some(name) => format!("local:{name}"),
        None => format!("local:uid:{uid}"),
    };
    while let Some(line) = lines.next_line().await? {
        let response = if line.len() > MAX_LINE {
            AdminResponse { ok: false, result: None, error: Some(format!("a request is at most {MAX_LINE} bytes")) }
        } else {
            match serde_json::from_str::<AdminRequest>(&line) {
                Ok(request) => answer(request, &approver, &controls).await,
                Err(error) => AdminResponse { ok: false, result: None, error: Some(format!("bad request: {error}")) },
            }
        };
        write.write_all(format!("{}\n", serde_json::to_string(&response)?).as_bytes()).await?;
    }
    Ok(())
}

/// Answers one request as `approver`: the Unix user on the socket, or the
/// admin token's name over HTTP.
pub async fn answer(request: AdminRequest, approver: &str, controls: &Controls) -> AdminResponse {
    let done = |result: serde_json::Value| AdminResponse { ok: true, result: Some(result), error: None };
    let refused = |error: String| AdminResponse { ok: false, result: None, error: Some(error) };
    let approvals = controls.approvals();
    match request {
        AdminRequest::List => done(serde_json::to_value(approvals.list()).expect("requests serialize")),
        AdminRequest::Show { id } => match approvals.show(&id) {
            Ok(request) => done(serde_json::to_value(request).expect("requests serialize")),
            Err(error) => refused(error.to_string()),
        },
        AdminRequest::Answer { id, approve, digest, reason } => {
            match approvals.answer(&id, digest.as_deref(), approver, "admin", approve, reason) {
                Ok(answered) => done(serde_json::json!({
                    "id": id,
                    "decision": if approve { "approved" } else { "denied" },
                    "approver": approver,
                    "what": answered.what,
                })),
                Err(error) => refused(error.to_string()),
            }
        }
        AdminRequest::Tasks => done(serde_json::to_value(controls.tasks()).expect("tasks serialize")),
        AdminRequest::Kills => done(serde_json::to_value(controls.kills()).expect("kills serialize")),
        AdminRequest::Kill { target, reason, for_seconds } => {
            if let KillTarget::Task(id) | KillTarget::Tool(id) | KillTarget::Principal(id) = &target
                && id.trim().is_empty()
            {
                return refused("a kill names its task, tool or principal".into());
            }
            if let KillTarget::Task(id) = &target
                && !controls.task_is_open(id)
            {
                return refused(format!("no task {id} is running (`toolcell tasks` lists them)"));
            }
            let lasting = for_seconds.map(std::time::Duration::from_secs);
            let report = controls.kill(target, reason, approver, lasting).await;
            done(serde_json::to_value(report).expect("kill reports serialize"))
        }
        AdminRequest::Unkill { target } => match controls.unkill(&target, approver) {
            Ok(lifted) if lifted.is_empty() => {
                refused(format!("no kill of {target} is in force (`toolcell kill --list`)"))
            }
            Ok(lifted) => done(serde_json::to_value(lifted).expect("kills serialize")),
            Err(error) => refused(format!("{error} (the kill is lifted until the server restarts)")),
        },
    }
}

/// Sends one request to the admin socket at `path` and reads its answer.
pub async fn ask(path: &Path, request: &AdminRequest) -> Result<AdminResponse> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "connecting to the admin socket `{}` (is `toolcell serve` running with this state directory?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{}\n", serde_json::to_string(request)?).as_bytes()).await?;
    write.shutdown().await?;
    let mut lines = BufReader::new(read).lines();
    let line = lines.next_line().await?.context("the admin socket closed without an answer")?;
    serde_json::from_str(&line).context("reading the admin socket's answer")
}

/// What the admin socket answered.
pub enum Answer {
    /// Refused; the reason is printed.
    Refused,
    /// Printed as JSON (`--json`).
    Printed,
    /// For the command to print.
    Result(serde_json::Value),
}

impl Answer {
    /// The exit code of a command whose answer was printed or refused.
    pub fn code(&self) -> ExitCode {
        match self {
            Answer::Refused => ExitCode::FAILURE,
            _ => ExitCode::SUCCESS,
        }
    }
}

/// Asks the admin socket at `socket` (or the configured one); prints a
/// refusal, or the result as JSON when `json`.
pub async fn asked(socket: Option<&Path>, json: bool, config: Option<&Path>, request: AdminRequest) -> Result<Answer> {
    let path = socket_path(socket, config)?;
    let AdminResponse { ok, result, error } = ask(&path, &request).await?;
    if !ok {
        eprintln!("toolcell: {}", error.unwrap_or_else(|| "refused".into()));
        return Ok(Answer::Refused);
    }
    let result = result.unwrap_or_default();
    if json {
        outln!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(Answer::Printed);
    }
    Ok(Answer::Result(result))
}
