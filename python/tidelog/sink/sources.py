"""Where a sink's records come from: a Kafka consumer (confluent-kafka, any cluster) or a
tidelog directory opened in this process (`tidelog.open`).

A source never decides positions: the sink tells it where each partition starts (from the
offset store) and when to move one. Kafka's committed offsets are never read back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tidelog.sink.records import EARLIEST, LATEST, SinkRecord, TopicPartition

if TYPE_CHECKING:
    from tidelog.embedded import Log

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What a source calls back into (the sink)."""

    def assigned(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Claims `partitions`; answers where each starts (an offset, EARLIEST or LATEST)."""
        ...

    def revoked(self, partitions: Sequence[TopicPartition], lost: bool) -> None: ...

    def out_of_range(self, partition: TopicPartition) -> None: ...

    def resume_offset(self, partition: TopicPartition) -> int:
        """Where an owned partition goes on from (its stored offset, or where a reset moved it)."""
        ...


class Source(Protocol):
    def start(self, owner: Owner) -> None: ...

    def poll(self, max_records: int, timeout_s: float) -> list[SinkRecord]: ...

    def position(self, partition: TopicPartition) -> int | None:
        """The offset after the last record returned (past control records where known)."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def pause(self, partition: TopicPartition) -> None: ...

    def resume(self, partition: TopicPartition) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def watermarks(self, partition: TopicPartition) -> tuple[int, int]: ...

    def commit_async(self, positions: Mapping[TopicPartition, int]) -> None: ...

    def close(self) -> None: ...


class KafkaSource:
    """A confluent-kafka consumer, subscribed to `topics` (a consumer group: partitions come
    and go with rebalances, eager or cooperative-sticky) or assigned `partitions` (no group
    membership; `group.id` still names the sink's rows).

    Settings the sink needs are forced: no auto commit, no offset store, and
    `auto.offset.reset=error` so a stored position that is out of range reaches the sink's
    policy instead of librdkafka's. `isolation.level` is the caller's (librdkafka's default,
    read_committed, is right for transactional input)."""

    FORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "error"}

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str] | None = None,
        partitions: Sequence[TopicPartition] | None = None,
    ) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        self._partition_type = KafkaTopicPartition  # confluent-kafka is imported here, not at load
        if (topics is None) == (partitions is None):
            raise ValueError("give topics (a consumer group) or partitions (assigned), not both")
        if not config.get("group.id"):
            raise ValueError("the consumer config needs a group.id (it names the sink's offset rows)")
        self.group_id = str(config["group.id"])
        self.topics = list(topics or ())
        self.partitions = list(partitions or ())
        settings = dict(config)
        settings.update(self.FORCED)
        self.cooperative = "cooperative" in str(settings.get("partition.assignment.strategy", ""))
        self.consumer = Consumer(settings)
        self._owner: Owner | None = None

    # ---- membership ----------------------------------------------------------------------------

    def start(self, owner: Owner) -> None:
        self._owner = owner
        if self.topics:
            self.consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        else:
            self.consumer.assign(self._topic_partitions(owner.assigned(self.partitions)))

    def _topic_partitions(self, starts: Mapping[TopicPartition, int]) -> list[Any]:
        return [self._partition_type(topic, partition, offset) for (topic, partition), offset in starts.items()]

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        assert self._owner is not None
        starts = self._owner.assigned([(p.topic, p.partition) for p in partitions])
        chosen = self._topic_partitions(starts)
        if self.cooperative:
            consumer.incremental_assign(chosen)
        else:
            consumer.assign(chosen)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=True)

    def _revoke(self, consumer: Any, partitions: list[Any], lost: bool) -> None:
        assert self._owner is not None
        # The sink holds no open transaction here: callbacks run inside poll, between batches.
        self._owner.revoked([(p.topic, p.partition) for p in partitions], lost)
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    # ---- records -------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[SinkRecord]:
        from confluent_kafka import KafkaError, KafkaException

        assert self._owner is not None
        records: list[SinkRecord] = []
        append = records.append
        message: Any  # the stubs allow None fields, which only error messages have
        for message in self.consumer.consume(max_records, timeout_s):
            error = message.error()
            if error is None:
                append(
                    SinkRecord(
                        message.topic(),
                        message.partition(),
                        message.offset(),
                        message.key(),
                        message.value(),
                        message.headers() or (),
                        message.timestamp()[1],
                    )
                )
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                self._owner.out_of_range((message.topic(), message.partition()))
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("consumer error (librdkafka retries it): %s", error)
        return records

    def position(self, partition: TopicPartition) -> int | None:
        (found,) = self.consumer.position([self._partition_type(*partition)])
        return int(found.offset) if found.offset >= 0 else None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        from confluent_kafka import KafkaError, KafkaException

        wanted = self._partition_type(partition[0], partition[1], offset)
        try:
            self.consumer.seek(wanted)
        except KafkaException as error:
            if error.args[0].code() != KafkaError._STATE:
                raise
            log.info("%s-%d: assigned again at %d (its fetcher had stopped)", partition[0], partition[1], offset)
            # A partition whose fetcher stopped (after auto.offset.reset=error) takes no seek:
            # it is assigned again at the offset instead.
            if self.cooperative or not self.topics:
                self.consumer.incremental_unassign([self._partition_type(*partition)])
                self.consumer.incremental_assign([wanted])
                return
            # An eager group member changes its assignment with assign() only: the whole of it,
            # every other partition where the sink goes on from (never Kafka's committed offsets).
            assert self._owner is not None
            others = [p for p in self.assignment() if p != partition]
            self.consumer.assign(
                [wanted, *(self._partition_type(t, n, self._owner.resume_offset((t, n))) for t, n in others)]
            )

    def pause(self, partition: TopicPartition) -> None:
        self.consumer.pause([self._partition_type(*partition)])

    def resume(self, partition: TopicPartition) -> None:
        self.consumer.resume([self._partition_type(*partition)])

    def assignment(self) -> set[TopicPartition]:
        return {(p.topic, p.partition) for p in self.consumer.assignment()}

    def watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        low, high = self.consumer.get_watermark_offsets(self._partition_type(*partition), timeout=10)
        return int(low), int(high)

    def commit_async(self, positions: Mapping[TopicPartition, int]) -> None:
        """Kafka's committed offsets, for lag dashboards only (the sink never reads them)."""
        from confluent_kafka import KafkaException

        try:
            self.consumer.commit(offsets=self._topic_partitions(positions), asynchronous=True)
        except KafkaException as error:  # e.g. during a rebalance; the next batch commits again
            log.debug("dashboard commit skipped: %s", error)

    def close(self) -> None:
        self.consumer.close()


