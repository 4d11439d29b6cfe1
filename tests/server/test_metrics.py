"""The metrics endpoint (`tidelog.metrics.listen`): what real clients did shows in Kafka's metric
names, exactly; /healthz and /readyz answer; and a real Prometheus server (Debian's package,
started here on loopback) scrapes it under load and its PromQL answers match the load."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import BrokerProcess, free_port, wait_until

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
RECORDS = 3000
PARTITIONS = 3
HTTP_TIMEOUT_S = 10


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (n, have), value in scraped.items() if n == name and wanted <= have)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[BrokerProcess, str]]:
    metrics_port = free_port()
    settings = {"tidelog.metrics.listen": f"127.0.0.1:{metrics_port}", "group.initial.rebalance.delay.ms": "0"}
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    yield process, f"http://127.0.0.1:{metrics_port}"
    process.stop()


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)


def test_the_metrics_count_what_clients_did(broker: tuple[BrokerProcess, str]) -> None:
    process, base = broker
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/readyz") == (200, "ready\n")
    assert get(base + "/nothing")[0] == 404
    create_topic(process.bootstrap, "events")
    producer = Producer({"bootstrap.servers": process.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce("events", key=str(i).encode(), value=b"v" * 100)
        producer.poll(0)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": process.bootstrap, "group.id": "readers", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(["events"])
    read = 0
    try:
        while read < RECORDS:
            message = consumer.poll(10)
            assert message is not None, f"read {read} of {RECORDS}"
            assert message.error() is None, message.error()
            read += 1
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    status, text = get(base + "/metrics")
    assert status == 200
    scraped = samples(text)
    topic = {"topic": "events"}
    assert total(scraped, "kafka_server_brokertopicmetrics_messagesin_total", **topic) == RECORDS
    bytes_in = total(scraped, "kafka_server_brokertopicmetrics_bytesin_total", **topic)
    # What was appended is what the partitions hold, and every byte of it was fetched once.
    assert bytes_in == total(scraped, "kafka_log_log_size", **topic) > RECORDS * 100
    assert total(scraped, "kafka_server_brokertopicmetrics_bytesout_total", **topic) == bytes_in
    assert total(scraped, "kafka_log_log_logendoffset", **topic) == RECORDS
    assert total(scraped, "kafka_log_log_numlogsegments", **topic) == PARTITIONS
    produces = total(scraped, "kafka_server_brokertopicmetrics_totalproducerequests_total", **topic)
    assert produces >= PARTITIONS
    assert total(scraped, "kafka_server_brokertopicmetrics_failedproducerequests_total", **topic) == 0
    # Each partition of each Produce answered NONE, and each waited for its fsync.
    assert total(scraped, "kafka_network_requestmetrics_errors_total", request="Produce", error="NONE") == produces
    requests = total(scraped, "kafka_network_requestmetrics_requests_total", request="Produce")
    assert total(scraped, "kafka_network_requestmetrics_totaltime_seconds_count", request="Produce") == requests
    assert total(scraped, "kafka_network_requestmetrics_remotetime_seconds_sum", request="Produce") > 0
    assert total(scraped, "kafka_log_logflushstats_logflush_seconds_count") >= 1
    assert total(scraped, "tidelog_log_group_commit_waiters_sum") >= requests
    # The group's committed positions are the ends of the partitions: no lag.
    group = {"consumergroup": "readers", "topic": "events"}
    assert total(scraped, "kafka_consumergroup_current_offset", **group) == RECORDS
    assert total(scraped, "kafka_consumergroup_lag", **group) == 0
    assert total(scraped, "kafka_coordinator_group_groupmetadatamanager_numgroups") == 1
    assert total(scraped, "kafka_coordinator_group_groupmetadatamanager_numoffsets") == PARTITIONS
    assert total(scraped, "kafka_server_replicamanager_partitioncount") >= PARTITIONS
    assert total(scraped, "kafka_server_socketservermetrics_connection_creation_total") >= 2
    assert total(scraped, "process_resident_memory_bytes") > 0
    # Every series the Grafana dashboard in docs/ queries is one the broker serves.
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:kafka|tidelog|process)_[a-z_]+)\b", target["expr"])
    }
    served = {name for name, _ in scraped}
    assert len(queried) > 20 and queried <= served, sorted(queried - served)


def test_a_client_cannot_make_up_counters(broker: tuple[BrokerProcess, str]) -> None:
    """Produce and fetch for topics that do not exist answer their errors and leave no series."""
    process, base = broker
    producer = Producer(
        {"bootstrap.servers": process.bootstrap, "allow.auto.create.topics": False, "message.timeout.ms": 2000}
    )
    failures = []
    for i in range(20):
        producer.produce(f"made-up-{i}", value=b"x", on_delivery=lambda error, _: failures.append(error))
    producer.flush(10)
    assert len(failures) == 20 and all(f is not None for f in failures)
    scraped = samples(get(base + "/metrics")[1])
    assert not [labels for (name, labels) in scraped if ("topic", "made-up-0") in labels]


def start_prometheus(directory: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: tidelog\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "prometheus.log").open("wb"),
    )
    return process, f"http://127.0.0.1:{port}"


def query(prometheus: str, promql: str, at: float | None = None) -> list[dict[str, object]]:
    parameters = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
    status, body = get(f"{prometheus}/api/v1/query?{urllib.parse.urlencode(parameters)}")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


def scalar(result: list[dict[str, object]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])  # type: ignore[index]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Prometheus (make system-tools)")
def test_prometheus_scrapes_the_broker_under_load(broker: tuple[BrokerProcess, str], tmp_path: Path) -> None:
    process, base = broker
    prometheus, api = start_prometheus(tmp_path, base.removeprefix("http://"))
    try:
        wait_until(lambda: get(api + "/-/ready")[0] == 200 if _listening(api) else False, timeout_s=30)
        # Its first scrape comes a few seconds later (target discovery's first update).
        wait_until(lambda: _value(api, 'up{job="tidelog"}') == 1, timeout_s=30, interval_s=0.5)
        create_topic(process.bootstrap, "load")
        # A steady load: RATE records a second for LOAD_S seconds, in requests of a few records.
        rate, load_s = 1000, 8
        producer = Producer({"bootstrap.servers": process.bootstrap, "acks": "all", "linger.ms": 2})
        started = time.time()
        sent = 0
        while (elapsed := time.time() - started) < load_s:
            while sent < elapsed * rate:
                producer.produce("load", value=b"r" * 200)
                sent += 1
            producer.poll(0.005)
        assert producer.flush(30) == 0
        ended = time.time()
        # After the next scrapes, Prometheus's latest sample is the exact count.
        series = 'kafka_server_brokertopicmetrics_messagesin_total{topic="load"}'
        wait_until(lambda: _value(api, f"sum({series})") == sent, timeout_s=20, interval_s=0.5)
        # The rate over the middle of the load is the rate it was sent at.
        middle = (started + ended) / 2
        measured = scalar(query(api, f"sum(rate({series}[6s]))", at=middle))
        assert 0.6 * rate <= measured <= 1.4 * rate, (measured, rate)
        produced_bytes = scalar(query(api, 'sum(kafka_server_brokertopicmetrics_bytesin_total{topic="load"})'))
        assert produced_bytes == scalar(query(api, 'sum(kafka_log_log_size{topic="load"})'))
        p99 = query(
            api,
            "histogram_quantile(0.99, sum by (le) (rate("
            'kafka_network_requestmetrics_totaltime_seconds_bucket{request="Produce"}[6s])))',
            at=middle,
        )
        assert 0 < scalar(p99) < 10, p99
        requests = scalar(
            query(api, 'sum(rate(kafka_network_requestmetrics_requests_total{request="Produce"}[6s]))', at=middle)
        )
        assert requests > 0
    finally:
        prometheus.terminate()
        prometheus.wait(20)


def _listening(api: str) -> bool:
    try:
        get(api + "/-/ready")
        return True
    except OSError:
        return False


def _value(api: str, promql: str) -> float | None:
    result = query(api, promql)
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def test_producer_threads_count_too() -> None:
    """Counting from other threads (embedded writers) is added to the loop's counts."""
    from tidelog.core.stats import BrokerStats

    stats = BrokerStats()
    stats.topic("t").messages_in += 5
    threads = [
        threading.Thread(target=lambda: [stats.appended_from_thread("t", 2, 10, failed=False) for _ in range(1000)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()["t"]
    assert (snapshot.messages_in, snapshot.bytes_in, snapshot.produce_requests) == (5 + 8000, 40000, 4000)
