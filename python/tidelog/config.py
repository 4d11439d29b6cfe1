"""Topic configuration under Kafka's own key names (`segment.bytes`, `retention.ms`, ...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MIB = 1 << 20
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
CLEANUP_POLICY_ITEMS = ("compact", "delete")
EVENT_LOOPS = ("asyncio", "uvloop")


class ConfigError(ValueError):
    """An unknown key or an invalid value; the message names it."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigKey:
    """A topic config as Kafka 4.4 defines it (`LogConfig`): its type and bounds."""

    name: str
    kind: str  # Kafka's ConfigDef type: INT, LONG, DOUBLE, STRING, LIST
    minimum: int | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # Kafka's internal configs (`internal.segment.bytes`, for tests) are accepted, never shown.
    internal: bool = False

    def parse(self, value: object) -> int | float | str | None:
        """The value as the field holds it; raises ConfigError in Kafka's words."""
        if self.kind == "DOUBLE":
            try:
                real = float(str(value).strip())
            except ValueError:
                raise ConfigError(self.invalid(value, "Not a number of type DOUBLE")) from None
            # Kafka names the parsed number (2 is "2.0") when a bound refuses it.
            if self.minimum is not None and real < self.minimum:
                raise ConfigError(self.invalid(real, f"Value must be at least {self.minimum}"))
            if self.maximum is not None and real > self.maximum:
                raise ConfigError(self.invalid(real, f"Value must be no more than {self.maximum}"))
            return real
        if self.kind in ("INT", "LONG"):
            try:
                number = int(str(value).strip())
            except ValueError:
                raise ConfigError(self.invalid(value, f"Not a number of type {self.kind}")) from None
            low, high = (INT32_MIN, INT32_MAX) if self.kind == "INT" else (INT64_MIN, INT64_MAX)
            if not low <= number <= high:
                raise ConfigError(self.invalid(value, f"Not a number of type {self.kind}"))
            if self.minimum is not None and number < self.minimum:
                raise ConfigError(self.invalid(value, f"Value must be at least {self.minimum}"))
            return number
        text = str(value).strip()
        if self.kind == "LIST":
            items = [item.strip() for item in text.split(",") if item.strip()]
            wrong = [item for item in items if item not in self.choices]
            if not items or wrong:  # Kafka names the first item it refuses
                shown = wrong[0] if wrong else value
                raise ConfigError(self.invalid(shown, f"String must be one of: {', '.join(self.choices)}"))
            return ",".join(dict.fromkeys(items))
        if self.choices and text not in self.choices:
            raise ConfigError(self.invalid(value, f"String must be one of: {', '.join(self.choices)}"))
        return text

    def invalid(self, value: object, why: str) -> str:
        return f"Invalid value {value} for configuration {self.name}: {why}"


# The topic configs tidelog acts on, with Kafka 4.4's types and lower bounds.
TOPIC_KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("segment.bytes", "INT", minimum=MIB),
        ConfigKey("segment.ms", "LONG", minimum=1),
        ConfigKey("segment.index.bytes", "INT", minimum=4),
        ConfigKey("index.interval.bytes", "INT", minimum=0),
        ConfigKey("retention.ms", "LONG", minimum=-1),
        ConfigKey("retention.bytes", "LONG"),
        ConfigKey("max.message.bytes", "INT", minimum=0),
        ConfigKey("message.timestamp.type", "STRING", choices=TIMESTAMP_TYPES),
        ConfigKey("message.timestamp.before.max.ms", "LONG", minimum=0),
        ConfigKey("message.timestamp.after.max.ms", "LONG", minimum=0),
        ConfigKey("cleanup.policy", "LIST", choices=CLEANUP_POLICY_ITEMS),
        ConfigKey("min.cleanable.dirty.ratio", "DOUBLE", minimum=0, maximum=1),
        ConfigKey("min.compaction.lag.ms", "LONG", minimum=0),
        ConfigKey("max.compaction.lag.ms", "LONG", minimum=1),
        ConfigKey("delete.retention.ms", "LONG", minimum=0),
        # Kafka's override of segment.bytes below its 1 MiB bound, for tests.
        ConfigKey("internal.segment.bytes", "INT", minimum=14, internal=True),
    )
}


