#!/usr/bin/env python3
"""Durable acks at page-cache latency? The per-write sync alternatives, measured (issue 17).

A writer puts records of --sizes bytes (default 1 KiB, 16 KiB and 64 KiB, the last one a
group-commit-sized write) into one file and makes each one durable before the next. Each write's
sync latency is recorded in µs: the time of the sync call(s), or of the write itself for an
O_DSYNC descriptor, or of the whole submit-and-wait for io_uring. Cases (the issue's numbering):

 1. ``append``: plain append that grows the file, then fdatasync (today's engine).
 2. ``falloc-16M`` / ``falloc-64M``: ``os.posix_fallocate`` (fallocate mode 0: unwritten extents,
    i_size moves) in steps of 16 / 64 MiB ahead of the writer, then pwrite inside + fdatasync.
 3. ``keepsize-64M``: fallocate(2) with FALLOC_FL_KEEP_SIZE (ctypes) ahead, then append + fdatasync.
 4. ``zero-16M`` / ``zero-64M``: zero-filled ahead (pwrite zeros in 1 MiB calls, one fdatasync per
    step), then pwrite inside + fdatasync; the zero-fill runs inline, in the writer, when the
    writer reaches the end of the prepared region. The same in a background thread that keeps one
    16 MiB step of headroom (the realistic design): ``zero-16M-bg`` (same file: pwrite the whole
    step, then one fdatasync), ``zero-16M-bg-paced`` (same file, each 1 MiB of zeros pushed out at
    once with sync_file_range(WRITE|WAIT_AFTER), so the writer's fdatasync, which writes back every
    dirty page of the file, finds few zero pages), ``zero-16M-bg-next`` (paced, into the *next*
    segment file, which the writer rolls to: the preparation never touches the inode the writer
    syncs) and ``zero-16M-bg-next-128K`` (the same in 128 KiB chunks: less queued ahead of each
    writer sync, a longer fill).
 5. ``dsync-grow`` / ``dsync-zero``: an O_DSYNC descriptor, appending (growing) or pwriting into a
    zero-filled region; the write call is what is timed.
 6. ``sfr-zero`` / ``sfr-grow``: sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) on the written range
    (ctypes), then fdatasync; both calls are timed.
 7. ``uring-grow`` / ``uring-zero``: io_uring with a linked write + fsync(IORING_FSYNC_DATASYNC) in
    one submit-and-wait, through the PyPI package ``liburing`` (Python + Zig bindings of the C
    liburing, released since 2020; ``pip install liburing``, it is not a project dependency). When
    it is not importable, or the kernel disables io_uring, the cases are skipped with the reason.

Per case and size: p50, p90, p99, p99.9 and max of the sync latency, writes/s over the whole loop
(preparation done inline included), the worst ack (write + inline preparation + sync, or the wait
for a background step that is late), the preparation's cost (time per step, zeros written per
payload byte: zero-fill doubles the writes; the prepared space still unused at the end), the
device's written bytes per payload byte and flush requests per write (from /sys/dev/block/M:m/stat:
the whole disk, so other activity on it counts too). For the background cases, the writer's
latency is also split by whether a sync overlapped a zero-fill step, which is what answers "does
it hurt"; the report ends with a reading computed from the figures.

The process runs under SCHED_FIFO (priority 1) when it may (--no-rt to keep the normal scheduler):
on a 2-core machine shared with other work, a writer woken by its I/O completion otherwise waits
for a CPU often enough (up to a 4 ms tick) to own the p99. Each write also records how long its
loop iteration waited runnable for a CPU (the thread's /proc schedstat), and the table shows the
share of writes that waited 0.5 ms or more, so a tail made by the scheduler is not taken for one
made by the disk.

Each case and size runs --repeats times (default 3), each repeat in a rotated order; the table
gives the median of the repeats and, for p99, their min–max. Files go in --dir (default: a new
directory under the system temp dir, deleted at the end); each run's file is deleted and the disk
settled (os.sync, a short pause) before the next. Progress on stderr, one line per run; the
markdown table on stdout and to --out, with a CCDF chart beside it when matplotlib is installed.

Why a Python loop is fine here: the measured thing is a syscall that waits for the device, about
100 µs to several ms. The Python cost is measured at start and printed with the results: on the
project's 2-core machine an empty timing window (two ``time.perf_counter_ns``) reads 40–70 ns and a
timed trivial syscall (lseek) 0.27–0.42 µs all in, so Python adds under 0.4 µs (under 0.4 % of the
fastest p50, about 100 µs) to each timed call. A whole loop iteration outside the timed window
(bookkeeping plus a 1 KiB ``os.pwrite`` into the page cache) takes 1.9–2.8 µs, which lowers
writes/s by about 2 % and does not touch the latencies. Engine code in Rust would wait on the same
kernel and device. The background zero-fill thread holds the GIL only between syscalls (each
pwrite of zeros releases it), so it delays the writer's return from fdatasync by microseconds at most.

    .venv/bin/python bench/fsync_alternatives.py [--quick] [--dir DIR] [--out bench/results/fsync_alternatives.md]
"""

from __future__ import annotations

import argparse
import array
import ctypes
import gc
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

KiB, MiB = 1 << 10, 1 << 20
STARTED = time.monotonic()
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fsync_alternatives.md"

