"""Fine-tune page (arrives with its own issue; until then it says so plainly)."""

import streamlit as st

from studio.i18n import _

st.title(_("Fine-tune"))
st.write(_("Fine-tune a model with LoRA on your own question-and-answer data."))
st.info(_("This page is not built yet. It arrives in a coming release."))
