"""Models page (filled by the models and inference work)."""

import streamlit as st

from studio.i18n import _

st.title(_("Models"))
st.write(_("Register local Hugging Face models and OpenAI-compatible endpoints."))
st.info(_("This page is not built yet. It arrives in a coming release."))
