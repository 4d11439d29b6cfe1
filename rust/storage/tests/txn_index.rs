//! The aborted-transaction index through `Log`: where entries go, what a fetch collects, and
//! what survives deletion, a crash and recovery.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{batch, now_ms};
use tidelog_storage::{AbortedTxn, Log, LogConfig, StorageError};

fn txn(producer_id: i64, first_offset: i64, last_offset: i64, last_stable_offset: i64) -> AbortedTxn {
    AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset }
}

fn txn_file(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

/// Base offsets of the segments that have a `.txnindex` file.
fn txn_files(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|s| s == "txnindex"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    bases.sort_unstable();
    bases
}

/// `count` batches of one record each: offset n is batch n.
fn fill(log: &mut Log, count: usize) {
    let t = now_ms();
    for _ in 0..count {
        log.append(&batch(1, 10, t), t, 0).unwrap();
    }
}

// Three segments (0, 10, 20) of ten offsets each. The fifth entry is synthetic: it overlaps
// [11, 13) but comes after an entry whose LSO (18) reaches that bound, so Kafka's search stops
// before it; the test shows the stop.
const E1: AbortedTxn = AbortedTxn { producer_id: 1, first_offset: 0, last_offset: 4, last_stable_offset: 0 };
const E2: AbortedTxn = AbortedTxn { producer_id: 2, first_offset: 2, last_offset: 8, last_stable_offset: 5 };
const E3: AbortedTxn = AbortedTxn { producer_id: 3, first_offset: 9, last_offset: 12, last_stable_offset: 9 };
const E4: AbortedTxn = AbortedTxn { producer_id: 4, first_offset: 14, last_offset: 17, last_stable_offset: 18 };
const E5: AbortedTxn = AbortedTxn { producer_id: 5, first_offset: 12, last_offset: 25, last_stable_offset: 26 };

/// The three segments, each entry appended right after its marker's offset is in the log.
fn three_segments(dir: &Path) -> Log {
    let (mut log, _) = Log::open(dir, LogConfig::default()).unwrap();
    let mut entries = [E1, E2, E3, E4, E5].into_iter().peekable();
    for segment in 0..3 {
        if segment > 0 {
            log.roll().unwrap();
        }
        for _ in 0..10 {
            fill(&mut log, 1);
            while let Some(entry) = entries.next_if(|e| e.last_offset < log.log_end_offset()) {
                log.append_aborted_txn(entry).unwrap();
            }
        }
    }
    assert_eq!(log.segment_base_offsets_loaded(), [0, 10, 20]);
    log
}

#[test]
fn the_file_appears_with_a_segments_first_abort_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    fill(&mut log, 10);
    log.roll().unwrap();
    fill(&mut log, 10);
    assert!(txn_files(dir.path()).is_empty(), "no aborts, no .txnindex");
    assert_eq!(log.last_aborted_txn_offset(), None);
    log.append_aborted_txn(txn(1, 12, 15, 12)).unwrap();
    assert_eq!(txn_files(dir.path()), [10], "the segment holding the marker");
    assert_eq!(fs::read(txn_file(dir.path(), 10)).unwrap(), txn(1, 12, 15, 12).encode());
    log.roll().unwrap();
    fill(&mut log, 5);
    log.close().unwrap();
    assert_eq!(txn_files(dir.path()), [10], "closing creates none for the others");
}

#[test]
fn entries_go_to_the_segment_that_holds_their_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_segments(dir.path());
    assert_eq!(txn_files(dir.path()), [0, 10, 20]);
    assert_eq!(fs::read(txn_file(dir.path(), 0)).unwrap(), [E1.encode(), E2.encode()].concat());
    assert_eq!(fs::read(txn_file(dir.path(), 10)).unwrap(), [E3.encode(), E4.encode()].concat());
    assert_eq!(fs::read(txn_file(dir.path(), 20)).unwrap(), E5.encode());
    assert_eq!(log.last_aborted_txn_offset(), Some(25));

    // A lost entry re-appended after a crash goes to its (older, sealed) segment.
    let other = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(other.path(), LogConfig::default()).unwrap();
    fill(&mut log, 10);
    log.roll().unwrap();
    fill(&mut log, 10);
    log.append_aborted_txn(E2).unwrap();
    assert_eq!(txn_files(other.path()), [0]);
}

