"""The exactly-once sink under faults, with real processes: a tidelog broker, sink processes
(tests/sink/sink_app.py) killed, stopped and rebalanced, and both backends (a SQLite file and a
real PostgreSQL server). Each case ends with every input record in `output` exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

from tests.server.conftest import BrokerProcess
from tests.sink.conftest import Backend, assert_exactly_once
from tests.sink.helpers import (
    APP_TIMEOUT_S,
    TIMEOUT_S,
    create_topic,
    numbered,
    produce,
    row_count,
    run_app,
    start_app,
    stats,
    wait_for,
)

# Case 2: 20 SIGKILLs at random points of a 100,000-record run. The points are spread over the
# run: one at a random record count in each twentieth of the first KILL_LOOP_SPAN records; the
# test kills the sink once it has stored that many, a random part of a batch's cycle later (so
# the kills land inside open transactions and between them). The sink is paced so the test sees
# each point pass in time: each batch spends KILL_LOOP_PACE_S in its transaction (the handler)
# and as long again after its commit, at most KILL_LOOP_BATCH records per cycle.
KILL_LOOP_RECORDS = 100_000
KILL_LOOP_KILLS = 20
KILL_LOOP_BATCH = 1000
KILL_LOOP_PACE_S = 0.05
# The records after the last point: more than a paced sink stores while the test sees its
# stored offsets pass the point (polls 0.1 s apart) and waits the random part of a cycle (about
# 3,000), so the last kill too comes before the end.
KILL_LOOP_MARGIN = 10_000
KILL_LOOP_SPAN = KILL_LOOP_RECORDS - KILL_LOOP_MARGIN
# Progress across the kills: at least this many different row counts after them (two points a
# few records apart can fall in one batch).
KILL_LOOP_DISTINCT_COUNTS = KILL_LOOP_KILLS // 2
# Case 3: records and batch size of the rebalance (the held batch is the first member's 3rd).
REBALANCE_RECORDS = 20_000
REBALANCE_BATCH = 100
# The members' heartbeat interval, and how long the batch stays open after the test sees the
# rebalance begin: ten heartbeats, in which the first member's heartbeat hears of it (and
# cooperative-sticky's rejoin, which librdkafka runs on its own thread, completes).
REBALANCE_HEARTBEAT_MS = 100
REBALANCE_NOTICE_S = 1.0
# Two processes fighting over one partition: one alone stores it in a few seconds; a livelock
# never ends.
SETTLE_TIMEOUT_S = 60


def stored_offsets(backend: Backend, group: str) -> dict[tuple[str, int], int]:
    rows = backend.query('SELECT topic, "partition", next_offset FROM tidelog_offsets WHERE group_id = ?', (group,))
    return {(t, int(p)): 0 if o is None else int(o) for t, p, o in rows}  # None: no batch yet


def claimed(backend: Backend, group: str, partitions: int) -> int:
    """How many times every partition of `group` was claimed (the lowest owner token), 0 before
    all have rows."""
    ((rows, lowest),) = backend.query(
        "SELECT count(*), min(owner_token) FROM tidelog_offsets WHERE group_id = ?", (group,)
    )
    return int(lowest) if rows == partitions else 0


def test_sigkill_before_and_after_the_database_commit(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 2)
    sent = produce(broker.bootstrap, "in", numbered(0, 5000), 2)
    # Killed inside the 3rd batch's handler: its rows were written but never committed, so the
    # output holds exactly the records below the stored offsets (the input has no gaps).
    assert run_app(broker.bootstrap, backend, "g", "in", "--partitions", 2, "--kill-in-handler", 3) == -signal.SIGKILL
    assert 0 < row_count(backend) == sum(stored_offsets(backend, "g").values()) < len(sent)
    # Killed right after its 2nd commit, before any Kafka commit: those batches stay.
    assert (
        run_app(broker.bootstrap, backend, "g", "in", "--partitions", 2, "--kill-after-commits", 2) == -signal.SIGKILL
    )
    assert row_count(backend) == sum(stored_offsets(backend, "g").values()) < len(sent)
    assert run_app(broker.bootstrap, backend, "g", "in", "--partitions", 2, "--idle-exit-s", 2) == 0
    assert_exactly_once(backend, sent)
    assert stored_offsets(backend, "g") == {("in", 0): 2500, ("in", 1): 2500}


def test_sigkill_in_a_loop(broker: BrokerProcess, backend: Backend) -> None:
    """20 SIGKILLs at random points of a 100,000-record run: every kill falls before the end, the
    stored count rises across them, and each record is stored once at the end."""
    create_topic(broker.bootstrap, "in", 4)
    sent = produce(broker.bootstrap, "in", numbered(0, KILL_LOOP_RECORDS), 4)
    backend.store("g").close()  # the tables, so the claims can be watched from the start
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    cycle_s = 2 * KILL_LOOP_PACE_S
    points = [int((kill + chance.random()) * KILL_LOOP_SPAN / KILL_LOOP_KILLS) for kill in range(KILL_LOOP_KILLS)]
    options: tuple[str | int | float, ...] = ("--partitions", 4, "--batch-size", KILL_LOOP_BATCH)
    options += ("--slow-s", KILL_LOOP_PACE_S, "--rest-s", KILL_LOOP_PACE_S)
    counts: list[int] = []
    for kill, point in enumerate(points):
        app = start_app(broker.bootstrap, backend, "g", "in", *options)

        def reached(kill: int = kill, point: int = point, app: subprocess.Popen[bytes] = app) -> bool:
            # Claimed in this run (a point already passed kills it right after its claim), and
            # the stored offsets (the sink's progress) past the point.
            done = claimed(backend, "g", 4) > kill and sum(stored_offsets(backend, "g").values()) >= point
            return done or app.poll() is not None

        wait_for(reached, what=f"seed {seed}: the sink stores {point} records")
        assert app.poll() is None, f"seed {seed}: the sink ended by itself ({app.returncode})"
        time.sleep(chance.uniform(0, cycle_s))
        app.send_signal(signal.SIGKILL)
        app.wait(TIMEOUT_S)
        counts.append(row_count(backend))
    assert run_app(broker.bootstrap, backend, "g", "in", "--partitions", 4, "--idle-exit-s", 2) == 0
    assert counts[-1] < KILL_LOOP_RECORDS, f"seed {seed}: the kills did not all land during the run ({counts})"
    assert len(set(counts)) >= KILL_LOOP_DISTINCT_COUNTS, f"seed {seed}: little progress across the kills ({counts})"
    assert_exactly_once(backend, sent)
    assert set(stored_offsets(backend, "g").values()) == {KILL_LOOP_RECORDS // 4}


def rebalancing(admin: AdminClient, group: str) -> bool:
    """Whether a second member's join has begun a rebalance of `group`: the group is preparing
    or completing one, or already has two members (cooperative-sticky: the first member rejoins
    from librdkafka's thread, keeping its partitions, while its application is busy)."""
    description = admin.describe_consumer_groups([group])[group].result(TIMEOUT_S)
    joining = (ConsumerGroupState.PREPARING_REBALANCING, ConsumerGroupState.COMPLETING_REBALANCING)
    return description.state in joining or len(description.members) > 1


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_rebalance_mid_batch(broker: BrokerProcess, backend: Backend, tmp_path: Path) -> None:
    """A second member joins while the first holds a batch's transaction open (its rows written,
    not committed): the test sees the group rebalance and the transaction open in the database,
    then lets the batch go on. The first member releases partitions only after that batch's
    commit, and each record is stored once."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for strategy in ("range", "cooperative-sticky"):
        topic = f"in-{strategy}"
        create_topic(broker.bootstrap, topic, 4)
        sent = produce(broker.bootstrap, topic, [f"{strategy}-{i}" for i in range(REBALANCE_RECORDS)], 4)
        held, release, noted = (tmp_path / f"{strategy}.{name}" for name in ("held", "release", "events"))
        markers = ("--hold-marker", str(held), "--release-marker", str(release), "--events", str(noted))
        options: tuple[str | int | float, ...] = ("--strategy", strategy, "--batch-size", REBALANCE_BATCH)
        options += ("--idle-exit-s", 4, "--heartbeat-interval-ms", REBALANCE_HEARTBEAT_MS)
        first = start_app(broker.bootstrap, backend, topic, topic, *options, *markers, "--writer", "first")
        members = [first]
        try:
            wait_for(held.exists, what="the first member holds a batch open")
            members.append(start_app(broker.bootstrap, backend, topic, topic, *options, "--writer", "second"))
            wait_for(lambda: rebalancing(admin, topic), what="the second member's join begins a rebalance")  # noqa: B023
            time.sleep(REBALANCE_NOTICE_S)
            assert backend.write_transaction_open(), "the group rebalances, but no batch is open in the database"
            release.write_text("")
            assert [member.wait(APP_TIMEOUT_S) for member in members] == [0, 0]
        finally:
            for member in members:
                member.kill()
        done = events(noted)
        kinds = [e["event"] for e in done]
        assert "released" in kinds, f"{strategy}: the hold ended by its time limit ({done[:4]})"
        batch = done[kinds.index("held")]["first"]  # the held batch, by its first record
        released = kinds.index("released")
        committed = next(i for i, e in enumerate(done) if e["event"] == "commit" and e["first"] == batch)
        revoked = kinds.index("revoked")
        assert kinds.index("held") < released < committed < revoked, f"{strategy}: {done[:12]}"
        # No batch between: the first member knew of the rebalance while the batch was open.
        assert done[revoked]["commits"] == done[committed]["number"], f"{strategy}: {done[:12]}"
        got = backend.query("SELECT value, writer FROM output WHERE topic = ?", (topic,))
        assert {writer for _, writer in got} == {"first", "second"}, "the second member never got a partition"
        backend.execute(f"DELETE FROM output WHERE topic <> '{topic}'")
        assert_exactly_once(backend, sent)
        backend.execute("DELETE FROM output")


def test_a_zombie_is_fenced_by_its_token(broker: BrokerProcess, backend: Backend, tmp_path: Path) -> None:
    create_topic(broker.bootstrap, "in", 2)
    sent = produce(broker.bootstrap, "in", numbered(0, 20_000), 2)
    marker, zombie_stats = tmp_path / "paused", tmp_path / "zombie.json"
    options = ("--batch-size", 200, "--slow-s", 0.05, "--session-timeout-ms", 6000, "--reclaim-delay-s", 1)
    zombie = start_app(
        broker.bootstrap,
        backend,
        "g",
        "in",
        *options,
        "--pause-marker",
        marker,
        "--writer",
        "zombie",
        "--stats",
        zombie_stats,
        "--idle-exit-s",
        8,
    )
    wait_for(marker.exists, what="the first member holds a polled batch")
    zombie.send_signal(signal.SIGSTOP)  # past session.timeout.ms, holding that batch
    try:
        owner = start_app(broker.bootstrap, backend, "g", "in", *options, "--writer", "owner", "--idle-exit-s", 6)
        wait_for(lambda: backend.writers()["owner"] >= 1000, what="the new owner advances")
    finally:
        zombie.send_signal(signal.SIGCONT)
    assert zombie.wait(APP_TIMEOUT_S) == 0 and owner.wait(APP_TIMEOUT_S) == 0
    assert stats(zombie_stats)["fenced"] >= 1, "the zombie's batch after SIGCONT was not refused"
    assert_exactly_once(backend, sent)


def test_two_processes_claiming_the_same_partitions(broker: BrokerProcess, backend: Backend, tmp_path: Path) -> None:
    """Two processes given the same partition settle on one owner, and both run until the
    input is stored. The first batch after a claim ends later than the first wait before a
    re-claim (as a first fetch after a seek did on a loaded CI machine), so with fixed waits each
    re-claim fences the other's first batch and nothing is stored again, on PostgreSQL
    (SQLite's claim waits behind an open batch, which then commits)."""
    create_topic(broker.bootstrap, "in", 1)
    sent = produce(broker.bootstrap, "in", numbered(0, 6_000), 1)
    options: tuple[str | int | float, ...] = ("--partitions", 1, "--batch-size", 1000, "--slow-s", 0.3)
    options += ("--slow-after-claim-s", 1.5)
    options += ("--reclaim-delay-s", 0.2, "--until-stored", 6_000)
    apps = [
        start_app(broker.bootstrap, backend, "g", "in", *options, "--writer", name, "--stats", tmp_path / name)
        for name in ("a", "b")
    ]
    try:
        assert [app.wait(SETTLE_TIMEOUT_S) for app in apps] == [0, 0]
    finally:
        for app in apps:
            app.kill()
    assert_exactly_once(backend, sent)
    fenced = [stats(tmp_path / name)["fenced"] for name in ("a", "b")]
    assert sum(fenced) >= 1, "two claimers of one partition and nobody was fenced"


def test_transactional_input(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "input"})
    producer.init_transactions(TIMEOUT_S)
    committed: list[str] = []
    for txn in range(30):
        producer.begin_transaction()
        values = [f"{txn}-{i}" for i in range(100)]
        for i, value in enumerate(values):
            producer.produce("in", value.encode(), partition=i % 2)
        if txn % 3 == 1:
            producer.flush(TIMEOUT_S)  # the aborted records reach the log, then the abort marker
            producer.abort_transaction(TIMEOUT_S)
        else:
            producer.commit_transaction(TIMEOUT_S)
            committed += values
    assert (
        run_app(broker.bootstrap, backend, "g", "in", "--partitions", 2, "--batch-size", 300, "--kill-after-commits", 3)
        == -signal.SIGKILL
    )
    assert run_app(broker.bootstrap, backend, "g", "in", "--partitions", 2, "--idle-exit-s", 2) == 0
    assert_exactly_once(backend, committed)
    # The stored offsets are the consumer's positions: past the last commit marker, not last + 1.
    last = {
        p: max(int(o) for (o,) in backend.query('SELECT "offset" FROM output WHERE "partition" = ?', (p,)))
        for p in (0, 1)
    }
    assert stored_offsets(backend, "g") == {("in", 0): last[0] + 2, ("in", 1): last[1] + 2}


def test_broker_sigkill_during_the_run(broker: BrokerProcess, backend: Backend) -> None:
    create_topic(broker.bootstrap, "in", 2)
    sent = produce(broker.bootstrap, "in", numbered(0, 20_000), 2)
    app = start_app(
        broker.bootstrap,
        backend,
        "g",
        "in",
        "--partitions",
        2,
        "--batch-size",
        200,
        "--slow-s",
        0.02,
        "--idle-exit-s",
        8,
    )
    wait_for(lambda: row_count(backend) >= 2000, what="the sink writes")
    broker.kill()
    time.sleep(1)
    broker.lines.clear()
    broker.start()
    more = produce(broker.bootstrap, "in", numbered(20_000, 22_000), 2)
    assert app.wait(APP_TIMEOUT_S) == 0
    assert_exactly_once(backend, sent + more)


def test_sink_processes_survive_each_other(broker: BrokerProcess, backend: Backend, tmp_path: Path) -> None:
    """A rebalance while members are SIGKILLed (groups, eager): three members come and go."""
    create_topic(broker.bootstrap, "in", 4)
    sent = produce(broker.bootstrap, "in", numbered(0, 30_000), 4)
    options = ("--batch-size", 200, "--rest-s", 0.03, "--session-timeout-ms", 6000, "--idle-exit-s", 8)
    members: list[subprocess.Popen[bytes]] = [start_app(broker.bootstrap, backend, "g", "in", *options)]
    wait_for(lambda: row_count(backend) >= 1000, what="the first member writes")
    members.append(start_app(broker.bootstrap, backend, "g", "in", *options))
    time.sleep(3)
    os.kill(members[0].pid, signal.SIGKILL)
    members.append(start_app(broker.bootstrap, backend, "g", "in", *options))
    assert [m.wait(APP_TIMEOUT_S) for m in members[1:]] == [0, 0]
    assert_exactly_once(backend, sent)


def test_the_same_guarantee_on_apache_kafka(kafka_port: int, backend: Backend) -> None:
    """The sink is a client of any cluster: SIGKILLs at random points and read_committed input
    with aborted transactions, on Apache Kafka 4.4."""

    class Kafka:
        bootstrap = f"127.0.0.1:{kafka_port}"

    topic = f"in-{backend.name}"
    create_topic(Kafka.bootstrap, topic, 2)
    sent = produce(Kafka.bootstrap, topic, numbered(0, 20_000), 2)
    producer = Producer({"bootstrap.servers": Kafka.bootstrap, "transactional.id": f"input-{backend.name}"})
    producer.init_transactions(TIMEOUT_S)
    for txn in range(6):
        producer.begin_transaction()
        values = [f"txn-{txn}-{i}" for i in range(100)]
        for i, value in enumerate(values):
            producer.produce(topic, value.encode(), partition=i % 2)
        producer.flush(TIMEOUT_S)
        if txn % 2:
            producer.abort_transaction(TIMEOUT_S)
        else:
            producer.commit_transaction(TIMEOUT_S)
            sent += values
    chance = random.Random(7)
    broker = Kafka()
    for _ in range(5):
        app = start_app(broker.bootstrap, backend, "g", topic, "--partitions", 2, "--batch-size", 200, "--slow-s", 0.01)
        time.sleep(chance.uniform(0.5, 1.5))
        app.send_signal(signal.SIGKILL)
        app.wait(TIMEOUT_S)
    assert run_app(broker.bootstrap, backend, "g", topic, "--partitions", 2, "--idle-exit-s", 3) == 0
    assert_exactly_once(backend, sent)