FALLOC_FL_KEEP_SIZE = 0x01
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
SFR_ALL = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
SFR_PUSH = SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
ZERO_CHUNK = 1 * MiB
ZEROS = bytes(ZERO_CHUNK)
CPU_DELAY_US = 500  # a write whose loop iteration waited this long for a CPU counts as CPU-delayed
SCHEDSTAT = Path("/proc/thread-self/schedstat")

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int
_sync_file_range = _libc.sync_file_range
_sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_sync_file_range.restype = ctypes.c_int


def log(message: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - STARTED:6.0f}s] {message}\n")
    sys.stderr.flush()


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fallocate: {os.strerror(err)}")


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
    if _sync_file_range(fd, offset, length, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sync_file_range: {os.strerror(err)}")


# --------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    number: int  # the case number
    io: str  # "fdatasync" | "dsync" (O_DSYNC fd, the write is timed) | "sfr" | "uring"
    grow: bool  # True: each write extends the file's data; False: pwrite inside a prepared region
    prep: str = ""  # "" | "falloc" (mode 0) | "keepsize" | "zero"
    step: int = 0
    background: str = ""  # "" | "same" | "same-paced" | "next" (the next segment file, paced)
    chunk: int = ZERO_CHUNK  # zero-fill pwrite size; paced: each chunk pushed out with sync_file_range


M16, M64 = 16 * MiB, 64 * MiB
CASES = [
    Case("append", 1, "fdatasync", True),
    Case("falloc-16M", 2, "fdatasync", False, "falloc", M16),
    Case("falloc-64M", 2, "fdatasync", False, "falloc", M64),
    Case("keepsize-64M", 3, "fdatasync", True, "keepsize", M64),
    Case("zero-16M", 4, "fdatasync", False, "zero", M16),
    Case("zero-64M", 4, "fdatasync", False, "zero", M64),
    Case("zero-16M-bg", 4, "fdatasync", False, "zero", M16, "same"),
    Case("zero-16M-bg-paced", 4, "fdatasync", False, "zero", M16, "same-paced"),
    Case("zero-16M-bg-next", 4, "fdatasync", False, "zero", M16, "next"),
    Case("zero-16M-bg-next-128K", 4, "fdatasync", False, "zero", M16, "next", 128 * KiB),
    Case("dsync-grow", 5, "dsync", True),
    Case("dsync-zero", 5, "dsync", False, "zero", M64),
    Case("sfr-zero", 6, "sfr", False, "zero", M64),
    Case("sfr-grow", 6, "sfr", True),
    Case("uring-grow", 7, "uring", True),
    Case("uring-zero", 7, "uring", False, "zero", M64),
]
CASE_BY_NAME = {c.name: c for c in CASES}


def describe(case: Case) -> str:
    """One line saying what a case does, from its fields."""
    write = "append (growing)" if case.grow else "pwrite inside the prepared region"
    sync = {
        "fdatasync": "fdatasync",
        "dsync": "O_DSYNC descriptor (the write is timed)",
        "sfr": "sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) on the range + fdatasync",
        "uring": "io_uring: linked write + fsync(DATASYNC), one submit-and-wait (timed together)",
    }[case.io]
    if not case.prep:
        return f"{write}; {sync}"
    step = f"{case.step // MiB} MiB"
    prep = {
        "falloc": f"posix_fallocate (mode 0, unwritten extents) {step} ahead",
        "keepsize": f"fallocate(FALLOC_FL_KEEP_SIZE) {step} ahead",
        "zero": f"zero-filled {step} ahead (pwrite zeros, one fdatasync per step)",
    }[case.prep]
    where = {
        "": "inline in the writer",
        "same": "by a background thread, same file, whole step then fdatasync",
        "same-paced": f"by a background thread, same file, each {case.chunk // KiB} KiB pushed with sync_file_range",
        "next": f"by a background thread into the next segment file, each {case.chunk // KiB} KiB pushed with "
        "sync_file_range; the writer rolls to it",
    }[case.background]
    return f"{prep}, {where}; {write}; {sync}"


# --------------------------------------------------------------------------------------- io_uring


class Uring:
    """One linked write + fdatasync per submit, through the `liburing` package."""

    def __init__(self, lib) -> None:
        self.L = lib
        self.ring = lib.Ring()
        lib.io_uring_queue_init(8, self.ring)
        self.cqe = lib.Cqe()

    def write_and_sync(self, fd: int, buf: bytes, offset: int) -> None:
        L, ring, cqe = self.L, self.ring, self.cqe
        sqe = L.io_uring_get_sqe(ring)
        L.io_uring_prep_write(sqe, fd, buf, offset)
        sqe.flags |= L.IOSQE_IO_LINK
        sqe.user_data = 1
        sqe = L.io_uring_get_sqe(ring)
        L.io_uring_prep_fsync(sqe, fd, L.IORING_FSYNC_DATASYNC)
        sqe.user_data = 2
        L.io_uring_submit_and_wait(ring, 2)
        L.io_uring_wait_cqe_nr(ring, cqe, 2)
        results = {cqe[0].user_data: cqe[0].res, cqe[1].user_data: cqe[1].res}
        L.io_uring_cq_advance(ring, 2)
        if results.get(1) != len(buf) or results.get(2) != 0:
            raise OSError(f"io_uring write/fsync failed: {results}")

    def close(self) -> None:
        self.L.io_uring_queue_exit(self.ring)


def load_uring() -> tuple[object | None, str]:
    """The liburing module, or None and why not."""
    try:
        disabled = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    except OSError:
        disabled = "0"
    if disabled not in ("", "0"):
        return None, f"the kernel disables io_uring (kernel.io_uring_disabled={disabled})"
    try:
        import liburing  # type: ignore[import-not-found]
    except ImportError:
        return None, "the PyPI package `liburing` is not installed (pip install liburing)"
    try:
        probe = Uring(liburing)
        probe.close()
    except Exception as exc:  # the bindings load but the ring does not come up
        return None, f"io_uring_queue_init failed: {exc!r}"
    version = getattr(liburing, "__version__", None) or getattr(getattr(liburing, "version", None), "__version__", "?")
    return liburing, f"liburing {version} from PyPI (not a project dependency: `pip install liburing`)"


# --------------------------------------------------------------------------------------- preparation


@dataclass
class PrepStats:
    steps_ns: list[int] = field(default_factory=list)
    bytes_written: int = 0  # zeros written by the preparation (not payload)


def prepare_step(case: Case, fd: int, start: int, stats: PrepStats, sync: bool = True) -> None:
    """Make [start, start + case.step) of fd ready for the writer, and durable."""
    t0 = time.perf_counter_ns()
    if case.prep == "falloc":
        os.posix_fallocate(fd, start, case.step)
    elif case.prep == "keepsize":
        fallocate(fd, FALLOC_FL_KEEP_SIZE, start, case.step)
    elif case.prep == "zero":
        paced = case.background in ("same-paced", "next")
        zeros = memoryview(ZEROS)[: case.chunk]
        off, end = start, start + case.step
        while off < end:
            n = os.pwrite(fd, zeros if end - off >= case.chunk else zeros[: end - off], off)
            if paced:
                sync_file_range(fd, off, n, SFR_PUSH)
            off += n
        stats.bytes_written += case.step
    else:
        raise ValueError(case.prep)
    if sync:
        os.fdatasync(fd)
    stats.steps_ns.append(time.perf_counter_ns() - t0)


class Background:
    """A thread that keeps the zero-filled region one step ahead of the writer.

    `same`: extends the writer's file; `next`: prepares the next segment file. `ready_end` only
    moves once a step is zeroed and synced. `generation` is odd while a step is being filled.
    """

    def __init__(self, case: Case, fd: int, workdir: Path, stats: PrepStats) -> None:
        self.case, self.fd, self.workdir, self.stats = case, fd, workdir, stats
        self.cond = threading.Condition()
        self.ready_end = case.step  # the first step was prepared before the writer started
        self.wanted_end = case.step
        self.generation = 0
        self.stop = False
        self.error: BaseException | None = None
        self.segments: dict[int, tuple[int, Path]] = {}  # start offset -> (fd, path), for `next`
        self.thread = threading.Thread(target=self._run, name="zero-fill", daemon=True)
        self.thread.start()

    def want(self, end: int) -> None:
        """The writer is at `end`: keep a step of headroom past it."""
        with self.cond:
            self.wanted_end = max(self.wanted_end, end + self.case.step)
            self.cond.notify_all()

    def wait_ready(self, end: int) -> None:
        with self.cond:
            while self.ready_end < end and self.error is None:
                self.cond.wait()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.stop and self.wanted_end <= self.ready_end:
                        self.cond.wait()
                    if self.stop:
                        return
                    start = self.ready_end
                self.generation += 1
                if self.case.background == "next":
                    path = self.workdir / f"segment-{start:016d}.bin"
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                    prepare_step(self.case, fd, 0, self.stats)
                    fsync_dir(self.workdir)
                    self.segments[start] = (fd, path)
                else:
                    prepare_step(self.case, self.fd, start, self.stats)
                self.generation += 1
                with self.cond:
                    self.ready_end = start + self.case.step
                    self.cond.notify_all()
        except BaseException as exc:  # surfaced in the writer
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        self.thread.join()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- one run


@dataclass
class Run:
    case: str
    size: int
    sync_us: list[float]
    ack_us: list[float]
    overlapped: list[bool]  # per recorded write: did its sync overlap a background step
    seconds: float
    writes: int
    stalls: int  # writes that waited for a late background step
    prep: PrepStats
    payload: int
    allocated: int
    dev_write_kib: float
    dev_flushes: int
    cpu_delayed: int  # recorded writes whose iteration waited >= CPU_DELAY_US on a run queue

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.seconds


def block_stat_path(directory: Path) -> Path | None:
    dev = os.stat(directory).st_dev
    path = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    return path if path.exists() else None


def read_block_stat(path: Path | None) -> tuple[int, int]:
    """(sectors written, flush requests) of the device, or zeros."""
    if path is None:
        return 0, 0
    fields = path.read_text().split()
    return int(fields[6]), (int(fields[15]) if len(fields) > 15 else 0)


def run_case(case: Case, size: int, writes: int, warmup: int, workdir: Path, uring_lib, stat_path: Path | None) -> Run:
    path = workdir / f"{case.name}.bin"
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | (os.O_DSYNC if case.io == "dsync" else 0)
    fd = os.open(path, flags, 0o644)
    prep_fd = os.open(path, os.O_RDWR) if case.io == "dsync" else fd  # zero-fill without O_DSYNC
    fsync_dir(workdir)
    buf = os.urandom(size)
    stats = PrepStats()
    uring = Uring(uring_lib) if case.io == "uring" else None
    total = warmup + writes
    sync_ns = array.array("q", bytes(8 * writes))
    ack_ns = array.array("q", bytes(8 * writes))
    overlapped = bytearray(writes)
    stalls = cpu_delayed = 0
    delay_limit = CPU_DELAY_US * 1000
    # the writer thread's run-queue wait (ns), from the second field of its schedstat
    sched_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY) if SCHEDSTAT.exists() else -1
    run_wait = (lambda: int(os.pread(sched_fd, 128, 0).split()[1])) if sched_fd >= 0 else (lambda: 0)
    waited = run_wait()
    sectors0, flushes0 = read_block_stat(stat_path)

    background: Background | None = None
    segment_base, segment_fd = 0, fd  # `next`: the writer's current segment file
    ready_end = next_kick = 0
    if case.prep:
        prepare_step(case, prep_fd, 0, stats)  # the first step, as at segment roll
        ready_end = case.step
        if case.background:
            background = Background(case, prep_fd, workdir, stats)
            next_kick = warmup * size  # the first background step starts with the recorded writes
    clock = time.perf_counter_ns
    fdatasync, write, pwrite = os.fdatasync, os.write, os.pwrite
    grow, io, step, rolls = case.grow, case.io, case.step, case.background == "next"
    gen = (lambda: background.generation) if background else (lambda: 0)
    gc.disable()
    try:
        t_loop = clock()
        for i in range(total):
            off = i * size
            end = off + size
            ta = clock()
            if background is not None:
                if end > next_kick:  # keep one step of headroom past the writer
                    background.want(end)
                    next_kick += step
                if end > ready_end:
                    ready_end = background.ready_end
                    if end > ready_end:
                        stalls += i >= warmup
                        background.wait_ready(end)
                        ready_end = background.ready_end
                if rolls and end > segment_base + step:  # roll to the segment prepared for `off`
                    segment_base = off
                    segment_fd = background.segments[off][0]
            elif case.prep and end > ready_end:
                prepare_step(case, prep_fd, ready_end, stats)
                ready_end += step
            file_off = off - segment_base
            g0 = gen()
            if io == "fdatasync":
                if grow:
                    write(segment_fd, buf)
                else:
                    pwrite(segment_fd, buf, file_off)
                t0 = clock()
                fdatasync(segment_fd)
            elif io == "dsync":
                t0 = clock()
                if grow:
                    write(fd, buf)
                else:
                    pwrite(fd, buf, file_off)
            elif io == "sfr":
                if grow:
                    write(fd, buf)
                else:
                    pwrite(fd, buf, file_off)
                t0 = clock()
                sync_file_range(fd, file_off, size, SFR_ALL)
                fdatasync(fd)
            else:  # uring
                t0 = clock()
                uring.write_and_sync(fd, buf, file_off)
            t1 = clock()
            if i >= warmup:
                k = i - warmup
                sync_ns[k] = t1 - t0
                ack_ns[k] = t1 - ta
                g1 = gen()
                overlapped[k] = (g0 & 1) or g0 != g1
                now_waited = run_wait()
                cpu_delayed += now_waited - waited >= delay_limit
                waited = now_waited
            elif i + 1 == warmup:
                t_loop = clock()
        t_end = clock()
    finally:
        gc.enable()
        if background is not None:
            background.close()
        if uring is not None:
            uring.close()
    sectors1, flushes1 = read_block_stat(stat_path)
    if sched_fd >= 0:
        os.close(sched_fd)
    paths = [path] + ([p for _, p in background.segments.values()] if background is not None else [])
    allocated = sum(os.stat(p).st_blocks * 512 for p in paths)
    for handle in {fd, prep_fd} | ({f for f, _ in background.segments.values()} if background is not None else set()):
        os.close(handle)
    for p in paths:
        p.unlink()
    fsync_dir(workdir)
    return Run(
        case=case.name,
        size=size,
        sync_us=[v / 1e3 for v in sync_ns],
        ack_us=[v / 1e3 for v in ack_ns],
        overlapped=[bool(b) for b in overlapped],
        seconds=(t_end - t_loop) / 1e9,
        writes=writes,
        stalls=stalls,
        prep=stats,
        payload=total * size,
        allocated=allocated,
        dev_write_kib=(sectors1 - sectors0) * 512 / KiB / total,
        dev_flushes=flushes1 - flushes0,
        cpu_delayed=cpu_delayed,
    )


