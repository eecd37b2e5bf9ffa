"""Home: counts and recent jobs."""

import streamlit as st

from studio.i18n import _

st.title(_("LLM Studio"))
st.info(_("This page is not built yet. It arrives in a coming release."))
