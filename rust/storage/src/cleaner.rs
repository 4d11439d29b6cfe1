//! The log cleaner: `cleanup.policy=compact`, with Kafka's semantics (its `LogCleaner`).
//!
//! A pass over one log:
//! 1. **Plan** (log lock held briefly): the cleanable range runs from the log start to the first
//!    uncleanable offset: the active segment's base, the upper bound the broker gives (the last
//!    stable offset, at most the high watermark), the recovery point, and the first segment
//!    younger than `min.compaction.lag.ms`, snapped down to a segment base. Segments below it
//!    are never written again by appends, so the pass reads them without the lock.
//! 2. **Offset map**: the dirty part (from the first dirty offset, where the last pass ended)
//!    is read and each key's latest offset kept (`OffsetMap`, bounded: a full map ends the
//!    dirty range there). Records of aborted transactions and control batches count for nothing.
//! 3. **Clean**: every segment from the log start up to the map's end, in groups that fit one
//!    segment, is rewritten into `<base>.log.cleaned` (and its indexes) keeping, per batch:
//!    - a record whose offset is the latest for its key (or past the map's end); a tombstone
//!      only until its batch's delete horizon (set to now + `delete.retention.ms` by the first
//!      pass that keeps it: KIP-534); records without a key go;
//!    - nothing of an aborted transaction; an ABORT marker until no data of its transaction is
//!      left (its `.txnindex` entry stays with it), a COMMIT marker until no data of its
//!      transaction was read in the pass, each then given a delete horizon and dropped after;
//!    - the last batch of each active producer, even emptied (its sequence numbers and epoch
//!      must survive), and the last batch of each group, even emptied, so that a segment still
//!      ends where the next begins (Kafka keeps only the pass's last one; keeping every group's
//!      lets recovery go on treating a short flushed segment as lost data);
//!    - batches keep their base and last offsets and producer fields; a batch that lost records
//!      or gained a horizon is rebuilt with its codec, others are copied as they are.
//!
//!    Every batch read is checked (framing, CRC-32C): the cleaner never rewrites damage into a
//!    fresh CRC.
//! 4. **Swap** (log lock held): see `Log::swap_cleaned`; crash-safe through a manifest.
//! 5. The first dirty offset moves to the map's end (in `log-state.checkpoint`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{self, BatchHeader, CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT};
use crate::codec;
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::limits::{
    BATCH_HEADER_BYTES, CLEANER_READ_BUFFER_BYTES, CLEANER_WRITE_BUFFER_BYTES, RELATIVE_OFFSET_MAX, SEGMENT_BYTES_MAX,
};
use crate::offset_map::OffsetMap;
use crate::records::{self, Record};
use crate::segment::{segment_file_named, Segment, SEGMENT_SUFFIXES};
use crate::shared::SharedLog;
use crate::txn_index::AbortedTxn;

/// Name suffix of the files a pass writes before the swap.
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// A producer the broker's producer state still knows (Kafka's `lastRecordsOfActiveProducers`):
/// the last offset of its last data batch (-1: none since its epoch began) and its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub last_data_offset: i64,
    pub producer_epoch: i16,
}

/// What a log offers the cleaner now (Kafka's `LogToClean`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cleanable {
    pub first_dirty_offset: i64,
    /// A segment base: nothing at or past it is cleaned in this pass.
    pub first_uncleanable_offset: i64,
    /// Bytes of segments below the first dirty offset (cleaned before).
    pub clean_bytes: u64,
    /// Bytes of dirty segments below the first uncleanable offset.
    pub cleanable_bytes: u64,
    /// How far past `max.compaction.lag.ms` the oldest dirty segment is (0: not past).
    pub compaction_delay_ms: i64,
}

impl Cleanable {
    /// Kafka's `cleanableRatio`: dirty bytes over all bytes up to the first uncleanable offset.
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 {
            0.0
        } else {
            self.cleanable_bytes as f64 / total as f64
        }
    }
}

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CleanReport {
    pub first_dirty_offset: i64,
    /// The new first dirty offset: the map covered the log up to here.
    pub end_offset: i64,
    pub segments_read: usize,
    pub segments_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_retained: u64,
    pub map_entries: usize,
    pub map_utilization: f64,
    pub duration_ms: u64,
}

