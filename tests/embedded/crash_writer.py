"""A child process for the crash test: appends with durability "fsync" from several asyncio
writers and prints one line per append that returned ("ack <writer> <n> <first> <last>"), flushed,
until it is killed."""

from __future__ import annotations

import asyncio
import random
import sys

import tidelog.aio

WRITERS = 8


async def writer(log: tidelog.aio.AsyncLog, run: str, index: int, rng: random.Random) -> None:
    n = 0
    while True:
        count = rng.choice((1, 1, 1, 3, 10, 40))
        values = [f"{run}/{index}/{n + i}".encode() + b"." * rng.randint(0, 300) for i in range(count)]
        if count == 1:
            result = await log.append("crash", values[0], partition=0)
            first = last = result.offset  # type: ignore[union-attr]
        else:
            (many,) = await log.append_many("crash", values, partition=0)
            first, last = many.base_offset, many.last_offset
        print(f"ack {index} {n} {count} {first} {last}", flush=True)
        n += count


async def main(path: str, run: str, seed: int) -> None:
    log = await tidelog.aio.open(path)
    if "crash" not in {t.name for t in log.topics()}:
        await log.create_topic("crash", config={"internal.segment.bytes": str(64 << 10)})
    print("ready", flush=True)
    rng = random.Random(seed)
    await asyncio.gather(*(writer(log, run, i, random.Random(rng.random())) for i in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
