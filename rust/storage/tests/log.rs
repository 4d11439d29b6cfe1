mod common;

use std::fs;
use std::sync::Arc;

use common::{batch, batch_with_timestamps, now_ms, read_all};
use tidelog_storage::{Log, LogConfig, SharedLog, StorageError, TimestampType};

fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() }
}

#[test]
fn append_assigns_offsets_and_reads_back_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(!report.clean_shutdown);
    let t = now_ms();
    let first = log.append(&batch(3, 10, t), t, 0).unwrap();
    let second = log.append(&batch(2, 10, t), t, 0).unwrap();
    assert_eq!((first.first_offset, first.last_offset), (0, 2));
    assert_eq!((second.first_offset, second.last_offset), (3, 4));
    let slice = log.read(3, 1 << 20, i64::MAX, true).unwrap().unwrap();
    let bytes = slice.to_vec().unwrap();
    assert_eq!(i64::from_be_bytes(bytes[0..8].try_into().unwrap()), 3);
    assert_eq!(i32::from_be_bytes(bytes[12..16].try_into().unwrap()), 0, "leader epoch stamped");
    assert_eq!(&bytes[16..], &batch(2, 10, t)[16..]);
    assert!(log.read(5, 1 << 20, i64::MAX, true).unwrap().is_none());
    assert!(matches!(log.read(6, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    assert!(log.read(0, 1 << 20, 3, true).unwrap().unwrap().last_offset == 2, "upper bound stops the read");
}

#[test]
fn bad_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    let t = now_ms();
    let good = batch(2, 10, t);
    let mut bad_crc = good.clone();
    bad_crc[70] ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    let mut negative = good.clone();
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    let mut huge = good.clone();
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let mut two = good.clone();
    two.extend(&bad_crc);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 1].to_vec()),
        ("crc", bad_crc),
        ("magic", bad_magic),
        ("negative length", negative),
        ("huge length", huge),
        ("second batch bad", two),
        ("empty", vec![]),
    ];
    for (name, bytes) in cases {
        assert!(log.append(&bytes, t, 0).is_err(), "{name} accepted");
    }
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    let future = batch(1, 10, t + 2 * 3_600_000);
    assert!(matches!(log.append(&future, t, 0), Err(StorageError::InvalidTimestamp(_))));
}

#[test]
fn rolls_segments_and_writes_kafka_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_config()).unwrap();
    let t = now_ms();
    let one = batch(4, 1000, t); // ~4 KiB batches
    for _ in 0..40 {
        log.append(&one, t, 0).unwrap();
    }
    assert!(log.segment_count() > 2, "64 KiB segments roll");
    log.close().unwrap();
    let index = fs::read(dir.path().join("00000000000000000000.index")).unwrap();
    assert!(!index.is_empty() && index.len().is_multiple_of(8));
    // First entry: Kafka indexes once more than 4096 bytes were appended since the last entry.
    let relative = u32::from_be_bytes(index[0..4].try_into().unwrap());
    let position = u32::from_be_bytes(index[4..8].try_into().unwrap()) as usize;
    assert_eq!(position, one.len(), "the second batch follows more than 4096 bytes");
    assert_eq!(relative, 7, "entry names the last offset of the batch at that position");
    let (reopened, report) = Log::open(dir.path(), small_config()).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(reopened.log_end_offset(), 160);
    assert_eq!(read_all(&reopened).len(), 40 * one.len());
}

#[test]
fn torn_tail_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(3, 100, t);
    {
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..10 {
            log.append(&one, t, 0).unwrap();
        }
    } // dropped without close: a crash
    let path = dir.path().join("00000000000000000000.log");
    let cut = one.len() * 7 + 30;
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut as u64).unwrap();
    let (mut log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(report.bytes_truncated, 30);
    assert_eq!(log.log_end_offset(), 21);
    assert_eq!(log.append(&one, t, 0).unwrap().first_offset, 21);
}

#[test]
fn flipped_bit_in_the_middle_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(3, 100, t);
    {
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..10 {
            log.append(&one, t, 0).unwrap();
        }
    }
    let path = dir.path().join("00000000000000000000.log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[one.len() * 4 + 80] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let error = Log::open(dir.path(), LogConfig::default()).err().expect("corruption detected");
    assert!(matches!(error, StorageError::CorruptLog { .. }), "{error}");
}

