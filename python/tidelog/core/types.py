"""The plain values the broker core takes and returns: no wire classes, no storage handles
beyond the `FileSlice` a fetch answers with (so records can go out with sendfile)."""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from tidelog.core.errors import error_code_for
from tidelog.core.stats import CURRENT_REQUEST
from tidelog.storage import FileSlice, StorageError


class Acks(enum.IntEnum):
    """A produce's `acks`: none (no answer), the leader's log, or every in-sync replica (durable)."""

    NONE = 0
    LEADER = 1
    ALL = -1


class IsolationLevel(enum.IntEnum):
    READ_UNCOMMITTED = 0
    READ_COMMITTED = 1


class OffsetSpec(enum.IntEnum):
    """The special timestamps of ListOffsets."""

    LATEST = -1
    EARLIEST = -2
    MAX_TIMESTAMP = -3
    EARLIEST_LOCAL = -4
    LATEST_TIERED = -5


NO_TIMESTAMP = -1
NO_OFFSET = -1
NO_LEADER_EPOCH = -1


@dataclass(slots=True)
class ProduceResult:
    """The answer for one partition of a produce."""

    topic: str
    partition: int
    error: ErrorCode = ErrorCode.none
    base_offset: int = NO_OFFSET
    log_append_time_ms: int = NO_TIMESTAMP
    log_start_offset: int = NO_OFFSET
    message: str | None = None
    # A retried idempotent batch: nothing was appended, the offsets are the original's.
    duplicate: bool = False
    # Kafka's per-record errors (batch index: the record's index in the batch, and why).
    record_errors: tuple[tuple[int, str | None], ...] = ()


class ProduceOutcome:
    """The results of a produce, in request order, and what acks=all still waits for."""

    __slots__ = ("results", "_durable")

    def __init__(self, results: list[ProduceResult], durable: list[tuple[ProduceResult, asyncio.Future[None]]]) -> None:
        self.results = results
        self._durable = durable

    @property
    def waits(self) -> bool:
        return bool(self._durable)

    def any_error(self) -> bool:
        return any(r.error != ErrorCode.none for r in self.results)

    async def durable(self) -> list[ProduceResult]:
        """The results once every acks=all append is durable; a failed fsync answers its error
        (nothing of that append is acknowledged)."""
        started = time.perf_counter()
        for result, future in self._durable:
            try:
                await future
            except StorageError as error:
                result.error, result.base_offset, result.message = error_code_for(error), NO_OFFSET, str(error)
        self._durable = []
        record = CURRENT_REQUEST.get()
        if record is not None:
            record.durable_wait_s += time.perf_counter() - started
        return self.results


@dataclass(slots=True)
class FetchPartition:
    """One partition a fetch asks for: by topic name (Fetch before v13) or by topic id."""

    topic: str | None
    topic_id: uuid.UUID | None
    partition: int
    fetch_offset: int
    max_bytes: int


@dataclass(slots=True)
class FetchedData:
    """What a fetch answers for one partition."""

    topic: str
    topic_id: uuid.UUID
    partition: int
    error: ErrorCode = ErrorCode.none
    high_watermark: int = NO_OFFSET
    last_stable_offset: int = NO_OFFSET
    log_start_offset: int = NO_OFFSET
    # (producer id, first offset) of aborted transactions in the range; None for read_uncommitted.
    aborted_transactions: list[tuple[int, int]] | None = None
    records: FileSlice | None = None


@dataclass(frozen=True, slots=True)
class LogDirDescription:
    """DescribeLogDirs' answer for the data directory: (topic, partition, bytes, offset lag) of
    each partition described, and the file system's size and free bytes."""

    path: str
    partitions: list[tuple[str, int, int, int]]
    total_bytes: int
    usable_bytes: int


@dataclass(frozen=True, slots=True)
class ListedOffset:
    error: ErrorCode
    timestamp: int = NO_TIMESTAMP
    offset: int = NO_OFFSET
    leader_epoch: int = NO_LEADER_EPOCH


@dataclass(frozen=True, slots=True)
class NewTopic:
    """A topic to create, as CreateTopics asks: -1 means the broker's default."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    # Partition index → broker ids of its replicas (Kafka's manual assignment).
    assignments: dict[int, list[int]] | None = None
    configs: dict[str, str | None] = field(default_factory=dict)


class ConfigResourceType(enum.IntEnum):
    """Kafka's ConfigResource types (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs)."""

    TOPIC = 2
    BROKER = 4


class ConfigSource(enum.IntEnum):
    """Kafka's DescribeConfigs sources, in the order a key's value is looked up."""

    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class ConfigType(enum.IntEnum):
    """Kafka's DescribeConfigs config types."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    """One place a config's value may come from (DescribeConfigs with include_synonyms)."""

    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: ConfigSource
    config_type: ConfigType
    read_only: bool = False
    # Where the value is set, the one in use first (Kafka's order of ConfigSource).
    synonyms: tuple[ConfigSynonym, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.source == ConfigSource.DEFAULT_CONFIG


@dataclass(slots=True)
class CreatedTopic:
    name: str
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    topic_id: uuid.UUID | None = None
    num_partitions: int = -1
    replication_factor: int = -1
    configs: list[ConfigEntry] = field(default_factory=list)


@dataclass(slots=True)
class DeletedTopic:
    name: str | None
    topic_id: uuid.UUID | None
    error: ErrorCode = ErrorCode.none
    message: str | None = None


class AlterConfigOp(enum.IntEnum):
    """IncrementalAlterConfigs operations."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


@dataclass(frozen=True, slots=True)
class PartitionDescription:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error: ErrorCode = ErrorCode.none


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """What Metadata answers for one topic."""

    name: str | None
    topic_id: uuid.UUID
    error: ErrorCode = ErrorCode.none
    is_internal: bool = False
    partitions: tuple[PartitionDescription, ...] = ()
