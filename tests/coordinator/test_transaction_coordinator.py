"""The transaction coordinator's own promises that need a precise interleaving: TV2's implicit
adds of one transactional id run one at a time, also when a new request comes just as one ends
(a produce of the same producer could else append before an earlier one: OUT_OF_ORDER_SEQUENCE,
seen with Java's ProducerPerformance)."""

from __future__ import annotations

import asyncio

from tidelog.coordinator.transaction.coordinator import TransactionCoordinator


def unused(*_: object) -> object:
    raise AssertionError("not used here")


def test_implicit_adds_of_one_id_never_overlap() -> None:
    async def main() -> list[str]:
        coordinator = TransactionCoordinator(unused, unused, unused, 60_000, 60_000)  # type: ignore[arg-type]
        inside: list[str] = []
        order: list[str] = []
        release = {name: asyncio.Event() for name in "ABC"}

        async def user(name: str) -> None:
            async with coordinator.serialized("tid"):
                inside.append(name)
                assert len(inside) == 1, f"{inside} inside at once"
                order.append(name)
                await release[name].wait()
                inside.remove(name)

        a = asyncio.ensure_future(user("A"))
        await asyncio.sleep(0)
        b = asyncio.ensure_future(user("B"))
        await asyncio.sleep(0)
        release["A"].set()
        await a  # A is out, B is woken but has not run yet: C comes now
        c = asyncio.ensure_future(user("C"))
        await asyncio.sleep(0.01)
        release["B"].set()
        release["C"].set()
        await asyncio.gather(b, c)
        assert not coordinator._locks, "no lock kept once nobody holds or waits"
        return order

    assert asyncio.run(main()) == ["A", "B", "C"]
