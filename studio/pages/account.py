"""My account: who I am, my password, and my API keys (for the API and the CLI)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.services import accounts
from studio.components.account_labels import role_label
from studio.components.errors import show_error
from studio.components.login import auth_message
from studio.components.session import current_actor, session_workspaces
from studio.formatting import format_datetime
from studio.i18n import _

actor = current_actor()
st.title(_("My account"))
if actor.user_id is None:
    st.info(_("The studio's operator has no account here. Manage accounts with `studio users` "
              "on the server, or log in as a user."))
    st.stop()

NEW_KEY = "account_new_key"
spaces = dict(session_workspaces())
st.write(_("You are {user}, with the role {role}, working in {workspace}.").format(
    user=actor.username, role=role_label(actor.role.value),
    workspace=spaces.get(actor.workspace_id, f"#{actor.workspace_id}")))

flash = st.session_state.pop("account_flash", None)
if flash:
    st.success(flash)

st.subheader(_("Password"))
with st.form("account_password", clear_on_submit=True):
    current = st.text_input(_("Current password"), type="password", key="account_pw_current")
    new = st.text_input(_("New password"), type="password", key="account_pw_new")
    again = st.text_input(_("New password again"), type="password", key="account_pw_again")
    if st.form_submit_button(_("Change my password"), type="primary"):
        if new != again:
            st.error(_("The two passwords differ. Type the same password twice."))
        else:
            try:
                accounts.set_password(actor=actor, user_id=actor.user_id, new_password=new,
                                      current_password=current)
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, accounts.AuthError | ValueError):
                    st.error(auth_message(exc))
                else:
                    show_error(exc, doing=_("Changing the password"))
            else:
                st.session_state["account_flash"] = _("Your password is changed.")
                st.rerun()

st.subheader(_("My API keys"))
st.caption(_("A key lets a program use the API (or the `studio` command with `--api-key`) "
             "as you, in the workspace it was made for."))
made = st.session_state.pop(NEW_KEY, None)
if made:
    st.warning(_("Copy the new key now: it is shown only once."))
    st.code(made, language=None)
try:
    keys = accounts.list_api_keys(actor=actor)
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Loading your API keys"))
    keys = []
st.dataframe(pd.DataFrame([{
    _("Key"): f"{k.prefix}…", _("Name"): k.name, _("Workspace"): k.workspace,
    _("Created"): format_datetime(k.created_at), _("Last used"): format_datetime(k.last_used_at),
} for k in keys]), hide_index=True, width="stretch")
with st.form("account_new_key", clear_on_submit=True):
    name = st.text_input(_("What it is for"), key="account_key_name")
    if st.form_submit_button(_("Create a key for this workspace")):
        try:
            new_key = accounts.create_api_key(actor=actor, name=name)
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Creating the API key"))
        else:
            st.session_state[NEW_KEY] = new_key.key
            st.rerun()
if keys:
    labels = {k.id: f"#{k.id} · {format_datetime(k.created_at)}" for k in keys}
    pick = st.selectbox(_("Revoke a key"), list(labels), format_func=labels.__getitem__,
                        key="account_revoke_pick")
    if st.button(_("Revoke"), key="account_revoke_btn"):
        try:
            accounts.revoke_api_key(actor=actor, key_id=int(pick))
        except Exception as exc:  # noqa: BLE001
            show_error(exc, doing=_("Revoking the key"))
        else:
            st.session_state["account_flash"] = _("The key is revoked.")
            st.rerun()
