"""The language of the studio: chosen in the sidebar, remembered per browser and per user.

Where the language comes from, first match wins, when a browser session starts:

1. ``?lang=zh_CN`` in the address (a shared link, or this tab reloaded);
2. the ``studio_lang`` cookie this browser got the last time someone chose a language;
3. the browser's own language when it is Chinese (``st.context.locale``, else the
   ``Accept-Language`` header); otherwise the operator's ``STUDIO_DEFAULT_LANGUAGE`` (English).

Once a user is logged in, the language saved on their account wins, and each switch is saved to
it (``load_user_language`` / ``save_user_language``). ``app.py`` calls ``apply_language()`` before
it builds the navigation (the page titles are translated) and ``language_switch()`` in the sidebar.
"""

from __future__ import annotations

import logging

import streamlit as st

from backend.accounts.actor import Actor
from backend.config import get_settings
from backend.services import accounts
from studio.components.session import signed_in_actor
from studio.components.streamlit_text import streamlit_text
from studio.i18n import (
    LANGUAGES,
    SESSION_KEY,
    _,
    current_language,
    normalize_language,
    set_language,
)

log = logging.getLogger("studio")

QUERY_PARAM = "lang"
COOKIE = "studio_lang"
WIDGET_KEY = "_lang_switch"
USER_APPLIED_KEY = "_lang_user"  # the user id whose saved language this session has applied
COOKIE_DAYS = 365


# ------------------------------------------------------------------------- browser language


def language_from_accept_header(header: str | None) -> str | None:
    """The supported language an ``Accept-Language`` header prefers most, if any.

    >>> language_from_accept_header("fr-FR,fr;q=0.9,zh-CN;q=0.8,en;q=0.7")
    'zh_CN'
    """
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        lang = normalize_language(tag)
        if lang and quality > 0:
            ranked.append((-quality, position, lang))
    return min(ranked)[2] if ranked else None


def browser_language() -> str | None:
    """The browser's language when it is one we speak (None when it says nothing we know)."""
    try:
        lang = normalize_language(st.context.locale)
        if lang:
            return lang
        return language_from_accept_header(st.context.headers.get("Accept-Language"))
    except Exception:  # noqa: BLE001 - no browser context (a test or a bare script run)
        return None


def default_language(browser: str | None) -> str:
    """Chinese for a Chinese browser; otherwise the operator's default (English unless set)."""
    if browser == "zh_CN":
        return "zh_CN"
    return get_settings().default_language


def remembered_language() -> str | None:
    """What this browser chose before: the address's ``?lang=``, then the cookie."""
    try:
        lang = normalize_language(st.query_params.get(QUERY_PARAM))
        if lang:
            return lang
        return normalize_language(st.context.cookies.get(COOKIE))
    except Exception:  # noqa: BLE001 - no browser context
        return None


# ------------------------------------------------------------------------ per-user memory


def load_user_language(actor: Actor) -> str | None:
    """The language saved on the user's account (None when they never chose one, or for the
    studio itself, which has no account)."""
    if actor.user_id is None:
        return None
    return normalize_language(accounts.get_user_language(actor=actor))


def save_user_language(actor: Actor, lang: str) -> None:
    """Save ``lang`` on the user's account so it follows them to any browser."""
    if actor.user_id is not None:
        accounts.set_user_language(actor=actor, language=lang)


# ------------------------------------------------------------------------------ the switch


def apply_language() -> str:
    """Settle this run's language (see the module's docstring) and keep the address in step."""
    lang = st.session_state.get(SESSION_KEY)
    if lang not in LANGUAGES:
        lang = set_language(remembered_language() or default_language(browser_language()))

    actor = signed_in_actor()  # None on the login screen
    if actor is not None and actor.user_id is not None and \
            st.session_state.get(USER_APPLIED_KEY) != actor.user_id:
        st.session_state[USER_APPLIED_KEY] = actor.user_id
        try:
            saved = load_user_language(actor)
            if saved:
                lang = set_language(saved)
            else:
                save_user_language(actor, lang)
        except Exception:  # noqa: BLE001 - the language is a comfort, never a blocker
            log.exception("loading the language of user %s failed", actor.user_id)

    if st.query_params.get(QUERY_PARAM) != lang:
        st.query_params[QUERY_PARAM] = lang
    return lang


def _on_switch() -> None:
    lang = set_language(st.session_state[WIDGET_KEY])
    st.query_params[QUERY_PARAM] = lang
    st.session_state["_lang_cookie_pending"] = True
    actor = signed_in_actor()
    if actor is None:
        return
    try:
        save_user_language(actor, lang)
    except Exception:  # noqa: BLE001
        log.exception("saving the language of user %s failed", actor.user_id)


def _remember_in_browser(lang: str) -> None:
    """Write the choice into a cookie so a new tab of this browser opens in it too."""
    seconds = COOKIE_DAYS * 86400
    st.html(
        f"<script>document.cookie = '{COOKIE}={lang}; path=/; max-age={seconds}; "
        "SameSite=Lax';</script>",
        unsafe_allow_javascript=True,
    )


def language_switch() -> None:
    """The sidebar's language picker. Each language is listed in its own name."""
    lang = current_language()
    if st.session_state.get(WIDGET_KEY) != lang:
        st.session_state[WIDGET_KEY] = lang
    st.selectbox(
        "🌐 " + _("Language"),
        options=list(LANGUAGES),
        format_func=LANGUAGES.__getitem__,
        key=WIDGET_KEY,
        on_change=_on_switch,
        help=_("The studio's language. It is remembered for this browser and your account."),
    )
    if st.session_state.pop("_lang_cookie_pending", False):
        _remember_in_browser(lang)
    streamlit_text()  # Streamlit's own words in its widgets, in this language
