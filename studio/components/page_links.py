"""Links between the studio's pages.

``st.page_link`` finds a page among those ``studio/app.py`` registered with ``st.navigation``.
A page script run on its own (``streamlit run studio/pages/home.py``, or a test that renders one
page file) has no such list, so the link is written as plain text there instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


def page_link(page: str, *, label: str, icon: str | None = None, help: str | None = None,
              query_params: dict[str, str] | None = None) -> None:
    """A link to ``studio/pages/<page>.py`` (``page`` is the file's stem, e.g. ``"jobs"``)."""
    path = PAGES_DIR / f"{page}.py"
    try:
        st.page_link(str(path), label=label, icon=icon, help=help, query_params=query_params)
    except StreamlitPageNotFoundError:
        st.markdown(f"{icon or ''} **{label}**")
