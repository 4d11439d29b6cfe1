//! `tidelog.storage._engine`: the Python face of `tidelog-storage`. Conversions only; every
//! rule lives in the storage crate. Calls that touch the disk for long (open, flush, close,
//! retention) run with the GIL released; appends and reads are short and keep it.

use std::path::PathBuf;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyBufferError, PyException};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use tidelog_storage::{self as storage, StorageError as Error};

create_exception!(_engine, StorageError, PyException, "Base of every storage engine error.");
create_exception!(_engine, CorruptRecordError, StorageError, "Malformed batch bytes (Kafka CORRUPT_MESSAGE).");
create_exception!(_engine, InvalidRecordError, StorageError, "A batch breaking a rule (Kafka INVALID_RECORD).");
create_exception!(
    _engine,
    RecordWithoutKeyError,
    InvalidRecordError,
    "A record without a key for a compacted topic (Kafka INVALID_RECORD); args: (message, record index)."
);
create_exception!(_engine, UnsupportedMagicError, StorageError, "A batch in a format other than magic v2.");
create_exception!(_engine, InvalidTimestampError, StorageError, "Timestamp out of bounds (Kafka INVALID_TIMESTAMP).");
create_exception!(
    _engine,
    RecordTooLargeError,
    StorageError,
    "Batch above max.message.bytes (Kafka MESSAGE_TOO_LARGE)."
);
create_exception!(
    _engine,
    RecordListTooLargeError,
    StorageError,
    "Append above segment.bytes (Kafka RECORD_LIST_TOO_LARGE)."
);
create_exception!(_engine, OffsetOutOfRangeError, StorageError, "Offset outside the log (Kafka OFFSET_OUT_OF_RANGE).");
create_exception!(
    _engine,
    CorruptLogError,
    StorageError,
    "Recovery found damaged flushed data (Kafka KAFKA_STORAGE_ERROR)."
);
create_exception!(
    _engine,
    CorruptBatchError,
    StorageError,
    "A batch that failed its check when first read after the open; never served (Kafka KAFKA_STORAGE_ERROR)."
);
create_exception!(
    _engine,
    NotVerifiedError,
    StorageError,
    "The read reaches bytes its segment's verification pass has not checked yet (the pass runs): read again."
);
create_exception!(_engine, LogClosedError, StorageError, "The log was closed.");
create_exception!(_engine, StorageIOError, StorageError, "A failed disk operation (Kafka KAFKA_STORAGE_ERROR).");
create_exception!(_engine, InvalidConfigError, StorageError, "A log config value out of range.");
create_exception!(
    _engine,
    InvalidAbortedTxnError,
    StorageError,
    "An aborted-transaction index entry out of order or outside the log."
);

fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::CorruptRecord(_) => CorruptRecordError::new_err(message),
        Error::InvalidRecord(_) => InvalidRecordError::new_err(message),
        Error::RecordWithoutKey { record } => RecordWithoutKeyError::new_err((message, record)),
        Error::UnsupportedMagic(_) => UnsupportedMagicError::new_err(message),
        Error::InvalidTimestamp(_) => InvalidTimestampError::new_err(message),
        Error::RecordTooLarge { .. } => RecordTooLargeError::new_err(message),
        Error::RecordListTooLarge { .. } => RecordListTooLargeError::new_err(message),
        Error::OffsetOutOfRange { .. } => OffsetOutOfRangeError::new_err(message),
        Error::CorruptLog { .. } => CorruptLogError::new_err(message),
        Error::CorruptBatch { .. } => CorruptBatchError::new_err(message),
        Error::Unverified { .. } => NotVerifiedError::new_err(message),
        Error::InvalidConfig(_) => InvalidConfigError::new_err(message),
        Error::InvalidAbortedTxn(_) => InvalidAbortedTxnError::new_err(message),
        Error::Closed => LogClosedError::new_err(message),
        Error::Io(_) => StorageIOError::new_err(message),
    }
}

