"""Producer ids for InitProducerId: durable, always increasing, never reused (KIP-730's blocks).

A reused producer id would let a new producer's sequences 0..n match batches an old producer
left in the cache: its records would be answered as duplicates and silently dropped. So the
start of the next block is written to `producer-ids.json` (temp file, fsync, rename, directory
fsync) before any id of the current block is handed out. After a crash the broker continues
from the persisted value: the unused rest of the old block is skipped, never handed out again.
"""

from __future__ import annotations

import json
from pathlib import Path

from tidelog import limits
from tidelog.storage.durable_file import write_atomically

PRODUCER_IDS_FILE = "producer-ids.json"
FORMAT_VERSION = 1


class ProducerIdAllocator:
    """Hands out producer ids in one data directory. Use from one thread."""

    def __init__(self, data_dir: Path, block_size: int = limits.PRODUCER_ID_BLOCK_SIZE) -> None:
        self.path = data_dir / PRODUCER_IDS_FILE
        self.block_size = block_size
        self._next_block_start = self._read()
        self._next = self._block_end = self._next_block_start

    def _read(self) -> int:
        if not self.path.exists():
            return 0
        try:
            content = json.loads(self.path.read_text())
            if content["version"] != FORMAT_VERSION:
                raise ValueError(f"unknown version {content['version']}")
            start = content["next_block_start"]
            if not isinstance(start, int) or start < 0:
                raise ValueError(f"bad next_block_start {start!r}")
        except (ValueError, KeyError, TypeError) as error:
            # Guessing could hand out an id twice: refuse to start instead.
            raise RuntimeError(f"{self.path} is damaged ({error}); producer ids cannot be allocated safely") from None
        return start

    def allocate(self) -> int:
        """The next producer id. Persists a new block first when the current one is used up."""
        if self._next == self._block_end:
            start = self._next_block_start
            end = start + self.block_size
            write_atomically(self.path, json.dumps({"version": FORMAT_VERSION, "next_block_start": end}))
            self._next, self._block_end, self._next_block_start = start, end, end
        producer_id = self._next
        self._next += 1
        return producer_id
