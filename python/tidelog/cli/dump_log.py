"""`tidelog dump-log PATH...`: what a partition's files hold, offline (the broker may run).

Segments (`.log`), offset and time indexes (`.index`, `.timeindex`), transaction indexes
(`.txnindex`) in the lines Kafka's `kafka-dump-log` prints for the same files, so the two can be
compared line by line (`tests/test_dump_log.py` does); producer-state snapshots (`.snapshot`,
tidelog's own layout, which Kafka's tool cannot read) in the fields Kafka shows for its own.
`--offsets-decoder` and `--transaction-log-decoder` decode the records of `__consumer_offsets`
and `__transaction_state` as JSON.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import click
import crc32c

from tidelog.coordinator.group import records as group_records
from tidelog.coordinator.group.records import GroupKey, OffsetKey
from tidelog.coordinator.transaction import records as txn_records
from tidelog.protocol.record_batch import (
    CRC_START,
    DELETE_HORIZON_FLAG,
    HEADER_BYTES,
    BatchHeader,
    Compression,
    ControlRecordType,
    decode_records,
    iter_batches,
    parse_control_record,
)
from tidelog.storage import decompress
from tidelog.storage.producer_state import ProducerStateManager

INDEX_ENTRY = struct.Struct(">ii")
TIME_INDEX_ENTRY = struct.Struct(">qi")
TXN_INDEX_ENTRY = struct.Struct(">hqqqq")
CODEC_NAMES = {Compression.NONE: "none", Compression.GZIP: "gzip", Compression.SNAPPY: "snappy"}
CODEC_NAMES |= {Compression.LZ4: "lz4", Compression.ZSTD: "zstd"}
# What Kafka's offsets decoder prints for a tombstone's value.
DELETED = "<DELETE>"


def base_offset_of(path: Path) -> int:
    try:
        return int(path.name.split(".")[0])
    except ValueError:
        return 0


def optional_long(value: int | None) -> str:
    """Java's OptionalLong as Kafka prints it."""
    return "OptionalLong.empty" if value is None else f"OptionalLong[{value}]"


def text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", "replace")


class _Cursor:
    """Reads the consumer protocol's non-flexible encoding (big-endian, int16-length strings)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.at : self.at + length].decode()
        self.at += length
        return value

    def blob(self) -> str | None:
        length = self.take(">i")
        if length < 0:
            return None
        value = self.data[self.at : self.at + length]
        self.at += length
        return base64.b64encode(value).decode()

    def topic_partitions(self) -> list[dict[str, Any]]:
        return [
            {"topic": self.string(), "partitions": [self.take(">i") for _ in range(self.take(">i"))]}
            for _ in range(self.take(">i"))
        ]


def consumer_subscription(data: bytes) -> Any:
    """A `consumer` group member's subscription (ConsumerProtocolSubscription v0-3) as Kafka's
    decoder shows it; base64 when it is not one."""
    try:
        cursor = _Cursor(data)
        version = cursor.take(">h")
        out: dict[str, Any] = {"topics": [cursor.string() for _ in range(cursor.take(">i"))], "userData": cursor.blob()}
        if version >= 1:
            out["ownedPartitions"] = cursor.topic_partitions()
        if version >= 2:
            out["generationId"] = cursor.take(">i")
        if version >= 3:
            out["rackId"] = cursor.string()
        return out
    except (struct.error, UnicodeDecodeError):
        return base64.b64encode(data).decode()


def consumer_assignment(data: bytes) -> Any:
    """A member's assignment (ConsumerProtocolAssignment) as Kafka's decoder shows it."""
    try:
        cursor = _Cursor(data)
        cursor.take(">h")  # version
        return {"assignedPartitions": cursor.topic_partitions(), "userData": cursor.blob()}
    except (struct.error, UnicodeDecodeError):
        return base64.b64encode(data).decode()


def decode_offsets_record(key: bytes | None, value: bytes | None) -> tuple[str, str]:
    """An `__consumer_offsets` record as Kafka's offsets decoder shows it (key and payload JSON)."""
    parsed = group_records.parse_key(key or b"")
    if isinstance(parsed, OffsetKey):
        key_json: dict[str, Any] = {
            "type": "1",
            "data": {"group": parsed.group, "topic": parsed.topic, "partition": parsed.partition},
        }
        if value is None:
            return json.dumps(key_json, separators=(",", ":")), DELETED
        version = struct.unpack_from(">h", value)[0]
        offset = group_records.parse_offset_value(value)
        data: dict[str, Any] = {"offset": offset.offset}
        if version >= 3:
            data["leaderEpoch"] = offset.leader_epoch
        data |= {"metadata": offset.metadata, "commitTimestamp": offset.commit_timestamp_ms}
        if version == 1:
            data["expireTimestamp"] = offset.expire_timestamp_ms
        return json.dumps(key_json, separators=(",", ":")), json.dumps(
            {"version": str(version), "data": data}, separators=(",", ":")
        )
    if isinstance(parsed, GroupKey):
        key_json = {"type": "2", "data": {"group": parsed.group}}
        if value is None:
            return json.dumps(key_json, separators=(",", ":")), DELETED
        version = struct.unpack_from(">h", value)[0]
        group = group_records.parse_group_value(value)
        members = [
            {
                "memberId": m.member_id,
                "groupInstanceId": m.group_instance_id,
                "clientId": m.client_id,
                "clientHost": m.client_host,
                "rebalanceTimeout": m.rebalance_timeout_ms,
                "sessionTimeout": m.session_timeout_ms,
                "subscription": consumer_subscription(m.subscription)
                if group.protocol_type == "consumer"
                else base64.b64encode(m.subscription).decode(),
                "assignment": consumer_assignment(m.assignment)
                if group.protocol_type == "consumer"
                else base64.b64encode(m.assignment).decode(),
            }
            for m in group.members
        ]
        data = {
            "protocolType": group.protocol_type,
            "generation": group.generation,
            "protocol": group.protocol,
            "leader": group.leader,
            "currentStateTimestamp": group.state_timestamp_ms,
            "members": members,
        }
        return json.dumps(key_json, separators=(",", ":")), json.dumps(
            {"version": str(version), "data": data}, separators=(",", ":")
        )
    return text(key), text(value)