/// Settings of one log; field names are Kafka's topic config keys with `_` for `.`.
#[pyclass(name = "LogConfig", frozen, get_all, module = "tidelog.storage._engine")]
#[derive(Clone)]
struct PyLogConfig {
    segment_bytes: u64,
    segment_ms: i64,
    segment_index_bytes: u64,
    index_interval_bytes: u64,
    retention_ms: i64,
    retention_bytes: i64,
    max_message_bytes: usize,
    log_append_time: bool,
    message_timestamp_before_max_ms: i64,
    message_timestamp_after_max_ms: i64,
    compact: bool,
    delete_retention_ms: i64,
    min_compaction_lag_ms: i64,
    max_compaction_lag_ms: i64,
    preallocate_bytes: u64,
}

#[pymethods]
impl PyLogConfig {
    #[new]
    #[pyo3(signature = (*, segment_bytes, segment_ms, segment_index_bytes, index_interval_bytes, retention_ms,
        retention_bytes, max_message_bytes, log_append_time, message_timestamp_before_max_ms, message_timestamp_after_max_ms,
        compact=false, delete_retention_ms=86_400_000, min_compaction_lag_ms=0, max_compaction_lag_ms=i64::MAX,
        preallocate_bytes=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        segment_bytes: u64,
        segment_ms: i64,
        segment_index_bytes: u64,
        index_interval_bytes: u64,
        retention_ms: i64,
        retention_bytes: i64,
        max_message_bytes: usize,
        log_append_time: bool,
        message_timestamp_before_max_ms: i64,
        message_timestamp_after_max_ms: i64,
        compact: bool,
        delete_retention_ms: i64,
        min_compaction_lag_ms: i64,
        max_compaction_lag_ms: i64,
        preallocate_bytes: u64,
    ) -> PyResult<Self> {
        let config = PyLogConfig {
            preallocate_bytes,
            compact,
            delete_retention_ms,
            min_compaction_lag_ms,
            max_compaction_lag_ms,
            segment_bytes,
            segment_ms,
            segment_index_bytes,
            index_interval_bytes,
            retention_ms,
            retention_bytes,
            max_message_bytes,
            log_append_time,
            message_timestamp_before_max_ms,
            message_timestamp_after_max_ms,
        };
        config.to_storage().validate().map_err(to_py)?;
        Ok(config)
    }
}

impl PyLogConfig {
    fn to_storage(&self) -> storage::LogConfig {
        storage::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            segment_index_bytes: self.segment_index_bytes,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: self.max_message_bytes,
            message_timestamp_type: if self.log_append_time {
                storage::TimestampType::LogAppendTime
            } else {
                storage::TimestampType::CreateTime
            },
            message_timestamp_before_max_ms: self.message_timestamp_before_max_ms,
            message_timestamp_after_max_ms: self.message_timestamp_after_max_ms,
            compact: self.compact,
            delete_retention_ms: self.delete_retention_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            max_compaction_lag_ms: self.max_compaction_lag_ms,
            preallocate_bytes: self.preallocate_bytes,
        }
    }
}

/// What a log offers the cleaner now (see `PartitionLog.cleanable`).
#[pyclass(name = "Cleanable", frozen, get_all, module = "tidelog.storage._engine")]
struct PyCleanable {
    first_dirty_offset: i64,
    first_uncleanable_offset: i64,
    clean_bytes: u64,
    cleanable_bytes: u64,
    compaction_delay_ms: i64,
    ratio: f64,
}

/// What one cleaning pass did.
#[pyclass(name = "CleanReport", frozen, get_all, module = "tidelog.storage._engine")]
struct PyCleanReport {
    first_dirty_offset: i64,
    end_offset: i64,
    segments_read: usize,
    segments_written: usize,
    bytes_read: u64,
    bytes_written: u64,
    records_read: u64,
    records_retained: u64,
    map_entries: usize,
    map_utilization: f64,
    duration_ms: u64,
}

