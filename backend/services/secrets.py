"""Workspace secrets (provider API keys, HTTP-tool headers): stored encrypted, shown masked; and
rotation of the studio's secret key, which re-encrypts every encrypted column in the database.

An encrypted column is one marked ``mapped_column(..., info={"encrypted": True})`` or named
``*_encrypted`` / ``encrypted_value`` (the model registry's ``api_key_encrypted`` is one).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, select, update
from sqlalchemy.orm import Session

import backend.models  # noqa: F401 - every table registered
from backend.accounts import secrets as crypto
from backend.accounts.actor import Actor, Role
from backend.accounts.audit import record
from backend.config import get_settings, reset_settings
from backend.db import session_scope
from backend.models.accounts import Secret
from backend.models.base import Base

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


class SecretNotFound(LookupError):
    pass


@dataclass
class SecretView:
    id: int
    workspace_id: int
    name: str
    masked: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["updated_at"] = self.updated_at.isoformat()
        return d


def _masked(token: str) -> str:
    try:
        return crypto.mask(crypto.decrypt(token))
    except crypto.SecretError:
        return "(unreadable: the secret key changed)"


def _view(s: Secret) -> SecretView:
    return SecretView(id=s.id, workspace_id=s.workspace_id, name=s.name,
                      masked=_masked(s.encrypted_value), created_at=s.created_at,
                      updated_at=s.updated_at)


def _check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name):
        raise ValueError("A secret's name has letters, digits and . _ : - (e.g. OPENAI_API_KEY).")
    return name


def _find(session: Session, workspace_id: int, name: str) -> Secret | None:
    return session.execute(
        select(Secret).where(Secret.workspace_id == workspace_id, Secret.name == name)
    ).scalar_one_or_none()


def _get(session: Session, workspace_id: int, name: str) -> Secret:
    secret = _find(session, workspace_id, name.strip())
    if secret is None:
        raise SecretNotFound(f"No secret named {name!r} in this workspace.")
    return secret


def _workspace(actor: Actor, workspace_id: int | None) -> int:
    """The workspace a call is about (the actor's own by default), once the actor may use it."""
    ws = actor.workspace_id if workspace_id is None else workspace_id
    actor.require_workspace(ws, "That workspace")
    return ws


def set_secret(*, actor: Actor, name: str, value: str,
               workspace_id: int | None = None) -> SecretView:
    """Create or replace a secret of a workspace (builders and admins)."""
    actor.require_role(Role.builder, "manage secrets")
    ws = _workspace(actor, workspace_id)
    name = _check_name(name)
    if not value:
        raise ValueError("The secret's value is empty.")
    with session_scope() as session:
        secret = _find(session, ws, name)
        action = "update" if secret is not None else "create"
        if secret is None:
            secret = Secret(workspace_id=ws, name=name, encrypted_value=crypto.encrypt(value),
                            created_by=actor.user_id)
            session.add(secret)
        else:
            secret.encrypted_value = crypto.encrypt(value)
        session.flush()
        session.refresh(secret)
        record(actor, action, "secret", secret.id, {"name": name}, workspace_id=ws,
               session=session)
        return _view(secret)


def list_secrets(*, actor: Actor, workspace_id: int | None = None) -> list[SecretView]:
    """The workspace's secrets, masked."""
    actor.require_role(Role.builder, "see secrets")
    ws = _workspace(actor, workspace_id)
    with session_scope() as session:
        rows = session.execute(
            select(Secret).where(Secret.workspace_id == ws).order_by(Secret.name)
        ).scalars()
        return [_view(s) for s in rows]


def reveal_secret(*, actor: Actor, name: str, workspace_id: int | None = None) -> str:
    """The value in clear, for code that must use it (a provider call, a tool's header).
    Never show it on a page or print it."""
    actor.require_role(Role.builder, "use secrets")
    ws = _workspace(actor, workspace_id)
    with session_scope() as session:
        secret = _get(session, ws, name)
        return crypto.decrypt(secret.encrypted_value)


def delete_secret(*, actor: Actor, name: str, workspace_id: int | None = None) -> None:
    actor.require_role(Role.builder, "delete secrets")
    ws = _workspace(actor, workspace_id)
    with session_scope() as session:
        secret = _get(session, ws, name)
        record(actor, "delete", "secret", secret.id, {"name": secret.name}, workspace_id=ws,
               session=session)
        session.delete(secret)


# ------------------------------------------------------------------------ key rotation


def encrypted_columns() -> list[tuple[Table, Column[Any]]]:
    """Every column holding Fernet tokens, found in the ORM metadata."""
    found: list[tuple[Table, Column[Any]]] = []
    for table in Base.metadata.sorted_tables:
        for col in table.columns:
            if col.info.get("encrypted") or col.name.endswith("_encrypted") or (
                col.name == "encrypted_value"
            ):
                found.append((table, col))
    return found


@dataclass
class RotationReport:
    reencrypted: dict[str, int] = field(default_factory=dict)
    key_saved_to: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rotate_secret_key(*, actor: Actor, new_key: str, old_key: str | None = None) -> RotationReport:
    """Re-encrypt every encrypted value with ``new_key`` (all or nothing), then make it the key.

    When the key lives in ``data_dir/secret.key`` (the default) the file is replaced; when it
    comes from ``STUDIO_SECRET_KEY`` the operator must set the new value for every process."""
    actor.require_role(Role.admin, "rotate the secret key")
    settings = get_settings()
    if len(new_key) < 16:
        raise ValueError("The new secret key needs at least 16 characters.")
    current = old_key or settings.resolved_secret_key()
    if new_key == current:
        raise ValueError("The new secret key is the same as the current one.")
    key_file: Path | None = None if settings.secret_key else settings.data_dir / "secret.key"
    staged: Path | None = None
    if key_file is not None:  # written before the commit, renamed in place after it
        staged = key_file.with_suffix(".key.new")
        staged.write_text(new_key)
        staged.chmod(0o600)
    report = RotationReport()
    try:
        with session_scope() as session:
            for table, col in encrypted_columns():
                pk = list(table.primary_key.columns)
                rows = session.execute(
                    select(*pk, col).where(col.is_not(None)).with_for_update()
                ).all()
                for row in rows:
                    token = row[-1]
                    if not token:
                        continue
                    try:
                        plain = crypto.decrypt(token, secret_key=current)
                    except crypto.SecretError:
                        ident = ", ".join(str(v) for v in row[:-1])
                        raise crypto.SecretError(
                            f"{table.name}.{col.name} of row {ident} cannot be decrypted with the "
                            "current key; nothing was changed. Pass the key it was written with "
                            "as --old-key, or delete that value."
                        ) from None
                    cond = [c == v for c, v in zip(pk, row[:-1], strict=True)]
                    session.execute(update(table).where(*cond).values(
                        {col.name: crypto.encrypt(plain, secret_key=new_key)}))
                report.reencrypted[f"{table.name}.{col.name}"] = len(rows)
            record(actor, "rotate", "secret_key", None,
                   {"reencrypted": report.reencrypted}, session=session)
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    if key_file is not None and staged is not None:
        os.replace(staged, key_file)
        report.key_saved_to = str(key_file)
        report.message = f"The new key is in {key_file}; restart the studio's processes."
    else:
        report.message = ("Set STUDIO_SECRET_KEY to the new key for every studio process "
                          "(studio, API, workers) and restart them.")
    reset_settings()
    return report
