"""group.initial.rebalance.delay.ms: the first generation of an empty group waits for more
members, so a consumer fleet starting together gets one rebalance, not one per member."""

from __future__ import annotations

import time
from pathlib import Path

from kio.schema.errors import ErrorCode

from tests.compat.test_group_differential import JOIN, join_request, wait_for_coordinator
from tests.server.conftest import BrokerProcess, free_port
from tests.server.wire_client import WireClient

DELAY_MS = 1500


def test_members_arriving_within_the_delay_share_the_first_generation(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port(), {"group.initial.rebalance.delay.ms": str(DELAY_MS)}).start()
    first, second = WireClient(broker.port), WireClient(broker.port)
    try:
        wait_for_coordinator(first, "fleet")
        ids = [c.request(JOIN, 5, join_request("fleet")).member_id for c in (first, second)]
        started = time.monotonic()
        first.send(JOIN, 5, join_request("fleet", member_id=ids[0]), correlation_id=2)
        time.sleep(DELAY_MS / 1000 / 2)
        second.send(JOIN, 5, join_request("fleet", member_id=ids[1]), correlation_id=2)
        answers = [c.receive(JOIN, 5, correlation_id=2) for c in (first, second)]
        waited = time.monotonic() - started
        assert [a.error_code for a in answers] == [ErrorCode.none, ErrorCode.none]
        assert [a.generation_id for a in answers] == [1, 1]  # one generation for both
        assert sorted(m.member_id for a in answers for m in a.members) == sorted(ids)
        # The second arrival restarted the delay: about 1.5 delays in all, not 1.
        assert DELAY_MS * 1.4 / 1000 < waited < DELAY_MS * 3 / 1000
    finally:
        first.close()
        second.close()
        broker.stop()
