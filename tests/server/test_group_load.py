"""After a restart the coordinator replays `__consumer_offsets` while the broker already serves:
groups of partitions not yet replayed get COORDINATOR_LOAD_IN_PROGRESS, then exactly the last
committed offsets. The data is written with bench/coordinator_load.py's generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from kio.schema.errors import ErrorCode

from tests.server.conftest import BrokerProcess, free_port
from tests.server.wire_client import WireClient
from tidelog.coordinator.group import records

ROOT = Path(__file__).parents[2]
COMMITS = 300_000
GROUPS = 500


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coordinator_load", ROOT / "bench" / "coordinator_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_groups_answer_load_in_progress_then_their_last_commits(tmp_path: Path) -> None:
    bench = load_bench()
    data_dir = tmp_path / "data"
    partitions = bench.create_offsets_topic(data_dir)
    expected = bench.write_commits(data_dir, COMMITS, 10, GROUPS)
    # Ask first for the groups replayed last.
    order = sorted(expected, key=lambda group: -records.partition_for(group, partitions))
    broker = BrokerProcess(data_dir, free_port()).start()
    client = WireClient(broker.port)
    try:
        loading_answers = 0
        for group in order:
            while True:
                error, offsets = bench.fetch(client, group)
                if error != ErrorCode.coordinator_load_in_progress:
                    break
                loading_answers += 1
            assert error == ErrorCode.none
            assert offsets == {p: expected[group].get(p, -1) for p in range(16)}, group
        assert loading_answers > 0, "every group was loaded before the first request"
        assert f"group coordinator loaded: {COMMITS} record(s)" in broker.log_text()
    finally:
        client.close()
        broker.stop()
