"""Topic configs under Kafka's key names, with Kafka 4.4's types and bounds."""

import pytest

from tidelog.config import BrokerConfig, ConfigError, TopicConfig


def test_overrides_use_kafka_keys_and_string_values() -> None:
    config = TopicConfig().with_overrides(
        {"retention.ms": "1000", "segment.bytes": 2 << 20, "cleanup.policy": "compact"}
    )
    assert (config.retention_ms, config.segment_bytes, config.cleanup_policy) == (1000, 2 << 20, "compact")
    assert config.to_kafka()["retention.ms"] == "1000"
    assert config.explicit({"retention.ms": "1000", "segment.bytes": 2 << 20, "cleanup.policy": "compact"}) == {
        "retention.ms": "1000",
        "segment.bytes": str(2 << 20),
        "cleanup.policy": "compact",
    }
    assert TopicConfig().to_kafka()["max.message.bytes"] == "1048588"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"retention.msec": 1}, "Unknown topic config name: retention.msec"),
        ({"segment.bytes": "lots"}, "Invalid value lots for configuration segment.bytes: Not a number of type INT"),
        ({"segment.bytes": 2**31}, "Not a number of type INT"),
        (
            {"segment.bytes": 65536},
            "Invalid value 65536 for configuration segment.bytes: Value must be at least 1048576",
        ),
        ({"segment.ms": 0}, "segment.ms: Value must be at least 1"),
        ({"segment.index.bytes": 3}, "segment.index.bytes: Value must be at least 4"),
        ({"retention.ms": -5}, "retention.ms: Value must be at least -1"),
        ({"message.timestamp.type": "WallClock"}, "String must be one of: CreateTime, LogAppendTime"),
        ({"cleanup.policy": "delete,forever"}, "String must be one of: compact, delete"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused_in_kafkas_words(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TopicConfig().with_overrides(overrides)


def test_the_internal_override_rolls_small_segments_and_stays_hidden() -> None:
    config = TopicConfig().with_overrides({"internal.segment.bytes": 4096})
    assert config.effective_segment_bytes == 4096 and config.segment_bytes == 1 << 30
    assert "internal.segment.bytes" not in config.to_kafka()
    assert config.explicit({"internal.segment.bytes": 4096, "retention.ms": None}) == {"internal.segment.bytes": "4096"}
    broker = BrokerConfig.from_properties({"tidelog.internal.log.segment.bytes": "4096"})
    assert broker.topic_defaults.effective_segment_bytes == 4096
    with pytest.raises(ConfigError, match="log.segment.bytes: Value must be at least 1048576"):
        BrokerConfig.from_properties({"log.segment.bytes": "4096"})
