"""Accounts as the studio, the CLI and the API see them: the first admin, users and roles, logins
(studio sessions), API keys and each user's language.

Logging in (``login``, ``resume_session``, ``actor_for_api_key``) is how an actor comes to be, so
those take credentials instead of an actor. Everything else takes ``*, actor`` and checks it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from backend.accounts import passwords, ratelimit, tokens
from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.accounts.audit import record
from backend.config import get_settings
from backend.db import session_scope
from backend.models.accounts import ApiKey, Membership, StudioSession, User
from backend.models.workspaces import DEFAULT_WORKSPACE_ID, Workspace

log = logging.getLogger(__name__)

# letters of any language (用户, José), digits and . _ @ -, starting with a letter or digit
USERNAME_RE = re.compile(r"^[^\W_][\w.@-]{1,99}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Z][A-Za-z]{1,3})?$")
# a key's last use is written at most this often (not on every request)
LAST_USED_RESOLUTION = timedelta(seconds=60)


class AuthError(PermissionError):
    """Wrong credentials, an expired login, a revoked key. The message says what to do;
    ``reason`` names the case for pages that word it in the user's language."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class UserNotFound(LookupError):
    pass


class AccountError(ValueError):
    """A request about accounts that cannot be done as asked; the message says why."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WorkspaceRef:
    id: int
    name: str


@dataclass
class UserView:
    id: int
    username: str
    role: str
    is_active: bool
    language: str | None
    created_at: datetime
    last_login_at: datetime | None
    workspaces: list[WorkspaceRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("created_at", "last_login_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


@dataclass
class SessionInfo:
    """A studio login: who, in which workspace, until when, and where else they may switch."""

    token: str
    actor: Actor
    expires_at: datetime
    workspaces: list[WorkspaceRef]
    language: str | None


@dataclass
class ApiKeyView:
    id: int
    name: str
    prefix: str
    user_id: int
    username: str
    workspace_id: int
    workspace: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("created_at", "last_used_at", "revoked_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["revoked"] = self.revoked
        return d


@dataclass
class NewApiKey:
    """The key in clear exists only here, once: show it and forget it."""

    key: str
    view: ApiKeyView


# ----------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _check_username(username: str) -> str:
    name = unicodedata.normalize("NFC", username.strip())
    if not USERNAME_RE.match(name):
        raise AccountError(
            "A user name has 2 to 100 characters: letters, digits and . _ @ - "
            "(starting with a letter or digit).", "bad_username"
        )
    return name


def _check_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"Unknown role {role!r}: choose user, builder or admin.") from None


def _memberships(session: Session, user_id: int) -> list[WorkspaceRef]:
    rows = session.execute(
        select(Workspace.id, Workspace.name)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id)
        .order_by(Workspace.id)
    ).all()
    return [WorkspaceRef(id=i, name=n) for i, n in rows]


def _all_workspaces(session: Session) -> list[WorkspaceRef]:
    rows = session.execute(select(Workspace.id, Workspace.name).order_by(Workspace.id)).all()
    return [WorkspaceRef(id=i, name=n) for i, n in rows]


def _reachable_workspaces(session: Session, user: User) -> list[WorkspaceRef]:
    """Where the user may work: admins everywhere, others in their memberships."""
    if user.role == Role.admin.value:
        return _all_workspaces(session)
    return _memberships(session, user.id)


def _user_view(session: Session, user: User) -> UserView:
    return UserView(
        id=user.id, username=user.username, role=user.role, is_active=user.is_active,
        language=user.language, created_at=user.created_at, last_login_at=user.last_login_at,
        workspaces=_memberships(session, user.id),
    )


def _load_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"No user #{user_id}.")
    return user


def _user_by_name(session: Session, username: str) -> User | None:
    return session.execute(
        select(User).where(func.lower(User.username) == username.strip().lower())
    ).scalar_one_or_none()


def find_user(*, actor: Actor, username: str) -> UserView:
    """A user by name (admins), e.g. for the CLI's ``--user NAME`` options."""
    actor.require_role(Role.admin, "look up users")
    with session_scope() as session:
        user = _user_by_name(session, username)
        if user is None:
            raise UserNotFound(f"No user named {username!r}.")
        return _user_view(session, user)


