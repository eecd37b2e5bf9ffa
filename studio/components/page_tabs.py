"""Tabs that stay where the user put them.

Plain ``st.tabs`` forgets the open tab whenever a rerun changes the page (a button in the third
tab reruns the script, and the page comes back on the first tab). These tabs carry a key, so
Streamlit keeps the open one in the session across reruns, and only the open tab's body runs
(the others cost nothing, and their timers and fragments stay quiet).

    from studio.components.page_tabs import run_tabs, open_tab

    run_tabs("kb_tab", [("documents", _("Documents"), show_documents, ()),
                        ("upload", _("Upload"), show_upload, ())])
    ...
    open_tab("kb_tab", "upload")   # after an action: that tab is open on the next run
    st.rerun()

Tabs are named by an id of the page's own (their labels are translated); ``current_tab`` says
which one is open. In an AppTest, ``at.session_state[next_key("kb_tab")] = "upload"`` opens a
tab before ``at.run()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from studio.i18n import _


def next_key(key: str) -> str:
    """The session key where a tab to open on the next run waits."""
    return f"{key}:next"


def _ids_key(key: str) -> str:
    return f"{key}:ids"


def open_tab(key: str, tab: str) -> None:
    """Open the tab ``tab`` (its id) of the tabs ``key`` on the next run of the page."""
    st.session_state[next_key(key)] = tab


def current_tab(key: str) -> str | None:
    """The id of the open tab of the tabs ``key`` (None before they were first shown)."""
    ids: dict[str, str] = st.session_state.get(_ids_key(key)) or {}
    label = st.session_state.get(key)
    return ids.get(label) if isinstance(label, str) else None


def page_tabs(key: str, tabs: Sequence[tuple[str, str]], *, default: str | None = None
              ) -> dict[str, Any]:
    """Keyed tabs: ``tabs`` is (id, label) in order; returns {id: tab container}. A container's
    ``open`` says whether it is the open tab (only that one need be filled)."""
    labels = {tab_id: label for tab_id, label in tabs}
    st.session_state[_ids_key(key)] = {label: tab_id for tab_id, label in tabs}
    wanted = st.session_state.pop(next_key(key), None)
    if wanted in labels:
        st.session_state[key] = labels[wanted]
    elif st.session_state.get(key) not in labels.values():
        # first visit, or the labels changed (another language): the default tab
        st.session_state.pop(key, None)
    # (a default beside a value already in the session makes Streamlit warn on the page)
    first = None if key in st.session_state else \
        labels.get(default or "", next(iter(labels.values())))
    containers = st.tabs(list(labels.values()), key=key, on_change="rerun", default=first)
    return dict(zip(labels, containers, strict=True))


def run_tabs(key: str, tabs: Sequence[tuple[str, str, Callable[..., None], tuple[Any, ...]]],
             *, default: str | None = None) -> str | None:
    """Show ``tabs`` ((id, label, function, its arguments)) and run the open tab's function in
    it; an error in it is shown in words there (the other tabs still work). Returns the open
    tab's id."""
    from studio.components.errors import show_error

    containers = page_tabs(key, [(tab_id, label) for tab_id, label, _f, _a in tabs],
                           default=default)
    opened = None
    for tab_id, _label, fn, args in tabs:
        container = containers[tab_id]
        if not getattr(container, "open", True):
            continue
        opened = tab_id
        with container:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - one tab failing keeps the others
                show_error(exc, doing=_("Showing this part of the page"))
    return opened
