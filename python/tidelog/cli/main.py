"""`tidelog serve`: opens the data directory and keeps its logs until SIGTERM or Ctrl-C.

The Kafka wire listener arrives with the server work; until then `serve` opens (and, after an
unclean stop, recovers) every log, runs checkpoints and retention, and says plainly that it
does not accept Kafka clients yet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence

from tidelog import limits
from tidelog.storage import LogManager

log = logging.getLogger("tidelog")

DEFAULT_DATA_DIR = "tidelog-data"


async def housekeeping(manager: LogManager, stop: asyncio.Event) -> None:
    """Checkpoints and retention on Kafka's default intervals, until `stop` is set."""
    loop = asyncio.get_running_loop()
    next_retention = loop.time()
    while not stop.is_set():
        if loop.time() >= next_retention:
            for topic_partition, report in manager.enforce_retention().items():
                log.info("retention deleted %d segment(s) of %s", report.segments_deleted, topic_partition.directory_name())
            next_retention = loop.time() + limits.RETENTION_CHECK_INTERVAL_MS / 1000
        try:
            await asyncio.wait_for(stop.wait(), limits.CHECKPOINT_INTERVAL_MS / 1000)
        except TimeoutError:
            manager.checkpoint_all()


async def serve(data_dir: str) -> None:
    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    manager = LogManager.open(data_dir)
    partitions = len(manager.partitions)
    log.info(
        "opened %s: %d topic(s), %d partition(s) in %.0f ms",
        data_dir, len(manager.topics), partitions, (time.monotonic() - started) * 1000,
    )  # fmt: skip
    log.warning("the Kafka wire listener is not built yet: the logs are open, no client can connect")
    try:
        await housekeeping(manager, stop)
    finally:
        manager.close()
        log.info("closed cleanly")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidelog", description="A Kafka-compatible log broker.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the broker")
    serve_parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where the logs live (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        asyncio.run(serve(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
