"""A child process for the crash test: appends with durability "fsync" from several writers (the
asyncio API's tasks, or the synchronous API's threads) and prints one line per append that
returned ("ack <writer> <n> <count> <first> <last>"), flushed, until it is killed."""

from __future__ import annotations

import asyncio
import random
import sys
import threading

import tidelog
import tidelog.aio

WRITERS = 8
TOPIC_CONFIG = {"internal.segment.bytes": str(64 << 10)}  # small segments: kills land near rolls
PRINT = threading.Lock()


def values(run: str, index: int, n: int, count: int, rng: random.Random) -> list[bytes]:
    return [f"{run}/{index}/{n + i}".encode() + b"." * rng.randint(0, 300) for i in range(count)]


def ack(index: int, n: int, count: int, first: int, last: int) -> None:
    with PRINT:
        print(f"ack {index} {n} {count} {first} {last}", flush=True)


async def async_writer(log: tidelog.aio.AsyncLog, run: str, index: int, rng: random.Random) -> None:
    n = 0
    while True:
        count = rng.choice((1, 1, 1, 3, 10, 40))
        batch = values(run, index, n, count, rng)
        if count == 1:
            result = await log.append("crash", batch[0], partition=0)
            first = last = result.offset  # type: ignore[union-attr]
        else:
            (many,) = await log.append_many("crash", batch, partition=0)
            first, last = many.base_offset, many.last_offset
        ack(index, n, count, first, last)
        n += count


def sync_writer(log: tidelog.Log, run: str, index: int, rng: random.Random) -> None:
    n = 0
    while True:
        count = rng.choice((1, 1, 3, 10, 40))
        batch = values(run, index, n, count, rng)
        if count == 1:
            result = log.append("crash", batch[0], partition=0)
            first = last = result.offset  # type: ignore[union-attr]
        else:
            (many,) = log.append_many("crash", batch, partition=0)
            first, last = many.base_offset, many.last_offset
        ack(index, n, count, first, last)
        n += count


async def run_async(path: str, run: str, rng: random.Random) -> None:
    log = await tidelog.aio.open(path)
    if "crash" not in {t.name for t in log.topics()}:
        await log.create_topic("crash", config=TOPIC_CONFIG)
    print("ready", flush=True)
    await asyncio.gather(*(async_writer(log, run, i, random.Random(rng.random())) for i in range(WRITERS)))


def run_sync(path: str, run: str, rng: random.Random) -> None:
    log = tidelog.open(path)
    if "crash" not in {t.name for t in log.topics()}:
        log.create_topic("crash", config=TOPIC_CONFIG)
    print("ready", flush=True)
    threads = [
        threading.Thread(target=sync_writer, args=(log, run, i, random.Random(rng.random())), daemon=True)
        for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    path, run, seed, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "async":
        asyncio.run(run_async(path, run, random.Random(seed)))
    else:
        run_sync(path, run, random.Random(seed))
