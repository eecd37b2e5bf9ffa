"""Chat: the workspace's published bots for everyone (role ``user`` included). A clean chat with
history and sources, no builder controls. Share a bot with a link: ``/chat?bot=NAME``."""

from __future__ import annotations

import streamlit as st

from backend.services import agents as agents_service
from studio.components.agent_chat import chat_panel, history_picker, share_box
from studio.components.errors import show_error
from studio.components.session import current_actor
from studio.i18n import _

actor = current_actor()
st.title(_("Chat"))

try:
    bots = agents_service.list_agents(actor=actor, published_only=True)
except Exception as exc:  # noqa: BLE001
    show_error(exc, doing=_("Loading the bots"))
    st.stop()

if not bots:
    st.info(_("No bot is published in this workspace yet. A builder publishes one on the "
              "Agents page."))
    st.stop()

names = [b.name for b in bots]
wanted = st.query_params.get("bot")
if wanted in names and "chat_bot" not in st.session_state:
    st.session_state["chat_bot"] = wanted

side, main = st.columns([1, 3])
with side:
    name = st.selectbox(_("Bot"), names, key="chat_bot")
    bot = next(b for b in bots if b.name == name)
    st.query_params["bot"] = bot.name
    with st.popover(_("Share"), icon="🔗"):
        share_box(bot.name)
    st.subheader(_("History"))
    history_picker(actor, bot, prefix="chat")
with main:
    st.subheader(f"{bot.icon} {bot.name}")
    if bot.description:
        st.caption(bot.description)
    chat_panel(actor, bot, prefix="chat", version="published", traces=False)
