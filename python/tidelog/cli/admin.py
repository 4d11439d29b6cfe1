"""`tidelog topics ...` and `tidelog groups ...`: day-to-day administration of any Kafka-compatible
cluster, in the spirit of `rpk` and Kafka's `bin/` tools.

A client like any other: confluent-kafka's AdminClient (and a Consumer for offsets) over the
wire, never the broker's insides. Human tables by default (rich), `--format json` for scripts.
An error is one line, `tidelog: ERROR_NAME: message`, and exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import click
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic  # type: ignore[attr-defined]
from rich.console import Console
from rich.table import Table

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
# How long one admin call may take before the verb gives up (seconds).
REQUEST_TIMEOUT_S = 30.0
# librdkafka's names of Kafka errors where they differ from Kafka's own (kafka/common/protocol/Errors).
LIBRDKAFKA_NAMES = {
    "UNKNOWN_TOPIC_OR_PART": "UNKNOWN_TOPIC_OR_PARTITION",
    "_UNKNOWN_TOPIC": "UNKNOWN_TOPIC_OR_PARTITION",
    "_UNKNOWN_PARTITION": "UNKNOWN_TOPIC_OR_PARTITION",
}


class Context:
    def __init__(self, bootstrap: str, output: str) -> None:
        self.bootstrap = bootstrap
        self.output = output
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def consumer(self, group: str | None = None) -> Consumer:
        settings = {
            "bootstrap.servers": self.bootstrap,
            "enable.auto.commit": False,
            "group.id": group or "tidelog-cli",
        }
        return Consumer(settings)

    def show(self, rows: list[dict[str, Any]], title: str | None = None, columns: Sequence[str] | None = None) -> None:
        """Rows as a table (their keys as columns), or as JSON with --format json."""
        if self.output == "json":
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        table = Table(title=title, title_justify="left", min_width=len(title or ""))
        names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
        for name in names:
            table.add_column(name, justify="right" if rows and isinstance(rows[0].get(name), int) else "left")
        for row in rows:
            table.add_row(*("" if row.get(n) is None else str(row.get(n)) for n in names))
        Console(width=max(100, Console().width)).print(table)


def fail(error: object) -> NoReturn:
    """One line naming Kafka's error, then exit status 1."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    if isinstance(error, KafkaError):
        name = LIBRDKAFKA_NAMES.get(error.name(), error.name())
        click.echo(f"tidelog: {name}: {error.str()}", err=True)
    else:
        click.echo(f"tidelog: {error}", err=True)
    sys.exit(1)


def wait_all(futures: dict[Any, Any]) -> dict[Any, Any]:
    """The result of each admin future; the first failure ends the verb."""
    out = {}
    for key, future in futures.items():
        try:
            out[key] = future.result(REQUEST_TIMEOUT_S)
        except (KafkaException, TimeoutError) as error:
            fail(error)
    return out


def settings(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


pass_context = click.make_pass_decorator(Context)
BOOTSTRAP = click.option(
    "--bootstrap",
    "-b",
    envvar="TIDELOG_BOOTSTRAP",
    default=DEFAULT_BOOTSTRAP,
    show_default=True,
    help="a broker of the cluster (env TIDELOG_BOOTSTRAP)",
)
FORMAT = click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True, help="output"
)


def cluster_verb(name: str, help_text: str) -> click.Group:
    """A verb group that talks to a cluster: --bootstrap and --format, a `Context` for its commands."""

    @click.group(name=name, help=help_text)
    @BOOTSTRAP
    @FORMAT
    @click.pass_context
    def group(context: click.Context, bootstrap: str, output: str) -> None:
        context.obj = Context(bootstrap, output)

    return group


topics = cluster_verb("topics", "Create, list, describe, configure, grow and delete topics.")


@topics.command("list")
@click.option("--internal", is_flag=True, help="include __consumer_offsets and __transaction_state")
@pass_context
def topics_list(context: Context, internal: bool) -> None:
    """The cluster's topics with their partition counts."""
    try:
        metadata = context.admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    except KafkaException as error:
        fail(error)
    rows = [
        {"topic": name, "partitions": len(topic.partitions), "replicas": _replication(topic)}
        for name, topic in sorted(metadata.topics.items())
        if internal or not name.startswith("__")
    ]
    context.show(rows, columns=["topic", "partitions", "replicas"])


def _replication(topic: Any) -> int:
    return max((len(p.replicas) for p in topic.partitions.values()), default=0)