/// One non-active segment as the plan saw it; its bytes no longer change.
#[derive(Clone)]
pub struct SourceSegment {
    pub base_offset: i64,
    /// The next segment's base: no batch here may reach it.
    pub limit_offset: i64,
    pub file: Arc<File>,
    pub path: PathBuf,
    pub size: u64,
    pub next_offset: i64,
    pub index_entries: (usize, usize),
}

/// A pass's input, taken under the log lock.
pub struct CleanPlan {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub first_dirty_offset: i64,
    pub first_uncleanable_offset: i64,
    /// Position of the batch holding the first dirty offset in its segment.
    pub first_dirty_position: u64,
    /// Every segment from the log start below the first uncleanable offset.
    pub segments: Vec<SourceSegment>,
    /// Every `.txnindex` entry of the log, in log order.
    pub aborted: Vec<AbortedTxn>,
}

/// A group's cleaned segment, written and synced under `.cleaned` names, waiting for its swap.
pub struct CleanedGroup {
    pub base_offset: i64,
    /// The segments it replaces, with the files the pass read (to check they are still those).
    pub replaces: Vec<(i64, Arc<File>)>,
    pub segment: Segment,
}

/// Kafka's `Throttler` for `log.cleaner.io.max.bytes.per.second`: bytes read and written are
/// counted, and the pass sleeps whenever it runs ahead of the rate. It also carries the abort
/// flag (Kafka's `checkDone`): once set, the pass stops at its next batch, its files removed.
pub struct Throttle {
    bytes_per_sec: f64,
    started: Instant,
    bytes: f64,
    abort: Arc<AtomicBool>,
}

impl Throttle {
    /// `bytes_per_sec` 0 (or infinite): no limit.
    pub fn new(bytes_per_sec: f64, abort: Arc<AtomicBool>) -> Throttle {
        Throttle { bytes_per_sec, started: Instant::now(), bytes: 0.0, abort }
    }

    fn limited(&self) -> bool {
        self.bytes_per_sec > 0.0 && self.bytes_per_sec.is_finite()
    }

    pub fn maybe_throttle(&mut self, bytes: u64) -> Result<()> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(StorageError::Closed);
        }
        if !self.limited() {
            return Ok(());
        }
        self.bytes += bytes as f64;
        let due = Duration::from_secs_f64(self.bytes / self.bytes_per_sec);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        Ok(())
    }
}

/// Kafka's `CleanedTransactionMetadata`: which transactions the batches read so far belong to.
struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: BinaryHeap<Reverse<(i64, i64, i64, i64)>>,
    /// Producer id → (the aborted transaction, whether a batch of it was read).
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    ongoing_committed: HashSet<i64>,
    /// `.txnindex` entries of the markers kept in the group being written.
    cleaned_index: Vec<AbortedTxn>,
}

impl TxnTracker {
    fn new(aborted: impl Iterator<Item = AbortedTxn>) -> TxnTracker {
        let pending =
            aborted.map(|t| Reverse((t.first_offset, t.last_offset, t.producer_id, t.last_stable_offset))).collect();
        TxnTracker {
            pending,
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
            cleaned_index: Vec::new(),
        }
    }

