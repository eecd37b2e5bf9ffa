"""`studio` starts fast: importing the CLI pulls in no heavy library, and `--help` lists every
command group without importing its module."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("torch", "transformers", "sentence_transformers", "langchain", "langchain_core",
         "langgraph", "peft", "trl", "datasets", "jieba", "onnxruntime", "sqlalchemy", "alembic")

PROBE = """
import json, sys
import backend.cli
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def test_importing_the_cli_pulls_in_no_heavy_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    loaded = set(json.loads(out))
    assert not loaded & set(HEAVY), (
        f"`import backend.cli` imports {sorted(loaded & set(HEAVY))}: import them inside the "
        "command functions (docs/DEVELOPING.md, 'CLI start-up')")
    # group modules load only when their group runs
    assert "backend.cli.jobs" not in out


def test_help_lists_every_group_without_loading_it(studio_env: dict[str, str]) -> None:
    from backend.cli import COMMANDS

    res = subprocess.run([sys.executable, "-m", "backend.cli", "--help"], cwd=ROOT,
                         env=studio_env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for name in ("up", "worker", "api", "doctor", *COMMANDS):
        assert f" {name} " in res.stdout, name


def test_registered_help_matches_each_group() -> None:
    import typer

    from backend.cli import COMMANDS

    for name, (module, attr, help_text) in COMMANDS.items():
        target = getattr(importlib.import_module(module), attr)
        own = target.info.help if isinstance(target, typer.Typer) else (target.__doc__ or "")
        assert own.strip().splitlines()[0] == help_text, name
