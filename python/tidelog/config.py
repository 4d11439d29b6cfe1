"""Topic configuration under Kafka's own key names (`segment.bytes`, `retention.ms`, ...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

INT64_MAX = 2**63 - 1
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
CLEANUP_POLICIES = ("delete", "compact", "compact,delete", "delete,compact")


class ConfigError(ValueError):
    """An unknown key or an invalid value; the message names it."""


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

    def __post_init__(self) -> None:
        if self.message_timestamp_type not in TIMESTAMP_TYPES:
            raise ConfigError(f"message.timestamp.type must be one of {TIMESTAMP_TYPES}")
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ConfigError(f"cleanup.policy must be one of {CLEANUP_POLICIES}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (not isinstance(value, int) or value < -1):
                raise ConfigError(f"{kafka_key(field.name)} must be an integer of -1 or more, not {value!r}")

    @classmethod
    def keys(cls) -> list[str]:
        return [kafka_key(f.name) for f in dataclasses.fields(cls)]

    def with_overrides(self, overrides: Mapping[str, Any]) -> TopicConfig:
        """A copy with `overrides` (Kafka keys, values as strings or ints) applied."""
        changes: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(self)}
        for key, value in overrides.items():
            name = key.replace(".", "_")
            if name not in fields:
                raise ConfigError(f"unknown topic config {key!r}; known: {', '.join(self.keys())}")
            if fields[name].type == "int":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"{key} must be an integer, not {value!r}") from None
            changes[name] = str(value) if fields[name].type == "str" else value
        return dataclasses.replace(self, **changes)

    def to_kafka(self) -> dict[str, str]:
        """Every setting as Kafka's DescribeConfigs shows it: key to string value."""
        return {kafka_key(f.name): str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def overrides_against(self, base: TopicConfig) -> dict[str, str]:
        """Only the settings that differ from `base`."""
        mine, theirs = self.to_kafka(), base.to_kafka()
        return {key: value for key, value in mine.items() if theirs[key] != value}


def kafka_key(field_name: str) -> str:
    return field_name.replace("_", ".")
