//! The fuzz targets of the storage engine, shared by the stable mutation loop (`tests/fuzz.rs`,
//! run by `cargo test`) and the libFuzzer targets (`fuzz/`, nightly, `make fuzz`): one body of
//! code, two drivers. Each target takes arbitrary bytes and drives the crate's public API; any
//! panic is a crash. Beyond "no panic", each checks what the API promises on the way.
//!
//! - `BatchTarget`: `Log::validate_batches` / `append_from_client` (a producer's records), and
//!   the decompression behind timestamp lookups.
//! - `RecoveryTarget`: `Log::open` of a partition directory whose files are arbitrary bytes
//!   (segments, their indexes, `log-state.checkpoint`): a log or a clean error; a log that
//!   opened serves reads, takes an append, closes and reopens at the same log end offset.
//! - `IndexTarget`: `OffsetIndex` / `TimeIndex` / `TransactionIndex` opened on arbitrary bytes.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use tidelog_storage::batch::{self, BatchHeader};
use tidelog_storage::checkpoint::CHECKPOINT_FILE;
use tidelog_storage::codec;
use tidelog_storage::index::{OffsetIndex, Position, RelativeOffset, TimeIndex};
use tidelog_storage::limits::{
    BATCH_HEADER_BYTES, DECOMPRESSED_RECORDS_BYTES_MAX, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES,
    TXN_INDEX_ENTRY_BYTES,
};
use tidelog_storage::txn_index::TransactionIndex;
use tidelog_storage::{Log, LogConfig, StorageError, TimestampType};

pub mod mutate;
pub mod seeds;

/// The broker clock of every target: fixed, so a run replays exactly.
pub const NOW_MS: i64 = 1_700_000_000_000;
/// `max_bytes` of the targets' reads (the broker passes a client's i32 at most; the engine
/// computes `position + max_bytes` unchecked, so a `u64::MAX` overflows: see the fuzz report).
const READ_BYTES_MAX: u64 = 1 << 31;
/// Offsets the recovery target appends at. Above this the log end offset came from a damaged
/// checkpoint's `log-start-offset` (a text file without checksum) and the engine's offset
/// arithmetic would overflow on the next append (a known finding, left to the engine's owner).
pub const APPEND_OFFSET_MAX: i64 = 1 << 62;
/// A log a target appends to is replaced once it holds this much.
const BATCH_LOG_BYTES_MAX: u64 = 64 << 20;

/// Where the targets keep their files: tmpfs when the machine has it (a recovery input costs
/// two opens with fsyncs), else the temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("tidelog-fuzz").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::Builder::new().prefix("tidelog-fuzz").tempdir().expect("a temp dir")
}

/// Empties `dir`; a file the background deleter removes meanwhile (a deleted segment) is fine.
fn clear_dir(dir: &Path) {
    for entry in fs::read_dir(dir).expect("scratch dir") {
        let path = entry.expect("dir entry").path();
        let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        if let Err(error) = removed {
            assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "remove {}: {error}", path.display());
        }
    }
}

/// The configurations the batch target validates against, chosen by the input's first byte.
pub fn batch_configs() -> Vec<LogConfig> {
    vec![
        LogConfig::default(),
        LogConfig { message_timestamp_type: TimestampType::LogAppendTime, ..LogConfig::default() },
        LogConfig {
            max_message_bytes: 512,
            segment_bytes: 4096,
            message_timestamp_before_max_ms: 3_600_000,
            message_timestamp_after_max_ms: 0,
            ..LogConfig::default()
        },
    ]
}

// --- batch validation ---------------------------------------------------------------------

/// How many inputs ended each way: the driver prints them, and checks that mutants reach past
/// the first checks.
#[derive(Default, Debug)]
pub struct Outcomes {
    /// Batch target: validated and appended. Recovery: opened. Indexes: loaded as sane.
    pub accepted: u64,
    /// Refused with an error (or a damaged index started empty).
    pub refused: u64,
    /// Recovery: opened after truncating a torn tail.
    pub truncated: u64,
}

