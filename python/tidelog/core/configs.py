"""Configs at run time: what DescribeConfigs, IncrementalAlterConfigs and AlterConfigs see and
change, for topics and for the broker, with Kafka 4.4's rules and answers.

Dynamic broker configs are the ones `kafka-configs --alter --entity-type brokers` sets: for
this broker (`--entity-name 1`, resource name "1") or as the cluster-wide default
(`--entity-default`, resource name ""). They live in `<data-dir>/broker-configs.json` (replaced
atomically: the old version or the new one after any crash) and are applied at once: a new
topic default reaches every log whose topic does not set the key itself, a new cleaner setting
the next cleaning pass, max.connections the next connection.

A broker key's value is looked up in Kafka's order: this broker's dynamic value, the cluster
default, `server.properties` (or `--set`), then the built-in default. A topic config without a
value of its own follows its broker key (`log.retention.ms` for `retention.ms`) the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from tidelog.config import (
    BROKER_TO_TOPIC_KEYS,
    DYNAMIC_BROKER_KEYS,
    NOT_KEYS,
    TOPIC_KEYS,
    BrokerConfig,
    ConfigError,
    TopicConfig,
    dynamic_value,
    kafka_key,
)
from tidelog.core.types import (
    AlterConfigOp,
    ConfigEntry,
    ConfigResourceType,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
)
from tidelog.storage.durable_file import write_atomically

if TYPE_CHECKING:
    from tidelog.core.broker import Broker

log = logging.getLogger(__name__)

BROKER_CONFIGS_FILE = "broker-configs.json"
TOPIC_TO_BROKER_KEYS = {topic: server for server, topic in BROKER_TO_TOPIC_KEYS.items()}
BUILT_IN = BrokerConfig()
# Every broker key tidelog knows, in BrokerConfig's order.
BROKER_KEYS = BrokerConfig.keys()
KNOWN_BROKER_KEYS = frozenset(BROKER_KEYS)
# Kafka's DescribeConfigs type of each static broker key, from its field's type.
STATIC_KEY_TYPES = {
    kafka_key(f.name): {"bool": ConfigType.BOOLEAN, "int": ConfigType.LONG, "float": ConfigType.DOUBLE}.get(
        str(f.type), ConfigType.STRING
    )
    for f in dataclasses.fields(BrokerConfig)
    if f.name not in NOT_KEYS
}
LIST_OPERATIONS = (AlterConfigOp.APPEND, AlterConfigOp.SUBTRACT)


@dataclass
class DynamicBrokerConfigs:
    """The dynamic broker configs as stored: the cluster-wide default and this broker's own.
    Keys Kafka does not know are kept (Kafka keeps them too) and change nothing."""

    path: Path
    cluster_default: dict[str, str] = field(default_factory=dict)
    broker: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> DynamicBrokerConfigs:
        """What `data_dir` holds (nothing yet: empty). A stored value this version refuses is
        logged and left out, so the broker still starts."""
        path = data_dir / BROKER_CONFIGS_FILE
        if not path.exists():
            return cls(path)
        stored = json.loads(path.read_text())
        configs = cls(path, dict(stored.get("cluster_default", {})), dict(stored.get("broker", {})))
        for layer in (configs.cluster_default, configs.broker):
            for key, value in list(layer.items()):
                if key in DYNAMIC_BROKER_KEYS:
                    try:
                        dynamic_value(key, value)
                    except ConfigError as error:
                        log.error("%s: ignoring %s=%s: %s", path, key, value, error)
                        del layer[key]
        return configs

    def save(self) -> None:
        stored = {"cluster_default": self.cluster_default, "broker": self.broker}
        write_atomically(self.path, json.dumps(stored, indent=1, sort_keys=True))

    def settings(self) -> dict[str, str]:
        """Every dynamic value in effect: the broker's own over the cluster default."""
        return {**self.cluster_default, **self.broker}

    def layer(self, resource_name: str) -> dict[str, str]:
        return self.broker if resource_name else self.cluster_default


@dataclass(frozen=True, slots=True)
class ConfigAlteration:
    """One resource of an AlterConfigs or IncrementalAlterConfigs request: (operation, key,
    value) triples; AlterConfigs' are all SET and replace every dynamic value of the resource."""

    resource_type: int
    name: str
    operations: tuple[tuple[AlterConfigOp | int, str, str | None], ...]


