"""Knowledge page (arrives with its own issue; until then it says so plainly)."""

import streamlit as st

from studio.i18n import _

st.title(_("Knowledge"))
st.write(_("Upload documents into knowledge bases, then search them with hybrid retrieval."))
st.info(_("This page is not built yet. It arrives in a coming release."))
