//! The aborted-transaction index of one segment: `<base offset>.txnindex`, Kafka's
//! `TransactionIndex` byte for byte.
//!
//! One 34-byte big-endian entry per aborted transaction whose ABORT marker sits in the segment:
//! version i16 (0) | producerId i64 | firstOffset i64 | lastOffset i64 (the marker) |
//! lastStableOffset i64 (the partition's LSO once the abort completed). No header, no checksum,
//! never preallocated. The file is created by the first entry: a segment without aborts has none,
//! as in Kafka. Entries are written to the file when appended (aborts are rare) and also kept in
//! memory; the owning `Log` has the file fsynced by its next group commit.
//!
//! On open, a trailing partial entry (a torn write) is cut off. A whole entry that breaks the
//! rules (unknown version, last offset below the segment's base offset, last offsets not strictly
//! increasing) is corruption: unlike the offset and time indexes this one cannot be rebuilt from
//! the log alone (the last stable offset at the abort is producer state), so the log refuses to
//! open rather than serve aborted records as committed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::limits::TXN_INDEX_ENTRY_BYTES;

/// The only entry version Kafka has written (`AbortedTxn.CURRENT_VERSION`).
pub const ABORTED_TXN_VERSION: i16 = 0;

/// One aborted transaction: its producer, its first offset in this partition, the offset of the
/// ABORT marker that ended it, and the last stable offset once it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The 34-byte entry, as Kafka writes it.
    pub fn encode(&self) -> [u8; TXN_INDEX_ENTRY_BYTES] {
        let mut out = [0u8; TXN_INDEX_ENTRY_BYTES];
        out[0..2].copy_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// Reads one entry; an unknown version is an error (the reason).
    pub fn decode(bytes: &[u8; TXN_INDEX_ENTRY_BYTES]) -> std::result::Result<AbortedTxn, String> {
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        if version != ABORTED_TXN_VERSION {
            return Err(format!("aborted transaction entry version {version}, expected {ABORTED_TXN_VERSION}"));
        }
        let field = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(AbortedTxn {
            producer_id: field(2),
            first_offset: field(10),
            last_offset: field(18),
            last_stable_offset: field(26),
        })
    }
}

/// Kafka's ordering rule: the last offsets of appended transactions strictly increase.
pub fn check_order(previous_last_offset: Option<i64>, txn: &AbortedTxn, path: &Path) -> Result<()> {
    match previous_last_offset {
        Some(previous) if txn.last_offset <= previous => Err(StorageError::InvalidAbortedTxn(format!(
            "the last offset of appended transactions must increase sequentially, but {} is not greater than \
             the current last offset {previous} of {}",
            txn.last_offset,
            path.display()
        ))),
        _ => Ok(()),
    }
}

pub struct TransactionIndex {
    path: PathBuf,
    base_offset: i64,
    /// `None` until the first entry creates the file (or when there was none on open).
    file: Option<Arc<File>>,
    /// Every entry, also in the file.
    entries: Vec<AbortedTxn>,
}

