"""The log manager: topics, their partitions' logs in one data directory, and housekeeping.

Layout of the data directory, after Kafka's:
    <data-dir>/.lock                      held (flock) while a broker owns the directory
    <data-dir>/topics.json                topic ids, partition counts, config overrides
    <data-dir>/<topic>-<partition>/       one log: segments, indexes, log-state.checkpoint,
                                          producer-state snapshots (<offset>.snapshot)
    <data-dir>/producer-ids.json          the next block of producer ids (see producer_ids.py)
    <data-dir>/broker-configs.json        dynamic broker configs (see core/configs.py)
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tidelog import limits
from tidelog.config import TopicConfig
from tidelog.storage._engine import (
    Cleaner,
    CleanReport,
    DeletionReport,
    PartitionLog,
    RecoveryReport,
    StorageError,
    StorageIOError,
    delete_tree,
)
from tidelog.storage.durable_file import fsync_directory, write_atomically
from tidelog.storage.producer_state import ProducerStateManager
from tidelog.storage.unified_log import TopicPartition, UnifiedLog, log_config_for, now_ms

log = logging.getLogger(__name__)

TOPICS_FILE = "topics.json"
# Kafka's producer.id.expiration.ms default (KIP-854): one day.
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000
LOCK_FILE = ".lock"
WRITE_PROBE_FILE = ".write-probe"
DELETED_DIRECTORY_SUFFIX = "-delete"


class DataDirectoryUnusable(RuntimeError):
    """The data directory (or a log in it) cannot be opened or written: the start is refused."""

    def __init__(self, path: Path, error: BaseException) -> None:
        if isinstance(error, OSError) and error.errno is not None:
            detail = f"{error.strerror} ({errno.errorcode.get(error.errno, error.errno)})"
        else:
            detail = str(error)
        super().__init__(f"cannot use {path}: {detail}")
        self.path = path


def probe_writable(directory: Path) -> None:
    """Creates, writes, fsyncs and removes a small file in `directory`: raises OSError when the
    directory is not writable (read-only mount, permissions) or the disk is full."""
    probe = directory / WRITE_PROBE_FILE
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"tidelog\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def deleted_directory_name(topic_partition: TopicPartition) -> str:
    """A deleted partition's directory name until its files are gone (Kafka's pattern; no topic
    directory ends so, since a partition's name ends with its number)."""
    return f"{topic_partition.directory_name()}.{uuid.uuid4().hex}{DELETED_DIRECTORY_SUFFIX}"


class TopicError(ValueError):
    """A topic request that cannot be done: exists already, unknown, bad name or count."""


@dataclass
class TopicMetadata:
    name: str
    topic_id: uuid.UUID
    partitions: int
    overrides: dict[str, str] = field(default_factory=dict)
    # Replica assignment per partition (broker ids), when a client gave one; else the broker's own.
    assignments: list[list[int]] | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "topic_id": str(self.topic_id),
            "partitions": self.partitions,
            "configs": self.overrides,
        }
        if self.assignments is not None:
            entry["assignments"] = self.assignments
        return entry

    @classmethod
    def from_json(cls, name: str, entry: dict[str, Any]) -> TopicMetadata:
        topic_id = uuid.UUID(entry["topic_id"])
        return cls(name, topic_id, entry["partitions"], entry["configs"], entry.get("assignments"))


def check_topic_name(name: str) -> None:
    if not name or name in (".", ".."):
        raise TopicError(f"invalid topic name {name!r}")
    if len(name) > limits.TOPIC_NAME_LENGTH_MAX:
        raise TopicError(f"topic name longer than {limits.TOPIC_NAME_LENGTH_MAX} characters")
    if not set(name) <= limits.TOPIC_NAME_CHARACTERS:
        raise TopicError(f"topic name {name!r} may hold only ASCII letters, digits, '.', '_' and '-'")


