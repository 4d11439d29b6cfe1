"""The Prometheus endpoint: /metrics, /healthz and /readyz (`tidelog.metrics.listen`).

Names follow what Kafka's JMX beans become through the Prometheus JMX exporter, so dashboards
built for Kafka find them (`docs/operations.md`, "Metrics", lists every one):
`kafka_server_brokertopicmetrics_*` per topic, `kafka_network_requestmetrics_*` per request
type, `kafka_log_log_*` and `kafka_cluster_partition_laststableoffsetlag` per partition,
`kafka_server_replicamanager_*`, `kafka_coordinator_group_groupmetadatamanager_*`,
`kafka_server_socketservermetrics_*`, `kafka_log_logflushstats_logflush_seconds`; consumer lag
as kafka-exporter names it (`kafka_consumergroup_lag`); `tidelog_*` for what Kafka has no bean
for. Latencies are histograms in seconds.

The counters are plain numbers owned by the event loop (`tidelog.stats`); the HTTP server runs
in threads of its own (wsgiref, with prometheus-client's WSGI app for /metrics), and each scrape
asks the loop for a snapshot, so a scrape never reads state the loop is changing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from kio.schema.errors import ErrorCode
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tidelog import limits
from tidelog.coordinator.group.group import GroupState
from tidelog.coordinator.transaction.records import TxnState
from tidelog.core.stats import RequestRecord
from tidelog.protocol import apis
from tidelog.stats import BATCH_BUCKETS, Histogram

if TYPE_CHECKING:
    from tidelog.server.listener import Listener

log = logging.getLogger(__name__)

# The phases of a request, Kafka's RequestMetrics names (…TimeMs there, seconds here): from the
# frame read to its handler, the handler's own time, the wait for durability (acks=all; Kafka's
# wait for followers), waiting behind earlier answers on the connection, and sending.
PHASES = ("totaltime", "requestqueuetime", "localtime", "remotetime", "responsequeuetime", "responsesendtime")
LISTENER_NAME = "PLAINTEXT"
GROUP_STATE_METRICS = {
    GroupState.STABLE: "numgroupsstable",
    GroupState.PREPARING_REBALANCE: "numgroupspreparingrebalance",
    GroupState.COMPLETING_REBALANCE: "numgroupscompletingrebalance",
    GroupState.EMPTY: "numgroupsempty",
    GroupState.DEAD: "numgroupsdead",
}


def request_name(api_key: int) -> str:
    """Kafka's name of a request type in its metrics: ApiKeys' names, FetchConsumer for a
    consumer's Fetch (this broker has no followers)."""
    if api_key == apis.ApiKey.FETCH:
        return "FetchConsumer"
    try:
        return "".join(part.capitalize() for part in apis.ApiKey(api_key).name.split("_"))
    except ValueError:
        return f"Api{api_key}"


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return f"UNKNOWN_{code}"


class Timed:
    """One request on its way through a connection: when it was read, when its handler started
    and finished, and what the handler reported (`RequestRecord`)."""

    __slots__ = ("name", "received", "started", "ready", "record")

    def __init__(self, name: str, received: float) -> None:
        self.name = name
        self.received = received
        self.started = received
        self.ready = received
        self.record = RequestRecord()