def _active_admins(session: Session) -> int:
    return session.execute(
        select(func.count()).select_from(User).where(
            User.role == Role.admin.value, User.is_active.is_(True)
        )
    ).scalar_one()


def _check_workspaces_exist(session: Session, workspace_ids: list[int]) -> None:
    found = set(session.execute(
        select(Workspace.id).where(Workspace.id.in_(workspace_ids))
    ).scalars())
    missing = sorted(set(workspace_ids) - found)
    if missing:
        raise AccountError(f"No workspace #{missing[0]}.")


def _actor_of(user: User, workspace_id: int) -> Actor:
    return Actor(user_id=user.id, username=user.username, role=Role(user.role),
                 workspace_id=workspace_id)


# ------------------------------------------------------------------------ first start


def _admin_exists(session: Session) -> bool:
    return session.execute(
        select(func.count()).select_from(User).where(User.role == Role.admin.value)
    ).scalar_one() > 0


def needs_first_admin() -> bool:
    """True on first start (no admin yet): the studio then asks for the first admin."""
    with session_scope() as session:
        return not _admin_exists(session)


def create_first_admin(*, username: str, password: str) -> UserView:
    """The first admin, member of the default workspace. Refused once an admin exists."""
    name = _check_username(username)
    passwords.check_password_rules(password, username=name)
    pw_hash = passwords.hash_password(password)
    with session_scope() as session:
        # one first admin even if two browsers submit the form at once
        session.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
        if _admin_exists(session):
            raise AccountError("The first admin already exists: log in, or ask an admin.",
                               "admin_exists")
        if _user_by_name(session, name) is not None:
            raise AccountError(f"A user named {name!r} already exists.", "user_exists")
        user = User(username=name, password_hash=pw_hash, role=Role.admin.value)
        session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, workspace_id=DEFAULT_WORKSPACE_ID))
        session.flush()
        record(_actor_of(user, DEFAULT_WORKSPACE_ID), "create", "user", user.id,
               {"username": name, "role": "admin", "first_admin": True}, session=session)
        return _user_view(session, user)


# ------------------------------------------------------------------------------ users


def create_user(
    *,
    actor: Actor,
    username: str,
    password: str,
    role: Role | str = Role.user,
    workspace_ids: list[int] | None = None,
) -> UserView:
    """A new account (admins only), member of ``workspace_ids`` (default: the actor's)."""
    actor.require_role(Role.admin, "create users")
    name = _check_username(username)
    the_role = _check_role(role)
    passwords.check_password_rules(password, username=name)
    wanted = sorted(set(workspace_ids or [actor.workspace_id]))
    pw_hash = passwords.hash_password(password)
    with session_scope() as session:
        if _user_by_name(session, name) is not None:
            raise AccountError(f"A user named {name!r} already exists.", "user_exists")
        _check_workspaces_exist(session, wanted)
        user = User(username=name, password_hash=pw_hash, role=the_role.value)
        session.add(user)
        session.flush()
        for ws in wanted:
            session.add(Membership(user_id=user.id, workspace_id=ws))
        session.flush()
        record(actor, "create", "user", user.id,
               {"username": name, "role": the_role.value, "workspaces": wanted}, session=session)
        return _user_view(session, user)


def list_users(*, actor: Actor, search: str = "", workspace_id: int | None = None,
               include_inactive: bool = True) -> list[UserView]:
    actor.require_role(Role.admin, "list users")
    with session_scope() as session:
        stmt = select(User).order_by(User.username)
        if search:
            stmt = stmt.where(User.username.ilike(f"%{search.strip()}%"))
        if workspace_id is not None:
            stmt = stmt.join(Membership, Membership.user_id == User.id).where(
                Membership.workspace_id == workspace_id
            )
        if not include_inactive:
            stmt = stmt.where(User.is_active.is_(True))
        return [_user_view(session, u) for u in session.execute(stmt).scalars()]


def get_user(*, actor: Actor, user_id: int) -> UserView:
    """Admins see anyone; others see themselves."""
    if actor.user_id != user_id:
        actor.require_role(Role.admin, "see other users")
    with session_scope() as session:
        return _user_view(session, _load_user(session, user_id))