# --------------------------------------------------------------------------------------- statistics


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def summarize(run: Run) -> dict[str, float]:
    s = sorted(run.sync_us)
    over = sorted(v for v, o in zip(run.sync_us, run.overlapped, strict=True) if o)
    clear = sorted(v for v, o in zip(run.sync_us, run.overlapped, strict=True) if not o)
    steps = run.prep.steps_ns
    zeroed = run.prep.bytes_written
    total_writes = run.payload / run.size
    return {
        "p50": pct(s, 0.50),
        "p90": pct(s, 0.90),
        "p99": pct(s, 0.99),
        "p999": pct(s, 0.999),
        "max": s[-1],
        "wps": run.writes_per_s,
        "ack_max_ms": max(run.ack_us) / 1e3,
        "steps": len(steps),
        "step_ms": statistics.median(steps) / 1e6 if steps else float("nan"),
        "zeroed": zeroed / run.payload,
        "tail_mib": max(0, run.allocated - run.payload) / MiB,
        "dev_amp": max(0.0, run.dev_write_kib * KiB * total_writes - zeroed) / run.payload,
        "flushes": run.dev_flushes / total_writes,
        "overlap_frac": len(over) / len(s),
        "p99_clear": pct(clear, 0.99),
        "stalls": run.stalls,
        "cpu_delayed": 100 * run.cpu_delayed / len(s),
    }


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def fmt_us(v: float) -> str:
    if math.isnan(v):
        return "–"
    return f"{v:,.0f}" if v < 10_000 else f"{v / 1e3:,.1f} ms"


