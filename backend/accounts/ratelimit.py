"""Login rate limiting: after N wrong passwords for a username within the window, logins for that
username are refused until the oldest of those failures leaves the window. Kept in Postgres, so it
holds across studio processes and restarts."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backend.config import get_settings
from backend.models.accounts import LoginAttempt


class LoginLocked(PermissionError):
    """Too many wrong passwords; ``retry_after_s`` says when to try again."""

    def __init__(self, username: str, retry_after_s: float) -> None:
        self.username = username
        self.retry_after_s = retry_after_s
        minutes = max(1, math.ceil(retry_after_s / 60))
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(
            f"Too many wrong passwords for {username!r}. Try again in {minutes} {unit}."
        )


def normalise(username: str) -> str:
    return username.strip().lower()[:100]


def attempt_key(username: str) -> str:
    """What the attempts table keeps for a user name: its digest, so a password typed into the
    user-name field by mistake is never stored in clear."""
    return hashlib.sha256(("login/" + normalise(username)).encode()).hexdigest()


def _window() -> timedelta:
    return timedelta(minutes=get_settings().login_lockout_minutes)


def check_not_locked(session: Session, username: str, *, now: datetime | None = None) -> None:
    """Raise ``LoginLocked`` when ``username`` has used up its failures in the window."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    name = attempt_key(username)
    since = now - _window()
    last_success = session.execute(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == name, LoginAttempt.succeeded.is_(True)
        )
    ).scalar_one_or_none()
    if last_success is not None and last_success > since:
        since = last_success
    failures = session.execute(
        select(LoginAttempt.at)
        .where(LoginAttempt.username == name, LoginAttempt.succeeded.is_(False),
               LoginAttempt.at > since)
        .order_by(LoginAttempt.at.desc())
        .limit(settings.login_max_failures)
    ).scalars().all()
    if len(failures) >= settings.login_max_failures:
        unlock_at = failures[-1] + _window()
        raise LoginLocked(username.strip(), max(1.0, (unlock_at - now).total_seconds()))


def record_attempt(session: Session, username: str, *, succeeded: bool) -> None:
    session.add(LoginAttempt(username=attempt_key(username), succeeded=succeeded,
                             at=datetime.now(UTC)))
    # keep the table small: nothing older than a day matters
    session.execute(
        delete(LoginAttempt).where(LoginAttempt.at < datetime.now(UTC) - timedelta(days=1))
    )
