//! The durable LSN of a shard, observable from threads (blocking) and tasks (async).

use cairn_types::Lsn;
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The highest LSN known durable, with waiters.
pub struct DurableLsn {
    value: Mutex<Lsn>,
    changed: Condvar,
    watch: watch::Sender<Lsn>,
}

impl DurableLsn {
    /// Starts at `lsn`.
    #[must_use]
    pub fn new(lsn: Lsn) -> DurableLsn {
        DurableLsn {
            value: Mutex::new(lsn),
            changed: Condvar::new(),
            watch: watch::Sender::new(lsn),
        }
    }

    /// The current value.
    #[must_use]
    pub fn get(&self) -> Lsn {
        *self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Raises the value (never lowers it) and wakes waiters.
    pub fn advance(&self, lsn: Lsn) {
        let mut value = self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lsn > *value {
            *value = lsn;
            drop(value);
            self.changed.notify_all();
            self.watch.send_replace(lsn);
        }
    }

    /// Waits until the value reaches `lsn`; false on timeout.
    #[must_use]
    pub fn wait_for(&self, lsn: Lsn, timeout: Duration) -> bool {
        let value = self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (value, _) = self
            .changed
            .wait_timeout_while(value, timeout, |current| *current < lsn)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *value >= lsn
    }

    /// A receiver for async waiters.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.watch.subscribe()
    }
}