#[test]
fn retention_and_delete_records_move_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_bytes: 100 * 1024, ..small_config() };
    let (mut log, _) = Log::open(dir.path(), config).unwrap();
    let t = now_ms();
    for _ in 0..100 {
        log.append(&batch(4, 1000, t), t, 0).unwrap();
    }
    let before = log.size_bytes();
    let report = log.delete_old_segments(t, log.log_end_offset()).unwrap();
    assert!(report.segments_deleted > 0);
    assert!(log.size_bytes() < before && log.size_bytes() >= 100 * 1024);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets_loaded()[0]);
    let start = log.delete_records_before(log.log_start_offset() + 50, log.log_end_offset()).unwrap();
    assert!(matches!(log.read(start - 1, 10, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    let slice = log.read(start, 10, i64::MAX, true).unwrap().unwrap();
    assert!(slice.first_offset <= start && start <= slice.last_offset);
    log.close().unwrap();
    let (reopened, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(reopened.log_start_offset(), start);
}

#[test]
fn retention_by_time_rolls_and_deletes_an_expired_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: 1000, ..LogConfig::default() };
    let (mut log, _) = Log::open(dir.path(), config).unwrap();
    let t = now_ms();
    log.append(&batch(5, 10, t - 5000), t, 0).unwrap();
    log.delete_old_segments(t, log.log_end_offset()).unwrap();
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    let t = now_ms() - 100_000;
    for i in 0..50 {
        log.append(&batch(10, 500, t + i * 100), t + 100_000, 0).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(t + 1234).unwrap(), Some((130, t + 1300)), "batch 12 ends at t+1209");
    let (offset, timestamp) = log.offset_for_timestamp(t + 1205).unwrap().unwrap();
    assert_eq!((offset, timestamp), (125, t + 1205));
    assert_eq!(log.offset_for_timestamp(t + 10_000).unwrap(), None);
    assert_eq!(log.max_timestamp_and_offset().unwrap(), Some((t + 4909, 499)));
}

#[test]
fn max_timestamp_is_the_record_that_carries_it_not_its_batch_end() {
    // Kafka 4.4 answers ListOffsets MAX_TIMESTAMP with the record (offset 1 here), not the batch's last offset.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    let t = now_ms() - 10_000;
    log.append(&batch_with_timestamps(&[t + 100, t + 400, t + 200], 0), t, 0).unwrap();
    log.append(&batch_with_timestamps(&[t + 50, t + 400, t + 300], 0), t, 0).unwrap();
    assert_eq!(log.max_timestamp_and_offset().unwrap(), Some((t + 400, 1)), "the first batch reaching it");
}

#[test]
fn timestamp_lookups_decompress_every_codec() {
    for codec in 0..=4i16 {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let t = now_ms() - 10_000;
        log.append(&batch_with_timestamps(&[t, t + 10, t + 20, t + 30], codec), t, 0).unwrap();
        log.append(&batch_with_timestamps(&[t + 40, t + 90, t + 60], codec), t, 0).unwrap();
        assert_eq!(log.offset_for_timestamp(t + 15).unwrap(), Some((2, t + 20)), "codec {codec}");
        assert_eq!(log.offset_for_timestamp(t + 61).unwrap(), Some((5, t + 90)), "codec {codec}");
        assert_eq!(log.max_timestamp_and_offset().unwrap(), Some((t + 90, 5)), "codec {codec}");
        assert_eq!(log.offset_for_timestamp(t + 91).unwrap(), None);
    }
}

#[test]
fn a_damaged_compressed_batch_is_an_error_not_a_panic() {
    let batch = batch_with_timestamps(&[1, 2, 3], 4);
    let header = tidelog_storage::BatchHeader::read(&batch);
    let mut records = batch[61..].to_vec();
    records.truncate(records.len() / 2);
    assert!(tidelog_storage::codec::decompress(header.compression_id(), &records).is_err());
    assert!(tidelog_storage::codec::decompress(
        2,
        b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x09abc"
    )
    .is_err());
}

#[test]
fn log_append_time_restamps_the_batch_with_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { message_timestamp_type: TimestampType::LogAppendTime, ..LogConfig::default() };
    let (mut log, _) = Log::open(dir.path(), config).unwrap();
    let info = log.append(&batch(3, 10, 1), 777_000, 0).unwrap();
    assert_eq!(info.log_append_time_ms, 777_000);
    let bytes = log.read(0, 1 << 20, i64::MAX, true).unwrap().unwrap().to_vec().unwrap();
    let header = tidelog_storage::BatchHeader::read(&bytes);
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, 777_000);
    tidelog_storage::batch::validate(&bytes, &header).unwrap();
}

#[test]
fn group_commit_covers_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, _) = SharedLog::open(dir.path(), LogConfig::default()).unwrap();
    let shared = Arc::new(shared);
    let t = now_ms();
    let writer = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            for _ in 0..500 {
                shared.lock().append(&batch(2, 100, t), t, 0).unwrap();
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let durable = shared.flush().unwrap();
        assert!(durable >= last);
        last = durable;
    }
    writer.join().unwrap();
    assert_eq!(shared.flush().unwrap(), 1000);
    assert_eq!(shared.lock().recovery_point(), 1000);
}

