"""fsync failing with EIO under a real broker: one partition's disk goes bad.

An LD_PRELOAD shim (tests/faults/shims/eio_fsync.c, built here with gcc) makes fsync and
fdatasync fail with EIO for the files of one partition while a switch file exists. That log fails
for good (fsyncgate: after a failed fsync the kernel may have dropped the dirty pages, and a retry
can succeed falsely), so its produces answer KAFKA_STORAGE_ERROR, even once the disk is "healed",
until a restart recovers it. Its durable part stays readable; the other partitions never notice;
after the restart nothing acknowledged is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from tests.faults.test_disk_full import create_topic, read_all, send, split, start_broker
from tests.server.conftest import BrokerProcess

SHIM_SOURCE = Path(__file__).parent / "shims" / "eio_fsync.c"


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the EIO shim")
    built = tmp_path / "eio_fsync.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(built), str(SHIM_SOURCE), "-ldl"], check=True)
    return built


@pytest.fixture
def eio_switch(tmp_path: Path) -> Path:
    return tmp_path / "eio-armed"


@pytest.fixture
def broker(tmp_path: Path, shim: Path, eio_switch: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokerProcess]:
    monkeypatch.setenv("LD_PRELOAD", str(shim))  # for the broker process started here only
    monkeypatch.setenv("TIDELOG_TEST_EIO_PATH", "/sick-0")
    monkeypatch.setenv("TIDELOG_TEST_EIO_SWITCH", str(eio_switch))
    process = start_broker(tmp_path / "data")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def test_fsync_eio_fails_one_log_for_good_and_the_others_keep_working(
    broker: BrokerProcess, eio_switch: Path, tmp_path: Path
) -> None:
    for topic in ("sick", "well"):
        create_topic(broker.bootstrap, topic, partitions=1)
    acked = {
        topic: split(send(broker.bootstrap, topic, [f"{topic}-a{i}" for i in range(50)], 1))
        for topic in ("sick", "well")
    }
    assert not acked["sick"][1] and not acked["well"][1]
    sick_acked, well_acked = list(acked["sick"][0]), list(acked["well"][0])
    sick_refused: list[str] = []

    eio_switch.touch()
    for phase in ("armed", "healed"):  # the shim stops failing fsync: the log stays failed
        sick_acked_now, refused, codes = split(
            send(broker.bootstrap, "sick", [f"sick-{phase}{i}" for i in range(20)], 1)
        )
        assert not sick_acked_now, f"{phase}: acknowledged on a failed log"
        assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, codes
        sick_refused += refused
        well_now, well_refused, _ = split(send(broker.bootstrap, "well", [f"well-{phase}{i}" for i in range(20)], 1))
        assert not well_refused, f"{phase}: the healthy partition refused {well_refused[:3]}"
        well_acked += well_now
        eio_switch.unlink(missing_ok=True)

    # The failed log's durable part is still served; the healthy one has everything.
    assert read_all(broker.bootstrap, "sick", 1) == sick_acked
    assert read_all(broker.bootstrap, "well", 1) == well_acked
    assert broker.process is not None and broker.process.poll() is None, "the broker died"

    assert broker.stop() == 0
    assert "closed with 1 log(s) not closed cleanly" in broker.log_text()
    broker.start()  # recovery reopens the failed log from what is on disk
    after = read_all(broker.bootstrap, "sick", 1)
    assert after[: len(sick_acked)] == sick_acked, "an acknowledged record is missing after the restart"
    # What was refused may be there (it reached the file; EIO said nothing about which bytes
    # stuck), as after a timeout: never a record nobody sent.
    assert set(after[len(sick_acked) :]) <= set(sick_refused)
    again, refused_again, _ = split(send(broker.bootstrap, "sick", [f"sick-b{i}" for i in range(20)], 1))
    assert not refused_again, "the recovered log still refuses"
    assert read_all(broker.bootstrap, "sick", 1) == after + again
    assert read_all(broker.bootstrap, "well", 1) == well_acked
