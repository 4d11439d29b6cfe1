//! The records inside a magic-v2 batch, for the cleaner: walk them, keep some, write the batch
//! again (Kafka's `MemoryRecords.filterTo` and `MemoryRecordsBuilder` for one batch), and the
//! key check Kafka applies to a produce into a compacted topic.
//!
//! A record: `length` varint, `attributes` i8, `timestampDelta` varlong, `offsetDelta` varint,
//! `keyLength` varint and key (-1: none), `valueLength` varint and value (-1: a tombstone),
//! `headers` count varint and headers. Deltas are relative to the batch's base offset and base
//! timestamp; a rewritten batch keeps its base offset, so only the timestamp delta is redone.

use std::borrow::Cow;

use crate::batch::{self, BatchHeader, DELETE_HORIZON_FLAG, NO_TIMESTAMP};
use crate::codec;
use crate::error::{Result, StorageError};
use crate::limits::{BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

/// One record of a batch, borrowed from its (uncompressed) records section.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// A tombstone: no value.
    pub value_is_null: bool,
    /// From the key length to the record's end: copied as is when the batch is written again.
    pub tail: &'a [u8],
}

impl Record<'_> {
    pub fn offset(&self, header: &BatchHeader) -> i64 {
        header.base_offset + self.offset_delta as i64
    }
    pub fn timestamp(&self, header: &BatchHeader) -> i64 {
        header.base_timestamp + self.timestamp_delta
    }
}

fn corrupt(detail: &str) -> StorageError {
    StorageError::CorruptRecord(format!("records do not parse: {detail}"))
}

fn varint(buf: &[u8], at: &mut usize, what: &str) -> Result<i64> {
    batch::read_varlong(buf, at).ok_or_else(|| corrupt(what))
}

/// A byte string with a varint length (-1: null) at `*at`, advancing past it.
fn bytes_field<'a>(buf: &'a [u8], at: &mut usize, what: &str) -> Result<Option<&'a [u8]>> {
    let length = varint(buf, at, what)?;
    if length < 0 {
        return Ok(None);
    }
    let end = at.checked_add(length as usize).filter(|&end| end <= buf.len()).ok_or_else(|| corrupt(what))?;
    let field = &buf[*at..end];
    *at = end;
    Ok(Some(field))
}

/// Every record of the batch, given its records section as `records_of` returns it.
pub fn parse<'a>(header: &BatchHeader, records: &'a [u8]) -> Result<Vec<Record<'a>>> {
    let mut out = Vec::with_capacity(header.record_count.max(0) as usize);
    let mut at = 0;
    for _ in 0..header.record_count {
        let length = varint(records, &mut at, "record length")?;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&end| end <= records.len())
            .ok_or_else(|| corrupt("record length"))?;
        let body = &records[..end];
        let attributes = *body.get(at).ok_or_else(|| corrupt("record attributes"))?;
        at += 1;
        let timestamp_delta = varint(body, &mut at, "timestamp delta")?;
        let offset_delta =
            i32::try_from(varint(body, &mut at, "offset delta")?).map_err(|_| corrupt("offset delta"))?;
        let tail_start = at;
        let key = bytes_field(body, &mut at, "key")?;
        let value = bytes_field(body, &mut at, "value")?;
        out.push(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value_is_null: value.is_none(),
            tail: &records[tail_start..end],
        });
        at = end;
    }
    Ok(out)
}

/// Kafka's check for a produce into a compacted topic (`LogValidator.validateKey`): the index of
/// the first record without a key, if any. Compressed batches are decompressed for it.
pub fn first_record_without_key(header: &BatchHeader, batch: &[u8]) -> Result<Option<usize>> {
    if header.is_control() {
        return Ok(None);
    }
    let records = codec::records_of(header, batch)?;
    Ok(parse(header, &records)?.iter().position(|r| r.key.is_none()))
}

pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// The fixed header of a batch, CRC left zero (see `finish_crc`).
fn write_header(out: &mut Vec<u8>, header: &BatchHeader, batch_length: usize) {
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&(batch_length as i32).to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(header.magic as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.record_count.to_be_bytes());
}

fn finish_crc(batch: &mut [u8]) {
    let crc = batch::compute_crc(batch);
    batch[batch::CRC_START - 4..batch::CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// Kafka's `writeEmptyHeader`: a batch of no records that keeps `header`'s offsets, producer
/// fields and flags (the last batch of a producer, whose sequence numbers must survive).
pub fn empty_batch(header: &BatchHeader, out: &mut Vec<u8>) -> BatchHeader {
    let empty = BatchHeader {
        batch_length: (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32,
        attributes: header.attributes & !(DELETE_HORIZON_FLAG | 0x07),
        base_timestamp: NO_TIMESTAMP,
        record_count: 0,
        ..*header
    };
    let start = out.len();
    write_header(out, &empty, BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES);
    finish_crc(&mut out[start..]);
    BatchHeader::read(&out[start..])
}

/// Writes `header`'s batch again with only `kept` of its records: same base and last offset
/// (so its sequence numbers stay), codec, flags and producer fields. The base timestamp is
/// `delete_horizon_ms` when given (KIP-534: the flag is set), else the first kept record's; the
/// max timestamp is the kept records' (LogAppendTime batches keep theirs).
pub fn rebuild_batch(
    header: &BatchHeader,
    kept: &[Record<'_>],
    delete_horizon_ms: Option<i64>,
    out: &mut Vec<u8>,
) -> Result<BatchHeader> {
    assert!(!kept.is_empty(), "a batch with no records left is written by empty_batch");
    let base_timestamp = delete_horizon_ms.unwrap_or_else(|| kept[0].timestamp(header));
    let mut records = Vec::new();
    let mut max_timestamp = NO_TIMESTAMP;
    let mut prefix = Vec::with_capacity(24);
    for record in kept {
        let timestamp = record.timestamp(header);
        max_timestamp = max_timestamp.max(timestamp);
        prefix.clear();
        prefix.push(record.attributes);
        write_varlong(&mut prefix, timestamp - base_timestamp);
        write_varlong(&mut prefix, record.offset_delta as i64);
        write_varlong(&mut records, (prefix.len() + record.tail.len()) as i64);
        records.extend_from_slice(&prefix);
        records.extend_from_slice(record.tail);
    }
    let body: Cow<'_, [u8]> = codec::compress(header.compression_id(), &records)?;
    let mut attributes = header.attributes & !DELETE_HORIZON_FLAG;
    if delete_horizon_ms.is_some() {
        attributes |= DELETE_HORIZON_FLAG;
    }
    let rebuilt = BatchHeader {
        attributes,
        base_timestamp,
        max_timestamp: if header.is_log_append_time() { header.max_timestamp } else { max_timestamp },
        record_count: kept.len() as i32,
        ..*header
    };
    let start = out.len();
    let batch_length = BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len();
    write_header(out, &rebuilt, batch_length);
    out.extend_from_slice(&body);
    finish_crc(&mut out[start..]);
    Ok(BatchHeader::read(&out[start..]))
}

/// The control record type (ABORT, COMMIT) of a control batch's first record, if it has one.
pub fn control_type(header: &BatchHeader, records: &[u8]) -> Result<Option<i16>> {
    let parsed = parse(header, records)?;
    let Some(first) = parsed.first() else { return Ok(None) };
    match first.key {
        Some(key) if key.len() >= 4 => Ok(Some(i16::from_be_bytes([key[2], key[3]]))),
        _ => Err(corrupt("control record key")),
    }
}
