"""One partition of `__transaction_state`: its transactional ids and the transaction operations.

After Kafka's `TransactionCoordinator` and `TransactionMetadata`. Durable state (each id's
producer id, epoch, state and partitions) changes only in `replay`. An operation checks the
request against that state, marks the id busy (`pending`: a write is in flight, so any other
request for it answers CONCURRENT_TRANSACTIONS) and returns the record to write; the runtime
replays it once durable, and only then answers.

EndTxn is two writes with the markers between them, as in Kafka: Prepare{Commit,Abort} is
written and answered; then the coordinator (`TransactionCoordinator`) writes a marker into every
partition of the transaction and, once all are durable, writes Complete{Commit,Abort}. A shard
that loads an id in a Prepare state hands it to the coordinator again (`on_prepared`), which
re-sends its markers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from tidelog.coordinator.runtime import CoordinatorResult, ShardContext
from tidelog.coordinator.transaction import records
from tidelog.coordinator.transaction.records import VALID_PREVIOUS, StoredTransaction, TxnState

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
# Kafka: an epoch at Short.MAX_VALUE - 1 is exhausted; the id moves to a new producer id.
EPOCH_EXHAUSTED_AT = 2**15 - 2
PREPARE_STATES = frozenset({TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT})
COMPLETE_STATES = frozenset({TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})
# TV2 (KIP-890 part 2) from this ClientTransactionVersion on.
TRANSACTION_VERSION_2 = 2


@dataclass(slots=True)
class TransactionMetadata:
    """One transactional id: the durable part as last replayed, plus `pending`."""

    transactional_id: str
    stored: StoredTransaction
    # The epoch before the last InitProducerId bump, so its retry is recognised (KIP-360).
    last_epoch: int = NO_PRODUCER_EPOCH
    # The state a write in flight moves to: the id is busy until it is replayed or fails.
    pending: TxnState | None = None

    @property
    def state(self) -> TxnState:
        return self.stored.state

    @property
    def producer_id(self) -> int:
        return self.stored.producer_id

    @property
    def epoch(self) -> int:
        return self.stored.producer_epoch


@dataclass(frozen=True, slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class EndResult:
    """EndTxn's answer; `prepared` names the transaction now prepared (its markers start once
    the Prepare record is durable)."""

    error: ErrorCode
    prepared: StoredTransaction | None = None
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


class TransactionShard:
    def __init__(
        self,
        context: ShardContext,
        allocate_producer_id: Callable[[], int],
        on_prepared: Callable[[str, StoredTransaction], None],
    ) -> None:
        self.context = context
        self.allocate_producer_id = allocate_producer_id
        self.on_prepared = on_prepared
        self.transactions: dict[str, TransactionMetadata] = {}

    # ---- the one way durable state changes ---------------------------------------------------

    def replay(self, offset: int, producer_id: int, producer_epoch: int, key: bytes, value: bytes | None) -> None:
        transactional_id = records.parse_key(bytes(key))
        if value is None:
            self.transactions.pop(transactional_id, None)
            return
        stored = records.parse_value(value)
        current = self.transactions.get(transactional_id)
        if current is None:
            self.transactions[transactional_id] = TransactionMetadata(transactional_id, stored)
            return
        current.stored = stored

    def replay_end_transaction(self, offset: int, producer_id: int, producer_epoch: int, committed: bool) -> None:
        """`__transaction_state` holds no transactional records."""

    def on_loaded(self) -> None:
        """Transactions loaded in a Prepare state get their markers written (again)."""
        for metadata in self.transactions.values():
            if metadata.state in PREPARE_STATES:
                self.on_prepared(metadata.transactional_id, metadata.stored)

    def on_unloaded(self) -> None:
        self.transactions.clear()

    # ---- writing one state change ------------------------------------------------------------

    def _transition(
        self, metadata: TransactionMetadata, stored: StoredTransaction, response: object, failed: object
    ) -> CoordinatorResult:  # type: ignore[type-arg]
        """The record moving `metadata` to `stored`, the id busy until it is durable."""
        assert metadata.state in VALID_PREVIOUS[stored.state], (
            f"{metadata.transactional_id}: {metadata.state.name} -> {stored.state.name} is not a transition"
        )
        metadata.pending = stored.state

        def done() -> None:
            metadata.pending = None

        def on_failed(error: BaseException) -> object:
            metadata.pending = None
            log.error("%s: writing %s failed: %s", metadata.transactional_id, stored.state.name, error)
            return failed

        record = (records.key_bytes(metadata.transactional_id), records.value_bytes(stored))
        return CoordinatorResult([record], response, on_committed=done, on_failed=on_failed)

    # ---- InitProducerId ----------------------------------------------------------------------

    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, expected: tuple[int, int] | None
    ) -> CoordinatorResult[InitResult]:
        """Kafka's `handleInitProducerId` for a transactional id; `expected` is the (producer
        id, epoch) of a v3+ request (KIP-360), None when it carries none (-1, -1)."""
        now = self.context.now_ms()
        metadata = self.transactions.get(transactional_id)
        if metadata is None:
            return self._init_new(transactional_id, timeout_ms, now)
        if metadata.pending is not None:
            return CoordinatorResult((), InitResult(ErrorCode.concurrent_transactions))
        if expected is not None and not self._valid_producer_id(metadata, expected):
            return CoordinatorResult((), InitResult(ErrorCode.producer_fenced))
        state = metadata.state
        if state in PREPARE_STATES:
            return CoordinatorResult((), InitResult(ErrorCode.concurrent_transactions))
        if state is TxnState.ONGOING:
            # Fence the producer (epoch + 1) and abort its transaction; the client retries
            # until the abort is complete.
            return self.fence_and_abort(metadata, InitResult(ErrorCode.concurrent_transactions))
        if state is TxnState.DEAD or state is TxnState.PREPARE_EPOCH_FENCE:
            return CoordinatorResult((), InitResult(ErrorCode.unknown_server_error))
        return self._bump_for_init(metadata, timeout_ms, expected, now)

    def _init_new(self, transactional_id: str, timeout_ms: int, now: int) -> CoordinatorResult[InitResult]:
        """A new id: a new producer id at epoch 0. Until its record is durable the id is held
        by a placeholder (busy), which a failed write removes."""
        producer_id = self.allocate_producer_id()
        placeholder = StoredTransaction(
            producer_id, NO_PRODUCER_EPOCH, timeout_ms, TxnState.EMPTY, frozenset(), now, -1
        )
        metadata = self.transactions[transactional_id] = TransactionMetadata(transactional_id, placeholder)
        stored = dataclasses.replace(placeholder, producer_epoch=0)
        result = self._transition(
            metadata, stored, InitResult(ErrorCode.none, producer_id, 0), InitResult(ErrorCode.not_coordinator)
        )
        on_failed = result.on_failed
        assert on_failed is not None

        def failed(error: BaseException) -> InitResult:
            if self.transactions.get(transactional_id) is metadata and metadata.stored is placeholder:
                del self.transactions[transactional_id]
            return on_failed(error)  # type: ignore[no-any-return]

        result.on_failed = failed
        return result

    @staticmethod
    def _valid_producer_id(metadata: TransactionMetadata, expected: tuple[int, int]) -> bool:
        producer_id, epoch = expected
        return (
            metadata.epoch == NO_PRODUCER_EPOCH
            or producer_id == metadata.producer_id
            or (producer_id == metadata.stored.previous_producer_id and epoch >= EPOCH_EXHAUSTED_AT)
        )

    def _bump_for_init(
        self, metadata: TransactionMetadata, timeout_ms: int, expected: tuple[int, int] | None, now: int
    ) -> CoordinatorResult[InitResult]:
        stored = metadata.stored
        if expected is not None and expected[0] == stored.previous_producer_id and expected[0] != stored.producer_id:
            # A retry of the InitProducerId that rotated the producer id: answer it again.
            return CoordinatorResult((), InitResult(ErrorCode.none, stored.producer_id, stored.producer_epoch))
        if expected is not None and expected[1] != stored.producer_epoch and stored.producer_epoch != NO_PRODUCER_EPOCH:
            if expected[1] == metadata.last_epoch:  # a retry of the last bump: its answer again
                return CoordinatorResult((), InitResult(ErrorCode.none, stored.producer_id, stored.producer_epoch))
            return CoordinatorResult((), InitResult(ErrorCode.producer_fenced))
        if stored.producer_epoch >= EPOCH_EXHAUSTED_AT:
            producer_id, epoch, previous = self.allocate_producer_id(), 0, stored.producer_id
        else:
            producer_id, epoch, previous = stored.producer_id, stored.producer_epoch + 1, stored.previous_producer_id
        bumped = StoredTransaction(
            producer_id,
            epoch,
            timeout_ms,
            TxnState.EMPTY,
            frozenset(),
            now,
            -1,
            previous_producer_id=previous,
            client_transaction_version=stored.client_transaction_version,
        )
        answer = InitResult(ErrorCode.none, producer_id, epoch)
        result = self._transition(metadata, bumped, answer, InitResult(ErrorCode.not_coordinator))
        on_committed = result.on_committed
        # Kept in memory only, as Kafka's lastProducerEpoch: a retry of this very bump (the
        # client missed the answer) is recognised until the broker restarts.
        last_epoch = stored.producer_epoch if producer_id == stored.producer_id else NO_PRODUCER_EPOCH

        def bumped_committed() -> None:
            assert on_committed is not None
            on_committed()
            metadata.last_epoch = last_epoch

        result.on_committed = bumped_committed
        return result

    # ---- fencing and timeouts ----------------------------------------------------------------

    def fence_and_abort(self, metadata: TransactionMetadata, response: object) -> CoordinatorResult:  # type: ignore[type-arg]
        """Kafka's PrepareEpochFence: the epoch goes up by one (the old producer is fenced: its
        requests now carry an older epoch) and the transaction is aborted under the new epoch."""
        stored = metadata.stored
        fenced_epoch = (
            stored.producer_epoch + 1 if stored.producer_epoch < EPOCH_EXHAUSTED_AT else stored.producer_epoch
        )
        prepare = dataclasses.replace(
            stored, producer_epoch=fenced_epoch, state=TxnState.PREPARE_ABORT, last_update_ms=self.context.now_ms()
        )
        result = self._transition(metadata, prepare, response, response)
        return self._then_markers(result, metadata.transactional_id, prepare)

    def _then_markers(
        self,
        result: CoordinatorResult,  # type: ignore[type-arg]
        transactional_id: str,
        prepare: StoredTransaction,
    ) -> CoordinatorResult:  # type: ignore[type-arg]
        """`result`, whose Prepare record, once durable, starts the markers: from the runtime,
        not from the request that asked, which its connection's close may cancel meanwhile (the
        transaction would stay prepared, its retries answered CONCURRENT_TRANSACTIONS for ever)."""
        on_committed = result.on_committed

        def prepared() -> None:
            assert on_committed is not None
            on_committed()
            self.on_prepared(transactional_id, prepare)

        result.on_committed = prepared
        return result

    def timed_out(self, now: int) -> list[str]:
        """The ids whose Ongoing transaction is past its transaction.timeout.ms."""
        return [
            m.transactional_id
            for m in self.transactions.values()
            if m.state is TxnState.ONGOING and m.pending is None and now > m.stored.start_ms + m.stored.timeout_ms
        ]

    def abort_timed_out(self, transactional_id: str) -> CoordinatorResult[None]:
        metadata = self.transactions.get(transactional_id)
        if metadata is None or metadata.state is not TxnState.ONGOING or metadata.pending is not None:
            return CoordinatorResult((), None)
        log.info(
            "transaction of %s (producer %d, epoch %d) timed out after %d ms: aborting it",
            transactional_id,
            metadata.producer_id,
            metadata.epoch,
            metadata.stored.timeout_ms,
        )
        return self.fence_and_abort(metadata, None)

    def expired(self, now: int, expiration_ms: int) -> list[str]:
        """Ids idle for transactional.id.expiration.ms with no transaction (Kafka expires
        Empty and Complete* ones)."""
        idle = frozenset({TxnState.EMPTY}) | COMPLETE_STATES
        return [
            m.transactional_id
            for m in self.transactions.values()
            if m.state in idle and m.pending is None and now - m.stored.last_update_ms >= expiration_ms
        ]

    def expire(self, transactional_ids: Iterable[str], now: int, expiration_ms: int) -> CoordinatorResult[int]:
        still = set(self.expired(now, expiration_ms))
        gone = [tid for tid in transactional_ids if tid in still]
        return CoordinatorResult([(records.key_bytes(tid), None) for tid in gone], len(gone))

    # ---- AddPartitionsToTxn, AddOffsetsToTxn -------------------------------------------------

    def _check_producer(
        self, transactional_id: str, producer_id: int, epoch: int
    ) -> tuple[ErrorCode, TransactionMetadata | None]:
        metadata = self.transactions.get(transactional_id)
        if metadata is None or metadata.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping, None
        if metadata.epoch != epoch:
            return ErrorCode.producer_fenced, None
        if metadata.pending is not None or metadata.state in PREPARE_STATES:
            return ErrorCode.concurrent_transactions, None
        if metadata.state is TxnState.PREPARE_EPOCH_FENCE or metadata.state is TxnState.DEAD:
            return ErrorCode.concurrent_transactions, None
        return ErrorCode.none, metadata

    def add_partitions(
        self, transactional_id: str, producer_id: int, epoch: int, partitions: frozenset[tuple[str, int]]
    ) -> CoordinatorResult[ErrorCode]:
        error, metadata = self._check_producer(transactional_id, producer_id, epoch)
        if metadata is None:
            return CoordinatorResult((), error)
        stored = metadata.stored
        if stored.state is TxnState.ONGOING and partitions <= stored.partitions:
            return CoordinatorResult((), ErrorCode.none)
        now = self.context.now_ms()
        start = stored.start_ms if stored.state is TxnState.ONGOING else now
        ongoing = dataclasses.replace(
            stored,
            state=TxnState.ONGOING,
            partitions=stored.partitions | partitions,
            last_update_ms=now,
            start_ms=start,
        )
        return self._transition(metadata, ongoing, ErrorCode.none, ErrorCode.not_coordinator)

    def verify(self, transactional_id: str, producer_id: int, epoch: int, partition: tuple[str, int]) -> ErrorCode:
        """KIP-890 part 1: may this producer append a transactional batch to `partition` now?
        (The partition was added to its Ongoing transaction, under this epoch.) A local lookup
        on the loop, so it is atomic with the append that follows it."""
        metadata = self.transactions.get(transactional_id)
        if metadata is None or metadata.producer_id != producer_id:
            return ErrorCode.invalid_txn_state
        if epoch < metadata.epoch:
            return ErrorCode.invalid_producer_epoch
        # A write in flight that keeps it Ongoing (another AddPartitionsToTxn, AddOffsetsToTxn)
        # does not stop appends to partitions added before; one that ends it does.
        ending = metadata.pending is not None and metadata.pending is not TxnState.ONGOING
        if epoch != metadata.epoch or metadata.state is not TxnState.ONGOING or ending:
            return ErrorCode.invalid_txn_state
        if partition not in metadata.stored.partitions:
            return ErrorCode.invalid_txn_state
        return ErrorCode.none

    # ---- EndTxn ------------------------------------------------------------------------------

    def end_transaction(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, tv2: bool = False
    ) -> CoordinatorResult[EndResult]:
        """Kafka's `endTransaction` for a client: Ongoing moves to Prepare*; a retry of a
        finished transaction with the same outcome is answered NONE. Under TV2 (EndTxn v5,
        KIP-890 part 2) the epoch goes up by one at every end (the markers carry the new one,
        the answer gives it to the client; an exhausted epoch moves to a new producer id), and
        a retry is recognised by the epoch before that bump."""
        metadata = self.transactions.get(transactional_id)
        if metadata is None:
            return CoordinatorResult((), EndResult(ErrorCode.invalid_producer_id_mapping))
        stored = metadata.stored
        retry = tv2 and self._is_tv2_retry(stored, producer_id, epoch)
        if stored.producer_id != producer_id and not retry:
            return CoordinatorResult((), EndResult(ErrorCode.invalid_producer_id_mapping))
        if stored.producer_epoch != epoch and not retry:
            return CoordinatorResult((), EndResult(ErrorCode.producer_fenced))
        if metadata.pending is not None:
            return CoordinatorResult((), EndResult(ErrorCode.concurrent_transactions))
        state = metadata.state
        wanted_prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        wanted_complete = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        current = EndResult(ErrorCode.none, None, stored.producer_id, stored.producer_epoch)
        if state is TxnState.ONGOING and not retry:
            prepare = dataclasses.replace(stored, state=wanted_prepare, last_update_ms=self.context.now_ms())
            if tv2:
                prepare = self._bumped_for_tv2(prepare)
            answer = EndResult(ErrorCode.none, prepare, *self.client_identity(prepare))
            result = self._transition(metadata, prepare, answer, EndResult(ErrorCode.not_coordinator))
            return self._then_markers(result, transactional_id, prepare)
        if state is wanted_complete and (retry or not tv2):
            return CoordinatorResult((), current)  # a retry: same outcome, done
        if state is wanted_prepare and (retry or not tv2):
            return CoordinatorResult((), EndResult(ErrorCode.concurrent_transactions))
        return CoordinatorResult((), EndResult(ErrorCode.invalid_txn_state))

    @staticmethod
    def _is_tv2_retry(stored: StoredTransaction, producer_id: int, epoch: int) -> bool:
        """The request carries the epoch (or producer id) the last TV2 end moved away from."""
        if stored.state not in PREPARE_STATES | COMPLETE_STATES or stored.client_transaction_version < 2:
            return False
        if producer_id == stored.producer_id:
            return epoch == stored.producer_epoch - 1
        return producer_id == stored.previous_producer_id and stored.producer_epoch == 0

    def _bumped_for_tv2(self, prepare: StoredTransaction) -> StoredTransaction:
        """The Prepare state of a TV2 end: epoch + 1 (its markers carry it). An exhausted epoch
        also names the producer id the id moves to once complete (Kafka's NextProducerId); the
        markers still go out under the old one, which wrote the data."""
        bumped = dataclasses.replace(
            prepare, producer_epoch=prepare.producer_epoch + 1, client_transaction_version=TRANSACTION_VERSION_2
        )
        if prepare.producer_epoch >= EPOCH_EXHAUSTED_AT:
            bumped = dataclasses.replace(bumped, next_producer_id=self.allocate_producer_id())
        return bumped

    @staticmethod
    def client_identity(prepare: StoredTransaction) -> tuple[int, int]:
        """The (producer id, epoch) the client goes on with after this end."""
        if prepare.next_producer_id != NO_PRODUCER_ID:
            return prepare.next_producer_id, 0
        return prepare.producer_id, prepare.producer_epoch

    def has_partitions(self, transactional_id: str, partitions: frozenset[tuple[str, int]]) -> bool:
        """Whether the id's Ongoing transaction holds every one of `partitions` already."""
        metadata = self.transactions.get(transactional_id)
        return metadata is not None and metadata.state is TxnState.ONGOING and partitions <= metadata.stored.partitions

    def complete(self, transactional_id: str, prepared: StoredTransaction) -> CoordinatorResult[bool]:
        """Every marker of `prepared` is durable: Complete* is written (if the id is still in
        that Prepare state, with that producer and epoch)."""
        metadata = self.transactions.get(transactional_id)
        if (
            metadata is None
            or metadata.stored != prepared
            or metadata.state not in PREPARE_STATES
            or metadata.pending is not None
        ):
            return CoordinatorResult((), False)
        complete_state = (
            TxnState.COMPLETE_COMMIT if prepared.state is TxnState.PREPARE_COMMIT else TxnState.COMPLETE_ABORT
        )
        completed = dataclasses.replace(
            prepared, state=complete_state, partitions=frozenset(), last_update_ms=self.context.now_ms()
        )
        if prepared.next_producer_id != NO_PRODUCER_ID:  # a TV2 end that exhausted the epoch
            completed = dataclasses.replace(
                completed,
                producer_id=prepared.next_producer_id,
                producer_epoch=0,
                previous_producer_id=prepared.producer_id,
                next_producer_id=NO_PRODUCER_ID,
            )
        return self._transition(metadata, completed, True, False)

    # ---- admin -------------------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TransactionMetadata | None:
        return self.transactions.get(transactional_id)

    def list_transactions(self) -> list[TransactionMetadata]:
        return list(self.transactions.values())
