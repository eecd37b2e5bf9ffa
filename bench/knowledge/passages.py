"""A corpus of distinct real passages for bench/search.py: sentence windows of text on this machine
that no one here wrote, deduplicated.

Sources, in this order (a run takes as many as it needs): every HTML page of Debian's python3-doc
(parsed by the studio's own HTML loader), the man pages (roff markup stripped), the Python standard
library's docstrings, the README/NEWS/text files under /usr/share/doc, and last the Google
Cloud SDK's man pages (many near-alike: only as far as the others do not reach). Each text is cut into
sentences, and consecutive sentences are packed into windows of about 200-400 characters; a window
whose normalised text was seen before is dropped, and so is one that is mostly not words (tables,
code, option lists).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

MIN_CHARS = 120
TARGET_CHARS = 220
MAX_CHARS = 420

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WS = re.compile(r"\s+")
_WORDS = re.compile(r"[A-Za-z]{2,}")


def sentences(text: str) -> list[str]:
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = _WS.sub(" ", para).strip()
        if para:
            out.extend(s.strip() for s in _SENT.split(para) if s.strip())
    return out


def windows(text: str) -> Iterator[str]:
    """Consecutive sentences packed to about TARGET_CHARS (a long sentence cut at MAX_CHARS)."""
    buf = ""
    for s in sentences(text):
        if len(s) > MAX_CHARS:
            s = s[:MAX_CHARS].rsplit(" ", 1)[0]
        if buf and len(buf) + 1 + len(s) > MAX_CHARS:
            yield buf
            buf = ""
        buf = f"{buf} {s}" if buf else s
        if len(buf) >= TARGET_CHARS:
            yield buf
            buf = ""
    if buf:
        yield buf


def prose(passage: str) -> bool:
    """Mostly words: letters in words make at least 60% of the characters."""
    if len(passage) < MIN_CHARS:
        return False
    letters = sum(len(w) for w in _WORDS.findall(passage))
    return letters >= 0.6 * len(passage)


# ---------------------------------------------------------------------------------- sources


def python_doc_pages(root: Path) -> Iterator[tuple[str, str]]:
    from backend.knowledge.loaders import load

    for p in sorted(root.rglob("*.html")):
        rel = str(p.relative_to(root))
        if rel.startswith(("genindex", "py-modindex", "search", "_")):
            continue
        try:
            doc = load(p, "html", rel)
        except Exception:  # noqa: BLE001 - a page the loader refuses is skipped
            continue
        yield f"python-doc/{rel}", "\n\n".join(s.text for s in doc.sections)


_ROFF_LINE = re.compile(r"^\.(?:\\\"|ig|de|ds|nr|so|TH|PD|in|ti|ta|ft|ps|vs|sp|br|ne|ie|el|if|"
                        r"fi|nf|ad|na|hy|nh|ll|RS|RE|IP|TP|PP|LP|P|HP|EX|EE|UR|UE|MT|ME)\b.*$")
_ESC = re.compile(r"\\f[BIRPC0-9]|\\f\(..|\\f\[[^\]]*\]|\\s[+-]?\d|\\\(..|\\\[[^\]]*\]|\\[&|^%e]|"
                  r"\\-|\\\*\(..|\\\*.|\\\"")


def roff_text(src: str) -> str:
    out: list[str] = []
    for line in src.splitlines():
        if line.startswith((".", "'")):
            if _ROFF_LINE.match(line) or line.startswith("'"):
                if line.startswith((".PP", ".LP", ".P ", ".IP", ".TP", ".SH", ".SS")):
                    out.append("")
                continue
            m = re.match(r"^\.(?:SH|SS|B|I|BI|BR|IB|IR|RB|RI|SM|SB)\s+(.*)$", line)
            if m:
                out.append(m.group(1).replace('"', ""))
                if line.startswith((".SH", ".SS")):
                    out.append("")
            continue
        out.append(line)
    text = "\n".join(out)
    text = text.replace("\\-", "-").replace("\\(em", "—").replace("\\(en", "–")
    return _ESC.sub("", text)


def man_pages(gcloud: bool = False) -> Iterator[tuple[str, str]]:
    """The man pages; the Google Cloud SDK's 16,000 near-alike pages only with ``gcloud`` (and
    never its alpha and beta copies of the same commands)."""
    for p in sorted(Path("/usr/share/man").glob("man*/*.gz")):
        if p.name.startswith("gcloud") != gcloud or p.name.startswith(("gcloud_alpha",
                                                                       "gcloud_beta")):
            continue
        try:
            raw = gzip.decompress(p.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        if raw.startswith(".so "):
            continue  # a link to another page
        yield f"man/{p.parent.name}/{p.name[:-3]}", roff_text(raw)


def stdlib_docstrings() -> Iterator[tuple[str, str]]:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if any(part in ("test", "tests", "idle_test", "site-packages") for part in rel.parts):
            continue
        try:
            tree = ast.parse(p.read_text("utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef |
                          ast.AsyncFunctionDef):
                d = ast.get_docstring(node)
                if d:
                    docs.append(d)
        if docs:
            yield f"stdlib/{rel}", "\n\n".join(docs)


def doc_texts() -> Iterator[tuple[str, str]]:
    for p in sorted(Path("/usr/share/doc").rglob("*")):
        name = p.name.lower()
        if not p.is_file() or "python3" in str(p) or not (
                name.startswith(("readme", "news", "faq")) or name.endswith((".txt", ".txt.gz"))):
            continue
        try:
            data = p.read_bytes()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
        except (OSError, EOFError):
            continue
        yield f"doc/{p.relative_to('/usr/share/doc')}", data.decode("utf-8", "replace")


def sources(python_doc_root: Path) -> Iterator[tuple[str, str]]:
    yield from python_doc_pages(python_doc_root)
    yield from man_pages()
    yield from stdlib_docstrings()
    yield from doc_texts()
    yield from man_pages(gcloud=True)


def build(n: int, python_doc_root: Path) -> list[tuple[str, str]]:
    """The first ``n`` distinct prose passages, as (source, passage)."""
    seen: set[bytes] = set()
    out: list[tuple[str, str]] = []
    for source, text in sources(python_doc_root):
        for w in windows(text):
            if not prose(w):
                continue
            key = hashlib.blake2b(_WS.sub(" ", w.lower()).encode(), digest_size=12).digest()
            if key in seen:
                continue
            seen.add(key)
            out.append((source, w))
            if len(out) >= n:
                return out
    return out


def corpus_hash(passages: list[tuple[str, str]], embedder: str) -> str:
    h = hashlib.sha256(embedder.encode())
    for _, p in passages:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
