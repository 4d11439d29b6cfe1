"""Topic configs under Kafka's key names."""

import pytest

from tidelog.config import ConfigError, TopicConfig


def test_overrides_use_kafka_keys_and_string_values() -> None:
    config = TopicConfig().with_overrides({"retention.ms": "1000", "segment.bytes": 4096, "cleanup.policy": "compact"})
    assert (config.retention_ms, config.segment_bytes, config.cleanup_policy) == (1000, 4096, "compact")
    assert config.to_kafka()["retention.ms"] == "1000"
    assert config.overrides_against(TopicConfig()) == {
        "retention.ms": "1000",
        "segment.bytes": "4096",
        "cleanup.policy": "compact",
    }
    assert TopicConfig().to_kafka()["max.message.bytes"] == "1048588"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"retention.msec": 1}, "unknown topic config 'retention.msec'"),
        ({"segment.bytes": "lots"}, "segment.bytes must be an integer"),
        ({"retention.ms": -5}, "retention.ms must be an integer of -1 or more"),
        ({"message.timestamp.type": "WallClock"}, "message.timestamp.type must be one of"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TopicConfig().with_overrides(overrides)
