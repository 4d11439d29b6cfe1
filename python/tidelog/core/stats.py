"""What the broker counts per topic, and the durable wait of a request (see `tidelog.stats`).

Kafka's BrokerTopicMetrics: messages and bytes in (appended by clients), bytes out (record bytes
fetched), produce and fetch requests per topic-partition and the failed ones. Updated on the
event loop, except appends from other threads (`Broker.produce_from_thread`), which count under
a lock of their own and are added at read time.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace


@dataclass(slots=True)
class TopicStats:
    messages_in: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    produce_requests: int = 0
    failed_produce_requests: int = 0
    fetch_requests: int = 0
    failed_fetch_requests: int = 0

    def add(self, other: TopicStats) -> TopicStats:
        return TopicStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class RequestRecord:
    """What one request's handling reports for the metrics: the error codes of its answer
    (Kafka's ErrorsPerSec counts each one, per partition, NONE included) and the time it waited
    for its data to be durable (acks=all's group commit: Kafka's "remote time", the wait for
    followers there). The connection makes one per request and sets `CURRENT_REQUEST` before
    calling the handler; the handler's task inherits it."""

    __slots__ = ("durable_wait_s", "errors")

    def __init__(self) -> None:
        self.durable_wait_s = 0.0
        self.errors: dict[int, int] = {}

    def error(self, code: int, times: int = 1) -> None:
        self.errors[code] = self.errors.get(code, 0) + times


CURRENT_REQUEST: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("request_record", default=None)


def record_errors(codes: Iterable[int]) -> None:
    """Notes the error codes of the answer being built (no-op outside a request)."""
    record = CURRENT_REQUEST.get()
    if record is not None:
        for code in codes:
            record.error(int(code))


class BrokerStats:
    def __init__(self) -> None:
        self._topics: dict[str, TopicStats] = {}
        self._thread_topics: dict[str, TopicStats] = {}
        self._thread_lock = threading.Lock()

    def topic(self, name: str) -> TopicStats:
        """The counters of `name` (event loop only)."""
        stats = self._topics.get(name)
        if stats is None:
            stats = self._topics[name] = TopicStats()
        return stats

    def appended_from_thread(self, topic: str, messages: int, size: int, failed: bool) -> None:
        with self._thread_lock:
            stats = self._thread_topics.get(topic)
            if stats is None:
                stats = self._thread_topics[topic] = TopicStats()
            stats.produce_requests += 1
            if failed:
                stats.failed_produce_requests += 1
            else:
                stats.messages_in += messages
                stats.bytes_in += size

    def forget(self, topic: str) -> None:
        """A deleted topic's counters go, as its JMX beans do in Kafka."""
        self._topics.pop(topic, None)
        with self._thread_lock:
            self._thread_topics.pop(topic, None)

    def snapshot(self) -> dict[str, TopicStats]:
        """Every topic's counters, loop and threads together (call it on the loop)."""
        with self._thread_lock:
            threads = dict(self._thread_topics)
        out = {name: replace(stats) for name, stats in self._topics.items()}
        for name, stats in threads.items():
            out[name] = out[name].add(stats) if name in out else replace(stats)
        return out
