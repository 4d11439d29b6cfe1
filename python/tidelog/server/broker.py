"""What every handler shares: config, logs, cluster identity, and caches keyed by metadata epoch."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from tidelog.config import BrokerConfig
from tidelog.coordinator.group_coordinator import GroupCoordinator
from tidelog.coordinator.shard import OffsetsLog
from tidelog.storage import LogManager, Partition, ProducerIdAllocator, TopicError, TopicMetadata, TopicPartition
from tidelog.storage.durable_file import write_atomically

OFFSETS_TOPIC = "__consumer_offsets"
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC})

log = logging.getLogger(__name__)

META_PROPERTIES = "meta.properties"


def read_or_create_cluster_id(data_dir: Path) -> str:
    """The cluster id in `meta.properties` (Kafka's file), made once like Kafka's: a random
    UUID in URL-safe base64 without padding."""
    path = data_dir / META_PROPERTIES
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    write_atomically(path, f"version=1\ncluster.id={cluster_id}\n")
    return cluster_id


class OffsetsPartitionLog:
    """A `__consumer_offsets` partition as the group coordinator sees it (`shard.OffsetsLog`)."""

    def __init__(self, partition: Partition) -> None:
        self.partition = partition

    def append(self, batch: bytes) -> Awaitable[None]:
        _, durable = self.partition.produce(batch, wait_durable=True)
        if durable is not None:
            return durable
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def read_chunk(self, offset: int, max_bytes: int) -> tuple[bytes, int]:
        log_end = self.partition.log_end_offset
        chunk = self.partition.read(offset, max_bytes, upper_bound=log_end)
        return (b"" if chunk is None else chunk.read()), log_end

    @property
    def log_start_offset(self) -> int:
        return self.partition.log_start_offset


class Broker:
    """A single-node broker's shared state. Used from the event loop thread only."""

    def __init__(self, config: BrokerConfig, logs: LogManager) -> None:
        self.config = config
        self.logs = logs
        self.node_id = config.node_id
        self.host, self.port = config.advertised_address()
        self.cluster_id = read_or_create_cluster_id(logs.data_dir)
        self.producer_ids = ProducerIdAllocator(logs.data_dir)
        # Bumped on every topic change; encoded responses that depend on topics are cached under it.
        self.metadata_epoch = 0
        self.response_cache: dict[Any, bytes] = {}
        self.groups = GroupCoordinator(config, self._create_offsets_topic)

    @classmethod
    def open(cls, config: BrokerConfig) -> Broker:
        logs = LogManager.open(
            config.log_dirs,
            config.topic_defaults,
            durable_acks=config.tidelog_flush_before_ack,
            producer_id_expiration_ms=config.producer_id_expiration_ms,
        )
        return cls(config, logs)

    def start(self) -> None:
        """Starts background work that needs the event loop: replaying `__consumer_offsets`."""
        if OFFSETS_TOPIC in self.logs.topics:
            self.groups.start(self._offsets_logs())

    def _offsets_logs(self) -> list[OffsetsLog]:
        meta = self.logs.topics[OFFSETS_TOPIC]
        logs: list[OffsetsLog] = []
        for index in range(meta.partitions):
            partition = self.partition(OFFSETS_TOPIC, index)
            assert partition is not None
            logs.append(OffsetsPartitionLog(partition))
        return logs

    def _create_offsets_topic(self) -> list[OffsetsLog]:
        """`__consumer_offsets` as Kafka makes it: compacted, its own partition count and segment size."""
        configs = {"cleanup.policy": "compact", "segment.bytes": str(self.config.offsets_topic_segment_bytes)}
        self.create_topic(OFFSETS_TOPIC, self.config.offsets_topic_num_partitions, configs, internal=True)
        return self._offsets_logs()

    def has_partition(self, topic: str, index: int) -> bool:
        return self.partition(topic, index) is not None

    @staticmethod
    def is_internal(topic: str) -> bool:
        return topic in INTERNAL_TOPICS

    def topics_changed(self) -> None:
        self.metadata_epoch += 1
        self.response_cache.clear()

    def partition(self, topic: str, index: int) -> Partition | None:
        return self.logs.get(TopicPartition(topic, index))

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicMetadata | None:
        for meta in self.logs.topics.values():
            if meta.topic_id == topic_id:
                return meta
        return None

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str] | None = None, internal: bool = False
    ) -> TopicMetadata:
        if name in INTERNAL_TOPICS and not internal:
            raise TopicError(f"{name} is an internal topic; the broker creates it")
        meta = self.logs.create_topic(name, partitions, configs)
        self.topics_changed()
        log.info("created topic %s with %d partition(s)", name, partitions)
        return meta

    def delete_topic(self, name: str) -> None:
        if name == OFFSETS_TOPIC:  # Kafka allows it; the coordinator starts over on next use
            self.groups.forget_offsets_topic()
        self.logs.delete_topic(name)
        self.groups.topic_deleted(name)
        self.topics_changed()
        log.info("deleted topic %s", name)

    def auto_create(self, name: str) -> TopicMetadata | None:
        """Creates `name` with the default partition count if auto-creation is on and the name is legal."""
        if name == OFFSETS_TOPIC:
            self.groups.ensure_offsets_topic()
            return self.logs.topics[name]
        if not self.config.auto_create_topics_enable:
            return None
        try:
            return self.create_topic(name, self.config.num_partitions)
        except TopicError:
            return None

    def close(self) -> None:
        self.groups.close()
        self.logs.close()
