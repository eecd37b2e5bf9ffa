"""Routes to the pages (st.navigation), login, sidebar. Streamlit runs it through ../streamlit_app.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from backend.accounts.actor import Role  # noqa: E402
from studio.components.language import apply_language, language_switch  # noqa: E402
from studio.components.login import account_sidebar, login_page  # noqa: E402
from studio.components.session import (  # noqa: E402
    refresh_session,
    require_page_role,
    sync_session_cookie,
)
from studio.i18n import N_, _  # noqa: E402

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

PAGES = ROOT / "studio" / "pages"

# Every page, the least role that may open it, and its group in the sidebar. A page a role may
# not use is not in that role's sidebar, and its address shows only a note saying which role it
# needs (the services refuse its calls anyway). README's role table says the same.
PAGE_TABLE = [
    # (group, file, title, icon, url_path, role)
    (N_("Studio"), "home.py", N_("Home"), "🏠", "home", Role.user),
    (N_("Studio"), "chat.py", N_("Chat"), "🗨️", "chat", Role.user),
    (N_("Build"), "playground.py", N_("Playground"), "💬", "playground", Role.builder),
    (N_("Build"), "knowledge.py", N_("Knowledge"), "📚", "knowledge", Role.builder),
    (N_("Build"), "agents.py", N_("Agents"), "🤖", "agents", Role.builder),
    (N_("Train"), "finetune.py", N_("Fine-tune"), "🎯", "finetune", Role.builder),
    (N_("Train"), "pretrain.py", N_("Pre-train"), "🏗️", "pretrain", Role.builder),
    (N_("Operate"), "models.py", N_("Models"), "🧠", "models", Role.builder),
    (N_("Operate"), "jobs.py", N_("Jobs"), "⚙️", "jobs", Role.user),
    (N_("Operate"), "settings.py", N_("Settings"), "🔧", "settings", Role.builder),
    (N_("Operate"), "admin.py", N_("Admin"), "🛡️", "admin", Role.admin),
    (N_("Operate"), "account.py", N_("My account"), "👤", "account", Role.user),
]

if actor is None:  # nobody logged in: the login page (first start: create the first admin)
    with st.sidebar:
        language_switch()
    # The login form answers at every page's address, so a link to a page (a bot's share link,
    # /chat?bot=NAME) shows the login form, not "page not found", and keeps its address and
    # query: after the login the rerun opens that very page (a page is known by its url_path).
    login = [st.Page(login_page, title=_("Log in"), icon="🔑", url_path="login", default=True)]
    login += [st.Page(login_page, title=_("Log in"), icon="🔑", url_path=row[4])
              for row in PAGE_TABLE]
    st.navigation(login, position="hidden").run()
    st.stop()



def _refused(role: Role) -> Callable[[], None]:
    """What a page of a higher role shows at its address: why it does not open, and where to go."""
    def page() -> None:
        require_page_role(actor, role)
    return page


pages: dict[str, list[st.Page]] = {}
for group, file, title, icon, url_path, role in PAGE_TABLE:
    if actor.has_role(role):
        pages.setdefault(_(group), []).append(st.Page(
            str(PAGES / file), title=_(title), icon=icon, url_path=url_path,
            default=url_path == "home"))
    else:  # not in the sidebar; its address says it needs another role
        pages.setdefault(_(PAGE_TABLE[0][0]), []).append(st.Page(
            _refused(role), title=_(title), icon=icon, url_path=url_path, visibility="hidden"))

account_sidebar(actor)
with st.sidebar:
    language_switch()

st.navigation(pages).run()
