"""Shared by the knowledge benchmarks: the corpus (Debian's python3-doc HTML, a part of it that
covers the questions plus as many pages that do not), the questions, and an embedded-services
environment under a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC_ROOTS = (Path("/usr/share/doc/python3-doc/html"), Path("/usr/share/doc/python3.11-doc/html"),
             Path("/usr/share/doc/python3.11/html"))

# pages that answer no question: they make retrieval harder, as a real manual does
_DISTRACTOR_TEXT = """
library/array library/struct library/io library/sys library/socket library/select
library/signal library/ssl library/stat library/string library/stdtypes library/functions
library/types library/weakref library/abc library/contextlib library/inspect library/traceback
library/warnings library/locale library/gettext library/calendar library/math library/cmath
library/fractions library/numbers library/platform library/shlex library/tarfile library/lzma
library/bz2 library/mmap library/uuid library/ipaddress library/urllib.parse
library/http.client library/html.parser library/webbrowser library/sched library/getpass
library/readline library/filecmp library/fileinput library/marshal library/dbm library/plistlib
library/netrc library/mailbox library/imaplib library/ftplib library/poplib
library/socketserver library/selectors library/asyncio-queue library/asyncio-sync
library/asyncio-eventloop library/asyncio-subprocess library/email.message library/email.parser
library/xml.sax library/xml.dom library/html library/cgi library/wsgiref library/turtle
library/tkinter library/curses library/ctypes library/gc library/dis library/ast
library/tokenize library/pydoc library/importlib library/pkgutil library/runpy library/site
library/sysconfig library/builtins library/keyword library/operator library/reprlib
library/unicodedata library/codecs library/collections.abc library/graphlib library/contextvars
library/_thread library/resource library/syslog library/pty library/tty library/termios
library/fcntl library/grp library/pwd library/errno library/faulthandler library/trace
library/tabnanny library/compileall library/zipapp library/zipimport library/colorsys
library/wave library/audioop library/chunk reference/datamodel reference/expressions
reference/compound_stmts reference/simple_stmts reference/import reference/executionmodel
reference/lexical_analysis glossary
"""
DISTRACTORS = _DISTRACTOR_TEXT.split()


def doc_root() -> Path:
    for root in DOC_ROOTS:
        if (root / "library" / "os.html").exists():
            return root
    raise SystemExit("Debian's python3-doc is not installed: apt-get install -y python3-doc")


QUESTION_SETS = {"tuning": "questions.json", "heldout": "questions_heldout.json"}


def questions(sets: tuple[str, ...] = ("tuning", "heldout")) -> list[dict[str, object]]:
    """The questions, each tagged with its ``set``: ``tuning`` (questions.json, the set the
    hybrid weights and other choices were made on) and ``heldout`` (questions_heldout.json,
    written later and only looked at for final checks)."""
    out: list[dict[str, object]] = []
    for name in sets:
        path = HERE / QUESTION_SETS[name]
        if path.exists():
            out.extend({**q, "set": name} for q in json.loads(path.read_text()))
    return out


def corpus_pages(full: bool = False, distractors: bool = False) -> list[str]:
    """Relative paths of the pages the benchmark indexes: those the questions need and the
    tutorial, FAQ and HOWTOs (``distractors``: about 130 more library pages; ``full``: every
    HTML page of the manual)."""
    root = doc_root()
    if full:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*.html")
                      if not p.name.startswith(("genindex", "py-modindex", "search")))
    pages = {p for q in questions() for p in q["pages"]}  # type: ignore[attr-defined]
    for folder in ("tutorial", "howto", "faq"):
        pages.update(str(p.relative_to(root)) for p in (root / folder).glob("*.html"))
    if distractors:
        pages.update(f"{d}.html" for d in DISTRACTORS)
    return sorted(p for p in pages if (root / p).exists())


def copy_corpus(dest: Path, pages: list[str]) -> Path:
    root = doc_root()
    for rel in pages:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    return dest


def setup_environment(data_dir: Path) -> None:
    """Embedded Postgres and Redis under ``data_dir``, migrated."""
    from bench.environment import setup_environment as setup

    setup(data_dir, STUDIO_MAX_UPLOAD_MB="500")


def machine() -> str:
    try:
        cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        cpu = "?"
    return f"{cpu} cores, load {os.getloadavg()[0]:.1f}"
