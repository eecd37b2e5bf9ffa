"""Pre-train page (arrives with its own issue; until then it says so plainly)."""

import streamlit as st

from studio.i18n import _

st.title(_("Pre-train"))
st.write(_("Train a small model from scratch on your own text."))
st.info(_("This page is not built yet. It arrives in a coming release."))
