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

Transactions (Kafka `ProducerStateManager`'s ongoing and unreplicated transactions): a producer's
first transactional batch opens its transaction on this partition (`current_txn_first_offset`);
a non-transactional batch while one is open is INVALID_TXN_STATE; the coordinator's marker
(`complete_transaction`) closes it, after the epoch and coordinator-epoch checks. A finished
transaction stays *unstable* until its marker is below the high watermark, so the last stable
offset is the first offset of the oldest open or unstable transaction (`first_unstable_offset`).

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
from tidelog.protocol.record_batch import (
    ControlRecordType,
    RecordDecodeError,
    decode_batch,
    iter_batches,
    parse_control_record,
)
from tidelog.storage._engine import BatchHeader, PartitionLog, StorageError
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


class TransactionCoordinatorFencedError(ProducerStateError):
    """A marker from an older coordinator epoch (Kafka TRANSACTION_COORDINATOR_FENCED)."""


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
    # The epoch of the coordinator that wrote this producer's last marker here, and the first
    # offset of its open transaction on this partition (NO_OFFSET: none).
    coordinator_epoch: int = NO_COORDINATOR_EPOCH
    current_txn_first_offset: int = NO_OFFSET

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else NO_OFFSET


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    """A transaction a marker just ended on this partition: [first_offset, last_offset], the
    last offset being the marker's."""

    producer_id: int
    first_offset: int
    last_offset: int
    aborted: bool


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
        # Open transactions: producer id -> first offset (mirrors current_txn_first_offset).
        self.ongoing: dict[int, int] = {}
        # Finished transactions whose marker may still be above the high watermark:
        # (marker offset, first offset), in log order.
        self.unstable: deque[tuple[int, int]] = deque()

    # --- the rules -------------------------------------------------------------------------

    def check(
        self, producer_id: int, epoch: int, first_sequence: int, last_sequence: int, transactional: bool = False
    ) -> BatchMetadata | None:
        """The cached batch if this one is a retry of it (append nothing); None to append.
        Raises InvalidProducerEpochError, OutOfOrderSequenceError or InvalidTxnStateError."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return None
        if epoch == entry.epoch:
            for cached in entry.batches:
                if cached.first_sequence == first_sequence and cached.last_sequence == last_sequence:
                    return cached
            if not transactional and entry.current_txn_first_offset != NO_OFFSET:
                raise InvalidTxnStateError(
                    f"producer {producer_id} wrote a non-transactional batch with a transaction open "
                    f"since offset {entry.current_txn_first_offset}"
                )
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
        transactional: bool = False,
    ) -> None:
        """Records an appended batch (after `check` passed, or while replaying the log)."""
        entry = self._entry(producer_id, epoch)
        entry.batches.append(
            BatchMetadata(first_sequence, last_sequence, last_offset, offset_delta, timestamp, log_append_time)
        )
        entry.last_timestamp = timestamp
        if transactional and entry.current_txn_first_offset == NO_OFFSET:
            first_offset = last_offset - offset_delta
            entry.current_txn_first_offset = first_offset
            self.ongoing[producer_id] = first_offset

    def begin_transaction(self, producer_id: int, epoch: int, first_offset: int) -> None:
        """A coordinator wrote transactional records (no sequence) for `producer_id`."""
        entry = self._entry(producer_id, epoch)
        if entry.current_txn_first_offset == NO_OFFSET:
            entry.current_txn_first_offset = first_offset
            self.ongoing[producer_id] = first_offset

    def _entry(self, producer_id: int, epoch: int) -> ProducerEntry:
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(producer_id, epoch)
        elif entry.epoch != epoch:  # a new epoch starts a new sequence: older batches cannot be retried
            entry.epoch = epoch
            entry.batches.clear()
        return entry

    # --- transactions ------------------------------------------------------------------------

    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int) -> None:
        """Kafka's checks of a transaction marker: its producer epoch is not older than the
        producer's here (INVALID_PRODUCER_EPOCH) and it comes from a coordinator epoch not older
        than the last marker's (TRANSACTION_COORDINATOR_FENCED)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"marker of producer {producer_id}: epoch {epoch} is older than {entry.epoch}"
            )
        if coordinator_epoch < entry.coordinator_epoch:
            raise TransactionCoordinatorFencedError(
                f"marker of producer {producer_id}: coordinator epoch {coordinator_epoch} "
                f"is older than {entry.coordinator_epoch}"
            )

    def complete_transaction(
        self, producer_id: int, epoch: int, coordinator_epoch: int, marker_offset: int, aborted: bool, timestamp: int
    ) -> CompletedTxn | None:
        """Records a marker appended at `marker_offset` (after `check_marker`); the transaction
        it ended, or None when the producer wrote nothing here in it (an empty transaction,
        which Kafka leaves out of the aborted-transaction index). A marker with a newer epoch
        (a fence, or TV2's bump per transaction) moves the producer to it."""
        entry = self._entry(producer_id, epoch)
        entry.coordinator_epoch = coordinator_epoch
        entry.last_timestamp = max(entry.last_timestamp, timestamp)
        first_offset = entry.current_txn_first_offset
        if first_offset == NO_OFFSET:
            return None
        entry.current_txn_first_offset = NO_OFFSET
        del self.ongoing[producer_id]
        self.unstable.append((marker_offset, first_offset))
        return CompletedTxn(producer_id, first_offset, marker_offset, aborted)

    def first_unstable_offset(self, high_watermark: int) -> int | None:
        """The first offset of the oldest transaction that is open, or finished with its marker
        not yet below `high_watermark`; None when there is none. Finished transactions below it
        are forgotten (the high watermark only grows)."""
        unstable = self.unstable
        while unstable and unstable[0][0] < high_watermark:
            unstable.popleft()
        first = min(self.ongoing.values(), default=None)
        if unstable:
            oldest_finished = min(first_offset for _, first_offset in unstable)
            first = oldest_finished if first is None else min(first, oldest_finished)
        return first

    def first_undecided_offset(self, log_end_offset: int) -> int:
        """Kafka's last stable offset as written into an aborted-transaction entry: the first
        offset of the oldest open transaction, else the log end offset."""
        return min(self.ongoing.values(), default=log_end_offset)

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forgets producers whose last batch is `producer.id.expiration.ms` old, except those
        with an open transaction (as Kafka); returns how many."""
        expired = [
            pid
            for pid, entry in self.producers.items()
            if now_ms - entry.last_timestamp >= expiration_ms and entry.current_txn_first_offset == NO_OFFSET
        ]
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
                # No batches: a producer a marker moved to a new epoch.
                if not 0 <= batch_count <= limits.PRODUCER_BATCHES_KEPT or pid < 0 or pid in producers:
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

    def _adopt(self, producers: dict[int, ProducerEntry]) -> None:
        """Takes the producers of a snapshot, with their open transactions."""
        self.producers = producers
        self.ongoing = {
            pid: entry.current_txn_first_offset
            for pid, entry in producers.items()
            if entry.current_txn_first_offset != NO_OFFSET
        }
        self.unstable.clear()

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
                manager._adopt(cls.parse_snapshot(path.read_bytes()))
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
        the log holds only batches that passed the rules; markers end their transactions. An
        aborted transaction the log's `.txnindex` lacks (cut by a crash) is appended to it.
        Returns the number of batches replayed."""
        replayed = 0
        offset = from_offset
        log_end_offset = partition_log.log_end_offset
        indexed_up_to = partition_log.last_aborted_txn_offset
        while offset < log_end_offset:
            headers, offset = partition_log.producer_batches(offset, limits.PRODUCER_REPLAY_BATCHES_PER_CALL)
            for h in headers:
                replayed += 1
                if h.is_control:
                    self._replay_marker(partition_log, h, indexed_up_to)
                    continue
                if h.base_sequence < 0:  # a coordinator's transactional records
                    if h.is_transactional and h.producer_id >= 0:
                        self.begin_transaction(h.producer_id, h.producer_epoch, h.base_offset)
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
                    h.is_transactional,
                )
        return replayed

    def _replay_marker(self, partition_log: PartitionLog, header: BatchHeader, indexed_up_to: int) -> None:
        marker = read_marker(partition_log, header.base_offset)
        if marker is None:
            log.error("%s: control batch at %d unreadable; skipped", self.directory.name, header.base_offset)
            return
        aborted, coordinator_epoch = marker
        completed = self.complete_transaction(
            header.producer_id,
            header.producer_epoch,
            coordinator_epoch,
            header.base_offset,
            aborted,
            header.max_timestamp,
        )
        if completed is not None and completed.aborted and completed.last_offset > indexed_up_to:
            last_stable = self.first_undecided_offset(completed.last_offset + 1)
            partition_log.append_aborted_txn(
                completed.producer_id, completed.first_offset, completed.last_offset, last_stable
            )


def read_marker(partition_log: PartitionLog, offset: int) -> tuple[bool, int] | None:
    """(aborted, coordinator epoch) of the transaction marker at `offset`; None if unreadable."""
    chunk = partition_log.read(offset, limits.CONTROL_BATCH_READ_BYTES, partition_log.log_end_offset, True)
    if chunk is None:
        return None
    try:
        batches = iter_batches(chunk.read())  # the read may hold batches after the marker's
        _, records = decode_batch(batches[0][1])
        _, _, key, value, _ = records[0]
        marker, coordinator_epoch = parse_control_record(key, value)
    except (RecordDecodeError, IndexError):
        return None
    return marker is ControlRecordType.ABORT, coordinator_epoch
