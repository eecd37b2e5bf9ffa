"""Show what went wrong in words, never a stack trace; the trace goes to the log."""

from __future__ import annotations

import logging

import streamlit as st

from backend.accounts.actor import PermissionDenied
from studio.i18n import _

log = logging.getLogger("studio")


def show_error(exc: BaseException, *, doing: str) -> None:
    """``doing`` is a translated phrase such as _("Cancelling the job")."""
    if isinstance(exc, PermissionDenied):
        st.error(_("You do not have permission for this.") + f" {exc}")
        return
    if isinstance(exc, ValueError | LookupError | FileNotFoundError):
        st.error(f"{doing}: {exc}")
        return
    log.exception("%s failed", doing)
    st.error(
        _("{doing} failed: {error}. The details are in the studio log.").format(
            doing=doing, error=type(exc).__name__
        )
    )
