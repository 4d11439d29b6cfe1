"""The broker's periodic work: checkpoints, retention, the verification scrub, producer-id,
offset and transactional-id expiry, transaction timeouts; and the log cleaner, in a task of its
own (a pass can take long; the other tasks do not wait for it).

Started by `Broker.start` and stopped by `Broker.close`, so every broker gets it, whether the
CLI, an embedded server or the native API opened it. Each task runs on its own interval (Kafka's
keys); a task that fails is logged and runs again at its next interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tidelog.storage import Cleaner, LogClosedError

if TYPE_CHECKING:
    from tidelog.core.broker import Broker

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, broker: Broker) -> None:
        config = broker.config
        self.broker = broker
        self.tasks: dict[str, tuple[int, Callable[[], Awaitable[None]]]] = {
            "checkpoint": (config.log_flush_offset_checkpoint_interval_ms, self.checkpoint),
            "retention": (config.log_retention_check_interval_ms, self.enforce_retention),
            "producer expiry": (config.producer_id_expiration_check_interval_ms, self.expire_producers),
            "offset expiry": (config.offsets_retention_check_interval_ms, self.expire_offsets),
            "transaction timeouts": (
                config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
                self.abort_timed_out_transactions,
            ),
            "transactional-id expiry": (
                config.transaction_remove_expired_transaction_cleanup_interval_ms,
                self.expire_transactional_ids,
            ),
        }
        if config.tidelog_log_scrub_interval_ms > 0:
            self.tasks["scrub"] = (config.tidelog_log_scrub_interval_ms, self.scrub)
        self._task: asyncio.Task[None] | None = None
        self._cleaner_task: asyncio.Task[None] | None = None
        self.cleaner: Cleaner | None = None
        self._cleaner_settings = (config.log_cleaner_dedupe_buffer_size, config.log_cleaner_io_max_bytes_per_second)
        if config.log_cleaner_enable:
            self.cleaner = Cleaner(*self._cleaner_settings)
        self._reconfigured = asyncio.Event()
        # Set by `stop`: a scrub running in its thread ends at its next step.
        self._stopping = threading.Event()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        if self.cleaner is not None:
            self._cleaner_task = asyncio.ensure_future(self._run_cleaner(self.cleaner))

    async def stop(self) -> None:
        self._stopping.set()
        if self.cleaner is not None:
            self.cleaner.abort()  # a pass in its thread stops at its next batch
        for task in (self._task, self._cleaner_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._cleaner_task = None

    async def _run_cleaner(self, cleaner: Cleaner) -> None:
        """Kafka's cleaner thread: cleans the dirtiest log, again at once while some log needs
        it, else waits log.cleaner.backoff.ms. A failed pass is logged; the log is tried again
        after the backoff."""
        while True:
            cleaner = self._cleaner_as_configured(cleaner)
            try:
                cleaned = await self.broker.clean_dirtiest_log(cleaner)
            except LogClosedError:
                cleaned = None  # the log closed (topic deleted) or the broker is stopping
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # an engine panic too (pyo3's PanicException is no Exception)
                log.exception("log cleaner pass failed")
                cleaned = None
            if cleaned is None:
                await self._cleaner_backoff()

    async def _cleaner_backoff(self) -> None:
        """log.cleaner.backoff.ms, cut short by a change of the broker's configs (a shorter
        backoff set dynamically takes effect at once, as Kafka's restarted cleaner threads do)."""
        self._reconfigured.clear()
        try:
            await asyncio.wait_for(self._reconfigured.wait(), self.broker.config.log_cleaner_backoff_ms / 1000)
        except TimeoutError:
            pass

    def reconfigured(self) -> None:
        """The broker's configs changed: the cleaner looks at them again now."""
        self._reconfigured.set()

    def _cleaner_as_configured(self, cleaner: Cleaner) -> Cleaner:
        """`cleaner`, or a new one between passes once log.cleaner.dedupe.buffer.size or
        log.cleaner.io.max.bytes.per.second changed (dynamic broker configs; Kafka restarts its
        cleaner threads for them)."""
        config = self.broker.config
        wanted = (config.log_cleaner_dedupe_buffer_size, config.log_cleaner_io_max_bytes_per_second)
        if wanted != self._cleaner_settings:
            self._cleaner_settings = wanted
            cleaner = self.cleaner = Cleaner(*wanted)
            log.info("log cleaner restarted: dedupe buffer %d bytes, at most %g bytes/s", *wanted)
        return cleaner

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = {name: loop.time() + interval_ms / 1000 for name, (interval_ms, _) in self.tasks.items()}
        while True:
            await asyncio.sleep(max(0.0, min(due.values()) - loop.time()))
            for name, (interval_ms, task) in self.tasks.items():
                if loop.time() >= due[name]:
                    try:
                        await task()
                    except Exception:  # the broker goes on; the task runs again next time
                        log.exception("housekeeping task %s failed", name)
                    due[name] = loop.time() + interval_ms / 1000

    async def checkpoint(self) -> None:
        self.broker.logs.checkpoint_all()

    async def enforce_retention(self) -> None:
        for topic_partition, report in self.broker.enforce_retention().items():
            log.info("retention deleted %d segment(s) of %s", report.segments_deleted, topic_partition.directory_name())

    async def scrub(self) -> None:
        """Verifies the segments no read has verified yet, in a thread (the engine releases the
        GIL and throttles itself)."""
        rate = self.broker.config.tidelog_log_scrub_bytes_per_sec
        checked, damaged = await asyncio.to_thread(self.broker.logs.scrub, rate, self._stopping)
        if checked:
            log.info("scrub verified %d byte(s), %d damaged batch(es)", checked, damaged)

    async def expire_producers(self) -> None:
        expired = self.broker.logs.expire_producers()
        if expired:
            log.info("forgot %d producer id(s) idle for producer.id.expiration.ms", expired)

    async def expire_offsets(self) -> None:
        await self.broker.groups.expire_offsets()  # logs what it removes

    async def abort_timed_out_transactions(self) -> None:
        aborted = self.broker.transactions.abort_timed_out()
        if aborted:
            log.info("aborting %d transaction(s) past transaction.timeout.ms", aborted)

    async def expire_transactional_ids(self) -> None:
        removed = await self.broker.transactions.expire_ids()
        if removed:
            log.info("removed %d transactional id(s) idle for transactional.id.expiration.ms", removed)
