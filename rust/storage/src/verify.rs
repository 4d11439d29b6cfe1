//! Read verification: a batch is checked (framing, CRC-32C, contents, increasing offsets) before
//! it is first served after the log was opened.
//!
//! Segments that recovery scanned, and bytes appended since the open (validated on the way in),
//! count as checked. The rest of a segment, its *trusted* part (what was on disk at open and no
//! scan read), is verified by one sequential pass per segment per open: started by the first
//! read that touches it, on a small pool of engine threads (never the caller's event loop), or
//! run by a background scrub at a bounded rate. Reads are served up to the pass's frontier as
//! it moves, so a consumer waits only for the first window, not the whole segment.
//!
//! A batch that fails is recorded as damage with its position and offset range; reads that reach
//! it are refused (`StorageError::CorruptBatch`), reads before it are cut short of it, and reads
//! past it are served when the damaged batch's length still frames the next one.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::batch;
use crate::limits::{RECOVERY_READ_BUFFER_BYTES, VERIFY_AHEAD_QUEUE_MAX, VERIFY_PASS_THREADS};
use crate::segment::{check_batch, WindowReader};

/// Whether segments opened from now on are verified before they are served (the default). Off
/// is Kafka's behaviour: bytes are served as they are on disk. A process-wide switch, read when
/// a segment is opened.
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// One damaged stretch of a segment: a batch (or a run of bytes) that failed its check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedBatch {
    pub position: u64,
    /// Where the next whole batch starts (the end of the trusted part when the damage broke the
    /// framing).
    pub end_position: u64,
    /// The offsets the damaged bytes held: from the offset expected there to the one before the
    /// next good batch (or the segment's end at open).
    pub first_offset: i64,
    pub last_offset: i64,
    pub reason: String,
}

#[derive(Debug)]
struct State {
    checked_to: u64,
    expected_offset: i64,
    damaged: Vec<DamagedBatch>,
    reported: usize,
    running: bool,
    /// Sent to the pool and not started yet: readers do not send it again.
    queued: bool,
}

/// The verification state of one segment; shared with the pass that runs it.
#[derive(Debug)]
pub struct Verification {
    base_offset: i64,
    /// Bytes present at open that no scan checked; everything from here on was appended since.
    trusted_end: u64,
    /// The segment's next offset at open: the end of the offset range of a damage at the end.
    trusted_next_offset: i64,
    /// Fully verified and no damage: the read path's fast check.
    clean: AtomicBool,
    /// A reader waits for the pass: a scrub running it stops throttling.
    urgent: AtomicBool,
    state: Mutex<State>,
    progress: Condvar,
}

impl Verification {
    /// A segment with nothing to verify: new, or scanned by recovery.
    pub fn checked(base_offset: i64) -> Arc<Verification> {
        Verification::pending(base_offset, 0, base_offset)
    }

    /// A segment whose first `trusted_end` bytes (up to `next_offset`) were trusted at open.
    pub fn pending(base_offset: i64, trusted_end: u64, next_offset: i64) -> Arc<Verification> {
        Verification::trusting(base_offset, if enabled() { trusted_end } else { 0 }, next_offset)
    }