    fn consume_up_to(&mut self, offset: i64) {
        while let Some(&Reverse((first_offset, last_offset, producer_id, last_stable_offset))) = self.pending.peek() {
            if first_offset > offset {
                break;
            }
            self.pending.pop();
            let txn = AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset };
            self.ongoing_aborted.entry(producer_id).or_insert((txn, false));
        }
    }

    /// A data batch: whether it belongs to an aborted transaction (then it may go).
    fn on_batch_read(&mut self, header: &BatchHeader) -> bool {
        self.consume_up_to(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        match self.ongoing_aborted.get_mut(&header.producer_id) {
            Some((_, observed)) => {
                *observed = true;
                true
            }
            None => {
                self.ongoing_committed.insert(header.producer_id);
                false
            }
        }
    }

    /// A control batch of type `control_type` (`None`: no record left): whether its
    /// transaction has no data left, so that the marker may go once its horizon passes.
    fn on_control_batch_read(&mut self, header: &BatchHeader, control_type: Option<i16>) -> bool {
        self.consume_up_to(header.last_offset());
        match control_type {
            None => true,
            Some(CONTROL_TYPE_ABORT) => match self.ongoing_aborted.remove(&header.producer_id) {
                Some((txn, true)) => {
                    self.cleaned_index.push(txn);
                    false
                }
                _ => true,
            },
            Some(CONTROL_TYPE_COMMIT) => !self.ongoing_committed.remove(&header.producer_id),
            Some(_) => false,
        }
    }
}

/// Reads the batches of one segment file in order, in a bounded window, checking each.
struct BatchReader<'a> {
    source: &'a SourceSegment,
    buffer: Vec<u8>,
    window_start: u64,
    window_len: usize,
    position: u64,
    expected_offset: i64,
}

