//! Sparse offset and time indexes in Kafka's byte format.
//!
//! `.index`: entries of (4-byte offset relative to the segment base, 4-byte position), where
//! the position is the start of the batch whose *last* offset is the entry's offset.
//! `.timeindex`: entries of (8-byte timestamp, 4-byte relative offset), timestamps strictly
//! increasing. No checksum: both are derived data, rebuilt from the log when in doubt.
//!
//! Entries live in memory and are written to the file in one go by `persist` (at roll and
//! close, and at a group commit once `INDEX_ENTRIES_PENDING_MAX` wait); the file never holds a
//! partial or preallocated entry, so its length is always a whole number of entries, which is
//! what Kafka's tools expect of a closed index.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits::{OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};

/// A byte position inside one segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub u32);

/// An offset minus its segment's base offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelativeOffset(pub u32);

fn read_all(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn open_for_append(path: &Path, truncate: bool) -> io::Result<Arc<File>> {
    if truncate {
        File::create(path)?;
    }
    Ok(Arc::new(OpenOptions::new().create(true).append(true).open(path)?))
}

/// One index file: entries in memory, the first `persisted` of them also on disk.
struct IndexFile<E> {
    path: PathBuf,
    file: Arc<File>,
    entries: Vec<E>,
    persisted: usize,
}

impl<E: Copy> IndexFile<E> {
    fn pending(&self) -> usize {
        self.entries.len() - self.persisted
    }

    fn write_pending(&mut self, encode: impl Fn(&E, &mut Vec<u8>)) -> io::Result<()> {
        if self.persisted == self.entries.len() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for entry in &self.entries[self.persisted..] {
            encode(entry, &mut bytes);
        }
        let start = self.file.metadata()?.len();
        if let Err(error) = (&*self.file).write_all(&bytes) {
            self.file.set_len(start)?; // a full disk: no partial entry stays; all stay pending
            return Err(error);
        }
        self.persisted = self.entries.len();
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.file = open_for_append(&self.path, true)?;
        self.entries.clear();
        self.persisted = 0;
        Ok(())
    }
}

pub struct OffsetIndex {
    inner: IndexFile<(RelativeOffset, Position)>,
}

impl OffsetIndex {
    /// Opens the index at `path`. Returns the index and whether its content passed the sanity
    /// check (`false`: it was missing or damaged and now starts empty; the caller rebuilds it).
    pub fn open(path: &Path, log_size: u64) -> io::Result<(OffsetIndex, bool)> {
        let loaded = read_all(path)?.and_then(|bytes| Self::decode(&bytes, log_size));
        let sane = loaded.is_some();
        let entries = loaded.unwrap_or_default();
        let file = open_for_append(path, !sane)?;
        let persisted = entries.len();
        Ok((OffsetIndex { inner: IndexFile { path: path.to_owned(), file, entries, persisted } }, sane))
    }

    /// Entries must strictly increase in offset and position, and point inside the log.
    fn decode(bytes: &[u8], log_size: u64) -> Option<Vec<(RelativeOffset, Position)>> {
        if !bytes.len().is_multiple_of(OFFSET_INDEX_ENTRY_BYTES) {
            return None;
        }
        let mut entries = Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_BYTES);
        for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let relative = RelativeOffset(u32::from_be_bytes(chunk[0..4].try_into().ok()?));
            let position = Position(u32::from_be_bytes(chunk[4..8].try_into().ok()?));
            let increasing = entries.last().is_none_or(|&(r, p)| relative > r && position > p);
            if !increasing || relative.0 > i32::MAX as u32 || position.0 as u64 >= log_size {
                return None;
            }
            entries.push((relative, position));
        }
        Some(entries)
    }

    pub fn append(&mut self, relative: RelativeOffset, position: Position) {
        if let Some(&(last_relative, last_position)) = self.inner.entries.last() {
            assert!(relative > last_relative && position > last_position, "index entries must increase");
        }
        self.inner.entries.push((relative, position));
    }

    /// The entry with the largest offset at or below `relative`, if any.
    pub fn lookup(&self, relative: RelativeOffset) -> Option<(RelativeOffset, Position)> {
        let entries = &self.inner.entries;
        let at = entries.partition_point(|&(r, _)| r <= relative);
        (at > 0).then(|| entries[at - 1])
    }

    /// The last entry at or below both `position` and `relative` (entries grow in both).
    pub fn floor(&self, position: Position, relative: RelativeOffset) -> Option<(RelativeOffset, Position)> {
        let entries = &self.inner.entries;
        let at = entries.partition_point(|&(r, p)| p <= position && r <= relative);
        (at > 0).then(|| entries[at - 1])
    }

    pub fn last(&self) -> Option<(RelativeOffset, Position)> {
        self.inner.entries.last().copied()
    }
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }
    /// Entries not yet written to the file.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }
    pub fn persist(&mut self) -> io::Result<()> {
        self.inner.write_pending(|(r, p), out| {
            out.extend_from_slice(&r.0.to_be_bytes());
            out.extend_from_slice(&p.0.to_be_bytes());
        })
    }
    pub fn reset(&mut self) -> io::Result<()> {
        self.inner.reset()
    }
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.inner.file)
    }
}

