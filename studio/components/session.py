"""Who is using the studio in this browser session.

A login (``sign_in``) keeps a session token, its expiry and the user's Actor in
``st.session_state``. ``studio/app.py`` calls ``refresh_session()`` on every run: it checks the
token against the database (expired, logged out elsewhere, account disabled, role changed) and
keeps ``st.session_state["actor"]`` in step, or clears it.

``current_actor()`` is what pages call. When nobody is logged in it shows a short "please log in"
note and stops the page (``st.stop()``): a page never runs without an actor. Session state lives
on the server, so only code can put an actor there; page tests do it directly::

    at = AppTest.from_file("studio/pages/jobs.py")
    at.session_state["actor"] = Actor(user_id=1, username="ann", role=Role.builder, workspace_id=1)

(an actor set without a token is taken as it is, which is what such tests want).

The token is also kept in a cookie (``studio_session``, until the login expires), so reloading
the page or opening a new tab keeps the user logged in; logging out clears it. The database holds
only the token's digest, and the cookie is worthless once the login ends there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import streamlit as st

from backend.accounts.actor import Actor, Role
from studio.i18n import _

ACTOR_KEY = "actor"
TOKEN_KEY = "session_token"
EXPIRES_KEY = "session_expires_at"
WORKSPACES_KEY = "session_workspaces"
SESSION_COOKIE = "studio_session"
_COOKIE_PENDING = "_session_cookie_pending"  # ("set", token, seconds) or ("clear",)
_COOKIE_IGNORED = "_session_cookie_ignored"  # logged out here: never resume from the old cookie
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{20,200}$")


def signed_in_actor() -> Actor | None:
    """The logged-in actor, or None (for code that must also run before login)."""
    actor = st.session_state.get(ACTOR_KEY)
    return actor if isinstance(actor, Actor) else None


def current_actor() -> Actor:
    """The logged-in user's actor. Nobody logged in: a note, and the page stops here."""
    actor = signed_in_actor()
    if actor is not None:
        return actor
    st.info(_("Please log in to use the studio."))
    st.stop()
    raise RuntimeError("unreachable")  # st.stop() raises; this keeps type checkers content


def require_page_role(actor: Actor, role: Role) -> None:
    """Stop a page the actor's role may not use, with a short note. The sidebar does not offer
    such a page (``studio/app.py``); this answers the page when it is run some other way, and the
    services refuse its calls anyway."""
    if actor.has_role(role):
        return
    if role == Role.admin:
        st.info(_("This page is for admins."))
    else:
        st.info(_("This page needs the builder role: builders make prompts, knowledge bases, "
                  "bots and models. Chat with your team's bots on the Chat page, or ask an admin "
                  "for the builder role."))
    st.stop()


def sign_in(info: object) -> Actor:
    """Remember a login (a ``backend.services.accounts.SessionInfo``) in this browser session."""
    from backend.services.accounts import SessionInfo

    assert isinstance(info, SessionInfo)
    st.session_state[TOKEN_KEY] = info.token
    st.session_state[ACTOR_KEY] = info.actor
    st.session_state[EXPIRES_KEY] = info.expires_at
    st.session_state[WORKSPACES_KEY] = [(w.id, w.name) for w in info.workspaces]
    seconds = int((info.expires_at - datetime.now(UTC)).total_seconds())
    if _TOKEN_RE.match(info.token) and seconds > 0 and _cookie_token() != info.token:
        st.session_state[_COOKIE_PENDING] = ("set", info.token, seconds)
    st.session_state.pop(_COOKIE_IGNORED, None)
    return info.actor


def sign_out() -> None:
    """End the login here and in the database."""
    token = st.session_state.get(TOKEN_KEY)
    if token:
        from backend.services.accounts import logout

        logout(token)
    for key in (TOKEN_KEY, ACTOR_KEY, EXPIRES_KEY, WORKSPACES_KEY):
        st.session_state.pop(key, None)
    st.session_state[_COOKIE_PENDING] = ("clear",)
    st.session_state[_COOKIE_IGNORED] = True


def _cookie_token() -> str | None:
    """The login token this browser kept from an earlier page load, if any."""
    try:
        value = st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # noqa: BLE001 - no browser behind this run (tests)
        return None
    return value if isinstance(value, str) and _TOKEN_RE.match(value) else None


def sync_session_cookie() -> None:
    """Write (or clear) the login cookie after a login or logout. Call once per run."""
    pending = st.session_state.pop(_COOKIE_PENDING, None)
    if not pending:
        return
    if pending[0] == "set":
        _, token, seconds = pending
        script = (f"document.cookie = '{SESSION_COOKIE}={token}; path=/; max-age={seconds}; "
                  "SameSite=Strict';")
    else:
        script = f"document.cookie = '{SESSION_COOKIE}=; path=/; max-age=0; SameSite=Strict';"
    st.sidebar.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def refresh_session() -> Actor | None:
    """Re-check this browser's login (once per run). Returns the actor, or None when nobody is
    logged in any more (expired, logged out, disabled)."""
    token = st.session_state.get(TOKEN_KEY)
    from backend.services.accounts import resume_session

    if not token:
        actor = signed_in_actor()  # an actor put there by code (tests), or nobody
        kept = None if actor is not None or st.session_state.get(_COOKIE_IGNORED) else _cookie_token()
        if kept is None:
            return actor
        resumed = resume_session(kept)  # a reload or a new tab of a logged-in browser
        if resumed is None:
            st.session_state[_COOKIE_PENDING] = ("clear",)
            st.session_state[_COOKIE_IGNORED] = True
            return None
        return sign_in(resumed)
    info = resume_session(token)
    if info is None:
        for key in (TOKEN_KEY, ACTOR_KEY, EXPIRES_KEY, WORKSPACES_KEY):
            st.session_state.pop(key, None)
        st.session_state[_COOKIE_PENDING] = ("clear",)
        st.session_state[_COOKIE_IGNORED] = True
        st.session_state["login_notice"] = _("Your login has expired. Please log in again.")
        return None
    return sign_in(info)


def session_workspaces() -> list[tuple[int, str]]:
    """(id, name) of the workspaces this login may switch to."""
    return list(st.session_state.get(WORKSPACES_KEY) or [])


def session_expires_at() -> datetime | None:
    value = st.session_state.get(EXPIRES_KEY)
    return value if isinstance(value, datetime) else None
