//! `SharedLog`: a `Log` behind a mutex, with the group commit.
//!
//! Appends and reads take the mutex briefly. `flush` holds a second, flush-only mutex for its
//! whole run and takes the log mutex only to prepare and to complete, never during the
//! fdatasync itself, so appends go on while a sync is in flight and the next flush covers them.
//! One fdatasync therefore covers every append made since the previous one started.

use std::sync::{Mutex, MutexGuard};

use crate::config::LogConfig;
use crate::error::Result;
use crate::log::{Log, RecoveryReport};
use std::path::Path;

pub struct SharedLog {
    log: Mutex<Log>,
    flush_lock: Mutex<()>,
}

impl SharedLog {
    pub fn open(dir: &Path, config: LogConfig) -> Result<(SharedLog, RecoveryReport)> {
        let (log, report) = Log::open(dir, config)?;
        Ok((SharedLog { log: Mutex::new(log), flush_lock: Mutex::new(()) }, report))
    }

    /// The log, locked. A panic while it was held poisons nothing that matters: the log's own
    /// invariants are asserted on every change, so the state is taken as is.
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every append made before this call durable and returns the new recovery point:
    /// every offset below it is on disk.
    pub fn flush(&self) -> Result<i64> {
        let _flushing = self.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let plan = self.lock().prepare_flush()?;
        let outcome = plan.execute();
        self.lock().complete_flush(plan.target_offset, outcome)
    }

    /// Flushes, then closes (see `Log::close`); waits for any flush in flight.
    pub fn close(&self) -> Result<()> {
        let _flushing = self.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.lock().close()
    }
}