def decode_transaction_record(key: bytes | None, value: bytes | None) -> tuple[str, str]:
    """A `__transaction_state` record: its transactional id and state as JSON."""
    transactional_id = txn_records.parse_key(key or b"")
    key_json = json.dumps({"type": "0", "data": {"transactionalId": transactional_id}}, separators=(",", ":"))
    if value is None:
        return key_json, DELETED
    version = struct.unpack_from(">h", value)[0]
    stored = txn_records.parse_value(value)
    data = {
        "producerId": stored.producer_id,
        "producerEpoch": stored.producer_epoch,
        "transactionTimeoutMs": stored.timeout_ms,
        "transactionStatus": stored.state.kafka_name,
        "transactionPartitions": [
            {"topic": topic, "partitionIds": sorted(p for t, p in stored.partitions if t == topic)}
            for topic in sorted({t for t, _ in stored.partitions})
        ],
        "transactionLastUpdateTimestampMs": stored.last_update_ms,
        "transactionStartTimestampMs": stored.start_ms,
    }
    return key_json, json.dumps({"version": str(version), "data": data}, separators=(",", ":"))


def dump_segment(path: Path, deep: bool, data_log: bool, decoder: str | None) -> list[str]:
    data = path.read_bytes()
    lines = [f"Log starting offset: {base_offset_of(path)}"]
    position = 0
    for header, batch in iter_batches(data):
        valid = crc32c.crc32c(batch[CRC_START:]) == header.crc
        horizon = header.base_timestamp if header.attributes & DELETE_HORIZON_FLAG else None
        last_sequence = -1 if header.base_sequence < 0 else header.base_sequence + header.last_offset_delta
        time_type = "LogAppendTime" if header.is_log_append_time else "CreateTime"
        codec = CODEC_NAMES[Compression(header.compression)]
        lines.append(
            f"baseOffset: {header.base_offset} lastOffset: {header.last_offset} count: {header.record_count} "
            f"baseSequence: {header.base_sequence} lastSequence: {last_sequence} producerId: {header.producer_id} "
            f"producerEpoch: {header.producer_epoch} partitionLeaderEpoch: {header.partition_leader_epoch} "
            f"isTransactional: {str(header.is_transactional).lower()} isControl: {str(header.is_control).lower()} "
            f"deleteHorizonMs: {optional_long(horizon)} position: {position} {time_type}: {header.max_timestamp} "
            f"size: {header.size_bytes} magic: {header.magic} compresscodec: {codec} "
            f"crc: {header.crc} isvalid: {str(valid).lower()}"
        )
        position += header.size_bytes
        if deep and valid:
            lines += record_lines(header, batch, data_log, decoder, time_type)
    if position < len(data):
        if not data[position:].strip(b"\0"):  # a live segment's pre-zeroed tail: not damage
            lines.append(f"Found {len(data) - position} zero bytes written ahead at the end of {path.name}")
        else:
            lines.append(f"Found {len(data) - position} invalid bytes at the end of {path.name}")
    return lines


