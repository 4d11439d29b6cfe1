//! One segment: `<base offset>.log` plus its `.index` and `.timeindex`, and its `.txnindex` once
//! a transaction aborted in it.
//!
//! Not thread-safe: the owning `Log` serializes access. The `.log` file holds whole batches
//! back to back, exactly as they travel on the wire, with offsets already assigned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, NO_TIMESTAMP};
use crate::codec;
use crate::config::LogConfig;
use crate::deleter::{self, DELETED_SUFFIX};
use crate::error::{Result as StorageResult, StorageError};
use crate::index::{OffsetIndex, Position, RelativeOffset, TimeIndex};
use crate::limits::{BATCH_HEADER_BYTES, RECOVERY_READ_BUFFER_BYTES, RELATIVE_OFFSET_MAX, SEGMENT_NAME_DIGITS};
use crate::prealloc::{self, Preallocation};
use crate::slice::FileSlice;
use crate::txn_index::TransactionIndex;
use crate::verify::{self, Verification};

pub const LOG_SUFFIX: &str = "log";
pub const OFFSET_INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
pub const TXN_INDEX_SUFFIX: &str = "txnindex";
/// Every file a segment may own, for deletion.
pub const SEGMENT_SUFFIXES: [&str; 4] = [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX];

pub fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    segment_file_named(dir, base_offset, suffix, "")
}

/// `segment_file` with `name_suffix` after the kind: the cleaner's `<base>.log.cleaned`.
pub fn segment_file_named(dir: &Path, base_offset: i64, suffix: &str, name_suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:0width$}.{suffix}{name_suffix}", width = SEGMENT_NAME_DIGITS))
}

/// Where a full scan of a segment stopped before its end, and why.
#[derive(Debug)]
pub struct ScanStop {
    pub position: u64,
    pub reason: String,
    /// A well-formed batch with a good CRC follows the bad one: damage in the middle of the
    /// data, not a torn tail.
    pub followed_by_valid_batch: bool,
}

#[derive(Debug)]
pub struct ScanOutcome {
    pub valid_bytes: u64,
    pub next_offset: i64,
    pub stop: Option<ScanStop>,
    /// Zeros from `valid_bytes` to the file's end: a pre-zeroed tail (see `prealloc`), the end of
    /// the log and not damage. The caller cuts them off.
    pub zero_tail: u64,
}

