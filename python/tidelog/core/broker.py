"""The broker core: one object whose methods are the broker's operations, for every front end.

In the spirit of Kafka's `ReplicaManager` (and the parts of `KafkaApis` that hold rules): the TCP
handlers decode a request, call one of these methods with plain values, and encode what it
returns; the embedded API calls the same methods. So the rules (acks, idempotence, limits,
isolation, topic validation, Kafka's error codes and their order) live here once.

Errors are values: each operation answers per partition or per topic with a Kafka `ErrorCode`
(and a message where Kafka gives one), as the protocol does. Every topic change goes through this
class, which bumps `metadata_epoch`: caches of anything derived from topics (encoded Metadata
answers) are valid for one epoch only.

Used from the event loop thread only.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Awaitable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.config import TOPIC_KEYS, BrokerConfig, ConfigError, TopicConfig
from tidelog.coordinator.group.coordinator import OFFSETS_TOPIC, GroupCoordinator
from tidelog.coordinator.group.shard import TxnCommitRequest
from tidelog.coordinator.runtime import CoordinatorLog, CoordinatorUnavailable
from tidelog.coordinator.transaction.coordinator import TRANSACTION_STATE_TOPIC, TransactionCoordinator
from tidelog.coordinator.transaction.shard import EndResult, InitResult
from tidelog.core import fetch as fetching
from tidelog.core.configs import Configs, DynamicBrokerConfigs
from tidelog.core.coordinator_log import CoordinatorPartitionLog
from tidelog.core.errors import error_code_for
from tidelog.core.housekeeping import Housekeeping
from tidelog.core.partition import Partition
from tidelog.core.stats import BrokerStats
from tidelog.core.types import (
    Acks,
    CreatedTopic,
    DeletedTopic,
    FetchedData,
    FetchPartition,
    IsolationLevel,
    ListedOffset,
    LogDirDescription,
    NewTopic,
    OffsetSpec,
    PartitionDescription,
    ProduceOutcome,
    ProduceResult,
    TopicDescription,
)
from tidelog.errors import KafkaError
from tidelog.protocol.record_batch import (
    CONTROL_FLAG,
    HEADER_BYTES,
    LOG_OVERHEAD,
    PRODUCER_FIELDS,
    PRODUCER_FIELDS_AT,
    TRANSACTIONAL_FLAG,
    batch_length_of,
)
from tidelog.storage import (
    AppendOrigin,
    Cleaner,
    CleanReport,
    DeletionReport,
    LogManager,
    ProducerEntry,
    ProducerIdAllocator,
    RecordWithoutKeyError,
    StorageError,
    TopicError,
    TopicMetadata,
    TopicPartition,
    set_verify_reads,
)
from tidelog.storage.durable_file import write_atomically
from tidelog.storage.log_manager import DataDirectoryUnusable, check_topic_name

log = logging.getLogger(__name__)
T = TypeVar("T", bound=Hashable)

INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC})
META_PROPERTIES = "meta.properties"
# What Kafka answers as the topic id of a topic it does not know.
ZERO_UUID = uuid.UUID(int=0)
USE_DEFAULT = -1
HIGH_WATERMARK = -1  # DeleteRecords' "up to the high watermark"
DUPLICATE_NAME = "Duplicate topic name."


def duplicated(keys: Sequence[T]) -> list[T]:
    """The keys given more than once, in order of first appearance."""
    seen: set[T] = set()
    repeated: dict[T, None] = {}
    for key in keys:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    return list(repeated)


def lower_priority() -> None:
    """Runs in a new thread: gives it a nice value of `limits.CLEANER_THREAD_NICE` (Linux sets
    niceness per thread). Where that is not allowed the thread keeps the process's."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), limits.CLEANER_THREAD_NICE)
    except (OSError, AttributeError):
        pass


class DataDirectoryRefused(RuntimeError):
    """The data directory cannot be this broker's: another broker's, or unreadable identity."""


def read_meta_properties(data_dir: Path) -> dict[str, str] | None:
    """The key=value lines of `meta.properties` (Kafka's format), or None if there is none."""
    path = data_dir / META_PROPERTIES
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:  # the data directory is a file, unreadable, ...
        raise DataDirectoryUnusable(data_dir, error) from None
    properties = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


def check_meta_properties(data_dir: Path, node_id: int) -> None:
    """Refuses (DataDirectoryRefused) a data directory whose `meta.properties` names another
    node (Kafka's `node.id`, or a ZooKeeper-era `broker.id`) or has no `cluster.id`, as Kafka
    refuses one at start. A directory without the file is new."""
    properties = read_meta_properties(data_dir)
    if properties is None:
        return
    path = data_dir / META_PROPERTIES
    if not properties.get("cluster.id"):
        raise DataDirectoryRefused(f"{path} has no cluster.id: not a tidelog or Kafka data directory")
    stored = properties.get("node.id", properties.get("broker.id"))
    if stored is not None and stored != str(node_id):
        raise DataDirectoryRefused(
            f"{path} belongs to node.id={stored} of cluster {properties['cluster.id']}, "
            f"but this broker is node.id={node_id}"
        )


def read_or_create_cluster_id(data_dir: Path, node_id: int) -> str:
    """The cluster id in `meta.properties` (Kafka's file), made once like Kafka's: a random
    UUID in URL-safe base64 without padding, with this broker's `node.id` (added to a file
    written before tidelog kept it). Checked first: `check_meta_properties`."""
    check_meta_properties(data_dir, node_id)
    properties = read_meta_properties(data_dir) or {}
    cluster_id = properties.get("cluster.id") or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if properties.get("node.id", properties.get("broker.id")) is None:
        path = data_dir / META_PROPERTIES
        write_atomically(path, f"version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n")
    return cluster_id


