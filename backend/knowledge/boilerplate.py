"""Text that most documents of one upload share is not content: a generated site's navigation
("Prev | Up | Next | Home", "Next: Tuples, Previous: Lists, Up: Data Structures"), its running
headers and footers, copyright lines, "Report a bug" boxes. Sphinx, Javadoc, texinfo and MkDocs
put the same template around every page; a chunk made of it matches every question a little and
crowds the real answers out of the top results.

``find_boilerplate`` reads a sample of the documents of one upload (or one base) and returns the
keys of the lines that most of them hold; ``strip_boilerplate`` takes those lines out of one
document before it is split. A line's key is its text, lower-cased, digits and spaces folded; for
an HTML line with links and words of its own, its template (each link's text replaced: the
"Next: LINK, Up: LINK" shape the pages share while their link targets differ).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from backend.knowledge.loaders import LINK, DocumentError, ParsedDocument, Section, clean_text

log = logging.getLogger(__name__)

# file types whose documents can share a template (records and PDFs are left alone: CSV rows
# are content, and PDFs drop their running headers page by page in the loader)
TYPES = frozenset(("html", "md", "txt", "docx"))
# a line is boilerplate when at least this share of the documents hold it, and at least
# MIN_DOCUMENTS of them
SHARE = 0.5
MIN_DOCUMENTS = 3
# documents read to find it (an even sample of a larger upload)
SAMPLE = 120

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")


def line_key(line: str, template: str | None = None) -> str:
    """What a line is compared by across documents (see the module's docstring). A line that is
    one link and nothing else keys on its text: a list of links to other pages is content."""
    text = line
    if template is not None and LINK in template:
        rest = template.replace(LINK, "")
        if _LETTER.search(rest) or template.count(LINK) >= 2:
            text = template
    return _SPACE.sub(" ", _DIGITS.sub("#", text.strip().lower()))


def document_keys(doc: ParsedDocument) -> set[str]:
    return {line_key(line, doc.templates.get(line))
            for s in doc.sections if not s.record
            for line in s.text.split("\n") if line.strip()}


def find_boilerplate(docs: Iterable[ParsedDocument], *, share: float = SHARE,
                     min_documents: int = MIN_DOCUMENTS) -> frozenset[str]:
    """The keys of the lines that at least ``share`` of ``docs`` (and at least
    ``min_documents``) hold. Fewer documents than that: nothing is boilerplate."""
    counts: Counter[str] = Counter()
    n = 0
    for doc in docs:
        n += 1
        counts.update(document_keys(doc))
    if n < min_documents:
        return frozenset()
    need = max(min_documents, math.ceil(share * n))
    return frozenset(k for k, c in counts.items() if c >= need)


def strip_boilerplate(doc: ParsedDocument, keys: frozenset[str]) -> ParsedDocument:
    """``doc`` without the lines whose key is in ``keys``. A document left with no text of its
    own is refused (it was only its site's template)."""
    if not keys:
        return doc
    sections: list[Section] = []
    dropped = 0
    for s in doc.sections:
        if s.record:
            sections.append(s)
            continue
        lines = s.text.split("\n")
        kept = [ln for ln in lines
                if not ln.strip() or line_key(ln, doc.templates.get(ln)) not in keys]
        dropped += len(lines) - len(kept)
        text = clean_text("\n".join(kept))
        if text:
            sections.append(replace(s, text=text))
    if not dropped:
        return doc
    if not sections:
        raise DocumentError("The file has no text of its own: only the navigation, headers and "
                            "footers that the other pages of this upload share.")
    meta = {**doc.meta, "boilerplate_lines": dropped}
    return replace(doc, sections=sections, meta=meta)


def boilerplate_of_files(files: Iterable[tuple[Path, str, str]], *, sample: int = SAMPLE
                         ) -> dict[str, frozenset[str]]:
    """``find_boilerplate`` over the readable documents among ``files`` ((path, file type,
    name)), per file type (the HTML pages of an upload share a template, its Markdown files
    another); an even sample of ``sample`` documents of each type. Types with nothing shared
    are left out."""
    from backend.knowledge.loaders import load

    by_type: dict[str, list[tuple[Path, str, str]]] = {}
    for f in files:
        if f[1] in TYPES:
            by_type.setdefault(f[1], []).append(f)
    out: dict[str, frozenset[str]] = {}
    for file_type, group in by_type.items():
        if len(group) < MIN_DOCUMENTS:
            continue
        if len(group) > sample:
            group = random.Random(len(group)).sample(group, sample)

        def parsed(group: list[tuple[Path, str, str]] = group) -> Iterable[ParsedDocument]:
            for path, ftype, name in group:
                try:
                    yield load(path, ftype, name)
                except (DocumentError, ValueError, OSError) as exc:
                    log.debug("boilerplate sample: %s skipped (%s)", name, exc)

        keys = find_boilerplate(parsed())
        if keys:
            out[file_type] = keys
    return out
