"""Printing results: ``--json`` gives one JSON document on stdout, otherwise readable text."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
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


def echo_lines(lines: Iterable[str], empty: str = "") -> None:
    """Print each line; ``empty`` when there were none."""
    printed = False
    for line in lines:
        typer.echo(line)
        printed = True
    if not printed and empty:
        typer.echo(empty)


def fail(message: str, *, as_json: bool = False, code: int = 1) -> NoReturn:
    if as_json:
        sys.stdout.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
    else:
        typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


API_KEY_OPTION = typer.Option(
    None, "--api-key", metavar="KEY",
    help="Act as this API key's user in its workspace (default: the STUDIO_API_KEY setting; "
         "with neither, as the machine's operator).",
)
_cli_api_key: str | None = None


def global_options(api_key: str | None = API_KEY_OPTION) -> None:
    """Options of the ``studio`` command itself, before the group: ``studio --api-key K ...``."""
    global _cli_api_key
    _cli_api_key = api_key


def cli_actor() -> Actor:
    """Who the CLI acts as. With an API key (``--api-key`` or STUDIO_API_KEY): that key's user
    in the key's workspace, with that user's role. Without one: the machine's operator, i.e. the
    studio itself (whoever can run commands on the server already holds its data)."""
    from backend.accounts.actor import Actor
    from backend.config import get_settings

    key = _cli_api_key or get_settings().api_key
    if not key:
        return Actor.system()
    from backend.services.accounts import AuthError, actor_for_api_key

    try:
        return actor_for_api_key(key)
    except AuthError as err:
        fail(str(err), as_json="--json" in sys.argv[1:], code=2)


@contextmanager
def service_errors(as_json: bool = False) -> Iterator[None]:
    """Turn refusals and bad requests from services into a clear message and exit code 1."""
    from backend.accounts.actor import PermissionDenied

    try:
        yield
    except (PermissionDenied, PermissionError, LookupError, ValueError) as err:
        fail(str(err), as_json=as_json)
