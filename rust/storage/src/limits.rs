//! Every bound the storage engine enforces, in one place. Units come last in each name.

/// Size of the fields before a batch's `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Size of a magic-v2 record batch header, up to and including `recordCount`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The smallest legal `batchLength`: a header with no records.
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// Size of one `.index` entry: 4-byte relative offset + 4-byte position.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Size of one `.timeindex` entry: 8-byte timestamp + 4-byte relative offset.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;
/// Size of one `.txnindex` entry (Kafka's `AbortedTxn.TOTAL_SIZE`): version i16, producer id,
/// first offset, last offset and last stable offset, each i64.
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;
/// Offsets inside a segment are stored relative to its base offset in 4 bytes.
pub const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;
/// Positions inside a segment are 4-byte signed integers in Kafka's index format.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Buffer used when recovery streams a segment through the CRC check: memory stays bounded
/// whatever length a corrupt header claims.
pub const RECOVERY_READ_BUFFER_BYTES: usize = 1 << 20;
/// Width of a segment file name: the base offset, zero-padded.
pub const SEGMENT_NAME_DIGITS: usize = 20;
/// Batches one append call may carry; a Produce carries one per partition.
pub const APPEND_BATCHES_MAX: usize = 1024;
/// Bytes a compressed records section may decompress to before it counts as corrupt (lookups
/// and in-process readers decompress; produce and fetch never do).
pub const DECOMPRESSED_RECORDS_BYTES_MAX: usize = 256 << 20;
/// Index entries of the active segment held in memory before a group commit writes them out
/// (a roll or close writes them all). They are derived data, not needed for durability: after
/// a crash the segment holding the recovery point is rebuilt from the log, so writing them at
/// every commit would only add two writes and an inode update to each fsync-paced append.
pub const INDEX_ENTRIES_PENDING_MAX: usize = 1024;
/// Engine threads that run read-triggered verification passes (see `verify`): one segment
/// each at a time; more readers wait for them.
pub const VERIFY_PASS_THREADS: usize = 2;
/// Read-ahead verification passes (the segment after one being read) queued at most; past it,
/// none is queued, and the reader starts that pass itself when it gets there.
pub const VERIFY_AHEAD_QUEUE_MAX: usize = 4;
/// Directory inside a partition's directory that recovery moves segments into when they follow
/// a torn segment (never acknowledged; kept for an operator, not served). Its name is no offset,
/// so the log never loads it.
pub const SET_ASIDE_DIR: &str = "set-aside";
/// The cleaner reads segments through a window of this size (grown for a larger batch).
pub const CLEANER_READ_BUFFER_BYTES: usize = 4 << 20;
/// Kept batches gathered before the cleaner writes them to the cleaned segment.
pub const CLEANER_WRITE_BUFFER_BYTES: usize = 4 << 20;
/// A read whose slice is at most this big is checked for holding a record at all (a cleaned
/// segment may hold only emptied batches; such a slice is skipped when a later segment has data).
pub const EMPTY_SLICE_CHECK_BYTES_MAX: u64 = 4096;
/// Deleted files are cut from the end in pieces of this size (see `deleter`): a group commit's
/// fdatasync that meets one waits for the device to trim at most this much. Here a 1 MiB cut
/// takes about 0.25 ms and left no fdatasync above 1 ms while 2 GiB went; 4 MiB cuts left some
/// at 10-25 ms (bench/deletes.py).
pub const DELETE_CHUNK_BYTES: u64 = 1 << 20;
/// After each piece the deleter rests as long as the cut took, at most this long.
pub const DELETE_REST_MAX_MS: u64 = 50;
/// How often the deleter looks again at a file that still has readers.
pub const DELETE_READER_POLL_MS: u64 = 100;