pub struct TimeIndex {
    inner: IndexFile<(i64, RelativeOffset)>,
}

impl TimeIndex {
    /// As `OffsetIndex::open`. The caller also checks `points_below` once it knows the log end.
    pub fn open(path: &Path) -> io::Result<(TimeIndex, bool)> {
        let loaded = read_all(path)?.and_then(|bytes| Self::decode(&bytes));
        let sane = loaded.is_some();
        let entries = loaded.unwrap_or_default();
        let file = open_for_append(path, !sane)?;
        let persisted = entries.len();
        Ok((TimeIndex { inner: IndexFile { path: path.to_owned(), file, entries, persisted } }, sane))
    }

    fn decode(bytes: &[u8]) -> Option<Vec<(i64, RelativeOffset)>> {
        if !bytes.len().is_multiple_of(TIME_INDEX_ENTRY_BYTES) {
            return None;
        }
        let mut entries = Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_BYTES);
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().ok()?);
            let relative = RelativeOffset(u32::from_be_bytes(chunk[8..12].try_into().ok()?));
            let ordered = entries.last().is_none_or(|&(t, r)| timestamp > t && relative >= r);
            if !ordered || relative.0 > i32::MAX as u32 {
                return None;
            }
            entries.push((timestamp, relative));
        }
        Some(entries)
    }

    /// Kafka's `maybeAppend`: only a timestamp above the last entry's makes a new entry.
    pub fn maybe_append(&mut self, timestamp: i64, relative: RelativeOffset) {
        if let Some(&(last_timestamp, last_relative)) = self.inner.entries.last() {
            assert!(relative >= last_relative, "time index offsets must not go back");
            if timestamp <= last_timestamp {
                return;
            }
        }
        self.inner.entries.push((timestamp, relative));
    }

    /// The entry with the largest timestamp at or below `timestamp`, if any.
    pub fn lookup(&self, timestamp: i64) -> Option<(i64, RelativeOffset)> {
        let entries = &self.inner.entries;
        let at = entries.partition_point(|&(t, _)| t <= timestamp);
        (at > 0).then(|| entries[at - 1])
    }

    /// Whether every entry names an offset below `end` (the segment's next relative offset).
    pub fn points_below(&self, end: RelativeOffset) -> bool {
        self.inner.entries.last().is_none_or(|&(_, r)| r < end)
    }

    pub fn last(&self) -> Option<(i64, RelativeOffset)> {
        self.inner.entries.last().copied()
    }
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }
    /// Entries not yet written to the file.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }
    pub fn persist(&mut self) -> io::Result<()> {
        self.inner.write_pending(|(t, r), out| {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&r.0.to_be_bytes());
        })
    }
    pub fn reset(&mut self) -> io::Result<()> {
        self.inner.reset()
    }
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.inner.file)
    }
}