class Configs:
    """The broker's config rules: describe and alter topics and the broker itself."""

    def __init__(self, broker: Broker, static: BrokerConfig, dynamic: DynamicBrokerConfigs) -> None:
        self.broker = broker
        self.static = static
        self.dynamic = dynamic

    # ---- DescribeConfigs ---------------------------------------------------------------------

    def describe(self, resource_type: int, name: str) -> tuple[ErrorCode, str | None, list[ConfigEntry]]:
        if resource_type == ConfigResourceType.TOPIC:
            meta = self.broker.logs.topics.get(name)
            if meta is None:
                return ErrorCode.unknown_topic_or_partition, f"Topic '{name}' does not exist.", []
            return ErrorCode.none, None, self.topic_entries(self.broker.logs.topic_config(name), meta.overrides)
        if resource_type == ConfigResourceType.BROKER:
            error, message = self._check_broker_name(name)
            if error != ErrorCode.none:
                return error, message, []
            return ErrorCode.none, None, self._broker_entries(name)
        return ErrorCode.invalid_request, f"resource type {resource_type} is not supported", []

    def topic_entries(self, config: TopicConfig, overrides: dict[str, str]) -> list[ConfigEntry]:
        """A topic's configs with `overrides` its own (CreateTopics answers them too)."""
        entries = []
        for key, value in config.to_kafka().items():
            synonyms = (
                [ConfigSynonym(key, overrides[key], ConfigSource.DYNAMIC_TOPIC_CONFIG)] if key in overrides else []
            )
            synonyms += self._broker_synonyms(TOPIC_TO_BROKER_KEYS[key])
            kind = ConfigType[TOPIC_KEYS[key].kind]
            entries.append(ConfigEntry(key, value, synonyms[0].source, kind, False, tuple(synonyms)))
        return entries

    def _broker_entries(self, name: str) -> list[ConfigEntry]:
        if not name:  # the cluster default shows only what is set there
            keys = sorted(self.dynamic.cluster_default)
        else:
            keys = [key for key in BROKER_KEYS if not self._hidden(key)]
            keys += sorted(set(self.dynamic.settings()) - set(keys))
        entries = []
        for key in keys:
            synonyms = self._broker_synonyms(key)
            if not name:
                synonyms = [s for s in synonyms if s.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG]
            known = key in KNOWN_BROKER_KEYS
            value = (self.broker.config.value_of(key) if name else synonyms[0].value) if known else None
            entries.append(
                ConfigEntry(
                    key,
                    value,
                    synonyms[0].source,
                    broker_key_type(key),
                    key not in DYNAMIC_BROKER_KEYS,
                    tuple(synonyms),
                )
            )
        return entries

    def _hidden(self, key: str) -> bool:
        """Internal keys (tidelog.internal.log.segment.bytes) are shown only once set."""
        topic_key = BROKER_TO_TOPIC_KEYS.get(key)
        if topic_key is None or not TOPIC_KEYS[topic_key].internal:
            return False
        return key not in self.static.static_keys and key not in self.dynamic.settings()

    def _broker_synonyms(self, key: str) -> list[ConfigSynonym]:
        """Where `key` is set, the value in use first."""
        known = key in KNOWN_BROKER_KEYS
        synonyms = []
        if key in self.dynamic.broker:
            synonyms.append(
                ConfigSynonym(key, self.dynamic.broker[key] if known else None, ConfigSource.DYNAMIC_BROKER_CONFIG)
            )
        if key in self.dynamic.cluster_default:
            value = self.dynamic.cluster_default[key] if known else None
            synonyms.append(ConfigSynonym(key, value, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG))
        if known:
            if key in self.static.static_keys:
                synonyms.append(ConfigSynonym(key, self.static.value_of(key), ConfigSource.STATIC_BROKER_CONFIG))
            if not self._hidden(key) or synonyms:
                synonyms.append(ConfigSynonym(key, BUILT_IN.value_of(key) or None, ConfigSource.DEFAULT_CONFIG))
        return synonyms

    # ---- AlterConfigs and IncrementalAlterConfigs --------------------------------------------

    def alter(
        self, resources: Sequence[ConfigAlteration], validate_only: bool, incremental: bool
    ) -> list[tuple[ErrorCode, str | None]]:
        """Each resource's answer, in order. A resource named twice is refused each time."""
        seen = [(r.resource_type, r.name) for r in resources]
        answers: list[tuple[ErrorCode, str | None]] = []
        for resource in resources:
            if seen.count((resource.resource_type, resource.name)) > 1:
                answers.append((ErrorCode.invalid_request, "Each resource must appear at most once."))
            else:
                answers.append(self._alter_one(resource, validate_only, incremental))
        return answers

    def _alter_one(
        self, resource: ConfigAlteration, validate_only: bool, incremental: bool
    ) -> tuple[ErrorCode, str | None]:
        operations = []
        for operation, key, value in resource.operations:
            try:
                operations.append((AlterConfigOp(operation), key, value))
            except ValueError:
                return ErrorCode.invalid_request, f"Unknown operations type {operation}"
        keys = [key for _, key, _ in operations]
        if len(set(keys)) < len(keys):
            return ErrorCode.invalid_request, "Error due to duplicate config keys"
        if resource.resource_type == ConfigResourceType.TOPIC:
            return self._alter_topic(resource.name, operations, validate_only, incremental)
        if resource.resource_type == ConfigResourceType.BROKER:
            return self._alter_broker(resource.name, operations, validate_only, incremental)
        return ErrorCode.invalid_request, f"resource type {resource.resource_type} is not supported"

    def _alter_topic(
        self,
        name: str,
        operations: list[tuple[AlterConfigOp, str, str | None]],
        validate_only: bool,
        incremental: bool,
    ) -> tuple[ErrorCode, str | None]:
        logs = self.broker.logs
        meta = logs.topics.get(name)
        if meta is None:
            return ErrorCode.unknown_topic_or_partition, f"Topic '{name}' does not exist."
        overrides: dict[str, str | None] = dict(meta.overrides) if incremental else {}
        current = logs.topic_config(name).to_kafka(internal=True)
        for operation, key, value in operations:
            if operation in LIST_OPERATIONS:
                spec = TOPIC_KEYS.get(key)
                if spec is not None and spec.kind != "LIST":
                    return (
                        ErrorCode.invalid_config,
                        f"Can't {operation.name} to key {key} because its type is not LIST.",
                    )
                overrides[key] = edit_list(current.get(key, ""), operation, value)
            elif operation == AlterConfigOp.DELETE:
                overrides.pop(key, None)
            else:
                overrides[key] = value
        cleaned = {k: v for k, v in overrides.items() if v is not None}
        try:
            self.broker.config.topic_defaults.with_overrides(cleaned)
        except ConfigError as error:
            return ErrorCode.invalid_config, str(error)
        if not validate_only:
            logs.alter_topic_config(name, cleaned)
            self.broker.configs_changed()
        return ErrorCode.none, None

    def _alter_broker(
        self,
        name: str,
        operations: list[tuple[AlterConfigOp, str, str | None]],
        validate_only: bool,
        incremental: bool,
    ) -> tuple[ErrorCode, str | None]:
        error, message = self._check_broker_name(name)
        if error != ErrorCode.none:
            return error, message
        static_keys = [key for _, key, _ in operations if key in KNOWN_BROKER_KEYS and key not in DYNAMIC_BROKER_KEYS]
        if static_keys:
            return ErrorCode.invalid_request, f"Cannot update these configs dynamically: [{', '.join(static_keys)}]"
        layer = dict(self.dynamic.layer(name)) if incremental else {}
        for operation, key, value in operations:
            if operation in LIST_OPERATIONS:
                spec = DYNAMIC_BROKER_KEYS.get(key)
                if spec is None or spec.kind != "LIST":
                    return ErrorCode.invalid_config, f"Config value append is not allowed for config key: {key}"
                layer[key] = edit_list(self._broker_value(name, key), operation, value)
            elif operation == AlterConfigOp.DELETE:
                layer.pop(key, None)
            elif value is None:
                return ErrorCode.invalid_request, f"Null value not supported for : {key}"
            else:
                layer[key] = value
        try:
            for key, value in layer.items():
                if key in DYNAMIC_BROKER_KEYS:
                    dynamic_value(key, value)
        except ConfigError as refused:
            return ErrorCode.invalid_request, str(refused)
        if validate_only:
            return ErrorCode.none, None
        unknown = sorted({key for op, key, _ in operations if op != AlterConfigOp.DELETE} - KNOWN_BROKER_KEYS)
        if unknown:
            log.warning("dynamic broker config(s) %s stored; tidelog does not act on them", ", ".join(unknown))
        target = self.dynamic.layer(name)
        before = dict(target)
        target.clear()
        target.update(layer)
        try:
            self.dynamic.save()
        except OSError as failed:  # a full disk, say: nothing changed
            target.clear()
            target.update(before)
            return ErrorCode.kafka_storage_error, f"cannot store the broker configs: {failed}"
        self.broker.reconfigure(self.static.with_dynamic(self.dynamic.settings()))
        return ErrorCode.none, None

    def _broker_value(self, name: str, key: str) -> str:
        """The value a list operation on resource `name` starts from: its own, else the
        next one in Kafka's order of lookup."""
        synonyms = self._broker_synonyms(key)
        if not name:
            synonyms = [s for s in synonyms if s.source != ConfigSource.DYNAMIC_BROKER_CONFIG]
        return next((s.value for s in synonyms if s.value is not None), "")

    def _check_broker_name(self, name: str) -> tuple[ErrorCode, str | None]:
        """ "" is the cluster default; otherwise a node id, and only this broker's."""
        if not name:
            return ErrorCode.none, None
        try:
            node = int(name)
        except ValueError:
            return ErrorCode.invalid_request, f"Node id must be an integer, but it is: {name}"
        if node != self.broker.node_id:
            return (
                ErrorCode.invalid_request,
                f"Unexpected broker id, expected {self.broker.node_id}, but received {node}",
            )
        return ErrorCode.none, None


def edit_list(current: str, operation: AlterConfigOp, change: str | None) -> str:
    """APPEND or SUBTRACT the items of `change` to or from the list `current` (comma-separated)."""
    items = [item for item in current.split(",") if item]
    changed = [item for item in (change or "").split(",") if item]
    if operation == AlterConfigOp.APPEND:
        return ",".join(items + [item for item in changed if item not in items])
    return ",".join(item for item in items if item not in changed)


def broker_key_type(key: str) -> ConfigType:
    """Kafka's type of a broker key (UNKNOWN for keys it does not know, as Kafka answers)."""
    spec = DYNAMIC_BROKER_KEYS.get(key)
    if spec is not None:
        return ConfigType[spec.kind]
    return STATIC_KEY_TYPES.get(key, ConfigType.UNKNOWN)