/// A log cleaner thread's state (Kafka's `Cleaner`): its offset map of `dedupe_buffer_bytes`
/// and its I/O throttle. One pass at a time.
#[pyclass(name = "Cleaner", frozen, module = "tidelog.storage._engine")]
struct PyCleaner {
    map: std::sync::Mutex<storage::OffsetMap>,
    io_bytes_per_sec: f64,
    abort: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[pymethods]
impl PyCleaner {
    #[new]
    #[pyo3(signature = (dedupe_buffer_bytes, io_bytes_per_sec=0.0))]
    fn new(dedupe_buffer_bytes: usize, io_bytes_per_sec: f64) -> Self {
        PyCleaner {
            map: std::sync::Mutex::new(storage::OffsetMap::new(dedupe_buffer_bytes)),
            io_bytes_per_sec,
            abort: Default::default(),
        }
    }

    /// Stops the pass running now (it fails with LogClosedError, its files removed) and every
    /// later one: for a broker shutting down.
    fn abort(&self) {
        self.abort.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// One pass over `log` (GIL released): `upper_bound` is the last stable offset, `producers`
    /// the active producers as (producer id, last data offset or -1, epoch). None: nothing to do.
    fn clean(
        &self,
        py: Python<'_>,
        log: &PyPartitionLog,
        now_ms: i64,
        upper_bound: i64,
        producers: Vec<(i64, i64, i16)>,
    ) -> PyResult<Option<PyCleanReport>> {
        let producers: Vec<storage::ActiveProducer> = producers
            .into_iter()
            .map(|(producer_id, last_data_offset, producer_epoch)| storage::ActiveProducer {
                producer_id,
                last_data_offset,
                producer_epoch,
            })
            .collect();
        let report = py
            .detach(|| {
                let mut map = self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut throttle = storage::Throttle::new(self.io_bytes_per_sec, std::sync::Arc::clone(&self.abort));
                storage::cleaner::clean(&log.inner, now_ms, upper_bound, &producers, &mut map, &mut throttle)
            })
            .map_err(to_py)?;
        Ok(report.map(|r| PyCleanReport {
            first_dirty_offset: r.first_dirty_offset,
            end_offset: r.end_offset,
            segments_read: r.segments_read,
            segments_written: r.segments_written,
            bytes_read: r.bytes_read,
            bytes_written: r.bytes_written,
            records_read: r.records_read,
            records_retained: r.records_retained,
            map_entries: r.map_entries,
            map_utilization: r.map_utilization,
            duration_ms: r.duration_ms,
        }))
    }
}

#[pyclass(name = "AppendInfo", frozen, get_all, module = "tidelog.storage._engine")]
struct PyAppendInfo {
    first_offset: i64,
    last_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    batch_count: usize,
    rolled: bool,
}

#[pyclass(name = "RecoveryReport", frozen, get_all, module = "tidelog.storage._engine")]
struct PyRecoveryReport {
    clean_shutdown: bool,
    segments_scanned: usize,
    indexes_rebuilt: usize,
    bytes_truncated: u64,
    segments_deleted: usize,
    segments_set_aside: usize,
    aborted_txns_truncated: usize,
    cleaner_swaps_completed: usize,
    log_end_offset: i64,
    duration_ms: u64,
}

#[pyclass(name = "DeletionReport", frozen, get_all, module = "tidelog.storage._engine")]
struct PyDeletionReport {
    segments_deleted: usize,
    bytes_deleted: u64,
    log_start_offset: i64,
}

/// The fixed fields of one record batch, as the producer sent them.
#[pyclass(name = "BatchHeader", frozen, get_all, module = "tidelog.storage._engine")]
struct PyBatchHeader {
    position: usize,
    size_bytes: usize,
    base_offset: i64,
    last_offset_delta: i32,
    record_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    is_transactional: bool,
    is_control: bool,
    is_log_append_time: bool,
    compression_id: i16,
}

impl PyBatchHeader {
    fn new(position: usize, h: &storage::BatchHeader) -> Self {
        PyBatchHeader {
            position,
            size_bytes: h.size_bytes(),
            base_offset: h.base_offset,
            last_offset_delta: h.last_offset_delta,
            record_count: h.record_count,
            base_timestamp: h.base_timestamp,
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            is_transactional: h.is_transactional(),
            is_control: h.is_control(),
            is_log_append_time: h.is_log_append_time(),
            compression_id: h.compression_id(),
        }
    }
}

/// Whole batches in one segment file: `fileno()`, `position` and `size` for `os.sendfile`.
#[pyclass(name = "FileSlice", frozen, module = "tidelog.storage._engine")]
struct PyFileSlice {
    inner: storage::FileSlice,
}

#[pymethods]
impl PyFileSlice {
    fn fileno(&self) -> i32 {
        self.inner.raw_fd()
    }
    #[getter]
    fn position(&self) -> u64 {
        self.inner.position
    }
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }
    #[getter]
    fn first_offset(&self) -> i64 {
        self.inner.first_offset
    }
    #[getter]
    fn last_offset(&self) -> i64 {
        self.inner.last_offset
    }
    /// A copy of the bytes (for TLS and in-process readers).
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        // Straight into the new bytes object: one copy, no zeroed scratch buffer.
        PyBytes::new_with(py, self.inner.size as usize, |target| {
            self.inner.read_into(target).map_err(|e| to_py(e.into()))
        })
    }
    /// Copies the bytes into a writable buffer of exactly `size` bytes.
    fn read_into(&self, buffer: PyBuffer<u8>) -> PyResult<()> {
        if buffer.readonly() || !buffer.is_c_contiguous() || buffer.len_bytes() as u64 != self.inner.size {
            return Err(PyBufferError::new_err("need a writable contiguous buffer of exactly `size` bytes"));
        }
        // SAFETY: checked writable, contiguous and of the right length; the buffer stays
        // exported (and so alive and unmoved) while `buffer` is held.
        let target = unsafe { std::slice::from_raw_parts_mut(buffer.buf_ptr() as *mut u8, buffer.len_bytes()) };
        self.inner.read_into(target).map_err(|e| to_py(e.into()))
    }
}