@dataclasses.dataclass(frozen=True)
class TopicConfig:
    """A topic's settings. Field names are Kafka's keys with `_` for `.`; defaults are Kafka 4's."""

    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * 24 * 3600 * 1000
    segment_index_bytes: int = 10 << 20
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    max_message_bytes: int = 1_048_588
    message_timestamp_type: str = "CreateTime"
    message_timestamp_before_max_ms: int = INT64_MAX
    message_timestamp_after_max_ms: int = 3_600_000
    cleanup_policy: str = "delete"
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = INT64_MAX
    delete_retention_ms: int = 86_400_000
    internal_segment_bytes: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                TOPIC_KEYS[kafka_key(field.name)].parse(value)

    @classmethod
    def keys(cls, internal: bool = False) -> list[str]:
        return [k for k, spec in TOPIC_KEYS.items() if internal or not spec.internal]

    @property
    def effective_segment_bytes(self) -> int:
        """What segments roll at: `internal.segment.bytes` when set, as in Kafka."""
        return self.internal_segment_bytes if self.internal_segment_bytes is not None else self.segment_bytes

    def with_overrides(self, overrides: Mapping[str, Any]) -> TopicConfig:
        """A copy with `overrides` (Kafka keys, values as strings or ints) applied."""
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            spec = TOPIC_KEYS.get(key)
            if spec is None:
                raise ConfigError(f"Unknown topic config name: {key}")
            if value is not None:  # None: no override, the value stays this config's
                changes[key.replace(".", "_")] = spec.parse(value)
        return dataclasses.replace(self, **changes)

    def to_kafka(self, internal: bool = False) -> dict[str, str]:
        """Every setting as Kafka's DescribeConfigs shows it: key to string value (internal
        keys only when asked, and only when set)."""
        shown = {}
        for field in dataclasses.fields(self):
            key, value = kafka_key(field.name), getattr(self, field.name)
            if TOPIC_KEYS[key].internal and (not internal or value is None):
                continue
            shown[key] = str(value)
        return shown

    def explicit(self, overrides: Mapping[str, Any]) -> dict[str, str]:
        """The keys `overrides` sets (a None value sets none) with the values this config shows
        for them: a topic's own configs, which stay its own when the broker's defaults change
        (even one equal to the default, as in Kafka)."""
        shown = self.to_kafka(internal=True)
        return {key: shown[key] for key, value in overrides.items() if value is not None}

    @property
    def cleanup_policies(self) -> set[str]:
        return set(self.cleanup_policy.split(","))

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policies


def kafka_key(field_name: str) -> str:
    return field_name.replace("_", ".")


# Broker keys that set a topic config's default: server.properties name → topic name.
BROKER_TO_TOPIC_KEYS = {
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.index.size.max.bytes": "segment.index.bytes",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "message.max.bytes": "max.message.bytes",
    "log.message.timestamp.type": "message.timestamp.type",
    "log.message.timestamp.before.max.ms": "message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms": "message.timestamp.after.max.ms",
    "log.cleanup.policy": "cleanup.policy",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    # Not Kafka's: the broker-wide form of Kafka's topic-level `internal.segment.bytes`, for tests.
    "tidelog.internal.log.segment.bytes": "internal.segment.bytes",
}


# The broker keys Kafka 4.4 lets IncrementalAlterConfigs and AlterConfigs change at run time
# (its DynamicBrokerConfig reconfigurables) among those tidelog acts on, with Kafka's types and
# bounds: the topic defaults, the cleaner's pace and memory, max.connections, producer expiry.
# Every other key of BrokerConfig is static: INVALID_REQUEST "Cannot update these configs dynamically".
DYNAMIC_BROKER_KEYS: dict[str, ConfigKey] = {
    **{server: dataclasses.replace(TOPIC_KEYS[topic], name=server) for server, topic in BROKER_TO_TOPIC_KEYS.items()},
    **{
        key.name: key
        for key in (
            ConfigKey("max.connections", "INT", minimum=0),
            ConfigKey("log.cleaner.backoff.ms", "LONG", minimum=0),
            ConfigKey("log.cleaner.dedupe.buffer.size", "LONG"),
            ConfigKey("log.cleaner.io.max.bytes.per.second", "DOUBLE"),
            ConfigKey("producer.id.expiration.ms", "INT", minimum=1),
        )
    },
}
# Kafka's bound on the offset map of each cleaner thread (tidelog has one).
CLEANER_DEDUPE_BUFFER_MIN = MIB
# BrokerConfig fields that are not `server.properties` keys.
NOT_KEYS = ("topic_defaults", "static_keys")


