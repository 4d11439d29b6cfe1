"""Dynamic broker configs on tidelog and on Apache Kafka 4.4: IncrementalAlterConfigs and
AlterConfigs for the broker ("1") and the cluster default (""), their refusals, Kafka's
`kafka-configs --entity-type brokers`, and what DescribeConfigs shows (sources and synonyms) for
the broker and for topics that follow its defaults. Each scenario asks both brokers and compares.

Both brokers are the session's, shared with other tests: every value set here is deleted again.
The keys used change nothing another test looks at (delete retention, timestamp bounds, index
interval).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from kio.schema.errors import ErrorCode

from tests.compat.conftest import kafka_available
from tests.compat.test_admin_tools import ok
from tests.server.config_wire import (
    APPEND,
    BROKER,
    DELETE,
    SET,
    TOPIC,
    Described,
    alter,
    alter_legacy,
    describe,
)
from tests.server.conftest import wait_until

pytestmark = pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")

# Kafka applies a change when its controller's record reaches the broker: a describe right after
# may still see the old value.
APPLIED_TIMEOUT_S = 15
# Keys whose dynamic values no other test notices.
QUIET_KEYS = ("log.cleaner.delete.retention.ms", "log.message.timestamp.after.max.ms", "log.index.interval.bytes")
DESCRIBED_KEYS = (*QUIET_KEYS, "log.dirs", "log.cleanup.policy")


@contextlib.contextmanager
def restored(*ports: int) -> Iterator[None]:
    """Deletes every key of QUIET_KEYS from both resources of each broker afterwards."""
    try:
        yield
    finally:
        for port in ports:
            for name in ("1", ""):
                assert alter(port, name, [(key, None, DELETE) for key in QUIET_KEYS]) == (ErrorCode.none, None)


def both(tidelog_port: int, kafka_port: int, ask: object) -> object:
    """`ask(port)` on both brokers; they must answer the same. Returns the answer."""
    on_tidelog, on_kafka = ask(tidelog_port), ask(kafka_port)  # type: ignore[operator]
    assert on_tidelog == on_kafka
    return on_tidelog


REFUSED = [
    ("1", [("log.dirs", "/x", SET)], ErrorCode.invalid_request),
    ("", [("node.id", "3", SET)], ErrorCode.invalid_request),
    ("1", [("auto.create.topics.enable", "false", SET)], ErrorCode.invalid_request),
    ("1", [("offsets.retention.minutes", "3", SET)], ErrorCode.invalid_request),
    ("1", [("log.retention.ms", "abc", SET)], ErrorCode.invalid_request),
    ("", [("log.segment.bytes", "10", SET)], ErrorCode.invalid_request),
    ("1", [("log.message.timestamp.type", "Bogus", SET)], ErrorCode.invalid_request),
    ("1", [("log.cleanup.policy", "delete,forever", SET)], ErrorCode.invalid_request),
    ("1", [("log.cleaner.min.cleanable.ratio", "2", SET)], ErrorCode.invalid_request),
    ("1", [("log.cleaner.dedupe.buffer.size", "1000", SET)], ErrorCode.invalid_request),
    ("2", [("log.retention.ms", "1", SET)], ErrorCode.invalid_request),
    ("x", [("log.retention.ms", "1", SET)], ErrorCode.invalid_request),
    ("1", [("log.retention.ms", None, SET)], ErrorCode.invalid_request),
    ("1", [("log.retention.ms", "1", SET), ("log.retention.ms", "2", SET)], ErrorCode.invalid_request),
    ("1", [("log.retention.ms", "5", APPEND)], ErrorCode.invalid_config),
    ("1", [("log.roll.ms", "5", 7)], ErrorCode.invalid_request),
]


@pytest.mark.parametrize("name, operations, code", REFUSED, ids=[f"{n or 'default'}-{o[0][0]}" for n, o, _ in REFUSED])
def test_refused_broker_changes_get_kafkas_answer(
    tidelog_port: int, kafka_port: int, name: str, operations: list[tuple[str, str | None, int]], code: ErrorCode
) -> None:
    answer = both(tidelog_port, kafka_port, lambda port: alter(port, name, operations, validate_only=True))
    assert answer[0] == code  # type: ignore[index]


@pytest.mark.parametrize(
    "name, operations",
    [
        ("1", [("log.cleaner.delete.retention.ms", "1000", SET)]),
        ("", [("log.message.timestamp.after.max.ms", "1000", SET), ("log.index.interval.bytes", "8192", SET)]),
        ("1", [("log.cleanup.policy", "compact", APPEND)]),
        ("1", [("max.connections", "5000", SET), ("producer.id.expiration.ms", "60000", SET)]),
        ("1", [("log.cleaner.backoff.ms", "100", SET), ("log.cleaner.io.max.bytes.per.second", "1e9", SET)]),
    ],
)
def test_accepted_broker_changes_validate_the_same(
    tidelog_port: int, kafka_port: int, name: str, operations: list[tuple[str, str | None, int]]
) -> None:
    answer = both(tidelog_port, kafka_port, lambda port: alter(port, name, operations, validate_only=True))
    assert answer == (ErrorCode.none, None)


def dynamic_lines(port: int, *entity: str) -> list[str]:
    out = ok(
        "ConfigCommand", "--bootstrap-server", f"127.0.0.1:{port}", "--describe", "--entity-type", "brokers", *entity
    )
    return out.splitlines()


def test_kafka_configs_sets_describes_and_deletes_broker_configs(tidelog_port: int, kafka_port: int) -> None:
    with restored(tidelog_port, kafka_port):
        for port in (tidelog_port, kafka_port):
            server = ["--bootstrap-server", f"127.0.0.1:{port}", "--alter", "--entity-type", "brokers"]
            ok("ConfigCommand", *server, "--entity-default", "--add-config", "log.cleaner.delete.retention.ms=5000")
            ok(
                "ConfigCommand", *server, "--entity-name", "1",
                "--add-config", "log.cleaner.delete.retention.ms=7000,log.index.interval.bytes=8192",
            )  # fmt: skip

        def broker_lines(port: int) -> list[str]:
            # Other tests' dynamic values (the compaction brokers' cleaner backoff) are left out.
            lines = dynamic_lines(port, "--entity-name", "1")
            return lines[:1] + [line for line in lines[1:] if line.split("=")[0].strip() in QUIET_KEYS]

        expected_broker = [
            "Dynamic configs for broker 1 are:",
            "  log.cleaner.delete.retention.ms=7000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:"
            "log.cleaner.delete.retention.ms=7000, DYNAMIC_DEFAULT_BROKER_CONFIG:log.cleaner.delete.retention.ms=5000, "
            "DEFAULT_CONFIG:log.cleaner.delete.retention.ms=86400000}",
            "  log.index.interval.bytes=8192 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:"
            "log.index.interval.bytes=8192, DEFAULT_CONFIG:log.index.interval.bytes=4096}",
        ]
        expected_default = [
            "Default configs for brokers in the cluster are:",
            "  log.cleaner.delete.retention.ms=5000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:"
            "log.cleaner.delete.retention.ms=5000}",
        ]
        for port in (tidelog_port, kafka_port):
            wait_until(lambda port=port: sorted(broker_lines(port)) == sorted(expected_broker), APPLIED_TIMEOUT_S)
            # Kafka's format step sets min.insync.replicas as a cluster default.
            lines = [line for line in dynamic_lines(port, "--entity-default") if "min.insync.replicas=" not in line]
            assert lines == expected_default

        for port in (tidelog_port, kafka_port):
            ok(
                "ConfigCommand", "--bootstrap-server", f"127.0.0.1:{port}", "--alter", "--entity-type", "brokers",
                "--entity-name", "1", "--delete-config", "log.cleaner.delete.retention.ms,log.index.interval.bytes",
            )  # fmt: skip
        for port in (tidelog_port, kafka_port):
            wait_until(lambda port=port: broker_lines(port) == ["Dynamic configs for broker 1 are:"], APPLIED_TIMEOUT_S)
            # What is left is the default, in effect for the broker now.
            (value, source, read_only, _) = describe(port, BROKER, "1", ("log.cleaner.delete.retention.ms",))[
                "log.cleaner.delete.retention.ms"
            ]
            assert (value, source, read_only) == ("5000", 3, False)


def test_describe_shows_sources_and_synonyms_in_kafkas_order(tidelog_port: int, kafka_port: int) -> None:
    with restored(tidelog_port, kafka_port):
        for port in (tidelog_port, kafka_port):
            assert alter(port, "", [("log.message.timestamp.after.max.ms", "2000", SET)]) == (ErrorCode.none, None)
            assert alter(port, "1", [("log.message.timestamp.after.max.ms", "1000", SET)]) == (ErrorCode.none, None)
            assert alter(port, "1", [("log.cleaner.delete.retention.ms", "9000", SET)]) == (ErrorCode.none, None)

        def broker_view(port: int) -> Described:
            described = describe(port, BROKER, "1", DESCRIBED_KEYS)
            # Paths differ; the source and synonym order is what is compared.
            value, source, read_only, synonyms = described["log.dirs"]
            described["log.dirs"] = (None, source, read_only, tuple((n, None, s) for n, _, s in synonyms))
            return described

        expected = {
            "log.message.timestamp.after.max.ms": (
                "1000", 2, False,
                (
                    ("log.message.timestamp.after.max.ms", "1000", 2),
                    ("log.message.timestamp.after.max.ms", "2000", 3),
                    ("log.message.timestamp.after.max.ms", "3600000", 5),
                ),
            ),
            "log.cleaner.delete.retention.ms": (
                "9000", 2, False,
                (("log.cleaner.delete.retention.ms", "9000", 2), ("log.cleaner.delete.retention.ms", "86400000", 5)),
            ),
            "log.index.interval.bytes": ("4096", 5, False, (("log.index.interval.bytes", "4096", 5),)),
            "log.cleanup.policy": ("delete", 5, False, (("log.cleanup.policy", "delete", 5),)),
        }  # fmt: skip
        for port in (tidelog_port, kafka_port):
            wait_until(
                lambda port=port: {k: v for k, v in broker_view(port).items() if k != "log.dirs"} == expected,
                APPLIED_TIMEOUT_S,
            )
        # log.dirs: static (server.properties), read only; Kafka gives it no DEFAULT synonym
        # (it has no default), tidelog does (tidelog-data): only the first synonym is compared.
        dirs = [broker_view(port)["log.dirs"] for port in (tidelog_port, kafka_port)]
        assert [(d[0], d[1], d[2], d[3][0]) for d in dirs] == [(None, 4, True, ("log.dirs", None, 4))] * 2

        # A topic without values of its own follows the broker's, through the same order.
        topic = f"follows-{uuid.uuid4().hex[:8]}"
        for port in (tidelog_port, kafka_port):
            ok(
                "TopicCommand", "--bootstrap-server", f"127.0.0.1:{port}", "--create", "--topic", topic,
                "--config", "delete.retention.ms=100",
            )  # fmt: skip
        keys = ("message.timestamp.after.max.ms", "delete.retention.ms", "index.interval.bytes")
        expected_topic = {
            "message.timestamp.after.max.ms": (
                "1000", 2, False,
                (
                    ("log.message.timestamp.after.max.ms", "1000", 2),
                    ("log.message.timestamp.after.max.ms", "2000", 3),
                    ("log.message.timestamp.after.max.ms", "3600000", 5),
                ),
            ),
            "delete.retention.ms": (
                "100", 1, False,
                (
                    ("delete.retention.ms", "100", 1),
                    ("log.cleaner.delete.retention.ms", "9000", 2),
                    ("log.cleaner.delete.retention.ms", "86400000", 5),
                ),
            ),
            "index.interval.bytes": ("4096", 5, False, (("log.index.interval.bytes", "4096", 5),)),
        }  # fmt: skip
        for port in (tidelog_port, kafka_port):
            wait_until(lambda port=port: describe(port, TOPIC, topic, keys) == expected_topic, APPLIED_TIMEOUT_S)


def test_the_cluster_default_shows_only_what_is_set_there(tidelog_port: int, kafka_port: int) -> None:
    with restored(tidelog_port, kafka_port):
        for port in (tidelog_port, kafka_port):
            assert alter(port, "", [("log.index.interval.bytes", "16384", SET)]) == (ErrorCode.none, None)

        def default_view(port: int) -> Described:
            # Kafka's reference sets min.insync.replicas as a cluster default at format time.
            return {k: v for k, v in describe(port, BROKER, "").items() if k != "min.insync.replicas"}

        expected = {"log.index.interval.bytes": ("16384", 3, False, (("log.index.interval.bytes", "16384", 3),))}
        for port in (tidelog_port, kafka_port):
            wait_until(lambda port=port: default_view(port) == expected, APPLIED_TIMEOUT_S)


def test_alter_configs_replaces_every_dynamic_value_of_the_broker(tidelog_port: int, kafka_port: int) -> None:
    def others(port: int) -> dict[str, str]:
        """The broker's dynamic values other tests set (the compaction brokers' cleaner backoff)."""
        described = describe(port, BROKER, "1")
        return {k: v[0] for k, v in described.items() if v[1] == 2 and v[0] is not None and k not in QUIET_KEYS}

    kept = {port: others(port) for port in (tidelog_port, kafka_port)}
    with restored(tidelog_port, kafka_port):
        for port in (tidelog_port, kafka_port):
            assert alter(port, "1", [("log.index.interval.bytes", "8192", SET)]) == (ErrorCode.none, None)
            # AlterConfigs replaces the whole set: what others set is named again, to stay.
            replacement = {**kept[port], "log.cleaner.delete.retention.ms": "4444"}
            assert alter_legacy(port, "1", replacement) == (ErrorCode.none, None)
            refused = alter_legacy(port, "1", {"log.dirs": "/y"})
            assert refused == (ErrorCode.invalid_request, "Cannot update these configs dynamically: [log.dirs]")

        def dynamic(port: int) -> dict[str, str | None]:
            described = describe(port, BROKER, "1", QUIET_KEYS)
            return {k: v[0] for k, v in described.items() if v[1] == 2}

        for port in (tidelog_port, kafka_port):
            wait_until(
                lambda port=port: dynamic(port) == {"log.cleaner.delete.retention.ms": "4444"}, APPLIED_TIMEOUT_S
            )
            assert others(port) == kept[port]