/// One partition's log. Safe to share between threads.
#[pyclass(name = "PartitionLog", frozen, module = "tidelog.storage._engine")]
struct PyPartitionLog {
    inner: storage::SharedLog,
    directory: PathBuf,
}

/// Borrows the bytes of any contiguous buffer (bytes, bytearray, memoryview) without a copy.
fn with_bytes<T>(buffer: &PyBuffer<u8>, f: impl FnOnce(&[u8]) -> T) -> PyResult<T> {
    if !buffer.is_c_contiguous() {
        return Err(PyBufferError::new_err("records must be a contiguous buffer"));
    }
    // SAFETY: contiguous, and exported for as long as `buffer` lives, which outlives `f`.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) };
    Ok(f(bytes))
}

#[pymethods]
impl PyPartitionLog {
    /// Opens the log in `directory` (created if missing), recovering it after an unclean stop.
    #[staticmethod]
    fn open(py: Python<'_>, directory: PathBuf, config: &PyLogConfig) -> PyResult<(Self, PyRecoveryReport)> {
        let config = config.to_storage();
        let dir = directory.clone();
        let (inner, r) = py.detach(move || storage::SharedLog::open(&dir, config)).map_err(to_py)?;
        let report = PyRecoveryReport {
            clean_shutdown: r.clean_shutdown,
            segments_scanned: r.segments_scanned,
            indexes_rebuilt: r.indexes_rebuilt,
            bytes_truncated: r.bytes_truncated,
            segments_deleted: r.segments_deleted,
            segments_set_aside: r.segments_set_aside,
            aborted_txns_truncated: r.aborted_txns_truncated,
            cleaner_swaps_completed: r.cleaner_swaps_completed,
            log_end_offset: r.log_end_offset,
            duration_ms: r.duration_ms,
        };
        Ok((PyPartitionLog { inner, directory }, report))
    }

