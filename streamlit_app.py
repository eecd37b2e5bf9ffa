"""Streamlit's entry script: runs ``studio/app.py`` (navigation, login, sidebar).

It lives here, not in ``studio/``, because Streamlit treats a ``pages/`` folder beside its entry
script as an old-style multipage app: a direct link such as ``/jobs`` on a fresh server would then
run the page alone, skipping the login form, the sidebar and the layout.
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parent / "studio" / "app.py"), run_name="__main__")
