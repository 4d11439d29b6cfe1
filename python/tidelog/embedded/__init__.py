"""tidelog as a library: the broker in the caller's process.

- `serve(path, port=0)` / `await serve_async(...)`: the full broker on loopback, for unmodified
  Kafka clients (`server.bootstrap`).
- `open(path)` (`tidelog.open`) / `await open_async(path)` (`tidelog.aio.open`): the native API,
  no TCP: topics, appends with a durability level, reads (records or numpy columns), tails,
  consumer groups' committed offsets, idempotent appends.

Both shapes run the same broker core (rules, durability, formats) as `tidelog serve`, and may
share one open directory in one process.
"""

from tidelog.embedded.appender import AppendResult
from tidelog.embedded.log import (
    AppendRecord,
    AsyncIdempotentProducer,
    AsyncLog,
    Durability,
    IdempotentProducer,
    Log,
    PartitionOffsets,
    Topic,
    TopicInfo,
    open,
    open_async,
)
from tidelog.embedded.reader import Columns
from tidelog.embedded.server import EmbeddedServer, serve, serve_async
from tidelog.protocol.record_batch import Record

__all__ = [
    "AppendRecord",
    "AppendResult",
    "AsyncIdempotentProducer",
    "AsyncLog",
    "Columns",
    "Durability",
    "EmbeddedServer",
    "IdempotentProducer",
    "Log",
    "PartitionOffsets",
    "Record",
    "Topic",
    "TopicInfo",
    "open",
    "open_async",
    "serve",
    "serve_async",
]
