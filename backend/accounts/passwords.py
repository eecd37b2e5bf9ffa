"""Password hashing with argon2id (a slow, memory-hard hash) and the password rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.config import get_settings

_hasher = PasswordHasher()
# Verified against when the username does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-but-just-as-slow")


class WeakPassword(ValueError):
    """The password breaks a rule; the message says which (``rule``: too_short, is_username)."""

    def __init__(self, message: str, rule: str, min_length: int = 0) -> None:
        super().__init__(message)
        self.rule = rule
        self.min_length = min_length


def check_password_rules(password: str, *, username: str = "") -> None:
    min_len = get_settings().password_min_length
    if len(password) < min_len:
        raise WeakPassword(f"The password must have at least {min_len} characters.",
                           "too_short", min_len)
    if username and password.strip().lower() == username.strip().lower():
        raise WeakPassword("The password must not be the user name.", "is_username")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches. With no hash (unknown user) it still spends the time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """The hash was made with weaker parameters than today's: rehash at the next login."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
