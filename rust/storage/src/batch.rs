//! The magic-v2 record batch header, read in place without decoding or decompressing records.
//!
//! Layout (big-endian), as on the wire and on disk:
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records...
//! ```
//! `baseOffset` and `partitionLeaderEpoch` sit outside the CRC so a broker can assign offsets
//! and epochs without recomputing it.

use crate::error::{Result, StorageError};
use crate::limits::{BATCH_HEADER_BYTES, BATCH_LENGTH_MIN, LOG_OVERHEAD_BYTES};

pub const MAGIC_V2: i8 = 2;
pub const CRC_START: usize = 21;
pub const NO_TIMESTAMP: i64 = -1;
pub const NO_PRODUCER_ID: i64 = -1;

const COMPRESSION_MASK: i16 = 0x07;
const COMPRESSION_ID_MAX: i16 = 4; // none, gzip, snappy, lz4, zstd

/// The codec in the low three attribute bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_id(id: i16) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;
/// KIP-534: set by the cleaner on a batch holding tombstones or a marker of an empty
/// transaction; `baseTimestamp` then carries the delete horizon (when they may go).
pub const DELETE_HORIZON_FLAG: i16 = 0x40;
/// Control record types, in the key of a control record (version i16, type i16).
pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

pub(crate) fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
pub(crate) fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The fixed fields of one batch. Plain values: it borrows nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field; the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads a header from at least `BATCH_HEADER_BYTES` bytes. Checks nothing.
    pub fn read(buf: &[u8]) -> BatchHeader {
        assert!(buf.len() >= BATCH_HEADER_BYTES);
        BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_u32(buf, 17),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression_id(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }
    /// The delete horizon the cleaner set (KIP-534), if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_FLAG != 0).then_some(self.base_timestamp)
    }
}

/// Checks a header against the bytes available for its batch: a sane `batchLength`, magic 2,
/// and a batch that fits in `available_bytes`.
pub fn check_header(header: &BatchHeader, available_bytes: u64) -> Result<()> {
    if header.batch_length < BATCH_LENGTH_MIN {
        return Err(StorageError::CorruptRecord(format!(
            "batchLength {} is below the minimum {BATCH_LENGTH_MIN}",
            header.batch_length
        )));
    }
    if header.magic != MAGIC_V2 {
        return Err(StorageError::UnsupportedMagic(header.magic));
    }
    if header.size_bytes() as u64 > available_bytes {
        return Err(StorageError::CorruptRecord(format!(
            "batch claims {} bytes but only {available_bytes} remain",
            header.size_bytes()
        )));
    }
    Ok(())
}

/// Reads and checks the header of the batch at the start of `buf` (see `check_header`).
pub fn check_framing(buf: &[u8]) -> Result<BatchHeader> {
    if buf.len() < BATCH_HEADER_BYTES {
        return Err(StorageError::CorruptRecord(format!(
            "{} bytes left, a batch header needs {BATCH_HEADER_BYTES}",
            buf.len()
        )));
    }
    let header = BatchHeader::read(buf);
    check_header(&header, buf.len() as u64)?;
    Ok(header)
}

/// CRC-32C over attributes..end of one whole batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

