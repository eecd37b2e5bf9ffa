"""Admin: users and roles, workspaces and members (and moving things between them), API keys,
workspace secrets and the audit log. Every action goes through a service that checks the role
again, so this page is a convenience, not the guard."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from backend.services import accounts, secrets, workspaces
from backend.services import agents as agents_service
from backend.services import audit as audit_service
from studio.components.account_labels import (
    ROLES,
    action_label,
    kind_label,
    role_help,
    role_label,
)
from studio.components.errors import show_error
from studio.components.page_tabs import run_tabs
from studio.components.session import current_actor
from studio.formatting import format_datetime
from studio.i18n import _

actor = current_actor()
st.title(_("Admin"))
if not actor.is_admin:
    st.error(_("This page is for admins."))
    st.stop()

NEW_KEY = "admin_new_key"
TABS = "admin_tab"


def _done(message: str) -> None:
    st.session_state["admin_flash"] = message
    st.rerun()  # the keyed tabs keep the tab that was open


flash = st.session_state.pop("admin_flash", None)
if flash:
    st.success(flash)

try:
    all_users = accounts.list_users(actor=actor)
    all_spaces = workspaces.list_workspaces(actor=actor)
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Loading users and workspaces"))
    st.stop()
space_names = {w.id: w.name for w in all_spaces}
user_names = {u.id: u.username for u in all_users}

# ----------------------------------------------------------------------------------- users
def _users_tab() -> None:
    """Users and roles: add, change, set a password, delete."""
    st.dataframe(
        pd.DataFrame([{
            _("User name"): u.username,
            _("Role"): role_label(u.role),
            _("Active"): u.is_active,
            _("Workspaces"): ", ".join(w.name for w in u.workspaces),
            _("Last login"): format_datetime(u.last_login_at),
        } for u in all_users]),
        hide_index=True, width="stretch",
    )
    with st.expander(_("Add a user")), st.form("admin_new_user", clear_on_submit=True):
        name = st.text_input(_("User name"), key="admin_new_user_name")
        password = st.text_input(_("Password"), type="password", key="admin_new_user_pw")
        role = st.selectbox(_("Role"), ROLES, format_func=role_label, help=role_help(),
                            key="admin_new_user_role")
        spaces = st.multiselect(_("Workspaces"), list(space_names),
                                format_func=space_names.__getitem__,
                                default=[actor.workspace_id] if actor.workspace_id in space_names
                                else [], key="admin_new_user_spaces")
        if st.form_submit_button(_("Add the user"), type="primary"):
            try:
                accounts.create_user(actor=actor, username=name, password=password, role=role,
                                     workspace_ids=spaces or None)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Adding the user"))
            else:
                _done(_("User {name} added.").format(name=name))

    if all_users:
        st.subheader(_("Change a user"))
        picked = st.selectbox(_("User"), list(user_names), format_func=user_names.__getitem__,
                              key="admin_pick_user")
        user = next(u for u in all_users if u.id == picked)
        col_role, col_active = st.columns(2)
        new_role = col_role.selectbox(_("Role"), ROLES, index=ROLES.index(user.role),
                                      format_func=role_label, key=f"admin_role_{user.id}")
        active = col_active.toggle(_("Active"), value=user.is_active,
                                   key=f"admin_active_{user.id}")
        if st.button(_("Save role and state"), key="admin_save_user"):
            try:
                accounts.update_user(actor=actor, user_id=user.id, role=new_role,
                                     is_active=active)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Changing the user"))
            else:
                _done(_("{name} saved.").format(name=user.username))
        with st.form("admin_reset_pw", clear_on_submit=True):
            new_pw = st.text_input(_("New password"), type="password", key="admin_reset_pw_value")
            if st.form_submit_button(_("Set the password")):
                try:
                    accounts.set_password(actor=actor, user_id=user.id, new_password=new_pw)
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Setting the password"))
                else:
                    _done(_("The password of {name} is set; their logins ended.").format(
                        name=user.username))
        if user.id != actor.user_id:  # one's own account is deleted by another admin
            confirm = st.checkbox(_("Yes, delete {name}").format(name=user.username),
                                  key=f"admin_confirm_delete_{user.id}")
            if st.button(_("Delete the user"), disabled=not confirm, key="admin_delete_user"):
                try:
                    accounts.delete_user(actor=actor, user_id=user.id)
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Deleting the user"))
                else:
                    _done(_("{name} deleted.").format(name=user.username))

# ------------------------------------------------------------------------------ workspaces
def _workspaces_tab() -> None:
    """Workspaces, their members, and moving things between them."""
    st.dataframe(
        pd.DataFrame([{
            _("Name"): w.name, _("Members"): w.members, _("Description"): w.description,
            _("Created"): format_datetime(w.created_at),
        } for w in all_spaces]),
        hide_index=True, width="stretch",
    )
    with st.expander(_("Create a workspace")), st.form("admin_new_space", clear_on_submit=True):
        ws_name = st.text_input(_("Name"), key="admin_new_space_name")
        ws_desc = st.text_input(_("Description"), key="admin_new_space_desc")
        if st.form_submit_button(_("Create the workspace"), type="primary"):
            try:
                workspaces.create_workspace(actor=actor, name=ws_name, description=ws_desc)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Creating the workspace"))
            else:
                _done(_("Workspace {name} created.").format(name=ws_name))

    st.subheader(_("Members"))
    ws_id = st.selectbox(_("Workspace"), list(space_names), format_func=space_names.__getitem__,
                         key="admin_members_ws")
    if ws_id is not None:
        try:
            members = workspaces.list_members(actor=actor, workspace_id=ws_id)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Loading the members"))
            members = []
        member_ids = {m.user_id for m in members}
        st.dataframe(pd.DataFrame([{_("User name"): m.username, _("Role"): role_label(m.role)}
                                   for m in members]), hide_index=True, width="stretch")
        col_add, col_remove = st.columns(2)
        outsiders = [u for u in user_names if u not in member_ids]
        to_add = col_add.selectbox(_("Add a member"), outsiders,
                                   format_func=user_names.__getitem__, key="admin_add_member")
        if col_add.button(_("Add"), disabled=to_add is None, key="admin_add_member_btn"):
            try:
                workspaces.add_member(actor=actor, workspace_id=ws_id, user_id=int(to_add))
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Adding the member"))
            else:
                _done(_("{user} joined {workspace}.").format(
                    user=user_names[int(to_add)], workspace=space_names[ws_id]))
        to_remove = col_remove.selectbox(_("Remove a member"), sorted(member_ids),
                                         format_func=user_names.__getitem__,
                                         key="admin_remove_member")
        if col_remove.button(_("Remove"), disabled=to_remove is None,
                             key="admin_remove_member_btn"):
            try:
                workspaces.remove_member(actor=actor, workspace_id=ws_id,
                                         user_id=int(to_remove))
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Removing the member"))
            else:
                _done(_("{user} left {workspace}.").format(
                    user=user_names[int(to_remove)], workspace=space_names[ws_id]))
        confirm_ws = st.checkbox(_("Yes, delete the workspace {name}").format(
            name=space_names[ws_id]), key=f"admin_confirm_ws_{ws_id}")
        if st.button(_("Delete the workspace"), disabled=not confirm_ws, key="admin_delete_ws"):
            try:
                workspaces.delete_workspace(actor=actor, workspace_id=ws_id)
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Deleting the workspace"))
            else:
                _done(_("Workspace {name} deleted.").format(name=space_names[ws_id]))

    st.subheader(_("Move things between workspaces"))
    try:
        kinds = workspaces.movable_kinds(actor=actor)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading what can be moved"))
        kinds = []
    col_kind, col_from = st.columns(2)
    kind = col_kind.selectbox(_("What"), kinds, format_func=kind_label, key="admin_move_kind")
    from_ws = col_from.selectbox(_("From"), list(space_names),
                                 format_func=space_names.__getitem__, key="admin_move_from")
    if kind and from_ws is not None:
        items = workspaces.list_items(actor=actor, kind=kind, workspace_id=from_ws)
        labels = {i.id: f"#{i.id} {i.label}" for i in items}
        col_item, col_to = st.columns(2)
        item = col_item.selectbox(_("Item"), list(labels), format_func=labels.__getitem__,
                                  key="admin_move_item")
        targets = [w for w in space_names if w != from_ws]
        to_ws = col_to.selectbox(_("To"), targets, format_func=space_names.__getitem__,
                                 key="admin_move_to")
        if st.button(_("Move"), disabled=item is None or to_ws is None, key="admin_move_btn"):
            try:
                workspaces.move_item(actor=actor, kind=kind, item_id=int(item),
                                     to_workspace_id=int(to_ws))
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Moving it"))
            else:
                _done(_("Moved {item} to {workspace}.").format(
                    item=labels[int(item)], workspace=space_names[int(to_ws)]))

# -------------------------------------------------------------------------------- API keys
def _keys_tab() -> None:
    """API keys: create one (for a user, a workspace, optionally one bot and a rate), revoke."""
    shown = st.session_state.get(NEW_KEY)
    if shown:  # shown until the admin says it is copied (reruns and other tabs keep it)
        with st.container(border=True):
            st.warning(_("Copy the new key now: it is shown only once."))
            st.code(shown["key"], language=None)
            st.caption(_limit_text(shown))
            if st.button(_("I have copied the key"), key="admin_new_key_done"):
                st.session_state.pop(NEW_KEY, None)
                st.rerun()
    try:
        keys = accounts.list_api_keys(actor=actor, include_revoked=True)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Loading the API keys"))
        keys = []
    st.dataframe(pd.DataFrame([{
        _("Key"): f"#{k.id} {k.prefix}…", _("Name"): k.name, _("User name"): k.username,
        _("Workspace"): k.workspace, _("Created"): format_datetime(k.created_at),
        _("Last used"): format_datetime(k.last_used_at),
        _("Revoked"): format_datetime(k.revoked_at) if k.revoked else "",
    } for k in keys]), hide_index=True, width="stretch")
    _new_key_form()
    live = {k.id: f"#{k.id} · {k.username}" for k in keys if not k.revoked}
    if live:
        revoke = st.selectbox(_("Revoke a key"), list(live), format_func=live.__getitem__,
                              key="admin_revoke_pick")
        if st.button(_("Revoke"), key="admin_revoke_btn"):
            try:
                accounts.revoke_api_key(actor=actor, key_id=int(revoke))
            except Exception as exc:  # noqa: BLE001
                show_error(exc, doing=_("Revoking the key"))
            else:
                _done(_("Key #{id} revoked.").format(id=revoke))

def _limit_text(made: dict[str, object]) -> str:
    """What a new key may do, in words."""
    bot, rate = made.get("agent"), made.get("rate")
    if bot and rate:
        return _("It acts as {user} in {workspace}, for the bot {bot} only, at most {rate} "
                 "requests a minute.").format(user=made["user"], workspace=made["workspace"],
                                                bot=bot, rate=rate)
    if bot:
        return _("It acts as {user} in {workspace}, for the bot {bot} only.").format(
            user=made["user"], workspace=made["workspace"], bot=bot)
    if rate:
        return _("It acts as {user} in {workspace}, at most {rate} requests a minute.").format(
            user=made["user"], workspace=made["workspace"], rate=rate)
    return _("It acts as {user} in {workspace}.").format(user=made["user"],
                                                         workspace=made["workspace"])


def _new_key_form() -> None:
    """Create a key: whose, where, what for, and optionally one bot and a rate."""
    st.subheader(_("Create an API key"))
    col_user, col_ws = st.columns(2)
    users = list(user_names)
    key_user = col_user.selectbox(
        _("User"), users, format_func=user_names.__getitem__,
        index=users.index(actor.user_id) if actor.user_id in users else 0,
        help=_("The key acts as this user, with this user's role."), key="admin_key_user")
    spaces = list(space_names)
    key_ws = col_ws.selectbox(
        _("Workspace"), spaces, format_func=space_names.__getitem__,
        index=spaces.index(actor.workspace_id) if actor.workspace_id in spaces else 0,
        key="admin_key_ws")
    bots: list[str] = []
    if key_ws is not None:
        try:
            bots = [b.name for b in agents_service.published_agents(
                actor=replace(actor, workspace_id=int(key_ws)))]
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Loading the bots"))
    col_bot, col_rate = st.columns(2)
    key_bot = col_bot.selectbox(
        _("Bot"), [""] + bots, format_func=lambda b: b or _("Any model or bot"),
        help=_("A key for one bot reaches only that published bot over the API."),
        key="admin_key_bot")
    key_rate = col_rate.number_input(
        _("Requests a minute"), min_value=0, max_value=100_000, value=0, step=10,
        help=_("At most this many chat requests a minute; 0: no limit."), key="admin_key_rate")
    key_name = st.text_input(_("What it is for"), key="admin_key_name")
    if not st.button(_("Create the key"), type="primary", key="admin_key_create"):
        return
    try:
        made = accounts.create_api_key(actor=actor, name=key_name, user_id=key_user,
                                       workspace_id=key_ws)
    except Exception as exc:  # noqa: BLE001
        show_error(exc, doing=_("Creating the API key"))
        return
    rate = int(key_rate or 0) or None
    if key_bot or rate:
        try:
            agents_service.set_key_limit(actor=actor, key_id=made.view.id, agent=key_bot or None,
                                         rate_per_min=rate)
        except Exception as exc:  # noqa: BLE001 - no key without the limits asked for
            accounts.revoke_api_key(actor=actor, key_id=made.view.id)
            show_error(exc, doing=_("Limiting the API key"))
            return
    st.session_state[NEW_KEY] = {"key": made.key, "id": made.view.id, "user": made.view.username,
                                 "workspace": made.view.workspace, "agent": key_bot or None,
                                 "rate": rate}
    for k in ("admin_key_name", "admin_key_bot", "admin_key_rate"):
        st.session_state.pop(k, None)
    _done(_("API key #{id} created.").format(id=made.view.id))


# --------------------------------------------------------------------------------- secrets
def _secrets_tab() -> None:
    """Workspace secrets, shown masked."""
    st.caption(_("Provider API keys and tool headers, encrypted in the database. Values are "
                 "shown masked; rotate the secret key with `studio secrets rotate`."))
    sec_ws = st.selectbox(_("Workspace"), list(space_names), format_func=space_names.__getitem__,
                          key="admin_secrets_ws")
    if sec_ws is not None:
        try:
            rows = secrets.list_secrets(actor=actor, workspace_id=sec_ws)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Loading the secrets"))
            rows = []
        st.dataframe(pd.DataFrame([{_("Name"): s.name, _("Value"): s.masked,
                                    _("Changed"): format_datetime(s.updated_at)} for s in rows]),
                     hide_index=True, width="stretch")
        with st.form("admin_secret_form", clear_on_submit=True):
            sec_name = st.text_input(_("Name"), placeholder="OPENAI_API_KEY",
                                     key="admin_secret_name")
            sec_value = st.text_input(_("Value"), type="password", key="admin_secret_value")
            if st.form_submit_button(_("Save the secret"), type="primary"):
                try:
                    secrets.set_secret(actor=actor, name=sec_name, value=sec_value,
                                       workspace_id=sec_ws)
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Saving the secret"))
                else:
                    _done(_("Secret {name} saved.").format(name=sec_name))
        if rows:
            names = [s.name for s in rows]
            gone = st.selectbox(_("Delete a secret"), names, key="admin_secret_delete")
            if st.button(_("Delete"), key="admin_secret_delete_btn"):
                try:
                    secrets.delete_secret(actor=actor, name=gone, workspace_id=sec_ws)
                except Exception as exc:  # noqa: BLE001
                    show_error(exc, doing=_("Deleting the secret"))
                else:
                    _done(_("Secret {name} deleted.").format(name=gone))

# ------------------------------------------------------------------------------- audit log
def _audit_tab() -> None:
    """The audit log, filtered."""
    facets = audit_service.audit_facets(actor=actor)
    col1, col2, col3 = st.columns(3)
    who = col1.text_input(_("User name"), placeholder=_("Anyone"), key="audit_user")
    acts = col2.multiselect(_("Actions"), facets["actions"], format_func=action_label,
                            key="audit_actions")
    what = col3.selectbox(_("Kind"), [""] + facets["target_types"],
                          format_func=lambda v: kind_label(v) if v else _("Anything"),
                          key="audit_target")
    col4, col5, col6 = st.columns(3)
    where = col4.selectbox(_("Workspace"), [0] + list(space_names),
                           format_func=lambda v: space_names.get(v) or _("Any workspace"),
                           key="audit_ws")
    today = datetime.now(UTC).date()
    days = col5.date_input(_("Between"), value=(today - timedelta(days=30), today),
                           key="audit_days")
    search = col6.text_input(_("Search"), placeholder=_("Text in names or details"),
                             key="audit_search")
    since = until = None
    if isinstance(days, tuple | list) and len(days) == 2:
        since = datetime.combine(days[0], time.min).astimezone()
        until = datetime.combine(days[1], time.max).astimezone()
    entries = audit_service.list_audit(
        actor=actor, username=who.strip() or None, actions=acts or None,
        target_type=what or None,
        workspace_id=where or None, since=since, until=until, search=search, limit=500,
    )
    st.caption(_("{n} entries, newest first (at most 500).").format(n=len(entries)))
    st.dataframe(pd.DataFrame([{
        _("When"): format_datetime(e.at), _("User name"): e.username,
        _("Action"): action_label(e.action), _("Kind"): kind_label(e.target_type),
        _("Target"): e.target_id or "",
        _("Workspace"): space_names.get(e.workspace_id or 0, str(e.workspace_id or "")),
        _("Details"): ", ".join(f"{k}={v}" for k, v in (e.details or {}).items()),
    } for e in entries]), hide_index=True, width="stretch")


run_tabs(TABS, [
    ("users", _("Users"), _users_tab, ()),
    ("workspaces", _("Workspaces"), _workspaces_tab, ()),
    ("keys", _("API keys"), _keys_tab, ()),
    ("secrets", _("Secrets"), _secrets_tab, ()),
    ("audit", _("Audit log"), _audit_tab, ()),
])
