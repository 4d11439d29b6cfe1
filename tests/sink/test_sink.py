"""The exactly-once sink in this process against a real broker and both backends: the offset
store's claims and compare-and-set, a batch across partitions, a lost COMMIT answer (PostgreSQL
through a proxy), OFFSET_OUT_OF_RANGE policies, dead letters, first start and restart, and the
embedded source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient

import tidelog
from tests.server.conftest import BrokerProcess
from tests.sink.conftest import Backend, assert_exactly_once
from tests.sink.helpers import TIMEOUT_S, create_topic, numbered, produce, wait_for
from tests.sink.pg_proxy import PostgresProxy
from tidelog.sink import EmbeddedSource, ExactlyOnceSink, KafkaSource, SinkError, SinkRecord


def writer(backend: Backend, name: str = "test") -> Any:
    insert = 'INSERT INTO output (value, topic, "partition", "offset", writer) VALUES (?, ?, ?, ?, ?)'
    insert = insert.replace("?", backend.placeholder)

    def handler(records: Sequence[SinkRecord], cursor: Any) -> None:
        rows = []
        for r in records:
            value = (r.value or b"").decode()
            if value.startswith("poison"):
                raise ValueError(f"cannot parse {value!r}")
            rows.append((value, r.topic, r.partition, r.offset, name))
        cursor.executemany(insert, rows)

    return handler


def kafka_sink(
    broker: BrokerProcess, backend: Backend, topic: str, partitions: int, group: str = "g", **options: Any
) -> ExactlyOnceSink:
    source = KafkaSource(
        {"bootstrap.servers": broker.bootstrap, "group.id": group}, partitions=[(topic, p) for p in range(partitions)]
    )
    store = options.pop("store", None) or backend.store(group)
    return ExactlyOnceSink(source, store, options.pop("handler", None) or writer(backend), **options)


# ---- the offset store alone ---------------------------------------------------------------------


def test_claims_fence_earlier_owners(backend: Backend) -> None:
    first, second = backend.store("g"), backend.store("g")
    try:
        claimed = first.claim([("t", 0), ("t", 1)])
        assert {p: (c.token, c.next_offset) for p, c in claimed.items()} == {("t", 0): (1, None), ("t", 1): (1, None)}
        cursor = first.begin()
        assert first.advance(cursor, ("t", 0), 1, None, 10)
        first.commit()
        again = second.claim([("t", 0)])[("t", 0)]
        assert (again.token, again.next_offset) == (2, 10)
        cursor = first.begin()
        assert not first.advance(cursor, ("t", 0), 1, 10, 20), "the old owner's compare-and-set changed the row"
        first.rollback()
        cursor = second.begin()
        assert not second.advance(cursor, ("t", 0), 2, 5, 20), "a wrong expected offset changed the row"
        assert second.advance(cursor, ("t", 0), 2, 10, 20)
        second.commit()
        assert second.positions() == {("t", 0): 20, ("t", 1): None}
        assert first.claim([("t", 1)])[("t", 1)].token == 2
    finally:
        first.close()
        second.close()


# ---- batches ------------------------------------------------------------------------------------


def test_one_batch_spans_partitions(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 4)
    # 150 records a partition: a batch of 500 takes records of several partitions.
    sent = produce(broker.bootstrap, "in", numbered(0, 600), 4)
    spans: list[dict[tuple[str, int], int]] = []
    sink = kafka_sink(
        broker, backend, "in", 4, batch_size=500, on_commit=lambda _, positions: spans.append(dict(positions))
    )
    with sink:
        sink.run(idle_timeout_s=2)
    assert any(len(positions) > 1 for positions in spans), f"no batch held two partitions: {spans}"
    # Each batch moved every one of its partitions' rows in its one transaction.
    final: dict[tuple[str, int], int] = {}
    for positions in spans:
        final.update(positions)
    assert final == {("in", p): 150 for p in range(4)}
    assert_exactly_once(backend, sent)


def test_a_lost_commit_answer_is_settled_by_reading_the_rows(
    broker: BrokerProcess, postgres: Any, tmp_path: Path
) -> None:
    """PostgreSQL only: an SQLite COMMIT runs in this process, so its answer cannot be lost
    without the process (the SIGKILL-after-commit cases cover that)."""
    database = postgres.new_database()
    backend = Backend("postgres", f"postgres:{database}", "%s")
    from tests.sink.conftest import OUTPUT_TABLE

    backend.execute(OUTPUT_TABLE)
    proxy = PostgresProxy(postgres.port)
    try:
        create_topic(broker.bootstrap, "in", 2)
        sent = produce(broker.bootstrap, "in", numbered(0, 6000), 2)
        from tidelog.sink import PostgresOffsetStore

        store = PostgresOffsetStore(proxy.dsn(database), "g")
        sink = kafka_sink(broker, backend, "in", 2, store=store, batch_size=500)
        with sink:
            sink.run(max_records=1000)
            # One at a time: the read-back that settles a lost answer ends with a COMMIT too.
            for drop in ("after", "after", "before", "before"):
                if drop == "after":
                    proxy.drop_after_commit = 1  # committed, answer lost: must not be written again
                else:
                    proxy.drop_before_commit = 1  # never committed: must be written once, later
                sink.run(max_records=sink.stats.records + 1000)
            sink.run(idle_timeout_s=2)
        assert (proxy.dropped_after, proxy.dropped_before) == (2, 2)
        assert sink.stats.unknown_commits == 4
        assert_exactly_once(backend, sent)
    finally:
        proxy.close()


def test_offset_out_of_range_policies(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 1)
    first = produce(broker.bootstrap, "in", numbered(0, 1000), 1)
    with kafka_sink(broker, backend, "in", 1) as sink:
        sink.run(idle_timeout_s=2)
    later = produce(broker.bootstrap, "in", numbered(1000, 2000), 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deleted = admin.delete_records([KafkaTopicPartition("in", 0, 1500)])
    for future in deleted.values():
        future.result(TIMEOUT_S)
    # The stored offset 1000 is below the log start now: "fail" stops with a clear error.
    with kafka_sink(broker, backend, "in", 1, out_of_range="fail") as sink, pytest.raises(SinkError, match="1500"):
        sink.run(idle_timeout_s=5)
    # "earliest" moves to the log start and says which offsets were never stored.
    with kafka_sink(broker, backend, "in", 1) as sink:
        sink.run(idle_timeout_s=2)
    assert sink.stats.resets == [(("in", 0), 1000, 1500)]
    assert_exactly_once(backend, first + later[500:])
    # A re-created topic: the stored 2000 is past its end.
    admin.delete_topics(["in"])["in"].result(TIMEOUT_S)
    wait_for(lambda: "in" not in admin.list_topics(timeout=TIMEOUT_S).topics, what="the topic is gone")
    create_topic(broker.bootstrap, "in", 1)
    again = produce(broker.bootstrap, "in", [f"new-{i}" for i in range(100)], 1)
    with kafka_sink(broker, backend, "in", 1) as sink:
        sink.run(idle_timeout_s=2)
    assert sink.stats.resets == [(("in", 0), 2000, 0)]
    assert_exactly_once(backend, first + later[500:] + again)


def test_poison_records_go_to_the_dead_letter_table(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 2)
    values = numbered(0, 1000)
    for at in (10, 11, 777):
        values[at] = f"poison-{at}"
    produce(broker.bootstrap, "in", values, 2)
    # Without dead letters the poison stops the sink and its batch is not stored.
    with kafka_sink(broker, backend, "in", 2, dead_letter=False) as sink, pytest.raises(ValueError, match="poison"):
        sink.run(idle_timeout_s=2)
    assert backend.values() == {}
    with kafka_sink(broker, backend, "in", 2) as sink:
        sink.run(idle_timeout_s=2)
        dead = sink.store.dead_letters()
    assert sink.stats.dead_letters == 3
    # Value i went to partition i % 2 at offset i // 2.
    assert [(t, p, o, v) for t, p, o, v, _ in dead] == sorted(
        ("in", at % 2, at // 2, f"poison-{at}".encode()) for at in (10, 11, 777)
    )
    assert all("ValueError: cannot parse" in error for *_, error in dead)
    assert_exactly_once(backend, [v for v in values if not v.startswith("poison")])


def test_first_start_and_restart(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 2)
    first = produce(broker.bootstrap, "in", numbered(0, 1000), 2)
    assert backend.store("g").positions() == {}  # creates the tables: no rows yet
    with kafka_sink(broker, backend, "in", 2) as sink:  # no row: from the earliest offset
        sink.run(idle_timeout_s=2)
    with kafka_sink(broker, backend, "in", 2) as sink:  # rows: nothing again
        sink.run(idle_timeout_s=1)
    assert sink.stats.records == 0 and sink.stats.skipped == 0
    later = produce(broker.bootstrap, "in", numbered(1000, 1500), 2)
    with kafka_sink(broker, backend, "in", 2) as sink:
        sink.run(idle_timeout_s=2)
    assert sink.stats.records == 500
    assert_exactly_once(backend, first + later)
    # A new group that starts at the latest offset sees only what comes after it started.
    with kafka_sink(broker, backend, "in", 2, group="fresh", start="latest", handler=writer(backend, "fresh")) as sink:
        sink.run(idle_timeout_s=1)
        newest = produce(broker.bootstrap, "in", numbered(1500, 1600), 2)
        sink.run(idle_timeout_s=2)
    assert sorted(v for (v,) in backend.query("SELECT value FROM output WHERE writer = 'fresh'")) == sorted(newest)


def test_the_embedded_source(backend: Backend, tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "log") as log:
        log.create_topic("in", partitions=2)
        committed: list[str] = []
        txn = log.transaction("input")
        for round_ in range(6):
            txn.begin()
            values = [f"{round_}-{i}" for i in range(50)]
            for i, value in enumerate(values):
                txn.append("in", value.encode(), partition=i % 2)
            if round_ % 3 == 1:
                txn.abort()
            else:
                txn.commit()
                committed += values
        store = backend.store("embedded")
        with ExactlyOnceSink(EmbeddedSource(log, [("in", 0), ("in", 1)]), store, writer(backend)) as sink:
            sink.run(idle_timeout_s=0.5)
        ends = {("in", p): log.offsets("in", p).last_stable_offset for p in (0, 1)}
        assert backend.store("embedded").positions() == ends  # past the last marker
        more = [f"more-{i}" for i in range(10)]
        for value in more:
            log.append("in", value.encode(), partition=0)
        with ExactlyOnceSink(
            EmbeddedSource(log, [("in", 0), ("in", 1)]), backend.store("embedded"), writer(backend)
        ) as sink:
            sink.run(idle_timeout_s=0.5)
        assert sink.stats.records == 10
    assert_exactly_once(backend, committed + more)


def test_kafka_commits_are_for_dashboards_and_never_read_back(broker: BrokerProcess, backend: Backend) -> None:
    from confluent_kafka import Consumer

    create_topic(broker.bootstrap, "in", 2)
    sent = produce(broker.bootstrap, "in", numbered(0, 1000), 2)
    with kafka_sink(broker, backend, "in", 2, commit_to_kafka=True) as sink:
        sink.run(idle_timeout_s=2)
    kafka = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False})
    try:
        partitions = [KafkaTopicPartition("in", p) for p in (0, 1)]
        committed = {p.partition: p.offset for p in kafka.committed(partitions, timeout=TIMEOUT_S)}
        assert committed == {0: 500, 1: 500}, "the stored offsets did not reach Kafka's lag view"
        # A wrong Kafka commit (a tool reset the group) changes nothing: the store decides.
        kafka.commit(offsets=[KafkaTopicPartition("in", p, 100) for p in (0, 1)], asynchronous=False)
    finally:
        kafka.close()
    more = produce(broker.bootstrap, "in", numbered(1000, 1100), 2)
    with kafka_sink(broker, backend, "in", 2) as sink:
        sink.run(idle_timeout_s=2)
    assert sink.stats.records == 100
    assert_exactly_once(backend, sent + more)


def test_out_of_range_in_an_eager_group(broker: BrokerProcess, backend: Backend) -> None:
    """A reset while subscribed with an eager assignor: the member re-assigns with assign(), the
    other partition going on where the sink was (never from Kafka's committed offsets)."""
    create_topic(broker.bootstrap, "in", 2)
    config = {"bootstrap.servers": broker.bootstrap, "group.id": "g", "partition.assignment.strategy": "range"}
    first = produce(broker.bootstrap, "in", numbered(0, 1000), 2)
    with ExactlyOnceSink(KafkaSource(config, topics=["in"]), backend.store("g"), writer(backend)) as sink:
        sink.run(idle_timeout_s=3)
    later = produce(broker.bootstrap, "in", numbered(1000, 2000), 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.delete_records([KafkaTopicPartition("in", 0, 700)]).values():
        future.result(TIMEOUT_S)
    with ExactlyOnceSink(KafkaSource(config, topics=["in"]), backend.store("g"), writer(backend)) as sink:
        sink.run(idle_timeout_s=3)
    assert sink.stats.resets == [(("in", 0), 500, 700)]
    # Value i is at offset i // 2 of partition i % 2: partition 0's offsets 500..699 are gone.
    lost = {str(i) for i in range(1000, 1400, 2)}
    assert_exactly_once(backend, first + [v for v in later if v not in lost])


def test_stores_created_at_once(backend: Backend) -> None:
    """Processes starting together create the tables together (PostgreSQL's CREATE TABLE IF NOT
    EXISTS fails in one of two concurrent sessions without the store's advisory lock)."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def create() -> None:
        start.wait()
        try:
            backend.store("g").close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_a_new_sqlite_store_does_not_wait_for_a_busy_writer(tmp_path: Path) -> None:
    """Opening a store whose tables exist takes no write lock: a sink process starting beside a
    busy one reaches its consumer group at once (its claim then queues, as any writer does)."""
    import sqlite3

    from tidelog.sink import SQLiteOffsetStore

    path = tmp_path / "sink.db"
    SQLiteOffsetStore(path, "g").close()
    busy = sqlite3.connect(path, isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")  # another process's batch, mid-transaction
    try:
        SQLiteOffsetStore(path, "g", busy_timeout_s=0.5).close()
    finally:
        busy.execute("ROLLBACK")
        busy.close()
