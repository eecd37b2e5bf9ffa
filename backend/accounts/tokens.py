"""Random tokens (studio sessions, API keys) and their digests. Only digests are stored."""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "sk-studio-"
SESSION_PREFIX = "sts-"
_SHOWN_PREFIX_LEN = len(API_KEY_PREFIX) + 4


def digest(token: str) -> str:
    """SHA-256 hex digest. Tokens carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def shown_prefix(api_key: str) -> str:
    """What lists show to recognise a key: ``sk-studio-AbCd``."""
    return api_key[:_SHOWN_PREFIX_LEN]
