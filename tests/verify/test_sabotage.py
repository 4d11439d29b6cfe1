"""Detection power: a proxy that breaks one guarantee on the wire (tidelog.verify.sabotage) in
front of a healthy tidelog broker; verify must report that anomaly, and fail the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.verify.conftest import run_verify
from tidelog.verify.sabotage import EXPECTED, MODES


@pytest.mark.parametrize("mode", MODES)
def test_each_sabotage_is_reported_as_its_anomaly(mode: str, tidelog_bootstrap: str, tmp_path: Path) -> None:
    anomaly, workload = EXPECTED[mode]
    outcome = run_verify(tidelog_bootstrap, tmp_path, workload=workload, sabotage=mode, seed=7)
    assert outcome.counts[anomaly] > 0, (outcome.counts, outcome.results["run"]["proxy_counters"])
    assert outcome.status == 1 and outcome.results["valid"] is False
    assert anomaly in outcome.output and "FORBIDDEN" in outcome.output
    assert outcome.results["anomalies"][anomaly][0]["ops"], "examples name the operations around them"
