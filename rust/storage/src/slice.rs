//! A range of whole batches in one segment file, for sendfile or a copy.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Holds the segment's file open, so the bytes stay readable even if retention deletes the
/// segment while a fetch response is still being sent.
#[derive(Clone, Debug)]
pub struct FileSlice {
    file: Arc<File>,
    pub position: u64,
    pub size: u64,
    /// Base offset of the first batch in the slice.
    pub first_offset: i64,
    /// Last offset of the last batch in the slice.
    pub last_offset: i64,
}

impl FileSlice {
    pub fn new(file: Arc<File>, position: u64, size: u64, first_offset: i64, last_offset: i64) -> Self {
        assert!(size > 0 && first_offset <= last_offset);
        FileSlice { file, position, size, first_offset, last_offset }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Copies the slice into `buffer`, which must be exactly `size` bytes.
    pub fn read_into(&self, buffer: &mut [u8]) -> io::Result<()> {
        assert_eq!(buffer.len() as u64, self.size);
        self.file.read_exact_at(buffer, self.position)
    }

    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; self.size as usize];
        self.read_into(&mut buffer)?;
        Ok(buffer)
    }
}
