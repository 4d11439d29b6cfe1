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
    InvalidAbortedTxnError,
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
    decompress,
)
from tidelog.storage.log_manager import LogManager, TopicError, TopicMetadata
from tidelog.storage.producer_ids import ProducerIdAllocator
from tidelog.storage.producer_state import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    ProducerEntry,
    ProducerStateError,
    ProducerStateManager,
)
from tidelog.storage.unified_log import Appended, AppendOrigin, GroupCommit, TopicPartition, UnifiedLog, log_config_for

__all__ = [
    "AppendInfo",
    "AppendOrigin",
    "Appended",
    "BatchHeader",
    "CorruptLogError",
    "CorruptRecordError",
    "DeletionReport",
    "FileSlice",
    "GroupCommit",
    "InvalidAbortedTxnError",
    "InvalidConfigError",
    "InvalidProducerEpochError",
    "InvalidTxnStateError",
    "InvalidRecordError",
    "InvalidTimestampError",
    "LogClosedError",
    "LogConfig",
    "LogManager",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PartitionLog",
    "ProducerEntry",
    "ProducerIdAllocator",
    "ProducerStateError",
    "ProducerStateManager",
    "RecordListTooLargeError",
    "RecordTooLargeError",
    "RecoveryReport",
    "StorageError",
    "StorageIOError",
    "TopicError",
    "TopicMetadata",
    "TopicPartition",
    "UnifiedLog",
    "UnsupportedMagicError",
    "decompress",
    "log_config_for",
]
