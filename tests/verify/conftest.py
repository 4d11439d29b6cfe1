"""A tidelog broker shared by the verify tests (each run makes its own topics), and a helper
that runs `tidelog verify` as a user does: a process of its own, then its results.json."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import BrokerProcess, free_port
from tidelog.verify.runner import VerifyConfig, command_line

# Workload seconds of each test run: enough for hundreds of operations, short for CI.
RUN_S = 8.0
# The whole process: topics, workers' start and end, final reads, check, report.
PROCESS_TIMEOUT_S = 180


@dataclass
class Outcome:
    status: int
    output: str
    results: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.results["counts"])

    def found(self) -> set[str]:
        return {name for name, count in self.counts.items() if count}


def run_verify(bootstrap: str, report: Path, **options: Any) -> Outcome:
    config = VerifyConfig(bootstrap=bootstrap, duration_s=RUN_S, report=report, **options)
    done = subprocess.run(
        command_line(config) + ["--no-progress"], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S
    )
    results_file = report / "results.json"
    assert results_file.exists(), done.stdout + done.stderr
    return Outcome(done.returncode, done.stdout, json.loads(results_file.read_text()))


@pytest.fixture(scope="module")
def tidelog_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = BrokerProcess(tmp_path_factory.mktemp("verify") / "data", free_port()).start()
    yield broker.bootstrap
    broker.stop()