#[test]
fn collect_walks_forward_from_the_fetch_segment_and_stops_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_segments(dir.path());
    assert_eq!(log.collect_aborted_txns(0, 30), [E1, E2, E3, E4, E5], "every segment, in order");
    assert_eq!(log.collect_aborted_txns(5, 30), [E2, E3, E4, E5], "E1 ends before the fetch offset");
    assert_eq!(log.collect_aborted_txns(18, 30), [E5], "the segment of offset 18 and later ones");
    assert_eq!(log.collect_aborted_txns(11, 13), [E3], "E4 starts at the bound; its LSO 18 ends the search");
    assert_eq!(log.collect_aborted_txns(9, 10), [E3], "from segment 0 into segment 10, stopped by E4");
    assert_eq!(log.collect_aborted_txns(26, 30), []);
    assert_eq!(log.collect_aborted_txns(0, 1), [E1], "E1's LSO 0 does not reach 1; E2's 5 does");
}

#[test]
fn entries_survive_a_clean_close_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = three_segments(dir.path());
    log.close().unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(log.collect_aborted_txns(0, 30), [E1, E2, E3, E4, E5]);
    drop(log); // crash: nothing was written since the open
    let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(!report.clean_shutdown);
    assert_eq!(report.aborted_txns_truncated, 0);
    assert_eq!(log.collect_aborted_txns(0, 30), [E1, E2, E3, E4, E5]);
    assert_eq!(log.last_aborted_txn_offset(), Some(25));
}

#[test]
fn last_offsets_must_increase_across_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = three_segments(dir.path());
    let before = fs::read(txn_file(dir.path(), 0)).unwrap();
    // Offset 9 would go to segment 0, whose own last entry (8) it passes; the log's (25) it does not.
    for refused in [txn(9, 3, 9, 3), txn(9, 3, 7, 3), txn(9, 20, 25, 20), txn(9, 20, 24, 20)] {
        let error = log.append_aborted_txn(refused).unwrap_err();
        assert!(matches!(error, StorageError::InvalidAbortedTxn(_)), "{error}");
        assert!(error.to_string().contains("must increase sequentially"), "{error}");
    }
    assert_eq!(fs::read(txn_file(dir.path(), 0)).unwrap(), before, "nothing written");
    assert_eq!(fs::read(txn_file(dir.path(), 20)).unwrap(), E5.encode());
    for (name, refused) in [("past the log end", txn(9, 26, 30, 26)), ("first after last", txn(9, 28, 27, 26))] {
        let error = log.append_aborted_txn(refused).unwrap_err();
        assert!(matches!(error, StorageError::InvalidAbortedTxn(_)), "{name}: {error}");
    }
    log.append_aborted_txn(txn(9, 26, 29, 26)).unwrap();
    assert_eq!(log.last_aborted_txn_offset(), Some(29));
    log.close().unwrap();
    assert!(matches!(log.append_aborted_txn(txn(9, 26, 29, 26)), Err(StorageError::Closed)));
}

fn file_id(path: &Path) -> (u64, u64) {
    let metadata = fs::metadata(path).unwrap();
    (metadata.dev(), metadata.ino())
}

fn plan_ids(log: &mut Log) -> Vec<(u64, u64)> {
    let plan = log.prepare_flush().unwrap();
    let ids = plan.files().iter().map(|f| (f.metadata().unwrap().dev(), f.metadata().unwrap().ino())).collect();
    plan.execute().unwrap();
    log.complete_flush(plan.target_offset, Ok(())).unwrap();
    ids
}

