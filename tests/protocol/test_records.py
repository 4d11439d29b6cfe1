"""The record codec: pure-Python reference and compiled twin give the same answers."""

from __future__ import annotations

import os
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidelog.protocol import _records_py, record_batch
from tidelog.protocol._records_py import RecordDecodeError

try:
    from tidelog.protocol import _records as compiled  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the build always has it; say so if not
    compiled = None

TWINS = [_records_py] + ([compiled] if compiled is not None else [])


def test_the_compiled_twin_is_built() -> None:
    assert compiled is not None, "ext/_records.pyx was not compiled"


def test_environment_variable_forces_the_twin() -> None:
    code = "from tidelog.protocol import record_batch; print(record_batch.IMPLEMENTATION)"
    forced = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TIDELOG_NO_EXTENSIONS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert forced.stdout.strip() == "python"


header = st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20))
record = st.tuples(
    st.integers(-(2**40), 2**40),
    st.none() | st.binary(max_size=50),
    st.none() | st.binary(max_size=300),
    st.lists(header, max_size=3),
)


@pytest.mark.parametrize("twin", TWINS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@given(st.lists(record, min_size=1, max_size=20), st.integers(0, 2**40))
def test_round_trip(twin: ModuleType, inputs: list[record_batch.RecordInput], base_offset: int) -> None:
    base_timestamp = inputs[0][0]
    encoded = twin.encode_records(inputs, base_timestamp)
    assert all(t.encode_records(inputs, base_timestamp) == encoded for t in TWINS)
    decoded = twin.decode_records(encoded, base_offset, base_timestamp, len(inputs))
    expected = [(base_offset + i, ts, k, v, list(h)) for i, (ts, k, v, h) in enumerate(inputs)]
    assert decoded == expected


@pytest.mark.parametrize("twin", TWINS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@given(st.binary(max_size=200), st.integers(0, 50))
def test_garbage_raises_the_declared_error_or_decodes_alike(twin: ModuleType, garbage: bytes, count: int) -> None:
    outcomes = []
    for t in TWINS:
        try:
            outcomes.append(t.decode_records(garbage, 0, 0, count))
        except RecordDecodeError:
            outcomes.append("error")
        except UnicodeDecodeError:
            outcomes.append("unicode")
    assert all(o == outcomes[0] for o in outcomes)


def test_batch_round_trip_and_crc_check() -> None:
    batch = record_batch.build_batch([(1000, b"k", b"v", [("h", None)]), (1005, None, b"w", [])], producer_id=7)
    header, decoded = record_batch.decode_batch(batch)
    assert (header.producer_id, header.record_count, header.max_timestamp) == (7, 2, 1005)
    assert decoded == [(0, 1000, b"k", b"v", [("h", None)]), (1, 1005, None, b"w", [])]
    with pytest.raises(RecordDecodeError):
        record_batch.decode_batch(batch[:-1] + bytes([batch[-1] ^ 1]))


def test_header_views_read_the_fields_the_whole_header_reads() -> None:
    batch = record_batch.build_batch(
        [(1000, b"k", b"v", []), (1009, None, b"w", [])], producer_id=42, producer_epoch=3, base_sequence=17
    )
    header = record_batch.BatchHeader.read(batch)
    fields = record_batch.PRODUCER_FIELDS.unpack_from(batch, record_batch.PRODUCER_FIELDS_AT)
    expected = (2, header.attributes, header.last_offset_delta, header.max_timestamp, 42, 3, 17)
    assert fields == expected
    assert record_batch.batch_length_of(batch) == header.batch_length == len(batch) - record_batch.LOG_OVERHEAD


def test_control_batch_is_a_transaction_marker() -> None:
    for marker in record_batch.ControlRecordType:
        batch = record_batch.build_control_batch(
            marker, producer_id=9, producer_epoch=2, coordinator_epoch=5, timestamp_ms=7
        )
        header, ((offset, timestamp, key, value, headers),) = record_batch.decode_batch(batch)
        assert header.is_control and header.is_transactional and header.record_count == 1
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (9, 2, -1)
        assert (offset, timestamp, headers) == (0, 7, [])
        # Kafka's EndTransactionMarker: key (version 0, type), value (version 0, coordinator epoch).
        assert key == bytes([0, 0, 0, marker]) and value == bytes([0, 0, 0, 0, 0, 5])
        assert record_batch.parse_control_record(key, value) == (marker, 5)
    with pytest.raises(RecordDecodeError):
        record_batch.parse_control_record(bytes([0, 0, 0, 7]), None)


def batches_for_walk() -> bytes:
    """Three batches back to back, as a read of the log returns them: data, a marker, data."""
    first = record_batch.build_batch([(1000 + i, f"k{i}".encode(), f"v{i}".encode(), [("h", b"x")]) for i in range(5)])
    marker = record_batch.build_control_batch(record_batch.ControlRecordType.COMMIT, 7, 0, 0, 2000)
    last = record_batch.build_batch([(3000 + i, None, f"w{i}".encode(), []) for i in range(4)])

    def at(batch: bytes, base: int) -> bytes:
        return base.to_bytes(8, "big", signed=True) + batch[8:]

    return at(first, 0) + at(marker, 5) + at(last, 6)


def no_decompress(codec: int, data: memoryview) -> bytes:
    raise AssertionError("nothing here is compressed")


@pytest.mark.parametrize("limit", [100, 7, 3])
def test_both_twins_walk_batches_alike(limit: int) -> None:
    import crc32c

    data = batches_for_walk()
    answers = []
    for twin in TWINS:
        records: list[object] = []
        walked = twin.decode_batches(data, 2, limit, records, "t", 3, crc32c.crc32c, no_decompress)
        builder = twin.ColumnBuilder(limit, 16)
        columns = twin.decode_batches(data, 2, limit, builder, "t", 3, crc32c.crc32c, no_decompress)
        offsets = [int(builder.offsets[i]) for i in range(builder.count)]
        values = [bytes(builder.data[builder.value_starts[i] : builder.value_starts[i] + builder.value_lengths[i]])
                  for i in range(builder.count)]  # fmt: skip
        answers.append((walked, [(r.offset, r.value, r.headers) for r in records], columns, offsets, values))  # type: ignore[attr-defined]
    assert all(a == answers[0] for a in answers)
    walked, records_seen, columns, offsets, values = answers[0]
    expected = [2, 3, 4, 6, 7, 8, 9][:limit]
    assert [o for o, _, _ in records_seen] == expected == offsets, "from offset 2, over the marker at 5"
    assert walked == columns == ((10, 7) if limit >= 7 else (expected[-1] + 1, limit))
    assert records_seen[0] == (2, b"v2", (("h", b"x"),))


def test_a_damaged_batch_fails_its_crc_in_both_twins() -> None:
    import crc32c

    data = bytearray(batches_for_walk())
    data[70] ^= 0xFF  # inside the first batch's records
    for twin in TWINS:
        with pytest.raises(RecordDecodeError, match="CRC-32C"):
            twin.decode_batches(bytes(data), 0, 100, [], "t", 0, crc32c.crc32c, no_decompress)


plain_record = st.one_of(
    st.binary(max_size=20),
    st.tuples(st.none() | st.binary(max_size=20), st.none() | st.binary(max_size=20)),
)
odd_record = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.tuples(st.text(max_size=5), st.binary(max_size=5)),
    st.tuples(st.binary(max_size=5), st.binary(max_size=5), st.binary(max_size=5)),
    st.builds(bytearray, st.binary(max_size=5)),
    st.lists(st.binary(max_size=5), min_size=2, max_size=2),
)


@pytest.mark.parametrize("twin", TWINS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@given(st.lists(plain_record, max_size=20), st.integers(0, 2**41))
def test_plain_inputs_stamps_values_and_pairs(twin: ModuleType, records: list[object], stamp: int) -> None:
    expected = [(stamp, None, r, ()) if isinstance(r, bytes) else (stamp, r[0], r[1], ()) for r in records]  # type: ignore[index]
    assert twin.plain_inputs(records, stamp) == expected


@pytest.mark.parametrize("twin", TWINS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@given(st.lists(plain_record, max_size=5), odd_record, st.lists(plain_record, max_size=5))
def test_plain_inputs_gives_up_on_any_other_shape(
    twin: ModuleType, before: list[object], odd: object, after: list[object]
) -> None:
    assert twin.plain_inputs([*before, odd, *after], 7) is None