@topics.command("create")
@click.argument("names", nargs=-1, required=True)
@click.option("--partitions", "-p", type=int, default=1, show_default=True)
@click.option("--replication-factor", "-r", type=int, default=1, show_default=True)
@click.option("--config", "-c", "configs", multiple=True, metavar="KEY=VALUE", help="a topic config (repeatable)")
@pass_context
def topics_create(
    context: Context, names: tuple[str, ...], partitions: int, replication_factor: int, configs: tuple[str, ...]
) -> None:
    """Create topics (Kafka's CreateTopics)."""
    wanted = [NewTopic(n, partitions, replication_factor, config=settings(configs)) for n in names]
    wait_all(context.admin.create_topics(wanted, request_timeout=REQUEST_TIMEOUT_S))
    context.show([{"topic": n, "partitions": partitions, "created": True} for n in names])


@topics.command("delete")
@click.argument("names", nargs=-1, required=True)
@pass_context
def topics_delete(context: Context, names: tuple[str, ...]) -> None:
    """Delete topics and their data."""
    wait_all(context.admin.delete_topics(list(names), request_timeout=REQUEST_TIMEOUT_S))
    context.show([{"topic": n, "deleted": True} for n in names])


@topics.command("add-partitions")
@click.argument("name")
@click.option("--total", type=int, required=True, help="the partition count afterwards")
@pass_context
def topics_add_partitions(context: Context, name: str, total: int) -> None:
    """Grow a topic to --total partitions (Kafka's CreatePartitions)."""
    wait_all(context.admin.create_partitions([NewPartitions(name, total)], request_timeout=REQUEST_TIMEOUT_S))
    context.show([{"topic": name, "partitions": total}])


@topics.command("alter-config")
@click.argument("name")
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE", help="set a config (repeatable)")
@click.option("--delete", "delete", multiple=True, metavar="KEY", help="back to the default (repeatable)")
@pass_context
def topics_alter_config(context: Context, name: str, set_: tuple[str, ...], delete: tuple[str, ...]) -> None:
    """Change a topic's configs (Kafka's IncrementalAlterConfigs)."""
    if not set_ and not delete:
        raise click.UsageError("give --set KEY=VALUE or --delete KEY")
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in settings(set_).items()]
    entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in delete]
    resource = ConfigResource("topic", name, incremental_configs=entries)
    wait_all(context.admin.incremental_alter_configs([resource]))
    context.show(
        [
            {"config": e.name, "value": e.value, "operation": getattr(e.incremental_operation, "name", "")}
            for e in entries
        ]
    )


@topics.command("describe")
@click.argument("names", nargs=-1, required=True)
@pass_context
def topics_describe(context: Context, names: tuple[str, ...]) -> None:
    """Partitions (leader, replicas, in-sync replicas, earliest and latest offsets) and the configs
    that are not defaults."""
    try:
        metadata = context.admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    except KafkaException as error:
        fail(error)
    consumer = context.consumer()
    described: list[dict[str, Any]] = []
    try:
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                fail(topic.error if topic is not None else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
            resource = ConfigResource("topic", name)
            configs = wait_all(context.admin.describe_configs([resource]))[resource]
            partitions = []
            for index, partition in sorted(topic.partitions.items()):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, index), timeout=REQUEST_TIMEOUT_S)
                partitions.append(
                    {
                        "partition": index,
                        "leader": partition.leader,
                        "replicas": ",".join(map(str, partition.replicas)),
                        "isr": ",".join(map(str, partition.isrs)),
                        "earliest": low,
                        "latest": high,
                    }
                )
            overrides = {k: v.value for k, v in sorted(configs.items()) if not v.is_default}
            described.append({"topic": name, "partitions": partitions, "configs": overrides})
    finally:
        consumer.close()
    if context.output == "json":
        click.echo(json.dumps(described, indent=2))
        return
    for topic_description in described:
        context.show(topic_description["partitions"], title=f"{topic_description['topic']}: partitions")
        rows = [{"config": k, "value": v} for k, v in topic_description["configs"].items()]
        context.show(rows, title=f"{topic_description['topic']}: configs set on the topic", columns=["config", "value"])


groups = cluster_verb("groups", "List, describe, reset and delete consumer groups.")


