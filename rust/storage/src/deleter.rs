//! Deleting log files without stalling everyone else's fdatasync.
//!
//! Unlinking a large file frees all of its blocks at once. On a file system mounted with
//! `discard` (and on a thin-provisioned virtual disk) the device then trims them all before it
//! serves much else, and a group commit's fdatasync waits that long: unlinking 1 GiB took
//! 270 ms here, and a 3 GiB unlink during a durable produce run stretched fdatasyncs to 230 ms
//! and the producer's p99 to 615 ms (bench/results/deletes.md). So deleted files go to one
//! background thread that cuts them from the end in pieces of `DELETE_CHUNK_BYTES`, rests after
//! each piece as long as the cut took (the device stays at most half busy with trims), and then
//! unlinks what is left. (RocksDB's DeleteScheduler cuts files in chunks for the same reason.)
//!
//! Callers first rename a file out of the log (`<name>.deleted`, Kafka's suffix) or a whole
//! partition directory out of the data directory (the Python side names it `<dir>.<id>-delete`,
//! Kafka's pattern), so it is gone from the log at once, and an open after a crash finds the
//! leftovers and queues them again. A segment's file may still have readers (a fetch response being sent holds its
//! `Arc<File>`): it is cut only once the job holds the last reference, so a reader never sees
//! its bytes vanish. Cuts go through the job's own descriptor, never the path, so a later file
//! renamed to the same name is never touched.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::checkpoint::sync_dir;
use crate::limits::{DELETE_CHUNK_BYTES, DELETE_READER_POLL_MS, DELETE_REST_MAX_MS};

/// The suffix a segment file gets when it leaves the log (Kafka's `.deleted`).
pub const DELETED_SUFFIX: &str = "deleted";

enum Job {
    /// A file to cut and unlink once `file` is its last reference.
    File { path: PathBuf, file: Arc<File> },
    /// A directory to remove once no file job inside it is left.
    Dir { path: PathBuf },
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Jobs queued or being worked on (a job is counted until it is finished).
    pending: usize,
}

struct Deleter {
    queue: Mutex<Queue>,
    /// Signalled when a job is queued, and when `pending` drops.
    changed: Condvar,
}

