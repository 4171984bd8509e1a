//! The toolcell `log` import: a tool's log lines go to `tracing`, tagged with
//! the task and invocation, and to the caller's output. They draw on the same
//! `max_output` budget as stdout, so logging cannot flood the host.

use wasmtime::component::{HasData, Linker};

use crate::audit::InvocationIds;
use crate::bindings::toolcell::tool::log::{Host, Level};
use crate::caps::stdio::{LogLevel, LogLine, OutputChunk, OutputSink};
use crate::meter::Meter;

/// What a tool's log line needs of its invocation.
pub(crate) struct LogView<'a> {
    pub(crate) meter: &'a Meter,
    pub(crate) sink: &'a OutputSink,
    pub(crate) ids: &'a InvocationIds,
}

struct Log;

impl HasData for Log {
    type Data<'a> = LogView<'a>;
}

/// Links the `log` import; `view` gives it its part of the store's data.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::toolcell::tool::log::add_to_linker::<T, Log>(linker, view)
}

impl Host for LogView<'_> {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.meter.take_output(message.len()).map_err(|hit| wasmtime::Error::msg(hit.to_string()))?;
        let ids = self.ids;
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
