"""The login screen (and, on first start, the form that creates the first admin) and the
account box in the sidebar (user, workspace switcher, logout)."""

from __future__ import annotations

import logging

import streamlit as st

from backend.accounts.actor import Actor
from backend.accounts.passwords import WeakPassword
from backend.accounts.ratelimit import LoginLocked
from backend.services import accounts
from studio.components.account_labels import role_label
from studio.components.session import (
    TOKEN_KEY,
    session_workspaces,
    sign_in,
    sign_out,
)
from studio.i18n import _, ngettext

log = logging.getLogger("studio")


def auth_message(err: Exception) -> str:
    """The user's language for the refusals a login can meet."""
    if isinstance(err, LoginLocked):
        minutes = max(1, -(-int(err.retry_after_s) // 60))
        return ngettext(
            "Too many wrong passwords for {user}. Try again in {n} minute.",
            "Too many wrong passwords for {user}. Try again in {n} minutes.",
            minutes,
        ).format(user=err.username, n=minutes)
    if isinstance(err, WeakPassword):
        if err.rule == "too_short":
            return _("The password must have at least {n} characters.").format(n=err.min_length)
        return _("The password must not be the user name.")
    reason = getattr(err, "reason", "")
    messages = {
        "wrong_password": _("Wrong user name or password."),
        "disabled": _("This account is disabled. Ask an admin to enable it."),
        "no_workspace": _("Your account belongs to no workspace yet. "
                          "Ask an admin to add you to one."),
        "expired": _("Your login has expired. Please log in again."),
        "bad_username": _("A user name has 2 to 100 characters: letters, digits and . _ @ - "
                          "(starting with a letter or digit)."),
        "user_exists": _("That user name is taken."),
        "admin_exists": _("The first admin already exists. Log in instead."),
    }
    return messages.get(reason, str(err))


def _first_admin_form() -> None:
    st.title(_("Create the first admin"))
    st.write(_("Welcome to LLM Studio. No admin exists yet. Create the first admin account: it can add users, "
               "workspaces and API keys afterwards."))
    with st.form("first_admin_form"):
        username = st.text_input(_("User name"), key="first_admin_username")
        password = st.text_input(_("Password"), type="password", key="first_admin_password")
        again = st.text_input(_("Password again"), type="password", key="first_admin_again")
        submitted = st.form_submit_button(_("Create the admin"), type="primary",
                                          key="first_admin_submit")
    if not submitted:
        return
    if password != again:
        st.error(_("The two passwords differ. Type the same password twice."))
        return
    try:
        accounts.create_first_admin(username=username, password=password)
        info = accounts.login(username=username, password=password)
    except (accounts.AccountError, accounts.AuthError, WeakPassword, LoginLocked) as err:
        st.error(auth_message(err))
        return
    sign_in(info)
    st.rerun()


def _login_form() -> None:
    st.title(_("Log in to LLM Studio"))
    notice = st.session_state.pop("login_notice", None)
    if notice:
        st.info(notice)
    with st.form("login_form"):
        username = st.text_input(_("User name"), key="login_username")
        password = st.text_input(_("Password"), type="password", key="login_password")
        submitted = st.form_submit_button(_("Log in"), type="primary", key="login_submit")
    st.caption(_("Forgot your password? An admin can set a new one on the Admin page or with "
                 "`studio users passwd NAME`."))
    if not submitted:
        return
    if not username.strip() or not password:
        st.error(_("Enter your user name and password."))
        return
    try:
        info = accounts.login(username=username, password=password)
    except (accounts.AuthError, LoginLocked) as err:
        st.error(auth_message(err))
        return
    except Exception:  # noqa: BLE001 - the database is down, say so without a trace
        log.exception("login failed")
        st.error(_("Logging in failed: the studio cannot reach its database. "
                   "The details are in the studio log."))
        return
    sign_in(info)
    st.session_state.pop("login_password", None)
    st.rerun()


def login_page() -> None:
    """What a browser sees before logging in."""
    try:
        first_start = accounts.needs_first_admin()
    except Exception:  # noqa: BLE001
        log.exception("cannot check for the first admin")
        st.error(_("The studio cannot reach its database. Is Postgres running? "
                   "The details are in the studio log."))
        return
    if first_start:
        _first_admin_form()
    else:
        _login_form()


def _switch_workspace() -> None:
    token = st.session_state.get(TOKEN_KEY)
    wanted = st.session_state.get("workspace_switch")
    if not token or wanted is None:
        return
    try:
        sign_in(accounts.switch_workspace(token=token, workspace_id=int(wanted)))
    except (accounts.AuthError, PermissionError) as err:
        st.session_state["login_notice"] = auth_message(err)


def _logout() -> None:
    sign_out()


def account_sidebar(actor: Actor) -> None:
    """Who is logged in, where they work, and the way out."""
    if actor.user_id is None:  # the studio itself (page tests, the operator): no account
        return
    with st.sidebar:
        st.caption(_("Logged in as {user} ({role})").format(
            user=actor.username, role=role_label(actor.role.value)))
        spaces = session_workspaces()
        if len(spaces) > 1:
            names = dict(spaces)
            if st.session_state.get("workspace_switch") != actor.workspace_id:
                st.session_state["workspace_switch"] = actor.workspace_id
            st.selectbox(_("Workspace"), options=list(names), format_func=names.__getitem__,
                         key="workspace_switch", on_change=_switch_workspace)
        elif spaces:
            st.caption(_("Workspace: {name}").format(name=spaces[0][1]))
        if st.session_state.get(TOKEN_KEY):
            st.button(_("Log out"), key="logout_button", on_click=_logout)
