"""Sabotage rules for the fault proxy: a broken cluster, simulated, to test the checker's power.

Each mode breaks one guarantee on the wire, and the checker must report it as the anomaly it
is (tests/verify/test_sabotage.py). They are test-only: `tidelog verify --sabotage MODE`
(hidden from --help).

- `read-uncommitted`: read_committed Fetch requests are sent as read_uncommitted (records of
  aborted and open transactions get through) -> aborted-read, uncommitted-read;
- `fetch-drop`: the first of several record batches of a fetched partition is dropped ->
  poll-skip;
- `fetch-repeat`: a fetched partition's first batch is sent again after the others ->
  nonmonotonic-poll;
- `fetch-shift`: a fetched partition's last data batch is moved up one offset ->
  inconsistent-offsets;
- `produce-dup`: a Produce is sent again later with its producer id stripped (so the broker
  cannot recognise the retry) -> duplicate;
- `fake-ack`: a Produce is answered "ok" in the broker's place and never reaches it ->
  lost-write.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable
from typing import Any

import crc32c
import kio.index

from tidelog.verify.proxy import FETCH, PRODUCE, Action, Request, decode_response, encode_response_frame

# Record batch v2 layout (Kafka's DefaultRecordBatch): where the fields sabotage touches live.
BATCH_LENGTH_AT = 8
BATCH_HEADER_BYTES = 12  # base offset and batch length come before the length's count
CRC_AT = 17
ATTRIBUTES_AT = 21
PRODUCER_ID_AT = 43
CONTROL_BIT = 0x20
TRANSACTIONAL_BIT = 0x10
NO_PRODUCER = struct.Struct(">qhi").pack(-1, -1, -1)  # producer id, epoch, base sequence
BASE_OFFSET = struct.Struct(">q")
ATTRIBUTES = struct.Struct(">h")
CRC = struct.Struct(">I")

# How often each mode strikes where it can.
SABOTAGE_PROBABILITY = 0.2
READ_COMMITTED_LEVEL = 1
REPLAY_AFTER_S = 0.2
# The fetch modes hold each Fetch this long first, so that answers carry several batches.
FETCH_HOLD_S = 0.3


def split_batches(records: bytes) -> list[bytes]:
    batches = []
    at = 0
    while at + BATCH_HEADER_BYTES <= len(records):
        (length,) = struct.unpack_from(">i", records, at + BATCH_LENGTH_AT)
        end = at + BATCH_HEADER_BYTES + length
        if end > len(records):
            break  # a partial batch at the end of a fetch: clients skip it
        batches.append(records[at:end])
        at = end
    return batches


def is_control(batch: bytes) -> bool:
    (attributes,) = ATTRIBUTES.unpack_from(batch, ATTRIBUTES_AT)
    return bool(attributes & CONTROL_BIT)


def without_producer(batch: bytes) -> bytes:
    """`batch` as a plain producer would have sent it (no producer id), its CRC recomputed."""
    (attributes,) = ATTRIBUTES.unpack_from(batch, ATTRIBUTES_AT)
    out = bytearray(batch)
    ATTRIBUTES.pack_into(out, ATTRIBUTES_AT, attributes & ~TRANSACTIONAL_BIT)
    out[PRODUCER_ID_AT : PRODUCER_ID_AT + len(NO_PRODUCER)] = NO_PRODUCER
    CRC.pack_into(out, CRC_AT, crc32c.crc32c(bytes(out[ATTRIBUTES_AT:])))
    return bytes(out)


class Sabotage:
    """One sabotage mode as a proxy rule (never healed: the broken cluster stays broken)."""

    healable = False

    def __init__(self, mode: str, seed: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown sabotage {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.random = random.Random(seed)

    def strikes(self) -> bool:
        return self.random.random() < SABOTAGE_PROBABILITY

    def on_request(self, request: Request) -> Action | None:
        if self.mode.startswith("fetch-") and request.api_key == FETCH:
            return Action(delay_s=FETCH_HOLD_S, name="hold")
        if self.mode == "read-uncommitted" and request.api_key == FETCH:
            body, _ = request.body()
            if body.isolation_level == READ_COMMITTED_LEVEL:
                lowered = dataclasses.replace(body, isolation_level=type(body.isolation_level)(0))
                return Action(frame=request.with_body(lowered), name="sabotage")
        if request.api_key != PRODUCE or self.mode not in ("produce-dup", "fake-ack") or not self.strikes():
            return None
        body, _ = request.body()
        if self.mode == "produce-dup":
            copy = _map_produce_records(body, lambda records: b"".join(map(without_producer, split_batches(records))))
            return Action(replay_after_s=REPLAY_AFTER_S, replay_frame=request.with_body(copy), name="sabotage")
        if body.acks == 0:
            return None
        return Action(answer=_fake_produce_answer(request, body), name="sabotage")

    def on_response(self, request: Request, frame: bytes) -> Action | None:
        if request.api_key != FETCH or self.mode not in ("fetch-drop", "fetch-repeat", "fetch-shift"):
            return None
        response, at = decode_response(request.api_key, request.api_version, frame)
        changed = False
        topics = []
        for topic in response.responses:
            partitions = []
            for partition in topic.partitions:
                records = partition.records
                batches = split_batches(bytes(records)) if records else []
                data = [i for i, batch in enumerate(batches) if not is_control(batch)]
                if len(data) >= 2 and self.strikes():
                    batches = self._break(batches, data)
                    partition = dataclasses.replace(partition, records=type(records)(b"".join(batches)))
                    changed = True
                partitions.append(partition)
            topics.append(dataclasses.replace(topic, partitions=tuple(partitions)))
        if not changed:
            return None
        broken = dataclasses.replace(response, responses=tuple(topics))
        return Action(frame=encode_response_frame(request, broken), name="sabotage")

    def _break(self, batches: list[bytes], data: list[int]) -> list[bytes]:
        if self.mode == "fetch-drop":
            return [batch for i, batch in enumerate(batches) if i != data[0]]
        if self.mode == "fetch-repeat":
            return [*batches, batches[data[0]]]
        last = data[-1]
        shifted = bytearray(batches[last])
        (base,) = BASE_OFFSET.unpack_from(shifted)
        BASE_OFFSET.pack_into(shifted, 0, base + 1)
        return [*batches[:last], bytes(shifted)]  # what followed it would overlap: cut


def _map_produce_records(body: Any, change: Callable[[bytes], bytes]) -> Any:
    topics = []
    for topic in body.topic_data:
        partitions = [
            dataclasses.replace(p, records=type(p.records)(change(bytes(p.records))) if p.records else p.records)
            for p in topic.partition_data
        ]
        topics.append(dataclasses.replace(topic, partition_data=tuple(partitions)))
    return dataclasses.replace(body, topic_data=tuple(topics))


def _fake_produce_answer(request: Request, body: Any) -> bytes:
    """A Produce answer saying every partition's batch was written (at an unknown offset)."""
    cls = kio.index.load_response_schema(PRODUCE, request.api_version)
    module = __import__(cls.__module__, fromlist=["PartitionProduceResponse", "TopicProduceResponse"])
    partition_cls, topic_cls = module.PartitionProduceResponse, module.TopicProduceResponse
    topic_fields = {f.name for f in dataclasses.fields(topic_cls)}
    topics = []
    for topic in body.topic_data:
        partitions = tuple(
            _build(partition_cls, index=p.index, error_code=0, base_offset=-1, record_errors=())
            for p in topic.partition_data
        )
        names = {"name": topic.name} if "name" in topic_fields else {"topic_id": topic.topic_id}
        topics.append(_build(topic_cls, partition_responses=partitions, **names))
    return encode_response_frame(request, _build(cls, responses=tuple(topics), throttle_time=0))


def _build(cls: Any, **values: Any) -> Any:
    """An instance of kio class `cls` from the values it has fields for, typed as it wants."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            continue
        kafka_type = fields[name].metadata.get("kafka_type")
        if kafka_type == "timedelta_i32":
            import datetime

            value = datetime.timedelta(milliseconds=value)
        elif kafka_type == "error_code":
            from kio.schema.errors import ErrorCode

            value = ErrorCode(value)
        kwargs[name] = value
    return cls(**kwargs)


MODES = ("read-uncommitted", "fetch-drop", "fetch-repeat", "fetch-shift", "produce-dup", "fake-ack")
# The anomaly each mode must be reported as, and the workload it runs with.
EXPECTED = {
    "read-uncommitted": ("aborted-read", "txn"),
    "fetch-drop": ("poll-skip", "idempotent"),
    "fetch-repeat": ("nonmonotonic-poll", "idempotent"),
    "fetch-shift": ("inconsistent-offsets", "idempotent"),
    "produce-dup": ("duplicate", "idempotent"),
    "fake-ack": ("lost-write", "queue"),
}
