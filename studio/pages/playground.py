"""Playground page (arrives with its own issue; until then it says so plainly)."""

import streamlit as st

from studio.i18n import _

st.title(_("Playground"))
st.write(_("Try prompts against any registered model, compare answers side by side, and save prompt versions."))
st.info(_("This page is not built yet. It arrives in a coming release."))
