"""Riding out a short Postgres outage: retry a write while the database is unreachable.

A job's row is its truth, so a job cannot go on for long without writing it. Writes that fail
because the database cannot be reached are retried for a bounded time (``db_retry_s``); after
that ``DatabaseUnreachable`` ends the job ``interrupted`` (or, before a job was claimed, puts its
message back in the queue).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_UNREACHABLE_MESSAGE = (
    "The database was unreachable for too long while this job ran. "
    "Retry the job to resume it from its last checkpoint."
)


class DatabaseUnreachable(Exception):
    """Postgres could not be reached within the retry budget."""


def is_unreachable(exc: BaseException) -> bool:
    """Is this the database being down or restarting (not a bad statement)?"""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retry_unreachable(fn: Callable[[], T], *, budget_s: float, what: str,
                      give_up: Callable[[], bool] | None = None) -> T:
    """``fn()``, retried with backoff while the database is unreachable, for ``budget_s`` at
    most (or until ``give_up()`` says so). Other errors are raised at once."""
    deadline = time.monotonic() + budget_s
    delay = 0.2
    warned = False
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            if time.monotonic() + delay > deadline or (give_up is not None and give_up()):
                raise DatabaseUnreachable(
                    f"the database was unreachable for {budget_s:g} s ({what})") from exc
            if not warned:
                log.warning("database unreachable (%s); retrying for up to %g s: %s",
                            what, budget_s, str(exc).splitlines()[0] if str(exc) else exc)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
