//! A partition's log: a directory of segments, offsets, roll, retention, flush and recovery.
//!
//! Not thread-safe; `SharedLog` adds the locking and the group commit. Invariant, checked after
//! every change: log start offset <= log end offset, recovery point <= log end offset.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::batch::{self, BatchHeader, NO_TIMESTAMP};
use crate::checkpoint::{sync_dir, Checkpoint};
use crate::cleaner::{self, CleanPlan, Cleanable, CleanedGroup, SourceSegment, CLEANED_SUFFIX};
use crate::config::{LogConfig, TimestampType};
use crate::deleter::{self, DELETED_SUFFIX};
use crate::error::{Result, StorageError};
use crate::limits::{
    APPEND_BATCHES_MAX, BATCH_HEADER_BYTES, EMPTY_SLICE_CHECK_BYTES_MAX, INDEX_ENTRIES_PENDING_MAX, SET_ASIDE_DIR,
};
use crate::records;
use crate::segment::{
    segment_file, segment_file_named, Segment, LOG_SUFFIX, OFFSET_INDEX_SUFFIX, SEGMENT_SUFFIXES, TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
};
use crate::slice::FileSlice;
use crate::txn_index::{self, AbortedTxn};
use crate::verify::{self, DamagedBatch, Verification};

/// Offsets an append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped into the batches, or -1 for CreateTime topics.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub batch_count: usize,
    /// The active segment rolled before this append: the broker snapshots producer state at
    /// `first_offset`, the new segment's base offset.
    pub rolled: bool,
}

/// What opening the log found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub clean_shutdown: bool,
    pub segments_scanned: usize,
    pub indexes_rebuilt: usize,
    pub bytes_truncated: u64,
    pub segments_deleted: usize,
    /// Segments after a torn one moved into `SET_ASIDE_DIR` (written after the last good fsync,
    /// so never acknowledged; kept for an operator to look at, see docs/operations.md).
    pub segments_set_aside: usize,
    /// `.txnindex` entries dropped because their ABORT marker did not survive.
    pub aborted_txns_truncated: usize,
    /// Cleaned segments whose swap a crash interrupted after its commit, finished at the open.
    pub cleaner_swaps_completed: usize,
    pub log_end_offset: i64,
    pub duration_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

/// What one group commit must fsync, taken under the lock and run without it.
pub struct FlushPlan {
    files: Vec<Arc<File>>,
    directory: Option<PathBuf>,
    pub target_offset: i64,
}

impl FlushPlan {
    /// The files `execute` fdatasyncs, in that order.
    pub fn files(&self) -> &[Arc<File>] {
        &self.files
    }

    /// fdatasync every file with unsynced appends, oldest segment first, then the `.txnindex`
    /// files with new entries, then the directory if files were created or deleted. May take
    /// milliseconds: call it without locks held.
    pub fn execute(&self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        if let Some(directory) = &self.directory {
            sync_dir(directory)?;
        }
        Ok(())
    }
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    unsynced_segments: BTreeSet<i64>,
    unsynced_indexes: Vec<Arc<File>>,
    /// Segments whose `.txnindex` changed since the last group commit.
    unsynced_txn_indexes: BTreeSet<i64>,
    /// Target offset of the group commit between `prepare_flush` and `complete_flush`.
    flush_in_flight: Option<i64>,
    directory_dirty: bool,
    /// Where the cleaner's next pass starts (`None`: at the log start), kept in the checkpoint.
    first_dirty_offset: Option<i64>,
    /// Set when an fsync failed: the page cache may have dropped the data, so nothing written
    /// since the last good fsync can be trusted again (fsyncgate). The log refuses all writes.
    failed: Option<String>,
    closed: bool,
    /// Its files are the deleter's (`delete_into`): nothing is read any more.
    deleted: bool,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering it if it was not closed cleanly.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(Log, RecoveryReport)> {
        config.validate()?;
        let started = Instant::now();
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let checkpoint = Checkpoint::read(dir)?;
        let mut report =
            RecoveryReport { clean_shutdown: checkpoint.is_some_and(|c| c.clean_shutdown), ..Default::default() };
        let mut log = Log {
            dir: dir.to_owned(),
            config,
            segments: BTreeMap::new(),
            log_start_offset: checkpoint.map_or(0, |c| c.log_start_offset),
            recovery_point: checkpoint.map_or(0, |c| c.recovery_point),
            unsynced_segments: BTreeSet::new(),
            unsynced_indexes: Vec::new(),
            unsynced_txn_indexes: BTreeSet::new(),
            flush_in_flight: None,
            directory_dirty: false,
            first_dirty_offset: checkpoint.and_then(|c| c.first_dirty_offset),
            failed: None,
            closed: false,
            deleted: false,
        };
        report.cleaner_swaps_completed = log.finish_interrupted_cleaning()?;
        log.load_segments(report.clean_shutdown, &mut report)?;
        if log.log_start_offset > log.log_end_offset() {
            // Records were deleted past what survived the crash: start empty at the log start,
            // as Kafka's truncateFullyAndStartAt does.
            report.segments_deleted += log.truncate_fully_and_start_at(log.log_start_offset)?;
        }
        // An ABORT marker cut off with a torn tail takes its entry with it (Kafka truncates the
        // transaction index with the log); so does one whose log write never reached the disk.
        report.aborted_txns_truncated = log.truncate_aborted_txns_from(log.log_end_offset())?;
        log.delete_segments_below_log_start()?;
        if !report.clean_shutdown {
            log.sync_all_segments()?;
            log.recovery_point = log.log_end_offset();
        }
        log.recovery_point = log.recovery_point.min(log.log_end_offset());
        let step = log.config.preallocation_step();
        log.active_mut().preallocate(step);
        log.write_checkpoint(false)?;
        log.check_invariants();
        report.log_end_offset = log.log_end_offset();
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok((log, report))
    }