class Broker:
    """A single-node broker: its logs, coordinators, identity, and operations."""

    def __init__(self, config: BrokerConfig, logs: LogManager, dynamic: DynamicBrokerConfigs) -> None:
        """`config` is the static one (server.properties); `dynamic` goes over it, and `logs`
        were opened with the outcome (see `open`)."""
        self.configs = Configs(self, config, dynamic)
        self.config = config.with_dynamic(dynamic.settings())
        self.logs = logs
        self.node_id = config.node_id
        self.host, self.port = config.advertised_address()
        self.cluster_id = read_or_create_cluster_id(logs.data_dir, config.node_id)
        self.producer_ids = ProducerIdAllocator(logs.data_dir)
        # Bumped on every topic change (and a new advertised address).
        self.metadata_epoch = 0
        # Kafka's BrokerTopicMetrics (messages and bytes in and out per topic), for the metrics.
        self.stats = BrokerStats()
        self.partitions: dict[TopicPartition, Partition] = {}
        self._topic_names: dict[uuid.UUID, str] = {}
        for meta in logs.topics.values():
            self._adopt_topic(meta)
        self.groups = GroupCoordinator(config, self._create_offsets_topic)
        self.transactions = TransactionCoordinator(
            self._create_transaction_topic,
            self.producer_ids.allocate,
            self.write_txn_markers,
            config.transaction_max_timeout_ms,
            config.transactional_id_expiration_ms,
        )
        self.housekeeping = Housekeeping(self)
        # The log cleaner's one thread (Kafka's log-cleaner-thread-0), below the others in the
        # scheduler's eyes: a pass is deferrable, the appends and fsyncs it competes with are not.
        self._cleaner_thread = ThreadPoolExecutor(1, thread_name_prefix="tidelog-cleaner", initializer=lower_priority)
        self.started = False
        self.loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def open(cls, config: BrokerConfig) -> Broker:
        """Opens the data directory (taking its lock) and recovers every log. Refuses first
        (DataDirectoryRefused) a directory that is another broker's."""
        check_meta_properties(Path(config.log_dirs), config.node_id)
        set_verify_reads(config.tidelog_log_verify_reads)
        dynamic = DynamicBrokerConfigs.load(Path(config.log_dirs))
        effective = config.with_dynamic(dynamic.settings())
        logs = LogManager.open(
            config.log_dirs,
            effective.topic_defaults,
            producer_id_expiration_ms=effective.producer_id_expiration_ms,
            preallocate_bytes=effective.tidelog_log_preallocate_bytes,
        )
        try:
            return cls(config, logs, dynamic)
        except BaseException:
            logs.close()
            raise

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the work that needs the event loop: replaying the coordinators' topics (in
        the background; their groups answer COORDINATOR_LOAD_IN_PROGRESS until loaded) and
        housekeeping. Call it before serving requests."""
        assert not self.started
        self.started = True
        self.loop = asyncio.get_running_loop()
        if OFFSETS_TOPIC in self.logs.topics:
            self.groups.start(self._offsets_logs())
        if TRANSACTION_STATE_TOPIC in self.logs.topics:
            self.transactions.start(self._internal_logs(TRANSACTION_STATE_TOPIC))
        self.housekeeping.start()

    def resign_coordinators(self) -> None:
        """The first step of a controlled shutdown, as Kafka's: the group and transaction
        coordinators give their shards up, so members waiting in a rebalance and other parked
        operations answer NOT_COORDINATOR (clients find the coordinator again after the restart)
        instead of holding the drain of in-flight requests. What is durable is replayed at the
        next start; markers of a transaction being completed are written then."""
        self.transactions.close()
        self.groups.close()

    async def close(self) -> int:
        """Stops housekeeping and coordinators, flushes and closes every log (marked clean).
        Returns how many logs could not be closed cleanly (a failed or full disk)."""
        await self.housekeeping.stop()
        self._cleaner_thread.shutdown(wait=True)
        self.transactions.close()
        self.groups.close()
        return self.logs.close()

    def advertise(self, host: str, port: int) -> None:
        """The address Metadata and FindCoordinator give clients (once the listener is bound)."""
        self.host, self.port = host, port
        self._topics_changed()

    # ---- topics and partitions ---------------------------------------------------------------

    @property
    def topics(self) -> dict[str, TopicMetadata]:
        return self.logs.topics

    def topic(self, name: str) -> TopicMetadata | None:
        return self.logs.topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicMetadata | None:
        name = self._topic_names.get(topic_id)
        return None if name is None else self.logs.topics.get(name)

    def partition(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get(TopicPartition(topic, index))

    def has_partition(self, topic: str, index: int) -> bool:
        return TopicPartition(topic, index) in self.partitions

    @staticmethod
    def is_internal(topic: str) -> bool:
        return topic in INTERNAL_TOPICS

    def replicas_of(self, meta: TopicMetadata, index: int) -> tuple[int, ...]:
        if meta.assignments is not None and index < len(meta.assignments):
            return tuple(meta.assignments[index])
        return (self.node_id,)

    def _adopt_topic(self, meta: TopicMetadata, first_partition: int = 0) -> None:
        self._topic_names[meta.topic_id] = meta.name
        for index in range(first_partition, meta.partitions):
            topic_partition = TopicPartition(meta.name, index)
            unified_log = self.logs.partitions[topic_partition]
            durable_acks = self.config.tidelog_flush_before_ack
            self.partitions[topic_partition] = Partition(topic_partition, meta.topic_id, unified_log, durable_acks)

    def _topics_changed(self) -> None:
        self.metadata_epoch += 1

    def configs_changed(self) -> None:
        """A topic's configs changed: answers made before are stale."""
        self._topics_changed()

    def reconfigure(self, config: BrokerConfig) -> None:
        """Dynamic broker configs changed: `config` is the new effective one. Logs take new
        topic defaults at once; the cleaner, producer expiry and the listener read theirs from
        `self.config` when they next act."""
        self.config = config
        self.logs.set_default_config(config.topic_defaults)
        self.logs.producer_id_expiration_ms = config.producer_id_expiration_ms
        self.housekeeping.reconfigured()
        self._topics_changed()

    # ---- produce -----------------------------------------------------------------------------

    def produce(
        self,
        entries: Iterable[tuple[str, int, bytes | bytearray | memoryview | None]],
        acks: int,
        origin: AppendOrigin = AppendOrigin.CLIENT,
        transactional_id: str | None = None,
        abortable: bool = False,
    ) -> ProduceOutcome:
        """Appends one batch per (topic, partition, records). Answered at once for acks 0 and 1;
        for acks=all (-1) the outcome waits until each append is durable (group commit), unless
        `tidelog.flush.before.ack=false`. `abortable`: the client knows TRANSACTION_ABORTABLE
        (Produce v11+, KIP-1050), which a refused transactional batch then gets instead of
        INVALID_TXN_STATE, as Kafka answers it."""
        if acks not in (Acks.NONE, Acks.LEADER, Acks.ALL):
            refused = [ProduceResult(t, p, ErrorCode.invalid_required_acks) for t, p, _ in entries]
            return ProduceOutcome(refused, [])
        results: list[ProduceResult] = []
        durable: list[tuple[ProduceResult, Awaitable[None]]] = []
        for topic, index, records in entries:
            result, future = self._append_one(
                topic, index, records, acks == Acks.ALL, origin, transactional_id, abortable
            )
            if topic in self.logs.topics:  # never a counter for a name a client made up
                stats = self.stats.topic(topic)
                stats.produce_requests += 1
                if result.error != ErrorCode.none:
                    stats.failed_produce_requests += 1
            results.append(result)
            if future is not None:
                durable.append((result, future))
        return ProduceOutcome(results, durable)  # type: ignore[arg-type]

    def _append_one(
        self,
        topic: str,
        index: int,
        records: bytes | bytearray | memoryview | None,
        acks_all: bool,
        origin: AppendOrigin,
        transactional_id: str | None = None,
        abortable: bool = False,
    ) -> tuple[ProduceResult, Awaitable[None] | None]:
        partition = self.partitions.get(TopicPartition(topic, index))
        if partition is None:
            return ProduceResult(topic, index, ErrorCode.unknown_topic_or_partition), None
        if not partition.is_leader:
            return ProduceResult(topic, index, ErrorCode.not_leader_or_follower), None
        if origin is AppendOrigin.CLIENT and topic in INTERNAL_TOPICS:  # only coordinators write there
            message = f"cannot append to internal topic {topic}"
            return ProduceResult(topic, index, ErrorCode.invalid_topic_exception, message=message), None
        refused = one_batch_refusal(records)
        if refused is not None:
            return ProduceResult(topic, index, refused[0], message=refused[1]), None
        assert records is not None
        refused_txn = self._transaction_refusal(topic, index, records, transactional_id)
        if refused_txn is not None:
            if abortable and refused_txn == ErrorCode.invalid_txn_state:
                refused_txn = ErrorCode.transaction_abortable
            return ProduceResult(topic, index, refused_txn), None
        try:
            appended, future = partition.append_as_leader(records, acks_all, origin)
        except RecordWithoutKeyError as error:
            message = f"{error.args[0]} in topic partition {topic}-{index}"
            refusal = ProduceResult(
                topic, index, ErrorCode.invalid_record, message=message, log_start_offset=partition.log_start_offset
            )
            refusal.record_errors = ((error.args[1], message),)
            return refusal, None
        except StorageError as error:
            return ProduceResult(topic, index, error_code_for(error), message=str(error)), None
        result = ProduceResult(
            topic,
            index,
            ErrorCode.none,
            appended.first_offset,
            appended.log_append_time_ms,
            appended.log_start_offset,
            duplicate=appended.duplicate,
        )
        if not appended.duplicate:
            stats = self.stats.topic(topic)
            stats.messages_in += appended.last_offset - appended.first_offset + 1
            stats.bytes_in += len(records)
        return result, future

    def _transaction_refusal(
        self, topic: str, index: int, records: bytes | bytearray | memoryview, transactional_id: str | None
    ) -> ErrorCode | None:
        """KIP-890 part 1: a transactional batch is appended only if its partition is in the
        producer's Ongoing transaction (checked here, then appended with no await between)."""
        fields = transactional_fields(records)
        if fields is None:
            return None
        producer_id, epoch = fields
        if transactional_id is None:
            return ErrorCode.invalid_txn_state  # Kafka: transactional records need the id
        error = self.transactions.verify(transactional_id, producer_id, epoch, topic, index)
        return None if error == ErrorCode.none else error

    def produce_from_thread(self, topic: str, index: int, batch: bytes, durable: bool) -> ProduceResult:
        """Appends one batch without a producer id from any thread, with the same checks as
        `produce` (and, when `durable`, the fdatasync before the answer, run in the calling thread):
        for in-process writers that would otherwise wait for two hops to the event loop's threads
        and back. Batches with a producer id go through `produce`, on the loop."""
        assert self.loop is not None, "the broker is not started"
        partition = self.partitions.get(TopicPartition(topic, index))
        if partition is None:
            return ProduceResult(topic, index, ErrorCode.unknown_topic_or_partition)
        if not partition.is_leader:
            return ProduceResult(topic, index, ErrorCode.not_leader_or_follower)
        if topic in INTERNAL_TOPICS:
            return ProduceResult(topic, index, ErrorCode.invalid_topic_exception, message="an internal topic")
        refused = one_batch_refusal(batch)
        if refused is not None:
            return ProduceResult(topic, index, refused[0], message=refused[1])
        try:
            appended = partition.append_from_thread(batch, self.loop, durable)
        except StorageError as error:
            self.stats.appended_from_thread(topic, 0, 0, failed=True)
            return ProduceResult(topic, index, error_code_for(error), message=str(error))
        messages = appended.last_offset - appended.first_offset + 1
        self.stats.appended_from_thread(topic, messages, len(batch), failed=False)
        return ProduceResult(
            topic, index, ErrorCode.none, appended.first_offset, appended.log_append_time_ms, appended.log_start_offset
        )

    # ---- fetch -------------------------------------------------------------------------------

    def fetch(
        self,
        partitions: Sequence[FetchPartition],
        *,
        max_bytes: int,
        min_bytes: int,
        max_wait_ms: int,
        isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    ) -> list[FetchedData] | Awaitable[list[FetchedData]]:
        """Reads each partition from its fetch offset. Answered at once when `min_bytes` are
        readable, an error happened, or `max_wait_ms` is 0; else the answer waits (long poll)."""
        plan = [self._resolve(request) for request in partitions]
        total, failed = fetching.collect(plan, max_bytes, isolation)
        if total >= min_bytes or max_wait_ms <= 0 or failed or not plan:
            return self._fetched([w.answer for w in plan])
        return self._fetched_later(fetching.long_poll(plan, max_bytes, min_bytes, isolation, max_wait_ms / 1000))

    async def _fetched_later(self, answer: Awaitable[list[FetchedData]]) -> list[FetchedData]:
        return self._fetched(await answer)

    def _fetched(self, answers: list[FetchedData]) -> list[FetchedData]:
        """Counts a fetch's answers in the topics' stats (Kafka's fetch request rates, bytes out)."""
        for answer in answers:
            if answer.topic not in self.logs.topics:
                continue
            stats = self.stats.topic(answer.topic)
            stats.fetch_requests += 1
            if answer.error != ErrorCode.none:
                stats.failed_fetch_requests += 1
            elif answer.records is not None:
                stats.bytes_out += answer.records.size
        return answers

    def _resolve(self, request: FetchPartition) -> fetching.Wanted:
        if request.topic_id is not None:
            name = self._topic_names.get(request.topic_id)
            topic_id, missing = request.topic_id, ErrorCode.unknown_topic_id
        else:
            name = request.topic
            meta = self.logs.topics.get(name) if name is not None else None
            topic_id, missing = (meta.topic_id if meta else ZERO_UUID), ErrorCode.unknown_topic_or_partition
        partition = self.partitions.get(TopicPartition(name, request.partition)) if name is not None else None
        answer = FetchedData(name or "", topic_id, request.partition)
        if partition is None:
            answer.error = missing
        return fetching.Wanted(request, partition, answer)

    # ---- offsets -----------------------------------------------------------------------------

    def list_offset(
        self, topic: str, index: int, timestamp: int, isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED
    ) -> ListedOffset:
        """ListOffsets for one partition: LATEST (the last stable offset under read_committed,
        else the high watermark), EARLIEST, MAX_TIMESTAMP (the record holding the largest
        timestamp), or the first record whose timestamp is at least `timestamp`."""
        partition = self.partitions.get(TopicPartition(topic, index))
        if partition is None:
            return ListedOffset(ErrorCode.unknown_topic_or_partition)
        if not partition.is_leader:
            return ListedOffset(ErrorCode.not_leader_or_follower)
        epoch = partition.leader_epoch
        upper_bound = (
            partition.last_stable_offset if isolation == IsolationLevel.READ_COMMITTED else partition.high_watermark
        )
        if timestamp == OffsetSpec.LATEST:
            return ListedOffset(ErrorCode.none, offset=upper_bound, leader_epoch=epoch)
        if timestamp in (OffsetSpec.EARLIEST, OffsetSpec.EARLIEST_LOCAL):
            return ListedOffset(ErrorCode.none, offset=partition.log_start_offset, leader_epoch=epoch)
        if timestamp == OffsetSpec.LATEST_TIERED:  # no tiered storage: nothing is tiered
            return ListedOffset(ErrorCode.none)
        try:
            if timestamp == OffsetSpec.MAX_TIMESTAMP:
                found = partition.log.log.max_timestamp_and_offset()
                offset_and_time = None if found is None else (found[1], found[0])
            else:
                offset_and_time = partition.log.log.offset_for_timestamp(timestamp)
        except StorageError as error:
            return ListedOffset(error_code_for(error))
        if offset_and_time is None or offset_and_time[0] >= upper_bound:
            return ListedOffset(ErrorCode.none)
        return ListedOffset(ErrorCode.none, offset_and_time[1], offset_and_time[0], epoch)

    def offset_for_leader_epoch(
        self, topic: str, index: int, current_leader_epoch: int, leader_epoch: int
    ) -> tuple[ErrorCode, int, int]:
        """OffsetForLeaderEpoch for one partition: (error, epoch, end offset). A client's
        `current_leader_epoch` (-1: not given) older than the partition's is FENCED_LEADER_EPOCH,
        newer is UNKNOWN_LEADER_EPOCH, as Kafka checks it."""
        partition = self.partitions.get(TopicPartition(topic, index))
        if partition is None:
            return ErrorCode.unknown_topic_or_partition, -1, -1
        if not partition.is_leader:
            return ErrorCode.not_leader_or_follower, -1, -1
        if current_leader_epoch >= 0 and current_leader_epoch < partition.leader_epoch:
            return ErrorCode.fenced_leader_epoch, -1, -1
        if current_leader_epoch > partition.leader_epoch:
            return ErrorCode.unknown_leader_epoch, -1, -1
        epoch, end_offset = partition.end_offset_for_epoch(leader_epoch)
        return ErrorCode.none, epoch, end_offset

    def describe_log_dirs(self, wanted: Sequence[tuple[str, Sequence[int]]] | None) -> LogDirDescription:
        """DescribeLogDirs: the one data directory, its partitions (all, or those of `wanted`
        that exist) with their sizes and offset lags, and the file system's total and usable
        bytes."""
        if wanted is None:
            chosen = sorted(self.partitions)
        else:
            chosen = [TopicPartition(t, i) for t, indexes in wanted for i in indexes]
            chosen = [tp for tp in chosen if tp in self.partitions]
        sizes = []
        for tp in chosen:  # Kafka's offset lag: the log end offset's distance above the high watermark
            partition = self.partitions[tp]
            lag = partition.log_end_offset - partition.high_watermark
            sizes.append((tp.topic, tp.partition, partition.log.log.size_bytes, lag))
        directory = self.logs.data_dir.resolve()
        usage = shutil.disk_usage(directory)
        return LogDirDescription(str(directory), sizes, usage.total, usage.free)

    def elect_leaders(
        self, wanted: Sequence[tuple[str, Sequence[int]]] | None
    ) -> list[tuple[str, int, ErrorCode, str | None]]:
        """ElectLeaders (preferred or unclean): every partition already has its only replica,
        this broker, as leader. Named partitions answer ELECTION_NOT_NEEDED, or
        UNKNOWN_TOPIC_OR_PARTITION with Kafka's message; "all partitions" (None) answers none,
        as Kafka's controller leaves out those that need no election."""
        if wanted is None:
            return []
        answers: list[tuple[str, int, ErrorCode, str | None]] = []
        for topic, indexes in wanted:
            for index in indexes:
                if TopicPartition(topic, index) in self.partitions:
                    answers.append((topic, index, ErrorCode.election_not_needed, None))
                elif topic not in self.logs.topics:
                    answers.append((topic, index, ErrorCode.unknown_topic_or_partition, f"No such topic as {topic}"))
                else:
                    message = f"No such partition as {topic}-{index}"
                    answers.append((topic, index, ErrorCode.unknown_topic_or_partition, message))
        return answers

    def delete_records(self, topic: str, index: int, offset: int) -> tuple[ErrorCode, int]:
        """DeleteRecords: moves the log start offset up to `offset` (-1: the high watermark);
        answers the new low watermark."""
        partition = self.partitions.get(TopicPartition(topic, index))
        if partition is None:
            return ErrorCode.unknown_topic_or_partition, -1
        high_watermark = partition.high_watermark
        target = high_watermark if offset == HIGH_WATERMARK else offset
        try:
            return ErrorCode.none, partition.log.log.delete_records_before(target, high_watermark)
        except StorageError as error:
            return error_code_for(error), -1

    def enforce_retention(self) -> dict[TopicPartition, DeletionReport]:
        """Deletes expired segments, never past a partition's last stable offset: an open
        transaction's records stay until it ends (a timeout ends it)."""
        return self.logs.enforce_retention(lambda tp: self.partitions[tp].last_stable_offset)

    async def clean_dirtiest_log(self, cleaner: Cleaner) -> tuple[TopicPartition, CleanReport] | None:
        """One pass of the log cleaner over the dirtiest `compact` log (in a thread), never at or
        past its last stable offset: an open transaction's records are not cleaned, and the
        cleaner keeps each active producer's last batch. None when no log needs it."""
        topic_partition = self.logs.filthiest_log(lambda tp: self.partitions[tp].last_stable_offset)
        if topic_partition is None:
            return None
        partition = self.partitions[topic_partition]
        bound, producers = partition.last_stable_offset, partition.log.active_producers()
        loop = asyncio.get_running_loop()
        work = functools.partial(self.logs.clean, cleaner, topic_partition, bound, producers)
        report = await loop.run_in_executor(self._cleaner_thread, work)
        return None if report is None else (topic_partition, report)

    # ---- producers ---------------------------------------------------------------------------

    async def init_producer_id(
        self, transactional_id: str | None, timeout_ms: int = -1, expected: tuple[int, int] | None = None
    ) -> InitResult:
        """InitProducerId: a new producer id with epoch 0 for an idempotent producer (a v3+
        request's (producer id, epoch) is ignored then: idempotent producers bump their epoch
        themselves, KIP-360); for a transactional id, the transaction coordinator's answer."""
        if transactional_id == "":
            return InitResult(ErrorCode.invalid_request)  # Kafka: an empty transactional id is malformed
        if transactional_id is not None:
            return await self.transactions.init_producer_id(transactional_id, timeout_ms, expected)
        return self.idempotent_producer_id()

    def idempotent_producer_id(self) -> InitResult:
        """A new producer id at epoch 0, for an idempotent producer."""
        try:
            return InitResult(ErrorCode.none, self.producer_ids.allocate(), 0)
        except OSError as failure:  # the block could not be persisted: no id is safe to give
            log.error("persisting a producer-id block failed: %s", failure)
            return InitResult(ErrorCode.coordinator_load_in_progress)  # retriable: the client asks again

    # ---- transactions ------------------------------------------------------------------------

    async def add_partitions_to_txn(
        self, transactional_id: str, producer_id: int, epoch: int, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], ErrorCode]:
        """AddPartitionsToTxn: partitions this broker does not have are UNKNOWN_TOPIC_OR_PARTITION
        and then the others OPERATION_NOT_ATTEMPTED, as Kafka answers; else the coordinator's
        answer for all."""
        missing = [tp for tp in partitions if TopicPartition(*tp) not in self.partitions or tp[0] in INTERNAL_TOPICS]
        if missing:
            answer = dict.fromkeys(partitions, ErrorCode.operation_not_attempted)
            answer.update(dict.fromkeys(missing, ErrorCode.unknown_topic_or_partition))
            return answer
        async with self.transactions.serialized(transactional_id):
            error = await self._add_after_markers(transactional_id, producer_id, epoch, frozenset(partitions))
        return dict.fromkeys(partitions, error)

    async def add_offsets_to_txn(self, transactional_id: str, producer_id: int, epoch: int, group_id: str) -> ErrorCode:
        """AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction."""
        if not group_id:
            return ErrorCode.invalid_group_id
        offsets_partition = (OFFSETS_TOPIC, self.groups.partition_for(group_id))
        async with self.transactions.serialized(transactional_id):
            return await self._add_after_markers(transactional_id, producer_id, epoch, frozenset({offsets_partition}))

    async def end_txn(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, tv2: bool = False
    ) -> EndResult:
        """EndTxn; with `tv2` (v5) the answer carries the (producer id, epoch) to go on with.
        Handled after the id's adds that came before it, as Kafka handles a connection's requests
        one at a time: librdkafka sends EndTxn right behind an AddPartitionsToTxn (an abort does
        not wait for its answer), and an abort that overtook an add still waiting for the
        previous transaction's markers found no transaction (INVALID_TXN_STATE, fatal)."""
        async with self.transactions.serialized(transactional_id):
            return await self.transactions.end_transaction(transactional_id, producer_id, epoch, commit, tv2)

    async def produce_adding_partitions(
        self,
        entries: Sequence[tuple[str, int, bytes | bytearray | memoryview | None]],
        acks: int,
        transactional_id: str,
    ) -> ProduceOutcome:
        """Produce v12+ (TV2, KIP-890 part 2): the partitions of transactional batches join the
        producer's transaction implicitly (one coordinator write), then `produce` appends, with
        the same verification. Serialized per transactional id, so appends keep request order."""
        async with self.transactions.serialized(transactional_id):
            wanted: set[tuple[str, int]] = set()
            producer: tuple[int, int] | None = None
            for topic, index, records in entries:
                fields = transactional_fields(records) if records else None
                if fields is not None and TopicPartition(topic, index) in self.partitions:
                    producer = producer or fields
                    wanted.add((topic, index))
            partitions = frozenset(wanted)
            if producer is not None:
                error = await self._add_missing(transactional_id, producer[0], producer[1], partitions)
                if error != ErrorCode.none:
                    if error == ErrorCode.producer_fenced:
                        error = ErrorCode.invalid_producer_epoch  # what Produce answers a fenced epoch
                    # Every partition gets it: a transactional producer sends nothing else.
                    return ProduceOutcome([ProduceResult(t, i, error) for t, i, _ in entries], [])
            return self.produce(entries, acks, transactional_id=transactional_id, abortable=True)

    async def _add_missing(
        self, transactional_id: str, producer_id: int, epoch: int, partitions: frozenset[tuple[str, int]]
    ) -> ErrorCode:
        """TV2's implicit add: nothing to write when the transaction holds them already."""
        if self.transactions.has_partitions(transactional_id, partitions):
            return ErrorCode.none
        return await self._add_after_markers(transactional_id, producer_id, epoch, partitions)

    async def _add_after_markers(
        self, transactional_id: str, producer_id: int, epoch: int, partitions: frozenset[tuple[str, int]]
    ) -> ErrorCode:
        """AddPartitionsToTxn (explicit, or TV2's implicit one). The previous transaction's
        markers may still be going out right after its EndTxn was answered (here each is an
        fsync): wait for them, bounded, rather than answer CONCURRENT_TRANSACTIONS at once,
        which a client retries only after its backoff. A longer wait ends in that answer."""
        try:
            await asyncio.wait_for(
                asyncio.shield(self.transactions.completed(transactional_id)), limits.TXN_IMPLICIT_ADD_WAIT_S
            )
        except TimeoutError:
            pass
        return await self.transactions.add_partitions(transactional_id, producer_id, epoch, partitions)

    async def txn_offset_commit(
        self, request: TxnCommitRequest, add_implicitly: bool = False
    ) -> dict[tuple[str, int], ErrorCode]:
        """TxnOffsetCommit: the group's partition must be in the producer's Ongoing transaction
        (AddOffsetsToTxn first, or with `add_implicitly`, v5 under TV2, added here; KIP-890 part
        1 as for data), then the group coordinator writes the offsets as the producer's
        transactional records."""
        if not request.group_id:
            return dict.fromkeys(request.offsets, ErrorCode.invalid_group_id)
        try:
            offsets_partition = self.groups.partition_for(request.group_id)
            if add_implicitly:
                wanted = frozenset({(OFFSETS_TOPIC, offsets_partition)})
                async with self.transactions.serialized(request.transactional_id):
                    added = await self._add_missing(
                        request.transactional_id, request.producer_id, request.producer_epoch, wanted
                    )
                if added != ErrorCode.none:
                    return dict.fromkeys(request.offsets, added)
            error = self.transactions.verify(
                request.transactional_id, request.producer_id, request.producer_epoch, OFFSETS_TOPIC, offsets_partition
            )
            if error != ErrorCode.none:
                return dict.fromkeys(request.offsets, error)
            return await self.groups.txn_commit(request, self.has_partition)
        except CoordinatorUnavailable as unavailable:
            return dict.fromkeys(request.offsets, unavailable.error_code)

    async def write_txn_markers(
        self, producer_id: int, epoch: int, coordinator_epoch: int, commit: bool, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], ErrorCode]:
        """Kafka's WriteTxnMarkers for one producer: a COMMIT or ABORT marker into each
        partition (into `__consumer_offsets` through its coordinator, which then applies or
        drops the transaction's offsets); each answered once durable."""
        errors: dict[tuple[str, int], ErrorCode] = {}
        waits: list[tuple[tuple[str, int], Awaitable[None]]] = []
        for topic, index in partitions:
            tp = (topic, index)
            if topic == OFFSETS_TOPIC:
                waits.append(
                    (tp, self.groups.runtime.write_marker(index, producer_id, epoch, coordinator_epoch, commit))
                )
                continue
            partition = self.partitions.get(TopicPartition(topic, index))
            if partition is None:
                errors[tp] = ErrorCode.unknown_topic_or_partition
                continue
            try:
                _, durable = partition.append_marker(producer_id, epoch, coordinator_epoch, not commit)
            except StorageError as error:
                errors[tp] = error_code_for(error)
                continue
            if durable is not None:
                waits.append((tp, durable))
        for tp, wait in waits:
            try:
                await wait
                errors[tp] = ErrorCode.none
            except CoordinatorUnavailable as unavailable:
                cause = unavailable.__cause__
                errors[tp] = error_code_for(cause) if isinstance(cause, StorageError) else unavailable.error_code
            except StorageError as error:
                errors[tp] = error_code_for(error)
        return errors

    def describe_producers(self, topic: str, index: int) -> tuple[ErrorCode, list[ProducerEntry]]:
        partition = self.partitions.get(TopicPartition(topic, index))
        if partition is None:
            return ErrorCode.unknown_topic_or_partition, []
        entries = sorted(partition.log.producer_state.producers.values(), key=lambda e: e.producer_id)
        return ErrorCode.none, entries

    # ---- topic administration ----------------------------------------------------------------

    def create_topics(self, topics: Sequence[NewTopic], validate_only: bool = False) -> list[CreatedTopic]:
        """CreateTopics: one answer per requested name. A name given twice in one request is not
        created and gets one INVALID_REQUEST answer, after the others, as Kafka answers."""
        duplicates = duplicated([topic.name for topic in topics])
        results = [self._create_one(topic, validate_only) for topic in topics if topic.name not in duplicates]
        results += [CreatedTopic(name, ErrorCode.invalid_request, DUPLICATE_NAME) for name in duplicates]
        return results

    def _create_one(self, topic: NewTopic, validate_only: bool) -> CreatedTopic:
        try:
            partitions, assignments, config = self._validate_new_topic(topic)
        except KafkaError as error:
            return CreatedTopic(topic.name, error.error_code, error.message)
        topic_id = None
        if not validate_only:
            try:
                topic_id = self.create_topic(topic.name, partitions, topic.configs, assignments=assignments).topic_id
            except KafkaError as error:  # a full or failing disk (KAFKA_STORAGE_ERROR)
                return CreatedTopic(topic.name, error.error_code, error.message)
        replication_factor = len(assignments[0]) if assignments else 1
        entries = self.configs.topic_entries(config, config.explicit(topic.configs))
        return CreatedTopic(topic.name, ErrorCode.none, None, topic_id, partitions, replication_factor, entries)

    def _validate_new_topic(self, topic: NewTopic) -> tuple[int, list[list[int]] | None, TopicConfig]:
        """Kafka's checks of a new topic, in its order; raises KafkaError."""
        try:
            check_topic_name(topic.name)
        except TopicError as error:
            raise KafkaError(str(error), ErrorCode.invalid_topic_exception) from None
        if topic.name in self.logs.topics:
            raise KafkaError(f"Topic '{topic.name}' already exists.", ErrorCode.topic_already_exists)
        if topic.name in INTERNAL_TOPICS:
            raise KafkaError(f"{topic.name} is an internal topic; the broker creates it", ErrorCode.invalid_request)
        assignments = None
        if topic.assignments:
            if topic.num_partitions != USE_DEFAULT or topic.replication_factor != USE_DEFAULT:
                message = (
                    "Both numPartitions or replicationFactor and replicasAssignments were set. "
                    "Both cannot be used at the same time."
                )
                raise KafkaError(message, ErrorCode.invalid_request)
            assignments = self._check_assignments(topic.assignments, first_partition=0)
            partitions = len(assignments)
        else:
            replication_factor = (
                self.config.default_replication_factor
                if topic.replication_factor == USE_DEFAULT
                else topic.replication_factor
            )
            partitions = self.config.num_partitions if topic.num_partitions == USE_DEFAULT else topic.num_partitions
            if replication_factor <= 0:
                message = "Replication factor must be larger than 0, or -1 to use the default value."
                raise KafkaError(message, ErrorCode.invalid_replication_factor)
            if partitions <= 0:
                message = "Number of partitions was set to an invalid non-positive value."
                raise KafkaError(message, ErrorCode.invalid_partitions)
            if replication_factor > 1:
                message = (
                    f"Unable to replicate the partition {replication_factor} time(s): The target replication "
                    f"factor of {replication_factor} cannot be reached because only 1 broker(s) are registered."
                )
                raise KafkaError(message, ErrorCode.invalid_replication_factor)
        if partitions > limits.PARTITIONS_PER_TOPIC_MAX:
            message = f"Number of partitions {partitions} is above tidelog's {limits.PARTITIONS_PER_TOPIC_MAX}."
            raise KafkaError(message, ErrorCode.invalid_partitions)
        try:
            config = self.config.topic_defaults.with_overrides(topic.configs)
        except ConfigError as error:
            raise KafkaError(str(error), ErrorCode.invalid_config) from None
        return partitions, assignments, config

    def _check_assignments(self, assignments: dict[int, list[int]], first_partition: int) -> list[list[int]]:
        """A manual replica assignment, checked as Kafka does: consecutive partition indexes,
        known brokers, no broker twice, one replication factor."""
        indexes = sorted(assignments)
        if indexes != list(range(first_partition, first_partition + len(indexes))):
            message = "Partitions in the manual replica assignment should be a consecutive 0-based integer sequence."
            raise KafkaError(message, ErrorCode.invalid_replica_assignment)
        ordered = [list(assignments[index]) for index in indexes]
        for index, replicas in zip(indexes, ordered, strict=True):
            if not replicas:
                message = f"The manual partition assignment includes an empty replica list for partition {index}."
                raise KafkaError(message, ErrorCode.invalid_replica_assignment)
            if len(set(replicas)) != len(replicas):
                message = f"The manual partition assignment includes the partition {index} with duplicate broker ids."
                raise KafkaError(message, ErrorCode.invalid_replica_assignment)
            for broker_id in replicas:
                if broker_id != self.node_id:
                    message = (
                        f"The manual partition assignment includes broker {broker_id}, "
                        "but no such broker is registered."
                    )
                    raise KafkaError(message, ErrorCode.invalid_replica_assignment)
        if len({len(replicas) for replicas in ordered}) > 1:
            message = "All partitions in the manual partition assignment must have the same number of replicas."
            raise KafkaError(message, ErrorCode.invalid_replica_assignment)
        return ordered

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: dict[str, str | None] | None = None,
        internal: bool = False,
        assignments: list[list[int]] | None = None,
    ) -> TopicMetadata:
        """Creates a topic that passed the checks (or an internal one); raises KafkaError."""
        if name in INTERNAL_TOPICS and not internal:
            raise KafkaError(f"{name} is an internal topic; the broker creates it", ErrorCode.invalid_request)
        overrides = {k: v for k, v in (configs or {}).items() if v is not None}
        try:
            meta = self.logs.create_topic(name, partitions, overrides, assignments)
        except ConfigError as error:
            raise KafkaError(str(error), ErrorCode.invalid_config) from None
        except TopicError as error:
            raise KafkaError(str(error), ErrorCode.invalid_request) from None
        except (StorageError, OSError) as error:  # a full or failing disk: nothing was created
            raise KafkaError(f"cannot create topic {name}: {error}", ErrorCode.kafka_storage_error) from None
        self._adopt_topic(meta)
        self._topics_changed()
        log.info("created topic %s with %d partition(s)", name, partitions)
        return meta

    def delete_topics(self, wanted: Sequence[tuple[str | None, uuid.UUID | None]]) -> list[DeletedTopic]:
        """DeleteTopics, by name or (v6) by topic id. A topic named twice is not deleted and gets
        one INVALID_REQUEST answer, after the others, as Kafka answers."""
        keys = [name if name else topic_id for name, topic_id in wanted]
        duplicates = duplicated(keys)
        results = []
        for (name, topic_id), key in zip(wanted, keys, strict=True):
            if key in duplicates:
                continue
            meta = self.topic(name) if name else (self.topic_by_id(topic_id) if topic_id else None)
            if meta is None:
                error = ErrorCode.unknown_topic_or_partition if name else ErrorCode.unknown_topic_id
                results.append(DeletedTopic(name, topic_id, error))
                continue
            self.delete_topic(meta.name)
            results.append(DeletedTopic(meta.name, meta.topic_id, ErrorCode.none))
        for key in duplicates:
            name, topic_id = (key, None) if isinstance(key, str) else (None, key)
            results.append(DeletedTopic(name, topic_id, ErrorCode.invalid_request, DUPLICATE_NAME))
        return results

    def delete_topic(self, name: str) -> None:
        """Deletes a topic and its data. Committed offsets of its partitions go too (as in
        Kafka); deleting `__consumer_offsets` (Kafka allows it) drops every group."""
        meta = self.logs.topics.get(name)
        if meta is None:
            raise KafkaError(f"Topic '{name}' does not exist.", ErrorCode.unknown_topic_or_partition)
        if name == OFFSETS_TOPIC:  # the coordinator starts over on next use
            self.groups.forget_offsets_topic()
        if name == TRANSACTION_STATE_TOPIC:
            self.transactions.forget_topic()
        self.stats.forget(name)
        for index in range(meta.partitions):
            self.partitions.pop(TopicPartition(name, index), None)
        self._topic_names.pop(meta.topic_id, None)
        self.logs.delete_topic(name)
        self.groups.topic_deleted(name)
        self._topics_changed()
        log.info("deleted topic %s", name)

    def create_partitions_of(
        self, topics: Sequence[tuple[str, int, list[list[int]] | None]], validate_only: bool = False
    ) -> list[tuple[str, ErrorCode, str | None]]:
        """CreatePartitions for several topics: (name, error, message) each; a topic named twice
        gets one INVALID_REQUEST answer, before the others (Kafka 4.4's order here)."""
        duplicates = duplicated([name for name, _, _ in topics])
        results: list[tuple[str, ErrorCode, str | None]] = [
            (name, ErrorCode.invalid_request, DUPLICATE_NAME) for name in duplicates
        ]
        results += [
            (name, *self.create_partitions(name, count, assignments, validate_only))
            for name, count, assignments in topics
            if name not in duplicates
        ]
        return results

    def create_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None = None, validate_only: bool = False
    ) -> tuple[ErrorCode, str | None]:
        """CreatePartitions: raises a topic's partition count to `count`; `assignments` (the
        new partitions' replicas) are checked as CreateTopics checks them."""
        meta = self.logs.topics.get(name)
        if meta is None:
            return ErrorCode.unknown_topic_or_partition, f"Topic '{name}' does not exist."
        if count <= meta.partitions:
            message = (
                f"Topic currently has {meta.partitions} partitions, "
                f"which is higher than or equal to the requested {count}."
            )
            return ErrorCode.invalid_partitions, message
        if count > limits.PARTITIONS_PER_TOPIC_MAX:
            return (
                ErrorCode.invalid_partitions,
                f"Number of partitions {count} is above {limits.PARTITIONS_PER_TOPIC_MAX}.",
            )
        checked = None
        if assignments:
            if len(assignments) != count - meta.partitions:
                message = (
                    f"Increasing the number of partitions by {count - meta.partitions} but "
                    f"{len(assignments)} assignments provided."
                )
                return ErrorCode.invalid_replica_assignment, message
            try:
                new = dict(enumerate(assignments, start=meta.partitions))
                checked = self._check_assignments(new, first_partition=meta.partitions)
            except KafkaError as error:
                return error.error_code, error.message
        if validate_only:
            return ErrorCode.none, None
        old_count = meta.partitions
        try:
            self.logs.create_partitions(name, count, checked)
        except TopicError as error:
            return ErrorCode.invalid_partitions, str(error)
        except (StorageError, OSError) as error:  # a full or failing disk: nothing was added
            return ErrorCode.kafka_storage_error, f"cannot add partitions to {name}: {error}"
        self._adopt_topic(meta, first_partition=old_count)
        self._topics_changed()
        return ErrorCode.none, None

    # ---- metadata ----------------------------------------------------------------------------

    def describe_topics(
        self, topics: Sequence[tuple[str | None, uuid.UUID | None]] | None, allow_auto_create: bool
    ) -> list[TopicDescription]:
        """Metadata: the named topics (by name, or by id), or all of them. With
        `allow_auto_create` and `auto.create.topics.enable`, unknown legal names are created."""
        if topics is None:
            return [self._describe(meta) for _, meta in sorted(self.logs.topics.items())]
        answers = []
        for name, topic_id in topics:
            if name is None and topic_id is not None:
                meta = self.topic_by_id(topic_id)
                answers.append(
                    self._describe(meta)
                    if meta is not None
                    else TopicDescription(None, topic_id, ErrorCode.unknown_topic_id)
                )
                continue
            assert name is not None
            meta = self.logs.topics.get(name)
            if meta is None:
                answers.append(self._describe_missing(name, topic_id, allow_auto_create))
            else:
                answers.append(self._describe(meta))
        return answers

    def _describe(self, meta: TopicMetadata) -> TopicDescription:
        partitions = []
        for index in range(meta.partitions):
            replicas = self.replicas_of(meta, index)
            epoch = self.partitions[TopicPartition(meta.name, index)].leader_epoch
            partitions.append(PartitionDescription(index, self.node_id, epoch, replicas, replicas))
        internal = meta.name in INTERNAL_TOPICS
        return TopicDescription(meta.name, meta.topic_id, ErrorCode.none, internal, tuple(partitions))

    def _describe_missing(self, name: str, topic_id: uuid.UUID | None, allow_auto_create: bool) -> TopicDescription:
        unknown = topic_id or ZERO_UUID
        try:
            check_topic_name(name)
        except TopicError:
            return TopicDescription(name, unknown, ErrorCode.invalid_topic_exception)
        if allow_auto_create:
            # Kafka creates it and answers this request UNKNOWN_TOPIC_OR_PARTITION all the same;
            # the partitions show from the next request on (clients ask again).
            self.auto_create(name)
        return TopicDescription(name, unknown, ErrorCode.unknown_topic_or_partition)

    def auto_create(self, name: str) -> TopicMetadata | None:
        """Creates `name` with the default partition count if auto-creation is on and the name is legal."""
        if name == OFFSETS_TOPIC:
            self.groups.ensure_offsets_topic()
            return self.logs.topics[name]
        if not self.config.auto_create_topics_enable:
            return None
        try:
            return self.create_topic(name, self.config.num_partitions)
        except KafkaError:
            return None

    # ---- internal topics ---------------------------------------------------------------------

    def _offsets_logs(self) -> list[CoordinatorLog]:
        return self._internal_logs(OFFSETS_TOPIC)

    def _internal_logs(self, topic: str) -> list[CoordinatorLog]:
        meta = self.logs.topics[topic]
        return [CoordinatorPartitionLog(self.partitions[TopicPartition(topic, i)]) for i in range(meta.partitions)]

    def _create_transaction_topic(self) -> list[CoordinatorLog]:
        """`__transaction_state` as Kafka makes it: compacted, 50 partitions by default."""
        configs: dict[str, str | None] = {"cleanup.policy": "compact"}
        segment_bytes = self.config.transaction_state_log_segment_bytes
        small = segment_bytes < (TOPIC_KEYS["segment.bytes"].minimum or 0)
        configs["internal.segment.bytes" if small else "segment.bytes"] = str(segment_bytes)
        partitions = self.config.transaction_state_log_num_partitions
        self.create_topic(TRANSACTION_STATE_TOPIC, partitions, configs, internal=True)
        return self._internal_logs(TRANSACTION_STATE_TOPIC)

    def _create_offsets_topic(self) -> list[CoordinatorLog]:
        """`__consumer_offsets` as Kafka makes it: compacted, its own partition count and segment size."""
        configs: dict[str, str | None] = {"cleanup.policy": "compact"}
        segment_bytes = self.config.offsets_topic_segment_bytes
        # Below Kafka's 1 MiB bound on segment.bytes (tests), through Kafka's internal override.
        small = segment_bytes < (TOPIC_KEYS["segment.bytes"].minimum or 0)
        configs["internal.segment.bytes" if small else "segment.bytes"] = str(segment_bytes)
        self.create_topic(OFFSETS_TOPIC, self.config.offsets_topic_num_partitions, configs, internal=True)
        return self._offsets_logs()


def transactional_fields(records: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(producer id, epoch) of a transactional data batch; None for any other."""
    if len(records) < HEADER_BYTES:
        return None
    _, attributes, _, _, producer_id, epoch, _ = PRODUCER_FIELDS.unpack_from(records, PRODUCER_FIELDS_AT)
    if not attributes & TRANSACTIONAL_FLAG or attributes & CONTROL_FLAG:
        return None
    return producer_id, epoch


def one_batch_refusal(records: bytes | bytearray | memoryview | None) -> tuple[ErrorCode, str] | None:
    """Checks Kafka makes on a produce before the log sees the bytes: exactly one whole batch.
    (A batch cut short is INVALID_RECORD here, as in Kafka; a bad CRC is the log's CORRUPT_MESSAGE.)"""
    if not records:
        return ErrorCode.invalid_record, "no record batch"
    length = batch_length_of(records)
    if length is not None and length >= 0:
        if LOG_OVERHEAD + length < len(records):
            return ErrorCode.invalid_record, "produce v3+ carries exactly one record batch per partition"
        if LOG_OVERHEAD + length > len(records):
            return ErrorCode.invalid_record, "the record batch is cut short"
    return None
