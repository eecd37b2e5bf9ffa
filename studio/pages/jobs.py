"""Jobs page."""

import streamlit as st

from studio.i18n import _

st.title(_("Jobs"))
st.info(_("This page is not built yet. It arrives in a coming release."))