    fn segment_base_offsets(dir: &Path) -> Result<Vec<i64>> {
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let (Some(stem), Some(suffix)) =
                (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
            else {
                continue;
            };
            if suffix == DELETED_SUFFIX {
                deleter::delete_file(path, None)?; // left by a deletion a crash cut short
                continue;
            }
            let Ok(base) = stem.parse::<i64>() else { continue };
            if suffix == LOG_SUFFIX {
                bases.push(base);
            } else if [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX].contains(&suffix)
                && !path.with_extension(LOG_SUFFIX).exists()
            {
                fs::remove_file(&path)?; // an index whose segment is gone
            }
        }
        bases.sort_unstable();
        Ok(bases)
    }

    fn load_segments(&mut self, clean: bool, report: &mut RecoveryReport) -> Result<()> {
        let bases = Self::segment_base_offsets(&self.dir)?;
        if bases.is_empty() {
            self.create_segment(self.log_start_offset)?;
            return Ok(());
        }
        // Segments before the one holding the recovery point were flushed: their indexes are
        // trusted if sane. From that segment on, an unclean stop means a full scan.
        let first_unflushed = bases.iter().rev().find(|&&b| b <= self.recovery_point).copied().unwrap_or(bases[0]);
        for (at, &base) in bases.iter().enumerate() {
            let (mut segment, indexes_sane) = Segment::open(&self.dir, base)?;
            let needs_scan = !indexes_sane || !segment.load_tail()? || (!clean && base >= first_unflushed);
            let later = &bases[at + 1..];
            // Offsets past the next segment's base: segments overlap (damage, or a cleaned segment
            // put beside the ones it replaced): which copy holds the truth is not known.
            let overlap = |next_offset: i64| later.first().filter(|&&n| next_offset > n).copied();
            if let (false, Some(next)) = (needs_scan, overlap(segment.next_offset())) {
                return Err(self.corrupt(
                    base,
                    format!(
                        "segment {base} holds offsets up to {} past the next one's base {next}",
                        segment.next_offset() - 1
                    ),
                ));
            }
            if !needs_scan {
                // Flushed, so whole: one that ends before the next begins lost acknowledged data.
                if let Some(&next) = later.first().filter(|&&n| segment.next_offset() < n && n > self.log_start_offset)
                {
                    return Err(self.corrupt(
                        base,
                        format!(
                            "flushed segment {base} ends at offset {} but the next one starts at {next}",
                            segment.next_offset()
                        ),
                    ));
                }
                self.segments.insert(base, segment);
                continue;
            }
            report.segments_scanned += 1;
            report.indexes_rebuilt += 1;
            let outcome = segment.recover(&self.config)?;
            if outcome.zero_tail > 0 {
                segment.truncate_bytes(outcome.valid_bytes)?; // zeros written ahead: not data
            }
            if let Some(next) = overlap(outcome.next_offset) {
                return Err(self.corrupt(
                    base,
                    format!(
                        "segment {base} holds offsets up to {} past the next one's base {next}",
                        outcome.next_offset - 1
                    ),
                ));
            }
            // A segment that ends before the next one begins lost its unsynced tail at a batch
            // boundary: a torn tail too (rolling wrote the next file first).
            let short = later.first().is_some_and(|&next| outcome.next_offset < next && next > self.log_start_offset);
            let stop_at = match outcome.stop {
                Some(stop) => {
                    let torn_tail =
                        !stop.followed_by_valid_batch && outcome.next_offset >= self.recovery_point && !clean;
                    if !torn_tail {
                        return Err(self.corrupt(
                            base,
                            format!(
                                "bad batch at position {} of segment {base} (offsets below {} were flushed): {}",
                                stop.position, self.recovery_point, stop.reason
                            ),
                        ));
                    }
                    stop.position
                }
                None if short => {
                    if clean || outcome.next_offset < self.recovery_point {
                        return Err(self.corrupt(
                            base,
                            format!(
                                "segment {base} ends at offset {} but the next one starts at {} and offsets \
                                 below {} were flushed",
                                outcome.next_offset, later[0], self.recovery_point
                            ),
                        ));
                    }
                    segment.size()
                }
                None => {
                    self.segments.insert(base, segment);
                    continue;
                }
            };
            report.bytes_truncated += segment.size() - stop_at;
            segment.truncate_bytes(stop_at)?;
            self.segments.insert(base, segment);
            return self.set_aside_segments_after_torn_tail(later, report);
        }
        Ok(())
    }

    /// A torn tail in one segment means every later segment was written after the last good
    /// fsync (a flush syncs every segment, older ones first, before it acknowledges anything),
    /// so nothing in them was acknowledged. Their unsynced writes may still have reached the
    /// disk, file by file: they are moved into `SET_ASIDE_DIR` rather than served or deleted.
    fn set_aside_segments_after_torn_tail(&mut self, later: &[i64], report: &mut RecoveryReport) -> Result<()> {
        if later.is_empty() {
            return Ok(());
        }
        let aside = self.dir.join(SET_ASIDE_DIR);
        fs::create_dir_all(&aside)?;
        for &base in later {
            let (segment, _) = Segment::open(&self.dir, base)?;
            report.bytes_truncated += segment.size();
            report.segments_set_aside += 1;
            segment.move_files_to(&aside)?;
        }
        sync_dir(&aside)?;
        self.directory_dirty = true;
        Ok(())
    }

    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<usize> {
        let segments = std::mem::take(&mut self.segments);
        let count = segments.len();
        for (_, segment) in segments {
            segment.delete_files()?;
        }
        self.unsynced_segments.clear();
        self.unsynced_txn_indexes.clear();
        self.create_segment(offset)?;
        Ok(count)
    }