    #[getter]
    fn directory(&self) -> PathBuf {
        self.directory.clone()
    }
    #[getter]
    fn log_start_offset(&self) -> i64 {
        self.inner.lock().log_start_offset()
    }
    #[getter]
    fn log_end_offset(&self) -> i64 {
        self.inner.lock().log_end_offset()
    }
    /// Every offset below this is durable (fsynced).
    #[getter]
    fn recovery_point(&self) -> i64 {
        self.inner.lock().recovery_point()
    }
    #[getter]
    fn size_bytes(&self) -> u64 {
        self.inner.lock().size_bytes()
    }
    #[getter]
    fn segment_count(&self) -> usize {
        self.inner.lock().segment_count()
    }

    /// Checks every batch in `records` (framing, CRC, contents, timestamps) and returns their
    /// headers; writes nothing.
    fn batch_headers(&self, records: PyBuffer<u8>, now_ms: i64) -> PyResult<Vec<PyBatchHeader>> {
        let batches =
            with_bytes(&records, |bytes| self.inner.lock().validate_batches(bytes, now_ms, false))?.map_err(to_py)?;
        Ok(batches.iter().map(|(position, h)| PyBatchHeader::new(*position, h)).collect())
    }

    /// Validates and appends whole batches, assigning offsets; all or nothing. With
    /// `from_client`, control batches are refused (only coordinators write them).
    #[pyo3(signature = (records, now_ms, leader_epoch = -1, from_client = false))]
    fn append(
        &self,
        records: PyBuffer<u8>,
        now_ms: i64,
        leader_epoch: i32,
        from_client: bool,
    ) -> PyResult<PyAppendInfo> {
        let info = with_bytes(&records, |bytes| {
            let mut log = self.inner.lock();
            if from_client {
                log.append_from_client(bytes, now_ms, leader_epoch)
            } else {
                log.append(bytes, now_ms, leader_epoch)
            }
        })?
        .map_err(to_py)?;
        Ok(PyAppendInfo {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: info.log_start_offset,
            batch_count: info.batch_count,
            rolled: info.rolled,
        })
    }

    /// Headers of the batches with a producer id from the one holding `from_offset` on (at most
    /// `max_batches` batches read), and the offset to continue from: the producer-state replay.
    /// `position` is 0: these come from the log, not from a request buffer.
    fn producer_batches(&self, from_offset: i64, max_batches: usize) -> PyResult<(Vec<PyBatchHeader>, i64)> {
        let (headers, next) = self.inner.lock().producer_batches(from_offset, max_batches).map_err(to_py)?;
        Ok((headers.iter().map(|h| PyBatchHeader::new(0, h)).collect(), next))
    }

    /// Whole batches from the one holding `offset`; `None` when there is nothing below
    /// `upper_bound` to read yet. Only verified batches are served (see the crate's `verify`):
    /// with `wait`, a read that reaches bytes not verified yet waits for the pass with the GIL
    /// released; without it, it raises NotVerifiedError at once (an event loop reads again later).
    #[pyo3(signature = (offset, max_bytes, upper_bound, min_one_batch = true, wait = true))]
    fn read(
        &self,
        py: Python<'_>,
        offset: i64,
        max_bytes: u64,
        upper_bound: i64,
        min_one_batch: bool,
        wait: bool,
    ) -> PyResult<Option<PyFileSlice>> {
        loop {
            let outcome = self.inner.lock().read(offset, max_bytes, upper_bound, min_one_batch);
            match outcome {
                Ok(slice) => return Ok(slice.map(|inner| PyFileSlice { inner })),
                Err(Error::Unverified { base_offset, position }) if wait => {
                    let Some((verification, _)) = self.inner.lock().verification_of(base_offset) else { continue };
                    py.detach(|| verification.wait_for(position));
                }
                Err(error) => return Err(to_py(error)),
            }
        }
    }

