//! toolcell-runtime: runs AI-agent tools as WebAssembly components, each call
//! in a fresh sandbox holding only what its task was granted.
//!
//! `ARCHITECTURE.md` beside this crate's `Cargo.toml` shows the layers, how
//! to add a capability or a limit, and every place that uses ambient
//! authority (marked `Ambient authority:` in the code).
//!
//! Data flows one way: [`Manifest`] (the ceiling an operator writes) ->
//! [`Grant`] (the manifest narrowed by a task) -> a fresh store per
//! [`Task::invoke`] -> one module per capability (filesystem, environment,
//! stdio, log, credentials, egress over wasi:http, raw sockets to exact
//! granted addresses). Capability code never reads manifests; the CLI only
//! calls this crate's public API. [`credentials`] holds the credential
//! providers, the broker that mints per call and injects at the egress
//! boundary, revocation and the lease journal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use toolcell_runtime::{Call, Manifest, Runtime, RuntimeConfig, TaskRequest};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let tool = runtime.load_tool(Manifest::load("policies/word-count.toml".as_ref())?)?;
//! let task = runtime.open_task(&tool, TaskRequest::new("alice", Duration::from_secs(60)))?;
//! let report = task.invoke(Call::tool(r#"{"text":"hello world"}"#)).await?;
//! println!("{:?}", report.result);
//! task.close().await;
//! # Ok(()) }
//! ```

mod approval;
mod audit;
mod bindings;
mod boundary;
mod call;
mod caps;
mod config;
pub mod credentials;
mod decide;
mod described;
mod digests;
mod engine;
mod error;
mod floor;
mod grant;
pub mod identity;
mod invocation;
mod key_file;
mod manifest;
mod meter;
mod outstanding;
mod oversight;
pub mod policy;
pub mod reports;
pub mod request_policy;
mod runtime;
mod schema;
mod scratch;
mod store;
mod task;
mod transport;
mod units;

pub use approval::{
    ApprovalChannel, ApprovalError, ApprovalOutcome, ApprovalRequest, ApprovalSettings, Approvals, ChannelAnswer,
};
pub use audit::{
    Audit, AuditError, AuditEvent, AuditKind, AuditSettings, BreakKind, ChainBreak, SealKey, SealKeyError,
    SealPublicKey, Verification, VerifiedFile, VerifyError, verify as verify_audit,
};
pub use call::{
    Call, CallArgumentsError, CallInput, CallReport, CallResult, TaskRequest, TaskSummary, ToolError, ToolInfo,
};
pub use caps::http::SendRequestFuture;
pub use caps::stdio::{LogLevel, LogLine, OutputChunk, OutputSender};
pub use config::{DEFAULT_MAX_CREDENTIAL_TTL, RuntimeConfig};
pub use engine::{EngineSettings, FunctionInfo, LoadedComponent, Shape, Tool, ToolEngine, component_digest};
pub use error::{InvokeError, LimitHit, LimitKind, LoadError, RuntimeError, TaskError};
pub use floor::{Floor, FloorError, FloorState, NoEgress, floor_linker};
pub use grant::{
    CredentialNarrowing, DirNarrowing, EgressNarrowing, Grant, GrantSummary, LimitsNarrowing, Narrowing, WideningError,
    limits_table,
};
pub use manifest::{FieldError, Manifest, ManifestError, validate_tool_name};
pub use oversight::{
    Anomaly, AnomalyAction, AnomalyRule, Baseline, BaselineError, Behaviour, Contained, DenyStorm, EgressSoFar,
    HeldCredential, Kill, KillError, KillReport, KillTarget, LiveCall, LiveTask, MonitorSettings, Quarantine,
    RateLimited, Spread,
};
pub use policy::dir::{DirGrant, DirMode};
pub use policy::egress::{AddressClass, EgressRule, HostPattern, Scheme, classify_address};
pub use policy::env::{EnvGrant, EnvSource};
pub use policy::limits::Limits;
pub use policy::socket::{SocketGrant, SocketProtocol};
pub use runtime::{Controls, Runtime};
pub use task::Task;
pub use transport::{Resolver, StaticResolver, SystemResolver, TlsError};
pub use units::{ByteSize, TimeSpan, UnitError};
