"""Secrets at rest (provider API keys, HTTP-tool headers): Fernet, keyed from the settings' secret
key. The database only ever holds the token; ``mask`` is what pages show."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from backend.config import get_settings


class SecretError(ValueError):
    """A stored secret cannot be decrypted with the current secret key."""


def _fernet(secret_key: str | None = None) -> Fernet:
    key = secret_key or get_settings().resolved_secret_key()
    digest = hashlib.sha256(("llm-studio/secrets/" + key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str, *, secret_key: str | None = None) -> str:
    return _fernet(secret_key).encrypt(plaintext.encode()).decode()


def decrypt(token: str, *, secret_key: str | None = None) -> str:
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretError(
            "A stored secret cannot be decrypted: the studio's secret key changed without "
            "`studio secrets rotate`. Re-enter the secret."
        ) from None


def mask(plaintext: str) -> str:
    """``sk-…abcd``: enough to recognise a key, not enough to use it."""
    if len(plaintext) <= 8:
        return "••••"
    return f"{plaintext[:3]}…{plaintext[-4:]}"
