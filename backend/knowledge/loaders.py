"""One loader per file type behind one interface: ``load(path, file_type) -> ParsedDocument``.

A parsed document is its title and its sections, each with the heading path it sits under and
(for PDFs) its page. Loaders clean as they go: scripts, styles, navigation and boilerplate out of
HTML; repeated page headers and footers out of PDFs; whitespace everywhere. A file that cannot be
read raises ``DocumentError`` with a sentence that says what to do about it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# extension -> file type the loaders know
FILE_TYPES: dict[str, str] = {
    ".txt": "txt", ".text": "txt", ".log": "txt", ".rst": "txt",
    ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv", ".tsv": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".zip": "zip",
}


class DocumentError(ValueError):
    """The file cannot be used; the message says why and what to do."""


@dataclass
class Section:
    text: str
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    # a record (CSV row, Q&A pair) is one chunk of its own, never split or merged
    record: bool = False


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section]
    meta: dict[str, Any] = field(default_factory=dict)
    # HTML: a line of text -> the same line with each link's text replaced by ``LINK`` (what a
    # generated site's templates share across pages: "Next: LINK, Previous: LINK, Up: LINK");
    # only lines with links. Not stored: ``backend.knowledge.boilerplate`` reads it
    templates: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def char_count(self) -> int:
        return sum(len(s.text) for s in self.sections)


def file_type_for(name: str) -> str | None:
    return FILE_TYPES.get(Path(name).suffix.lower())


# Files that come with documents (a generated HTML manual's stylesheets, images, scripts and
# fonts; media) and are never indexed: in a folder or a zip they are skipped and counted as
# skipped, not failed
NEVER_INDEXED = frozenset({
    ".css", ".scss", ".sass", ".less", ".map",
    ".js", ".mjs", ".cjs",
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".bmp", ".tif", ".tiff", ".avif",
    ".woff", ".woff2", ".ttf", ".otf", ".eot",
    ".mp3", ".mp4", ".wav", ".ogg", ".webm", ".mov", ".avi",
})
SKIPPED_REASON = "a stylesheet, image, script, font or media file: not indexed"


def never_indexed(name: str) -> bool:
    """True for a file that accompanies documents and is never indexed (``NEVER_INDEXED``)."""
    return Path(name).suffix.lower() in NEVER_INDEXED


# ---------------------------------------------------------------------------- cleaning

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


# ---------------------------------------------------------------------------- text decoding


_SINGLE_BYTE = re.compile(r"^(cp1250|cp1252|iso8859_(1|2|15)|latin_1|mac_(roman|latin2))$")


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else the detected encoding (GBK, Big5,
    Latin-1 ...). Binary data is refused."""
    if not data.strip():
        raise DocumentError(f"{name} is empty: there is no text to index.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:65536]:
        raise DocumentError(
            f"{name} contains binary data, not text. Upload the document in its own format "
            "(PDF, DOCX, HTML, Markdown, TXT) or export it as text first."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:2_000_000]).best()
    if best is None or best.encoding is None:
        raise DocumentError(
            f"{name} is not readable text in any encoding we recognise. Save it as UTF-8 text."
        )
    encoding = best.encoding
    if _SINGLE_BYTE.match(encoding):
        # single-byte codecs are hard to tell apart; Western European text is the common case
        try:
            data.decode("cp1252")
            encoding = "cp1252"
        except UnicodeDecodeError:
            pass
    text = data.decode(encoding, errors="replace")
    bad = sum(1 for ch in text[:20000] if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\n\r\t"))
    if bad > max(10, len(text[:20000]) // 50):
        raise DocumentError(
            f"{name} looks like binary data rather than text. Upload it in its own format or "
            "export it as text first."
        )
    return text


# ---------------------------------------------------------------------------- loaders


def _first_line_title(text: str, fallback: str) -> str:
    for line in text.split("\n"):
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def load_txt(data: bytes, name: str) -> ParsedDocument:
    text = clean_text(decode_text(data, name))
    if not text:
        raise DocumentError(f"{name} is empty: there is no text to index.")
    return ParsedDocument(title=Path(name).stem, sections=[Section(text)])


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^(```|~~~)")


def sections_from_markdown(text: str) -> tuple[str, list[Section]]:
    """Sections under their heading path; headings inside code fences are not headings."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []
    title = ""
    in_fence = False

    def flush() -> None:
        body = clean_text("\n".join(buf))
        if body:
            sections.append(Section(body, [h for _, h in path]))
        buf.clear()

    for line in text.split("\n"):
        if _MD_FENCE.match(line.strip()):
            in_fence = not in_fence
        m = None if in_fence else _MD_HEADING.match(line)
        if m:
            flush()
            level, heading = len(m.group(1)), m.group(2).strip()
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
            if not title and level == 1:
                title = heading
        else:
            buf.append(line)
    flush()
    return title, sections


def load_md(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data, name).replace("\r\n", "\n")
    title, sections = sections_from_markdown(text)
    if not sections:
        raise DocumentError(f"{name} has headings but no text to index.")
    return ParsedDocument(title=title or Path(name).stem, sections=sections)


# HTML: what is not content
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "canvas", "iframe", "nav",
              "header", "footer", "aside", "form", "button", "select", "input", "object",
              "embed")
_BOILERPLATE = re.compile(
    r"(^|[\s_-])(nav|navbar|navigation|menu|sidebar|sphinxsidebar|related|breadcrumbs?|footer|"
    r"header|cookie|banner|advert|ads|social|share|skip|toc|pagination|headerlink)($|[\s_-])",
    re.I)
_BOILER_ROLES = re.compile("navigation|banner|contentinfo|search|complementary")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# a link's text in a line's template (``ParsedDocument.templates``)
LINK = "\u27e8link\u27e9"
# words of a manual's page-to-page navigation ("Prev | Up | Next | Home", "Next: Tuples")
NAV_WORDS = frozenset((
    "prev", "previous", "next", "up", "home", "top", "contents", "index", "back", "forward",
    "toc", "start", "first", "last", "page", "go", "to", "table", "of", "search", "modules",
    "上一页", "下一页", "上一节", "下一节", "上一章", "下一章", "上一篇", "下一篇", "首页", "主页",
    "目录", "返回", "索引", "顶部", "回到顶部"))
_WORD = re.compile(r"\w+")


def is_navigation_line(line: str, template: str) -> bool:
    """A line of links that moves between pages: it has a link, every word outside its links
    is a navigation word, and either some are ("Next: Tuples, Up: Data structures") or the
    links' own words all are ("Prev", "[ Up ]", "Home")."""
    if LINK not in template:
        return False
    outside = [w.lower() for w in _WORD.findall(template.replace(LINK, " "))]
    if any(w not in NAV_WORDS for w in outside):
        return False
    if outside:
        return True
    words = [w.lower() for w in _WORD.findall(line)]
    return bool(words) and all(w in NAV_WORDS for w in words)
_BLOCKS = frozenset(("p", "li", "pre", "dt", "dd", "td", "th", "blockquote", "caption",
                     "figcaption", "div", "section", "article", "table", "ul", "ol", "dl", "tr"))


def load_html(data: bytes, name: str) -> ParsedDocument:
    from lxml import etree
    from lxml import html as lhtml

    text = decode_text(data, name)
    parser = lhtml.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        root = lhtml.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise DocumentError(f"{name} has no readable text (only markup or scripts).") from exc
    title_el = root.find(".//title")
    page_title = clean_text(title_el.text_content()) if title_el is not None else ""
    etree.strip_elements(root, *_DROP_TAGS, with_tail=False)
    for el in root.xpath("//*[@class or @id or @role]"):
        if el.tag in ("html", "body"):
            continue
        role = el.get("role") or ""
        marks = f"{el.get('class') or ''} {el.get('id') or ''}"
        if _BOILER_ROLES.search(role) or _BOILERPLATE.search(marks):
            el.drop_tree()
    body = root.find(".//body")
    candidates = (root.xpath("//main") or root.xpath("//*[@role='main']")
                  or root.xpath("//article") or root.xpath("//div[@class='body']"))
    start = candidates[0] if candidates else (body if body is not None else root)
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []
    tbuf: list[str] = []  # the same text with each link's text as LINK
    templates: dict[str, str] = {}

    def emit(piece: str, template: str | None = None) -> None:
        buf.append(piece)
        tbuf.append(piece if template is None else template)

    def flush() -> None:
        body_text, template = clean_text("".join(buf)), clean_text("".join(tbuf))
        buf.clear()
        tbuf.clear()
        lines, tlines = body_text.split("\n"), template.split("\n")
        if len(lines) == len(tlines):
            kept = []
            for line, tline in zip(lines, tlines, strict=True):
                if tline != line and line:
                    if is_navigation_line(line, tline):
                        continue
                    templates[line] = tline
                kept.append(line)
            body_text = clean_text("\n".join(kept))
        if body_text:
            sections.append(Section(body_text, [h for _, h in path]))

    def walk(el: Any) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _HEADINGS:
            flush()
            level = int(tag[1])
            heading = clean_text(el.text_content()).replace("\n", " ").rstrip("¶").strip()
            if heading:
                path[:] = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
            return
        if tag == "pre":
            emit("\n" + el.text_content() + "\n")
            return
        if tag == "br":
            emit("\n")
            return
        if tag == "a" and not any(isinstance(c.tag, str) and c.tag in _BLOCKS for c in el):
            link = el.text_content().replace("\n", " ")
            emit(link, f" {LINK} " if link.strip() else link)
            return
        block = tag in _BLOCKS
        if block:
            emit("\n")
        if el.text:
            emit(el.text.replace("\n", " "))
        for child in el:
            walk(child)
            if child.tail:
                emit(child.tail.replace("\n", " "))
        if block:
            emit("\n")

    try:
        walk(start)
    except RecursionError as exc:
        raise DocumentError(f"{name} is nested too deeply to read. Simplify the page or save "
                            "it as text.") from exc
    flush()
    if not sections:
        raise DocumentError(f"{name} has no readable text (only markup or scripts).")
    title = (page_title.split(" — ")[0].split(" | ")[0].strip()
             or (sections[0].heading_path[0] if sections[0].heading_path else "")
             or Path(name).stem)
    return ParsedDocument(title=title[:200], sections=sections, templates=templates)


def _strip_repeated_lines(pages: list[str]) -> list[str]:
    """Lines at the top or bottom of most pages (running headers, footers, page numbers)."""
    if len(pages) < 3:
        return pages

    def norm(line: str) -> str:
        return re.sub(r"\d+", "#", line.strip().lower())

    edge: Counter[str] = Counter()
    for page in pages:
        lines = [ln for ln in page.split("\n") if ln.strip()]
        for ln in set(lines[:2] + lines[-2:]):
            edge[norm(ln)] += 1
    repeated = {k for k, v in edge.items() if v >= max(3, len(pages) * 0.6)}
    out = []
    for page in pages:
        lines = page.split("\n")
        out.append("\n".join(ln for ln in lines if norm(ln) not in repeated or not ln.strip()))
    return out


def load_pdf(data: bytes, name: str) -> ParsedDocument:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if not data.startswith(b"%PDF-"):
        raise DocumentError(f"{name} is not a PDF (it does not start with %PDF-). Upload the "
                            "real PDF, or give the file the extension that fits it.")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:  # noqa: BLE001
                raise DocumentError(f"{name} is password-protected. Upload an unprotected copy."
                                    ) from exc
        pages = [(p.extract_text() or "") for p in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError,
            RecursionError, IndexError, AssertionError) as exc:
        raise DocumentError(
            f"{name} is a damaged PDF that cannot be read ({type(exc).__name__}). Open it in a "
            "PDF viewer and save or print it to a new PDF, then upload that."
        ) from exc
    if not pages:
        raise DocumentError(f"{name} is a damaged PDF with no pages. Save it anew and upload it.")
    pages = _strip_repeated_lines([clean_text(p) for p in pages])
    sections = [Section(clean_text(t), [], page=i + 1) for i, t in enumerate(pages)
                if clean_text(t)]
    if sum(len(s.text) for s in sections) < 20:
        raise DocumentError(
            f"{name} has no text layer (it is scanned images). Run OCR on it (for example "
            "ocrmypdf, or \"Recognize text\" in a PDF editor) and upload the result."
        )
    title = ""
    try:
        meta = reader.metadata
        title = (meta.title or "") if meta else ""
    except Exception:  # noqa: BLE001 - a title is optional
        title = ""
    return ParsedDocument(title=(title or _first_line_title(sections[0].text, Path(name).stem)
                                 )[:200], sections=sections, meta={"pages": len(pages)})


def load_docx(data: bytes, name: str) -> ParsedDocument:
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DocumentError(
            f"{name} is not a readable Word document ({type(exc).__name__}). Open it in Word "
            "or LibreOffice, save it as .docx again and upload that."
        ) from exc
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []
    title = ""

    def flush() -> None:
        body = clean_text("\n".join(buf))
        if body:
            sections.append(Section(body, [h for _, h in path]))
        buf.clear()

    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            from docx.text.paragraph import Paragraph

            para = Paragraph(child, document)
            style = (para.style.name if para.style is not None else "") or ""
            text = para.text.strip()
            m = re.match(r"(Heading|标题)\s*(\d)", style)
            if style == "Title" and text:
                title = title or text
            elif m and text:
                flush()
                level = int(m.group(2))
                path = [(lv, h) for lv, h in path if lv < level] + [(level, text)]
                if level == 1 and not title:
                    title = text
            elif text:
                buf.append(text)
        elif tag == "tbl":
            from docx.table import Table

            table = Table(child, document)
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                if any(cells):
                    buf.append(" | ".join(dict.fromkeys(cells)))
    flush()
    if not sections:
        raise DocumentError(f"{name} is a Word document without text to index.")
    return ParsedDocument(title=(title or Path(name).stem)[:200], sections=sections)


_Q_KEYS = ("question", "q", "query", "prompt", "instruction", "问题")
_A_KEYS = ("answer", "a", "response", "output", "completion", "答案", "回答")


def _qa_keys(keys: list[str]) -> tuple[str, str] | None:
    low = {k.strip().lower(): k for k in keys if isinstance(k, str)}
    q = next((low[k] for k in _Q_KEYS if k in low), None)
    a = next((low[k] for k in _A_KEYS if k in low), None)
    return (q, a) if q and a else None


def _record_text(row: dict[str, Any], qa: tuple[str, str] | None) -> str:
    if qa:
        return f"Q: {str(row.get(qa[0]) or '').strip()}\nA: {str(row.get(qa[1]) or '').strip()}"
    return "\n".join(f"{k}: {v}" for k, v in row.items() if str(v).strip())


def load_csv(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data, name)
    dialect: Any = "excel-tab" if name.lower().endswith(".tsv") else "excel"
    if dialect == "excel":
        try:
            dialect = csv.Sniffer().sniff(text[:5000], delimiters=",;\t|")
        except csv.Error:
            dialect = "excel"
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise DocumentError(f"{name} is empty: there is no text to index.") from None
    except csv.Error as exc:
        raise DocumentError(f"{name} is not readable as CSV ({exc}).") from exc
    header = [h.strip() or f"column {i + 1}" for i, h in enumerate(header)]
    qa = _qa_keys(header)
    sections: list[Section] = []
    try:
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DocumentError(
                    f"{name}: line {line} has {len(row)} fields but the header has "
                    f"{len(header)}. Fix that row (a missing or extra separator, or an unquoted "
                    "comma) and upload the file again."
                )
            record = dict(zip(header, row, strict=True))
            body = _record_text(record, qa)
            if body.strip():
                sections.append(Section(body, [], record=True))
    except csv.Error as exc:
        raise DocumentError(f"{name}: line {reader.line_num} is not valid CSV ({exc}).") from exc
    if not sections:
        raise DocumentError(f"{name} has a header but no rows to index.")
    return ParsedDocument(title=Path(name).stem, sections=sections,
                          meta={"rows": len(sections), "qa_pairs": bool(qa)})


def load_jsonl(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data, name)
    sections: list[Section] = []
    qa_seen = False
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DocumentError(f"{name}: line {lineno} is not valid JSON ({exc.msg}). Fix that "
                                "line and upload the file again.") from exc
        if isinstance(obj, dict):
            qa = _qa_keys(list(obj))
            qa_seen = qa_seen or bool(qa)
            body = _record_text(obj, qa) if qa else str(
                obj.get("text") or obj.get("content") or json.dumps(obj, ensure_ascii=False))
        else:
            body = str(obj)
        if body.strip():
            sections.append(Section(clean_text(body), [], record=True))
    if not sections:
        raise DocumentError(f"{name} is empty: there is no text to index.")
    return ParsedDocument(title=Path(name).stem, sections=sections,
                          meta={"rows": len(sections), "qa_pairs": qa_seen})


LOADERS: dict[str, Callable[[bytes, str], ParsedDocument]] = {
    "txt": load_txt, "md": load_md, "html": load_html, "pdf": load_pdf, "docx": load_docx,
    "csv": load_csv, "jsonl": load_jsonl,
}


def load(path: Path, file_type: str, name: str) -> ParsedDocument:
    """Parse and clean one file. ``name`` is the name people know it by (used in messages)."""
    loader = LOADERS.get(file_type)
    if loader is None:
        raise DocumentError(f"{name}: files of type {file_type!r} cannot be indexed. Accepted: "
                            f"{', '.join(sorted(FILE_TYPES))}.")
    data = path.read_bytes()
    if not data:
        raise DocumentError(f"{name} is empty: there is no text to index.")
    return loader(data, name)
