"""The native module also builds alone with maturin, for Rust-only iteration."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

BINDING = Path(__file__).parents[2] / "rust" / "python"
BUILD_TIMEOUT_S = 600


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")
def test_maturin_builds_the_binding_crate_alone(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "--out", str(tmp_path)],
        cwd=BINDING,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.startswith("tidelog/storage/_engine") and name.endswith(".so") for name in names), names
