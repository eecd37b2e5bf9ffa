"""One translation function for every visible string: ``from studio.i18n import _``.

Catalogs: ``studio/locales/<lang>/LC_MESSAGES/studio.po`` (compiled to .mo by ``make i18n``).
The current language lives in Streamlit's session state (key ``lang``).
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from pathlib import Path

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}
DOMAIN = "studio"


@lru_cache(maxsize=8)
def _translations(lang: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, localedir=LOCALES_DIR, languages=[lang], fallback=True)


def current_language() -> str:
    try:
        import streamlit as st

        lang = st.session_state.get("lang")
    except Exception:  # noqa: BLE001 - outside a Streamlit run
        lang = None
    return lang if lang in LANGUAGES else "en"


def _(message: str) -> str:
    """Translate ``message`` into the current language."""
    return _translations(current_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translations(current_language()).ngettext(singular, plural, n)
