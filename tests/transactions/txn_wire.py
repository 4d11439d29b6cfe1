"""Raw transaction requests for the wire tests: one method per API, any version, kio classes."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import kio.index
from kio.schema.errors import ErrorCode

from tests.conftest import now_ms
from tests.server.conftest import wait_until
from tests.server.wire_client import WireClient
from tidelog.protocol.record_batch import decode_batch, iter_batches

T = TypeVar("T")
TIMEOUT = datetime.timedelta(seconds=10)
COORDINATOR_WAIT_S = 60
GROUP_KEY, TRANSACTION_KEY = 0, 1
# What a client retries while the coordinator (or its topic) is being set up.
NOT_READY = (
    ErrorCode.coordinator_not_available,
    ErrorCode.coordinator_load_in_progress,
    ErrorCode.not_coordinator,
)
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
LATEST = -1
FETCH_VERSION = 12
LIST_OFFSETS_VERSION = 7


def request(api_key: int, version: int, **fields: Any) -> Any:
    cls = kio.index.load_request_schema(api_key, version)
    return cls(**fields)


def schema(api_key: int, version: int, path: Sequence[str]) -> Any:
    """The nested request class at `path` (field names) of a request schema."""
    import dataclasses
    import typing

    cls = kio.index.load_request_schema(api_key, version)
    for name in path:
        kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
        candidates = [kind, *typing.get_args(kind), *(a for arg in typing.get_args(kind) for a in typing.get_args(arg))]
        cls = next(c for c in candidates if dataclasses.is_dataclass(c))
    return cls


class TxnClient:
    """One connection, speaking the transaction APIs."""

    def __init__(self, port: int) -> None:
        self.wire = WireClient(port)

    def close(self) -> None:
        self.wire.close()

    def find_coordinator(self, key: str, key_type: int = TRANSACTION_KEY) -> None:
        """Waits until the broker coordinates `key` (Kafka creates `__transaction_state` or
        `__consumer_offsets` on the first FindCoordinator and loads it meanwhile)."""
        body = request(10, 3, key=key, key_type=key_type)
        deadline = time.monotonic() + COORDINATOR_WAIT_S
        while self.wire.request(10, 3, body).error_code != ErrorCode.none:
            assert time.monotonic() < deadline, "no transaction coordinator"
            time.sleep(0.1)

    def init(
        self,
        transactional_id: str | None,
        version: int = 4,
        timeout_ms: int = 60_000,
        expected: tuple[int, int] = (-1, -1),
    ) -> Any:
        """InitProducerId, after FindCoordinator, retried while the coordinator is not ready."""
        if transactional_id:
            self.find_coordinator(transactional_id)
        deadline = time.monotonic() + COORDINATOR_WAIT_S
        while True:
            answer = self._init(transactional_id, version, timeout_ms, expected)
            if answer.error_code not in NOT_READY or time.monotonic() > deadline:
                return answer
            time.sleep(0.1)

    def _init(self, transactional_id: str | None, version: int, timeout_ms: int, expected: tuple[int, int]) -> Any:
        fields: dict[str, Any] = {
            "transactional_id": transactional_id,
            "transaction_timeout": datetime.timedelta(milliseconds=timeout_ms),
        }
        if version >= 3:
            fields |= {"producer_id": expected[0], "producer_epoch": expected[1]}
        return self.wire.request(22, version, request(22, version, **fields))

    def add_partitions(
        self, transactional_id: str, pid: int, epoch: int, partitions: Sequence[tuple[str, int]], version: int = 3
    ) -> dict[tuple[str, int], ErrorCode]:
        topic_cls = schema(24, version, ["v3_and_below_topics"])
        by_topic: dict[str, list[int]] = {}
        for topic, index in partitions:
            by_topic.setdefault(topic, []).append(index)
        topics = tuple(topic_cls(name=t, partitions=tuple(p)) for t, p in by_topic.items())
        body = request(
            24,
            version,
            v3_and_below_transactional_id=transactional_id,
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=topics,
        )
        response = self.wire.request(24, version, body)
        return {
            (t.name, int(p.partition_index)): p.partition_error_code
            for t in response.results_by_topic_v3_and_below
            for p in t.results_by_partition
        }

    def add_offsets(self, transactional_id: str, pid: int, epoch: int, group: str, version: int = 3) -> ErrorCode:
        body = request(
            25, version, transactional_id=transactional_id, producer_id=pid, producer_epoch=epoch, group_id=group
        )
        return self.wire.request(25, version, body).error_code  # type: ignore[no-any-return]

    def end(self, transactional_id: str, pid: int, epoch: int, commit: bool, version: int = 3) -> ErrorCode:
        return self.end_answer(transactional_id, pid, epoch, commit, version).error_code  # type: ignore[no-any-return]

    def end_answer(self, transactional_id: str, pid: int, epoch: int, commit: bool, version: int = 5) -> Any:
        """The whole EndTxn answer (v5: with the producer id and epoch to go on with)."""
        body = request(
            26, version, transactional_id=transactional_id, producer_id=pid, producer_epoch=epoch, committed=commit
        )
        return self.wire.request(26, version, body)

    def api_versions(self) -> Any:
        return self.wire.request(18, 3, request(18, 3, client_software_name="txn-tests", client_software_version="1"))

    def produce(self, transactional_id: str | None, topic: str, index: int, records: bytes, version: int = 9) -> Any:
        body = self.produce_request(transactional_id, topic, index, records, version)
        return self.wire.request(0, version, body).responses[0].partition_responses[0]

    @staticmethod
    def produce_request(transactional_id: str | None, topic: str, index: int, records: bytes, version: int = 9) -> Any:
        partition_cls = schema(0, version, ["topic_data", "partition_data"])
        topic_cls = schema(0, version, ["topic_data"])
        data = topic_cls(name=topic, partition_data=(partition_cls(index=index, records=records),))
        return request(0, version, transactional_id=transactional_id, acks=-1, timeout=TIMEOUT, topic_data=(data,))

    def fetch(self, topic: str, index: int, offset: int, isolation: int, max_wait_ms: int = 0) -> Any:
        body = self.fetch_request(topic, index, offset, isolation, max_wait_ms)
        return self.wire.request(1, FETCH_VERSION, body).responses[0].partitions[0]

    @staticmethod
    def fetch_request(
        topic: str,
        index: int,
        offset: int,
        isolation: int,
        max_wait_ms: int = 0,
        max_bytes: int = 1 << 22,
        partition_max_bytes: int = 1 << 20,
    ) -> Any:
        partition_cls = schema(1, FETCH_VERSION, ["topics", "partitions"])
        topic_cls = schema(1, FETCH_VERSION, ["topics"])
        partition = partition_cls(
            partition=index,
            current_leader_epoch=-1,
            fetch_offset=offset,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=partition_max_bytes,
        )
        return request(
            1,
            FETCH_VERSION,
            cluster_id=None,
            replica_id=-1,
            max_wait=datetime.timedelta(milliseconds=max_wait_ms),
            min_bytes=1,
            max_bytes=max_bytes,
            isolation_level=isolation,
            session_id=0,
            session_epoch=-1,
            topics=(topic_cls(topic=topic, partitions=(partition,)),),
            forgotten_topics_data=(),
            rack_id="",
        )

    def latest(self, topic: str, index: int, isolation: int) -> int:
        partition_cls = schema(2, LIST_OFFSETS_VERSION, ["topics", "partitions"])
        topic_cls = schema(2, LIST_OFFSETS_VERSION, ["topics"])
        topics = (topic_cls(name=topic, partitions=(partition_cls(partition_index=index, timestamp=LATEST),)),)
        body = request(2, LIST_OFFSETS_VERSION, replica_id=-1, isolation_level=isolation, topics=topics)
        return int(self.wire.request(2, LIST_OFFSETS_VERSION, body).topics[0].partitions[0].offset)

    def txn_commit(
        self,
        transactional_id: str,
        pid: int,
        epoch: int,
        group: str,
        offsets: dict[tuple[str, int], int],
        version: int = 3,
        generation: int = -1,
        member_id: str = "",
    ) -> dict[tuple[str, int], ErrorCode]:
        self.find_coordinator(group, GROUP_KEY)  # as clients do before committing offsets
        partition_cls = schema(28, version, ["topics", "partitions"])
        topic_cls = schema(28, version, ["topics"])
        by_topic: dict[str, list[Any]] = {}
        for (topic, index), offset in offsets.items():
            fields = {"partition_index": index, "committed_offset": offset, "committed_metadata": ""}
            if version >= 2:
                fields["committed_leader_epoch"] = -1
            by_topic.setdefault(topic, []).append(partition_cls(**fields))
        topics = tuple(topic_cls(name=t, partitions=tuple(p)) for t, p in by_topic.items())
        fields = {
            "transactional_id": transactional_id,
            "group_id": group,
            "producer_id": pid,
            "producer_epoch": epoch,
            "topics": topics,
        }
        if version >= 3:
            fields |= {"generation_id": generation, "member_id": member_id, "group_instance_id": None}
        deadline = time.monotonic() + COORDINATOR_WAIT_S
        while True:  # retried as clients retry a coordinator that is not ready
            response = self.wire.request(28, version, request(28, version, **fields))
            errors = {(t.name, int(p.partition_index)): p.error_code for t in response.topics for p in t.partitions}
            if not set(errors.values()) & set(NOT_READY) or time.monotonic() > deadline:
                return errors
            time.sleep(0.1)

    def offset_fetch(self, group: str, partitions: Sequence[tuple[str, int]], require_stable: bool) -> dict[Any, Any]:
        topic_cls = schema(9, 7, ["topics"])
        by_topic: dict[str, list[int]] = {}
        for topic, index in partitions:
            by_topic.setdefault(topic, []).append(index)
        topics = tuple(topic_cls(name=t, partition_indexes=tuple(p)) for t, p in by_topic.items())
        body = request(9, 7, group_id=group, topics=topics, require_stable=require_stable)
        response = self.wire.request(9, 7, body)
        return {
            (t.name, int(p.partition_index)): (p.error_code, int(p.committed_offset))
            for t in response.topics
            for p in t.partitions
        }


def records_of(fetched: Any) -> list[tuple[int, bytes | None, bool, int]]:
    """(offset, value, is control, producer id) of every record a fetch answer holds."""
    data = fetched.records
    if not data:
        return []
    out = []
    for header, batch in iter_batches(bytes(data)):
        _, records = decode_batch(batch)
        for offset, _, _, value, _ in records:
            out.append((offset, value, header.is_control, header.producer_id))
    return out


def data_batch(pid: int, epoch: int, sequence: int, values: Sequence[bytes], transactional: bool = True) -> bytes:
    from tidelog.protocol.record_batch import build_batch

    base = now_ms()
    records = [(base, None, value, ()) for value in values]
    return build_batch(
        records, producer_id=pid, producer_epoch=epoch, base_sequence=sequence, transactional=transactional
    )


def begin(client: TxnClient, tid: str, timeout_ms: int = 60_000) -> tuple[int, int]:
    answer = client.init(tid, timeout_ms=timeout_ms)
    assert answer.error_code == ErrorCode.none, answer
    return int(answer.producer_id), int(answer.producer_epoch)


def settled(call: Callable[[], T]) -> T:
    """`call`'s answer once it is not CONCURRENT_TRANSACTIONS: markers of the transaction just
    ended are still being written, and clients retry (as these do)."""
    answers: list[T] = []

    def done() -> bool:
        answers.append(call())
        answer = answers[-1]
        codes = answer.values() if isinstance(answer, dict) else [answer]
        return ErrorCode.concurrent_transactions not in codes

    wait_until(done)
    return answers[-1]


def stable_after(client: TxnClient, topic: str, index: int, offset: int) -> None:
    wait_until(lambda: client.latest(topic, index, READ_COMMITTED) >= offset)