class EmbeddedSource:
    """Partitions of a tidelog directory opened in this process (`tidelog.open`): reads with the
    native API, no TCP and no consumer group (the offset store's tokens still fence a second
    process that opens the same store). Positions come from the log (`read_with_next`), so they
    move past control records."""

    def __init__(self, log: Log, partitions: Sequence[TopicPartition], *, isolation: str = "read_committed") -> None:
        if not partitions:
            raise ValueError("an embedded source needs partitions")
        self.log = log
        self.partitions = list(dict.fromkeys(partitions))
        self.isolation = isolation
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._owner: Owner | None = None
        self._next = 0  # round robin: where the next poll starts

    def start(self, owner: Owner) -> None:
        self._owner = owner
        for partition, start in owner.assigned(self.partitions).items():
            self.seek(partition, start)

    def poll(self, max_records: int, timeout_s: float) -> list[SinkRecord]:
        records = self._read(max_records)
        if not records and self._readable():
            waiting = {p: o for p, o in self._positions.items() if p not in self._paused}
            if waiting and self.log.wait_for_any(waiting, timeout_s, isolation=self.isolation):  # type: ignore[arg-type]
                records = self._read(max_records)
        return records

    def _readable(self) -> bool:
        return any(p not in self._paused for p in self._positions)

    def _read(self, max_records: int) -> list[SinkRecord]:
        from tidelog.errors import OffsetOutOfRangeError

        assert self._owner is not None
        records: list[SinkRecord] = []
        order = self.partitions[self._next :] + self.partitions[: self._next]
        self._next = (self._next + 1) % len(self.partitions)
        for partition in order:
            if partition not in self._positions or partition in self._paused or len(records) >= max_records:
                continue
            topic, number = partition
            try:
                found, after = self.log.read_with_next(
                    topic,
                    number,
                    self._positions[partition],
                    max_records=max_records - len(records),
                    isolation=self.isolation,  # type: ignore[arg-type]
                )
            except OffsetOutOfRangeError:
                self._owner.out_of_range(partition)
                continue
            self._positions[partition] = after
            records.extend(SinkRecord(topic, number, r.offset, r.key, r.value, r.headers, r.timestamp) for r in found)
        return records

    def position(self, partition: TopicPartition) -> int | None:
        return self._positions.get(partition)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if offset in (EARLIEST, LATEST):
            found = self.log.offsets(*partition)
            offset = found.log_start_offset if offset == EARLIEST else found.high_watermark
        self._positions[partition] = offset

    def pause(self, partition: TopicPartition) -> None:
        self._paused.add(partition)

    def resume(self, partition: TopicPartition) -> None:
        self._paused.discard(partition)

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    def watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        found = self.log.offsets(*partition)
        return found.log_start_offset, found.high_watermark

    def commit_async(self, positions: Mapping[TopicPartition, int]) -> None:
        return None  # no group: nothing to show lag against

    def close(self) -> None:
        return None  # the caller opened the log and closes it