impl Deleter {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn deleter() -> &'static Deleter {
    static DELETER: OnceLock<&'static Deleter> = OnceLock::new();
    DELETER.get_or_init(|| {
        let deleter: &'static Deleter =
            Box::leak(Box::new(Deleter { queue: Mutex::new(Queue::default()), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("tidelog-delete".into())
            .spawn(move || run(deleter))
            .expect("the file deletion thread starts");
        deleter
    })
}

fn push(job: Job) {
    let deleter = deleter();
    let mut queue = deleter.lock();
    queue.jobs.push_back(job);
    queue.pending += 1;
    deleter.changed.notify_all();
}

/// Queues `path` (already out of the log) for a paced cut and unlink. `file` is the open file
/// that readers may share; None opens it here. A file that is gone already is no job.
pub fn delete_file(path: PathBuf, file: Option<Arc<File>>) -> io::Result<()> {
    let file = match file {
        Some(file) => file,
        None => match OpenOptions::new().write(true).open(&path) {
            Ok(file) => Arc::new(file),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        },
    };
    push(Job::File { path, file });
    Ok(())
}

/// Queues a directory already out of the data directory: every file in it (and below) that is
/// not queued already is cut and unlinked as `delete_file` does, then the directories go.
/// Queued files are known by inode, not name: a segment queued by retention moments before
/// its directory was renamed keeps its job (and that job waits for its readers).
pub fn delete_tree(path: PathBuf) -> io::Result<()> {
    let queued: Vec<(u64, u64)> = deleter()
        .lock()
        .jobs
        .iter()
        .filter_map(|job| match job {
            Job::File { file, .. } => file.metadata().ok().map(|m| (m.dev(), m.ino())),
            Job::Dir { .. } => None,
        })
        .collect();
    let mut dirs = vec![path.clone()];
    let mut at = 0;
    while at < dirs.len() {
        for entry in fs::read_dir(&dirs[at])? {
            let entry = entry?;
            // The deleter may already have unlinked a file queued just before (a segment of
            // this directory): gone between the listing and the look is gone, not an error.
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if metadata.is_dir() {
                dirs.push(entry.path());
            } else if !queued.contains(&(metadata.dev(), metadata.ino())) {
                delete_file(entry.path(), None)?;
            }
        }
        at += 1;
    }
    push(Job::Dir { path });
    Ok(())
}

/// Files and directories queued or being deleted.
pub fn pending() -> usize {
    deleter().lock().pending
}

/// Waits until nothing is queued or `timeout` passes; whether nothing is.
pub fn wait_idle(timeout: Duration) -> bool {
    let deleter = deleter();
    let deadline = Instant::now() + timeout;
    let mut queue = deleter.lock();
    while queue.pending > 0 {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        queue = deleter.changed.wait_timeout(queue, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
    }
    true
}

fn run(deleter: &'static Deleter) {
    loop {
        let job = {
            let mut queue = deleter.lock();
            loop {
                if let Some(index) = queue.jobs.iter().position(|job| ready(job, &queue.jobs)) {
                    break queue.jobs.remove(index).expect("found above");
                }
                // Nothing to do, or every job waits for a reader or for files in its directory.
                let wait = Duration::from_millis(DELETE_READER_POLL_MS);
                queue = if queue.jobs.is_empty() {
                    deleter.changed.wait(queue).unwrap_or_else(|p| p.into_inner())
                } else {
                    deleter.changed.wait_timeout(queue, wait).unwrap_or_else(|p| p.into_inner()).0
                };
            }
        };
        let (what, outcome) = match &job {
            Job::File { path, file } => (path, cut_and_unlink(path, file)),
            Job::Dir { path } => (path, remove_dir(path)),
        };
        if let Err(error) = outcome {
            // It stays on disk: an open of the log (or of the broker) queues it again.
            log::warn!("deleting {} failed: {error}", what.display());
        }
        drop(job);
        let mut queue = deleter.lock();
        queue.pending -= 1;
        deleter.changed.notify_all();
    }
}

/// A file job is ready once it holds the last reference to its file; a directory, once no
/// file job inside it is left.
fn ready(job: &Job, jobs: &VecDeque<Job>) -> bool {
    match job {
        Job::File { file, .. } => Arc::strong_count(file) == 1,
        Job::Dir { path } => {
            !jobs.iter().any(|other| matches!(other, Job::File { path: p, .. } if p.starts_with(path)))
        }
    }
}

fn cut_and_unlink(path: &Path, file: &File) -> io::Result<()> {
    // The rename that took the file out of the log is made durable before any byte goes, so a
    // crash never leaves a shortened file under its old name. (No parent: its directory was
    // renamed meanwhile, a deleted topic's, whose own job removes the name.)
    if let Some(parent) = path.parent() {
        match sync_dir(parent) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    let mut len = file.metadata()?.len();
    while len > 0 {
        let started = Instant::now();
        len = len.saturating_sub(DELETE_CHUNK_BYTES);
        file.set_len(len)?;
        let rest = started.elapsed().min(Duration::from_millis(DELETE_REST_MAX_MS));
        std::thread::sleep(rest);
    }
    // Unlink the path only while it still names this file (a newer file may have been renamed
    // over it: that rename unlinked this one already).
    let ours = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(there) if there.dev() == ours.dev() && there.ino() == ours.ino() => fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    fn file_of(dir: &Path, name: &str, len: usize) -> PathBuf {
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(&vec![7u8; len]).unwrap();
        path
    }

    #[test]
    fn a_file_is_cut_and_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_of(dir.path(), "a.log.deleted", (DELETE_CHUNK_BYTES * 2 + 5) as usize);
        delete_file(path.clone(), None).unwrap();
        assert!(wait_idle(Duration::from_secs(10)));
        assert!(!path.exists());
    }

    #[test]
    fn a_reader_keeps_every_byte_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let len = (DELETE_CHUNK_BYTES + 100) as usize;
        let path = file_of(dir.path(), "b.log.deleted", len);
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path).unwrap());
        let reader = Arc::clone(&file);
        delete_file(path.clone(), Some(file)).unwrap();
        std::thread::sleep(Duration::from_millis(DELETE_READER_POLL_MS * 3));
        let mut bytes = vec![0u8; len];
        reader.read_exact_at(&mut bytes, 0).unwrap();
        assert!(bytes.iter().all(|&b| b == 7), "a reader's file was cut under it");
        assert!(path.exists());
        drop(reader);
        assert!(wait_idle(Duration::from_secs(10)));
        assert!(!path.exists());
    }

    #[test]
    fn a_newer_file_of_the_same_name_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_of(dir.path(), "c.log.deleted", 4096);
        let old = Arc::new(OpenOptions::new().read(true).write(true).open(&path).unwrap());
        let reader = Arc::clone(&old);
        delete_file(path.clone(), Some(old)).unwrap();
        let newer = file_of(dir.path(), "c.newer", 4096);
        fs::rename(&newer, &path).unwrap(); // a second deletion of a segment with the same name
        drop(reader);
        assert!(wait_idle(Duration::from_secs(10)));
        assert_eq!(fs::metadata(&path).unwrap().len(), 4096, "the newer file was cut");
    }

    #[test]
    fn a_file_queued_before_its_directory_moved_keeps_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("t-0");
        fs::create_dir(&partition).unwrap();
        let len = (DELETE_CHUNK_BYTES * 2) as usize;
        let path = file_of(&partition, "00000000000000000000.log.deleted", len);
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path).unwrap());
        let reader = Arc::clone(&file);
        delete_file(path, Some(file)).unwrap(); // retention
        let renamed = dir.path().join("t-0.abc-delete");
        fs::rename(&partition, &renamed).unwrap(); // then the topic is deleted
        delete_tree(renamed.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(DELETE_READER_POLL_MS * 3));
        let mut bytes = vec![0u8; len];
        reader.read_exact_at(&mut bytes, 0).unwrap();
        assert!(bytes.iter().all(|&b| b == 7), "a reader's file was cut under it");
        drop(reader);
        assert!(wait_idle(Duration::from_secs(10)));
        assert!(!renamed.exists());
    }

    #[test]
    fn a_tree_goes_after_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t-0.abc-delete");
        fs::create_dir_all(tree.join("set-aside")).unwrap();
        file_of(&tree, "00000000000000000000.log", 3 * 4096);
        file_of(&tree.join("set-aside"), "00000000000000000007.log", 4096);
        delete_tree(tree.clone()).unwrap();
        assert!(wait_idle(Duration::from_secs(10)));
        assert!(!tree.exists());
    }
}