def size_label(size: int) -> str:
    return f"{size // KiB} KiB"


# --------------------------------------------------------------------------------------- overhead


def python_overhead(workdir: Path) -> dict[str, float]:
    """What the Python loop adds around a syscall, in ns (medians of 200k samples)."""
    clock = time.perf_counter_ns
    path = workdir / "overhead.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        empty, lseek = [], []
        for _ in range(200_000):
            t0 = clock()
            t1 = clock()
            empty.append(t1 - t0)
        for _ in range(200_000):
            t0 = clock()
            os.lseek(fd, 0, os.SEEK_CUR)
            t1 = clock()
            lseek.append(t1 - t0)
        buf, n = bytes(KiB), 20_000
        samples = array.array("q", bytes(8 * n))
        t_start = clock()
        for i in range(n):  # the loop's bookkeeping and a 1 KiB pwrite into the page cache, no sync
            ta = clock()
            os.pwrite(fd, buf, i * KiB)
            t0 = clock()
            t1 = clock()
            samples[i] = t1 - ta
        iteration = (clock() - t_start) / n
    finally:
        os.close(fd)
        path.unlink()
    return {"timer": statistics.median(empty), "lseek": statistics.median(lseek), "iteration": iteration}


# --------------------------------------------------------------------------------------- machine