    /// Verifies segments not verified yet, oldest first, at most `bytes_per_sec` (0: no limit)
    /// unless a reader waits, and about `budget` bytes in all; GIL released. Returns the bytes
    /// it checked (0: nothing left).
    fn scrub(&self, py: Python<'_>, bytes_per_sec: u64, budget: u64) -> u64 {
        let segments = self.inner.lock().unverified_segments();
        py.detach(|| {
            let mut checked = 0;
            for (_, verification, file) in segments {
                if checked >= budget {
                    break;
                }
                let before = verification.unverified_bytes();
                verification.run(&file, bytes_per_sec, budget - checked);
                checked += before - verification.unverified_bytes();
            }
            checked
        })
    }

    /// Trusted bytes not verified yet (0 once every segment was verified).
    #[getter]
    fn unverified_bytes(&self) -> u64 {
        self.inner.lock().unverified_bytes()
    }

    /// Damage that verification found since the last call, each once:
    /// (segment file, position, end position, first offset, last offset, reason).
    fn take_damage(&self) -> Vec<(String, u64, u64, i64, i64, String)> {
        let found = self.inner.lock().take_damage();
        found
            .into_iter()
            .map(|(path, d)| (path, d.position, d.end_position, d.first_offset, d.last_offset, d.reason))
            .collect()
    }

    /// Group commit: makes every append made before the call durable; returns the recovery point.
    fn flush(&self, py: Python<'_>) -> PyResult<i64> {
        py.detach(|| self.inner.flush()).map_err(to_py)
    }

    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.lock().checkpoint()).map_err(to_py)
    }

    /// New settings, applied from the next append, roll or retention pass.
    fn set_config(&self, config: &PyLogConfig) -> PyResult<()> {
        self.inner.lock().set_config(config.to_storage()).map_err(to_py)
    }

    fn roll(&self) -> PyResult<()> {
        self.inner.lock().roll().map_err(to_py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).map_err(to_py)
    }

    /// Deletes the closed log: its directory is renamed to `renamed` at once and its files go
    /// to the background deleter (paced cuts; a segment once no reader holds it).
    fn delete_into(&self, py: Python<'_>, renamed: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.lock().delete_into(&renamed)).map_err(to_py)
    }

    /// What the cleaner may clean now, below `upper_bound` (the last stable offset).
    fn cleanable(&self, now_ms: i64, upper_bound: i64) -> PyCleanable {
        let c = self.inner.lock().cleanable(now_ms, upper_bound);
        PyCleanable {
            first_dirty_offset: c.first_dirty_offset,
            first_uncleanable_offset: c.first_uncleanable_offset,
            clean_bytes: c.clean_bytes,
            cleanable_bytes: c.cleanable_bytes,
            compaction_delay_ms: c.compaction_delay_ms,
            ratio: c.ratio(),
        }
    }

    fn delete_old_segments(&self, py: Python<'_>, now_ms: i64, upper_bound: i64) -> PyResult<PyDeletionReport> {
        let r = py.detach(|| self.inner.lock().delete_old_segments(now_ms, upper_bound)).map_err(to_py)?;
        Ok(PyDeletionReport {
            segments_deleted: r.segments_deleted,
            bytes_deleted: r.bytes_deleted,
            log_start_offset: r.log_start_offset,
        })
    }

    fn delete_records_before(&self, py: Python<'_>, offset: i64, upper_bound: i64) -> PyResult<i64> {
        py.detach(|| self.inner.lock().delete_records_before(offset, upper_bound)).map_err(to_py)
    }

    /// `(offset, timestamp)` of the first record with a timestamp at or after `timestamp_ms`.
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> PyResult<Option<(i64, i64)>> {
        self.inner.lock().offset_for_timestamp(timestamp_ms).map_err(to_py)
    }

    /// `(max timestamp, offset of the first record carrying it)`, or `None` for an empty log.
    fn max_timestamp_and_offset(&self) -> PyResult<Option<(i64, i64)>> {
        self.inner.lock().max_timestamp_and_offset().map_err(to_py)
    }

    /// Records an aborted transaction in the `.txnindex` of the segment holding its ABORT marker
    /// (`last_offset`, already appended). Durable with the next flush; fsynced at once when a
    /// flush already covers the marker, hence the GIL is released.
    fn append_aborted_txn(
        &self,
        py: Python<'_>,
        producer_id: i64,
        first_offset: i64,
        last_offset: i64,
        last_stable_offset: i64,
    ) -> PyResult<()> {
        let txn = storage::AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset };
        py.detach(|| self.inner.lock().append_aborted_txn(txn)).map_err(to_py)
    }

    /// The aborted transactions overlapping a fetch of `[fetch_offset, upper_bound_offset)`, as
    /// `(producer_id, first_offset, last_offset, last_stable_offset)`, in log order (Kafka's
    /// `collectAbortedTransactions`).
    fn collect_aborted_txns(&self, fetch_offset: i64, upper_bound_offset: i64) -> Vec<(i64, i64, i64, i64)> {
        let txns = self.inner.lock().collect_aborted_txns(fetch_offset, upper_bound_offset);
        txns.iter().map(|t| (t.producer_id, t.first_offset, t.last_offset, t.last_stable_offset)).collect()
    }

    /// The marker offset of the newest `.txnindex` entry, or -1 when there is none.
    #[getter]
    fn last_aborted_txn_offset(&self) -> i64 {
        self.inner.lock().last_aborted_txn_offset().unwrap_or(-1)
    }

    /// Drops every `.txnindex` entry whose last offset is at or after `offset`; returns how many.
    fn truncate_aborted_txns_from(&self, py: Python<'_>, offset: i64) -> PyResult<usize> {
        py.detach(|| self.inner.lock().truncate_aborted_txns_from(offset)).map_err(to_py)
    }
}

