"""Accounts against the real Postgres: first admin, logins, rate limiting, session expiry, API
keys, secrets and key rotation, the audit log; and no password or secret in clear in the
database or the logs."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from backend.accounts import tokens
from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.accounts.passwords import WeakPassword
from backend.accounts.ratelimit import LoginLocked, attempt_key
from backend.config import reset_settings
from backend.db import get_engine
from backend.services import accounts, audit, secrets, workspaces
from tests.accounts_helpers import (
    PASSWORD,
    SYSTEM,
    actor_of,
    dump_database,
    make_key,
    make_user,
    make_workspace,
    unique,
)


def _sql(stmt: str, **params: object) -> None:
    with get_engine().begin() as conn:
        conn.execute(text(stmt), params)


# ------------------------------------------------------------------------- first admin


def test_first_admin_only_once(fresh_database: str) -> None:
    assert accounts.needs_first_admin()
    admin = accounts.create_first_admin(username="root-admin", password=PASSWORD)
    assert admin.role == "admin" and [w.id for w in admin.workspaces] == [1]
    assert not accounts.needs_first_admin()
    with pytest.raises(accounts.AccountError, match="already exists"):
        accounts.create_first_admin(username="second-admin", password=PASSWORD)
    info = accounts.login(username="root-admin", password=PASSWORD)
    assert info.actor.is_admin and info.actor.user_id == admin.id


def test_password_rules_and_argon2_hash() -> None:
    with pytest.raises(WeakPassword, match="at least 8 characters"):
        make_user(password="short")
    name = unique("same")
    with pytest.raises(WeakPassword, match="user name"):
        accounts.create_user(actor=SYSTEM, username=name, password=name)
    with pytest.raises(accounts.AccountError, match="user name has"):
        accounts.create_user(actor=SYSTEM, username="bad name!", password=PASSWORD)
    user = make_user()
    with get_engine().connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE id = :i"),
                              {"i": user.id}).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(accounts.AccountError, match="already exists"):
        accounts.create_user(actor=SYSTEM, username=user.username.upper(), password=PASSWORD)


# ------------------------------------------------------------------------------ logins


def test_login_resume_logout() -> None:
    user = make_user(Role.builder)
    info = accounts.login(username=user.username.upper(), password=PASSWORD)  # any case
    assert info.actor == actor_of(user, 1)
    assert info.expires_at - datetime.now(UTC) > timedelta(hours=11)
    with get_engine().connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM studio_sessions WHERE user_id = :i"),
                              {"i": user.id}).scalar_one()
    assert stored == tokens.digest(info.token) and info.token not in stored
    resumed = accounts.resume_session(info.token)
    assert resumed is not None and resumed.actor == info.actor
    accounts.logout(info.token)
    assert accounts.resume_session(info.token) is None
    assert accounts.resume_session("sts-made-up") is None


def test_session_expires_and_follows_role_changes() -> None:
    user = make_user(Role.user)
    info = accounts.login(username=user.username, password=PASSWORD)
    accounts.update_user(actor=SYSTEM, user_id=user.id, role=Role.builder)
    resumed = accounts.resume_session(info.token)
    assert resumed is not None and resumed.actor.role == Role.builder
    _sql("UPDATE studio_sessions SET expires_at = now() - interval '1 second' "
         "WHERE token_hash = :h", h=tokens.digest(info.token))
    assert accounts.resume_session(info.token) is None


def test_disabled_user_cannot_log_in_and_loses_sessions() -> None:
    user = make_user()
    info = accounts.login(username=user.username, password=PASSWORD)
    accounts.update_user(actor=SYSTEM, user_id=user.id, is_active=False)
    assert accounts.resume_session(info.token) is None
    with pytest.raises(accounts.AuthError, match="disabled") as err:
        accounts.login(username=user.username, password=PASSWORD)
    assert err.value.reason == "disabled"


def test_wrong_passwords_are_rate_limited() -> None:
    user = make_user()
    for _ in range(5):
        with pytest.raises(accounts.AuthError, match="Wrong user name or password"):
            accounts.login(username=user.username, password="wrong password")
    with pytest.raises(LoginLocked, match=r"Try again in 5 minutes") as locked:
        accounts.login(username=user.username, password=PASSWORD)  # even the right one
    assert 240 < locked.value.retry_after_s <= 300
    # other users are not affected
    other = make_user()
    assert accounts.login(username=other.username, password=PASSWORD).actor.user_id == other.id
    # once the failures leave the 5-minute window, the right password works again
    _sql("UPDATE login_attempts SET at = at - interval '6 minutes' WHERE username = :u",
         u=attempt_key(user.username))
    assert accounts.login(username=user.username, password=PASSWORD).actor.user_id == user.id


def test_unknown_usernames_are_rate_limited_too() -> None:
    ghost = unique("ghost")
    for _ in range(5):
        with pytest.raises(accounts.AuthError):
            accounts.login(username=ghost, password="whatever-it-is")
    with pytest.raises(LoginLocked):
        accounts.login(username=ghost, password="whatever-it-is")
    # a name typed at the login form is kept only as a digest (it may be a misplaced password)
    assert ghost not in dump_database()
    assert audit.list_audit(actor=SYSTEM, actions=["login_failed"], limit=1)[0].username == \
        "(unknown user)"


def test_workspace_switch_only_to_memberships() -> None:
    ws_a, ws_b, ws_c = make_workspace("a"), make_workspace("b"), make_workspace("c")
    user = make_user(Role.user, [ws_a, ws_b])
    info = accounts.login(username=user.username, password=PASSWORD)
    assert {w.id for w in info.workspaces} == {ws_a, ws_b}
    switched = accounts.switch_workspace(token=info.token, workspace_id=ws_b)
    assert switched.actor.workspace_id == ws_b
    assert accounts.resume_session(info.token).actor.workspace_id == ws_b  # type: ignore[union-attr]
    with pytest.raises(PermissionDenied):
        accounts.switch_workspace(token=info.token, workspace_id=ws_c)
    workspaces.remove_member(actor=SYSTEM, workspace_id=ws_b, user_id=user.id)
    assert accounts.resume_session(info.token).actor.workspace_id == ws_a  # type: ignore[union-attr]


def test_last_admin_stays() -> None:
    admin = make_user(Role.admin)
    admins = [u for u in accounts.list_users(actor=SYSTEM) if u.role == "admin" and u.is_active]
    # demote every other admin through SQL so ``admin`` is the last one, then put them back
    others = [u.id for u in admins if u.id != admin.id]
    _sql("UPDATE users SET role = 'builder' WHERE id = ANY(:ids)", ids=others)
    try:
        with pytest.raises(accounts.AccountError, match="last active admin"):
            accounts.update_user(actor=SYSTEM, user_id=admin.id, role=Role.user)
        with pytest.raises(accounts.AccountError, match="last active admin"):
            accounts.update_user(actor=SYSTEM, user_id=admin.id, is_active=False)
        with pytest.raises(accounts.AccountError, match="last active admin"):
            accounts.delete_user(actor=SYSTEM, user_id=admin.id)
    finally:
        _sql("UPDATE users SET role = 'admin' WHERE id = ANY(:ids)", ids=others)


def test_own_password_change_needs_the_current_one() -> None:
    user = make_user()
    me = actor_of(user, 1)
    with pytest.raises(accounts.AuthError, match="current password"):
        accounts.set_password(actor=me, user_id=user.id, new_password="brand new secret",
                              current_password="not it")
    accounts.set_password(actor=me, user_id=user.id, new_password="brand new secret",
                          current_password=PASSWORD)
    assert accounts.login(username=user.username, password="brand new secret")


def test_user_language_is_saved() -> None:
    user = make_user()
    me = actor_of(user, 1)
    assert accounts.get_user_language(actor=me) is None
    accounts.set_user_language(actor=me, language="zh_CN")
    assert accounts.get_user_language(actor=me) == "zh_CN"
    assert accounts.login(username=user.username, password=PASSWORD).language == "zh_CN"
    with pytest.raises(accounts.AccountError):
        accounts.set_user_language(actor=me, language="../../etc")


# ---------------------------------------------------------------------------- API keys


def test_api_keys_act_as_their_user_in_their_workspace() -> None:
    ws = make_workspace()
    user = make_user(Role.builder, [1, ws])
    key = make_key(user, ws)
    assert key.startswith("sk-studio-")
    assert accounts.actor_for_api_key(key) == actor_of(user, ws)
    listed = accounts.list_api_keys(actor=actor_of(user, 1))
    assert [k.prefix for k in listed] == [key[:14]]
    assert listed[0].last_used_at is not None
    with get_engine().connect() as conn:
        row = conn.execute(text("SELECT key_hash, prefix FROM api_keys WHERE user_id = :i"),
                           {"i": user.id}).one()
    assert row.key_hash == tokens.digest(key) and key not in row.key_hash
    accounts.revoke_api_key(actor=actor_of(user, 1), key_id=listed[0].id)
    with pytest.raises(accounts.AuthError, match="revoked"):
        accounts.actor_for_api_key(key)
    with pytest.raises(accounts.AuthError, match="not valid"):
        accounts.actor_for_api_key("sk-studio-guessed")


def test_api_key_needs_membership_and_stops_when_user_leaves() -> None:
    ws = make_workspace()
    user = make_user(Role.user, [1])
    with pytest.raises(accounts.AccountError, match="not a member"):
        make_key(user, ws)
    workspaces.add_member(actor=SYSTEM, workspace_id=ws, user_id=user.id)
    key, home_key = make_key(user, ws), make_key(user, 1)
    workspaces.remove_member(actor=SYSTEM, workspace_id=ws, user_id=user.id)
    with pytest.raises(accounts.AuthError, match="has left"):
        accounts.actor_for_api_key(key)
    assert accounts.actor_for_api_key(home_key).workspace_id == 1
    accounts.update_user(actor=SYSTEM, user_id=user.id, is_active=False)
    with pytest.raises(accounts.AuthError, match="disabled account"):
        accounts.actor_for_api_key(home_key)


# ----------------------------------------------------------------------------- secrets


def test_secrets_are_encrypted_and_masked() -> None:
    ws = make_workspace()
    builder = actor_of(make_user(Role.builder, [ws]), ws)
    value = "sk-live-" + unique("provider")
    view = secrets.set_secret(actor=builder, name="OPENAI_API_KEY", value=value)
    assert view.masked == f"sk-…{value[-4:]}" and value not in view.masked
    assert [s.name for s in secrets.list_secrets(actor=builder)] == ["OPENAI_API_KEY"]
    assert secrets.reveal_secret(actor=builder, name="OPENAI_API_KEY") == value
    with get_engine().connect() as conn:
        stored = conn.execute(text("SELECT encrypted_value FROM secrets WHERE id = :i"),
                              {"i": view.id}).scalar_one()
    assert value not in stored
    secrets.set_secret(actor=builder, name="OPENAI_API_KEY", value=value + "2")
    assert secrets.reveal_secret(actor=builder, name="OPENAI_API_KEY") == value + "2"
    secrets.delete_secret(actor=builder, name="OPENAI_API_KEY")
    with pytest.raises(secrets.SecretNotFound):
        secrets.reveal_secret(actor=builder, name="OPENAI_API_KEY")


def rotate_and_back(actor: Actor, check: object = None) -> dict[str, int]:
    """Rotate to a new key, (optionally) check, and rotate back so later tests keep working."""
    old = os.environ["STUDIO_SECRET_KEY"]
    new = "rotated-secret-key-" + unique("k")
    report = secrets.rotate_secret_key(actor=actor, new_key=new)
    os.environ["STUDIO_SECRET_KEY"] = new
    reset_settings()
    try:
        if callable(check):
            check()
    finally:
        secrets.rotate_secret_key(actor=SYSTEM, new_key=old, old_key=new)
        os.environ["STUDIO_SECRET_KEY"] = old
        reset_settings()
    return report.reencrypted


def test_rotating_the_secret_key_reencrypts_everything() -> None:
    ws = make_workspace()
    builder = actor_of(make_user(Role.builder, [ws]), ws)
    secrets.set_secret(actor=builder, name="TOOL_HEADER", value="Bearer tool-token-123456")
    with get_engine().connect() as conn:
        before = conn.execute(text("SELECT encrypted_value FROM secrets WHERE workspace_id = :w"),
                              {"w": ws}).scalar_one()

    def check() -> None:
        assert secrets.reveal_secret(actor=builder, name="TOOL_HEADER") == \
            "Bearer tool-token-123456"
        with get_engine().connect() as conn:
            after = conn.execute(text(
                "SELECT encrypted_value FROM secrets WHERE workspace_id = :w"), {"w": ws}
            ).scalar_one()
        assert after != before

    counts = rotate_and_back(SYSTEM, check)
    assert counts["secrets.encrypted_value"] >= 1
    assert "models.api_key_encrypted" in counts  # the registry's column is found too
    assert secrets.reveal_secret(actor=builder, name="TOOL_HEADER") == "Bearer tool-token-123456"
    assert audit.list_audit(actor=SYSTEM, actions=["rotate"], limit=1)


def test_rotation_with_the_wrong_old_key_changes_nothing() -> None:
    ws = make_workspace()
    builder = actor_of(make_user(Role.builder, [ws]), ws)
    secrets.set_secret(actor=builder, name="KEEP", value="keep-this-value-1")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        secrets.rotate_secret_key(actor=SYSTEM, new_key="x" * 20, old_key="y" * 20)
    assert secrets.reveal_secret(actor=builder, name="KEEP") == "keep-this-value-1"


def test_rotation_rewrites_the_key_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Without STUDIO_SECRET_KEY the key lives in data_dir/secret.key: rotation replaces it."""
    old = os.environ["STUDIO_SECRET_KEY"]
    key_file = tmp_path / "secret.key"
    key_file.write_text(old)
    monkeypatch.delenv("STUDIO_SECRET_KEY")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    reset_settings()
    try:
        report = secrets.rotate_secret_key(actor=SYSTEM, new_key="file-key-" + "z" * 20)
        assert report.key_saved_to == str(key_file)
        assert key_file.read_text() == "file-key-" + "z" * 20
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        secrets.rotate_secret_key(actor=SYSTEM, new_key=old)
        assert key_file.read_text() == old
    finally:
        monkeypatch.undo()
        reset_settings()


