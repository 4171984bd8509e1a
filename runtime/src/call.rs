//! The vocabulary of a call, for callers: what they ask for (a task
//! request, a call and its input) and what they get back (a report, a
//! result, a tool's own error, a task's summary, a tool's description).

use std::time::Duration;

use crate::caps::stdio::{LogLine, OutputSender};
use crate::engine::{FunctionInfo, Shape, Tool};
use crate::grant::Narrowing;
use crate::store::WitToolError;

/// What a tool says about itself (from `describe`, or made up for a command).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ToolInfo {
    /// Tool name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its output, if stated.
    pub output_schema: Option<serde_json::Value>,
    /// `tool`, `command` or `plain`.
    pub shape: &'static str,
    /// A plain component's functions, each a tool of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionInfo>,
}

/// What a caller asks for when opening a task.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// On whose behalf the task acts (a user, an agent, a service).
    pub principal: String,
    /// How long the task may live; invocations after it are refused and
    /// running ones are cut at it.
    pub deadline: Duration,
    /// What to keep of the manifest's grants.
    pub narrowing: Narrowing,
    /// The caller's id for the request behind the task (an MCP request id);
    /// every audit event of the task carries it.
    pub request_id: Option<String>,
    /// Where a person at the caller can answer the task's approval requests
    /// (an MCP client that declared elicitation), besides the admin interface.
    pub approval_channel: Option<std::sync::Arc<dyn crate::approval::ApprovalChannel>>,
    /// Who acts for the principal: the agent that made the request, and
    /// whoever it acts for in turn (from an OAuth token). Credentials
    /// minted for the task carry it under the principal in their `act`
    /// chain, and the audit trail names it.
    pub actor: Option<crate::identity::Actor>,
    /// The caller's OAuth scopes; request-time policy reads them as
    /// `principal.scopes`.
    pub scopes: Vec<String>,
}

impl TaskRequest {
    /// A request that keeps the manifest's grants.
    pub fn new(principal: impl Into<String>, deadline: Duration) -> TaskRequest {
        TaskRequest {
            principal: principal.into(),
            deadline,
            narrowing: Narrowing::default(),
            request_id: None,
            approval_channel: None,
            actor: None,
            scopes: Vec::new(),
        }
    }

    /// A task for one call of `tool` (the CLI's `run`, one MCP `tools/call`):
    /// it lives a little past the call's own timeout (the narrowing's, or the
    /// manifest's), so the call's limit, not the task's deadline, is what
    /// stops the call, and the task still has time for its teardown.
    pub fn one_call(principal: impl Into<String>, tool: &Tool, narrowing: Narrowing) -> TaskRequest {
        let timeout = narrowing.limits.timeout.unwrap_or(tool.manifest.limits.timeout).0;
        TaskRequest { narrowing, ..TaskRequest::new(principal, timeout + ONE_CALL_GRACE) }
    }
}

/// How long a one-call task outlives its call's timeout.
const ONE_CALL_GRACE: Duration = Duration::from_secs(5);

/// One call of a tool.
#[derive(Debug)]
pub struct Call {
    /// What goes in.
    pub input: CallInput,
    /// Where output streams while the call runs; `None` captures it into the report.
    pub output: Option<OutputSender>,
}

/// The input of a call, by component shape.
#[derive(Clone, Debug)]
pub enum CallInput {
    /// JSON for a tool's `invoke`.
    Tool(String),
    /// A plain component's function, by name, with a JSON object of its arguments.
    Function {
        /// `name` or `interface.name`, as in [`FunctionInfo`].
        name: String,
        /// JSON object: parameter name to value.
        arguments: String,
    },
    /// Arguments and stdin for a command's `run`.
    Command {
        /// Arguments after the program name.
        args: Vec<String>,
        /// Bytes on stdin.
        stdin: Vec<u8>,
    },
}

impl Call {
    /// A call of a tool component with JSON input.
    pub fn tool(input: impl Into<String>) -> Call {
        Call { input: CallInput::Tool(input.into()), output: None }
    }