impl<'a> BatchReader<'a> {
    fn new(source: &'a SourceSegment, position: u64) -> BatchReader<'a> {
        BatchReader {
            source,
            buffer: vec![0; CLEANER_READ_BUFFER_BYTES],
            window_start: 0,
            window_len: 0,
            position,
            expected_offset: source.base_offset,
        }
    }

    fn damaged(&self, reason: String) -> StorageError {
        StorageError::CorruptBatch {
            path: self.source.path.display().to_string(),
            position: self.position,
            first_offset: self.expected_offset,
            last_offset: self.expected_offset,
            reason: format!("{reason} (found by the cleaner)"),
        }
    }

    /// `len` bytes at `position`, from the window (refilled, grown for a large batch).
    fn bytes(&mut self, position: u64, len: usize) -> Result<&[u8]> {
        let inside =
            position >= self.window_start && position + len as u64 <= self.window_start + self.window_len as u64;
        if !inside {
            if len > self.buffer.len() {
                self.buffer.resize(len, 0);
            }
            let want = (self.source.size - position).min(self.buffer.len() as u64) as usize;
            self.source.file.read_exact_at(&mut self.buffer[..want], position)?;
            self.window_start = position;
            self.window_len = want;
        }
        let at = (position - self.window_start) as usize;
        Ok(&self.buffer[at..at + len])
    }

    /// The next whole batch and its header, checked; `None` at the end of the file.
    fn next_batch(&mut self) -> Result<Option<(BatchHeader, u64, &[u8])>> {
        let position = self.position;
        let available = self.source.size.saturating_sub(position);
        if available == 0 {
            return Ok(None);
        }
        if available < BATCH_HEADER_BYTES as u64 {
            return Err(self.damaged(format!("{available} bytes left, too few for a batch header")));
        }
        let header = BatchHeader::read(self.bytes(position, BATCH_HEADER_BYTES)?);
        if let Err(error) = batch::check_header(&header, available) {
            return Err(self.damaged(error.to_string()));
        }
        if header.base_offset < self.expected_offset
            || header.last_offset() - self.source.base_offset > RELATIVE_OFFSET_MAX
            || header.last_offset() >= self.source.limit_offset
        {
            return Err(self.damaged(format!(
                "batch offsets {}..={} out of order",
                header.base_offset,
                header.last_offset()
            )));
        }
        let size = header.size_bytes();
        let crc = batch::compute_crc(self.bytes(position, size)?);
        if let Err(error) = batch::check_crc(&header, crc).and_then(|()| batch::check_stored_contents(&header)) {
            return Err(self.damaged(error.to_string()));
        }
        self.position += size as u64;
        self.expected_offset = header.next_offset();
        let bytes = self.bytes(position, size)?;
        Ok(Some((header, position, bytes)))
    }
}

/// The control record type of a (checked) control batch.
fn control_type_of(header: &BatchHeader, batch: &[u8]) -> Result<Option<i16>> {
    let body = codec::records_of(header, batch)?;
    records::control_type(header, &body)
}

/// Step 2: the offset map over the dirty segments, from `start_offset` (at `start_position` of
/// the first one). Returns whether the map filled up.
fn build_offset_map(plan: &CleanPlan, map: &mut OffsetMap, throttle: &mut Throttle) -> Result<bool> {
    let start = plan.first_dirty_offset;
    let mut txns = TxnTracker::new(plan.aborted.iter().copied().filter(|t| t.last_offset >= start));
    let dirty: Vec<&SourceSegment> = plan.segments.iter().filter(|s| s.next_offset > start).collect();
    for (at, segment) in dirty.iter().enumerate() {
        let next_base = dirty.get(at + 1).map_or(plan.first_uncleanable_offset, |s| s.base_offset);
        let position = if segment.base_offset <= start { plan.first_dirty_position } else { 0 };
        let mut reader = BatchReader::new(segment, position);
        while let Some((header, _, bytes)) = reader.next_batch()? {
            throttle.maybe_throttle(bytes.len() as u64)?;
            if header.is_control() {
                let control_type = control_type_of(&header, bytes)?;
                txns.on_control_batch_read(&header, control_type);
            } else if !txns.on_batch_read(&header) {
                let body = codec::records_of(&header, bytes)?;
                for record in records::parse(&header, &body)? {
                    let offset = record.offset(&header);
                    if let (Some(key), true) = (record.key, offset >= start) {
                        if !map.put(key, offset) {
                            return Ok(true);
                        }
                    }
                }
            }
            if header.last_offset() >= start {
                map.latest_offset = map.latest_offset.max(header.last_offset());
            }
        }
        // Offsets the segment does not hold (cleaned away before) count as covered.
        map.latest_offset = map.latest_offset.max(next_base - 1);
    }
    Ok(false)
}

/// Kafka's `groupSegmentsBySize`: runs of segments whose total fits one segment and its indexes,
/// and whose offsets fit one segment's 4-byte relative offsets.
fn group_segments<'a>(segments: &[&'a SourceSegment], config: &LogConfig) -> Vec<Vec<&'a SourceSegment>> {
    let index_entries_max = config.offset_index_entries_max();
    let time_entries_max = config.time_index_entries_max();
    let mut groups: Vec<Vec<&SourceSegment>> = Vec::new();
    let mut at = 0;
    while at < segments.len() {
        let first = segments[at];
        let mut group = vec![first];
        let (mut bytes, mut entries, mut time_entries) = (first.size, first.index_entries.0, first.index_entries.1);
        at += 1;
        while let Some(next) = segments.get(at) {
            let fits = bytes + next.size <= config.segment_bytes
                && entries + next.index_entries.0 <= index_entries_max
                && time_entries + next.index_entries.1 <= time_entries_max
                && next.next_offset - 1 - first.base_offset <= RELATIVE_OFFSET_MAX;
            if !fits {
                break;
            }
            bytes += next.size;
            entries += next.index_entries.0;
            time_entries += next.index_entries.1;
            group.push(next);
            at += 1;
        }
        groups.push(group);
    }
    groups
}

/// Batches kept, waiting to be written to the cleaned segment in one vectored write.
struct Output {
    segment: Segment,
    pending: Vec<u8>,
    headers: Vec<BatchHeader>,
    bytes_written: u64,
    /// Where the emptied batch kept only to end the group sits in `pending` (bytes, headers):
    /// dropped again when the next group goes on into the same segment.
    group_end_empty: Option<(usize, usize)>,
}

