"""The storage layer: the Rust engine (`_engine`) and its Python face.

Only this package imports the native module.
"""

from tidelog.storage._engine import (
    AppendInfo,
    BatchHeader,
    CorruptLogError,
    CorruptRecordError,
    DeletionReport,
    FileSlice,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTimestampError,
    LogClosedError,
    LogConfig,
    OffsetOutOfRangeError,
    PartitionLog,
    RecordListTooLargeError,
    RecordTooLargeError,
    RecoveryReport,
    StorageError,
    StorageIOError,
    UnsupportedMagicError,
)
from tidelog.storage.log_manager import LogManager, TopicError, TopicMetadata
from tidelog.storage.partition import GroupCommit, Partition, TopicPartition, log_config_for

__all__ = [
    "AppendInfo",
    "BatchHeader",
    "CorruptLogError",
    "CorruptRecordError",
    "DeletionReport",
    "FileSlice",
    "GroupCommit",
    "InvalidConfigError",
    "InvalidRecordError",
    "InvalidTimestampError",
    "LogClosedError",
    "LogConfig",
    "LogManager",
    "OffsetOutOfRangeError",
    "Partition",
    "PartitionLog",
    "RecordListTooLargeError",
    "RecordTooLargeError",
    "RecoveryReport",
    "StorageError",
    "StorageIOError",
    "TopicError",
    "TopicMetadata",
    "TopicPartition",
    "UnsupportedMagicError",
    "log_config_for",
]
