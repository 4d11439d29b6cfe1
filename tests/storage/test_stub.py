"""The `.pyi` stub of the native module matches the compiled module (mypy's stubtest)."""

import subprocess
import sys


def test_stub_matches_the_compiled_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "tidelog.storage._engine"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