# ------------------------------------------------------------------------------- audit


def test_audit_log_records_and_filters() -> None:
    ws = make_workspace()
    admin = actor_of(make_user(Role.admin, [ws]), ws)
    target = accounts.create_user(actor=admin, username=unique("audited"), password=PASSWORD,
                                  workspace_ids=[ws])
    accounts.update_user(actor=admin, user_id=target.id, role=Role.builder)
    accounts.delete_user(actor=admin, user_id=target.id)
    rows = audit.list_audit(actor=admin, username=admin.username)
    assert [r.action for r in rows] == ["delete", "update", "create"]
    assert rows[1].details["role"] == ["user", "builder"]
    assert all(r.target_type == "user" and r.target_id == str(target.id) for r in rows)
    assert audit.list_audit(actor=admin, search=target.username, actions=["create"])[0].id == \
        rows[2].id
    assert audit.list_audit(actor=admin, username=admin.username,
                            since=datetime.now(UTC) + timedelta(minutes=1)) == []
    facets = audit.audit_facets(actor=admin)
    assert {"create", "update", "delete"} <= set(facets["actions"])


def test_audit_scrubs_sensitive_details() -> None:
    from backend.accounts.audit import record

    record(SYSTEM, "update", "tool", 1, {"name": "weather", "headers": {"X-Key": "abc123"},
                                         "api_key": "sk-hidden-999", "nested": {"password": "p"}})
    row = audit.list_audit(actor=SYSTEM, target_type="tool", limit=1)[0]
    assert row.details == {"name": "weather", "headers": "***", "api_key": "***",
                           "nested": {"password": "***"}}


# -------------------------------------------------------------- nothing in clear anywhere


def test_no_password_token_key_or_secret_in_clear(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Plaintext-Password-" + unique("pw")
    secret_value = "Plaintext-Secret-" + unique("sv")
    ws = make_workspace()
    user = make_user(Role.builder, [ws], password=password)
    me = actor_of(user, ws)
    with pytest.raises(accounts.AuthError):
        accounts.login(username=user.username, password=password + "-typo")
    info = accounts.login(username=user.username, password=password)
    key = accounts.create_api_key(actor=me, name="ci").key
    accounts.actor_for_api_key(key)
    secrets.set_secret(actor=me, name="PROVIDER_KEY", value=secret_value)
    accounts.set_password(actor=me, user_id=user.id, new_password=password + "-new",
                          current_password=password)
    dump = dump_database()
    assert user.username in dump  # the dump does hold this user's rows
    for clear in (password, password + "-typo", password + "-new", info.token, key,
                  secret_value):
        assert clear not in dump
        assert clear not in caplog.text
