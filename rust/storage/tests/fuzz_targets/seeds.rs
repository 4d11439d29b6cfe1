//! Seed inputs for the fuzz targets, made by the real engine: batches as producers send them
//! (every codec, idempotent, transactional, control), and partition directories the engine
//! wrote (closed cleanly, crashed with unsynced indexes, rolled, with a transaction index).

use std::io::Write;
use std::path::Path;

use tidelog_storage::{AbortedTxn, Log, LogConfig};

use super::{encode_sections, recovery_configs, sections_of_dir, FileKind, Section, NOW_MS};

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn record(out: &mut Vec<u8>, i: i64, key: Option<&[u8]>, value: &[u8]) {
    let mut body = vec![0u8]; // attributes
    put_varint(&mut body, i); // timestamp delta
    put_varint(&mut body, i); // offset delta
    match key {
        Some(key) => {
            put_varint(&mut body, key.len() as i64);
            body.extend(key);
        }
        None => put_varint(&mut body, -1),
    }
    put_varint(&mut body, value.len() as i64);
    body.extend(value);
    put_varint(&mut body, 0); // no headers
    put_varint(out, body.len() as i64);
    out.extend(body);
}

fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
    match codec {
        0 => data.to_vec(),
        1 => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).expect("gzip");
            encoder.finish().expect("gzip")
        }
        2 => snap::raw::Encoder::new().compress_vec(data).expect("snappy"),
        3 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data).expect("lz4");
            encoder.finish().expect("lz4")
        }
        4 => zstd::encode_all(data, 3).expect("zstd"),
        _ => unreachable!("codec {codec}"),
    }
}

/// A whole magic-v2 batch, CRC filled in.
#[allow(clippy::too_many_arguments)]
pub fn build_batch(
    attributes: i16,
    records: &[u8],
    count: i32,
    base_ms: i64,
    max_ms: i64,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0i64.to_be_bytes());
    out.extend(((49 + records.len()) as i32).to_be_bytes());
    out.extend((-1i32).to_be_bytes());
    out.push(2);
    out.extend(0u32.to_be_bytes());
    out.extend(attributes.to_be_bytes());
    out.extend((count - 1).to_be_bytes());
    out.extend(base_ms.to_be_bytes());
    out.extend(max_ms.to_be_bytes());
    out.extend(producer_id.to_be_bytes());
    out.extend(epoch.to_be_bytes());
    out.extend(base_sequence.to_be_bytes());
    out.extend(count.to_be_bytes());
    out.extend(records);
    fix_crcs(&mut out);
    out
}

/// `count` records of `value_bytes` bytes, compressed with `codec`, timestamps from `base_ms`.
pub fn batch(count: i32, value_bytes: usize, base_ms: i64, codec: i16) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..count {
        let value = vec![(i % 251) as u8; value_bytes];
        let key = format!("k{i}");
        record(&mut records, i as i64, (i % 2 == 0).then_some(key.as_bytes()), &value);
    }
    let records = compress(codec, &records);
    build_batch(codec, &records, count, base_ms, base_ms + count as i64 - 1, -1, -1, -1)
}

pub fn producer_batch(count: i32, producer_id: i64, sequence: i32, transactional: bool) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..count {
        record(&mut records, i as i64, None, b"txn-value");
    }
    let attributes = if transactional { 0x10 } else { 0 };
    build_batch(attributes, &records, count, NOW_MS, NOW_MS + count as i64 - 1, producer_id, 3, sequence)
}

/// A transaction marker (control batch, one record): `commit` or abort.
pub fn marker(producer_id: i64, commit: bool) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend(0i16.to_be_bytes());
    key.extend((commit as i16).to_be_bytes());
    let mut value = Vec::new();
    value.extend(0i16.to_be_bytes());
    value.extend(4i32.to_be_bytes()); // coordinator epoch
    let mut records = Vec::new();
    record(&mut records, 0, Some(&key), &value);
    build_batch(0x30, &records, 1, NOW_MS, NOW_MS, producer_id, 3, -1)
}