pub struct Segment {
    pub base_offset: i64,
    log_path: PathBuf,
    log: Arc<File>,
    size: u64,
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Aborted transactions whose marker is in this segment; its file exists once one is.
    txn_index: TransactionIndex,
    bytes_since_last_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: what `segment.ms` counts from, as in Kafka.
    rolling_timestamp: Option<i64>,
    /// Wall clock when this segment object was made: the fallback for batches without timestamps.
    created_ms: i64,
    /// What of the file has been checked since the open (see `verify`).
    verification: Arc<Verification>,
    /// The file's pre-zeroed tail past `size` (the active segment's; see `prealloc`).
    preallocation: Arc<Preallocation>,
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Segment {
    /// Creates the files of a new, empty segment (the `.txnindex` waits for its first entry).
    pub fn create(dir: &Path, base_offset: i64) -> StorageResult<Segment> {
        Segment::create_named(dir, base_offset, "")
    }

    /// `create` with `name_suffix` after each file's kind (see `segment_file_named`).
    pub fn create_named(dir: &Path, base_offset: i64, name_suffix: &str) -> StorageResult<Segment> {
        let log_path = segment_file_named(dir, base_offset, LOG_SUFFIX, name_suffix);
        OpenOptions::new().write(true).create_new(true).open(&log_path)?;
        let (mut segment, _) = Segment::open_named(dir, base_offset, name_suffix)?;
        segment.verification = Verification::checked(base_offset);
        Ok(segment)
    }

    /// Opens a segment's files and loads its indexes. Returns whether the offset and time indexes
    /// passed their sanity checks; the tail is not read yet (see `load_tail` and `recover`). A
    /// damaged `.txnindex` is an error: it cannot be rebuilt from the log (see `txn_index`).
    pub fn open(dir: &Path, base_offset: i64) -> StorageResult<(Segment, bool)> {
        Segment::open_named(dir, base_offset, "")
    }

    fn open_named(dir: &Path, base_offset: i64, name_suffix: &str) -> StorageResult<(Segment, bool)> {
        let file = |kind| segment_file_named(dir, base_offset, kind, name_suffix);
        let log_path = file(LOG_SUFFIX);
        // Written at positions (`pwritev` at `size`), not appended: the file may hold zeros past
        // the log's end (see `prealloc`).
        let log = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let size = log.metadata()?.len();
        let (offset_index, offset_sane) = OffsetIndex::open(&file(OFFSET_INDEX_SUFFIX), size)?;
        let (time_index, time_sane) = TimeIndex::open(&file(TIME_INDEX_SUFFIX))?;
        let txn_index = TransactionIndex::open(&file(TXN_INDEX_SUFFIX), base_offset)?;
        let segment = Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            txn_index,
            bytes_since_last_index_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            rolling_timestamp: None,
            created_ms: wall_clock_ms(),
            // Until a scan or `load_tail` says more: every byte unverified.
            verification: Verification::pending(base_offset, size, base_offset),
            preallocation: Preallocation::new(0, size),
        };
        Ok((segment, offset_sane && time_sane))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// From now on the file is zeroed `step` bytes ahead of the log's end (0: never). For the
    /// active segment.
    pub fn preallocate(&mut self, step: u64) {
        // The old one's zero writes end first: two writers would not see each other's appends.
        let file_len = self.preallocation.stop();
        self.preallocation = Preallocation::new(step, self.size);
        self.preallocation.extend_known(file_len); // zeros it wrote ahead stay; the new one goes on past them
        self.preallocation.after_write(self.size, &self.log);
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    /// The max timestamp of the first batch (Kafka's `getFirstBatchTimestamp`), if any.
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.rolling_timestamp
    }
    /// Entries in the offset and time indexes.
    pub fn index_entries(&self) -> (usize, usize) {
        (self.offset_index.len(), self.time_index.len())
    }
    /// A segment the cleaner wrote (every batch built or checked by it): nothing to verify.
    pub fn mark_checked(&mut self) {
        self.verification = Verification::checked(self.base_offset);
    }
    pub fn log_file(&self) -> Arc<File> {
        Arc::clone(&self.log)
    }
    pub fn index_files(&self) -> [Arc<File>; 2] {
        [self.offset_index.file(), self.time_index.file()]
    }
    pub fn verification(&self) -> &Arc<Verification> {
        &self.verification
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn txn_index(&self) -> &TransactionIndex {
        &self.txn_index
    }
    pub fn txn_index_mut(&mut self) -> &mut TransactionIndex {
        &mut self.txn_index
    }

    fn relative(&self, offset: i64) -> RelativeOffset {
        let relative = offset - self.base_offset;
        assert!((0..=RELATIVE_OFFSET_MAX).contains(&relative), "offset {offset} outside segment {}", self.base_offset);
        RelativeOffset(relative as u32)
    }

    /// Kafka's roll rules, checked before an append of `append_bytes` ending at `last_offset`
    /// whose largest timestamp is `max_timestamp`. Age is measured as Kafka does: from the first
    /// batch's timestamp to the new batch's, so old timestamps do not roll every append; the wall
    /// clock serves only when batches carry no timestamp.
    pub fn should_roll(
        &self,
        config: &LogConfig,
        append_bytes: u64,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let full = self.size + append_bytes > config.segment_bytes;
        let waited_ms = match self.rolling_timestamp {
            Some(first) if first >= 0 => max_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        };
        let aged = waited_ms > config.segment_ms;
        let index_full = self.offset_index.len() >= config.offset_index_entries_max()
            || self.time_index.len() >= config.time_index_entries_max();
        let offsets_overflow = last_offset - self.base_offset > RELATIVE_OFFSET_MAX;
        full || aged || index_full || offsets_overflow
    }

    /// Records one batch that now sits at `position`: max timestamp and, every
    /// `index.interval.bytes`, an entry in both indexes (Kafka's `LogSegment.append` rule).
    fn index_batch(&mut self, header: &BatchHeader, position: u64, config: &LogConfig) {
        if self.rolling_timestamp.is_none() {
            self.rolling_timestamp = Some(header.max_timestamp);
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.bytes_since_last_index_entry > config.index_interval_bytes {
            self.offset_index.append(self.relative(header.last_offset()), Position(position as u32));
            self.time_index.maybe_append(self.max_timestamp, self.relative(self.offset_of_max_timestamp));
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.size_bytes() as u64;
        self.next_offset = header.next_offset();
    }

    /// Writes `pieces` (whole batches, offsets assigned) at the end of the log, then indexes
    /// `batches`. On a failed write the file is cut back so nothing of the append remains.
    pub fn append(
        &mut self,
        pieces: &mut [IoSlice<'_>],
        batches: &[BatchHeader],
        config: &LogConfig,
    ) -> io::Result<()> {
        let start = self.size;
        let total: u64 = batches.iter().map(|b| b.size_bytes() as u64).sum();
        self.preallocation.before_write(start + total);
        if let Err(error) = write_all_vectored_at(&self.log, pieces, start) {
            // Nothing of the append stays (zeros written ahead go too; they are made again).
            self.preallocation.stop();
            self.log.set_len(start)?;
            self.preallocation.cut(start);
            return Err(error);
        }
        let mut position = start;
        for header in batches {
            assert!(header.base_offset >= self.next_offset, "offsets must increase");
            self.index_batch(header, position, config);
            position += header.size_bytes() as u64;
        }
        assert_eq!(position, start + total);
        self.size = position;
        self.preallocation.after_write(position, &self.log);
        Ok(())
    }

    /// Called when the segment stops being the active one (roll) and on close: the final time
    /// index entry, and every index entry written out.
    pub fn seal(&mut self) -> io::Result<()> {
        self.trim_preallocation()?;
        if self.max_timestamp != NO_TIMESTAMP {
            self.time_index.maybe_append(self.max_timestamp, self.relative(self.offset_of_max_timestamp));
        }
        self.persist_indexes()
    }

    /// Cuts the file back to the log's end: no zeros ahead any more (a sealed segment is
    /// Kafka's format, byte for byte). Durable with the segment's next fsync.
    pub fn trim_preallocation(&mut self) -> io::Result<()> {
        if self.preallocation.stop() > self.size {
            self.log.set_len(self.size)?;
        }
        self.preallocation = Preallocation::new(0, self.size);
        Ok(())
    }

    /// Index entries held in memory only.
    pub fn index_entries_pending(&self) -> usize {
        self.offset_index.pending() + self.time_index.pending()
    }

    pub fn persist_indexes(&mut self) -> io::Result<()> {
        self.offset_index.persist()?;
        self.time_index.persist()
    }

    /// Header of the batch at `position`, or `None` when fewer than a header's bytes remain.
    pub fn read_header_at(&self, position: u64) -> io::Result<Option<BatchHeader>> {
        if position + BATCH_HEADER_BYTES as u64 > self.size {
            return Ok(None);
        }
        let mut bytes = [0u8; BATCH_HEADER_BYTES];
        self.log.read_exact_at(&mut bytes, position)?;
        Ok(Some(BatchHeader::read(&bytes)))
    }

    /// Whether any batch in `[position, position + size)` holds a record.
    pub fn holds_records(&self, mut position: u64, size: u64) -> io::Result<bool> {
        let end = position + size;
        while position < end {
            let Some(header) = self.read_header_at(position)? else { return Ok(false) };
            if header.record_count > 0 {
                return Ok(true);
            }
            position += header.size_bytes() as u64;
        }
        Ok(false)
    }

    /// The header at `position` if one starts below `limit` (the file's end, or a
    /// verification frontier).
    fn header_below(&self, position: u64, limit: u64) -> io::Result<Option<BatchHeader>> {
        if position >= limit {
            return Ok(None);
        }
        self.read_header_at(position)
    }

    /// Position and header of the first batch whose last offset is at least `offset`.
    pub fn translate_offset(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        self.translate_offset_below(offset, u64::MAX)
    }

    fn translate_offset_below(&self, offset: i64, limit: u64) -> io::Result<Option<(u64, BatchHeader)>> {
        let target = (offset - self.base_offset).clamp(0, RELATIVE_OFFSET_MAX);
        let mut position = self.offset_index.lookup(RelativeOffset(target as u32)).map_or(0, |(_, p)| p.0 as u64);
        while let Some(header) = self.header_below(position, limit)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Whole batches from the one holding `offset`: at most `max_bytes` (but at least one batch
    /// when `min_one_batch`), none starting at or above `upper_bound`. Trusts the bytes: reads
    /// that serve them go through `slice_verified`.
    pub fn slice(
        &self,
        offset: i64,
        max_bytes: u64,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> io::Result<Option<FileSlice>> {
        self.slice_below(offset, max_bytes, upper_bound, min_one_batch, u64::MAX)
    }

    /// `slice` reading no header at or past `limit` (a verification frontier: always a batch
    /// boundary, so every header below it frames a checked batch that ends at or before it).
    fn slice_below(
        &self,
        offset: i64,
        max_bytes: u64,
        upper_bound: i64,
        min_one_batch: bool,
        limit: u64,
    ) -> io::Result<Option<FileSlice>> {
        let Some((start, first)) = self.translate_offset_below(offset, limit)? else { return Ok(None) };
        let mut end = start;
        let mut next = Some(first);
        let mut last_offset = first.last_offset();
        let first_fits = min_one_batch || first.size_bytes() as u64 <= max_bytes;
        if first.base_offset < upper_bound && first_fits {
            end += first.size_bytes() as u64;
            next = self.header_below(end, limit)?;
            end = self.skip_by_index(end, start.saturating_add(max_bytes).min(limit), upper_bound, &mut next)?;
        }
        while let Some(header) = next {
            let size = header.size_bytes() as u64;
            if header.base_offset >= upper_bound || end - start + size > max_bytes {
                break;
            }
            end += size;
            last_offset = header.last_offset();
            next = self.header_below(end, limit)?;
        }
        if end == start {
            return Ok(None);
        }
        // The batch after the slice starts right after its last offset (or the slice ends the
        // segment). Stopped by the limit inside the segment, the slice ends with its last batch
        // (after an index jump, the offset before the batch jumped to: the walk read no more).
        let last_offset = match next {
            Some(h) => h.base_offset - 1,
            None if end >= self.size => self.next_offset - 1,
            None => last_offset.max(first.last_offset()),
        };
        Ok(Some(FileSlice::new(Arc::clone(&self.log), start, end - start, first.base_offset, last_offset)))
    }

    /// `slice`, for a read that serves the bytes: only checked batches (see `verify`). A read
    /// reaching a damaged batch is `CorruptBatch`; one before it stops short of it; one past
    /// the pass's frontier starts the pass and is `Unverified` (the caller waits and reads again).
    pub fn slice_verified(
        &self,
        offset: i64,
        max_bytes: u64,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> StorageResult<Option<FileSlice>> {
        let verification = &self.verification;
        if verification.is_clean() {
            return Ok(self.slice(offset, max_bytes, upper_bound, min_one_batch)?);
        }
        if let Some(damage) = verification.damage_holding(offset) {
            return Err(self.corrupt_batch(damage));
        }
        // Headers past the frontier are not read: their lengths are not checked yet. A read
        // that finds nothing below it waits for the pass.
        let frontier = verification.frontier();
        let Some(slice) = self.slice_below(offset, max_bytes, upper_bound, min_one_batch, frontier)? else {
            if frontier < self.size {
                verify::start_pass(verification, &self.log);
                return Err(StorageError::Unverified { base_offset: self.base_offset, position: frontier + 1 });
            }
            return Ok(None);
        };
        let end = slice.position + slice.size;
        match verification.first_damage_in(slice.position, end) {
            None => Ok(Some(slice)),
            Some(damage) if damage.position == slice.position => Err(self.corrupt_batch(damage)),
            Some(damage) => Ok(Some(FileSlice::new(
                Arc::clone(&self.log),
                slice.position,
                damage.position - slice.position,
                slice.first_offset,
                damage.first_offset - 1,
            ))),
        }
    }

    fn corrupt_batch(&self, damage: verify::DamagedBatch) -> StorageError {
        StorageError::CorruptBatch {
            path: self.log_path.display().to_string(),
            position: damage.position,
            first_offset: damage.first_offset,
            last_offset: damage.last_offset,
            reason: damage.reason,
        }
    }

    /// Jumps from `end` to the last indexed batch that starts at or below `position_limit` and
    /// whose last offset is below `upper_bound`: every batch before it is whole and readable, so
    /// the header walk that follows only covers the last index interval.
    fn skip_by_index(
        &self,
        end: u64,
        position_limit: u64,
        upper_bound: i64,
        next: &mut Option<BatchHeader>,
    ) -> io::Result<u64> {
        let relative_bound = (upper_bound - 1 - self.base_offset).clamp(0, RELATIVE_OFFSET_MAX) as u32;
        let limit = Position(position_limit.min(self.size).min(u32::MAX as u64) as u32);
        match self.offset_index.floor(limit, RelativeOffset(relative_bound)) {
            Some((_, position)) if position.0 as u64 > end && (position.0 as u64) < position_limit => {
                *next = self.read_header_at(position.0 as u64)?;
                Ok(position.0 as u64)
            }
            _ => Ok(end),
        }
    }

    /// First record at or after `start_offset` whose timestamp is at least `target_ms` (Kafka's
    /// `LogSegment.findOffsetByTimestamp`: compressed batches are decompressed to find it).
    pub fn find_offset_by_timestamp(&self, target_ms: i64, start_offset: i64) -> StorageResult<Option<(i64, i64)>> {
        let from_offset =
            self.time_index.lookup(target_ms).map_or(self.base_offset, |(_, r)| self.base_offset + r.0 as i64);
        let Some((mut position, _)) = self.translate_offset(from_offset.max(start_offset))? else { return Ok(None) };
        while let Some(header) = self.read_header_at(position)? {
            if header.max_timestamp >= target_ms && header.last_offset() >= start_offset {
                let batch = self.read_batch(position, &header)?;
                let records = codec::records_of(&header, &batch)?;
                let found = batch::first_record_where(&header, &records, |offset, timestamp| {
                    offset >= start_offset && timestamp >= target_ms
                });
                if found.is_some() {
                    return Ok(found);
                }
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// The first record carrying this segment's max timestamp, as (offset, timestamp): the
    /// batch that first reached it holds it (Kafka's ListOffsets MAX_TIMESTAMP).
    pub fn record_with_max_timestamp(&self) -> StorageResult<Option<(i64, i64)>> {
        if self.max_timestamp == NO_TIMESTAMP {
            return Ok(None);
        }
        let Some((position, header)) = self.translate_offset(self.offset_of_max_timestamp)? else { return Ok(None) };
        let batch = self.read_batch(position, &header)?;
        let records = codec::records_of(&header, &batch)?;
        let max = self.max_timestamp;
        let found = batch::first_record_where(&header, &records, |_, timestamp| timestamp == max);
        Ok(Some(found.unwrap_or((header.last_offset(), max))))
    }

    fn read_batch(&self, position: u64, header: &BatchHeader) -> io::Result<Vec<u8>> {
        let mut batch = vec![0u8; header.size_bytes()];
        self.log.read_exact_at(&mut batch, position)?;
        Ok(batch)
    }

    /// After a clean shutdown: reads batch headers from the last index entry to the end to find
    /// the next offset and the max timestamp. `false` if the tail is malformed (then the caller
    /// recovers the segment instead).
    pub fn load_tail(&mut self) -> io::Result<bool> {
        let (mut position, skipped) = match self.offset_index.last() {
            Some((relative, position)) => (position.0 as u64, self.base_offset + relative.0 as i64),
            None => (0, self.base_offset - 1),
        };
        if let Some((timestamp, relative)) = self.time_index.last() {
            self.max_timestamp = timestamp;
            self.offset_of_max_timestamp = self.base_offset + relative.0 as i64;
        }
        self.next_offset = skipped + 1;
        // Bytes since the last index entry are counted again so appends keep Kafka's cadence.
        self.bytes_since_last_index_entry = 0;
        let first = self.read_header_at(0)?;
        self.rolling_timestamp = first.map(|h| h.max_timestamp);
        while position < self.size {
            let Some(header) = self.read_header_at(position)? else { return Ok(false) };
            if batch::check_header(&header, self.size - position).is_err() || header.next_offset() <= skipped {
                return Ok(false);
            }
            if header.max_timestamp > self.max_timestamp {
                if header.last_offset() < self.offset_of_max_timestamp {
                    return Ok(false); // the time index names a later offset for a smaller timestamp
                }
                self.max_timestamp = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset();
            }
            self.next_offset = header.next_offset();
            self.bytes_since_last_index_entry += header.size_bytes() as u64;
            position += header.size_bytes() as u64;
        }
        // Trusted, not read: verified before it is first served.
        self.verification = Verification::pending(self.base_offset, self.size, self.next_offset);
        Ok(self.time_index.points_below(self.relative_end()))
    }

    fn relative_end(&self) -> RelativeOffset {
        RelativeOffset((self.next_offset - self.base_offset).clamp(0, RELATIVE_OFFSET_MAX) as u32)
    }

    /// Reads every batch, checks framing, CRC, contents and increasing offsets, and rebuilds
    /// the offset and time indexes from scratch. Stops at the first bad batch; truncates nothing.
    /// The `.txnindex` is kept: the log drops its entries past whatever survives.
    pub fn recover(&mut self, config: &LogConfig) -> io::Result<ScanOutcome> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.size = self.log.metadata()?.len();
        self.next_offset = self.base_offset;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = self.base_offset;
        self.rolling_timestamp = None;
        self.bytes_since_last_index_entry = 0;
        self.verification = Verification::checked(self.base_offset); // every batch kept is checked here
        let log = Arc::clone(&self.log);
        let mut reader = WindowReader::new(&log, self.size);
        let mut position = 0u64;
        while position < self.size {
            let header = match check_batch(&mut reader, position, self.next_offset, self.base_offset) {
                Ok(header) => header,
                Err(reason) => {
                    if prealloc::zeros_from(&log, position, self.size)? {
                        return Ok(ScanOutcome {
                            valid_bytes: position,
                            next_offset: self.next_offset,
                            stop: None,
                            zero_tail: self.size - position,
                        });
                    }
                    let followed_by_valid_batch = reader
                        .header_at(position)?
                        .filter(|h| batch::check_header(h, self.size - position).is_ok())
                        .is_some_and(|h| {
                            check_batch(
                                &mut reader,
                                position + h.size_bytes() as u64,
                                self.next_offset,
                                self.base_offset,
                            )
                            .is_ok()
                        });
                    let stop = ScanStop { position, reason, followed_by_valid_batch };
                    return Ok(ScanOutcome {
                        valid_bytes: position,
                        next_offset: self.next_offset,
                        stop: Some(stop),
                        zero_tail: 0,
                    });
                }
            };
            self.index_batch(&header, position, config);
            position += header.size_bytes() as u64;
        }
        Ok(ScanOutcome { valid_bytes: position, next_offset: self.next_offset, stop: None, zero_tail: 0 })
    }

    /// Whether the segment starts with a whole, valid batch.
    pub fn starts_with_valid_batch(&self) -> io::Result<bool> {
        let mut reader = WindowReader::new(&self.log, self.size);
        Ok(check_batch(&mut reader, 0, self.base_offset, self.base_offset).is_ok())
    }

    pub fn truncate_bytes(&mut self, size: u64) -> io::Result<()> {
        assert!(size <= self.size);
        self.preallocation.stop();
        self.log.set_len(size)?;
        self.size = size;
        self.preallocation.cut(size);
        self.preallocation.after_write(size, &self.log);
        Ok(())
    }

    /// Moves every file of the segment into `dir` (replacing older copies of the same names).
    pub fn move_files_to(self, dir: &Path) -> io::Result<()> {
        for suffix in SEGMENT_SUFFIXES {
            let path = self.log_path.with_extension(suffix);
            let Some(name) = path.file_name() else { continue };
            match fs::rename(&path, dir.join(name)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// Gives up the log file to the caller (a deleted log's, for the deleter) and keeps
    /// `placeholder` in its place: the segment is never read again.
    pub fn release_file(&mut self, placeholder: &Arc<File>) -> Arc<File> {
        std::mem::replace(&mut self.log, Arc::clone(placeholder))
    }

    /// The log file's name in its directory.
    pub fn log_file_name(&self) -> &std::ffi::OsStr {
        self.log_path.file_name().expect("a segment file has a name")
    }

    /// Takes the segment out of the log at once: its files are renamed `<name>.deleted` and
    /// handed to the background deleter, which cuts them in paced pieces once no reader holds
    /// the log file any more (see `deleter`). The caller syncs the directory.
    pub fn delete_files(self) -> io::Result<()> {
        let mut doomed = Vec::with_capacity(SEGMENT_SUFFIXES.len());
        for suffix in SEGMENT_SUFFIXES {
            let path = self.log_path.with_extension(suffix);
            let deleted = path.with_extension(format!("{suffix}.{DELETED_SUFFIX}"));
            match fs::rename(&path, &deleted) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
                Ok(()) => doomed.push((suffix, deleted)),
            }
        }
        let log = Arc::clone(&self.log);
        drop(self); // its indexes are unmapped before the deleter opens their files
        for (suffix, path) in doomed {
            deleter::delete_file(path, (suffix == LOG_SUFFIX).then(|| Arc::clone(&log)))?;
        }
        Ok(())
    }
}

impl Drop for Segment {
    /// No zero write may outlive the segment (a log dropped without close, as in a crash, and
    /// opened again in the same process must not meet one).
    fn drop(&mut self) {
        self.preallocation.stop();
    }
}

/// `pwritev` of every piece at `position` on (std has no positional vectored write yet).
fn write_all_vectored_at(file: &File, mut pieces: &mut [IoSlice<'_>], mut position: u64) -> io::Result<()> {
    while !pieces.is_empty() {
        let count = pieces.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the slices outlive the call.
        let written = unsafe {
            libc::pwritev(file.as_raw_fd(), pieces.as_ptr().cast::<libc::iovec>(), count, position as libc::off_t)
        };
        if written < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "log write made no progress"));
        }
        position += written as u64;
        IoSlice::advance_slices(&mut pieces, written as usize);
    }
    Ok(())
}

/// Checks the whole batch at `position`: framing, CRC, contents, offsets at or after
/// `expected_offset` and inside the segment. Errors are the reason, for the recovery log.
pub(crate) fn check_batch(
    reader: &mut WindowReader<'_>,
    position: u64,
    expected_offset: i64,
    base_offset: i64,
) -> Result<BatchHeader, String> {
    let header = reader
        .header_at(position)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} bytes left, too few for a batch header", reader.file_size - position))?;
    batch::check_header(&header, reader.file_size - position).map_err(|e| e.to_string())?;
    let crc = reader
        .crc(position + batch::CRC_START as u64, header.size_bytes() as u64 - batch::CRC_START as u64)
        .map_err(|e| e.to_string())?;
    batch::check_crc(&header, crc).map_err(|e| e.to_string())?;
    batch::check_stored_contents(&header).map_err(|e| e.to_string())?;
    if header.base_offset < expected_offset || header.last_offset() - base_offset > RELATIVE_OFFSET_MAX {
        return Err(format!(
            "batch offsets {}..={} out of order (expected {expected_offset} or more)",
            header.base_offset,
            header.last_offset()
        ));
    }
    Ok(header)
}

/// Positional reads through one bounded buffer, so a scan costs a few syscalls per MiB and a
/// corrupt length can never make it allocate.
pub(crate) struct WindowReader<'a> {
    file: &'a File,
    file_size: u64,
    buffer: Vec<u8>,
    window_start: u64,
    window_len: usize,
}

impl<'a> WindowReader<'a> {
    pub(crate) fn new(file: &'a File, file_size: u64) -> Self {
        WindowReader { file, file_size, buffer: vec![0; RECOVERY_READ_BUFFER_BYTES], window_start: 0, window_len: 0 }
    }

    /// `len` bytes at `position` (`len` at most the buffer size, all inside the file).
    fn bytes(&mut self, position: u64, len: usize) -> io::Result<&[u8]> {
        assert!(len <= self.buffer.len() && position + len as u64 <= self.file_size);
        let inside =
            position >= self.window_start && position + len as u64 <= self.window_start + self.window_len as u64;
        if !inside {
            let want = (self.file_size - position).min(self.buffer.len() as u64) as usize;
            self.file.read_exact_at(&mut self.buffer[..want], position)?;
            self.window_start = position;
            self.window_len = want;
        }
        let at = (position - self.window_start) as usize;
        Ok(&self.buffer[at..at + len])
    }

    pub(crate) fn header_at(&mut self, position: u64) -> io::Result<Option<BatchHeader>> {
        if position + BATCH_HEADER_BYTES as u64 > self.file_size {
            return Ok(None);
        }
        Ok(Some(BatchHeader::read(self.bytes(position, BATCH_HEADER_BYTES)?)))
    }

    fn crc(&mut self, mut position: u64, mut len: u64) -> io::Result<u32> {
        let mut crc = 0u32;
        while len > 0 {
            let chunk = len.min(self.buffer.len() as u64) as usize;
            crc = crc32c::crc32c_append(crc, self.bytes(position, chunk)?);
            position += chunk as u64;
            len -= chunk as u64;
        }
        Ok(crc)
    }
}
