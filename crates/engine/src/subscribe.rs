//! Following a shard's log: catch up from the files, then tail the live stream.
//!
//! A subscription first reads records from the segment files, up to the durable LSN, then
//! switches to a bounded in-memory stream of records as they become durable. A subscriber that
//! falls further behind than that buffer gets [`SubscriptionError::FellBehind`], which names the
//! LSN to resume from; [`Subscription::resume_from_files`] does exactly that. Nothing is ever
//! shown before it is durable.

use cairn_log::storage::Storage;
use cairn_log::{LogReader, Record};
use cairn_types::Lsn;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// A durable record, shared between subscribers.
#[derive(Clone, Debug)]
pub struct LiveRecord(pub Arc<Record>);

impl LiveRecord {
    pub(crate) fn new(lsn: Lsn, at_ms: u64, record_type: u16, payload: Vec<u8>) -> LiveRecord {
        // Live subscribers never check the chain (recovery did); it is not known here.
        LiveRecord(Arc::new(Record {
            lsn,
            timestamp_ms: at_ms,
            record_type,
            payload,
            chain: [0u8; 16],
        }))
    }
}

/// Why a subscription cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscriber fell more than the buffer behind the live log.
    #[error(
        "subscriber fell more than {buffer_records_max} records behind the live log; resume from LSN {next_lsn}"
    )]
    FellBehind {
        /// The LSN to resume from.
        next_lsn: Lsn,
        /// The buffer's bound.
        buffer_records_max: usize,
    },
    /// Reading the log failed.
    #[error("reading the log failed: {0}")]
    Log(String),
    /// The shard shut down.
    #[error("the shard shut down")]
    Closed,
}

enum Mode {
    CatchUp,
    Live,
}

/// A cursor over one shard's durable records, from a chosen LSN on.
pub struct Subscription {
    storage: Arc<dyn Storage>,
    log_dir: PathBuf,
    buffer_records_max: usize,
    reader: LogReader,
    durable: watch::Receiver<Lsn>,
    live: broadcast::Receiver<LiveRecord>,
    mode: Mode,
    next_lsn: Lsn,
}

impl Subscription {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        log_dir: PathBuf,
        from_lsn: Lsn,
        durable: watch::Receiver<Lsn>,
        live: broadcast::Receiver<LiveRecord>,
        buffer_records_max: usize,
    ) -> Subscription {
        let next_lsn = from_lsn.max(Lsn(1));
        let reader = LogReader::new(Arc::clone(&storage), &log_dir, next_lsn);
        Subscription {
            storage,
            log_dir,
            buffer_records_max,
            reader,
            durable,
            live,
            mode: Mode::CatchUp,
            next_lsn,
        }
    }

    /// The LSN the next record will have.
    #[must_use]
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// After [`SubscriptionError::FellBehind`]: go back to reading the files from `next_lsn`.
    pub fn resume_from_files(&mut self) {
        self.live = self.live.resubscribe();
        self.catch_up();
    }

    fn catch_up(&mut self) {
        self.reader = LogReader::new(Arc::clone(&self.storage), &self.log_dir, self.next_lsn);
        self.mode = Mode::CatchUp;
    }

    /// The next durable record, waiting for one if need be.
    ///
    /// # Errors
    /// `FellBehind`, `Log` or `Closed`.
    pub async fn next(&mut self) -> Result<Arc<Record>, SubscriptionError> {
        loop {
            if let Some(record) = self.poll()? {
                return Ok(record);
            }
            match self.mode {
                Mode::CatchUp => {
                    if self.durable.changed().await.is_err() {
                        return Err(SubscriptionError::Closed);
                    }
                }
                Mode::Live => match self.live.recv().await {
                    Ok(record) => {
                        if let Some(record) = self.accept(record) {
                            return Ok(record);
                        }
                    }
                    Err(error) => return Err(self.live_error(error)),
                },
            }
        }
    }

    /// The next durable record if one is available now.
    ///
    /// # Errors
    /// `FellBehind`, `Log` or `Closed`.
    pub fn poll(&mut self) -> Result<Option<Arc<Record>>, SubscriptionError> {
        loop {
            match self.mode {
                Mode::CatchUp => {
                    let durable = *self.durable.borrow_and_update();
                    match self
                        .reader
                        .next(durable)
                        .map_err(|e| SubscriptionError::Log(e.to_string()))?
                    {
                        Some(record) => {
                            self.next_lsn = record.lsn.next();
                            return Ok(Some(Arc::new(record)));
                        }
                        None => self.mode = Mode::Live,
                    }
                }
                Mode::Live => match self.live.try_recv() {
                    Ok(record) => {
                        if let Some(record) = self.accept(record) {
                            return Ok(Some(record));
                        }
                    }
                    Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        return Err(self.fell_behind());
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        return Err(SubscriptionError::Closed);
                    }
                },
            }
        }
    }

    /// Takes a live record if it is the next one; falls back to the files on a gap.
    fn accept(&mut self, record: LiveRecord) -> Option<Arc<Record>> {
        let lsn = record.0.lsn;
        if lsn < self.next_lsn {
            return None;
        }
        if lsn > self.next_lsn {
            // A record was made durable before this subscriber joined the live stream.
            self.catch_up();
            return None;
        }
        self.next_lsn = lsn.next();
        Some(record.0)
    }

    fn live_error(&self, error: broadcast::error::RecvError) -> SubscriptionError {
        match error {
            broadcast::error::RecvError::Lagged(_) => self.fell_behind(),
            broadcast::error::RecvError::Closed => SubscriptionError::Closed,
        }
    }

    fn fell_behind(&self) -> SubscriptionError {
        SubscriptionError::FellBehind {
            next_lsn: self.next_lsn,
            buffer_records_max: self.buffer_records_max,
        }
    }
}
