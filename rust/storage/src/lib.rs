//! tidelog's storage engine: Kafka's on-disk log format with group-commit durability.
//!
//! A partition is a directory of segments (`<20-digit base offset>.log` / `.index` /
//! `.timeindex`, and `.txnindex` for a segment holding ABORT markers) in Apache Kafka's byte
//! formats, plus `log-state.checkpoint`. This crate has no Python in it; `tidelog-py` binds it.
//!
//! Producer state and its `<offset>.snapshot` files belong to the Python side, which replays
//! producer batches with `Log::producer_batches`. The aborted-transaction index (`txn_index`) is
//! kept here: the Python side, which knows when a transaction aborts and the last stable offset
//! then, appends each entry after its marker (`Log::append_aborted_txn`); fetches collect them
//! (`Log::collect_aborted_txns`); recovery drops the entries of markers that did not survive,
//! and `Log::last_aborted_txn_offset` tells the producer-state replay where to re-append from.
//! Room is left, unbuilt, for leader epochs: batches already carry the leader epoch given to
//! `append`, and `BatchHeader` exposes the producer and control fields.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod codec;
pub mod config;
pub mod deleter;
pub mod error;
pub mod index;
pub mod limits;
pub mod log;
pub mod offset_map;
pub mod prealloc;
pub mod records;
pub mod segment;
pub mod shared;
pub mod slice;
pub mod txn_index;
pub mod verify;

pub use batch::BatchHeader;
pub use cleaner::{ActiveProducer, CleanReport, Cleanable, Throttle};
pub use config::{LogConfig, TimestampType};
pub use error::{Result, StorageError};
pub use log::{AppendInfo, DeletionReport, Log, RecoveryReport};
pub use offset_map::OffsetMap;
pub use shared::SharedLog;
pub use slice::FileSlice;
pub use txn_index::AbortedTxn;