    fn corrupt(&self, base: i64, detail: String) -> StorageError {
        let detail = format!(
            "{detail}. The log is not opened; `tidelog recover --data-dir DIR` reports what is damaged and \
             can cut the log there (docs/operations.md, \"Recovering a damaged partition\")"
        );
        StorageError::CorruptLog { path: self.dir.join(format!("{base:020}.log")).display().to_string(), detail }
    }

    fn create_segment(&mut self, base_offset: i64) -> Result<()> {
        let segment = match Segment::create(&self.dir, base_offset) {
            Ok(segment) => segment,
            Err(error) => {
                // A full disk (no inode, no directory block) can fail any of the new files. Those
                // made go again, so the next roll creates them anew instead of failing for good
                // on the `.log` that exists; a file that existed before is never touched.
                let existed = matches!(&error, StorageError::Io(e) if e.kind() == io::ErrorKind::AlreadyExists);
                if !existed {
                    for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
                        let path = segment_file(&self.dir, base_offset, suffix);
                        if fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                return Err(error);
            }
        };
        let mut segment = segment;
        segment.preallocate(self.config.preallocation_step());
        self.segments.insert(base_offset, segment);
        self.directory_dirty = true;
        Ok(())
    }

    fn sync_all_segments(&mut self) -> Result<()> {
        for segment in self.segments.values_mut() {
            segment.persist_indexes()?;
            segment.log_file().sync_data()?;
            for file in segment.index_files().into_iter().chain(segment.txn_index().file()) {
                file.sync_data()?;
            }
        }
        self.unsynced_txn_indexes.clear();
        sync_dir(&self.dir)?;
        self.directory_dirty = false;
        Ok(())
    }

    /// Replaces the settings; they apply from the next append, roll or retention pass.
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        let step = config.preallocation_step();
        let restep = step != self.config.preallocation_step();
        self.config = config;
        if restep && !self.closed && self.failed.is_none() {
            self.active_mut().trim_preallocation()?;
            self.active_mut().preallocate(step);
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }
    pub fn segment_base_offsets_loaded(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    fn check_invariants(&self) {
        let log_end_offset = self.log_end_offset();
        assert!(
            self.log_start_offset <= log_end_offset,
            "log start {} > log end {log_end_offset}",
            self.log_start_offset
        );
        assert!(
            self.recovery_point <= log_end_offset,
            "recovery point {} > log end {log_end_offset}",
            self.recovery_point
        );
    }

    /// Reads are served until the log is deleted (a closed log still reads: fetches in flight
    /// at a shutdown finish).
    fn readable(&self) -> Result<()> {
        if self.deleted {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    fn writable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed);
        }
        if let Some(why) = &self.failed {
            return Err(StorageError::Io(io::Error::other(format!("log failed earlier: {why}"))));
        }
        Ok(())
    }

    /// Reads and checks the headers of every batch in `records` without writing anything.
    /// Batches from clients may not be control batches (those come from coordinators only);
    /// that is checked after the CRC, as Kafka does.
    pub fn validate_batches(
        &self,
        records: &[u8],
        now_ms: i64,
        from_client: bool,
    ) -> Result<Vec<(usize, BatchHeader)>> {
        if records.is_empty() {
            return Err(StorageError::InvalidRecord("no record batch to append".into()));
        }
        let mut batches = Vec::new();
        let mut position = 0;
        while position < records.len() {
            if batches.len() == APPEND_BATCHES_MAX {
                return Err(StorageError::InvalidRecord(format!(
                    "more than {APPEND_BATCHES_MAX} batches in one append"
                )));
            }
            let header = batch::check_framing(&records[position..])?;
            let size = header.size_bytes();
            batch::validate(&records[position..position + size], &header)?;
            if from_client && header.is_control() {
                return Err(StorageError::InvalidRecord("clients may not produce control batches".into()));
            }
            if size > self.config.max_message_bytes {
                return Err(StorageError::RecordTooLarge { size, max: self.config.max_message_bytes });
            }
            if self.config.message_timestamp_type == TimestampType::CreateTime {
                let config = &self.config;
                batch::validate_timestamps(
                    &header,
                    now_ms,
                    config.message_timestamp_before_max_ms,
                    config.message_timestamp_after_max_ms,
                )?;
            }
            if from_client && self.config.compact {
                if let Some(record) = records::first_record_without_key(&header, &records[position..position + size])? {
                    return Err(StorageError::RecordWithoutKey { record });
                }
            }
            batches.push((position, header));
            position += size;
        }
        if records.len() as u64 > self.config.segment_bytes {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: self.config.segment_bytes as usize,
            });
        }
        Ok(batches)
    }

    /// Validates `records` (one or more whole batches), assigns offsets from the log end offset
    /// and appends them. The records are not copied: each batch is written with a short owned
    /// prefix (offset, length, leader epoch; or a whole re-stamped header for LogAppendTime)
    /// followed by the caller's bytes, in one vectored write. All or nothing.
    pub fn append(&mut self, records: &[u8], now_ms: i64, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_checked(records, now_ms, leader_epoch, false)
    }

    /// `append` for a producer's batches: control batches are refused.
    pub fn append_from_client(&mut self, records: &[u8], now_ms: i64, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_checked(records, now_ms, leader_epoch, true)
    }

    fn append_checked(
        &mut self,
        records: &[u8],
        now_ms: i64,
        leader_epoch: i32,
        from_client: bool,
    ) -> Result<AppendInfo> {
        self.writable()?;
        let batches = self.validate_batches(records, now_ms, from_client)?;
        let first_offset = self.log_end_offset();
        let mut next_offset = first_offset;
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let mut headers = Vec::with_capacity(batches.len());
        let mut prefixes: Vec<[u8; BATCH_HEADER_BYTES]> = Vec::with_capacity(batches.len());
        for &(position, header) in &batches {
            let batch_bytes = &records[position..position + header.size_bytes()];
            let mut prefix = if log_append_time {
                batch::stamp_log_append_time(batch_bytes, &batch_bytes[BATCH_HEADER_BYTES..], now_ms)
            } else {
                let mut copy = [0u8; BATCH_HEADER_BYTES];
                copy.copy_from_slice(&batch_bytes[..BATCH_HEADER_BYTES]);
                copy
            };
            prefix[0..8].copy_from_slice(&next_offset.to_be_bytes());
            prefix[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
            let assigned = BatchHeader::read(&prefix);
            next_offset = assigned.next_offset();
            headers.push(assigned);
            prefixes.push(prefix);
        }
        let prefix_len = if log_append_time { BATCH_HEADER_BYTES } else { 16 };
        let mut pieces = Vec::with_capacity(batches.len() * 2);
        for (prefix, &(position, header)) in prefixes.iter().zip(&batches) {
            pieces.push(IoSlice::new(&prefix[..prefix_len]));
            pieces.push(IoSlice::new(&records[position + prefix_len..position + header.size_bytes()]));
        }
        let last_offset = next_offset - 1;
        let max_timestamp = headers.iter().map(|h| h.max_timestamp).max().unwrap_or(NO_TIMESTAMP);
        let rolled = self.active().should_roll(&self.config, records.len() as u64, last_offset, max_timestamp, now_ms);
        if rolled {
            self.roll()?;
        }
        let config = self.config.clone();
        let active = self.active_mut();
        let base = active.base_offset;
        active.append(&mut pieces, &headers, &config)?;
        self.unsynced_segments.insert(base);
        self.check_invariants();
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time_ms: if log_append_time { now_ms } else { NO_TIMESTAMP },
            log_start_offset: self.log_start_offset,
            batch_count: headers.len(),
            rolled,
        })
    }

    /// Seals the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self) -> Result<()> {
        self.writable()?;
        let log_end_offset = self.log_end_offset();
        if self.active().is_empty() {
            return Ok(());
        }
        let active = self.active_mut();
        active.seal()?;
        let index_files = active.index_files();
        self.unsynced_indexes.extend(index_files);
        self.create_segment(log_end_offset)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch when
    /// `min_one_batch`), stopping before any batch at or above `upper_bound` (the high watermark
    /// or last stable offset). `None` when there is nothing to read yet.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>> {
        self.readable()?;
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let upper_bound = upper_bound.min(log_end_offset);
        if offset >= upper_bound {
            return Ok(None);
        }
        let floor = self.segments.range(..=offset).next_back().map_or(i64::MIN, |(&b, _)| b);
        // A cleaned segment holding only emptied batches (kept for producers' sequence numbers)
        // is served only if nothing follows it: a fetch answer without a record makes
        // librdkafka grow its fetch size and, after a few, report MSG_SIZE_TOO_LARGE.
        let mut only_empty: Option<FileSlice> = None;
        for (&base, segment) in self.segments.range(floor..) {
            if let Some(slice) = segment.slice_verified(offset, max_bytes, upper_bound, min_one_batch)? {
                self.verify_ahead(base);
                if slice.size <= EMPTY_SLICE_CHECK_BYTES_MAX && !segment.holds_records(slice.position, slice.size)? {
                    only_empty.get_or_insert(slice);
                    continue;
                }
                return Ok(Some(slice));
            }
        }
        Ok(only_empty)
    }

    /// A reader of segment `base` comes to the next one soon: its pass starts now, so the
    /// reader does not wait for it at the segment boundary (one segment of read-ahead).
    fn verify_ahead(&self, base: i64) {
        if let Some((_, next)) = self.segments.range(base + 1..).next() {
            if !next.verification().is_done() {
                verify::start_pass_ahead(next.verification(), &next.log_file());
            }
        }
    }

    /// `read`, waiting in this thread for verification passes it needs (for a single owner of
    /// the log; `SharedLog` users wait without holding the lock, as the Python binding does).
    pub fn read_waiting(
        &self,
        offset: i64,
        max_bytes: u64,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>> {
        loop {
            match self.read(offset, max_bytes, upper_bound, min_one_batch) {
                Err(StorageError::Unverified { base_offset, position }) => {
                    if let Some((verification, _)) = self.verification_of(base_offset) {
                        verification.wait_for(position);
                    }
                }
                outcome => return outcome,
            }
        }
    }

    /// The verification state and file of segment `base_offset` (see `verify`).
    pub fn verification_of(&self, base_offset: i64) -> Option<(Arc<Verification>, Arc<File>)> {
        self.segments.get(&base_offset).map(|s| (Arc::clone(s.verification()), s.log_file()))
    }

    /// Every segment with bytes not verified yet, oldest first: what a scrub runs over.
    pub fn unverified_segments(&self) -> Vec<(i64, Arc<Verification>, Arc<File>)> {
        self.segments
            .iter()
            .filter(|(_, s)| !s.verification().is_done())
            .map(|(&base, s)| (base, Arc::clone(s.verification()), s.log_file()))
            .collect()
    }

    /// Trusted bytes not verified yet, over every segment.
    pub fn unverified_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.verification().unverified_bytes()).sum()
    }

    /// Damage found by verification since the last call, each once: (segment file, damage).
    pub fn take_damage(&self) -> Vec<(String, DamagedBatch)> {
        let mut found = Vec::new();
        for segment in self.segments.values() {
            for damage in segment.verification().take_unreported() {
                found.push((segment.log_path().display().to_string(), damage));
            }
        }
        found
    }

    /// Headers of the batches that carry a producer id, from the batch holding `from_offset`
    /// (or the log start) on: what rebuilding producer state replays. At most `max_batches`
    /// headers of any kind are read per call, so a long replay is a loop of bounded calls.
    /// Returns the headers and the offset to continue from (the log end offset once done).
    pub fn producer_batches(&self, from_offset: i64, max_batches: usize) -> Result<(Vec<BatchHeader>, i64)> {
        let log_end_offset = self.log_end_offset();
        let mut next = from_offset.max(self.log_start_offset);
        let mut found = Vec::new();
        let mut scanned = 0;
        let floor = self.segments.range(..=next).next_back().map_or(i64::MIN, |(&b, _)| b);
        for segment in self.segments.range(floor..).map(|(_, s)| s) {
            let Some((mut position, _)) = segment.translate_offset(next)? else { continue };
            while let Some(header) = segment.read_header_at(position)? {
                if scanned == max_batches {
                    return Ok((found, next));
                }
                scanned += 1;
                if header.producer_id != batch::NO_PRODUCER_ID {
                    found.push(header);
                }
                next = header.next_offset();
                position += header.size_bytes() as u64;
            }
        }
        Ok((found, log_end_offset))
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`, with that timestamp
    /// (Kafka's ListOffsets by time), at or after the log start offset.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.readable()?;
        for segment in self.segments.values() {
            if segment.max_timestamp() >= timestamp_ms && segment.next_offset() > self.log_start_offset {
                if let Some(found) = segment.find_offset_by_timestamp(timestamp_ms, self.log_start_offset)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the first record that carries it
    /// (Kafka's ListOffsets MAX_TIMESTAMP), as (timestamp, offset).
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64)>> {
        self.readable()?;
        let mut newest: Option<&Segment> = None;
        for segment in self.segments.values().filter(|s| s.max_timestamp() != NO_TIMESTAMP) {
            if newest.is_none_or(|n| segment.max_timestamp() > n.max_timestamp()) {
                newest = Some(segment); // the first segment reaching the max, as Kafka's maxBy
            }
        }
        let Some(segment) = newest else { return Ok(None) };
        Ok(segment.record_with_max_timestamp()?.map(|(offset, timestamp)| (timestamp, offset)))
    }

    /// Records an aborted transaction in the `.txnindex` of the segment holding its ABORT marker
    /// (`txn.last_offset`, already appended): the active segment for a marker just written, an
    /// older one when producer state replayed after a crash re-appends a lost entry. Last offsets
    /// must strictly increase across the log.
    ///
    /// The entry is written at once. It is durable with its marker: the next group commit
    /// fsyncs it, as it does the marker. If a group commit already counts the marker durable
    /// (it completed, or is in flight without this entry, between the two calls), the entry is
    /// fsynced here instead, so the recovery point never passes a marker whose entry could be
    /// lost. Aborts are rare; that fsync is too.
    pub fn append_aborted_txn(&mut self, txn: AbortedTxn) -> Result<()> {
        self.writable()?;
        let log_end_offset = self.log_end_offset();
        if txn.first_offset > txn.last_offset || txn.last_offset >= log_end_offset {
            return Err(StorageError::InvalidAbortedTxn(format!(
                "offsets {}..={} of producer {}: the marker must be in the log (end offset {log_end_offset}) \
                 and after the first offset",
                txn.first_offset, txn.last_offset, txn.producer_id
            )));
        }
        let Some((&base, _)) = self.segments.range(..=txn.last_offset).next_back() else {
            let first_base = self.segments.keys().next().copied().unwrap_or_default();
            return Err(StorageError::InvalidAbortedTxn(format!(
                "marker offset {} is below the first segment's base offset {first_base}",
                txn.last_offset
            )));
        };
        let previous = self.last_aborted_txn_offset();
        let segment = self.segments.get_mut(&base).expect("floor segment exists");
        txn_index::check_order(previous, &txn, segment.txn_index().path())?;
        let created = segment.txn_index_mut().append(txn)?;
        let counted_durable = self.recovery_point.max(self.flush_in_flight.unwrap_or(i64::MIN));
        if txn.last_offset >= counted_durable {
            self.directory_dirty |= created;
            self.unsynced_txn_indexes.insert(base);
            return Ok(());
        }
        let file = segment.txn_index().file().expect("an entry was just written");
        let synced = file.sync_data().and_then(|()| if created { sync_dir(&self.dir) } else { Ok(()) });
        if let Err(error) = synced {
            self.failed = Some(error.to_string()); // as a failed group commit: fsyncgate
            return Err(StorageError::Io(error));
        }
        Ok(())
    }

    /// Kafka's `collectAbortedTransactions`: the aborted transactions overlapping a fetch of
    /// `[fetch_offset, upper_bound_offset)`, in log order. From the segment holding `fetch_offset`
    /// on, every entry whose last offset is at or after `fetch_offset` and whose first offset is
    /// below `upper_bound_offset`, stopping at the first entry whose last stable offset reaches
    /// `upper_bound_offset` (no later abort can overlap the range).
    pub fn collect_aborted_txns(&self, fetch_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        let floor = self.segments.range(..=fetch_offset).next_back().map_or(i64::MIN, |(&b, _)| b);
        let mut found = Vec::new();
        for segment in self.segments.range(floor..).map(|(_, s)| s) {
            if segment.txn_index().collect(fetch_offset, upper_bound_offset, &mut found) {
                break;
            }
        }
        found
    }

    /// The last offset (ABORT marker) of the newest `.txnindex` entry, if any: after a crash,
    /// producer state replayed from a snapshot re-appends the entries of aborts past it.
    pub fn last_aborted_txn_offset(&self) -> Option<i64> {
        self.segments.values().rev().find_map(|s| s.txn_index().last_offset())
    }

    /// Drops every `.txnindex` entry whose last offset is at or after `offset` (Kafka's
    /// `TransactionIndex.truncateTo`, for every segment); returns how many went. The shortened
    /// files are fsynced by the next group commit.
    pub fn truncate_aborted_txns_from(&mut self, offset: i64) -> Result<usize> {
        self.writable()?;
        let floor = self.segments.range(..=offset).next_back().map_or(i64::MIN, |(&b, _)| b);
        let mut dropped = 0;
        for (&base, segment) in self.segments.range_mut(floor..) {
            let gone = segment.txn_index_mut().truncate_to(offset)?;
            if gone > 0 {
                dropped += gone;
                self.unsynced_txn_indexes.insert(base);
            }
        }
        Ok(dropped)
    }

    /// First step of a group commit: names the files whose appends are not yet durable, and
    /// writes out index entries once `INDEX_ENTRIES_PENDING_MAX` wait (they are rebuilt from
    /// the log after a crash; roll and close write them all). Everything below `target_offset`
    /// is durable once the plan has executed.
    pub fn prepare_flush(&mut self) -> Result<FlushPlan> {
        self.writable()?;
        let mut files = Vec::new();
        for base in std::mem::take(&mut self.unsynced_segments) {
            if let Some(segment) = self.segments.get_mut(&base) {
                // A failed index write (a full disk) is cut back and leaves the entries pending:
                // the next flush, the roll or the close writes them, and a crash rebuilds them
                // from the log. It must not fail the flush, whose durability is the log's.
                if segment.index_entries_pending() >= INDEX_ENTRIES_PENDING_MAX {
                    let _ = segment.persist_indexes();
                }
                files.push(segment.log_file());
            }
        }
        files.append(&mut self.unsynced_indexes);
        for base in std::mem::take(&mut self.unsynced_txn_indexes) {
            files.extend(self.segments.get(&base).and_then(|s| s.txn_index().file()));
        }
        let directory = std::mem::take(&mut self.directory_dirty).then(|| self.dir.clone());
        let target_offset = self.log_end_offset();
        self.flush_in_flight = Some(target_offset);
        Ok(FlushPlan { files, directory, target_offset })
    }

    /// Last step of a group commit: records the outcome. A failed fsync fails the log for good.
    pub fn complete_flush(&mut self, target_offset: i64, outcome: io::Result<()>) -> Result<i64> {
        self.flush_in_flight = None;
        if let Err(error) = outcome {
            self.failed = Some(error.to_string());
            return Err(StorageError::Io(error));
        }
        self.recovery_point = self.recovery_point.max(target_offset.min(self.log_end_offset()));
        self.check_invariants();
        Ok(self.recovery_point)
    }

    /// Writes the checkpoint file (recovery point, log start offset).
    pub fn checkpoint(&self) -> Result<()> {
        self.writable()?;
        self.write_checkpoint(false)
    }

    fn write_checkpoint(&self, clean_shutdown: bool) -> Result<()> {
        self.write_checkpoint_at(self.log_start_offset, clean_shutdown)
    }

    /// The checkpoint with `log_start_offset` in it: written before the log start moves in
    /// memory, so a checkpoint that cannot be written leaves the log as it was.
    fn write_checkpoint_at(&self, log_start_offset: i64, clean_shutdown: bool) -> Result<()> {
        let checkpoint = Checkpoint {
            recovery_point: self.recovery_point,
            log_start_offset,
            clean_shutdown,
            first_dirty_offset: self.first_dirty_offset,
        };
        Ok(checkpoint.write(&self.dir)?)
    }

    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`, oldest first,
    /// only ever below `upper_bound` (the high watermark). May roll an expired active segment.
    pub fn delete_old_segments(&mut self, now_ms: i64, upper_bound: i64) -> Result<DeletionReport> {
        self.writable()?;
        let retention_ms = self.config.retention_ms;
        let by_time = |segment: &Segment, _: u64| retention_ms >= 0 && now_ms - segment.max_timestamp() > retention_ms;
        let mut report = self.delete_prefix(upper_bound, by_time)?;
        if self.config.retention_bytes >= 0 {
            let retention_bytes = self.config.retention_bytes as u64;
            let total = self.size_bytes();
            let by_size =
                |segment: &Segment, deleted_before: u64| total - deleted_before - segment.size() >= retention_bytes;
            let more = self.delete_prefix(upper_bound, by_size)?;
            report.segments_deleted += more.segments_deleted;
            report.bytes_deleted += more.bytes_deleted;
        }
        report.log_start_offset = self.log_start_offset;
        Ok(report)
    }

    /// Deletes the longest run of oldest non-empty segments that `deletable(segment, bytes
    /// deleted so far)` accepts and that end at or below `upper_bound`.
    fn delete_prefix(&mut self, upper_bound: i64, deletable: impl Fn(&Segment, u64) -> bool) -> Result<DeletionReport> {
        let mut doomed = Vec::new();
        let mut bytes = 0;
        for segment in self.segments.values() {
            if segment.is_empty() || segment.next_offset() > upper_bound || !deletable(segment, bytes) {
                break;
            }
            doomed.push(segment.base_offset);
            bytes += segment.size();
        }
        if doomed.len() == self.segments.len() {
            self.roll()?; // the active segment goes too: keep an empty one to append to
        }
        self.delete_segments(&doomed)
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords) and deletes segments
    /// wholly below it. `offset` must not pass `upper_bound` (the high watermark).
    pub fn delete_records_before(&mut self, offset: i64, upper_bound: i64) -> Result<i64> {
        self.writable()?;
        let log_end_offset = self.log_end_offset();
        if offset > upper_bound.min(log_end_offset) || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        if offset > self.log_start_offset {
            self.write_checkpoint_at(offset, false)?; // failed (a full disk): nothing changed
            self.log_start_offset = offset;
            self.delete_segments_below_log_start()?;
        }
        self.check_invariants();
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_log_start(&mut self) -> Result<DeletionReport> {
        let active_base = self.active().base_offset;
        let doomed: Vec<i64> = self
            .segments
            .values()
            .filter(|s| s.base_offset != active_base && s.next_offset() <= self.log_start_offset)
            .map(|s| s.base_offset)
            .collect();
        self.delete_segments(&doomed)
    }

    /// The new log start offset is checkpointed before any file goes, so a crash in between
    /// leaves files that the next open deletes, never a log start that points at nothing.
    fn delete_segments(&mut self, bases: &[i64]) -> Result<DeletionReport> {
        let mut report = DeletionReport { log_start_offset: self.log_start_offset, ..Default::default() };
        if bases.is_empty() {
            return Ok(report);
        }
        let new_first =
            self.segments.range(bases[bases.len() - 1] + 1..).next().map(|(&b, _)| b).expect("active segment stays");
        if new_first > self.log_start_offset {
            self.write_checkpoint_at(new_first, false)?;
            self.log_start_offset = new_first;
        }
        for base in bases {
            let segment = self.segments.remove(base).expect("segment to delete exists");
            self.unsynced_segments.remove(base);
            self.unsynced_txn_indexes.remove(base);
            report.segments_deleted += 1;
            report.bytes_deleted += segment.size();
            segment.delete_files()?;
        }
        self.directory_dirty = true;
        report.log_start_offset = self.log_start_offset;
        self.check_invariants();
        Ok(report)
    }

    /// The cleaner's first dirty offset: where the last pass ended, or the log start (Kafka's
    /// `cleanableOffsets`: a checkpoint outside the log counts as none).
    fn first_dirty(&self) -> i64 {
        match self.first_dirty_offset {
            Some(offset) if offset >= self.log_start_offset && offset <= self.log_end_offset() => offset,
            _ => self.log_start_offset,
        }
    }

    /// What the cleaner may clean now (see `cleaner`): below the active segment, `upper_bound`
    /// (the last stable offset), the recovery point and segments younger than
    /// `min.compaction.lag.ms`, snapped down to a segment base.
    pub fn cleanable(&self, now_ms: i64, upper_bound: i64) -> Cleanable {
        let first_dirty = self.first_dirty();
        let active_base = self.active().base_offset;
        let mut uncleanable = upper_bound.min(active_base).min(self.recovery_point);
        let lag = self.config.min_compaction_lag_ms;
        let dirty_floor = self.segments.range(..=first_dirty).next_back().map_or(i64::MIN, |(&b, _)| b);
        let dirty = || self.segments.range(dirty_floor..active_base).map(|(_, s)| s);
        if lag > 0 {
            if let Some(young) = dirty().find(|s| s.max_timestamp() > now_ms.saturating_sub(lag)) {
                uncleanable = uncleanable.min(young.base_offset);
            }
        }
        let uncleanable = uncleanable.max(first_dirty);
        let first_uncleanable = self.segments.range(..=uncleanable).next_back().map_or(active_base, |(&b, _)| b);
        let cleanable_bytes =
            self.segments.range(dirty_floor.min(first_uncleanable)..first_uncleanable).map(|(_, s)| s.size()).sum();
        let clean_bytes = self
            .segments
            .range(..first_dirty)
            .filter(|(_, s)| s.next_offset() > self.log_start_offset)
            .map(|(_, s)| s.size())
            .sum();
        let clean_until = now_ms.saturating_sub(self.config.max_compaction_lag_ms.max(0));
        let earliest = dirty().filter_map(Segment::first_batch_timestamp).filter(|&t| t > 0).min();
        let compaction_delay_ms = earliest.filter(|&t| t < clean_until).map_or(0, |t| clean_until - t);
        Cleanable {
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: first_uncleanable,
            clean_bytes,
            cleanable_bytes,
            compaction_delay_ms,
        }
    }

    /// A cleaning pass's input (see `cleaner::clean`), or `None` when nothing is cleanable.
    pub fn clean_plan(&self, now_ms: i64, upper_bound: i64) -> Result<Option<CleanPlan>> {
        self.writable()?;
        let cleanable = self.cleanable(now_ms, upper_bound);
        if cleanable.cleanable_bytes == 0 {
            return Ok(None);
        }
        let first_dirty = cleanable.first_dirty_offset;
        let segments: Vec<SourceSegment> = self
            .segments
            .range(..cleanable.first_uncleanable_offset)
            .map(|(_, s)| s)
            .filter(|s| s.next_offset() > self.log_start_offset || s.base_offset >= self.log_start_offset)
            .map(|s| SourceSegment {
                limit_offset: self.segments.range(s.base_offset + 1..).next().map_or(i64::MAX, |(&b, _)| b),
                base_offset: s.base_offset,
                file: s.log_file(),
                path: s.log_path().to_owned(),
                size: s.size(),
                next_offset: s.next_offset(),
                index_entries: s.index_entries(),
            })
            .collect();
        if segments.is_empty() {
            return Ok(None);
        }
        let holding_dirty = self.segments.range(..=first_dirty).next_back().map(|(_, s)| s);
        let first_dirty_position = match holding_dirty {
            Some(segment) => segment.translate_offset(first_dirty)?.map_or(0, |(position, _)| position),
            None => 0,
        };
        let aborted = self.segments.values().flat_map(|s| s.txn_index().entries().iter().copied()).collect();
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            config: self.config.clone(),
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: cleanable.first_uncleanable_offset,
            first_dirty_position,
            segments,
            aborted,
        }))
    }

    /// Where the next cleaning pass starts; kept in the checkpoint (written now).
    pub fn set_first_dirty_offset(&mut self, offset: i64) -> Result<()> {
        self.writable()?;
        self.first_dirty_offset = Some(offset);
        self.write_checkpoint(false)
    }

    /// Swaps a cleaned segment in for the segments it replaces (Kafka's `replaceSegments`), unless
    /// one of them is gone or changed meanwhile (then its files go and `false` comes back).
    ///
    /// Crash-safe in this order: the cleaned files are synced under `.cleaned` names; the manifest
    /// `<base>.swap` naming the old segments and the new files is written, synced and renamed into
    /// place, and the directory synced (the commit); the old segments' files go; the cleaned files
    /// take their final names; the directory is synced; the manifest goes. A crash before the
    /// commit leaves the old segments (the open deletes `.cleaned` files); after it, the open
    /// finishes the swap from the manifest (`finish_interrupted_cleaning`).
    pub fn swap_cleaned(&mut self, cleaned: CleanedGroup) -> Result<bool> {
        let base = cleaned.base_offset;
        let active_base = self.active().base_offset;
        let unchanged = self.writable().is_ok()
            && cleaned.replaces.iter().all(|(old, file)| {
                *old != active_base && self.segments.get(old).is_some_and(|s| Arc::ptr_eq(&s.log_file(), file))
            });
        if !unchanged {
            drop(cleaned.segment);
            cleaner::remove_cleaned_files(&self.dir, base)?;
            return Ok(false);
        }
        let kinds: Vec<&str> = SEGMENT_SUFFIXES
            .into_iter()
            .filter(|kind| segment_file_named(&self.dir, base, kind, CLEANED_SUFFIX).exists())
            .collect();
        let old_bases: Vec<i64> = cleaned.replaces.iter().map(|(b, _)| *b).collect();
        let manifest = cleaner::swap_manifest_path(&self.dir, base);
        drop(cleaned.segment);
        if let Err(error) =
            cleaner::write_swap_manifest(&manifest, &old_bases, &kinds).and_then(|()| sync_dir(&self.dir))
        {
            let _ = fs::remove_file(&manifest);
            cleaner::remove_cleaned_files(&self.dir, base)?;
            return Err(error.into()); // not committed: the old segments stay
        }
        match self.complete_swap(base, &old_bases, &kinds, &manifest) {
            Ok(()) => Ok(true),
            Err(error) => {
                // Committed but not finished in memory: the next open finishes it from the
                // manifest. Until then the log takes no writes (its segments may be half swapped).
                self.failed = Some(format!("cleaner swap of segment {base} failed: {error}"));
                Err(error)
            }
        }
    }

    fn complete_swap(&mut self, base: i64, old_bases: &[i64], kinds: &[&str], manifest: &Path) -> Result<()> {
        for old in old_bases {
            let segment = self.segments.remove(old).expect("checked above");
            self.unsynced_segments.remove(old);
            self.unsynced_txn_indexes.remove(old);
            segment.delete_files()?;
        }
        for kind in kinds {
            fs::rename(segment_file_named(&self.dir, base, kind, CLEANED_SUFFIX), segment_file(&self.dir, base, kind))?;
        }
        sync_dir(&self.dir)?;
        fs::remove_file(manifest)?;
        let (mut segment, _) = Segment::open(&self.dir, base)?;
        if !segment.load_tail()? {
            return Err(self.corrupt(base, "the cleaned segment just swapped in does not read back".into()));
        }
        segment.mark_checked();
        self.segments.insert(base, segment);
        self.directory_dirty = true;
        self.check_invariants();
        Ok(())
    }

    /// At the open: finishes every swap whose manifest exists (see `swap_cleaned`) and deletes
    /// the files of passes cut short before their commit. Returns how many swaps it finished.
    fn finish_interrupted_cleaning(&mut self) -> Result<usize> {
        let mut manifests = Vec::new();
        let mut leftovers = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if name.ends_with(CLEANED_SUFFIX) || name.ends_with(".swap.tmp") {
                leftovers.push(path);
            } else if let Some(base) = name.strip_suffix(".swap").and_then(|b| b.parse::<i64>().ok()) {
                manifests.push((base, path));
            }
        }
        let finished = manifests.len();
        for (base, manifest) in manifests {
            let Some((replaces, kinds)) = cleaner::read_swap_manifest(&manifest)? else {
                return Err(self.corrupt(base, format!("cleaner swap manifest {} does not parse", manifest.display())));
            };
            for old in replaces.iter().filter(|&&old| old != base) {
                for kind in SEGMENT_SUFFIXES {
                    remove_if_exists(&segment_file(&self.dir, *old, kind))?;
                }
            }
            for kind in SEGMENT_SUFFIXES {
                let cleaned = segment_file_named(&self.dir, base, kind, CLEANED_SUFFIX);
                let target = segment_file(&self.dir, base, kind);
                if kinds.iter().any(|k| k == kind) {
                    if cleaned.exists() {
                        fs::rename(&cleaned, &target)?; // replaces the old file of that kind
                    }
                } else {
                    remove_if_exists(&target)?; // the old segment's: the cleaned one has none
                }
            }
            sync_dir(&self.dir)?;
            fs::remove_file(&manifest)?;
        }
        for path in leftovers.iter().filter(|p| p.exists()) {
            fs::remove_file(path)?;
        }
        if finished > 0 || !leftovers.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(finished)
    }

    /// Deletes the whole closed log (its topic is gone): the directory is renamed to `renamed`
    /// at once, out of the data directory's partitions, and every file in it goes to the
    /// background deleter; a segment's file once neither this log nor any reader holds it
    /// (see `deleter`). A crash before the deleter is done leaves `renamed` for the next start.
    pub fn delete_into(&mut self, renamed: &Path) -> Result<()> {
        assert!(self.closed, "only a closed log is deleted");
        fs::rename(&self.dir, renamed)?;
        if let Some(parent) = renamed.parent() {
            sync_dir(parent)?;
        }
        self.dir = renamed.to_path_buf();
        self.deleted = true;
        // This log object may live on (its Python owner goes when the garbage collector gets
        // to it): it lets go of its files now, so only readers' slices keep them whole.
        let placeholder = Arc::new(File::open("/dev/null")?);
        for segment in self.segments.values_mut() {
            let name = renamed.join(segment.log_file_name());
            deleter::delete_file(name, Some(segment.release_file(&placeholder)))?;
        }
        Ok(deleter::delete_tree(renamed.to_path_buf())?)
    }

    /// Flushes everything, seals the indexes and writes a checkpoint marked clean, so the next
    /// open skips recovery.
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.writable()?;
        self.active_mut().seal()?;
        self.sync_all_segments()?;
        self.recovery_point = self.log_end_offset();
        self.write_checkpoint(true)?;
        self.closed = true;
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
