"""The repository itself: layer rules that import-linter cannot see, and hygiene."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "python" / "tidelog"
ENGINE_IMPORT = re.compile(
    r"^\s*(from\s+tidelog\.storage(\._engine|\s+import\s+_engine)|import\s+tidelog\.storage\._engine)"
)
# Home and work directories of the machines this was built on (spelled in pieces, so this file
# does not match itself).
MACHINE_PATHS = re.compile("|".join(["/" + "work" + "/", "/" + "root" + "/", "/" + "home" + "/[a-z]"]))


def test_only_the_storage_layer_imports_the_native_engine() -> None:
    """The compiled module is invisible to import-linter (no .py), so this reads the sources."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "storage"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ENGINE_IMPORT.match(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_no_absolute_path_of_a_machine_in_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".png", ".lock") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {m.group(0)}" for m in MACHINE_PATHS.finditer(text)]
    assert not offenders, offenders
