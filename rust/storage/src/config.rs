//! Per-log settings, named after Kafka's topic configs (`segment.bytes` → `segment_bytes`).

use crate::error::{Result, StorageError};
use crate::limits::{OFFSET_INDEX_ENTRY_BYTES, SEGMENT_BYTES_MAX, TIME_INDEX_ENTRY_BYTES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: u64,
    pub index_interval_bytes: u64,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    /// `cleanup.policy` holds `compact`: produced records must have a key.
    pub compact: bool,
    /// How long the cleaner keeps tombstones and empty-transaction markers once it set their
    /// delete horizon.
    pub delete_retention_ms: i64,
    /// Segments with a record younger than this are not cleaned yet.
    pub min_compaction_lag_ms: i64,
    /// A dirty segment older than this is cleaned whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// The active segment's file is zeroed this far ahead of the log's end (at most a segment's
    /// size; 0: the file grows with each append). See `prealloc`.
    pub preallocate_bytes: u64,
}

impl Default for LogConfig {
    /// Kafka 4.x defaults.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            compact: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            preallocate_bytes: 0,
        }
    }
}

impl LogConfig {
    /// How far the active segment's file is zeroed ahead: `preallocate_bytes`, at most a
    /// segment's size.
    pub fn preallocation_step(&self) -> u64 {
        self.preallocate_bytes.min(self.segment_bytes)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(StorageError::InvalidConfig(why));
        if self.segment_bytes < 14 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return fail(format!("segment.bytes {} must be in [14, {SEGMENT_BYTES_MAX}]", self.segment_bytes));
        }
        if self.segment_index_bytes < (OFFSET_INDEX_ENTRY_BYTES.max(TIME_INDEX_ENTRY_BYTES)) as u64 {
            return fail(format!("segment.index.bytes {} holds no entry", self.segment_index_bytes));
        }
        if self.segment_ms < 1 {
            return fail(format!("segment.ms {} must be positive", self.segment_ms));
        }
        if self.retention_ms < -1 || self.retention_bytes < -1 {
            return fail("retention.ms and retention.bytes must be -1 or more".into());
        }
        if self.max_message_bytes == 0 {
            return fail("max.message.bytes must be positive".into());
        }
        if self.message_timestamp_before_max_ms < 0 || self.message_timestamp_after_max_ms < 0 {
            return fail("message.timestamp.*.max.ms must not be negative".into());
        }
        if self.delete_retention_ms < 0 || self.min_compaction_lag_ms < 0 || self.max_compaction_lag_ms < 1 {
            return fail("delete.retention.ms and min.compaction.lag.ms must not be negative, max.compaction.lag.ms must be positive".into());
        }
        Ok(())
    }

    pub fn offset_index_entries_max(&self) -> usize {
        (self.segment_index_bytes as usize) / OFFSET_INDEX_ENTRY_BYTES
    }

    pub fn time_index_entries_max(&self) -> usize {
        (self.segment_index_bytes as usize) / TIME_INDEX_ENTRY_BYTES
    }
}
