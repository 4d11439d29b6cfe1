"""A partition of an internal topic as the coordinator runtime sees it (`CoordinatorLog`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from tidelog.core.partition import Partition
from tidelog.storage import AppendOrigin


class CoordinatorPartitionLog:
    """Coordinator writes are acks=all appends with origin COORDINATOR: durable before replay."""

    def __init__(self, partition: Partition) -> None:
        self.partition = partition

    def append(self, batch: bytes) -> tuple[int, Awaitable[None]]:
        appended, durable = self.partition.append_as_leader(batch, wait_durable=True, origin=AppendOrigin.COORDINATOR)
        return appended.first_offset, self._done(durable)

    def append_marker(
        self, producer_id: int, producer_epoch: int, coordinator_epoch: int, committed: bool
    ) -> tuple[int, Awaitable[None]]:
        appended, durable = self.partition.append_marker(producer_id, producer_epoch, coordinator_epoch, not committed)
        return appended.first_offset, self._done(durable)

    @staticmethod
    def _done(durable: Awaitable[None] | None) -> Awaitable[None]:
        if durable is not None:
            return durable
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def read_chunk(self, offset: int, max_bytes: int) -> tuple[bytes, int]:
        log_end = self.partition.log_end_offset
        chunk = self.partition.read(offset, max_bytes, upper_bound=log_end, min_one_batch=True)
        return (b"" if chunk is None else chunk.read()), log_end

    @property
    def log_start_offset(self) -> int:
        return self.partition.log_start_offset