def dynamic_value(key: str, raw: object) -> Any:
    """A dynamic broker config's value, parsed; raises ConfigError in Kafka's words."""
    value = DYNAMIC_BROKER_KEYS[key].parse(raw)
    if key == "log.cleaner.dedupe.buffer.size" and isinstance(value, int) and value < CLEANER_DEDUPE_BUFFER_MIN:
        raise ConfigError(f"requirement failed: {key} must be at least 1MB per cleaner thread.")
    return value


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """The broker's settings under Kafka's `server.properties` names (`log.dirs` → `log_dirs`).

    Keys under `tidelog.` are ours, for behaviour Kafka does not have.
    """

    log_dirs: str = "tidelog-data"
    listeners: str = "PLAINTEXT://127.0.0.1:9092"
    advertised_listeners: str = ""
    node_id: int = 1
    num_partitions: int = 1
    default_replication_factor: int = 1
    auto_create_topics_enable: bool = True
    socket_request_max_bytes: int = 104_857_600
    max_connections: int = 10_000
    connections_max_idle_ms: int = 600_000
    log_retention_check_interval_ms: int = 300_000
    # The log cleaner (Kafka's keys and defaults; one cleaner thread): compacts the logs of
    # `cleanup.policy=compact` topics, __consumer_offsets and __transaction_state included. It
    # looks for the dirtiest log every log.cleaner.backoff.ms; its offset map takes
    # log.cleaner.dedupe.buffer.size bytes; reads and writes are throttled to
    # log.cleaner.io.max.bytes.per.second (Kafka's default: no limit).
    log_cleaner_enable: bool = True
    log_cleaner_backoff_ms: int = 15_000
    log_cleaner_dedupe_buffer_size: int = 134_217_728
    log_cleaner_io_max_bytes_per_second: float = 1.7976931348623157e308
    log_flush_offset_checkpoint_interval_ms: int = 60_000
    # Idempotent producers idle this long are forgotten (Kafka's default: one day, KIP-854);
    # the check runs every producer.id.expiration.check.interval.ms.
    producer_id_expiration_ms: int = 86_400_000
    producer_id_expiration_check_interval_ms: int = 600_000
    # `acks=all` is answered only once the data is fsynced (group commit). `false` answers as
    # soon as it is in the page cache, as Kafka does, and makes the high watermark the log end.
    tidelog_flush_before_ack: bool = True
    # The Prometheus endpoint (/metrics, /healthz, /readyz): HOST:PORT, or a PORT on 127.0.0.1.
    # Empty: off (the default). See docs/operations.md, "Metrics".
    tidelog_metrics_listen: str = ""
    # The asyncio event loop implementation: "asyncio" (sendfile for fetches) or "uvloop".
    tidelog_event_loop: str = "asyncio"
    # A request frame must arrive whole within this long after its first byte (slowloris).
    tidelog_frame_deadline_ms: int = 30_000
    # Requests read from one connection but not yet answered; reading pauses at this count.
    tidelog_inflight_requests_max: int = 64
    # Every batch is checked (CRC-32C, framing, offsets) before it is first served after the
    # log was opened; damaged ones never are (KAFKA_STORAGE_ERROR). `false` serves bytes as they
    # are on disk, as Kafka does. See docs/operations.md.
    tidelog_log_verify_reads: bool = True
    # The background scrub: this often, segments no read has verified yet are verified, at
    # most this many bytes a second (0: no limit; readers that wait for a segment lift it). An
    # interval of 0 turns the scrub off.
    tidelog_log_scrub_interval_ms: int = 60_000
    tidelog_log_scrub_bytes_per_sec: int = 50 * 1024 * 1024
    # The active segment's file is zeroed this far ahead of the log's end by a background
    # thread (at most a segment's size), so an append overwrites allocated, synced blocks and
    # its fdatasync journals no size change. 0: the file grows with each append, as in Kafka.
    # Rolled and closed segments are cut back to their size. See docs/configuration.md.
    tidelog_log_preallocate_bytes: int = 0
    # Group coordinator (Kafka's keys and defaults). Offsets live in __consumer_offsets.
    offsets_topic_num_partitions: int = 50
    offsets_topic_segment_bytes: int = 104_857_600
    offsets_retention_minutes: int = 10_080
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    group_max_size: int = 2_147_483_647
    # Transaction coordinator (Kafka's keys and defaults). State lives in __transaction_state.
    transaction_state_log_num_partitions: int = 50
    transaction_state_log_segment_bytes: int = 104_857_600
    transaction_max_timeout_ms: int = 900_000
    transactional_id_expiration_ms: int = 604_800_000
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10_000
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3_600_000
    # The transaction.version feature ApiVersions finalizes: 2 (TV2, KIP-890 part 2, as Kafka 4.x
    # by default), or 1/0 to advertise no features, so Java 4.x clients use TV1.
    tidelog_transaction_version: int = 2
    topic_defaults: TopicConfig = TopicConfig()
    # The keys the properties this config was made from set (DescribeConfigs: STATIC_BROKER_CONFIG).
    static_keys: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)

    @classmethod
    def keys(cls) -> list[str]:
        own = [kafka_key(f.name) for f in dataclasses.fields(cls) if f.name not in NOT_KEYS]
        return own + list(BROKER_TO_TOPIC_KEYS)

    def value_of(self, key: str) -> str:
        """A broker key's value as DescribeConfigs shows it (`true`, `1048576`, `delete`)."""
        if key in BROKER_TO_TOPIC_KEYS:
            return self.topic_defaults.to_kafka(internal=True).get(BROKER_TO_TOPIC_KEYS[key], "")
        value = getattr(self, key.replace(".", "_"))
        return str(value).lower() if isinstance(value, bool) else str(value)

    def with_dynamic(self, settings: Mapping[str, str]) -> BrokerConfig:
        """This (static) config with dynamic broker configs over it: `settings` holds keys of
        DYNAMIC_BROKER_KEYS with values `dynamic_value` accepted; other keys are ignored (Kafka
        keeps unknown ones without acting on them)."""
        changes: dict[str, Any] = {}
        topic_overrides = {}
        for key, raw in settings.items():
            if key not in DYNAMIC_BROKER_KEYS:
                continue
            value = dynamic_value(key, raw)
            if key in BROKER_TO_TOPIC_KEYS:
                topic_overrides[BROKER_TO_TOPIC_KEYS[key]] = value
            else:
                changes[key.replace(".", "_")] = value
        changes["topic_defaults"] = self.topic_defaults.with_overrides(topic_overrides)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> BrokerConfig:
        """From `key=value` settings; unknown keys and bad values raise ConfigError naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in NOT_KEYS}
        values: dict[str, Any] = {}
        topic_overrides = {}
        for key, raw in properties.items():
            if key in BROKER_TO_TOPIC_KEYS:
                topic_overrides[BROKER_TO_TOPIC_KEYS[key]] = raw
                continue
            name = key.replace(".", "_")
            if name not in fields:
                raise ConfigError(f"unknown broker config {key!r}")
            values[name] = _parse(key, fields[name].type, raw)
        try:
            values["topic_defaults"] = TopicConfig().with_overrides(topic_overrides)
        except ConfigError as error:
            broker_key = {v: k for k, v in BROKER_TO_TOPIC_KEYS.items()}
            message = str(error)
            for topic_key, server_key in broker_key.items():
                message = message.replace(topic_key, server_key)
            raise ConfigError(message) from None
        config = cls(**values, static_keys=frozenset(properties))
        config.listener_address()
        config.metrics_address()
        if config.tidelog_event_loop not in EVENT_LOOPS:
            raise ConfigError(f"tidelog.event.loop must be one of {EVENT_LOOPS}, not {config.tidelog_event_loop!r}")
        return config

    def metrics_address(self) -> tuple[str, int] | None:
        """Where the metrics endpoint listens (`tidelog.metrics.listen`), or None when it is off."""
        raw = self.tidelog_metrics_listen.strip()
        if not raw:
            return None
        host, _, port = raw.rpartition(":")
        try:
            number = int(port)
        except ValueError:
            raise ConfigError(f"tidelog.metrics.listen must be HOST:PORT or PORT, not {raw!r}") from None
        if not 0 <= number <= 65535:
            raise ConfigError(f"tidelog.metrics.listen: port {number} out of range")
        return (host.strip("[]") or "127.0.0.1", number)

    def listener_address(self) -> tuple[str, int]:
        """Host and port of the PLAINTEXT listener."""
        return _parse_listener(self.listeners, "listeners")

    def advertised_address(self) -> tuple[str, int]:
        if self.advertised_listeners:
            return _parse_listener(self.advertised_listeners, "advertised.listeners")
        return self.listener_address()


def _parse(key: str, kind: Any, raw: str) -> Any:
    if kind == "bool":
        if str(raw).lower() not in ("true", "false"):
            raise ConfigError(f"{key} must be true or false, not {raw!r}")
        return str(raw).lower() == "true"
    if kind == "int":
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{key} must be an integer, not {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{key} must not be negative")
        return value
    if kind == "float":
        try:
            real = float(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, not {raw!r}") from None
        if not real > 0:
            raise ConfigError(f"{key} must be positive")
        return real
    return str(raw)


def _parse_listener(text: str, key: str) -> tuple[str, int]:
    first = text.split(",")[0].strip()
    protocol, _, address = first.partition("://")
    host, _, port = address.rpartition(":")
    if protocol != "PLAINTEXT" or not port.isdigit():
        raise ConfigError(f"{key} must look like PLAINTEXT://host:port, not {text!r}")
    return host or "127.0.0.1", int(port)


def read_properties(path: str) -> dict[str, str]:
    """A `server.properties` file: `key=value` lines, `#` comments."""
    properties = {}
    with open(path) as source:
        for number, line in enumerate(source, 1):
            line = line.strip()
            if not line or line.startswith(("#", "!")):
                continue
            key, separator, value = line.partition("=")
            if not separator:
                raise ConfigError(f"{path}:{number}: expected key=value, got {line!r}")
            properties[key.strip()] = value.strip()
    return properties
