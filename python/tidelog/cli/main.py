"""`tidelog serve`: the broker. Reads a server.properties file and `--set key=value` overrides
(Kafka's key names), opens and recovers the logs, and serves Kafka clients until SIGTERM.
`tidelog recover` inspects and repairs a stopped broker's logs; `tidelog verify` checks a cluster;
`topics`, `groups`, `transactions`, `produce`, `consume` talk to any cluster and `dump-log` reads
a data directory's files (click verbs, `CLUSTER_VERBS`).

SIGTERM or Ctrl-C: stop accepting, let in-flight requests finish, flush, write checkpoints and
the clean-shutdown marks. After SIGKILL the next start recovers every log.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidelog.config import BrokerConfig, ConfigError, read_properties

if TYPE_CHECKING:
    from tidelog.server.metrics import MetricsEndpoint

log = logging.getLogger("tidelog")


class StartRefused(Exception):
    """The broker cannot open its data directory; the message says why."""


async def serve(config: BrokerConfig) -> None:
    # Imported here: the other verbs start without the broker's modules (half a second).
    from tidelog.core.broker import Broker
    from tidelog.server.listener import Listener
    from tidelog.server.metrics import MetricsEndpoint
    from tidelog.storage import StorageError

    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        broker = Broker.open(config)
    except (RuntimeError, OSError, StorageError) as error:
        # The data directory is another broker's or locked by another process, not writable,
        # or a log in it cannot be opened.
        raise StartRefused(str(error)) from error
    listener = Listener(broker)
    metrics: MetricsEndpoint | None = None
    try:
        # Before the listener opens, so no request finds the coordinator without its shards;
        # the replay itself runs in the background, yielding between chunks, while requests
        # are served (COORDINATOR_LOAD_IN_PROGRESS for groups not yet loaded).
        broker.start()
        host, port = await listener.start()
        metrics_address = config.metrics_address()
        if metrics_address is not None:
            metrics = MetricsEndpoint.start(listener, *metrics_address)
            log.info("metrics on http://%s:%d/metrics (and /healthz, /readyz)", *metrics.address)
        log.info(
            "ready: listening on %s:%d, data in %s, %d topic(s), %d partition(s), started in %.0f ms",
            host,
            port,
            config.log_dirs,
            len(broker.topics),
            len(broker.partitions),
            (time.monotonic() - started) * 1000,
        )
        await stop.wait()
        if metrics is not None:
            metrics.stop()
        log.info("stopping: draining %d connection(s)", len(listener.connections))
        broker.resign_coordinators()
        await listener.stop()
    finally:
        failures = await broker.close()
        if failures:
            log.error("closed with %d log(s) not closed cleanly: the next start recovers them", failures)
        else:
            log.info("closed cleanly")


def build_config(args: argparse.Namespace) -> BrokerConfig:
    properties = read_properties(args.config) if args.config else {}
    for setting in args.set:
        key, separator, value = setting.partition("=")
        if not separator:
            raise ConfigError(f"--set takes key=value, not {setting!r}")
        properties[key.strip()] = value.strip()
    if args.data_dir:
        properties["log.dirs"] = args.data_dir
    if args.listen:
        properties["listeners"] = f"PLAINTEXT://{args.listen}"
    return BrokerConfig.from_properties(properties)


def add_verify_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="check the delivery guarantees of any Kafka-compatible cluster (pip install tidelog[verify])",
        description="Runs a Jepsen-style queue or transaction workload against a cluster, optionally through "
        "a fault proxy or while restarting a broker, reads every partition to its end and reports the "
        "anomalies found (docs/verify.md). Exit status 1 when a forbidden anomaly is found.",
    )
    verify.add_argument("--bootstrap", required=True, metavar="HOST:PORT", help="a broker of the cluster")
    verify.add_argument("--duration", type=float, default=300.0, metavar="SECONDS", help="workload time (300)")
    verify.add_argument("--workload", choices=("queue", "txn", "idempotent"), default="txn")
    verify.add_argument(
        "--faults", choices=("none", "proxy"), default="none", help="proxy: drops, delays, resets, replays"
    )
    verify.add_argument(
        "--kill-broker", metavar="CMD", help="a shell command that SIGKILLs (and restarts) a broker, run at intervals"
    )
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--report", metavar="DIR", help="where the history, results and plots go (default: a temp dir)")
    verify.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    verify.add_argument("--replication-factor", type=int, default=1, help="of the topics it creates (1)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.add_argument(
        "--flush-before-abort",
        action="store_true",
        help="txn workers flush before a deliberate abort (works around a librdkafka sequence reuse: docs/verify.md)",
    )
    verify.add_argument(
        "--no-replays", action="store_true", help="proxy faults without replayed requests (see docs/verify.md)"
    )
    verify.add_argument("--sabotage", help=argparse.SUPPRESS)  # test-only: tidelog.verify.sabotage


def add_recover_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    recover = commands.add_parser(
        "recover",
        help="report damaged batches in a data directory, and cut the logs at them (broker stopped)",
        description="Scans every segment of every partition (or those given) as a verification pass does and "
        "reports each damaged batch: segment, position, offsets, and whether it lies below the recovery point "
        "(possibly acknowledged). With --truncate-at-corruption, each damaged log is cut at its first bad batch: "
        "the original files go to <partition>/recovered-<time>/ (nothing is deleted), and the log is opened "
        "once to rebuild its indexes and producer state. See docs/operations.md. Exit status 1 while damage remains.",
    )
    recover.add_argument("--data-dir", required=True, help="the broker's log.dirs")
    recover.add_argument(
        "--partition", action="append", default=[], metavar="TOPIC-N", help="only this partition (repeatable)"
    )
    recover.add_argument(
        "--truncate-at-corruption", action="store_true", help="cut each damaged log at its first bad batch"
    )
    recover.add_argument("--dry-run", action="store_true", help="say what --truncate-at-corruption would do")


def run_recover(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tidelog.storage.recover import RecoverRefused, recover

    try:
        return recover(Path(args.data_dir), args.partition, args.truncate_at_corruption, args.dry_run, sys.stdout)
    except RecoverRefused as error:
        print(f"tidelog recover: {error}", file=sys.stderr)
        return 2


# The click verbs: those that talk to any Kafka-compatible cluster, and dump-log (offline, on
# files). (module, click command, what --help says).
CLUSTER_VERBS = {
    "dump-log": ("tidelog.cli.dump_log", "dump_log", "print segments, indexes and producer snapshots (offline)"),
    "topics": ("tidelog.cli.admin", "topics", "create|list|describe|alter-config|add-partitions|delete topics"),
    "groups": ("tidelog.cli.admin", "groups", "list|describe|reset-offsets|delete consumer groups"),
    "produce": ("tidelog.cli.records", "produce", "write records from lines of stdin or a file"),
    "consume": ("tidelog.cli.records", "consume", "print records (kcat-style templates or JSON)"),
    "bench": ("tidelog.cli.bench", "bench", "produce|consume load numbers, or compare with Apache Kafka"),
    "transactions": (
        "tidelog.cli.transactions",
        "transactions",
        "list|describe|describe-producers|find-hanging|abort transactions",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in CLUSTER_VERBS:  # the click verbs
        module, name, _ = CLUSTER_VERBS[arguments[0]]
        verb = getattr(importlib.import_module(module), name)
        verb.main(args=arguments[1:], prog_name=f"tidelog {arguments[0]}")  # exits with the verb's status
        return 0
    parser = argparse.ArgumentParser(prog="tidelog", description="A Kafka-compatible log broker.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, summary) in CLUSTER_VERBS.items():
        commands.add_parser(name, help=summary + f" (tidelog {name} --help)", add_help=False)
    serve_parser = commands.add_parser("serve", help="run the broker")
    serve_parser.add_argument("--data-dir", help="where the logs live (log.dirs; default tidelog-data)")
    serve_parser.add_argument("--listen", metavar="HOST:PORT", help="listener address (default 127.0.0.1:9092)")
    serve_parser.add_argument("--config", metavar="FILE", help="a server.properties file")
    serve_parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="one setting, Kafka's key names"
    )
    add_verify_parser(commands)
    add_recover_parser(commands)
    args = parser.parse_args(arguments)
    if args.command == "recover":
        return run_recover(args)
    if args.command == "verify":
        from tidelog.verify.runner import main as verify  # needs the `verify` extra

        return verify(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except (ConfigError, OSError) as error:
        print(f"tidelog: {error}", file=sys.stderr)
        return 2
    if config.tidelog_event_loop == "uvloop":
        import uvloop  # an optional dependency: `pip install uvloop`

        uvloop.install()
    try:
        asyncio.run(serve(config))
    except StartRefused as error:  # one line, naming the path
        print(f"tidelog: refusing to start: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
