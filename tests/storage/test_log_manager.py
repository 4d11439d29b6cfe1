"""The log manager: topics and partitions in a data directory, across restarts."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import make_batch
from tidelog.config import TopicConfig
from tidelog.storage import LogManager, TopicError, TopicPartition, wait_for_deletions


def test_topics_partitions_and_configs_survive_a_restart(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    meta = manager.create_topic("orders", 3, {"retention.ms": "60000"})
    manager.get(TopicPartition("orders", 2)).append(make_batch(count=7))  # type: ignore[union-attr]
    manager.create_partitions("orders", 5)
    manager.close()
    reopened = LogManager.open(tmp_path)
    assert reopened.topics["orders"].topic_id == meta.topic_id
    assert reopened.topics["orders"].partitions == 5
    assert reopened.topic_config("orders").retention_ms == 60000
    assert reopened.get(TopicPartition("orders", 2)).log_end_offset == 7  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [f"orders-{i}" for i in range(5)]
    reopened.close()


def test_topic_rules(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    manager.create_topic("a", 1)
    for bad_name in ["", ".", "..", "a/b", "x" * 250, "spaces here"]:
        with pytest.raises(TopicError):
            manager.create_topic(bad_name, 1)
    with pytest.raises(TopicError, match="already exists"):
        manager.create_topic("a", 1)
    with pytest.raises(TopicError):
        manager.create_topic("b", 0)
    with pytest.raises(TopicError):
        manager.create_partitions("a", 1)
    manager.delete_topic("a")
    assert not (tmp_path / "a-0").exists() and manager.get(TopicPartition("a", 0)) is None
    manager.close()
    assert LogManager.open(tmp_path).topics == {}


def test_a_deleted_topic_leaves_the_data_directory_at_once_and_its_files_go_once_unread(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, TopicConfig(internal_segment_bytes=64 * 1024))
    manager.create_topic("gone", 2)
    partition = manager.get(TopicPartition("gone", 0))
    assert partition is not None
    for i in range(40):
        partition.append(make_batch(count=4, value_bytes=2000, tag=i))
    reader = partition.read(0, 1 << 30, partition.log_end_offset)  # a fetch response being sent
    assert reader is not None
    expected = reader.read()
    manager.delete_topic("gone")
    assert not (tmp_path / "gone-0").exists() and not (tmp_path / "gone-1").exists()
    manager.create_topic("gone", 1)  # the name is free again at once
    assert not wait_for_deletions(0.5), "a segment with a reader was deleted"
    assert reader.read() == expected
    del reader, partition
    assert wait_for_deletions(10)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["gone-0"]
    manager.close()


def test_a_deletion_a_stop_cut_short_finishes_at_the_next_start(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    manager.create_topic("kept", 1)
    kept = manager.get(TopicPartition("kept", 0))
    assert kept is not None
    kept.append(make_batch(count=3))
    manager.close()
    # What a crash leaves: a renamed partition directory, and a segment file renamed out of a log.
    leftover = tmp_path / "old-0.0123456789abcdef0123456789abcdef-delete"
    (leftover / "set-aside").mkdir(parents=True)
    (leftover / "00000000000000000000.log").write_bytes(os.urandom(100_000))
    (leftover / "set-aside" / "00000000000000000009.log").write_bytes(b"x")
    (tmp_path / "kept-0" / "00000000000000000042.log.deleted").write_bytes(os.urandom(10_000))
    reopened = LogManager.open(tmp_path)
    assert wait_for_deletions(10)
    assert not leftover.exists()
    assert not list((tmp_path / "kept-0").glob("*.deleted"))
    assert reopened.get(TopicPartition("kept", 0)).log_end_offset == 3  # type: ignore[union-attr]
    reopened.close()


def test_the_data_directory_is_locked(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    with pytest.raises(RuntimeError, match="in use"):
        LogManager.open(tmp_path)
    manager.close()
    LogManager.open(tmp_path).close()


def test_retention_applies_to_delete_policy_topics_only(tmp_path: Path) -> None:
    config = TopicConfig(internal_segment_bytes=2048, retention_bytes=0)
    manager = LogManager.open(tmp_path, config)
    manager.create_topic("deleting", 1)
    manager.create_topic("compacted", 1, {"cleanup.policy": "compact"})
    for topic in ("deleting", "compacted"):
        for i in range(20):
            manager.get(TopicPartition(topic, 0)).append(make_batch(tag=i))  # type: ignore[union-attr]

    def durable(topic_partition: TopicPartition) -> int:
        return manager.partitions[topic_partition].durable_offset

    assert manager.enforce_retention(durable) == {}, "nothing below the bound (what is durable) yet"
    for topic in ("deleting", "compacted"):
        manager.get(TopicPartition(topic, 0)).log.flush()  # type: ignore[union-attr]
    reports = manager.enforce_retention(durable)
    assert list(reports) == [TopicPartition("deleting", 0)]
    assert manager.get(TopicPartition("compacted", 0)).log_start_offset == 0  # type: ignore[union-attr]
    manager.close()


def test_a_file_slice_goes_out_with_sendfile(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    manager.create_topic("t", 1)
    partition = manager.get(TopicPartition("t", 0))
    assert partition is not None
    for i in range(5):
        partition.append(make_batch(tag=i))
    assert partition.read(0, 1 << 20, upper_bound=0) is None, "nothing is readable above the bound"
    piece = partition.read(0, 1 << 20, upper_bound=partition.log_end_offset)
    assert piece is not None
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sent = os.sendfile(sender.fileno(), piece.fileno(), piece.position, piece.size)
        received = b""
        while len(received) < sent:
            received += receiver.recv(1 << 16)
    assert sent == piece.size and received == piece.read()
    target = bytearray(piece.size)
    piece.read_into(target)
    assert target == received
    manager.close()
