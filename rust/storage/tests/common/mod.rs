//! Test helper: builds uncompressed magic-v2 batches the way a producer does, and reads a log back.
#![allow(dead_code)]

use tidelog_storage::Log;

/// Every batch of `log` from its start, as stored.
pub fn read_all(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while let Some(slice) = log.read_waiting(offset, 1 << 20, i64::MAX, true).unwrap() {
        out.extend(slice.to_vec().unwrap());
        offset = slice.last_offset + 1;
    }
    out
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// A batch of `count` records with `value_bytes`-byte values, timestamps `base_ms + i`.
pub fn batch(count: i32, value_bytes: usize, base_ms: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..count {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, i as i64); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value_bytes as i64);
        body.extend(std::iter::repeat_n((i % 251) as u8, value_bytes));
        put_varint(&mut body, 0); // no headers
        put_varint(&mut records, body.len() as i64);
        records.extend(body);
    }
    let mut out = Vec::new();
    out.extend(0i64.to_be_bytes());
    out.extend(((49 + records.len()) as i32).to_be_bytes());
    out.extend((-1i32).to_be_bytes());
    out.push(2);
    out.extend(0u32.to_be_bytes()); // crc, filled below
    out.extend(0i16.to_be_bytes());
    out.extend((count - 1).to_be_bytes());
    out.extend(base_ms.to_be_bytes());
    out.extend((base_ms + count as i64 - 1).to_be_bytes());
    out.extend((-1i64).to_be_bytes());
    out.extend((-1i16).to_be_bytes());
    out.extend((-1i32).to_be_bytes());
    out.extend(count.to_be_bytes());
    out.extend(records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `batch` stamped with a producer id, epoch and base sequence (CRC recomputed).
pub fn producer_batch(count: i32, base_ms: i64, producer_id: i64, epoch: i16, base_sequence: i32) -> Vec<u8> {
    let mut out = batch(count, 10, base_ms);
    out[43..51].copy_from_slice(&producer_id.to_be_bytes());
    out[51..53].copy_from_slice(&epoch.to_be_bytes());
    out[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A batch whose records carry `timestamps` (base: the first), its records section compressed
/// with Kafka codec `codec` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), as a producer sends it.
pub fn batch_with_timestamps(timestamps: &[i64], codec: i16) -> Vec<u8> {
    use std::io::Write;
    let base = timestamps[0];
    let mut records = Vec::new();
    for (i, &timestamp) in timestamps.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, timestamp - base);
        put_varint(&mut body, i as i64);
        put_varint(&mut body, -1);
        put_varint(&mut body, 4);
        body.extend(b"vvvv");
        put_varint(&mut body, 0);
        put_varint(&mut records, body.len() as i64);
        records.extend(body);
    }
    let compressed = match codec {
        0 => records,
        1 => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&records).unwrap();
            encoder.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(&records).unwrap(),
        3 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(&records).unwrap();
            encoder.finish().unwrap()
        }
        4 => zstd::stream::encode_all(&records[..], 3).unwrap(),
        _ => unreachable!(),
    };
    let count = timestamps.len() as i32;
    let mut out = Vec::new();
    out.extend(0i64.to_be_bytes());
    out.extend(((49 + compressed.len()) as i32).to_be_bytes());
    out.extend((-1i32).to_be_bytes());
    out.push(2);
    out.extend(0u32.to_be_bytes());
    out.extend(codec.to_be_bytes());
    out.extend((count - 1).to_be_bytes());
    out.extend(base.to_be_bytes());
    out.extend(timestamps.iter().max().unwrap().to_be_bytes());
    out.extend((-1i64).to_be_bytes());
    out.extend((-1i16).to_be_bytes());
    out.extend((-1i32).to_be_bytes());
    out.extend(count.to_be_bytes());
    out.extend(compressed);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}
