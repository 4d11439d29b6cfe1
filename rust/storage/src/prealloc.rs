//! Pre-zeroed segments: the active segment's file is extended ahead of the log end with zeros,
//! written and fdatasynced by a background thread, so appends overwrite allocated, synced blocks
//! and the group commit's fdatasync has no size or extent change to journal (performance.md
//! B9-B11: p50 ~490 us growing the file, ~150 us overwriting).
//!
//! The file is then longer than the log: bytes past the segment's size are zeros. A rolled or
//! closed segment is cut back to its size first (so every reader, Kafka's tools included, sees
//! Kafka's format), and recovery takes a zero tail as the end of the log (see
//! `Segment::recover`).
//!
//! The appender and the zero writer never write the same bytes: the writer zeroes only
//! `[from, from + step)` with `from` at or past the file's end, and an append reaching `from`
//! while that runs waits for it (the appender would have to outrun a sequential write to the
//! same disk; it does not in practice).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Zeros are written, and pushed to the disk, in pieces of this size: a flush that meets a piece
/// in flight waits for at most this much. 128 KiB against 1 MiB cut the flush p99 after 16 KiB
/// and 64 KiB appends about threefold (bench/results/engine_sync.md, "Zero chunk size"); 32 KiB
/// raised the p99 after 1 KiB appends and the p50 at 64 KiB.
const ZERO_CHUNK_BYTES: usize = 128 << 10;

#[derive(Debug)]
struct State {
    /// The log's end in the file: bytes below it are the segment's.
    written_end: u64,
    /// An append in progress writes up to here (the zero writer starts at or past it).
    appending_to: u64,
    /// The file's length: from `written_end` up to it, zeros (synced once `filling` is None).
    file_len: u64,
    /// A zero write in progress from this position.
    filling: Option<u64>,
    /// Waiting in the writer thread's queue.
    queued: bool,
    /// Sealed, closed, or a zero write failed: nothing more is zeroed.
    stopped: bool,
}

/// One segment file's pre-zeroed tail.
#[derive(Debug)]
pub struct Preallocation {
    step: u64,
    state: Mutex<State>,
    changed: Condvar,
}

impl Preallocation {
    /// For a file whose log ends at `size` (and so does the file); `step` bytes are zeroed at a
    /// time, once less than half a step is left.
    pub fn new(step: u64, size: u64) -> Arc<Preallocation> {
        let state = State {
            written_end: size,
            appending_to: size,
            file_len: size,
            filling: None,
            queued: false,
            stopped: step == 0,
        };
        Arc::new(Preallocation { step, state: Mutex::new(state), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Before an append of `[start, end)`: waits while zeros are being written where it lands,
    /// then holds the bytes below `end` for it (a zero write starts past them).
    pub fn before_write(&self, end: u64) {
        let mut state = self.lock();
        while state.filling.is_some_and(|from| end > from) {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.appending_to = end;
    }

    /// After an append (or a cut) left the log ending at `end`: queues the next zero write to
    /// `file` when less than half a step of zeros is left.
    pub fn after_write(self: &Arc<Self>, end: u64, file: &Arc<File>) {
        let mut state = self.lock();
        state.written_end = end;
        state.appending_to = end;
        state.file_len = state.file_len.max(end);
        if !state.stopped && !state.queued && state.filling.is_none() && state.file_len - end < self.step / 2 {
            state.queued = true;
            drop(state);
            writer().send((Arc::clone(self), Arc::clone(file))).ok();
        }
    }

    /// No more zero writes; waits for one in progress. Returns the file's length (the caller
    /// cuts it back to the log's end).
    pub fn stop(&self) -> u64 {
        let mut state = self.lock();
        state.stopped = true;
        while state.filling.is_some() {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.file_len
    }

    /// The file was cut to `len` (the log's end): zeros may be written again past it.
    pub fn cut(&self, len: u64) {
        let mut state = self.lock();
        state.written_end = len;
        state.appending_to = len;
        state.file_len = len;
        state.stopped = self.step == 0;
    }

    /// The file is `file_len` long already, zeros past the log's end (an earlier writer's; a
    /// shorter length changes nothing).
    pub fn extend_known(&self, file_len: u64) {
        let mut state = self.lock();
        state.file_len = state.file_len.max(file_len);
    }

    /// Zeroes the next step of `file` and fdatasyncs it (the writer thread).
    fn fill(&self, file: &File) {
        let from = {
            let mut state = self.lock();
            state.queued = false;
            if state.stopped {
                return;
            }
            let from = state.file_len.max(state.appending_to);
            state.filling = Some(from);
            from
        };
        let outcome = write_zeros(file, from, self.step).and_then(|()| file.sync_data());
        let mut state = self.lock();
        state.filling = None;
        match outcome {
            Ok(()) => state.file_len = from + self.step,
            Err(error) => {
                // A full disk, say: appends grow the file as without pre-zeroing. What was
                // zeroed of this step goes (no append reached it: they waited).
                log::warn!("pre-zeroing a segment failed, appends grow the file instead: {error}");
                state.stopped = true;
                if file.set_len(from).is_err() {
                    state.file_len = from + self.step; // zeros past the end stay: recovery knows them
                }
            }
        }
        self.changed.notify_all();
    }
}

/// Writes zeros over `[from, from + len)` a chunk at a time, each pushed to the disk before the
/// next (`sync_file_range`): the group commit's fdatasync, which syncs the whole file, then
/// meets at most one chunk of zeros in flight instead of a whole step
/// (bench/results/fsync_alternatives.md, "bg-paced").
fn write_zeros(file: &File, from: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < from + len {
        let piece = (from + len - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..piece], at)?;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a plain syscall on an open descriptor.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), at as libc::off64_t, piece as libc::off64_t, flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        at += piece as u64;
    }
    Ok(())
}

type Job = (Arc<Preallocation>, Arc<File>);

/// The one thread that writes zeros for every log, in the order appends asked.
fn writer() -> &'static Sender<Job> {
    static WRITER: OnceLock<Sender<Job>> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tidelog-prezero".into())
            .spawn(move || {
                for (preallocation, file) in receiver {
                    preallocation.fill(&file);
                }
            })
            .expect("the pre-zeroing thread starts");
        sender
    })
}

/// Whether every byte of `file` from `position` to its end is zero (a pre-zeroed tail).
pub fn zeros_from(file: &File, position: u64, file_len: u64) -> io::Result<bool> {
    let mut buffer = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = position;
    while at < file_len {
        let piece = (file_len - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.read_exact_at(&mut buffer[..piece], at)?;
        if buffer[..piece].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += piece as u64;
    }
    Ok(true)
}