def update_user(*, actor: Actor, user_id: int, role: Role | str | None = None,
                is_active: bool | None = None) -> UserView:
    """Change a user's role or (de)activate them. The last active admin stays an admin."""
    actor.require_role(Role.admin, "change users")
    with session_scope() as session:
        session.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
        user = _load_user(session, user_id)
        changes: dict[str, Any] = {}
        new_role = _check_role(role).value if role is not None else user.role
        new_active = user.is_active if is_active is None else is_active
        losing_admin = user.role == Role.admin.value and user.is_active and (
            new_role != Role.admin.value or not new_active
        )
        if losing_admin and _active_admins(session) <= 1:
            raise AccountError(
                f"{user.username} is the last active admin: make another admin first."
            )
        if new_role != user.role:
            changes["role"] = [user.role, new_role]
            user.role = new_role
        if new_active != user.is_active:
            changes["is_active"] = [user.is_active, new_active]
            user.is_active = new_active
            if not new_active:  # a disabled account's logins end now
                session.execute(delete(StudioSession).where(StudioSession.user_id == user.id))
        session.flush()
        if changes:
            record(actor, "update", "user", user.id, {"username": user.username, **changes},
                   session=session)
        return _user_view(session, user)


def set_password(*, actor: Actor, user_id: int, new_password: str,
                 current_password: str | None = None) -> None:
    """Admins reset anyone's password (their logins end); a user changes their own with the
    current password."""
    own = actor.user_id == user_id
    if not own:
        actor.require_role(Role.admin, "reset other users' passwords")
    with session_scope() as session:
        user = _load_user(session, user_id)
        if own and not actor.is_admin and not passwords.verify_password(
            user.password_hash, current_password or ""
        ):
            raise AuthError("The current password is wrong.", "current_password")
        passwords.check_password_rules(new_password, username=user.username)
        user.password_hash = passwords.hash_password(new_password)
        if not own:
            session.execute(delete(StudioSession).where(StudioSession.user_id == user.id))
        record(actor, "update", "user", user.id, {"username": user.username,
                                                   "changed": "password"}, session=session)


def delete_user(*, actor: Actor, user_id: int) -> None:
    """Remove an account with its logins and API keys. What it made stays in its workspaces."""
    actor.require_role(Role.admin, "delete users")
    if actor.user_id == user_id:
        raise AccountError("You cannot delete your own account; ask another admin.")
    with session_scope() as session:
        session.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
        user = _load_user(session, user_id)
        if user.role == Role.admin.value and user.is_active and _active_admins(session) <= 1:
            raise AccountError(f"{user.username} is the last active admin.")
        name = user.username
        session.delete(user)
        record(actor, "delete", "user", user_id, {"username": name}, session=session)


def get_user_language(*, actor: Actor) -> str | None:
    """The language saved on the actor's account (None: never chosen, or no account)."""
    if actor.user_id is None:
        return None
    with session_scope() as session:
        user = session.get(User, actor.user_id)
        return user.language if user is not None else None


def set_user_language(*, actor: Actor, language: str | None) -> None:
    """Save the actor's own language (``en``, ``zh_CN`` ...); any role may."""
    if actor.user_id is None:
        return
    if language is not None and not LANGUAGE_RE.match(language):
        raise AccountError(f"{language!r} is not a language code such as en or zh_CN.")
    with session_scope() as session:
        user = _load_user(session, actor.user_id)
        user.language = language


# --------------------------------------------------------------------- studio logins


def login(*, username: str, password: str) -> SessionInfo:
    """Check the password (rate-limited per username) and open a studio session."""
    settings = get_settings()
    failure: Exception | None = None
    info: SessionInfo | None = None
    with session_scope() as session:
        ratelimit.check_not_locked(session, username)
        user = _user_by_name(session, username)
        ok = passwords.verify_password(user.password_hash if user else None, password)
        ratelimit.record_attempt(session, username, succeeded=ok)
        if not ok or user is None:
            # an unknown name is not written down: it may be a password typed in the wrong field
            name = user.username if user else "(unknown user)"
            record(Actor(user_id=user.id if user else None, username=name, role=Role.user,
                         workspace_id=DEFAULT_WORKSPACE_ID),
                   "login_failed", "user", user.id if user else None, {}, session=session)
            failure = AuthError("Wrong user name or password.", "wrong_password")
        elif not user.is_active:
            failure = AuthError("This account is disabled. Ask an admin to enable it.", "disabled")
        else:
            reachable = _reachable_workspaces(session, user)
            if not reachable:
                failure = AuthError(
                    "Your account belongs to no workspace yet. Ask an admin to add you to one.",
                    "no_workspace",
                )
            else:
                ids = [w.id for w in reachable]
                workspace_id = DEFAULT_WORKSPACE_ID if DEFAULT_WORKSPACE_ID in ids else ids[0]
                if passwords.needs_rehash(user.password_hash):
                    user.password_hash = passwords.hash_password(password)
                user.last_login_at = _now()
                token = tokens.new_session_token()
                expires = _now() + timedelta(hours=settings.session_hours)
                session.add(StudioSession(token_hash=tokens.digest(token), user_id=user.id,
                                          workspace_id=workspace_id, expires_at=expires))
                # expired sessions are of no use to anyone
                session.execute(delete(StudioSession).where(StudioSession.expires_at < _now()))
                actor = _actor_of(user, workspace_id)
                record(actor, "login", "user", user.id, {}, session=session)
                info = SessionInfo(token=token, actor=actor, expires_at=expires,
                                   workspaces=reachable, language=user.language)
    if failure is not None:
        raise failure
    assert info is not None
    return info


