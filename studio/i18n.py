"""One translation function for every visible string: ``from studio.i18n import _``.

Catalogs: ``studio/locales/<lang>/LC_MESSAGES/studio.po`` (gettext, managed with Babel by
``make i18n``; ``scripts/i18n.py check`` fails on untranslated or fuzzy entries).
The current language lives in Streamlit's session state (key ``lang``); the sidebar switch in
``studio/components/language.py`` sets it.

Write whole sentences with named placeholders, never fragments glued together::

    _("Deleted {n} files").format(n=3)
    ngettext("{n} file", "{n} files", n).format(n=n)
    N_("Queued")          # marks a string for extraction; translate it later with _(value)

A ``# TRANSLATORS:`` comment on the line above a call reaches the translator.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "studio"
DEFAULT_LANGUAGE = "en"
#: Language code -> its own name (what the switch shows, so anyone can find their language).
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}
SESSION_KEY = "lang"
_override: ContextVar[str | None] = ContextVar("studio_language_override", default=None)


def normalize_language(tag: str | None) -> str | None:
    """A supported language code for a browser tag such as ``zh-CN``, ``zh_Hans``, ``en-US``.

    Chinese in any script or region reads the Simplified Chinese catalog (the only Chinese one);
    an unknown or empty tag gives ``None``.
    """
    if not tag:
        return None
    tag = tag.strip().replace("-", "_")
    if tag in LANGUAGES:
        return tag
    base = tag.split("_", 1)[0].lower()
    if base == "zh":
        return "zh_CN"
    if base == "en":
        return "en"
    return None


def _catalog_paths(lang: str) -> tuple[Path, Path]:
    folder = LOCALES_DIR / lang / "LC_MESSAGES"
    return folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@lru_cache(maxsize=16)
def _load(lang: str, po_mtime: int, mo_mtime: int) -> gettext.NullTranslations:
    """The catalog for ``lang``: the compiled .mo when it is up to date, else the .po compiled
    in memory (so an edited catalog shows up without a build step). English needs neither."""
    po_path, mo_path = _catalog_paths(lang)
    if mo_mtime and mo_mtime >= po_mtime:
        with mo_path.open("rb") as fp:
            return gettext.GNUTranslations(fp)
    if po_mtime:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with po_path.open("rb") as fp:
            catalog = read_po(fp, locale=lang, domain=DOMAIN)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        buf.seek(0)
        return gettext.GNUTranslations(buf)
    return gettext.NullTranslations()


def translations(lang: str) -> gettext.NullTranslations:
    """The gettext translations for a language code (English for an unknown code)."""
    if lang not in LANGUAGES:
        lang = DEFAULT_LANGUAGE
    po_path, mo_path = _catalog_paths(lang)
    return _load(lang, _mtime(po_path), _mtime(mo_path))


def current_language() -> str:
    """The language of the running Streamlit session (English outside a Streamlit run), unless
    ``using_language`` says otherwise."""
    forced = _override.get()
    if forced is not None:
        return forced
    try:
        import streamlit as st

        lang = st.session_state.get(SESSION_KEY)
    except Exception:  # noqa: BLE001 - outside a Streamlit run
        lang = None
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


@contextmanager
def using_language(lang: str) -> Iterator[str]:
    """Translate and format in ``lang`` inside the block, whatever the session's language is
    (a report written for one user, a test)."""
    code = normalize_language(lang) or DEFAULT_LANGUAGE
    token = _override.set(code)
    try:
        yield code
    finally:
        _override.reset(token)


def set_language(lang: str) -> str:
    """Make ``lang`` the session's language; returns the code actually set."""
    import streamlit as st

    code = normalize_language(lang) or DEFAULT_LANGUAGE
    st.session_state[SESSION_KEY] = code
    return code


def _(message: str) -> str:
    """Translate ``message`` into the current language."""
    return translations(current_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message whose form depends on a count ``n``."""
    return translations(current_language()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """Translate a short word whose meaning depends on ``context`` (``pgettext("job", "Run")``)."""
    return translations(current_language()).pgettext(context, message)


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark ``message`` for extraction without translating it now (module-level constants)."""
    return message


def translate(message: str, lang: str) -> str:
    """Translate into a given language, whatever the session's language is."""
    return translations(lang).gettext(message)
