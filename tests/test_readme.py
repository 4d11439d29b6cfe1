"""The README's Python examples run as written (except the fixture sketch, which needs pytest's
fixture and ends in `...`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_readme_examples_run() -> None:
    blocks = [b for b in BLOCK.findall((ROOT / "README.md").read_text()) if "tidelog_bootstrap" not in b]
    assert len(blocks) >= 2, "the README lost its examples"
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, block + result.stdout + result.stderr
