//! SIGTERM and SIGINT: how `toolcell run` and `toolcell serve` stop without
//! leaving credentials alive. On the first signal they stop taking calls,
//! cancel the running ones (each cancelled call's teardown revokes what it
//! minted), close their tasks, and wait a bounded grace for revocations; a
//! second signal exits at once, and the lease journal covers what is left.

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::exit;

/// Says, before the process exits, how many credential revocations the
/// grace did not settle: the lease journal keeps them for the next start.
pub fn report_unsettled(pending: usize, grace: std::time::Duration) {
    if pending > 0 {
        eprintln!(
            "toolcell: {pending} credential revocation(s) still pending after {}; the lease journal keeps them \
             and the next toolcell start retries",
            toolcell_runtime::TimeSpan(grace)
        );
    }
}

/// Which signal stopped the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (a supervisor's stop).
    Terminate,
}

impl Stop {
    /// The exit code after a clean stop: 128 + the signal's number, as shells report it.
    pub fn code(self) -> u8 {
        match self {
            Stop::Interrupt => exit::INTERRUPTED,
            Stop::Terminate => exit::TERMINATED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// Both stop signals, caught from the moment this is made.
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub fn listen() -> Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    /// The next stop signal.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }

    /// Runs `work` (the teardown after a stop signal) unless a second signal
    /// comes first: then the process exits at once with the second signal's
    /// code, saying what is left to the journal.
    pub async fn or_exit_on_second<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::select! {
            done = work => done,
            again = self.next() => {
                eprintln!(
                    "toolcell: {} again: exiting now; credentials not yet revoked stay in the lease journal, \
                     and the next toolcell start revokes them",
                    again.name()
                );
                std::process::exit(i32::from(again.code()));
            }
        }
    }
}