def record_lines(
    header: BatchHeader, batch: memoryview, data_log: bool, decoder: str | None, time_type: str
) -> list[str]:
    payload = bytes(batch[HEADER_BYTES:])
    if header.compression:
        payload = decompress(header.compression, payload)
    lines = []
    for offset, timestamp, key, value, headers in decode_records(
        payload, header.base_offset, header.base_timestamp, header.record_count
    ):
        if header.is_log_append_time:
            timestamp = header.max_timestamp
        sequence = -1 if header.base_sequence < 0 else header.base_sequence + offset - header.base_offset
        line = (
            f"| offset: {offset} {time_type}: {timestamp} keySize: {-1 if key is None else len(key)} "
            f"valueSize: {-1 if value is None else len(value)} sequence: {sequence} "
            f"headerKeys: [{','.join(k for k, _ in headers)}]"
        )
        if header.is_control:
            kind, coordinator_epoch = parse_control_record(key, value)
            if kind in (ControlRecordType.COMMIT, ControlRecordType.ABORT):
                line += f" endTxnMarker: {kind.name} coordinatorEpoch: {coordinator_epoch}"
        elif decoder == "offsets":
            shown_key, shown_value = decode_offsets_record(key, value)
            line += f" key: {shown_key} payload: {shown_value}"
        elif decoder == "transactions":
            shown_key, shown_value = decode_transaction_record(key, value)
            line += f" key: {shown_key} payload: {shown_value}"
        elif data_log:
            if key is not None:
                line += f" key: {text(key)}"
            line += f" payload: {text(value)}"
        lines.append(line)
    return lines


def dump_index(path: Path, entry: struct.Struct, render: Any) -> list[str]:
    data = path.read_bytes()
    if not data:
        return [f"{path} is empty."]
    base = base_offset_of(path)
    return [render(*entry.unpack_from(data, at), base) for at in range(0, len(data) - entry.size + 1, entry.size)]


def dump_snapshot(path: Path) -> list[str]:
    producers = ProducerStateManager.parse_snapshot(path.read_bytes())
    lines = []
    for producer_id, entry in sorted(producers.items()):
        last = entry.batches[-1] if entry.batches else None
        txn = None if entry.current_txn_first_offset < 0 else entry.current_txn_first_offset
        line = (
            f"producerId: {producer_id} producerEpoch: {entry.epoch} coordinatorEpoch: {entry.coordinator_epoch} "
            f"currentTxnFirstOffset: {optional_long(txn)} lastTimestamp: {entry.last_timestamp}"
        )
        if last is not None:
            line += (
                f" firstSequence: {last.first_sequence} lastSequence: {last.last_sequence} "
                f"lastOffset: {last.last_offset} offsetDelta: {last.offset_delta} timestamp: {last.timestamp}"
            )
        lines.append(line)
    return lines


def dump(path: Path, deep: bool, data_log: bool, decoder: str | None) -> list[str]:
    suffix = path.suffix
    if suffix == ".log":
        return dump_segment(path, deep or data_log or decoder is not None, data_log, decoder)
    if suffix == ".index":
        return dump_index(path, INDEX_ENTRY, lambda rel, pos, base: f"offset: {base + rel} position: {pos}")
    if suffix == ".timeindex":
        return dump_index(path, TIME_INDEX_ENTRY, lambda ts, rel, base: f"timestamp: {ts} offset: {base + rel}")
    if suffix == ".txnindex":
        return dump_index(
            path,
            TXN_INDEX_ENTRY,
            lambda version, pid, first, last, lso, _: (
                f"version: {version} producerId: {pid} firstOffset: {first} lastOffset: {last} lastStableOffset: {lso}"
            ),
        )
    if suffix == ".snapshot":
        return dump_snapshot(path)
    raise click.BadParameter(f"{path}: not a .log, .index, .timeindex, .txnindex or .snapshot file")


@click.command("dump-log")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--deep-iteration", is_flag=True, help="every record, not only the batches")
@click.option("--print-data-log", is_flag=True, help="the records' keys and values too (implies --deep-iteration)")
@click.option("--offsets-decoder", is_flag=True, help="decode __consumer_offsets records as JSON")
@click.option("--transaction-log-decoder", is_flag=True, help="decode __transaction_state records as JSON")
def dump_log(
    paths: tuple[Path, ...],
    deep_iteration: bool,
    print_data_log: bool,
    offsets_decoder: bool,
    transaction_log_decoder: bool,
) -> None:
    """Print what segments, indexes and producer snapshots hold, as kafka-dump-log does."""
    decoder = "offsets" if offsets_decoder else "transactions" if transaction_log_decoder else None
    for path in paths:
        click.echo(f"Dumping {path}")
        for line in dump(path, deep_iteration, print_data_log, decoder):
            click.echo(line)