def _session_row(session: Session, token: str) -> tuple[StudioSession, User] | None:
    if not token:
        return None
    row = session.execute(
        select(StudioSession, User)
        .join(User, User.id == StudioSession.user_id)
        .where(StudioSession.token_hash == tokens.digest(token))
    ).first()
    if row is None:
        return None
    studio_session, user = row
    if studio_session.expires_at <= _now() or not user.is_active:
        return None
    return studio_session, user


def resume_session(token: str) -> SessionInfo | None:
    """The login behind ``token``, with the user's current role; None when it expired, was
    ended, or the user was disabled or lost their last workspace."""
    with session_scope() as session:
        found = _session_row(session, token)
        if found is None:
            return None
        studio_session, user = found
        reachable = _reachable_workspaces(session, user)
        ids = [w.id for w in reachable]
        if not ids:
            return None
        if studio_session.workspace_id not in ids:  # removed from it meanwhile
            studio_session.workspace_id = ids[0]
        return SessionInfo(token=token, actor=_actor_of(user, studio_session.workspace_id),
                           expires_at=studio_session.expires_at, workspaces=reachable,
                           language=user.language)


def switch_workspace(*, token: str, workspace_id: int) -> SessionInfo:
    """Work in another workspace the user belongs to (admins: any)."""
    with session_scope() as session:
        found = _session_row(session, token)
        if found is None:
            raise AuthError("Your login has expired. Log in again.", "expired")
        studio_session, user = found
        if workspace_id not in [w.id for w in _reachable_workspaces(session, user)]:
            raise PermissionDenied("You are not a member of that workspace.")
        studio_session.workspace_id = workspace_id
    info = resume_session(token)
    if info is None:
        raise AuthError("Your login has expired. Log in again.", "expired")
    return info


def logout(token: str) -> None:
    with session_scope() as session:
        found = session.execute(
            select(StudioSession, User).join(User, User.id == StudioSession.user_id)
            .where(StudioSession.token_hash == tokens.digest(token))
        ).first()
        if found is None:
            return
        studio_session, user = found
        record(_actor_of(user, studio_session.workspace_id), "logout", "user", user.id, {},
               session=session)
        session.delete(studio_session)


# --------------------------------------------------------------------------- API keys


def _key_view(key: ApiKey, username: str, workspace: str) -> ApiKeyView:
    return ApiKeyView(
        id=key.id, name=key.name, prefix=key.prefix, user_id=key.user_id, username=username,
        workspace_id=key.workspace_id, workspace=workspace, created_at=key.created_at,
        last_used_at=key.last_used_at, revoked_at=key.revoked_at,
    )