pub struct BatchTarget {
    dir: tempfile::TempDir,
    logs: Vec<Log>,
    generation: u64,
    pub outcomes: Outcomes,
}

impl Default for BatchTarget {
    fn default() -> Self {
        let dir = scratch_dir();
        let mut generation = 0;
        let logs = (0..batch_configs().len()).map(|i| new_batch_log(&dir, i, &mut generation)).collect();
        BatchTarget { dir, logs, generation, outcomes: Outcomes::default() }
    }
}

fn new_batch_log(dir: &tempfile::TempDir, which: usize, generation: &mut u64) -> Log {
    *generation += 1;
    let path = dir.path().join(format!("log-{which}-{generation}"));
    Log::open(&path, batch_configs()[which].clone()).expect("an empty log opens").0
}

impl BatchTarget {
    /// Input: a selector byte (config in the low bits, a codec in the high ones), then records.
    pub fn run(&mut self, data: &[u8]) {
        let Some((&selector, records)) = data.split_first() else { return };
        let which = selector as usize % self.logs.len();
        let log = &mut self.logs[which];
        match log.validate_batches(records, NOW_MS, true) {
            Ok(batches) => {
                self.outcomes.accepted += 1;
                check_tiling(records, &batches);
                for &(position, header) in &batches {
                    let bytes = &records[position..position + header.size_bytes()];
                    assert!(!header.is_control(), "a client's control batch passed validation");
                    // What ListOffsets by timestamp does with a stored batch.
                    if let Ok(decoded) = codec::records_of(&header, bytes) {
                        assert!(decoded.len() <= DECOMPRESSED_RECORDS_BYTES_MAX);
                        let _ = batch::first_record_where(&header, &decoded, |_, t| t >= header.max_timestamp);
                    }
                }
                let end = log.log_end_offset();
                let info = log.append_from_client(records, NOW_MS, 7).expect("validated batches append");
                assert_eq!(info.first_offset, end);
                assert_eq!(info.batch_count, batches.len());
                let count: i64 = batches.iter().map(|(_, h)| h.last_offset_delta as i64 + 1).sum();
                assert_eq!(info.last_offset, end + count - 1);
                assert_eq!(log.log_end_offset(), end + count);
                let slice = log.read(end, READ_BYTES_MAX, i64::MAX, true).expect("read back").expect("a batch");
                assert_eq!(slice.first_offset, end);
                if log.size_bytes() > BATCH_LOG_BYTES_MAX {
                    let fresh = new_batch_log(&self.dir, which, &mut self.generation);
                    let mut old = std::mem::replace(&mut self.logs[which], fresh);
                    old.close().expect("close");
                    fs::remove_dir_all(old.dir()).expect("remove");
                }
            }
            Err(error) => {
                self.outcomes.refused += 1;
                let _ = error.to_string();
                let end = log.log_end_offset();
                assert!(log.append_from_client(records, NOW_MS, 7).is_err(), "append took what validation refused");
                assert_eq!(log.log_end_offset(), end, "a refused append moved the log end");
            }
        }
        // The decompressors on raw bytes (a stored batch's records section is only CRC-checked).
        let codec_id = (selector >> 4) as i16 % 5;
        if let Ok(out) = codec::decompress(codec_id, records) {
            assert!(out.len() <= DECOMPRESSED_RECORDS_BYTES_MAX);
        }
        // The header readers on any prefix long enough.
        if records.len() >= BATCH_HEADER_BYTES {
            let header = BatchHeader::read(records);
            let _ = batch::check_header(&header, records.len() as u64);
            // (Not `last_offset`: a client's baseOffset is arbitrary until the log assigns it.)
            let _ = (header.compression_id(), header.is_transactional(), header.is_log_append_time());
        }
    }
}

