"""What every handler is given: the broker core, and the server's caches of encoded answers."""

from __future__ import annotations

from collections.abc import Hashable

from tidelog import limits
from tidelog.config import BrokerConfig
from tidelog.core.broker import Broker
from tidelog.server.metrics import RequestStats


class ResponseCache:
    """Encoded answers that depend only on topics and the broker's address (Metadata), valid for
    one metadata epoch: the core bumps the epoch on every topic change, and the first lookup
    after that starts the cache over. Bounded: the oldest entry goes first."""

    def __init__(self, broker: Broker, max_entries: int = limits.RESPONSE_CACHE_ENTRIES_MAX) -> None:
        self._broker = broker
        self._max_entries = max_entries
        self._epoch = broker.metadata_epoch
        self._entries: dict[Hashable, bytes] = {}

    def get(self, key: Hashable) -> bytes | None:
        if self._epoch != self._broker.metadata_epoch:
            self._entries.clear()
            self._epoch = self._broker.metadata_epoch
        return self._entries.get(key)

    def put(self, key: Hashable, encoded: bytes, epoch: int) -> None:
        """Keeps `encoded` if the topics are still as they were when it was made (`epoch`)."""
        if epoch != self._broker.metadata_epoch or epoch != self._epoch:
            return
        if len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = encoded

    def __len__(self) -> int:
        return len(self._entries)


class ServerContext:
    """The TCP front end of one broker. Used from the event loop thread only."""

    @property
    def config(self) -> BrokerConfig:
        """The broker's config in effect (dynamic broker configs change it at run time)."""
        return self.broker.config

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.responses = ResponseCache(broker)
        # Requests, errors, latencies and connections, for the metrics endpoint.
        self.requests = RequestStats()