#[test]
fn the_next_group_commit_syncs_a_txn_index_with_new_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    fill(&mut log, 10);
    log.roll().unwrap();
    fill(&mut log, 4);
    log.append_aborted_txn(txn(1, 3, 5, 3)).unwrap(); // into sealed segment 0
    fill(&mut log, 2);
    log.append_aborted_txn(txn(2, 11, 15, 11)).unwrap();
    let ids = plan_ids(&mut log);
    let log_file = file_id(&dir.path().join(format!("{:020}.log", 10)));
    let at = |path: PathBuf| ids.iter().position(|id| *id == file_id(&path));
    assert!(at(txn_file(dir.path(), 0)).is_some(), "sealed segment's index synced");
    assert!(at(txn_file(dir.path(), 10)) > ids.iter().position(|id| *id == log_file), "after the log");
    let ids = plan_ids(&mut log);
    assert!(!ids.contains(&file_id(&txn_file(dir.path(), 10))), "nothing new: not synced again");
    fill(&mut log, 2);
    assert_eq!(log.truncate_aborted_txns_from(15).unwrap(), 1);
    assert!(plan_ids(&mut log).contains(&file_id(&txn_file(dir.path(), 10))), "a truncation is synced too");
    assert_eq!(fs::read(txn_file(dir.path(), 10)).unwrap(), b"");
    assert_eq!(log.last_aborted_txn_offset(), Some(5));
}

#[test]
fn an_entry_whose_marker_a_group_commit_already_covers_is_synced_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    fill(&mut log, 10);
    plan_ids(&mut log); // the marker at 9 is durable before its entry is appended
    log.append_aborted_txn(txn(1, 3, 9, 3)).unwrap();
    fill(&mut log, 5);
    let plan = log.prepare_flush().unwrap(); // in flight, covering the marker at 14 ...
    log.append_aborted_txn(txn(2, 12, 14, 12)).unwrap(); // ... whose entry comes meanwhile
    plan.execute().unwrap();
    assert_eq!(log.complete_flush(plan.target_offset, Ok(())).unwrap(), 15);
    // Neither waits for a later group commit: both were fsynced by append_aborted_txn.
    assert!(!plan_ids(&mut log).contains(&file_id(&txn_file(dir.path(), 0))));
    fill(&mut log, 1);
    log.append_aborted_txn(txn(3, 15, 15, 16)).unwrap(); // not covered yet: the next commit
    assert!(plan_ids(&mut log).contains(&file_id(&txn_file(dir.path(), 0))));
}

#[test]
fn deleting_segments_deletes_their_txn_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = three_segments(dir.path());
    log.delete_records_before(20, log.log_end_offset()).unwrap();
    assert_eq!(log.segment_base_offsets_loaded(), [20]);
    assert_eq!(txn_files(dir.path()), [20]);
    assert_eq!(log.collect_aborted_txns(20, 30), [E5]);
    log.close().unwrap();

    // Retention by size, through the same deletion.
    let dir = tempfile::tempdir().unwrap();
    let mut log = three_segments(dir.path());
    let config = LogConfig { retention_bytes: 1, ..LogConfig::default() };
    log.set_config(config).unwrap();
    let report = log.delete_old_segments(now_ms(), log.log_end_offset()).unwrap();
    assert_eq!(report.segments_deleted, 2, "the newest segment alone fits in the retention");
    assert_eq!(txn_files(dir.path()), [20]);
    assert_eq!(log.collect_aborted_txns(20, 30), [E5]);
    assert_eq!(log.last_aborted_txn_offset(), Some(25));
}

#[test]
fn a_log_start_past_the_recovered_end_deletes_every_txn_index() {
    let dir = tempfile::tempdir().unwrap();
    drop(three_segments(dir.path())); // crash
                                      // Records were deleted up to 100 before the crash; only the checkpoint saying so survived.
    fs::write(dir.path().join("log-state.checkpoint"), "0\nrecovery-point 0\nlog-start-offset 100\nclean-shutdown 0\n")
        .unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.segment_base_offsets_loaded(), [100]);
    assert!(txn_files(dir.path()).is_empty());
    assert_eq!(log.last_aborted_txn_offset(), None);
}