/// Validated batches cover the records exactly, back to back, each one whole.
fn check_tiling(records: &[u8], batches: &[(usize, BatchHeader)]) {
    let mut at = 0;
    for &(position, header) in batches {
        assert_eq!(position, at, "batches must be back to back");
        assert!(header.size_bytes() >= BATCH_HEADER_BYTES);
        assert_eq!(BatchHeader::read(&records[position..]), header);
        at += header.size_bytes();
    }
    assert_eq!(at, records.len(), "validated batches must cover the records");
}

// --- recovery -----------------------------------------------------------------------------

/// One file of a partition directory in a recovery input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub kind: FileKind,
    pub base_offset: i64,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Log,
    OffsetIndex,
    TimeIndex,
    TxnIndex,
    Checkpoint,
}

const FILE_KINDS: [FileKind; 5] =
    [FileKind::Log, FileKind::OffsetIndex, FileKind::TimeIndex, FileKind::TxnIndex, FileKind::Checkpoint];
/// Section header: kind (1), base offset (8), length (4).
const SECTION_HEADER_BYTES: usize = 13;

impl FileKind {
    fn suffix(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::OffsetIndex => "index",
            FileKind::TimeIndex => "timeindex",
            FileKind::TxnIndex => "txnindex",
            FileKind::Checkpoint => "",
        }
    }
}

/// A recovery input is a list of sections `kind u8 | base offset i64 | length u32 | bytes`
/// (big-endian; a length past the end takes what is left). Base offsets are kept below
/// `APPEND_OFFSET_MAX`: the engine names its files, and the damage fuzzed here is in their
/// contents.
pub fn decode_sections(mut data: &[u8]) -> Vec<Section> {
    let mut sections = Vec::new();
    while data.len() >= SECTION_HEADER_BYTES {
        let kind = FILE_KINDS[data[0] as usize % FILE_KINDS.len()];
        let base_offset = i64::from_be_bytes(data[1..9].try_into().expect("8 bytes")) & (APPEND_OFFSET_MAX - 1);
        let length = u32::from_be_bytes(data[9..13].try_into().expect("4 bytes")) as usize;
        data = &data[SECTION_HEADER_BYTES..];
        let length = length.min(data.len());
        sections.push(Section { kind, base_offset, bytes: data[..length].to_vec() });
        data = &data[length..];
    }
    sections
}

pub fn encode_sections(sections: &[Section]) -> Vec<u8> {
    let mut out = Vec::new();
    for section in sections {
        let kind = FILE_KINDS.iter().position(|&k| k == section.kind).expect("a kind") as u8;
        out.push(kind);
        out.extend(section.base_offset.to_be_bytes());
        out.extend((section.bytes.len() as u32).to_be_bytes());
        out.extend(&section.bytes);
    }
    out
}

/// The sections of a partition directory the engine wrote (for seeds).
pub fn sections_of_dir(dir: &Path) -> Vec<Section> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    paths.sort();
    let mut sections = Vec::new();
    for path in paths {
        let bytes = fs::read(&path).expect("read");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        if name == CHECKPOINT_FILE {
            sections.push(Section { kind: FileKind::Checkpoint, base_offset: 0, bytes });
            continue;
        }
        let Some((stem, suffix)) = name.split_once('.') else { continue };
        let Ok(base_offset) = stem.parse::<i64>() else { continue };
        if let Some(&kind) = FILE_KINDS.iter().find(|k| k.suffix() == suffix && **k != FileKind::Checkpoint) {
            sections.push(Section { kind, base_offset, bytes });
        }
    }
    sections
}

pub fn recovery_configs() -> Vec<LogConfig> {
    vec![
        LogConfig::default(),
        LogConfig { segment_bytes: 4096, index_interval_bytes: 128, segment_index_bytes: 4096, ..LogConfig::default() },
    ]
}

pub struct RecoveryTarget {
    dir: tempfile::TempDir,
    pub outcomes: Outcomes,
}

impl Default for RecoveryTarget {
    fn default() -> Self {
        RecoveryTarget { dir: scratch_dir(), outcomes: Outcomes::default() }
    }
}

