"""Idempotent-producer state of one partition: per producer id, its producer epoch and the
metadata of its last batches, plus the snapshots that make it survive restarts.

The rules are Kafka's (`ProducerAppendInfo`, `UnifiedLog.analyzeAndValidateProducerState`),
checked by `check` before an append and recorded by `record` after it succeeds:

- same epoch and a (first, last) sequence equal to one of the cached batches: a duplicate; the
  caller appends nothing and answers the original offsets;
- an older epoch: INVALID_PRODUCER_EPOCH;
- a newer epoch (a client-side epoch bump, or a new session) must start at sequence 0; its first
  batch clears the cache;
- the same epoch must continue at last sequence + 1 (INT32_MAX wraps to 0), anything else is
  OUT_OF_ORDER_SEQUENCE_NUMBER, also a retry older than the cached batches;
- a producer id with no state is accepted at any sequence (KIP-360: no UNKNOWN_PRODUCER_ID).

Snapshots are `<offset>.snapshot` files in the partition directory (Kafka's name) holding the
state as of that offset: every producer with all of its cached batches, under a CRC-32C. Kafka
keeps only each producer's last batch in a snapshot, so after a restart it deduplicates one batch
instead of five; a client with five batches in flight then gets a fatal out-of-order error.
Loading takes the newest snapshot that passes its checksum (deleting bad ones and any beyond the
log end), then replays the batch headers of the log after it.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

from tidelog import limits
from tidelog.storage._engine import PartitionLog, StorageError
from tidelog.storage.durable_file import write_atomically

log = logging.getLogger(__name__)

INT32_MAX = 2**31 - 1
NO_PRODUCER_ID = -1
NO_OFFSET = -1
NO_COORDINATOR_EPOCH = -1
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_TEMP_SUFFIX = ".snapshot.tmp"
SNAPSHOT_NAME_DIGITS = 20

# Snapshot layout (big-endian). Version 1 is tidelog's own: Kafka's version 1 keeps one batch per
# producer, so the two are not interchangeable even though the file name is Kafka's.
#   version i16 | crc u32 (CRC-32C of every byte after it) | producer count i32
#   per producer: producer id i64, epoch i16, last timestamp i64, coordinator epoch i32,
#                 current transaction first offset i64, batch count i8
#   per batch:    first sequence i32, last sequence i32, last offset i64, offset delta i32,
#                 timestamp i64, log-append-time flag i8
SNAPSHOT_VERSION = 1
SNAPSHOT_HEADER = struct.Struct(">hIi")
SNAPSHOT_PRODUCER = struct.Struct(">qhqiqb")
SNAPSHOT_BATCH = struct.Struct(">iiqiqb")
CRC_START = 6


class ProducerStateError(StorageError):
    """An append refused by the idempotent-producer rules."""


class InvalidProducerEpochError(ProducerStateError):
    """The batch's producer epoch is older than the partition's (Kafka INVALID_PRODUCER_EPOCH)."""


class OutOfOrderSequenceError(ProducerStateError):
    """The batch does not continue the producer's sequence (Kafka OUT_OF_ORDER_SEQUENCE_NUMBER)."""


class InvalidTxnStateError(ProducerStateError):
    """A transactional batch with no transaction open (Kafka INVALID_TXN_STATE)."""


class SnapshotError(ValueError):
    """A snapshot file that fails its checksum or does not parse."""


def last_sequence_of(base_sequence: int, offset_delta: int) -> int:
    """The batch's last sequence: sequences wrap from INT32_MAX to 0, as Kafka's do."""
    last = base_sequence + offset_delta
    return last - INT32_MAX - 1 if last > INT32_MAX else last


def next_sequence(sequence: int) -> int:
    return 0 if sequence == INT32_MAX else sequence + 1


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """One appended batch of a producer: enough to answer a retry of it."""

    first_sequence: int
    last_sequence: int
    last_offset: int
    offset_delta: int
    timestamp: int
    log_append_time: bool

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=limits.PRODUCER_BATCHES_KEPT))
    last_timestamp: int = -1
    # Kept for DescribeProducers and the snapshot layout; transactions (a later issue) set them.
    coordinator_epoch: int = NO_COORDINATOR_EPOCH
    current_txn_first_offset: int = NO_OFFSET

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else NO_OFFSET


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:0{SNAPSHOT_NAME_DIGITS}d}{SNAPSHOT_SUFFIX}"


