"""Layering (import-linter contracts in .importlinter) and ruff run as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_import_layers_hold() -> None:
    res = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_ruff_clean() -> None:
    res = subprocess.run([str(BIN / "ruff"), "check", "backend", "studio", "tests", "bench", "scripts"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_mypy_backend_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "mypy", "backend"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]