impl Output {
    fn push(&mut self, header: BatchHeader, bytes: &[u8], config: &LogConfig) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        self.headers.push(header);
        if self.pending.len() >= CLEANER_WRITE_BUFFER_BYTES {
            self.write_out(config)?;
        }
        Ok(())
    }

    /// `push` for a batch already written at the end of `pending` (rebuilt in place).
    fn pushed(&mut self, header: BatchHeader, config: &LogConfig) -> Result<()> {
        self.headers.push(header);
        if self.pending.len() >= CLEANER_WRITE_BUFFER_BYTES {
            self.write_out(config)?;
        }
        Ok(())
    }

    fn write_out(&mut self, config: &LogConfig) -> Result<()> {
        if self.headers.is_empty() {
            return Ok(());
        }
        self.segment.append(&mut [IoSlice::new(&self.pending)], &self.headers, config)?;
        self.bytes_written += self.pending.len() as u64;
        self.pending.clear();
        self.headers.clear();
        Ok(())
    }
}

/// Per-pass settings and counters for `clean_group`.
struct Pass<'a> {
    plan: &'a CleanPlan,
    map: &'a OffsetMap,
    producers: &'a HashMap<i64, ActiveProducer>,
    now_ms: i64,
    txns: TxnTracker,
    report: CleanReport,
}