impl TransactionIndex {
    /// Loads the index at `path` if the file exists; a torn trailing partial entry is cut off.
    pub fn open(path: &Path, base_offset: i64) -> Result<TransactionIndex> {
        let mut index = TransactionIndex { path: path.to_owned(), base_offset, file: None, entries: Vec::new() };
        let file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(index),
            Err(error) => return Err(error.into()),
        };
        let bytes = fs::read(path)?;
        let whole = bytes.len() - bytes.len() % TXN_INDEX_ENTRY_BYTES;
        if whole != bytes.len() {
            file.set_len(whole as u64)?; // torn write of the last entry
        }
        for chunk in bytes[..whole].chunks_exact(TXN_INDEX_ENTRY_BYTES) {
            let txn = AbortedTxn::decode(chunk.try_into().expect("whole entry")).map_err(|e| index.corrupt(e))?;
            if txn.last_offset < base_offset {
                return Err(index.corrupt(format!(
                    "last offset {} of an aborted transaction is below the segment's base offset {base_offset}",
                    txn.last_offset
                )));
            }
            check_order(index.last_offset(), &txn, path).map_err(|e| index.corrupt(e.to_string()))?;
            index.entries.push(txn);
        }
        index.file = Some(Arc::new(file));
        Ok(index)
    }

    fn corrupt(&self, detail: String) -> StorageError {
        StorageError::CorruptLog { path: self.path.display().to_string(), detail }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(|t| t.last_offset)
    }
    /// The open file, once it exists.
    pub fn file(&self) -> Option<Arc<File>> {
        self.file.clone()
    }

    /// Writes one entry at the end of the file, creating the file first if needed (returns
    /// whether it did: the directory then needs an fsync). On a failed write the file is cut
    /// back so no partial entry remains.
    pub fn append(&mut self, txn: AbortedTxn) -> Result<bool> {
        check_order(self.last_offset(), &txn, &self.path)?;
        if txn.last_offset < self.base_offset {
            return Err(StorageError::InvalidAbortedTxn(format!(
                "last offset {} is below the base offset {} of {}",
                txn.last_offset,
                self.base_offset,
                self.path.display()
            )));
        }
        let created = self.file.is_none();
        if created {
            let file = OpenOptions::new().read(true).append(true).create(true).open(&self.path)?;
            self.file = Some(Arc::new(file));
        }
        let file = self.file.as_ref().expect("file just opened");
        if let Err(error) = (&**file).write_all(&txn.encode()) {
            file.set_len((self.entries.len() * TXN_INDEX_ENTRY_BYTES) as u64)?;
            return Err(error.into());
        }
        self.entries.push(txn);
        Ok(created)
    }

    /// Kafka's `collectAbortedTxns`: appends to `out` the entries overlapping the fetch range
    /// `[fetch_offset, upper_bound_offset)` (last offset at or after the fetch offset, first offset
    /// below the bound). Returns `true` (complete: later segments need not be read) at the first
    /// entry whose last stable offset reaches the bound.
    pub fn collect(&self, fetch_offset: i64, upper_bound_offset: i64, out: &mut Vec<AbortedTxn>) -> bool {
        for txn in &self.entries {
            if txn.last_offset >= fetch_offset && txn.first_offset < upper_bound_offset {
                out.push(*txn);
            }
            if txn.last_stable_offset >= upper_bound_offset {
                return true;
            }
        }
        false
    }

    /// Kafka's `truncateTo`: drops every entry from the first whose last offset is at or after
    /// `offset`. Returns how many went (the file then needs an fsync).
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<usize> {
        let keep = self.entries.partition_point(|t| t.last_offset < offset);
        let dropped = self.entries.len() - keep;
        if dropped > 0 {
            let file = self.file.as_ref().expect("entries come from the file");
            file.set_len((keep * TXN_INDEX_ENTRY_BYTES) as u64)?;
            self.entries.truncate(keep);
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64, last_stable_offset: i64) -> AbortedTxn {
        AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset }
    }

    #[test]
    fn encodes_kafkas_34_byte_big_endian_entry() {
        let entry = txn(0x0102_0304_0506_0708, 10, 20, -1);
        let bytes = entry.encode();
        let mut expected = vec![0u8, 0];
        expected.extend(0x0102_0304_0506_0708i64.to_be_bytes());
        expected.extend(10i64.to_be_bytes());
        expected.extend(20i64.to_be_bytes());
        expected.extend((-1i64).to_be_bytes());
        assert_eq!(bytes.len(), 34);
        assert_eq!(bytes.to_vec(), expected);
        assert_eq!(AbortedTxn::decode(&bytes), Ok(entry));
        let mut newer = bytes;
        newer[1] = 1;
        assert!(AbortedTxn::decode(&newer).unwrap_err().contains("version 1"));
    }

    #[test]
    fn file_appears_with_the_first_entry_and_reopens_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.txnindex");
        let mut index = TransactionIndex::open(&path, 100).unwrap();
        assert!(!path.exists() && index.file().is_none() && index.is_empty());
        assert!(index.append(txn(7, 100, 105, 100)).unwrap(), "the first entry creates the file");
        assert!(!index.append(txn(8, 101, 110, 106)).unwrap());
        assert_eq!(fs::read(&path).unwrap().len(), 68);
        let reopened = TransactionIndex::open(&path, 100).unwrap();
        assert_eq!(reopened.entries(), &[txn(7, 100, 105, 100), txn(8, 101, 110, 106)]);
    }

    #[test]
    fn refuses_last_offsets_that_do_not_increase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TransactionIndex::open(&path, 0).unwrap();
        index.append(txn(1, 0, 10, 0)).unwrap();
        for last in [10, 9] {
            let error = index.append(txn(2, 5, last, 0)).unwrap_err();
            assert!(matches!(error, StorageError::InvalidAbortedTxn(_)), "{error}");
            assert!(error.to_string().contains("must increase sequentially"), "{error}");
        }
        assert_eq!(fs::read(&path).unwrap().len(), 34, "nothing written for a refused entry");
        index.append(txn(2, 5, 11, 0)).unwrap();
    }

    #[test]
    fn a_torn_partial_entry_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TransactionIndex::open(&path, 0).unwrap();
        index.append(txn(1, 0, 10, 0)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend(&txn(2, 11, 20, 11).encode()[..20]);
        fs::write(&path, &bytes).unwrap();
        let mut reopened = TransactionIndex::open(&path, 0).unwrap();
        assert_eq!(reopened.entries(), &[txn(1, 0, 10, 0)]);
        assert_eq!(fs::read(&path).unwrap().len(), 34, "the partial entry is gone from the file");
        reopened.append(txn(2, 11, 20, 11)).unwrap();
        assert_eq!(TransactionIndex::open(&path, 0).unwrap().entries(), &[txn(1, 0, 10, 0), txn(2, 11, 20, 11)]);
    }

    #[test]
    fn whole_entries_that_break_the_rules_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000050.txnindex");
        let cases: [(&str, Vec<u8>); 3] = [
            ("version", {
                let mut bytes = txn(1, 50, 60, 50).encode().to_vec();
                bytes[1] = 3;
                bytes
            }),
            ("below base", txn(1, 0, 49, 0).encode().to_vec()),
            ("not increasing", [txn(1, 50, 60, 50).encode(), txn(2, 50, 60, 50).encode()].concat()),
        ];
        for (name, bytes) in cases {
            fs::write(&path, bytes).unwrap();
            let result = TransactionIndex::open(&path, 50);
            assert!(matches!(result, Err(StorageError::CorruptLog { .. })), "{name}");
        }
    }

    #[test]
    fn collect_filters_by_range_and_stops_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TransactionIndex::open(&dir.path().join("x.txnindex"), 0).unwrap();
        // The fourth entry would overlap [6, 16) too, but the third one's LSO says it is complete.
        for entry in [txn(1, 0, 5, 0), txn(2, 3, 9, 6), txn(3, 12, 15, 16), txn(4, 13, 20, 21)] {
            index.append(entry).unwrap();
        }
        let mut out = Vec::new();
        assert!(index.collect(6, 16, &mut out), "LSO 16 reaches the bound");
        assert_eq!(out, [txn(2, 3, 9, 6), txn(3, 12, 15, 16)], "ends before 6: out; after the stop: not read");
        out.clear();
        assert!(!index.collect(6, 25, &mut out), "no LSO reaches 25: the next segment must be read");
        assert_eq!(out, [txn(2, 3, 9, 6), txn(3, 12, 15, 16), txn(4, 13, 20, 21)]);
        out.clear();
        assert!(index.collect(0, 12, &mut out));
        assert_eq!(out, [txn(1, 0, 5, 0), txn(2, 3, 9, 6)], "first offset 12 is not below the bound 12");
        out.clear();
        assert!(!index.collect(21, 30, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn truncate_drops_entries_from_the_offset_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TransactionIndex::open(&path, 0).unwrap();
        for entry in [txn(1, 0, 5, 0), txn(2, 3, 9, 6), txn(3, 12, 15, 16)] {
            index.append(entry).unwrap();
        }
        assert_eq!(index.truncate_to(16).unwrap(), 0);
        assert_eq!(index.truncate_to(9).unwrap(), 2);
        assert_eq!(index.entries(), &[txn(1, 0, 5, 0)]);
        assert_eq!(fs::read(&path).unwrap().len(), 34);
        index.append(txn(2, 3, 8, 6)).unwrap();
        assert_eq!(TransactionIndex::open(&path, 0).unwrap().entries(), &[txn(1, 0, 5, 0), txn(2, 3, 8, 6)]);
    }
}
