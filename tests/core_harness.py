"""The broker core in process, over a real data directory: for tests of the core and the
coordinators without TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tidelog.config import BrokerConfig
from tidelog.core.broker import Broker


def config_for(data_dir: Path, **settings: Any) -> BrokerConfig:
    """Broker settings by field name (Kafka's keys with `_`), data in `data_dir`."""
    return BrokerConfig(log_dirs=str(data_dir), **settings)


@contextlib.asynccontextmanager
async def running_broker(data_dir: Path, **settings: Any) -> AsyncIterator[Broker]:
    """A started broker core; closed (cleanly) afterwards."""
    broker = Broker.open(config_for(data_dir, **settings))
    broker.start()
    try:
        yield broker
    finally:
        await broker.close()


async def until_loaded(broker: Broker, timeout_s: float = 30.0) -> None:
    """Waits until every coordinator shard has replayed its log."""
    async with asyncio.timeout(timeout_s):
        while broker.groups.partition_count and not broker.groups.loaded():
            await asyncio.sleep(0.01)
