"""tidelog: a Kafka-compatible log broker for people who live in Python."""

from tidelog.config import TopicConfig
from tidelog.storage import LogManager, Partition, TopicPartition

__all__ = ["LogManager", "Partition", "TopicConfig", "TopicPartition"]
__version__ = "0.1.0"