pub fn check_crc(header: &BatchHeader, computed: u32) -> Result<()> {
    if computed != header.crc {
        return Err(StorageError::CorruptRecord(format!(
            "CRC-32C mismatch: stored {:#010x}, computed {computed:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// The rules Kafka's LogValidator applies to the fields of a magic-v2 batch.
pub fn check_contents(header: &BatchHeader) -> Result<()> {
    if header.record_count <= 0 {
        return Err(StorageError::InvalidRecord(format!("record count {} must be positive", header.record_count)));
    }
    if header.last_offset_delta < 0 || header.last_offset_delta as i64 + 1 != header.record_count as i64 {
        return Err(StorageError::InvalidRecord(format!(
            "lastOffsetDelta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    if header.compression_id() > COMPRESSION_ID_MAX {
        return Err(StorageError::InvalidRecord(format!("unknown compression id {}", header.compression_id())));
    }
    Ok(())
}

/// `check_contents` for a batch already in the log: the cleaner keeps a batch's offsets when it
/// removes records (Kafka's `overrideLastOffset`), so fewer records than offsets, or none (the
/// last batch of a producer, kept for its sequence numbers), are legal there.
pub fn check_stored_contents(header: &BatchHeader) -> Result<()> {
    if header.record_count < 0
        || header.last_offset_delta < 0
        || header.record_count as i64 > header.last_offset_delta as i64 + 1
    {
        return Err(StorageError::InvalidRecord(format!(
            "record count {} does not fit lastOffsetDelta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    if header.compression_id() > COMPRESSION_ID_MAX {
        return Err(StorageError::InvalidRecord(format!("unknown compression id {}", header.compression_id())));
    }
    Ok(())
}

/// Full check of one whole batch (`batch` is exactly the batch): CRC, then contents.
pub fn validate(batch: &[u8], header: &BatchHeader) -> Result<()> {
    debug_assert_eq!(batch.len(), header.size_bytes());
    check_crc(header, compute_crc(batch))?;
    check_contents(header)
}

/// Bounds on record timestamps for CreateTime topics (Kafka's `message.timestamp.*.max.ms`).
/// Only the batch's base and max timestamps are checked: the records stay undecoded.
pub fn validate_timestamps(header: &BatchHeader, now_ms: i64, before_max_ms: i64, after_max_ms: i64) -> Result<()> {
    if header.max_timestamp < header.base_timestamp {
        return Err(StorageError::InvalidTimestamp(format!(
            "maxTimestamp {} is below baseTimestamp {}",
            header.max_timestamp, header.base_timestamp
        )));
    }
    if header.base_timestamp < NO_TIMESTAMP {
        return Err(StorageError::InvalidTimestamp(format!("negative timestamp {}", header.base_timestamp)));
    }
    if header.max_timestamp > now_ms.saturating_add(after_max_ms) {
        return Err(StorageError::InvalidTimestamp(format!(
            "timestamp {} is more than message.timestamp.after.max.ms {after_max_ms} ahead of the broker clock {now_ms}",
            header.max_timestamp
        )));
    }
    if header.base_timestamp != NO_TIMESTAMP && header.base_timestamp < now_ms.saturating_sub(before_max_ms) {
        return Err(StorageError::InvalidTimestamp(format!(
            "timestamp {} is more than message.timestamp.before.max.ms {before_max_ms} behind the broker clock {now_ms}",
            header.base_timestamp
        )));
    }
    Ok(())
}

/// A copy of the first `BATCH_HEADER_BYTES` with LogAppendTime stamped in and the CRC fixed up,
/// given the CRC of the records that follow the header (unchanged, so never copied).
pub fn stamp_log_append_time(header_bytes: &[u8], records: &[u8], now_ms: i64) -> [u8; BATCH_HEADER_BYTES] {
    let mut out = [0u8; BATCH_HEADER_BYTES];
    out.copy_from_slice(&header_bytes[..BATCH_HEADER_BYTES]);
    let attributes = be_i16(&out, 21) | TIMESTAMP_TYPE_LOG_APPEND;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[CRC_START..]), records);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads a zigzag varint (Kafka's record fields) at `*at`, advancing it.
pub(crate) fn read_varlong(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// The first record of a batch (its records section, uncompressed) that `wanted(offset,
/// timestamp)` accepts, as (offset, timestamp). In a LogAppendTime batch every record carries the
/// batch's max timestamp. `None` if no record qualifies or the records do not parse.
pub fn first_record_where(
    header: &BatchHeader,
    records: &[u8],
    wanted: impl Fn(i64, i64) -> bool,
) -> Option<(i64, i64)> {
    let mut at = 0;
    for _ in 0..header.record_count {
        let length = read_varlong(records, &mut at)?;
        let record_start = at;
        at += 1; // attributes
        let timestamp_delta = read_varlong(records, &mut at)?;
        let offset_delta = read_varlong(records, &mut at)?;
        let timestamp =
            if header.is_log_append_time() { header.max_timestamp } else { header.base_timestamp + timestamp_delta };
        let offset = header.base_offset + offset_delta;
        if wanted(offset, timestamp) {
            return Some((offset, timestamp));
        }
        at = record_start.checked_add(usize::try_from(length).ok()?)?;
        if at > records.len() {
            return None;
        }
    }
    None
}
