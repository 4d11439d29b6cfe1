"""The package type-checks under `mypy --strict` (configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_mypy_strict_passes() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "python/tidelog"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
