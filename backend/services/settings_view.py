"""The settings as a person may read them: every value, its variable and what it does, with
secrets never shown (keys and tokens are only said to be set; passwords in URLs are masked)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from backend.accounts.actor import Actor, Role
from backend.config import get_settings

# a setting named like this (or ending in _<this>) is a secret: its value never leaves here
SECRET_MARKERS = ("secret", "key", "token", "password")
URL_FIELDS = ("database_url", "redis_url")


@dataclass(frozen=True)
class SettingValue:
    name: str
    env_var: str
    #: the value as text; None for a secret, or an empty URL (embedded service)
    value: str | None
    #: for secrets: "set", "generated" (secret key kept in the data dir) or "unset";
    #: for URLs: "embedded" when empty; else "value"
    state: str
    description: str
    is_default: bool


def mask_url(url: str) -> str:
    """``postgresql://user:pw@host/db`` -> ``postgresql://user:***@host/db``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _is_secret(name: str) -> bool:
    """``secret_key``, ``api_key``, ``*_token``, ``*_password``: not ``password_min_length``."""
    return any(name == marker or name.endswith("_" + marker) for marker in SECRET_MARKERS)


def settings_overview(*, actor: Actor) -> list[SettingValue]:
    """Every setting with its ``STUDIO_`` variable; admins only (paths and hosts of the server)."""
    actor.require_role(Role.admin, "read the studio's settings")
    settings = get_settings()
    prefix = str(settings.model_config.get("env_prefix", "STUDIO_"))
    rows: list[SettingValue] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = default.expanduser().resolve()
        shown: str | None
        if _is_secret(name):
            shown = None
            state = "set" if value else ("generated" if name == "secret_key" else "unset")
        elif name in URL_FIELDS:
            shown = mask_url(value) if value else None
            state = "value" if value else "embedded"
        else:
            shown = "" if value is None else str(value)
            state = "value"
        rows.append(SettingValue(
            name=name, env_var=f"{prefix}{name.upper()}", value=shown, state=state,
            description=field.description or "", is_default=value == default,
        ))
    return rows


@dataclass(frozen=True)
class EmbeddedServices:
    postgres: bool
    redis: bool


def embedded_services() -> EmbeddedServices:
    """Whether Postgres and Redis are the studio's own embedded ones. ``studio up`` hands their
    URLs to its children, so a URL that points into the data folder counts as embedded too."""
    settings = get_settings()
    embedded_dir = str(settings.embedded_dir)

    def own(url: str | None, marker: str) -> bool:
        return not url or embedded_dir in url or marker in url

    return EmbeddedServices(
        postgres=own(settings.database_url, embedded_dir),
        redis=own(settings.redis_url, "studio-redis-"),
    )
