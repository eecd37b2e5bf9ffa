"""Who is using the studio in this browser session."""

from __future__ import annotations

import streamlit as st

from backend.accounts.actor import Actor


def current_actor() -> Actor:
    """The logged-in user's actor. (Until accounts exist, the studio acts as itself.)"""
    actor = st.session_state.get("actor")
    if isinstance(actor, Actor):
        return actor
    return Actor.system()