    fn trusting(base_offset: i64, trusted_end: u64, next_offset: i64) -> Arc<Verification> {
        Arc::new(Verification {
            base_offset,
            trusted_end,
            trusted_next_offset: next_offset,
            clean: AtomicBool::new(trusted_end == 0),
            urgent: AtomicBool::new(false),
            state: Mutex::new(State {
                checked_to: 0,
                expected_offset: base_offset,
                damaged: Vec::new(),
                reported: 0,
                running: false,
                queued: false,
            }),
            progress: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_clean(&self) -> bool {
        self.clean.load(Ordering::Acquire)
    }

    /// Whether the pass is over (every trusted byte checked, damaged or not).
    pub fn is_done(&self) -> bool {
        self.is_clean() || self.lock().checked_to >= self.trusted_end
    }

    /// Trusted bytes not verified yet.
    pub fn unverified_bytes(&self) -> u64 {
        if self.is_clean() {
            return 0;
        }
        self.trusted_end - self.lock().checked_to.min(self.trusted_end)
    }

    /// How far reads may go: every byte below it is checked (the whole file once the pass is over).
    pub fn frontier(&self) -> u64 {
        if self.is_clean() {
            return u64::MAX;
        }
        let checked_to = self.lock().checked_to;
        if checked_to >= self.trusted_end {
            u64::MAX
        } else {
            checked_to
        }
    }

    /// The damage holding `offset`, if any.
    pub fn damage_holding(&self, offset: i64) -> Option<DamagedBatch> {
        if self.is_clean() {
            return None;
        }
        self.lock().damaged.iter().find(|d| d.first_offset <= offset && offset <= d.last_offset).cloned()
    }

    /// The first damage that starts inside `[start, end)`.
    pub fn first_damage_in(&self, start: u64, end: u64) -> Option<DamagedBatch> {
        if self.is_clean() {
            return None;
        }
        self.lock().damaged.iter().find(|d| d.position >= start && d.position < end).cloned()
    }

    pub fn damaged(&self) -> Vec<DamagedBatch> {
        self.lock().damaged.clone()
    }

    /// Damage found since the last call (each is reported once).
    pub fn take_unreported(&self) -> Vec<DamagedBatch> {
        let mut state = self.lock();
        let new = state.damaged[state.reported..].to_vec();
        state.reported = state.damaged.len();
        new
    }

    /// Blocks until reads may go to `position` (or the pass is over).
    pub fn wait_for(&self, position: u64) {
        let mut state = self.lock();
        while state.checked_to < position.min(self.trusted_end) {
            if !state.running && !state.queued {
                return; // nobody is running the pass: the caller starts it and calls again
            }
            state = self.progress.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Runs the pass over the trusted part from where it stands, at most `bytes_per_sec` unless
    /// a reader waits (0: no limit), stopping after about `budget` bytes (at a batch boundary
    /// with no damage open; `u64::MAX`: to the end). Returns at once if another thread runs it.
    pub fn run(&self, file: &File, bytes_per_sec: u64, budget: u64) {
        let (mut position, mut expected) = {
            let mut state = self.lock();
            state.queued = false;
            if state.running || state.checked_to >= self.trusted_end {
                return;
            }
            state.running = true;
            (state.checked_to, state.expected_offset)
        };
        let end = self.trusted_end;
        let mut reader = WindowReader::new(file, end);
        let started = Instant::now();
        let first = position;
        let mut published = position;
        let mut found: Vec<DamagedBatch> = Vec::new();
        // A damage waiting for the next good batch to learn where its offsets end.
        let mut open_damage: Option<DamagedBatch> = None;
        while position < end {
            match check_batch(&mut reader, position, expected, self.base_offset) {
                Ok(header) => {
                    if let Some(mut damage) = open_damage.take() {
                        damage.last_offset = (header.base_offset - 1).max(damage.first_offset);
                        found.push(damage);
                    }
                    position += header.size_bytes() as u64;
                    expected = header.next_offset();
                }
                Err(reason) => {
                    // Skip by the batch's own length when it still frames something inside the
                    // trusted part; else the rest of the trusted part is one damage.
                    let framed = match reader.header_at(position) {
                        Ok(Some(h)) => batch::check_header(&h, end - position).is_ok().then(|| h.size_bytes() as u64),
                        _ => None,
                    };
                    let next = framed.map_or(end, |size| position + size);
                    match open_damage.as_mut() {
                        Some(damage) => damage.end_position = next,
                        None => {
                            open_damage = Some(DamagedBatch {
                                position,
                                end_position: next,
                                first_offset: expected,
                                last_offset: self.trusted_next_offset.max(expected + 1) - 1,
                                reason,
                            })
                        }
                    }
                    position = next;
                }
            }
            let step = position - published;
            if step >= RECOVERY_READ_BUFFER_BYTES as u64 || position >= end {
                // The frontier stays at an open damage's start until its end is known.
                let frontier =
                    open_damage.as_ref().map_or(position, |d| if position >= end { end } else { d.position });
                self.publish(frontier, expected, &mut found, position >= end, &mut open_damage);
                published = position;
                throttle(started, position - first, bytes_per_sec, &self.urgent);
                if position - first >= budget && open_damage.is_none() && !self.urgent.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        let mut state = self.lock();
        state.running = false;
        if state.damaged.is_empty() && state.checked_to >= end {
            self.clean.store(true, Ordering::Release);
        }
        self.progress.notify_all();
    }

    fn publish(
        &self,
        frontier: u64,
        expected: i64,
        found: &mut Vec<DamagedBatch>,
        finished: bool,
        open_damage: &mut Option<DamagedBatch>,
    ) {
        let mut state = self.lock();
        state.damaged.append(found);
        if finished {
            if let Some(damage) = open_damage.take() {
                state.damaged.push(damage);
            }
        }
        state.checked_to = state.checked_to.max(frontier);
        state.expected_offset = expected;
        self.progress.notify_all();
    }
}

/// What a whole scan of one segment file found (`tidelog recover`).
#[derive(Clone, Debug)]
pub struct FileScan {
    pub size: u64,
    /// The offset after the last good batch.
    pub next_offset: i64,
    pub damaged: Vec<DamagedBatch>,
}

/// Scans the segment file `file` (base offset `base_offset`) as a verification pass does, with
/// `end_offset` (the next segment's base, or `i64::MAX` if unknown) as the end of a trailing
/// damage's offsets.
pub fn scan_file(file: &File, base_offset: i64, end_offset: i64) -> std::io::Result<FileScan> {
    let size = file.metadata()?.len();
    let verification = Verification::trusting(base_offset, size, end_offset);
    verification.run(file, 0, u64::MAX);
    let state = verification.lock();
    let mut damaged = state.damaged.clone();
    let mut size = size;
    // Zeros from the last damage to the end: a pre-zeroed tail (see `prealloc`), not damage.
    if let Some(last) = damaged.last() {
        if crate::prealloc::zeros_from(file, last.position, size)? {
            size = last.position;
            damaged.pop();
        }
    }
    Ok(FileScan { size, next_offset: state.expected_offset, damaged })
}

/// Sleeps so the pass reads at most `bytes_per_sec` (0: no limit), unless a reader waits.
fn throttle(started: Instant, done_bytes: u64, bytes_per_sec: u64, urgent: &AtomicBool) {
    if bytes_per_sec == 0 || urgent.load(Ordering::Relaxed) {
        return;
    }
    let due = Duration::from_secs_f64(done_bytes as f64 / bytes_per_sec as f64);
    if let Some(ahead) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(ahead);
    }
}

type Pass = (Arc<Verification>, Arc<File>);

/// The engine's verification threads and their queue: passes a reader waits for go first,
/// read-ahead passes after them (and only while the queue is short).
struct Pool {
    queue: Mutex<VecDeque<Pass>>,
    ready: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        for n in 0..VERIFY_PASS_THREADS {
            std::thread::Builder::new()
                .name(format!("tidelog-verify-{n}"))
                .spawn(move || loop {
                    let (verification, file) = {
                        let pool = pool();
                        let mut queue = pool.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        loop {
                            match queue.pop_front() {
                                Some(pass) => break pass,
                                None => queue = pool.ready.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner()),
                            }
                        }
                    };
                    if Arc::strong_count(&verification) == 1 {
                        verification.lock().queued = false; // its segment is gone: nobody reads it
                        continue;
                    }
                    verification.run(&file, 0, u64::MAX);
                })
                .expect("spawning a verification thread");
        }
        Pool { queue: Mutex::new(VecDeque::new()), ready: Condvar::new() }
    })
}

/// A reader needs the pass: it runs next, unthrottled (before any read-ahead pass; at once if
/// a scrub is running it).
pub fn start_pass(verification: &Arc<Verification>, file: &Arc<File>) {
    verification.urgent.store(true, Ordering::Relaxed);
    enqueue(verification, file, true);
}

/// A reader will need the pass soon (the next segment): queued behind the passes readers wait
/// for, and not at all when `VERIFY_AHEAD_QUEUE_MAX` passes already wait.
pub fn start_pass_ahead(verification: &Arc<Verification>, file: &Arc<File>) {
    enqueue(verification, file, false);
}

fn enqueue(verification: &Arc<Verification>, file: &Arc<File>, urgent: bool) {
    let pool = pool();
    let mut queue = pool.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    {
        let mut state = verification.lock();
        if state.running || state.checked_to >= verification.trusted_end {
            return;
        }
        if state.queued {
            if urgent {
                // Queued as read-ahead: a reader waits now, so it moves to the front.
                if let Some(at) = queue.iter().position(|(v, _)| Arc::ptr_eq(v, verification)) {
                    if let Some(pass) = queue.remove(at) {
                        queue.push_front(pass);
                    }
                }
            }
            return;
        }
        if !urgent && queue.len() >= VERIFY_AHEAD_QUEUE_MAX {
            return;
        }
        state.queued = true;
    }
    let pass = (Arc::clone(verification), Arc::clone(file));
    if urgent {
        queue.push_front(pass);
    } else {
        queue.push_back(pass);
    }
    pool.ready.notify_one();
}