impl RecoveryTarget {
    pub fn run(&mut self, data: &[u8]) {
        let Some((&selector, rest)) = data.split_first() else { return };
        let configs = recovery_configs();
        let config = configs[selector as usize % configs.len()].clone();
        let dir = self.dir.path().join("partition");
        if dir.exists() {
            clear_dir(&dir);
        } else {
            fs::create_dir(&dir).expect("partition dir");
        }
        for section in decode_sections(rest) {
            let path = match section.kind {
                FileKind::Checkpoint => dir.join(CHECKPOINT_FILE),
                kind => dir.join(format!("{:020}.{}", section.base_offset, kind.suffix())),
            };
            fs::write(path, &section.bytes).expect("write an input file");
        }
        let (mut log, report) = match Log::open(&dir, config.clone()) {
            Ok(opened) => opened,
            Err(error) => {
                self.outcomes.refused += 1;
                check_open_error(&error);
                return;
            }
        };
        self.outcomes.accepted += 1;
        if report.bytes_truncated > 0 {
            self.outcomes.truncated += 1;
        }
        exercise_log(&mut log, selector);
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        log.close().expect("a recovered log closes");
        drop(log);
        let (mut again, report) = Log::open(&dir, config).expect("a log that opened and closed reopens");
        assert!(report.clean_shutdown, "close must record a clean shutdown");
        assert_eq!((again.log_start_offset(), again.log_end_offset()), (start, end), "reopened elsewhere");
        again.close().expect("close");
    }
}

/// The errors recovery may give for damaged files: corruption or an i/o error; never, say, a
/// config error.
fn check_open_error(error: &StorageError) {
    let _ = error.to_string();
    assert!(
        matches!(error, StorageError::CorruptLog { .. } | StorageError::Io(_)),
        "unexpected kind of error from Log::open: {error:?}"
    );
}

/// What a broker does with a freshly recovered log: reads, lookups, the producer-state replay,
/// an append.
fn exercise_log(log: &mut Log, selector: u8) {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert!(start <= end && log.recovery_point() <= end);
    let mut offset = start;
    let mut reads = 0;
    loop {
        let slice = match log.read_waiting(offset, 1 << 16, i64::MAX, true) {
            Ok(Some(slice)) => slice,
            Ok(None) => break,
            // A batch damaged in a segment trusted at open: refused where it is, never served.
            Err(StorageError::CorruptBatch { .. }) => break,
            Err(error) => panic!("a read inside the log: {error:?}"),
        };
        assert!(
            slice.first_offset <= slice.last_offset && slice.last_offset >= offset,
            "a read returns the batch holding the offset"
        );
        let bytes = slice.to_vec().expect("slice bytes");
        assert!(!bytes.is_empty());
        offset = slice.last_offset + 1;
        reads += 1;
        if reads == 64 || offset >= end {
            break;
        }
    }
    let _ = log.offset_for_timestamp(NOW_MS - (selector as i64) * 1000);
    let _ = log.offset_for_timestamp(-1);
    let _ = log.max_timestamp_and_offset();
    let mut from = start;
    for _ in 0..8 {
        let (_, next) = log.producer_batches(from, 100).expect("producer batches of a recovered log");
        if next >= end || next <= from {
            break;
        }
        from = next;
    }
    let _ = log.collect_aborted_txns(start, end);
    let _ = log.last_aborted_txn_offset();
    if end < APPEND_OFFSET_MAX {
        let info = log.append(&seeds::batch(2, 8, NOW_MS, 0), NOW_MS, 0).expect("a recovered log takes an append");
        assert_eq!(info.first_offset, end);
    }
}

// --- index loading ------------------------------------------------------------------------

pub struct IndexTarget {
    dir: tempfile::TempDir,
    pub outcomes: Outcomes,
}

impl Default for IndexTarget {
    fn default() -> Self {
        IndexTarget { dir: scratch_dir(), outcomes: Outcomes::default() }
    }
}

