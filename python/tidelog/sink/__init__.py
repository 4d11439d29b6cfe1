"""Exactly-once into a database: the consumer's offsets stored with its output, in the same
transaction (docs/exactly-once-sinks.md).

    from tidelog.sink import ExactlyOnceSink, KafkaSource, SQLiteOffsetStore

    def write(records, cursor):
        cursor.executemany("INSERT INTO events VALUES (?, ?)", [(r.key, r.value) for r in records])

    source = KafkaSource({"bootstrap.servers": "127.0.0.1:9092", "group.id": "loader"}, topics=["events"])
    with ExactlyOnceSink(source, SQLiteOffsetStore("out.db", "loader"), write) as sink:
        sink.run()

`PostgresOffsetStore` (psycopg 3) is the other backend; `EmbeddedSource` reads a tidelog
directory opened in this process instead of a Kafka cluster.
"""

from tidelog.sink.loop import ExactlyOnceSink, SinkError, SinkStats
from tidelog.sink.records import EARLIEST, LATEST, SinkRecord, TopicPartition
from tidelog.sink.sources import EmbeddedSource, KafkaSource, Source
from tidelog.sink.sqlite import SQLiteOffsetStore
from tidelog.sink.store import Claim, OffsetStore

__all__ = [
    "EARLIEST",
    "LATEST",
    "Claim",
    "EmbeddedSource",
    "ExactlyOnceSink",
    "KafkaSource",
    "OffsetStore",
    "PostgresOffsetStore",
    "SQLiteOffsetStore",
    "SinkError",
    "SinkRecord",
    "SinkStats",
    "Source",
    "TopicPartition",
]


def __getattr__(name: str) -> object:
    # psycopg is optional: only importing the PostgreSQL store needs it.
    if name == "PostgresOffsetStore":
        from tidelog.sink.postgres import PostgresOffsetStore

        return PostgresOffsetStore
    raise AttributeError(name)