#[test]
fn an_orphan_txn_index_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = three_segments(dir.path());
    log.close().unwrap();
    fs::write(txn_file(dir.path(), 40), E5.encode()).unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(txn_files(dir.path()), [0, 10, 20]);
    assert_eq!(log.last_aborted_txn_offset(), Some(25));
}

#[test]
fn a_torn_partial_entry_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(three_segments(dir.path())); // crash in the middle of writing one more entry
    let path = txn_file(dir.path(), 20);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend(&txn(6, 26, 28, 26).encode()[..17]);
    fs::write(&path, bytes).unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), E5.encode(), "cut back to whole entries");
    assert_eq!(log.collect_aborted_txns(0, 30), [E1, E2, E3, E4, E5]);
    log.append_aborted_txn(txn(6, 26, 28, 26)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), [E5.encode(), txn(6, 26, 28, 26).encode()].concat());
}

#[test]
fn a_damaged_whole_entry_refuses_the_open() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path()).close().unwrap();
    let path = txn_file(dir.path(), 10);
    let mut bytes = fs::read(&path).unwrap();
    bytes[34 + 25] = 0; // E4's last offset becomes 0: below the segment, before E3
    fs::write(&path, bytes).unwrap();
    let error = Log::open(dir.path(), LogConfig::default()).err().expect("refused");
    assert!(matches!(&error, StorageError::CorruptLog { path: p, .. } if p.ends_with(".txnindex")), "{error}");
}

#[test]
fn recovery_drops_the_entries_of_markers_cut_off_with_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    drop(three_segments(dir.path())); // crash
                                      // The tail is torn inside offset 23's batch: offsets 23.. are gone, E5 (marker 25) with them.
    let one = batch(1, 10, now_ms()).len() as u64;
    let log_path = dir.path().join(format!("{:020}.log", 20));
    fs::OpenOptions::new().write(true).open(&log_path).unwrap().set_len(3 * one + 20).unwrap();
    let (mut log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 23);
    assert_eq!(report.aborted_txns_truncated, 1);
    assert_eq!(log.last_aborted_txn_offset(), Some(17));
    assert_eq!(fs::read(txn_file(dir.path(), 20)).unwrap(), b"", "E5 is gone from the file");
    assert_eq!(log.collect_aborted_txns(0, 23), [E1, E2, E3, E4]);
    // Replayed producer state re-appends aborts past the last entry once their markers are back.
    fill(&mut log, 5);
    log.append_aborted_txn(E5).unwrap();
    log.close().unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(report.aborted_txns_truncated, 0);
    assert_eq!(log.collect_aborted_txns(0, 30), [E1, E2, E3, E4, E5]);
}

#[test]
fn recovery_drops_an_entry_whose_marker_never_reached_the_log() {
    let dir = tempfile::tempdir().unwrap();
    drop(three_segments(dir.path()));
    // The crash kept the index entry but lost the log from offset 25 on, cleanly at a batch end.
    let one = batch(1, 10, now_ms()).len() as u64;
    let log_path = dir.path().join(format!("{:020}.log", 20));
    fs::OpenOptions::new().write(true).open(&log_path).unwrap().set_len(5 * one).unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_end_offset(), report.bytes_truncated), (25, 0));
    assert_eq!(report.aborted_txns_truncated, 1);
    assert_eq!(log.last_aborted_txn_offset(), Some(17));
}

#[test]
fn truncating_from_an_offset_drops_later_entries_in_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = three_segments(dir.path());
    assert_eq!(log.truncate_aborted_txns_from(26).unwrap(), 0);
    assert_eq!(log.truncate_aborted_txns_from(8).unwrap(), 4);
    assert_eq!(log.collect_aborted_txns(0, 30), [E1]);
    assert_eq!(fs::read(txn_file(dir.path(), 0)).unwrap(), E1.encode());
    assert_eq!(fs::read(txn_file(dir.path(), 10)).unwrap(), b"");
    assert_eq!(log.last_aborted_txn_offset(), Some(4));
    log.append_aborted_txn(E2).unwrap();
    log.close().unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.collect_aborted_txns(0, 30), [E1, E2]);
}
