"""Printing results: ``--json`` gives one JSON document on stdout, otherwise readable text."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import typer

from backend.accounts.actor import Actor

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if is_dataclass(o) and not isinstance(o, type):
        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")
    else:
        human(data)


def fail(message: str, *, as_json: bool = False, code: int = 1) -> NoReturn:
    if as_json:
        sys.stdout.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
    else:
        typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def cli_actor() -> Actor:
    """Who the CLI acts as: the machine's operator, i.e. the studio itself."""
    return Actor.system()