def machine_facts(workdir: Path, uring_note: str) -> list[str]:
    facts = [f"Linux {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
    try:
        mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        facts[0] += f", {int(mem.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    dev = os.stat(workdir).st_dev
    best = None
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            source, mnt, fstype, options = line.split()[:4]
            try:
                if os.stat(mnt).st_dev == dev and (best is None or len(mnt) > len(best[1])):
                    best = (source, mnt, fstype, options)
            except OSError:
                continue
    except OSError:
        pass
    if best:
        source, _mnt, fstype, options = best
        name = os.path.basename(source)
        line = f"--dir's filesystem: {fstype} on device {name}, mount options `{options}`"
        journal = Path(f"/sys/fs/ext4/{name}/journal_task")
        if fstype == "ext4" and journal.exists():
            task = journal.read_text().strip()
            line += "; journal: " + ("none (no jbd2 task)" if task in ("", "<none>") else task)
        facts.append(line)
        queue = Path(f"/sys/block/{name}/queue")
        if queue.exists():
            bits = []
            for attr, what in (
                ("write_cache", "write cache"),
                ("fua", "FUA"),
                ("scheduler", "scheduler"),
                ("rotational", "rotational"),
            ):
                try:
                    bits.append(f"{what} `{(queue / attr).read_text().strip()}`")
                except OSError:
                    pass
            facts.append(f"device {name}: " + ", ".join(bits))
    facts.append(f"io_uring: {uring_note}")
    return facts


# --------------------------------------------------------------------------------------- report


def aggregate(runs: list[Run]) -> dict[str, float]:
    sums = [summarize(r) for r in runs]
    agg = {k: med([s[k] for s in sums]) for k in sums[0]}
    agg["p99_lo"] = min(s["p99"] for s in sums)
    agg["p99_hi"] = max(s["p99"] for s in sums)
    agg["n"] = len(sums)
    pooled_over = sorted(v for r in runs for v, o in zip(r.sync_us, r.overlapped, strict=True) if o)
    pooled_clear = sorted(v for r in runs for v, o in zip(r.sync_us, r.overlapped, strict=True) if not o)
    agg["over_n"] = len(pooled_over)
    agg["over_p50"], agg["over_p99"] = pct(pooled_over, 0.5), pct(pooled_over, 0.99)
    agg["clear_p50"], agg["clear_p99"] = pct(pooled_clear, 0.5), pct(pooled_clear, 0.99)
    agg["stalls_total"] = sum(s["stalls"] for s in sums)
    return agg


def latency_table(results: dict[tuple[str, int], list[Run]], cases: list[Case], size: int) -> list[str]:
    lines = [
        f"**{size_label(size)} writes** (sync latency in µs; median of repeats, p99 min–max in brackets)",
        "",
        "| # | case | p50 | p90 | p99 [min–max] | p99.9 | max | writes/s | worst ack | CPU-delayed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        runs = results.get((case.name, size))
        if not runs:
            continue
        a = aggregate(runs)
        lines.append(
            f"| {case.number} | `{case.name}` | {fmt_us(a['p50'])} | {fmt_us(a['p90'])} | **{fmt_us(a['p99'])}** "
            f"[{fmt_us(a['p99_lo'])}–{fmt_us(a['p99_hi'])}] | {fmt_us(a['p999'])} | {fmt_us(a['max'])} | "
            f"{a['wps']:,.0f} | {a['ack_max_ms']:,.1f} ms | {a['cpu_delayed']:.1f} % |"
        )
    return lines


def cost_table(results: dict[tuple[str, int], list[Run]], cases: list[Case], sizes: list[int]) -> list[str]:
    lines = [
        "| case | size | prep steps | ms per step | zeros written / payload | prepared, unused at end | "
        "device bytes per payload byte, zero-fill excluded | device flushes per write |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        for size in sizes:
            runs = results.get((case.name, size))
            if not runs:
                continue
            a = aggregate(runs)
            step = f"{a['step_ms']:,.1f}" if a["steps"] else "–"
            if case.prep == "zero" and a["steps"]:
                step += f" ({case.step / MiB / (a['step_ms'] / 1e3):,.0f} MiB/s)"
            zeroed = f"{a['zeroed']:.2f}" if case.prep == "zero" else "–"
            tail = f"{a['tail_mib']:,.0f} MiB" if case.prep else "–"
            lines.append(
                f"| `{case.name}` | {size_label(size)} | {a['steps']:.0f} | {step} | {zeroed} | {tail} | "
                f"{a['dev_amp']:.2f} | {a['flushes']:.2f} |"
            )
    return lines


def background_table(results: dict[tuple[str, int], list[Run]], cases: list[Case], sizes: list[int]) -> list[str]:
    lines = [
        "| case | size | syncs overlapping a fill | p50 / p99 overlapping | p50 / p99 not overlapping | "
        "writer stalls (late step) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        if not case.background:
            continue
        for size in sizes:
            runs = results.get((case.name, size))
            if not runs:
                continue
            a = aggregate(runs)
            total = sum(len(r.sync_us) for r in runs)
            lines.append(
                f"| `{case.name}` | {size_label(size)} | {a['over_n']:,} of {total:,} "
                f"({100 * a['over_n'] / total:.1f} %)"
                f" | {fmt_us(a['over_p50'])} / {fmt_us(a['over_p99'])} | {fmt_us(a['clear_p50'])} / "
                f"{fmt_us(a['clear_p99'])} | {a['stalls_total']:.0f} |"
            )
    return lines


def reading(results: dict[tuple[str, int], list[Run]], cases: list[Case], sizes: list[int]) -> list[str]:
    """A data-driven summary: the fastest case at p99 per size, what it costs, and the background verdict."""
    out = []
    by_name = {c.name: c for c in cases}
    for size in sizes:
        aggs = {c.name: aggregate(results[(c.name, size)]) for c in cases if results.get((c.name, size))}
        if not aggs:
            continue
        ranked = sorted(aggs, key=lambda n: aggs[n]["p99"])
        best = ranked[0]
        b = aggs[best]
        text = (
            f"- **{size_label(size)}**: lowest p99 `{best}` {fmt_t(b['p99'])} "
            f"(p50 {fmt_t(b['p50'])}, p99.9 {fmt_t(b['p999'])}, {b['wps']:,.0f} writes/s)"
        )
        if "append" in aggs and best != "append":
            base = aggs["append"]
            text += (
                f"; today's `append`: p99 {fmt_t(base['p99'])}, p50 {fmt_t(base['p50'])}, "
                f"{base['wps']:,.0f} writes/s ({base['p99'] / b['p99']:.1f}× the p99)"
            )
        text += "; then " + ", ".join(f"`{n}` {fmt_t(aggs[n]['p99'])}" for n in ranked[1:4]) + "."
        groups = {
            "growing (append, dsync-grow, sfr-grow, uring-grow, keepsize)": [n for n in aggs if by_name[n].grow],
            "fallocate mode 0": [n for n in aggs if by_name[n].prep == "falloc"],
            "zero-filled region": [n for n in aggs if by_name[n].prep == "zero"],
        }
        parts = []
        for label, names in groups.items():
            if names:
                g = min(names, key=lambda n: aggs[n]["p99"])
                parts.append(f"{label}: best p99 {fmt_t(aggs[g]['p99'])} (`{g}`)")
        text += " By kind: " + "; ".join(parts) + "."
        case = by_name[best]
        if case.prep == "zero":
            text += (
                f" Its cost: every payload byte is written twice (the zero-fill, {fmt_ms(b['step_ms'])} per "
                f"{case.step // MiB} MiB step), and up to a step of allocated, unused space per open segment."
            )
        elif case.prep:
            text += f" Its cost: metadata only ({fmt_ms(b['step_ms'])} per step) and the unused allocated tail."
        out.append(text)
    inline = "zero-16M"
    for case in cases:
        if not case.background:
            continue
        for size in sizes:
            runs = results.get((case.name, size))
            if not runs:
                continue
            a = aggregate(runs)
            text = (
                f"- `{case.name}` at {size_label(size)}: syncs overlapping a fill p99 {fmt_t(a['over_p99'])} "
                f"(p50 {fmt_t(a['over_p50'])}) against {fmt_t(a['clear_p99'])} (p50 {fmt_t(a['clear_p50'])}) "
                f"otherwise; the whole run's p99 {fmt_t(a['p99'])}"
            )
            if results.get((inline, size)):
                text += f" (inline `{inline}`: {fmt_t(aggregate(results[(inline, size)])['p99'])})"
            out.append(text + f"; {a['stalls_total']:.0f} writer stalls.")
    return out


def fmt_t(us: float) -> str:
    """A latency in prose, with its unit."""
    if math.isnan(us):
        return "–"
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1e3:,.1f} ms"


def fmt_ms(ms: float) -> str:
    return "–" if math.isnan(ms) else f"{ms:,.1f} ms"


def chart(results: dict[tuple[str, int], list[Run]], cases: list[Case], sizes: list[int], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 5.5), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    tails = [10 ** (-k / 20) for k in range(0, 81)]  # 1 down to 1e-4
    for ax, size in zip(axes[0], sizes, strict=True):
        for idx, case in enumerate(cases):
            runs = results.get((case.name, size))
            if not runs:
                continue
            pooled = sorted(v for r in runs for v in r.sync_us)
            xs = [pct(pooled, 1 - t) for t in tails if t * len(pooled) >= 1]
            ax.plot(
                xs,
                tails[: len(xs)],
                label=case.name,
                color=colours[idx % len(colours)],
                linestyle="-" if case.number % 2 else "--",
                linewidth=1.3,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sync latency (µs)")
        ax.set_ylabel("fraction of writes slower (1 − CDF)")
        ax.set_title(f"{size_label(size)} writes")
        ax.grid(True, which="both", alpha=0.3)
        for q in (0.01, 0.001):
            ax.axhline(q, color="grey", linewidth=0.6)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("fdatasync alternatives: latency tails, all repeats pooled (p99 at 10⁻², p99.9 at 10⁻³)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    try:  # a 64-colour palette: the same picture in a third of the bytes
        from PIL import Image

        with Image.open(path) as image:
            small = image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        small.save(path, optimize=True)
    except ImportError:
        pass
    return True


# --------------------------------------------------------------------------------------- main


def shown_command(argv: list[str]) -> str:
    """The command line without machine paths."""
    out, skip = ["bench/fsync_alternatives.py"], False
    for arg in argv:
        if skip:
            out.append("DIR")
            skip = False
        elif arg == "--dir":
            out.append(arg)
            skip = True
        elif arg.startswith("--dir="):
            out.append("--dir=DIR")
        elif arg.startswith("/") or arg.startswith("--out="):
            out.append(os.path.basename(arg) if not arg.startswith("--out=") else "--out=" + os.path.basename(arg))
        else:
            out.append(arg)
    return " ".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a minute: 1 repeat, fewer writes")
    ap.add_argument("--dir", type=Path, help="where the test files go (default: a new dir under the system temp)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report (a .png chart beside it)")
    ap.add_argument("--repeats", type=int, help="repeats of every case and size, in rotated order (default 3)")
    ap.add_argument("--sizes", default="1,16,64", help="write sizes in KiB (default 1,16,64)")
    ap.add_argument("--writes", help="recorded writes per size, same order (default 20000,6000,3000)")
    ap.add_argument("--cases", help="comma-separated case names (default: all): " + ", ".join(CASE_BY_NAME))
    ap.add_argument("--settle", type=float, default=0.3, help="pause after each run, after os.sync (s)")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument(
        "--no-rt",
        action="store_true",
        help="keep the normal scheduler (default: SCHED_FIFO 1 when permitted, so that other\n"
        "processes on the CPUs do not delay the writer's wake-up after each sync)",
    )
    args = ap.parse_args(argv)

    sizes = [int(s) * KiB for s in args.sizes.split(",")]
    if args.writes:
        counts = [int(w) for w in args.writes.split(",")]
    else:
        default = {1 * KiB: 20_000, 16 * KiB: 6_000, 64 * KiB: 3_000}
        counts = [default.get(s, max(1_000, 20_000 * KiB // s)) for s in sizes]
        if args.quick:
            counts = [max(300, c // 8) for c in counts]
    if len(counts) != len(sizes):
        ap.error("--writes needs one count per size")
    repeats = args.repeats or (1 if args.quick else 3)
    wanted = args.cases.split(",") if args.cases else list(CASE_BY_NAME)
    unknown = [n for n in wanted if n not in CASE_BY_NAME]
    if unknown:
        ap.error(f"unknown cases {unknown}")
    scheduling = "normal (--no-rt)"
    if not args.no_rt:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # threads started later inherit it
            scheduling = "SCHED_FIFO priority 1 (writer and background thread)"
        except (OSError, AttributeError) as exc:
            scheduling = f"normal (SCHED_FIFO refused: {exc})"
    log(f"scheduling: {scheduling}")
    uring_lib, uring_note = load_uring()
    cases = [CASE_BY_NAME[n] for n in wanted]
    skipped = [c for c in cases if c.io == "uring" and uring_lib is None]
    cases = [c for c in cases if c not in skipped]
    for c in skipped:
        log(f"skip {c.name}: {uring_note}")

    own_dir = args.dir is None
    workdir = Path(tempfile.mkdtemp(prefix="tidelog-fsync-")) if own_dir else args.dir
    workdir.mkdir(parents=True, exist_ok=True)
    stat_path = block_stat_path(workdir)
    try:
        facts = machine_facts(workdir, uring_note) + [f"scheduling: {scheduling}"]
        for f in facts:
            log(f)
        overhead = python_overhead(workdir)
        log(
            f"python overhead: empty timing window {overhead['timer']:.0f} ns, timed lseek {overhead['lseek']:.0f} ns, "
            f"loop iteration with a 1 KiB page-cache pwrite {overhead['iteration'] / 1e3:.2f} µs"
        )
        plan = [(c, s, n) for s, n in zip(sizes, counts, strict=True) for c in cases]
        results: dict[tuple[str, int], list[Run]] = {}
        started = time.monotonic()
        done, total_runs = 0, len(plan) * repeats
        for rep in range(repeats):
            shift = (rep * len(plan)) // repeats
            for case, size, n in plan[shift:] + plan[:shift]:
                done += 1
                warmup = max(20, n // 100)
                run = run_case(case, size, n, warmup, workdir, uring_lib, stat_path)
                results.setdefault((case.name, size), []).append(run)
                s = summarize(run)
                log(
                    f"[{done:3}/{total_runs}] rep {rep + 1} {case.name:18} {size_label(size):>6}: "
                    f"p50 {fmt_t(s['p50']):>9} p99 {fmt_t(s['p99']):>9} p99.9 {fmt_t(s['p999']):>9} "
                    f"max {fmt_t(s['max']):>9}, "
                    f"{s['wps']:7,.0f} w/s, {run.seconds:5.1f} s"
                )
                os.sync()
                time.sleep(args.settle)
        elapsed = time.monotonic() - started
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = render(
        results,
        cases,
        sizes,
        counts,
        repeats,
        facts,
        overhead,
        skipped,
        uring_note,
        elapsed,
        shown_command(argv),
        args.out,
        not args.no_chart,
    )
    print("\n".join(report))
    args.out.write_text("\n".join(report) + "\n")
    log(f"wrote {args.out}")
    return 0


def render(
    results,
    cases: list[Case],
    sizes: list[int],
    counts: list[int],
    repeats: int,
    facts: list[str],
    overhead: dict[str, float],
    skipped: list[Case],
    uring_note: str,
    elapsed: float,
    command: str,
    out: Path,
    want_chart: bool,
) -> list[str]:
    png = out.with_suffix(".png")
    has_chart = want_chart and chart(results, cases, sizes, png)
    lines = [
        "# Per-write durability: fdatasync alternatives (issue 17)",
        "",
        f"`{command}`: {elapsed / 60:.1f} min in all. "
        + ", ".join(f"{n:,} recorded writes of {size_label(s)}" for s, n in zip(sizes, counts, strict=True))
        + f" per run (after 1 % warm-up), {repeats} repeat(s) in rotated order, one file per run, deleted after it.",
        "",
        "Machine: " + "; ".join(facts) + ".",
        "",
        f"Python's share: an empty timing window costs {overhead['timer']:.0f} ns, a timed trivial syscall (lseek) "
        f"{overhead['lseek']:.0f} ns, a loop iteration outside the timed window (bookkeeping + a 1 KiB pwrite into "
        f"the page cache) {overhead['iteration'] / 1e3:.2f} µs: small against syncs of 100 µs and more.",
        "",
        "Sync latency is the time of the sync call(s): fdatasync; sync_file_range + fdatasync for `sfr-*`; the "
        "write itself for `dsync-*` (O_DSYNC); the linked write + fdatasync submit-and-wait for `uring-*`. "
        "writes/s counts the whole loop, inline preparation included. *Worst ack* is the slowest write + "
        "preparation + sync, which is where an inline zero-fill step or a late background step shows. "
        f"*CPU-delayed*: writes whose loop iteration spent {CPU_DELAY_US} µs or more runnable but waiting for a "
        "CPU (the writer thread's schedstat): when that is not ~0, other processes, not the disk, shaped the tail.",
        "",
    ]
    lines += ["Cases:", ""] + [f"- {c.number}. `{c.name}`: {describe(c)}" for c in cases] + [""]
    for size in sizes:
        lines += latency_table(results, cases, size) + [""]
    if skipped:
        lines += [f"Skipped: {', '.join(f'`{c.name}`' for c in skipped)}: {uring_note}.", ""]
    if has_chart:
        lines += [f"![latency tails]({png.name})", ""]
    lines += [
        "## What the preparation costs",
        "",
        "Median of repeats. *ms per step*: one preparation step (fallocate, or the zero-fill's pwrites + its "
        "fdatasync). *Zeros written / payload*: 1.00 in steady state, i.e. every payload byte is written twice; "
        "above 1 in a run shorter than a segment, where the last prepared step is mostly unused. *Prepared, unused*: "
        "allocated blocks past the payload at the end (the disk space a preallocated segment holds until it fills). "
        "*Device* columns: sectors written and flush requests of the whole disk during the run, from its "
        "/sys/dev/block stat (other activity on the disk counts too), minus the zero-fill's own bytes, per payload "
        "byte and per recorded write: what each durable write costs the device (a 1 KiB write rewrites its whole "
        "4 KiB page; a growing file also writes its inode).",
        "",
    ]
    lines += cost_table(results, cases, sizes) + [""]
    if any(c.background for c in cases):
        lines += [
            "## Does a background zero-fill hurt the writer?",
            "",
            "Writer syncs split by whether they overlapped a zero-fill step in the background thread (all repeats "
            "pooled). In steady state the thread is busy only the time it takes to zero one step per step of "
            "payload, so the overlapping column is the one that tells.",
            "",
        ]
        lines += background_table(results, cases, sizes) + [""]
    lines += ["## Reading", ""] + reading(results, cases, sizes) + [""]
    lines += [
        "Mechanisms behind the figures (Linux, not this run): fdatasync writes back every dirty page of the "
        "*file*, not only the range just written, so zeros a background thread has written but not yet synced "
        "in the same file are flushed inside the writer's fdatasync; a size or extent change (append, or the "
        "first write into an unwritten extent) adds the inode (or a journal commit on a journaled filesystem) "
        "to the sync; an overwrite of allocated, synced blocks needs only its pages and a cache flush. ext4 "
        "converts unwritten extents in pieces of up to extent_max_zeroout_kb, so small writes into a "
        "fallocated region change metadata only once per piece. Whether the figures carry over to a "
        "journaled ext4 or XFS has to be measured there (`--dir` on that filesystem).",
        "",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