impl Pass<'_> {
    fn last_of_producer(&self, header: &BatchHeader) -> bool {
        self.producers.get(&header.producer_id).is_some_and(|p| {
            if p.last_data_offset >= 0 {
                header.last_offset() == p.last_data_offset
            } else {
                header.is_control() && header.producer_epoch == p.producer_epoch
            }
        })
    }

    fn keeps_record(&self, header: &BatchHeader, record: &Record<'_>) -> bool {
        let offset = record.offset(header);
        if offset > self.map.latest_offset {
            return true;
        }
        let Some(key) = record.key else { return false };
        let latest = offset >= self.map.get(key);
        let keeps_deletes = header.delete_horizon_ms().is_none_or(|horizon| self.now_ms < horizon);
        latest && (!record.value_is_null || keeps_deletes)
    }

    /// One batch (Kafka's `checkBatchRetention` and `filterTo` for it), into `output`.
    fn clean_batch(&mut self, header: &BatchHeader, bytes: &[u8], group_end: i64, output: &mut Output) -> Result<()> {
        let config = &self.plan.config;
        self.report.records_read += header.record_count as u64;
        let body = codec::records_of(header, bytes)?;
        let parsed = records::parse(header, &body)?;
        let control = header.is_control();
        let can_discard = if control {
            let control_type = parsed.first().map(|_| records::control_type(header, &body)).transpose()?.flatten();
            self.txns.on_control_batch_read(header, control_type)
        } else {
            self.txns.on_batch_read(header)
        };
        let discard_records = if control {
            can_discard && header.delete_horizon_ms().is_some_and(|horizon| horizon <= self.now_ms)
        } else {
            can_discard
        };
        let for_producer = header.has_producer_id() && self.last_of_producer(header);
        let retain_empty = for_producer || header.next_offset() == group_end;
        if discard_records && !retain_empty {
            return Ok(());
        }
        let kept: Vec<Record<'_>> = if discard_records {
            Vec::new()
        } else if control {
            parsed.clone()
        } else {
            parsed.iter().filter(|r| self.keeps_record(header, r)).copied().collect()
        };
        self.report.records_retained += kept.len() as u64;
        if kept.is_empty() {
            if retain_empty {
                let start = output.pending.len();
                let empty = records::empty_batch(header, &mut output.pending);
                debug_assert_eq!(output.pending.len() - start, BATCH_HEADER_BYTES);
                output.pushed(empty, config)?;
                if !for_producer {
                    output.group_end_empty = Some((start, output.headers.len() - 1));
                }
            }
            return Ok(());
        }
        let tombstones = !control && kept.iter().any(|r| r.value_is_null);
        let needs_horizon = (tombstones || (control && can_discard)) && header.delete_horizon_ms().is_none();
        if kept.len() == parsed.len() && !needs_horizon {
            return output.push(*header, bytes, config);
        }
        let horizon = if needs_horizon {
            Some(self.now_ms.saturating_add(config.delete_retention_ms))
        } else {
            header.delete_horizon_ms()
        };
        let rebuilt = records::rebuild_batch(header, &kept, horizon, &mut output.pending)?;
        output.pushed(rebuilt, config)
    }

    /// Step 3 for `groups[at]`: its cleaned segment, synced, under `.cleaned` names, and the
    /// index of the next group to clean. A group of which no record is left goes on into the
    /// next group's segment (offsets permitting), so that no segment holds nothing but emptied
    /// batches: a fetch answer without a record makes librdkafka grow its fetch size and, after
    /// a few, report MSG_SIZE_TOO_LARGE.
    fn clean_group(
        &mut self,
        groups: &[Vec<&SourceSegment>],
        at: usize,
        throttle: &mut Throttle,
    ) -> Result<(CleanedGroup, usize)> {
        let dir = &self.plan.dir;
        let base = groups[at][0].base_offset;
        remove_cleaned_files(dir, base)?;
        let segment = Segment::create_named(dir, base, CLEANED_SUFFIX)?;
        let mut output =
            Output { segment, pending: Vec::new(), headers: Vec::new(), bytes_written: 0, group_end_empty: None };
        self.txns.cleaned_index.clear();
        let mut next = at;
        let outcome = (|| -> Result<()> {
            loop {
                let group = &groups[next];
                let group_end = group[group.len() - 1].next_offset;
                output.group_end_empty = None;
                for source in group {
                    let mut reader = BatchReader::new(source, 0);
                    while let Some((header, _, bytes)) = reader.next_batch()? {
                        throttle.maybe_throttle(bytes.len() as u64)?;
                        self.clean_batch(&header, bytes, group_end, &mut output)?;
                    }
                    self.report.segments_read += 1;
                    self.report.bytes_read += source.size;
                }
                next += 1;
                let nothing_left = output.bytes_written == 0 && output.headers.iter().all(|h| h.record_count == 0);
                let fits = groups.get(next).is_some_and(|g| {
                    g[g.len() - 1].next_offset - 1 - base <= RELATIVE_OFFSET_MAX
                        && output.pending.len() as u64 + g.iter().map(|s| s.size).sum::<u64>() <= SEGMENT_BYTES_MAX
                });
                if !(nothing_left && fits) {
                    break;
                }
                if let Some((bytes, headers)) = output.group_end_empty.take() {
                    output.pending.truncate(bytes);
                    output.headers.truncate(headers);
                }
            }
            output.write_out(&self.plan.config)?;
            throttle.maybe_throttle(output.bytes_written)?;
            let segment = &mut output.segment;
            for txn in std::mem::take(&mut self.txns.cleaned_index) {
                segment.txn_index_mut().append(txn)?;
            }
            segment.seal()?;
            segment.log_file().sync_data()?;
            for file in segment.index_files().into_iter().chain(segment.txn_index().file()) {
                file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(error) = outcome {
            drop(output);
            let _ = remove_cleaned_files(dir, base);
            return Err(error);
        }
        self.report.bytes_written += output.bytes_written;
        self.report.segments_written += 1;
        let replaces = groups[at..next].iter().flatten().map(|s| (s.base_offset, Arc::clone(&s.file))).collect();
        Ok((CleanedGroup { base_offset: base, replaces, segment: output.segment }, next))
    }
}

/// Removes `<base>.*.cleaned` files (a pass that failed or was cut short).
pub fn remove_cleaned_files(dir: &Path, base: i64) -> std::io::Result<()> {
    for kind in SEGMENT_SUFFIXES {
        match fs::remove_file(segment_file_named(dir, base, kind, CLEANED_SUFFIX)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// One cleaning pass over `log` (see the module comment). `upper_bound` is the last stable
/// offset (never past the high watermark); `producers` the active producers. Blocking: run it
/// in a thread of its own. `Ok(None)`: nothing to clean. The map is empty again afterwards, its
/// memory back with the system until the next pass.
pub fn clean(
    log: &SharedLog,
    now_ms: i64,
    upper_bound: i64,
    producers: &[ActiveProducer],
    map: &mut OffsetMap,
    throttle: &mut Throttle,
) -> Result<Option<CleanReport>> {
    let outcome = clean_pass(log, now_ms, upper_bound, producers, map, throttle);
    map.clear();
    outcome
}

fn clean_pass(
    log: &SharedLog,
    now_ms: i64,
    upper_bound: i64,
    producers: &[ActiveProducer],
    map: &mut OffsetMap,
    throttle: &mut Throttle,
) -> Result<Option<CleanReport>> {
    let started = Instant::now();
    let Some(plan) = log.lock().clean_plan(now_ms, upper_bound)? else { return Ok(None) };
    map.clear();
    build_offset_map(&plan, map, throttle)?;
    let end_offset = map.latest_offset + 1;
    if end_offset <= plan.first_dirty_offset {
        return Ok(None);
    }
    let producers: HashMap<i64, ActiveProducer> = producers.iter().map(|p| (p.producer_id, *p)).collect();
    let first_base = plan.segments[0].base_offset;
    let mut pass = Pass {
        plan: &plan,
        map,
        producers: &producers,
        now_ms,
        txns: TxnTracker::new(plan.aborted.iter().copied().filter(|t| t.last_offset >= first_base)),
        report: CleanReport {
            first_dirty_offset: plan.first_dirty_offset,
            end_offset,
            map_entries: map.len(),
            map_utilization: map.utilization(),
            ..Default::default()
        },
    };
    let cleaned: Vec<&SourceSegment> = plan.segments.iter().filter(|s| s.base_offset < end_offset).collect();
    let groups = group_segments(&cleaned, &plan.config);
    let mut at = 0;
    while at < groups.len() {
        let (written, next) = pass.clean_group(&groups, at, throttle)?;
        at = next;
        if !log.lock().swap_cleaned(written)? {
            // Retention or DeleteRecords removed a segment meanwhile: the next pass starts over.
            return Ok(None);
        }
    }
    log.lock().set_first_dirty_offset(end_offset)?;
    let mut report = pass.report;
    // The plan holds the replaced segments' files open: closing them frees their blocks (tenths
    // of a second per GiB), part of the pass's cost.
    drop(groups);
    drop(cleaned);
    drop(plan);
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Some(report))
}

/// The manifest that commits a swap: `<base>.swap`, naming the segments the cleaned one
/// replaces and the kinds of file it has.
pub const SWAP_MANIFEST_SUFFIX: &str = "swap";
const SWAP_MANIFEST_HEADER: &str = "tidelog-cleaner-swap 0";

pub fn swap_manifest_path(dir: &Path, base: i64) -> PathBuf {
    segment_file_named(dir, base, SWAP_MANIFEST_SUFFIX, "")
}

pub fn write_swap_manifest(path: &Path, replaces: &[i64], kinds: &[&str]) -> std::io::Result<()> {
    let bases: Vec<String> = replaces.iter().map(i64::to_string).collect();
    let text = format!("{SWAP_MANIFEST_HEADER}\nreplaces {}\nkinds {}\n", bases.join(" "), kinds.join(" "));
    let temp = path.with_extension("swap.tmp");
    let mut file = File::create(&temp)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, path)
}

/// (bases replaced, kinds of the new segment) of a manifest; `None` if it does not parse.
pub fn read_swap_manifest(path: &Path) -> std::io::Result<Option<(Vec<i64>, Vec<String>)>> {
    let text = fs::read_to_string(path)?;
    let mut lines = text.lines();
    if lines.next() != Some(SWAP_MANIFEST_HEADER) {
        return Ok(None);
    }
    let field = |line: Option<&str>, name: &str| -> Option<Vec<String>> {
        let rest = line?.strip_prefix(name)?;
        Some(rest.split_whitespace().map(str::to_owned).collect())
    };
    let Some(replaces) = field(lines.next(), "replaces") else { return Ok(None) };
    let Some(kinds) = field(lines.next(), "kinds") else { return Ok(None) };
    let Ok(replaces) = replaces.iter().map(|b| b.parse::<i64>()).collect::<std::result::Result<Vec<_>, _>>() else {
        return Ok(None);
    };
    Ok(Some((replaces, kinds)))
}
