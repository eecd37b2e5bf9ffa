"""Routes to the pages (st.navigation), login, sidebar. Streamlit runs it through ../streamlit_app.py."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from studio.components.language import apply_language, language_switch  # noqa: E402
from studio.components.login import account_sidebar, login_page  # noqa: E402
from studio.components.session import refresh_session, sync_session_cookie  # noqa: E402
from studio.i18n import _  # noqa: E402

st.set_page_config(page_title="LLM Studio", page_icon="🧪", layout="wide")


@st.cache_resource(show_spinner=False)
def _schema_ready() -> None:
    """Once per server: an empty or embedded database gets its schema (``studio up`` has
    usually done it already); an outdated shared one stops here with what to do."""
    from backend.services.system import SchemaOutdated, ensure_schema

    try:
        ensure_schema()
    except SchemaOutdated as err:
        import logging

        logging.getLogger("studio").error("%s", err)
        st.error(_("The database is older than this version of the studio. An admin must run "
                   "`studio db upgrade` (after a backup with `studio db dump`)."))
        st.stop()


_schema_ready()
actor = refresh_session()  # the login behind this browser session, checked on every run
sync_session_cookie()  # after a login or logout: keep the browser's cookie in step
apply_language()  # before any _(): the page titles below are translated

if actor is None:  # nobody logged in: the login page (first start: create the first admin)
    with st.sidebar:
        language_switch()
    st.navigation([st.Page(login_page, title=_("Log in"), icon="🔑", url_path="login")],
                  position="hidden").run()
    st.stop()

PAGES = ROOT / "studio" / "pages"

pages = {
    _("Studio"): [
        st.Page(str(PAGES / "home.py"), title=_("Home"), icon="🏠", url_path="home", default=True),
        st.Page(str(PAGES / "chat.py"), title=_("Chat"), icon="🗨️", url_path="chat"),
    ],
    _("Build"): [
        st.Page(str(PAGES / "playground.py"), title=_("Playground"), icon="💬", url_path="playground"),
        st.Page(str(PAGES / "knowledge.py"), title=_("Knowledge"), icon="📚", url_path="knowledge"),
        st.Page(str(PAGES / "agents.py"), title=_("Agents"), icon="🤖", url_path="agents"),
    ],
    _("Train"): [
        st.Page(str(PAGES / "finetune.py"), title=_("Fine-tune"), icon="🎯", url_path="finetune"),
        st.Page(str(PAGES / "pretrain.py"), title=_("Pre-train"), icon="🏗️", url_path="pretrain"),
    ],
    _("Operate"): [
        st.Page(str(PAGES / "models.py"), title=_("Models"), icon="🧠", url_path="models"),
        st.Page(str(PAGES / "jobs.py"), title=_("Jobs"), icon="⚙️", url_path="jobs"),
        st.Page(str(PAGES / "settings.py"), title=_("Settings"), icon="🔧", url_path="settings"),
    ],
}

if actor.is_admin:
    pages[_("Operate")].append(
        st.Page(str(PAGES / "admin.py"), title=_("Admin"), icon="🛡️", url_path="admin"))
pages[_("Operate")].append(
    st.Page(str(PAGES / "account.py"), title=_("My account"), icon="👤", url_path="account"))

account_sidebar(actor)
with st.sidebar:
    language_switch()

st.navigation(pages).run()