def create_api_key(*, actor: Actor, name: str = "", user_id: int | None = None,
                   workspace_id: int | None = None) -> NewApiKey:
    """A key acting as ``user_id`` (default: the actor) in ``workspace_id`` (default: the
    actor's workspace). Keys for other users are for admins."""
    target_id = actor.user_id if user_id is None else user_id
    if target_id is None:
        raise AccountError("Say which user the key acts as (the studio itself has no keys).")
    if target_id != actor.user_id:
        actor.require_role(Role.admin, "create API keys for other users")
    ws = actor.workspace_id if workspace_id is None else workspace_id
    if target_id == actor.user_id:
        actor.require_workspace(ws, "That workspace")
    with session_scope() as session:
        user = _load_user(session, target_id)
        if not user.is_active:
            raise AccountError(f"{user.username} is disabled; enable the account first.")
        workspace = session.get(Workspace, ws)
        if workspace is None:
            raise AccountError(f"No workspace #{ws}.")
        if ws not in [w.id for w in _reachable_workspaces(session, user)]:
            raise AccountError(f"{user.username} is not a member of workspace {workspace.name!r}.")
        raw = tokens.new_api_key()
        key = ApiKey(user_id=user.id, workspace_id=ws, name=name.strip()[:200],
                     prefix=tokens.shown_prefix(raw), key_hash=tokens.digest(raw))
        session.add(key)
        session.flush()
        session.refresh(key)
        record(actor, "create", "api_key", key.id,
               {"name": key.name, "prefix": key.prefix, "for_user": user.username},
               workspace_id=ws, session=session)
        return NewApiKey(key=raw, view=_key_view(key, user.username, workspace.name))


def list_api_keys(*, actor: Actor, user_id: int | None = None,
                  include_revoked: bool = False) -> list[ApiKeyView]:
    """Admins see every key (or one user's); others see their own."""
    if not actor.is_admin:
        if user_id not in (None, actor.user_id):
            actor.require_role(Role.admin, "see other users' API keys")
        user_id = actor.user_id
        if user_id is None:
            return []
    with session_scope() as session:
        stmt = (
            select(ApiKey, User.username, Workspace.name)
            .join(User, User.id == ApiKey.user_id)
            .join(Workspace, Workspace.id == ApiKey.workspace_id)
            .order_by(ApiKey.id.desc())
        )
        if user_id is not None:
            stmt = stmt.where(ApiKey.user_id == user_id)
        if not include_revoked:
            stmt = stmt.where(ApiKey.revoked_at.is_(None))
        return [_key_view(k, u, w) for k, u, w in session.execute(stmt).all()]


def revoke_api_key(*, actor: Actor, key_id: int) -> ApiKeyView:
    with session_scope() as session:
        row = session.execute(
            select(ApiKey, User.username, Workspace.name)
            .join(User, User.id == ApiKey.user_id)
            .join(Workspace, Workspace.id == ApiKey.workspace_id)
            .where(ApiKey.id == key_id)
        ).first()
        if row is None or (not actor.is_admin and row[0].user_id != actor.user_id):
            raise LookupError(f"No API key #{key_id}.")
        key, username, workspace = row
        if key.revoked_at is None:
            key.revoked_at = _now()
            record(actor, "revoke", "api_key", key.id, {"prefix": key.prefix,
                                                         "for_user": username},
                   workspace_id=key.workspace_id, session=session)
        return _key_view(key, username, workspace)


def actor_for_api_key(key: str) -> Actor:
    """The actor an API key acts as. Raises ``AuthError`` saying what is wrong with it."""
    key = (key or "").strip()
    if not key:
        raise AuthError("No API key given. Send it as 'Authorization: Bearer <key>'.")
    with session_scope() as session:
        row = session.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == tokens.digest(key))
        ).first()
        if row is None:
            raise AuthError("This API key is not valid. Create one on the Admin page or with "
                            "`studio keys create`.")
        api_key, user = row
        if api_key.revoked_at is not None:
            raise AuthError(f"The API key {api_key.prefix}… was revoked.")
        if not user.is_active:
            raise AuthError(f"The API key {api_key.prefix}… belongs to a disabled account.")
        if not actor_may_use_workspace(session, user, api_key.workspace_id):
            raise AuthError(f"The API key {api_key.prefix}… is for a workspace its user has left.")
        now = _now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            api_key.last_used_at = now
        return _actor_of(user, api_key.workspace_id)


def actor_may_use_workspace(session: Session, user: User, workspace_id: int) -> bool:
    return workspace_id in [w.id for w in _reachable_workspaces(session, user)]


def user_workspaces(*, actor: Actor) -> list[WorkspaceRef]:
    """The workspaces the actor may switch to (admins and the studio itself: all)."""
    with session_scope() as session:
        if actor.user_id is None:
            return _all_workspaces(session) if actor.is_admin else []
        user = session.get(User, actor.user_id)
        return _reachable_workspaces(session, user) if user is not None else []