impl IndexTarget {
    /// Input: a selector byte (which index), a 4-byte log size (offset index) or base offset
    /// (transaction index), then the file.
    pub fn run(&mut self, data: &[u8]) {
        if data.len() < 5 {
            return;
        }
        let selector = data[0];
        let number = u32::from_be_bytes(data[1..5].try_into().expect("4 bytes"));
        let bytes = &data[5..];
        let path = self.dir.path().join("00000000000000000000.idx");
        fs::write(&path, bytes).expect("write");
        let sane = match selector % 3 {
            0 => offset_index(&path, bytes, number as u64),
            1 => time_index(&path, bytes),
            _ => txn_index(&path, bytes, number as i64),
        };
        if sane {
            self.outcomes.accepted += 1;
        } else {
            self.outcomes.refused += 1;
        }
        let _ = fs::remove_file(&path);
    }
}

/// Each returns whether the file loaded as sane.
fn offset_index(path: &Path, bytes: &[u8], log_size: u64) -> bool {
    let (mut index, sane) = OffsetIndex::open(path, log_size).expect("open");
    if sane {
        assert_eq!(index.len() * OFFSET_INDEX_ENTRY_BYTES, bytes.len());
        assert_eq!(index.pending(), 0);
        if let Some((last_relative, last_position)) = index.last() {
            assert!((last_position.0 as u64) < log_size);
            assert_eq!(index.lookup(RelativeOffset(u32::MAX)), index.last());
            let probe = RelativeOffset(last_relative.0 / 2);
            if let Some((found, _)) = index.lookup(probe) {
                assert!(found <= probe);
            }
            let _ = index.floor(Position(last_position.0 / 2), probe);
            index.append(RelativeOffset(last_relative.0 + 1), Position(last_position.0 + 1));
        } else {
            index.append(RelativeOffset(0), Position(0));
        }
    } else {
        assert!(index.is_empty(), "a damaged index must start empty");
        assert_eq!(fs::metadata(path).expect("stat").len(), 0, "a damaged index file is emptied");
        index.append(RelativeOffset(0), Position(0));
    }
    let before = index.len();
    index.persist().expect("persist");
    assert_eq!(fs::metadata(path).expect("stat").len() as usize, before * OFFSET_INDEX_ENTRY_BYTES);
    sane
}

fn time_index(path: &Path, bytes: &[u8]) -> bool {
    let (mut index, sane) = TimeIndex::open(path).expect("open");
    if sane {
        assert_eq!(index.len() * TIME_INDEX_ENTRY_BYTES, bytes.len());
        if let Some((timestamp, relative)) = index.last() {
            assert_eq!(index.lookup(i64::MAX), index.last());
            if let Some((found, _)) = index.lookup(timestamp / 2) {
                assert!(found <= timestamp / 2);
            }
            assert!(index.points_below(RelativeOffset(relative.0 + 1)));
            index.maybe_append(timestamp.saturating_add(1), relative);
        }
    } else {
        assert!(index.is_empty(), "a damaged index must start empty");
    }
    index.persist().expect("persist");
    assert_eq!(fs::metadata(path).expect("stat").len() as usize, index.len() * TIME_INDEX_ENTRY_BYTES);
    sane
}

fn txn_index(path: &Path, bytes: &[u8], base_offset: i64) -> bool {
    match TransactionIndex::open(path, base_offset) {
        Ok(index) => {
            assert_eq!(index.len(), bytes.len() / TXN_INDEX_ENTRY_BYTES, "whole entries are all kept");
            let entries = index.entries();
            for pair in entries.windows(2) {
                assert!(pair[0].last_offset < pair[1].last_offset, "entries must increase");
            }
            assert!(entries.iter().all(|e| e.last_offset >= base_offset));
            assert_eq!(index.last_offset(), entries.last().map(|e| e.last_offset));
            // A torn partial entry is cut off the file.
            assert_eq!(fs::metadata(path).expect("stat").len() as usize, index.len() * TXN_INDEX_ENTRY_BYTES);
            true
        }
        Err(error) => {
            assert!(matches!(error, StorageError::CorruptLog { .. }), "unexpected error {error:?}");
            false
        }
    }
}
