//! Standard I/O: stdin is the call's bytes; stdout and stderr either stream
//! to the caller or are captured, and both draw on the `max_output` budget.
//! A write past the budget traps the guest with the `max_output` limit.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc::UnboundedSender;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::meter::Meter;

/// A piece of a running invocation's output, in the order it was produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputChunk {
    /// Bytes the guest wrote to stdout.
    Stdout(Vec<u8>),
    /// Bytes the guest wrote to stderr.
    Stderr(Vec<u8>),
    /// A line from the toolcell `log` import.
    Log(LogLine),
}

/// One log line from a tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
}

/// Levels of the `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// For the tool's author.
    Debug,
    /// Normal progress.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Where output goes while an invocation runs: streamed to this sender, or
/// captured into the report when there is none.
pub type OutputSender = UnboundedSender<OutputChunk>;

/// Output captured for the report when nothing streams it.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) logs: Vec<LogLine>,
}

/// Delivers output to the caller's stream or the capture buffer.
#[derive(Clone)]
pub(crate) struct OutputSink {
    pub(crate) forward: Option<OutputSender>,
    pub(crate) captured: Arc<Mutex<Captured>>,
}

impl OutputSink {
    pub(crate) fn deliver(&self, chunk: OutputChunk) {
        if let Some(sender) = &self.forward {
            // A caller that stopped listening loses the output, not the call.
            let _ = sender.send(chunk);
            return;
        }
        let mut captured = self.captured.lock().unwrap_or_else(|p| p.into_inner());
        match chunk {
            OutputChunk::Stdout(bytes) => captured.stdout.extend_from_slice(&bytes),
            OutputChunk::Stderr(bytes) => captured.stderr.extend_from_slice(&bytes),
            OutputChunk::Log(line) => captured.logs.push(line),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Channel {
    Stdout,
    Stderr,
}

/// stdout or stderr of one invocation.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    pub(crate) channel: Channel,
    pub(crate) meter: Arc<Meter>,
    pub(crate) sink: OutputSink,
}

impl CappedOutput {
    fn accept(&self, bytes: &[u8]) -> Result<(), crate::error::LimitHit> {
        self.meter.take_output(bytes.len())?;
        let bytes = bytes.to_vec();
        self.sink.deliver(match self.channel {
            Channel::Stdout => OutputChunk::Stdout(bytes),
            Channel::Stderr => OutputChunk::Stderr(bytes),
        });
        Ok(())
    }
}

/// How much a guest may write per `check-write`; the budget is checked on
/// the write itself.
const WRITE_CHUNK: usize = 64 << 10;

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes).map_err(|hit| StreamError::trap(&hit.to_string()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_CHUNK)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.accept(buf).map(|()| buf.len()).map_err(|hit| std::io::Error::other(hit.to_string())))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