#[test]
fn rolls_on_segment_ms_and_on_a_full_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: 1000, ..LogConfig::default() };
    let (mut log, _) = Log::open(dir.path(), config).unwrap();
    let t = now_ms();
    let old = t - 3_600_000; // old timestamps alone never roll: Kafka measures batch to batch
    log.append(&batch(1, 10, old), t, 0).unwrap();
    log.append(&batch(1, 10, old + 500), t + 5000, 0).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(1, 10, old + 1500), t + 5000, 0).unwrap();
    assert_eq!(log.segment_count(), 2, "segment.ms passed between the first batch and this one");

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_index_bytes: 24, index_interval_bytes: 1, ..LogConfig::default() };
    let (mut log, _) = Log::open(dir.path(), config).unwrap();
    for _ in 0..10 {
        log.append(&batch(1, 10, t), t, 0).unwrap();
    }
    // Two time-index entries (12 bytes each) fill 24 bytes: every third batch starts a segment.
    assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
    log.close().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "timeindex") {
            assert!(fs::metadata(&path).unwrap().len() <= 24 + 12, "{path:?} overfull");
        }
    }
}

#[test]
fn a_read_fills_max_bytes_with_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    let t = now_ms();
    let one = batch(4, 300, t);
    for _ in 0..30 {
        log.append(&one, t, 0).unwrap();
    }
    let size = one.len() as u64;
    let end = log.log_end_offset();
    assert_eq!(log.read(0, 1 << 20, end, true).unwrap().unwrap().size, 30 * size, "everything fits");
    assert_eq!(log.read(0, 7 * size + 10, end, true).unwrap().unwrap().size, 7 * size);
    assert_eq!(log.read(8, 5 * size, end, true).unwrap().unwrap().size, 5 * size);
    let bounded = log.read(0, 1 << 20, 24, true).unwrap().unwrap();
    assert_eq!((bounded.size, bounded.last_offset), (6 * size, 23), "stops before the upper bound");
    assert_eq!(log.read(0, 10, end, true).unwrap().unwrap().size, size, "one whole batch at least");
}

#[test]
fn producer_batches_replays_producer_headers_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig { segment_bytes: 2048, ..LogConfig::default() }).unwrap();
    let t = now_ms();
    let mut rolls = 0;
    for i in 0..30i32 {
        let records = if i % 3 == 0 { batch(2, 10, t) } else { common::producer_batch(2, t, 7 + i as i64 % 2, 0, i) };
        rolls += log.append(&records, t, 0).unwrap().rolled as usize;
    }
    assert!(rolls > 0 && rolls == log.segment_count() - 1, "every roll is reported once");
    let (mut seen, mut next) = (Vec::new(), 5);
    loop {
        let (headers, after) = log.producer_batches(next, 4).unwrap();
        seen.extend(headers);
        if after == next {
            break;
        }
        next = after;
    }
    assert_eq!(next, log.log_end_offset());
    // The batch holding offset 5 starts at 4; plain batches (every third) are left out.
    let sequences: Vec<i32> = seen.iter().map(|h| h.base_sequence).collect();
    assert_eq!(sequences, (2..30).filter(|i| i % 3 != 0).collect::<Vec<_>>());
    assert!(seen.iter().all(|h| h.producer_id == 7 + (h.base_sequence as i64) % 2));
    assert_eq!(log.producer_batches(log.log_end_offset(), 4).unwrap().0.len(), 0);
}

#[test]
fn a_flipped_bit_in_a_trusted_segment_is_refused_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(3, 100, t);
    {
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..10 {
            log.append(&one, t, 0).unwrap();
        }
        log.close().unwrap();
    }
    let path = dir.path().join("00000000000000000000.log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[4 * one.len() + 70] ^= 0x01; // inside the fifth batch's records
    fs::write(&path, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(report.clean_shutdown && report.segments_scanned == 0, "trusted, not scanned");
    assert!(matches!(log.read(0, 1 << 20, i64::MAX, true), Err(StorageError::Unverified { .. })));
    let before = log.read_waiting(0, 1 << 20, i64::MAX, true).unwrap().unwrap();
    assert_eq!((before.first_offset, before.last_offset, before.size), (0, 11, 4 * one.len() as u64));
    let refused = log.read_waiting(12, 1 << 20, i64::MAX, true);
    assert!(
        matches!(refused, Err(StorageError::CorruptBatch { first_offset: 12, last_offset: 14, .. })),
        "{refused:?}"
    );
    let after = log.read_waiting(15, 1 << 20, i64::MAX, true).unwrap().unwrap();
    assert_eq!((after.first_offset, after.size), (15, 5 * one.len() as u64));
    assert_eq!(log.take_damage().len(), 1);
    assert!(log.take_damage().is_empty(), "each damage is reported once");
}
