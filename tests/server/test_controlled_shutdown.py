"""A clean stop (SIGTERM) is a controlled shutdown, as Kafka's: the coordinators resign first, so
a member waiting in a rebalance is answered NOT_COORDINATOR (it finds the coordinator again once
the broker is back) instead of holding the drain until the drain's bound, and connections are
no longer read, so clients that keep sending do not hold it either. Everything durable is there
after the restart."""

from __future__ import annotations

import time

from kio.schema.errors import ErrorCode

from tests.compat.test_group_differential import (
    JOIN,
    assignment,
    commit,
    create_topic,
    fetch_offsets,
    join_new_member,
    join_request,
    sync,
    wait_for_coordinator,
)
from tests.server.conftest import BrokerProcess
from tests.server.wire_client import WireClient


def test_a_member_waiting_in_a_rebalance_is_answered_not_coordinator_at_a_clean_stop(broker: BrokerProcess) -> None:
    client = WireClient(broker.port)
    other = WireClient(broker.port)
    group, topic = "shutdown-group", create_topic(client)
    wait_for_coordinator(client, group)
    first = join_new_member(client, group, topics=(topic,))
    a = first.member_id
    assert sync(client, group, 1, a, {a: assignment(topic, 0)}).error_code == ErrorCode.none
    assert commit(client, group, 1, a, topic, {0: 7}) == [ErrorCode.none]
    asked = other.request(JOIN, 5, join_request(group, topics=(topic,)))
    assert asked.error_code == ErrorCode.member_id_required
    # The second member's JoinGroup waits for the first member to rejoin, which it never does.
    other.send(JOIN, 5, join_request(group, member_id=asked.member_id, topics=(topic,)), correlation_id=7)
    time.sleep(0.3)
    assert broker.stop() == 0
    waiting = other.receive(JOIN, 5, correlation_id=7)
    assert waiting.error_code == ErrorCode.not_coordinator
    assert "draining 2 connection(s)" in broker.log_text()
    client.close()
    other.close()

    broker.start()
    again = WireClient(broker.port)
    try:
        wait_for_coordinator(again, group)
        assert fetch_offsets(again, group, topic, (0,)) == {0: 7}
    finally:
        again.close()
