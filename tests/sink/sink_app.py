"""A sink process for the tests: `tidelog.sink` with a confluent-kafka source, writing each
record as a row of `output` (value, topic, partition, offset, writer). It can SIGKILL itself
inside the handler (before the database commit) or right after a commit (before any Kafka
commit), stop itself before a transaction for a SIGSTOP, hold a batch's transaction open until
the test releases it, note what it did in an events file, and reject poison records.

    python -m tests.sink.sink_app --bootstrap B --db sqlite:PATH|postgres:DSN --group G --topic T ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.sink.conftest import open_store
from tidelog.sink import ExactlyOnceSink, KafkaSource, SinkRecord

# --hold-marker: the batch whose transaction is held open, and the longest it is held (below the
# PostgreSQL store's idle_in_transaction_session_timeout, 60 s) if the release never comes.
HOLD_BATCH = 3
HOLD_LIMIT_S = 30.0
HOLD_POLL_S = 0.02


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, help="assign partitions 0..N-1 (no group); else subscribe")
    parser.add_argument("--strategy", default="range", help="partition.assignment.strategy when subscribing")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument(
        "--heartbeat-interval-ms", type=int, help="default: a third of the session timeout, at most 1 s"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--slow-s", type=float, default=0.0, help="time the handler spends per batch")
    parser.add_argument(
        "--rest-s", type=float, default=0.0, help="time spent after each commit, outside any transaction"
    )
    parser.add_argument(
        "--slow-after-claim-s",
        type=float,
        default=0.0,
        help="the first batch after a claim ends this long after the claim (instead of --slow-s)",
    )
    parser.add_argument("--kill-in-handler", type=int, default=0, help="SIGKILL inside the Nth batch's handler")
    parser.add_argument("--kill-after-commits", type=int, default=0, help="SIGKILL after the Nth commit")
    parser.add_argument("--pause-marker", help="before the 3rd batch's transaction: write this file, wait 2 s")
    parser.add_argument(
        "--hold-marker",
        help="inside the 3rd batch's handler, its rows written and its transaction open: write this file, "
        "then wait until --release-marker exists",
    )
    parser.add_argument("--release-marker", help="the file that ends the hold of --hold-marker")
    parser.add_argument("--events", help="append what the sink does here (JSON lines): held, released, commit, ...")
    parser.add_argument("--reclaim-delay-s", type=float, default=5.0)
    parser.add_argument("--idle-exit-s", type=float, default=5.0)
    parser.add_argument(
        "--until-stored", type=int, default=0, help="run until the group's stored offsets add up to this (no idle exit)"
    )
    parser.add_argument("--writer", default=str(os.getpid()))
    parser.add_argument("--stats", help="write the sink's statistics here (JSON) when it ends")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sink %(levelname)s %(message)s")

    if bool(args.hold_marker) != bool(args.release_marker):
        parser.error("--hold-marker and --release-marker go together")
    events = Path(args.events).open("a") if args.events else None

    def note(event: str, **fields: Any) -> None:
        """One line per event, written at once: the file keeps the order the sink did things in."""
        if events is not None:
            events.write(json.dumps({"event": event, **fields}) + "\n")
            events.flush()

    store = open_store(args.db, args.group)
    place = store.placeholder
    insert = 'INSERT INTO output (value, topic, "partition", "offset", writer) VALUES (?, ?, ?, ?, ?)'
    insert = insert.replace("?", place)
    handled = 0
    claims_seen = 0
    claimed_at = 0.0

    def hold(records: Sequence[SinkRecord]) -> None:
        """Keeps the batch's transaction open (its rows written, not committed) until the test
        writes the release marker."""
        first = [records[0].partition, records[0].offset]
        note("held", first=first, records=len(records))
        Path(args.hold_marker).write_text(json.dumps({"pid": os.getpid(), "first": first}))
        deadline = time.monotonic() + HOLD_LIMIT_S
        release = Path(args.release_marker)
        while not release.exists():
            if time.monotonic() > deadline:
                note("hold timed out", first=first)
                return
            time.sleep(HOLD_POLL_S)
        note("released", first=first)

    def handler(records: Sequence[SinkRecord], cursor: Any) -> None:
        nonlocal handled, claims_seen
        handled += 1
        rows = []
        for r in records:
            value = (r.value or b"").decode()
            if value.startswith("poison"):
                raise ValueError(f"cannot parse {value!r}")
            rows.append((value, r.topic, r.partition, r.offset, args.writer))
        cursor.executemany(insert, rows)
        if args.slow_after_claim_s and sink.stats.claims != claims_seen:
            claims_seen = sink.stats.claims
            time.sleep(max(0.0, claimed_at + args.slow_after_claim_s - time.monotonic()))
        elif args.slow_s:
            time.sleep(args.slow_s)
        if args.kill_in_handler and handled == args.kill_in_handler and len(records) > 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if args.hold_marker and handled == HOLD_BATCH:
            hold(records)

    commits = 0

    def on_commit(batch: Any, positions: Any) -> None:
        nonlocal commits
        commits += 1
        if events is not None:  # the handler's first record: the sink hands batches over in this order
            first = next(r for records in batch.values() for r in records)
            note(
                "commit", number=commits, first=[first.partition, first.offset], partitions=sorted(p for _, p in batch)
            )
        if args.rest_s:
            # Work outside the database: SQLite lets one writer in at a time, and a process that
            # holds its lock all the time (sleeping in the handler) starves the others.
            time.sleep(args.rest_s)
        if args.kill_after_commits and commits == args.kill_after_commits:
            os.kill(os.getpid(), signal.SIGKILL)

    if args.pause_marker:
        marker = Path(args.pause_marker)
        begin = store.begin

        def pausing_begin() -> Any:
            # Outside any transaction, holding a polled batch: where a zombie is stopped.
            if commits == 2 and not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(2)
            return begin()

        store.begin = pausing_begin  # type: ignore[method-assign]

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": args.heartbeat_interval_ms or min(1000, args.session_timeout_ms // 3),
        "partition.assignment.strategy": args.strategy,
    }
    if args.partitions:
        source = KafkaSource(config, partitions=[(args.topic, p) for p in range(args.partitions)])
    else:
        source = KafkaSource(config, topics=[args.topic])
    sink = ExactlyOnceSink(
        source, store, handler, batch_size=args.batch_size, on_commit=on_commit, reclaim_delay_s=args.reclaim_delay_s
    )
    assigned = sink.assigned

    def timed_assigned(partitions: Any) -> Any:
        nonlocal claimed_at
        claimed_at = time.monotonic()
        return assigned(partitions)

    sink.assigned = timed_assigned  # type: ignore[method-assign]
    revoked = sink.revoked

    def noted_revoked(partitions: Any, lost: bool) -> None:
        if partitions:
            note("revoked", partitions=sorted(p for _, p in partitions), lost=lost, commits=commits)
        revoked(partitions, lost)

    sink.revoked = noted_revoked  # type: ignore[method-assign]
    stop = threading.Event()
    if args.until_stored:
        threading.Thread(target=watch_stored, args=(args.db, args.group, args.until_stored, stop), daemon=True).start()
    try:
        stats = sink.run(stop=stop, idle_timeout_s=None if args.until_stored else args.idle_exit_s)
    finally:
        sink.close()
        if events is not None:
            events.close()
    if args.stats:
        Path(args.stats).write_text(json.dumps({**stats.__dict__, "resets": [list(r) for r in stats.resets]}))


def watch_stored(db: str, group: str, total: int, stop: threading.Event) -> None:
    """Sets `stop` once the stored offsets of `group` add up to `total` (on its own connection)."""
    store = open_store(db, group)
    try:
        while not stop.wait(0.2):
            if sum(offset or 0 for offset in store.positions().values()) >= total:
                stop.set()
    finally:
        store.close()


if __name__ == "__main__":
    main()
