//! The toolcell `log` import: a tool's log lines go to `tracing`, tagged with
//! the task and invocation, and to the caller's output. They draw on the same
//! `max_output` budget as stdout, so logging cannot flood the host.

use wasmtime::component::{HasSelf, Linker};

use crate::caps::stdio::{LogLevel, LogLine, OutputChunk};
use crate::store::InvocationState;
use crate::store::toolcell::tool::log::{Host, Level};

pub(crate) fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    crate::store::toolcell::tool::log::add_to_linker::<_, HasSelf<InvocationState>>(linker, |state| state)
}

impl Host for InvocationState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.meter.take_output(message.len()).map_err(|hit| wasmtime::Error::msg(hit.to_string()))?;
        let ids = &self.ids;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        macro_rules! emit {
            ($macro:ident) => {
                tracing::$macro!(target: "toolcell::guest", task = %ids.task, invocation = %ids.invocation, tool = %ids.tool, "{message}")
            };
        }
        match level {
            LogLevel::Trace => emit!(trace),
            LogLevel::Debug => emit!(debug),
            LogLevel::Info => emit!(info),
            LogLevel::Warn => emit!(warn),
            LogLevel::Error => emit!(error),
        }
        self.sink.deliver(OutputChunk::Log(LogLine { level, message }));
        Ok(())
    }
}