/// The records section `data`, compressed with Kafka codec `compression_id`, decompressed (for
/// in-process readers); GIL released while it runs.
#[pyfunction]
fn decompress<'py>(py: Python<'py>, compression_id: i16, data: PyBuffer<u8>) -> PyResult<Bound<'py, PyBytes>> {
    let out = with_bytes(&data, |bytes| {
        py.detach(|| storage::codec::decompress(compression_id, bytes).map(|c| c.into_owned()))
    })?
    .map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// A damaged stretch as Python sees it: (position, end position, first offset, last offset, reason).
type PyDamage = (u64, u64, i64, i64, String);

/// Scans one segment file whole (offline, for `tidelog recover`): (file size, the offset after
/// its last good batch, damage as (position, end position, first offset, last offset, reason)).
/// `end_offset` is the next segment's base offset (`i64::MAX` for the last segment).
#[pyfunction]
fn scan_segment(
    py: Python<'_>,
    path: PathBuf,
    base_offset: i64,
    end_offset: i64,
) -> PyResult<(u64, i64, Vec<PyDamage>)> {
    let scan = py
        .detach(|| {
            std::fs::File::open(&path).and_then(|file| storage::verify::scan_file(&file, base_offset, end_offset))
        })
        .map_err(|e| to_py(Error::Io(e)))?;
    let damaged = scan
        .damaged
        .into_iter()
        .map(|d| (d.position, d.end_position, d.first_offset, d.last_offset, d.reason))
        .collect();
    Ok((scan.size, scan.next_offset, damaged))
}

/// The partition directory's `log-state.checkpoint`: (recovery point, log start offset, clean
/// shutdown), or None when there is none (or it does not parse).
#[pyfunction]
fn read_checkpoint(directory: PathBuf) -> PyResult<Option<(i64, i64, bool)>> {
    let checkpoint = storage::checkpoint::Checkpoint::read(&directory).map_err(|e| to_py(Error::Io(e)))?;
    Ok(checkpoint.map(|c| (c.recovery_point, c.log_start_offset, c.clean_shutdown)))
}