@groups.command("list")
@pass_context
def groups_list(context: Context) -> None:
    """The cluster's consumer groups and their states."""
    try:
        listed = context.admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result(REQUEST_TIMEOUT_S)
    except KafkaException as error:
        fail(error)
    rows = [
        {"group": g.group_id, "state": g.state.name if g.state is not None else "", "type": _group_type(g)}
        for g in sorted(listed.valid, key=lambda g: g.group_id)
    ]
    context.show(rows, columns=["group", "state", "type"])


def _group_type(group: Any) -> str:
    kind = getattr(group, "type", None)
    return kind.name.lower() if kind is not None else ("consumer" if group.is_simple_consumer_group is False else "")


def _lags(context: Context, group: str) -> list[dict[str, Any]]:
    """The group's committed offsets, each with its partition's latest offset and the lag."""
    wanted = [ConsumerGroupTopicPartitions(group)]
    committed = wait_all(context.admin.list_consumer_group_offsets(wanted, request_timeout=REQUEST_TIMEOUT_S))
    consumer = context.consumer()
    rows = []
    try:
        for tp in sorted(committed[group].topic_partitions, key=lambda p: (p.topic, p.partition)):
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=REQUEST_TIMEOUT_S)
            offset = tp.offset if tp.offset >= 0 else None
            rows.append(
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": offset,
                    "latest": high,
                    "lag": None if offset is None else max(0, high - offset),
                }
            )
    finally:
        consumer.close()
    return rows


@groups.command("describe")
@click.argument("group")
@pass_context
def groups_describe(context: Context, group: str) -> None:
    """State, members with their assignments, and committed offsets with lag."""
    described = wait_all(context.admin.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_S))[group]
    members = [
        {
            "member": m.member_id,
            "client": m.client_id,
            "host": m.host,
            "assigned": ", ".join(f"{p.topic}-{p.partition}" for p in m.assignment.topic_partitions),
        }
        for m in described.members
    ]
    offsets = _lags(context, group)
    state = described.state.name if described.state is not None else ""
    if context.output == "json":
        summary = {"group": group, "state": state, "protocol": described.partition_assignor}
        click.echo(json.dumps({**summary, "members": members, "offsets": offsets}, indent=2))
        return
    click.echo(f"group {group}: {state}, assignor {described.partition_assignor or '-'}, {len(members)} member(s)")
    context.show(members, title="members", columns=["member", "client", "host", "assigned"])
    context.show(offsets, title="offsets", columns=["topic", "partition", "committed", "latest", "lag"])


@groups.command("delete")
@click.argument("names", nargs=-1, required=True)
@pass_context
def groups_delete(context: Context, names: tuple[str, ...]) -> None:
    """Delete groups that have no members, and their committed offsets."""
    wait_all(context.admin.delete_consumer_groups(list(names), request_timeout=REQUEST_TIMEOUT_S))
    context.show([{"group": n, "deleted": True} for n in names])


@groups.command("reset-offsets")
@click.argument("group")
@click.option("--topic", "-t", required=True, help="the topic whose partitions are reset")
@click.option("--to-earliest", "target", flag_value="earliest", help="to each partition's earliest offset")
@click.option("--to-latest", "target", flag_value="latest", help="to each partition's latest offset")
@click.option("--to-offset", type=int, default=None, help="to this offset in every partition")
@click.option("--execute", is_flag=True, help="commit them (without it: only show the plan)")
@pass_context
def groups_reset_offsets(
    context: Context, group: str, topic: str, target: str | None, to_offset: int | None, execute: bool
) -> None:
    """Move a group's committed offsets (the group must have no active members, as in Kafka)."""
    if (target is None) == (to_offset is None):
        raise click.UsageError("give one of --to-earliest, --to-latest, --to-offset N")
    try:
        metadata = context.admin.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
    except KafkaException as error:
        fail(error)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        fail(found.error if found is not None else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    consumer = context.consumer(group)
    plan = []
    try:
        for index in sorted(found.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, index), timeout=REQUEST_TIMEOUT_S)
            offset = low if target == "earliest" else high if target == "latest" else to_offset
            assert offset is not None
            plan.append(TopicPartition(topic, index, min(max(offset, low), high)))
        if execute:
            request = [ConsumerGroupTopicPartitions(group, plan)]
            wait_all(context.admin.alter_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT_S))
    finally:
        consumer.close()
    rows = [{"topic": tp.topic, "partition": tp.partition, "new offset": tp.offset} for tp in plan]
    context.show(rows, title=None if execute else "plan (add --execute to commit it)")
