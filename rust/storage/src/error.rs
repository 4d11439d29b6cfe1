//! Typed errors of the storage engine. The server maps each to a Kafka error code; the
//! engine itself never speaks in error codes.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Bytes that are not a well-formed batch: bad CRC, truncated, impossible lengths.
    /// Kafka: CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// A well-formed batch whose contents break a rule (record count, compression id).
    /// Kafka: INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A record without a key produced into a compacted topic (Kafka's `validateKey`): record
    /// `record` of the batch. Kafka: INVALID_RECORD, with a record error for that record.
    #[error("Compacted topic cannot accept message without key")]
    RecordWithoutKey { record: usize },
    /// A batch in a message format other than magic v2. Kafka: UNSUPPORTED_FOR_MESSAGE_FORMAT.
    #[error("unsupported record batch magic {0}; only magic 2 is accepted")]
    UnsupportedMagic(i8),
    /// A timestamp outside `message.timestamp.before/after.max.ms`. Kafka: INVALID_TIMESTAMP.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// One batch larger than `max.message.bytes`. Kafka: MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: usize },
    /// One append larger than a segment can hold. Kafka: RECORD_LIST_TOO_LARGE.
    #[error("append of {size} bytes exceeds segment.bytes {max}")]
    RecordListTooLarge { size: usize, max: usize },
    /// Kafka: OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} is outside [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    /// Recovery found damage in data that may have been acknowledged; the log refuses to open
    /// rather than silently drop it. Kafka: KAFKA_STORAGE_ERROR.
    #[error("corrupt log {path}: {detail}")]
    CorruptLog { path: String, detail: String },
    /// A batch that failed its check when it was first read after the open (see `verify`): it
    /// is never served. Kafka: KAFKA_STORAGE_ERROR.
    #[error(
        "corrupt batch in {path} at position {position} (offsets {first_offset}..={last_offset}): {reason}; \
         see `tidelog recover` in docs/operations.md"
    )]
    CorruptBatch { path: String, position: u64, first_offset: i64, last_offset: i64, reason: String },
    /// The read reaches bytes of segment `base_offset` that its verification pass has not
    /// checked yet (the pass was started): wait for the pass to pass `position`, then read again.
    #[error("the read needs segment {base_offset} verified past byte {position}; its verification pass has not got there yet")]
    Unverified { base_offset: i64, position: u64 },
    /// An aborted-transaction index entry the log cannot take: last offsets that do not
    /// strictly increase, or a marker offset outside the log. A broker bug, not client input.
    #[error("invalid aborted transaction: {0}")]
    InvalidAbortedTxn(String),
    /// A bad configuration value.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    /// The log was closed. Kafka: KAFKA_STORAGE_ERROR or NOT_LEADER_OR_FOLLOWER, by context.
    #[error("log is closed")]
    Closed,
    /// Kafka: KAFKA_STORAGE_ERROR.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, StorageError>;