/// Recomputes the CRC of every batch whose framing holds, from the start: mutations that keep
/// CRCs valid get past the checksum to the checks behind it.
pub fn fix_crcs(bytes: &mut [u8]) {
    let mut at = 0;
    while at + 61 <= bytes.len() {
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let Ok(length) = usize::try_from(length) else { return };
        let size = length.saturating_add(12);
        if size < 61 || at + size > bytes.len() {
            return;
        }
        let crc = crc32c::crc32c(&bytes[at + 21..at + size]);
        bytes[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at += size;
    }
}

/// Batch-target seeds: a selector byte, then one or more batches.
pub fn batch_seeds() -> Vec<Vec<u8>> {
    let mut singles = Vec::new();
    for codec in 0..5 {
        singles.push(batch(5, 20, NOW_MS - 1000, codec));
    }
    singles.push(batch(1, 0, NOW_MS, 0));
    singles.push(batch(30, 200, NOW_MS, 4));
    singles.push(producer_batch(3, 42, 0, false));
    singles.push(producer_batch(2, 43, 7, true));
    singles.push(marker(43, false)); // refused from a client
    let mut seeds = Vec::new();
    for (i, single) in singles.iter().enumerate() {
        for selector in [0u8, 1, 2, 0x10, 0x21, 0x32, 0x40] {
            if (i + selector as usize).is_multiple_of(3) || selector == 0 {
                seeds.push([&[selector][..], single].concat());
            }
        }
    }
    let several: Vec<u8> = singles[..4].concat();
    seeds.push([&[0u8][..], &several].concat());
    seeds.push([&[1u8][..], &singles[7], &singles[8]].concat());
    seeds
}

fn append(log: &mut Log, records: &[u8]) -> i64 {
    log.append(records, NOW_MS, 0).expect("seed append").last_offset
}

/// Writes a few partitions the way the engine does and returns them as recovery inputs.
pub fn recovery_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let configs = recovery_configs();
    for (which, config) in configs.iter().enumerate() {
        for shape in 0..4 {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("p");
            write_partition(&path, config.clone(), shape);
            let mut input = vec![which as u8];
            input.extend(encode_sections(&sections_of_dir(&path)));
            seeds.push(input);
        }
    }
    // A bare segment with no indexes or checkpoint, and an empty directory.
    let mut bare = vec![0u8];
    let log = [batch(3, 10, NOW_MS, 0), batch(2, 10, NOW_MS, 1)].concat();
    bare.extend(encode_sections(&[Section { kind: FileKind::Log, base_offset: 0, bytes: log }]));
    seeds.push(bare);
    seeds.push(vec![0u8]);
    seeds
}

/// Shapes: 0 closed cleanly; 1 crashed (no close: indexes unsynced, checkpoint unclean);
/// 2 rolled segments with a transaction index, closed; 3 records deleted from the start, crashed.
fn write_partition(path: &Path, config: LogConfig, shape: u32) {
    let (mut log, _) = Log::open(path, config).expect("seed log");
    for i in 0..6 {
        append(&mut log, &batch(1 + i, 30, NOW_MS + i as i64, (i % 5) as i16));
    }
    if shape == 2 {
        log.roll().expect("roll");
        let first = append(&mut log, &producer_batch(2, 9, 0, true)) - 1;
        append(&mut log, &batch(2, 10, NOW_MS, 0));
        let marker_offset = append(&mut log, &marker(9, false));
        log.append_aborted_txn(AbortedTxn {
            producer_id: 9,
            first_offset: first,
            last_offset: marker_offset,
            last_stable_offset: first,
        })
        .expect("aborted txn");
        log.roll().expect("roll");
        append(&mut log, &producer_batch(3, 11, 0, false));
    }
    if shape == 3 {
        log.roll().expect("roll");
        append(&mut log, &batch(4, 10, NOW_MS, 0));
        let end = log.log_end_offset();
        log.delete_records_before(end - 2, end).expect("delete records");
        log.checkpoint().expect("checkpoint");
    }
    if shape == 0 || shape == 2 {
        log.close().expect("close");
    } else {
        let plan = log.prepare_flush().expect("flush plan");
        let target = plan.target_offset;
        let outcome = plan.execute();
        log.complete_flush(target, outcome).expect("flush");
        append(&mut log, &batch(2, 10, NOW_MS, 0)); // unsynced tail
    }
}

/// Index-target seeds: selector, a 4-byte number, then an index file the engine wrote.
pub fn index_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for input in recovery_seeds() {
        for section in super::decode_sections(&input[1..]) {
            let (selector, number) = match section.kind {
                FileKind::OffsetIndex => (0u8, 1u32 << 20),
                FileKind::TimeIndex => (1, 0),
                FileKind::TxnIndex => (2, section.base_offset as u32),
                _ => continue,
            };
            let mut seed = vec![selector];
            seed.extend(number.to_be_bytes());
            seed.extend(&section.bytes);
            seeds.push(seed);
        }
    }
    for selector in 0..3u8 {
        seeds.push(vec![selector, 0, 0, 0, 0]);
    }
    seeds
}