class LogManager:
    """Maps topic-partitions to open logs in one data directory. Use from one thread."""

    def __init__(
        self,
        data_dir: Path,
        default_config: TopicConfig,
        lock: IO[bytes],
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        preallocate_bytes: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.preallocate_bytes = preallocate_bytes
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.default_config = default_config
        self._lock = lock
        self.topics: dict[str, TopicMetadata] = {}
        self.partitions: dict[TopicPartition, UnifiedLog] = {}
        self.executor = ThreadPoolExecutor(limits.FLUSH_THREADS, thread_name_prefix="tidelog-flush")
        self.recovery_reports: dict[TopicPartition, RecoveryReport] = {}

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        default_config: TopicConfig | None = None,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        preallocate_bytes: int = 0,
    ) -> LogManager:
        """Takes the directory's lock, loads topics and opens (recovering if needed) every log."""
        path = Path(data_dir)
        try:
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                fsync_directory(path.parent)  # the new directory's entry is durable too
            lock = open(path / LOCK_FILE, "wb")
        except OSError as error:
            raise DataDirectoryUnusable(path, error) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"{path} is in use by another tidelog process") from None
        try:
            probe_writable(path)
        except OSError as error:
            lock.close()
            raise DataDirectoryUnusable(path, error) from None
        manager = cls(path, default_config or TopicConfig(), lock, producer_id_expiration_ms, preallocate_bytes)
        try:
            manager._load()
        except BaseException:
            manager.executor.shutdown(wait=True)
            lock.close()
            raise
        return manager

    def _load(self) -> None:
        for leftover in self.data_dir.glob("*" + DELETED_DIRECTORY_SUFFIX):
            log.info("deleting %s, left by a topic deletion that a stop cut short", leftover.name)
            delete_tree(leftover)
        topics_file = self.data_dir / TOPICS_FILE
        if topics_file.exists():
            for name, entry in json.loads(topics_file.read_text()).items():
                self.topics[name] = TopicMetadata.from_json(name, entry)
        wanted = [tp for meta in self.topics.values() for tp in self._partitions_of(meta)]
        with ThreadPoolExecutor(limits.RECOVERY_THREADS, thread_name_prefix="tidelog-recovery") as pool:
            for topic_partition, opened in zip(wanted, pool.map(self._open_log_at_start, wanted), strict=True):
                self._adopt(topic_partition, *opened)

    def _open_log_at_start(
        self, topic_partition: TopicPartition
    ) -> tuple[PartitionLog, RecoveryReport, ProducerStateManager]:
        """`_open_log`, an I/O failure naming the partition's directory (the start is refused)."""
        try:
            return self._open_log(topic_partition)
        except (StorageIOError, OSError) as error:
            raise DataDirectoryUnusable(self.data_dir / topic_partition.directory_name(), error) from None

    @staticmethod
    def _partitions_of(meta: TopicMetadata) -> Iterator[TopicPartition]:
        return (TopicPartition(meta.name, p) for p in range(meta.partitions))

    def topic_config(self, topic: str) -> TopicConfig:
        return self.default_config.with_overrides(self.topics[topic].overrides)

    def _open_log(self, topic_partition: TopicPartition) -> tuple[PartitionLog, RecoveryReport, ProducerStateManager]:
        """Opens (recovers) the log, then loads its producer state: both run in recovery threads."""
        config = log_config_for(self.topic_config(topic_partition.topic), self.preallocate_bytes)
        partition_log, report = PartitionLog.open(self.data_dir / topic_partition.directory_name(), config)
        producer_state = ProducerStateManager.load(partition_log, now_ms(), self.producer_id_expiration_ms)
        return partition_log, report, producer_state

    def _adopt(
        self,
        topic_partition: TopicPartition,
        partition_log: PartitionLog,
        report: RecoveryReport,
        producer_state: ProducerStateManager,
    ) -> None:
        self.recovery_reports[topic_partition] = report
        if report.segments_scanned or report.bytes_truncated or report.segments_deleted:
            log.warning(
                "recovered %s after an unclean stop: scanned %d segment(s), truncated %d byte(s), "
                "deleted %d segment(s), log end offset %d, in %d ms",
                topic_partition.directory_name(),
                report.segments_scanned,
                report.bytes_truncated,
                report.segments_deleted,
                report.log_end_offset,
                report.duration_ms,
            )
        if report.segments_set_aside:
            log.warning(
                "%s: %d segment(s) after a torn one moved into %s/ (written after the last good fsync, "
                "never acknowledged; see docs/operations.md)",
                topic_partition.directory_name(),
                report.segments_set_aside,
                Path(partition_log.directory) / "set-aside",
            )
        self.partitions[topic_partition] = UnifiedLog(topic_partition, partition_log, self.executor, producer_state)

    def _save_topics(self) -> None:
        text = json.dumps({name: meta.to_json() for name, meta in sorted(self.topics.items())}, indent=1)
        write_atomically(self.data_dir / TOPICS_FILE, text)

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, Any] | None = None,
        assignments: list[list[int]] | None = None,
    ) -> TopicMetadata:
        check_topic_name(name)
        if name in self.topics:
            raise TopicError(f"topic {name!r} already exists")
        if not 1 <= partitions <= limits.PARTITIONS_PER_TOPIC_MAX:
            raise TopicError(f"partition count must be in [1, {limits.PARTITIONS_PER_TOPIC_MAX}]")
        config = self.default_config.with_overrides(configs or {})
        meta = TopicMetadata(name, uuid.uuid4(), partitions, config.explicit(configs or {}), assignments)
        self.topics[name] = meta
        try:
            for topic_partition in self._partitions_of(meta):
                self._remove_leftover(topic_partition)
                self._adopt(topic_partition, *self._open_log(topic_partition))
            self._save_topics()
        except (StorageError, OSError):  # a full disk, say: no half-made topic stays
            del self.topics[name]
            self._forget_partitions(list(self._partitions_of(meta)))
            raise
        return meta

    def _remove_leftover(self, topic_partition: TopicPartition) -> None:
        """A new partition's directory that already exists is a deleted topic's (a crash
        between forgetting the topic and removing its directories): its records are not the new
        partition's, so it goes before the new log is made (durably)."""
        directory = self.data_dir / topic_partition.directory_name()
        if directory.exists():
            log.warning("removing %s, left over from a deleted topic, before creating it again", directory.name)
            shutil.rmtree(directory)
            fsync_directory(self.data_dir)

    def _forget_partitions(self, partitions: list[TopicPartition]) -> None:
        """Closes and removes the logs of `partitions` that were opened (a failed creation)."""
        for topic_partition in partitions:
            opened = self.partitions.pop(topic_partition, None)
            self.recovery_reports.pop(topic_partition, None)
            if opened is not None:
                opened.group_commit.close()
                try:
                    opened.log.close()
                except StorageError as error:
                    log.error("closing %s failed: %s", topic_partition.directory_name(), error)
            shutil.rmtree(self.data_dir / topic_partition.directory_name(), ignore_errors=True)

    def create_partitions(self, name: str, total: int, assignments: list[list[int]] | None = None) -> None:
        """Adds partitions up to `total`; `assignments` are the new partitions' replicas."""
        meta = self._topic(name)
        if not meta.partitions < total <= limits.PARTITIONS_PER_TOPIC_MAX:
            raise TopicError(f"topic {name!r} has {meta.partitions} partitions; the new count must be larger")
        added = [TopicPartition(name, partition) for partition in range(meta.partitions, total)]
        before = (meta.partitions, meta.assignments)
        try:
            for topic_partition in added:
                self._remove_leftover(topic_partition)
                self._adopt(topic_partition, *self._open_log(topic_partition))
            meta.partitions = total
            if assignments is not None or meta.assignments is not None:
                meta.assignments = (meta.assignments or []) + (assignments or [])
            self._save_topics()
        except (StorageError, OSError):  # a full disk, say: the topic stays as it was
            meta.partitions, meta.assignments = before
            self._forget_partitions(added)
            raise

    def alter_topic_config(self, name: str, overrides: dict[str, str]) -> TopicConfig:
        """Replaces the topic's overrides (validated first) and applies them to its open logs."""
        meta = self._topic(name)
        config = self.default_config.with_overrides(overrides)
        meta.overrides = config.explicit(overrides)
        self._save_topics()
        self._apply(meta, config)
        return config

    def set_default_config(self, default_config: TopicConfig) -> None:
        """New topic defaults (dynamic broker configs): every open log whose config changes by
        them (a key its topic does not set itself) takes the new one at once."""
        before = {name: self.topic_config(name) for name in self.topics}
        self.default_config = default_config
        for name, meta in self.topics.items():
            config = self.topic_config(name)
            if config != before[name]:
                self._apply(meta, config)

    def _apply(self, meta: TopicMetadata, config: TopicConfig) -> None:
        engine_config = log_config_for(config, self.preallocate_bytes)
        for topic_partition in self._partitions_of(meta):
            self.partitions[topic_partition].log.set_config(engine_config)

    def delete_topic(self, name: str) -> None:
        """Forgets the topic durably first, then takes each partition's directory out of the data
        directory at once (renamed `<dir>.<id>-delete`, Kafka's pattern, durably). Its files are
        left to the engine's background deleter, which cuts them in paced pieces (unlinking a
        large file can stall every fdatasync on the disk for a quarter of a second) and only
        once no fetch still reads them. A crash between forgetting and renaming leaves
        directories no topic owns (creating the name again removes them first); a crash after
        it, renamed directories that the next start hands to the deleter again."""
        meta = self._topic(name)
        del self.topics[name]
        self._save_topics()
        for topic_partition in self._partitions_of(meta):
            partition_log = self.partitions.pop(topic_partition).log
            partition_log.close()
            partition_log.delete_into(self.data_dir / deleted_directory_name(topic_partition))

    def _topic(self, name: str) -> TopicMetadata:
        if name not in self.topics:
            raise TopicError(f"unknown topic {name!r}")
        return self.topics[name]

    def get(self, topic_partition: TopicPartition) -> UnifiedLog | None:
        return self.partitions.get(topic_partition)

    def checkpoint_all(self) -> None:
        """Writes every log's checkpoint (recovery point, log start offset). A log that fails
        is reported and skipped; the others still get theirs."""
        for topic_partition, partition in self.partitions.items():
            try:
                partition.log.checkpoint()
            except StorageError as error:
                log.error("checkpoint of %s failed: %s", topic_partition.directory_name(), error)

    def scrub(self, bytes_per_sec: int, stop: threading.Event) -> tuple[int, int]:
        """Verifies every segment that no read has verified yet, at most `bytes_per_sec`, in
        steps of `SCRUB_STEP_BYTES` until done or `stop` is set (blocking, GIL released: run it
        off the event loop). Returns (bytes checked, damaged batches found); each damaged batch
        is logged once."""
        checked = damaged = 0
        for topic_partition, partition in list(self.partitions.items()):
            before = partition.corrupt_batches
            try:
                while not stop.is_set() and (step := partition.scrub(bytes_per_sec, limits.SCRUB_STEP_BYTES)):
                    checked += step
            except StorageError as error:
                log.error("scrub of %s failed: %s", topic_partition.directory_name(), error)
            damaged += partition.corrupt_batches - before
        return checked, damaged

    def enforce_retention(self, upper_bound: Callable[[TopicPartition], int]) -> dict[TopicPartition, DeletionReport]:
        """Deletes expired segments of `delete`-policy topics, never at or above
        `upper_bound(topic_partition)` (the high watermark)."""
        reports = {}
        for topic_partition, partition in self.partitions.items():
            if "delete" not in self.topic_config(topic_partition.topic).cleanup_policies:
                continue
            try:
                report = partition.log.delete_old_segments(now_ms(), upper_bound(topic_partition))
            except StorageError as error:
                log.error("retention on %s failed: %s", topic_partition.directory_name(), error)
                continue
            if report.segments_deleted:
                reports[topic_partition] = report
                try:
                    partition.producer_state.delete_snapshots_below(report.log_start_offset)
                except OSError as error:
                    log.error("removing old snapshots of %s failed: %s", topic_partition.directory_name(), error)
        return reports

    def filthiest_log(self, upper_bound: Callable[[TopicPartition], int]) -> TopicPartition | None:
        """Kafka's `grabFilthiestCompactedLog`: among `compact` topics' logs, the one with the
        highest dirty ratio above its `min.cleanable.dirty.ratio`, or with dirty segments older
        than its `max.compaction.lag.ms`; None when no log needs cleaning."""
        now = now_ms()
        best: tuple[float, TopicPartition] | None = None
        for topic_partition, partition in self.partitions.items():
            config = self.topic_config(topic_partition.topic)
            if not config.compact:
                continue
            offered = partition.log.cleanable(now, upper_bound(topic_partition))
            overdue = offered.compaction_delay_ms > 0 and offered.cleanable_bytes > 0
            if (overdue or offered.ratio > config.min_cleanable_dirty_ratio) and (
                best is None or offered.ratio > best[0]
            ):
                best = (offered.ratio, topic_partition)
        return None if best is None else best[1]

    def clean(
        self, cleaner: Cleaner, topic_partition: TopicPartition, upper_bound: int, producers: list[tuple[int, int, int]]
    ) -> CleanReport | None:
        """One cleaning pass over the log (blocking, GIL released: run it off the event loop);
        logs what it did. `upper_bound` is the partition's last stable offset, `producers` its
        active producers (`UnifiedLog.active_producers`, taken on the event loop)."""
        partition = self.partitions.get(topic_partition)
        if partition is None:
            return None
        report = cleaner.clean(partition.log, now_ms(), upper_bound, producers)
        if report is not None:
            seconds = max(report.duration_ms, 1) / 1000
            log.info(
                "cleaned %s: %d segment(s) -> %d, %d -> %d bytes, %d -> %d records in %d ms (%.1f MiB/s)",
                topic_partition.directory_name(),
                report.segments_read,
                report.segments_written,
                report.bytes_read,
                report.bytes_written,
                report.records_read,
                report.records_retained,
                report.duration_ms,
                report.bytes_read / seconds / (1 << 20),
            )
        return report

    def expire_producers(self, now: int | None = None) -> int:
        """Forgets producers idle for `producer.id.expiration.ms` in every partition; returns how many."""
        at = now_ms() if now is None else now
        return sum(p.producer_state.expire(at, self.producer_id_expiration_ms) for p in self.partitions.values())

    def close(self) -> int:
        """Snapshots producer state, flushes and closes every log cleanly, then releases the
        directory. Returns how many logs failed to close (they are recovered at the next open)."""
        failures = 0
        for partition in self.partitions.values():
            partition.group_commit.close()
        for topic_partition, partition in self.partitions.items():
            try:
                partition.snapshot_producer_state()
            except OSError as error:  # the next start replays the log from an older snapshot instead
                log.error("producer-state snapshot of %s failed: %s", topic_partition.directory_name(), error)
            try:
                partition.log.close()
            except StorageError as error:
                failures += 1
                log.error("closing %s failed: %s", topic_partition.directory_name(), error)
        self.partitions.clear()
        self.executor.shutdown(wait=True)
        self._lock.close()
        return failures
