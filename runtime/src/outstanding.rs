//! Work in flight that someone may wait for: the teardowns of a task's
//! calls (closing the task waits for them), and everything the revoker runs
//! on the runtime's side (a process about to exit waits for it).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// How many pieces of work are running, and a way to wait until none is.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    count: Mutex<usize>,
    idle: Notify,
}

impl Outstanding {
    fn count_mut(&self) -> std::sync::MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more piece of work has started.
    pub(crate) fn started(&self) {
        *self.count_mut() += 1;
    }

    /// One piece of work has ended; the last wakes everyone waiting.
    pub(crate) fn ended(&self) {
        let mut count = self.count_mut();
        *count -= 1;
        if *count == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Pieces of work still running.
    pub(crate) fn count(&self) -> usize {
        *self.count_mut()
    }

    /// Resolves when no work is running.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Waits until no work is running, or `within` has passed; returns how
    /// many pieces are still running.
    pub(crate) async fn idle_within(&self, within: Duration) -> usize {
        let _ = tokio::time::timeout(within, self.idle()).await;
        self.count()
    }
}
