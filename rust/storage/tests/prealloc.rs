//! Pre-zeroed segments (`LogConfig::preallocate_bytes`): the active segment's file is zeroed
//! ahead of the log's end in the background; rolled and closed segments are cut back to their
//! size; recovery takes a zero tail as the log's end, and damage inside it as before.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{batch, now_ms, read_all};
use tidelog_storage::{Log, LogConfig, StorageError};

const STEP: u64 = 256 * 1024;
const WAIT: Duration = Duration::from_secs(10);

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, preallocate_bytes: STEP, ..LogConfig::default() }
}

fn file_len(dir: &Path, base: i64) -> u64 {
    fs::metadata(dir.join(format!("{base:020}.log"))).unwrap().len()
}

/// Waits until the background writer has zeroed the active segment `base` past `size`.
fn wait_zeroed(dir: &Path, base: i64, size: u64) {
    let started = Instant::now();
    while file_len(dir, base) <= size {
        assert!(started.elapsed() < WAIT, "no zeros written ahead of {size}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ten appends of `one` (flushed when `flush`), zeros written ahead, then the log dropped without
/// a close, as in a crash. Returns what the log held.
fn crash_with_zero_tail(dir: &Path, one: &[u8], flush: bool) -> Vec<u8> {
    let t = now_ms();
    let (mut log, _) = Log::open(dir, config()).unwrap();
    for _ in 0..10 {
        log.append(one, t, 0).unwrap();
    }
    if flush {
        let plan = log.prepare_flush().unwrap();
        let target = plan.target_offset;
        log.complete_flush(target, plan.execute()).unwrap();
    }
    wait_zeroed(dir, 0, log.size_bytes());
    read_all(&log)
}

#[test]
fn the_active_segment_is_zeroed_ahead_and_cut_back_at_roll_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(4, 1000, t);
    let (mut log, _) = Log::open(dir.path(), config()).unwrap();
    log.append(&one, t, 0).unwrap();
    wait_zeroed(dir.path(), 0, log.size_bytes());
    assert!(file_len(dir.path(), 0) >= one.len() as u64 + STEP / 2);
    let bytes = fs::read(dir.path().join(format!("{:020}.log", 0))).unwrap();
    assert!(bytes[one.len()..].iter().all(|&b| b == 0), "only zeros past the log's end");
    while log.segment_count() < 3 {
        log.append(&one, t, 0).unwrap();
    }
    let bases = log.segment_base_offsets_loaded();
    let sealed_size: u64 = (bases[1] - bases[0]) as u64 / 4 * one.len() as u64;
    assert_eq!(file_len(dir.path(), bases[0]), sealed_size, "a rolled segment is exactly its batches");
    let end = log.log_end_offset();
    let written = read_all(&log);
    log.close().unwrap();
    let active = *bases.last().unwrap();
    let active_size = (end - active) as u64 / 4 * one.len() as u64;
    assert_eq!(file_len(dir.path(), active), active_size, "a closed segment is exactly its batches");
    let (reopened, report) = Log::open(dir.path(), config()).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!((report.segments_scanned, report.bytes_truncated), (0, 0));
    assert_eq!(reopened.log_end_offset(), end);
    assert_eq!(read_all(&reopened), written);
}

#[test]
fn a_crash_leaves_a_zero_tail_that_recovery_takes_as_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(3, 100, t);
    let written = crash_with_zero_tail(dir.path(), &one, false); // the zeros are on disk
    assert!(file_len(dir.path(), 0) > written.len() as u64);
    let (mut log, report) = Log::open(dir.path(), config()).unwrap();
    assert_eq!(report.segments_scanned, 1);
    assert_eq!(report.bytes_truncated, 0, "zeros written ahead are not a torn tail");
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(read_all(&log), written);
    assert_eq!(log.append(&one, t, 0).unwrap().first_offset, 30);
    assert_eq!(read_all(&log).len(), written.len() + one.len());
}

#[test]
fn a_torn_write_inside_the_zero_tail_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(3, 100, t);
    crash_with_zero_tail(dir.path(), &one, false);
    // The 11th batch's first 30 bytes reached the disk, inside the zeros.
    let path = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&path).unwrap();
    let at = one.len() * 10;
    bytes[at..at + 30].copy_from_slice(&one[..30]);
    fs::write(&path, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), config()).unwrap();
    assert_eq!(report.bytes_truncated, (bytes.len() - at) as u64, "cut at the last whole batch");
    assert_eq!(log.log_end_offset(), 30);
}

#[test]
fn a_flipped_bit_before_the_zero_tail_is_still_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(3, 100, t);
    crash_with_zero_tail(dir.path(), &one, true);
    let path = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&path).unwrap();
    bytes[one.len() * 4 + 80] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let error = Log::open(dir.path(), config()).err().expect("corruption detected");
    assert!(matches!(error, StorageError::CorruptLog { .. }), "{error}");
}

#[test]
fn a_sealed_segment_whose_cut_was_lost_keeps_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let one = batch(4, 1000, t);
    let (mut log, _) = Log::open(dir.path(), config()).unwrap();
    while log.segment_count() < 2 {
        log.append(&one, t, 0).unwrap();
    }
    let end = log.log_end_offset();
    let written = read_all(&log);
    log.close().unwrap();
    // As if the roll's cut never reached the disk: the sealed segment still holds its zeros.
    let path = dir.path().join(format!("{:020}.log", 0));
    let size = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(size + STEP).unwrap();
    let (reopened, report) = Log::open(dir.path(), config()).unwrap();
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(reopened.log_end_offset(), end);
    assert_eq!(read_all(&reopened), written);
    assert_eq!(fs::metadata(&path).unwrap().len(), size);
}

#[test]
fn without_preallocation_the_file_is_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let (mut log, _) = Log::open(dir.path(), LogConfig { preallocate_bytes: 0, ..config() }).unwrap();
    log.append(&batch(3, 100, t), t, 0).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(file_len(dir.path(), 0), log.size_bytes());
}

#[test]
fn appends_racing_the_zero_writer_keep_every_byte() {
    // A small step: the writer zeroes ahead every few appends, while they go on.
    let config = LogConfig { segment_bytes: 1 << 20, preallocate_bytes: 8 * 1024, ..LogConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let mut expected = Vec::new();
    {
        let (mut log, _) = Log::open(dir.path(), config.clone()).unwrap();
        for i in 0..3000 {
            let one = batch(1 + i % 3, 50 + (i as usize * 37) % 400, t);
            let appended = log.append(&one, t, 0).unwrap();
            expected.push((appended.first_offset, one.len()));
        }
        let all = read_all(&log);
        assert_eq!(all.len(), expected.iter().map(|(_, n)| n).sum::<usize>());
    } // a crash, zero writes perhaps still queued
    let (log, report) = Log::open(dir.path(), config).unwrap();
    assert_eq!(report.bytes_truncated, 0);
    let all = read_all(&log);
    assert_eq!(all.len(), expected.iter().map(|(_, n)| n).sum::<usize>(), "every batch is back");
    let mut position = 0;
    for (first_offset, size) in expected {
        assert_eq!(i64::from_be_bytes(all[position..position + 8].try_into().unwrap()), first_offset);
        position += size;
    }
}