    /// A call of one function of a plain component.
    pub fn function(name: impl Into<String>, arguments: impl Into<String>) -> Call {
        Call { input: CallInput::Function { name: name.into(), arguments: arguments.into() }, output: None }
    }

    /// A call of a command component.
    pub fn command(args: Vec<String>, stdin: Vec<u8>) -> Call {
        Call { input: CallInput::Command { args, stdin }, output: None }
    }

    /// A call of `tool` from JSON arguments, as MCP's `tools/call` carries
    /// them: a tool's input object; a plain component's function (by name)
    /// with its arguments object; a command's `{"args": [...], "stdin": "..."}`.
    /// The error says what the arguments lack.
    pub fn from_json(
        tool: &Tool,
        function: Option<&str>,
        arguments: &serde_json::Value,
    ) -> Result<Call, CallArgumentsError> {
        match tool.component.shape {
            Shape::Plain => {
                let Some(function) = function else {
                    return Err(CallArgumentsError::NoFunction { tool: tool.manifest.name.clone() });
                };
                Ok(Call::function(function, arguments.to_string()))
            }
            Shape::Tool => Ok(Call::tool(arguments.to_string())),
            Shape::Command => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct CommandInput {
                    #[serde(default)]
                    args: Vec<String>,
                    #[serde(default)]
                    stdin: String,
                }
                let input: CommandInput =
                    serde_json::from_value(arguments.clone()).map_err(CallArgumentsError::Command)?;
                Ok(Call::command(input.args, input.stdin.into_bytes()))
            }
        }
    }

    /// Streams output to `sender` instead of capturing it.
    pub fn streaming(mut self, sender: OutputSender) -> Call {
        self.output = Some(sender);
        self
    }
}

/// JSON arguments that do not make a call of the tool.
#[derive(Debug, thiserror::Error)]
pub enum CallArgumentsError {
    /// A plain component's call names no function.
    #[error("`{tool}` is a plain component: name one of its functions")]
    NoFunction {
        /// The tool.
        tool: String,
    },
    /// A command's arguments are not `{"args": [...], "stdin": "..."}`.
    #[error("{0}")]
    Command(serde_json::Error),
}

/// What a finished call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// A tool's JSON output.
    Output(String),
    /// A tool's own error value.
    ToolError(ToolError),
    /// A command's exit code (0 is success).
    Exit(i32),
}

/// A tool's own error, as the WIT `tool-error` variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The input was wrong.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The tool was refused something.
    #[error("denied: {0}")]
    Denied(String),
    /// A system the tool talked to failed.
    #[error("upstream failure: {0}")]
    Upstream(String),
    /// Any other failure.
    #[error("failed: {0}")]
    Failed(String),
}

impl From<WitToolError> for ToolError {
    fn from(error: WitToolError) -> ToolError {
        match error {
            WitToolError::InvalidInput(m) => ToolError::InvalidInput(m),
            WitToolError::Denied(m) => ToolError::Denied(m),
            WitToolError::Upstream(m) => ToolError::Upstream(m),
            WitToolError::Failed(m) => ToolError::Failed(m),
        }
    }
}

/// A finished call.
#[derive(Clone, Debug)]
pub struct CallReport {
    /// Invocation id (in the audit trail).
    pub invocation: String,
    /// What it returned.
    pub result: CallResult,
    /// Captured stdout (empty when streamed).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty when streamed).
    pub stderr: Vec<u8>,
    /// Captured log lines (empty when streamed).
    pub logs: Vec<LogLine>,
    /// Wall-clock time of the call.
    pub duration: Duration,
}

impl CallReport {
    /// True for tool output and exit code 0.
    pub fn succeeded(&self) -> bool {
        matches!(self.result, CallResult::Output(_) | CallResult::Exit(0))
    }
}

/// How a task ended, for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSummary {
    /// Invocations run.
    pub invocations: u64,
    /// Invocations that did not succeed.
    pub failures: u64,
    /// How long it was open.
    pub duration: Duration,
}