class RequestStats:
    """Requests per API and version, errors per API and code, and each phase's latency per
    request type; connections opened and closed. Event loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[int, int], int] = {}
        self.errors: dict[tuple[str, int], int] = {}
        self.phases: dict[str, tuple[Histogram, ...]] = {}
        self.connections_created = 0
        self.connections_closed = 0

    def received(self, api_key: int, api_version: int, when: float) -> Timed:
        key = (api_key, api_version)
        self.requests[key] = self.requests.get(key, 0) + 1
        return Timed(request_name(api_key), when)

    def finished(self, timed: Timed, send_started: float, now: float) -> None:
        """The answer is out (or, for acks=0, the handler is done)."""
        phases = self.phases.get(timed.name)
        if phases is None:
            phases = self.phases[timed.name] = tuple(Histogram() for _ in PHASES)
        total, queue, local, remote, response_queue, send = phases
        record = timed.record
        total.observe(now - timed.received)
        queue.observe(timed.started - timed.received)
        local.observe(max(0.0, timed.ready - timed.started - record.durable_wait_s))
        remote.observe(record.durable_wait_s)
        response_queue.observe(max(0.0, send_started - timed.ready))
        send.observe(now - send_started)
        for code, times in record.errors.items():
            key = (timed.name, code)
            self.errors[key] = self.errors.get(key, 0) + times


def add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    family.add_metric(labels, buckets=histogram.cumulative(), sum_value=histogram.sum)


class BrokerCollector(Collector):
    """Everything above but process metrics, built on the event loop at each scrape."""

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        self.listener = listener
        self.loop = loop

    def collect(self) -> Iterable[Metric]:
        try:
            families: list[Metric] = on_loop(self.loop, self._families)
            return families
        except Exception as error:  # a stopping or stuck loop: the scrape shows process metrics only
            log.warning("metrics snapshot failed: %s", error)
            return []

    def _families(self) -> list[Metric]:
        return [*self._topic_families(), *self._request_families(), *self._log_families(), *self._coordinators()]

    def _topic_families(self) -> Iterator[Metric]:
        stats = self.listener.broker.stats.snapshot()
        prefix = "kafka_server_brokertopicmetrics_"
        counters = (
            ("messagesin", "messages_in", "records appended by clients"),
            ("bytesin", "bytes_in", "record-batch bytes appended by clients"),
            ("bytesout", "bytes_out", "record bytes sent to fetching clients"),
            ("totalproducerequests", "produce_requests", "produce requests, one per partition"),
            ("failedproducerequests", "failed_produce_requests", "produce requests refused, per partition"),
            ("totalfetchrequests", "fetch_requests", "fetch requests, one per partition"),
            ("failedfetchrequests", "failed_fetch_requests", "fetch requests answered an error, per partition"),
        )
        for metric, field, documentation in counters:
            family = CounterMetricFamily(
                prefix + metric, f"Kafka's BrokerTopicMetrics: {documentation}", labels=["topic"]
            )
            for topic, topic_stats in sorted(stats.items()):
                family.add_metric([topic], getattr(topic_stats, field))
            yield family

    def _request_families(self) -> Iterator[Metric]:
        requests = self.listener.context.requests
        prefix = "kafka_network_requestmetrics_"
        family = CounterMetricFamily(prefix + "requests", "requests received", labels=["request", "version"])
        for (api_key, version), count in sorted(requests.requests.items()):
            family.add_metric([request_name(api_key), str(version)], count)
        yield family
        family = CounterMetricFamily(
            prefix + "errors", "error codes answered (each partition's, NONE included)", labels=["request", "error"]
        )
        for (name, code), count in sorted(requests.errors.items()):
            family.add_metric([name, error_name(code)], count)
        yield family
        for index, phase in enumerate(PHASES):
            histograms = HistogramMetricFamily(
                prefix + phase + "_seconds", f"Kafka's {phase} (ms there)", labels=["request"]
            )
            for name, phases in sorted(requests.phases.items()):
                add_histogram(histograms, [name], phases[index])
            yield histograms
        socket = "kafka_server_socketservermetrics_"
        connections = GaugeMetricFamily(socket + "connection_count", "open client connections", labels=["listener"])
        connections.add_metric([LISTENER_NAME], len(self.listener.connections))
        yield connections
        created = CounterMetricFamily(socket + "connection_creation", "connections accepted", labels=["listener"])
        created.add_metric([LISTENER_NAME], requests.connections_created)
        yield created
        closed = CounterMetricFamily(socket + "connection_close", "connections closed", labels=["listener"])
        closed.add_metric([LISTENER_NAME], requests.connections_closed)
        yield closed

    def _log_families(self) -> Iterator[Metric]:
        broker = self.listener.broker
        labels = ["topic", "partition"]
        size = GaugeMetricFamily("kafka_log_log_size", "bytes of the partition's segments", labels=labels)
        segments = GaugeMetricFamily("kafka_log_log_numlogsegments", "segments of the partition", labels=labels)
        start = GaugeMetricFamily("kafka_log_log_logstartoffset", "log start offset", labels=labels)
        end = GaugeMetricFamily("kafka_log_log_logendoffset", "log end offset", labels=labels)
        high = GaugeMetricFamily("tidelog_log_high_watermark", "high watermark (the fsynced offset)", labels=labels)
        lso_lag = GaugeMetricFamily(
            "kafka_cluster_partition_laststableoffsetlag", "high watermark minus last stable offset", labels=labels
        )
        producers = 0
        flush_times: list[Histogram] = []
        flush_waiters: list[Histogram] = []
        for topic_partition, partition in sorted(broker.partitions.items()):
            values = [topic_partition.topic, str(topic_partition.partition)]
            unified = partition.log
            offsets = partition.offsets()
            size.add_metric(values, unified.log.size_bytes)
            segments.add_metric(values, unified.log.segment_count)
            start.add_metric(values, offsets.log_start_offset)
            end.add_metric(values, offsets.log_end_offset)
            high.add_metric(values, offsets.high_watermark)
            lso_lag.add_metric(values, offsets.high_watermark - offsets.last_stable_offset)
            producers += len(unified.producer_state.producers)
            flush_times.append(unified.group_commit.flush_seconds)
            flush_waiters.append(unified.group_commit.flush_waiters)
        yield from (size, segments, start, end, high, lso_lag)
        replica = "kafka_server_replicamanager_"
        for name, value, documentation in (
            ("partitioncount", len(broker.partitions), "partitions on this broker"),
            ("leadercount", sum(1 for p in broker.partitions.values() if p.is_leader), "partitions it leads"),
            ("underreplicatedpartitions", 0, "partitions with fewer in-sync replicas than replicas"),
            ("produceridcount", producers, "producer ids the partitions remember"),
        ):
            gauge = GaugeMetricFamily(replica + name, documentation)
            gauge.add_metric([], value)
            yield gauge
        flushes = HistogramMetricFamily("kafka_log_logflushstats_logflush_seconds", "one group-commit fsync", labels=[])
        add_histogram(flushes, [], Histogram.merged(flush_times))
        yield flushes
        batch = HistogramMetricFamily(
            "tidelog_log_group_commit_waiters", "acks=all appends one fsync released", labels=[]
        )
        add_histogram(batch, [], Histogram.merged(flush_waiters, BATCH_BUCKETS))
        yield batch

    def _coordinators(self) -> Iterator[Metric]:
        broker = self.listener.broker
        groups = broker.groups.loaded_groups()
        prefix = "kafka_coordinator_group_groupmetadatamanager_"
        total = GaugeMetricFamily(prefix + "numgroups", "consumer groups")
        total.add_metric([], len(groups))
        yield total
        for state, metric in GROUP_STATE_METRICS.items():
            gauge = GaugeMetricFamily(prefix + metric, f"groups in state {state.value}")
            gauge.add_metric([], sum(1 for g in groups if g.state is state))
            yield gauge
        offsets = GaugeMetricFamily(prefix + "numoffsets", "committed offsets")
        offsets.add_metric([], sum(len(g.offsets) for g in groups))
        yield offsets
        labels = ["consumergroup", "topic", "partition"]
        current = GaugeMetricFamily("kafka_consumergroup_current_offset", "committed offset", labels=labels)
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "high watermark minus committed offset", labels=labels)
        members = GaugeMetricFamily("kafka_consumergroup_members", "members of the group", labels=["consumergroup"])
        for group in sorted(groups, key=lambda g: g.group_id):
            members.add_metric([group.group_id], len(group.members))
            for (topic, index), committed in sorted(group.offsets.items()):
                values = [group.group_id, topic, str(index)]
                current.add_metric(values, committed.offset)
                partition = broker.partition(topic, index)
                if partition is not None:
                    lag.add_metric(values, max(0, partition.high_watermark - committed.offset))
        yield from (current, lag, members)
        states: dict[TxnState, int] = {}
        for transaction in broker.transactions.list_transactions():
            states[transaction.state] = states.get(transaction.state, 0) + 1
        family = GaugeMetricFamily("tidelog_transactions", "transactional ids by state", labels=["state"])
        for txn_state in TxnState:
            family.add_metric([txn_state.name], states.get(txn_state, 0))
        yield family


def on_loop(loop: asyncio.AbstractEventLoop, work: Callable[[], Any]) -> Any:
    """`work()` run on the event loop, its answer waited for from this (another) thread."""

    async def run() -> Any:
        return work()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(limits.METRICS_LOOP_TIMEOUT_S)


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per scrape


class MetricsEndpoint:
    """The HTTP side, in threads: started after the listener, stopped before the broker closes."""

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.listener = listener
        self.loop = loop
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(BrokerCollector(listener, loop))
        self._metrics_app = make_wsgi_app(self.registry)
        self._server = make_server(host, port, self._app, server_class=_Threaded, handler_class=_Quiet)
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._server.serve_forever, name="tidelog-metrics", daemon=True)

    @classmethod
    def start(cls, listener: Listener, host: str, port: int) -> MetricsEndpoint:
        endpoint = cls(listener, asyncio.get_running_loop(), host, port)
        endpoint._thread.start()
        return endpoint

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return self._text(start_response, *self._alive())
        if path == "/readyz":
            return self._text(start_response, *self._ready())
        return self._text(start_response, False, "not found: /metrics, /healthz or /readyz", "404 Not Found")

    @staticmethod
    def _text(start_response: Callable[..., Any], ok: bool, text: str, status: str = "") -> list[bytes]:
        body = (text + "\n").encode()
        status = status or ("200 OK" if ok else "503 Service Unavailable")
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    def _alive(self) -> tuple[bool, str]:
        """Alive: the event loop runs callbacks (within METRICS_LOOP_TIMEOUT_S)."""
        started = time.monotonic()
        try:
            on_loop(self.loop, lambda: None)
        except Exception:
            return False, f"the event loop did not answer within {limits.METRICS_LOOP_TIMEOUT_S} s"
        return True, f"ok (event loop answered in {(time.monotonic() - started) * 1000:.1f} ms)"

    def _ready(self) -> tuple[bool, str]:
        """Ready: the listener accepts connections and the coordinators have loaded their topics."""
        try:
            return on_loop(self.loop, self._readiness)  # type: ignore[no-any-return]
        except Exception:
            return False, f"the event loop did not answer within {limits.METRICS_LOOP_TIMEOUT_S} s"

    def _readiness(self) -> tuple[bool, str]:
        server = self.listener.server
        if server is None or not server.is_serving():
            return False, "the listener is not accepting connections"
        broker = self.listener.broker
        loading = [
            f"{count} partition(s) of {topic}"
            for topic, count in (
                ("__consumer_offsets", broker.groups.shards_loading()),
                ("__transaction_state", broker.transactions.shards_loading()),
            )
            if count
        ]
        if loading:
            return False, "the coordinators are loading " + " and ".join(loading)
        return True, "ready"
