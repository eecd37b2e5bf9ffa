"""Agents page (arrives with its own issue; until then it says so plainly)."""

import streamlit as st

from studio.i18n import _

st.title(_("Agents"))
st.write(_("Build agents that use knowledge bases and tools, and publish them as bots."))
st.info(_("This page is not built yet. It arrives in a coming release."))
