"""What every handler shares: config, logs, cluster identity, and caches keyed by metadata epoch."""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path
from typing import Any

from tidelog.config import BrokerConfig
from tidelog.storage import LogManager, Partition, ProducerIdAllocator, TopicError, TopicMetadata, TopicPartition

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
    path.write_text(f"version=1\ncluster.id={cluster_id}\n")
    return cluster_id


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

    @classmethod
    def open(cls, config: BrokerConfig) -> Broker:
        logs = LogManager.open(config.log_dirs, config.topic_defaults, durable_acks=config.tidelog_flush_before_ack,
                               producer_id_expiration_ms=config.producer_id_expiration_ms)  # fmt: skip
        return cls(config, logs)

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

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicMetadata:
        meta = self.logs.create_topic(name, partitions, configs)
        self.topics_changed()
        log.info("created topic %s with %d partition(s)", name, partitions)
        return meta

    def auto_create(self, name: str) -> TopicMetadata | None:
        """Creates `name` with the default partition count if auto-creation is on and the name is legal."""
        if not self.config.auto_create_topics_enable:
            return None
        try:
            return self.create_topic(name, self.config.num_partitions)
        except TopicError:
            return None

    def close(self) -> None:
        self.logs.close()
