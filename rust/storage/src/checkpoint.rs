//! The per-partition checkpoint file `log-state.checkpoint`, replaced atomically:
//! write a temp file, fsync it, rename it over the old one, fsync the directory.
//!
//! ```text
//! 0                     <- format version
//! recovery-point 1234   <- every offset below this was fsynced
//! log-start-offset 0
//! clean-shutdown 1      <- written by close(); cleared again on open
//! first-dirty-offset 90 <- optional: where the cleaner's next pass starts (see `cleaner`)
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub const CHECKPOINT_FILE: &str = "log-state.checkpoint";
const CHECKPOINT_TEMP_FILE: &str = "log-state.checkpoint.tmp";
const VERSION: &str = "0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub recovery_point: i64,
    pub log_start_offset: i64,
    pub clean_shutdown: bool,
    /// The cleaner's first dirty offset, once a pass ended (Kafka's cleaner-offset-checkpoint).
    pub first_dirty_offset: Option<i64>,
}

impl Checkpoint {
    /// `Ok(None)` when there is no checkpoint or it does not parse (then the log is treated as
    /// never flushed, and recovered in full).
    pub fn read(dir: &Path) -> io::Result<Option<Checkpoint>> {
        let text = match fs::read_to_string(dir.join(CHECKPOINT_FILE)) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Option<Checkpoint> {
        let mut lines = text.lines();
        if lines.next()? != VERSION {
            return None;
        }
        let mut field = |name: &str| -> Option<i64> {
            let (key, value) = lines.next()?.split_once(' ')?;
            (key == name).then_some(())?;
            value.parse().ok()
        };
        let recovery_point = field("recovery-point")?;
        let log_start_offset = field("log-start-offset")?;
        let clean_shutdown = field("clean-shutdown")? == 1;
        let first_dirty_offset = field("first-dirty-offset");
        Some(Checkpoint { recovery_point, log_start_offset, clean_shutdown, first_dirty_offset })
    }

    /// On a failure before the rename (a full disk) the temp file goes and the old checkpoint
    /// stays as it was.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let temp = dir.join(CHECKPOINT_TEMP_FILE);
        let written = File::create(&temp).and_then(|mut file| {
            write!(
                file,
                "{VERSION}\nrecovery-point {}\nlog-start-offset {}\nclean-shutdown {}\n",
                self.recovery_point, self.log_start_offset, self.clean_shutdown as i32
            )?;
            if let Some(offset) = self.first_dirty_offset {
                writeln!(file, "first-dirty-offset {offset}")?;
            }
            file.sync_all()
        });
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        fs::rename(&temp, dir.join(CHECKPOINT_FILE))?;
        sync_dir(dir)
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