/// Replaces the directory's `log-state.checkpoint` durably (temp file, fsync, rename).
#[pyfunction]
fn write_checkpoint(
    directory: PathBuf,
    recovery_point: i64,
    log_start_offset: i64,
    clean_shutdown: bool,
) -> PyResult<()> {
    // The cleaner starts over from the log start: the offsets it had may be gone.
    let checkpoint =
        storage::checkpoint::Checkpoint { recovery_point, log_start_offset, clean_shutdown, first_dirty_offset: None };
    checkpoint.write(&directory).map_err(|e| to_py(Error::Io(e)))
}

/// Whether logs opened from now on verify batches before serving them (the default; off is
/// Kafka's behaviour). Process-wide.
#[pyfunction]
fn set_verify_reads(enabled: bool) {
    storage::verify::set_enabled(enabled);
}

/// Queues a directory already out of the data directory (a deleted topic's partition left by
/// a crash) for the background deleter: its files are cut in paced pieces, then it goes.
#[pyfunction]
fn delete_tree(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(|| storage::deleter::delete_tree(path)).map_err(|e| to_py(Error::Io(e)))
}

/// Files and directories the background deleter has not finished with.
#[pyfunction]
fn pending_deletions() -> usize {
    storage::deleter::pending()
}

/// Waits until the background deleter has nothing left or `timeout_s` passes; whether it has
/// nothing left.
#[pyfunction]
fn wait_for_deletions(py: Python<'_>, timeout_s: f64) -> bool {
    py.detach(|| storage::deleter::wait_idle(std::time::Duration::from_secs_f64(timeout_s.max(0.0))))
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(decompress, m)?)?;
    m.add_function(wrap_pyfunction!(set_verify_reads, m)?)?;
    m.add_function(wrap_pyfunction!(scan_segment, m)?)?;
    m.add_function(wrap_pyfunction!(read_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(write_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(delete_tree, m)?)?;
    m.add_function(wrap_pyfunction!(pending_deletions, m)?)?;
    m.add_function(wrap_pyfunction!(wait_for_deletions, m)?)?;
    m.add_class::<PyLogConfig>()?;
    m.add_class::<PyPartitionLog>()?;
    m.add_class::<PyFileSlice>()?;
    m.add_class::<PyAppendInfo>()?;
    m.add_class::<PyRecoveryReport>()?;
    m.add_class::<PyDeletionReport>()?;
    m.add_class::<PyBatchHeader>()?;
    m.add_class::<PyCleanable>()?;
    m.add_class::<PyCleanReport>()?;
    m.add_class::<PyCleaner>()?;
    for (name, class) in [
        ("StorageError", py.get_type::<StorageError>()),
        ("CorruptRecordError", py.get_type::<CorruptRecordError>()),
        ("InvalidRecordError", py.get_type::<InvalidRecordError>()),
        ("RecordWithoutKeyError", py.get_type::<RecordWithoutKeyError>()),
        ("UnsupportedMagicError", py.get_type::<UnsupportedMagicError>()),
        ("InvalidTimestampError", py.get_type::<InvalidTimestampError>()),
        ("RecordTooLargeError", py.get_type::<RecordTooLargeError>()),
        ("RecordListTooLargeError", py.get_type::<RecordListTooLargeError>()),
        ("OffsetOutOfRangeError", py.get_type::<OffsetOutOfRangeError>()),
        ("CorruptLogError", py.get_type::<CorruptLogError>()),
        ("CorruptBatchError", py.get_type::<CorruptBatchError>()),
        ("NotVerifiedError", py.get_type::<NotVerifiedError>()),
        ("LogClosedError", py.get_type::<LogClosedError>()),
        ("StorageIOError", py.get_type::<StorageIOError>()),
        ("InvalidConfigError", py.get_type::<InvalidConfigError>()),
        ("InvalidAbortedTxnError", py.get_type::<InvalidAbortedTxnError>()),
    ] {
        m.add(name, class)?;
    }
    Ok(())
}