def snapshot_offsets(directory: Path) -> list[int]:
    """Offsets of the snapshot files in `directory`, oldest first."""
    offsets = []
    for path in directory.glob("*" + SNAPSHOT_SUFFIX):
        if path.stem.isdigit():
            offsets.append(int(path.stem))
    return sorted(offsets)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:  # another pass removed it first
        pass


class ProducerStateManager:
    """The producer state of one partition. Used from the event loop thread only, except that a
    snapshot's bytes, once taken, may be written to disk from another thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.producers: dict[int, ProducerEntry] = {}

    # --- the rules -------------------------------------------------------------------------

    def check(self, producer_id: int, epoch: int, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        """The cached batch if this one is a retry of it (append nothing); None to append.
        Raises InvalidProducerEpochError or OutOfOrderSequenceError."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return None
        if epoch == entry.epoch:
            for cached in entry.batches:
                if cached.first_sequence == first_sequence and cached.last_sequence == last_sequence:
                    return cached
            if first_sequence != next_sequence(entry.last_sequence):
                raise OutOfOrderSequenceError(
                    f"producer {producer_id} epoch {epoch}: "
                    f"sequence {first_sequence} does not follow {entry.last_sequence}"
                )
            return None
        if epoch < entry.epoch:
            raise InvalidProducerEpochError(f"producer {producer_id}: epoch {epoch} is older than {entry.epoch}")
        if first_sequence != 0:
            raise OutOfOrderSequenceError(
                f"producer {producer_id}: new epoch {epoch} must start at sequence 0, not {first_sequence}"
            )
        return None

    def record(
        self,
        producer_id: int,
        epoch: int,
        first_sequence: int,
        last_sequence: int,
        last_offset: int,
        offset_delta: int,
        timestamp: int,
        log_append_time: bool,
    ) -> None:
        """Records an appended batch (after `check` passed, or while replaying the log)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(producer_id, epoch)
        elif entry.epoch != epoch:  # a new epoch starts a new sequence: older batches cannot be retried
            entry.epoch = epoch
            entry.batches.clear()
        entry.batches.append(
            BatchMetadata(first_sequence, last_sequence, last_offset, offset_delta, timestamp, log_append_time)
        )
        entry.last_timestamp = timestamp

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forgets producers whose last batch is `producer.id.expiration.ms` old; returns how many.
        (Kafka keeps producers with an open transaction; there are none yet.)"""
        expired = [pid for pid, entry in self.producers.items() if now_ms - entry.last_timestamp >= expiration_ms]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    # --- snapshots ---------------------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        parts = []
        for entry in self.producers.values():
            parts.append(
                SNAPSHOT_PRODUCER.pack(
                    entry.producer_id,
                    entry.epoch,
                    entry.last_timestamp,
                    entry.coordinator_epoch,
                    entry.current_txn_first_offset,
                    len(entry.batches),
                )
            )
            for b in entry.batches:
                parts.append(
                    SNAPSHOT_BATCH.pack(
                        b.first_sequence, b.last_sequence, b.last_offset, b.offset_delta, b.timestamp, b.log_append_time
                    )
                )
        body = struct.pack(">i", len(self.producers)) + b"".join(parts)
        return struct.pack(">hI", SNAPSHOT_VERSION, crc32c.crc32c(body)) + body

    @staticmethod
    def parse_snapshot(data: bytes) -> dict[int, ProducerEntry]:
        try:
            version, crc, count = SNAPSHOT_HEADER.unpack_from(data)
            if version != SNAPSHOT_VERSION:
                raise SnapshotError(f"unknown snapshot version {version}")
            if crc32c.crc32c(data[CRC_START:]) != crc:
                raise SnapshotError("CRC-32C mismatch")
            producers = {}
            at = SNAPSHOT_HEADER.size
            for _ in range(count):
                pid, epoch, last_timestamp, coordinator_epoch, txn_first, batch_count = SNAPSHOT_PRODUCER.unpack_from(
                    data, at
                )
                at += SNAPSHOT_PRODUCER.size
                if not 0 < batch_count <= limits.PRODUCER_BATCHES_KEPT or pid < 0 or pid in producers:
                    raise SnapshotError(f"bad entry for producer {pid}")
                entry = ProducerEntry(
                    pid,
                    epoch,
                    last_timestamp=last_timestamp,
                    coordinator_epoch=coordinator_epoch,
                    current_txn_first_offset=txn_first,
                )
                for _ in range(batch_count):
                    first, last, last_offset, delta, timestamp, append_time = SNAPSHOT_BATCH.unpack_from(data, at)
                    at += SNAPSHOT_BATCH.size
                    entry.batches.append(BatchMetadata(first, last, last_offset, delta, timestamp, bool(append_time)))
                producers[pid] = entry
            if at != len(data):
                raise SnapshotError(f"{len(data) - at} bytes after the last entry")
        except struct.error as error:
            raise SnapshotError(f"cut short: {error}") from None
        return producers

    @staticmethod
    def write_snapshot(directory: Path, offset: int, data: bytes) -> None:
        """Temp file, fsync, rename, directory fsync; then only the newest snapshots are kept.
        Safe to run in another thread: `data` is an immutable copy of the state."""
        path = snapshot_path(directory, offset)
        temp = path.with_name(path.name[: -len(SNAPSHOT_SUFFIX)] + SNAPSHOT_TEMP_SUFFIX)
        write_atomically(path, data, temp)
        offsets = snapshot_offsets(directory)
        for old in offsets[: -limits.PRODUCER_SNAPSHOTS_KEPT]:
            _unlink(snapshot_path(directory, old))

    def take_snapshot(self, offset: int) -> None:
        """Writes the state as of `offset` now (clean shutdown)."""
        self.write_snapshot(self.directory, offset, self.snapshot_bytes())

    def delete_snapshots_below(self, offset: int) -> None:
        """Removes snapshots of data that retention deleted, but always keeps the newest one:
        its producers still deduplicate though their batches are gone."""
        offsets = snapshot_offsets(self.directory)
        for old in offsets[:-1]:
            if old < offset:
                _unlink(snapshot_path(self.directory, old))

    @classmethod
    def load(cls, partition_log: PartitionLog, now_ms: int, expiration_ms: int) -> ProducerStateManager:
        """The newest snapshot that passes its checksum, then a replay of the log after it."""
        directory = Path(partition_log.directory)
        manager = cls(directory)
        for temp in directory.glob("*" + SNAPSHOT_TEMP_SUFFIX):  # a write cut short by a crash
            _unlink(temp)
        log_end_offset = partition_log.log_end_offset
        replay_from = 0
        for offset in reversed(snapshot_offsets(directory)):
            path = snapshot_path(directory, offset)
            if offset > log_end_offset:  # the log lost data it covers (a torn tail): useless
                log.warning("deleting %s: beyond the log end offset %d", path, log_end_offset)
                _unlink(path)
                continue
            try:
                manager.producers = cls.parse_snapshot(path.read_bytes())
            except (SnapshotError, OSError) as error:
                log.warning("deleting producer-state snapshot %s: %s", path, error)
                _unlink(path)
                continue
            replay_from = offset
            break
        replayed = manager.replay(partition_log, replay_from)
        expired = manager.expire(now_ms, expiration_ms)
        if replayed or expired:
            log.info(
                "producer state of %s: %d producer(s) after replaying %d batch(es) from offset %d, %d expired",
                directory.name,
                len(manager.producers),
                replayed,
                replay_from,
                expired,
            )
        return manager

    def replay(self, partition_log: PartitionLog, from_offset: int) -> int:
        """Records every producer batch of the log from `from_offset` to its end, unchecked:
        the log holds only batches that passed the rules. Returns the number replayed."""
        replayed = 0
        offset = from_offset
        log_end_offset = partition_log.log_end_offset
        while offset < log_end_offset:
            headers, offset = partition_log.producer_batches(offset, limits.PRODUCER_REPLAY_BATCHES_PER_CALL)
            for h in headers:
                if h.is_control:
                    continue
                last_sequence = last_sequence_of(h.base_sequence, h.last_offset_delta)
                self.record(
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    last_sequence,
                    h.base_offset + h.last_offset_delta,
                    h.last_offset_delta,
                    h.max_timestamp,
                    h.is_log_append_time,
                )
                replayed += 1
        return replayed
