"""Splitting a parsed document into chunks that keep their title, heading path and page.

Splitters:
- ``heading`` (default): each section under its heading path is split on its own; short
  neighbouring sections under the same parent are packed together;
- ``recursive``: the whole text as one stream, cut on paragraphs, lines, sentences, words;
- ``sentence``: sentences packed up to the chunk size.

A chunk's ``text`` is what people read; ``embed_text`` (title and heading path first, then the
text) is what is embedded and counted for BM25, so a chunk deep in a page still knows its topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from backend.knowledge.loaders import ParsedDocument, Section

SPLITTERS = ("heading", "recursive", "sentence")
_SEPARATORS = ("\n\n", "\n", "。", "！", "？", ". ", "? ", "! ", "; ", "；", "，", ", ", " ", "")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")


@dataclass
class ChunkDraft:
    text: str
    heading_path: list[str]
    page: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def context(self, title: str) -> str:
        parts = [p for p in [title, *self.heading_path] if p]
        # the page title often repeats the first heading
        dedup: list[str] = []
        for p in parts:
            if not dedup or dedup[-1] != p:
                dedup.append(p)
        return " > ".join(dedup)

    def embed_text(self, title: str) -> str:
        ctx = self.context(title)
        return f"{ctx}\n\n{self.text}" if ctx else self.text


def _split_recursive(text: str, size: int, overlap: int, seps: tuple[str, ...] = _SEPARATORS
                     ) -> list[str]:
    """LangChain's recursive character splitting, with overlap carried between pieces."""
    if len(text) <= size:
        return [text] if text.strip() else []
    sep = next((s for s in seps if s and s in text), "")
    rest = seps[seps.index(sep) + 1:] if sep in seps else ()
    pieces = list(text) if sep == "" else [p + sep for p in text.split(sep)]
    if sep and pieces:
        pieces[-1] = pieces[-1][: -len(sep)]
    out: list[str] = []
    current: list[str] = []
    length = 0
    for piece in pieces:
        if len(piece) > size:
            if current:
                out.append("".join(current))
                current, length = [], 0
            out.extend(_split_recursive(piece, size, overlap, rest or ("",)))
            continue
        if length + len(piece) > size and current:
            out.append("".join(current))
            # keep a tail of at most ``overlap`` characters as the next chunk's start
            while current and (length > overlap or length + len(piece) > size):
                length -= len(current[0])
                current.pop(0)
        current.append(piece)
        length += len(piece)
    if current:
        out.append("".join(current))
    return [o.strip() for o in out if o.strip()]


def _split_sentences(text: str, size: int, overlap: int) -> list[str]:
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    out: list[str] = []
    current: list[str] = []
    for s in sentences:
        if len(s) > size:
            if current:
                out.append(" ".join(current))
                current = []
            out.extend(_split_recursive(s, size, overlap))
            continue
        if current and len(" ".join([*current, s])) > size:
            out.append(" ".join(current))
            keep: list[str] = []
            for prev in reversed(current):
                if len(" ".join([prev, *keep])) > overlap:
                    break
                keep.insert(0, prev)
            current = keep
        current.append(s)
    if current:
        out.append(" ".join(current))
    return [o.strip() for o in out if o.strip()]


def _pack_sections(sections: list[Section], size: int) -> list[Section]:
    """Join short neighbouring sections under the same parent heading (not records)."""
    out: list[Section] = []
    for s in sections:
        prev = out[-1] if out else None
        if (prev is not None and not s.record and not prev.record and prev.page == s.page
                and len(prev.text) + len(s.text) + 2 <= size // 2
                and prev.heading_path[:-1] == s.heading_path[:-1]):
            extra = s.heading_path[-1] if s.heading_path and s.heading_path != prev.heading_path \
                else ""
            text = f"{prev.text}\n\n{extra}\n{s.text}" if extra else f"{prev.text}\n\n{s.text}"
            out[-1] = Section(text, prev.heading_path, prev.page)
        else:
            out.append(Section(s.text, list(s.heading_path), s.page, s.record))
    return out


def min_chunk_chars(chunk_size: int) -> int:
    """The shortest chunk worth keeping on its own: an eighth of the chunk size, between 40 and
    120 characters. A shorter piece (a one-word leftover such as "FULL", a lone heading line)
    matches questions by accident and cites nothing; it joins a neighbour instead."""
    return max(40, min(120, chunk_size // 8))


def merge_short(drafts: list[ChunkDraft], min_chars: int) -> list[ChunkDraft]:
    """Join every draft shorter than ``min_chars`` to a neighbour on the same page: the one
    before it (its heading line kept when it sits under another heading), else the one after.
    A document that is one short chunk stays one chunk; records are never merged."""
    out: list[ChunkDraft] = []
    carry: ChunkDraft | None = None  # a short first draft, waiting for the next one
    for d in drafts:
        if "record" in d.meta:
            out.append(d)
            continue
        if carry is not None and carry.page == d.page:
            d = ChunkDraft(_join(carry, d, keep_first=True), d.heading_path, d.page, d.meta)
            carry = None
        elif carry is not None:
            out.append(carry)
            carry = None
        if len(d.text) >= min_chars:
            out.append(d)
            continue
        prev = out[-1] if out else None
        if prev is not None and "record" not in prev.meta and prev.page == d.page:
            out[-1] = ChunkDraft(_join(prev, d), prev.heading_path, prev.page, prev.meta)
        else:
            carry = d
    if carry is not None:
        prev = out[-1] if out else None
        if prev is not None and "record" not in prev.meta and prev.page == carry.page:
            out[-1] = ChunkDraft(_join(prev, carry), prev.heading_path, prev.page, prev.meta)
        else:
            out.append(carry)
    return out


def _join(first: ChunkDraft, second: ChunkDraft, *, keep_first: bool = False) -> str:
    """The two texts as one; the heading of the draft that loses its own heading path goes
    in front of its text (when it differs from the one kept)."""
    if keep_first:  # the result keeps ``second``'s heading path
        extra = first.heading_path[-1] if first.heading_path and \
            first.heading_path != second.heading_path else ""
        head = f"{extra}\n{first.text}" if extra and not first.text.startswith(extra) \
            else first.text
        return f"{head}\n\n{second.text}"
    extra = second.heading_path[-1] if second.heading_path and \
        second.heading_path != first.heading_path else ""
    tail = f"{extra}\n{second.text}" if extra and not second.text.startswith(extra) \
        else second.text
    if tail in first.text:  # an overlap piece already held by the chunk before it
        return first.text
    return f"{first.text}\n\n{tail}"


def split_document(doc: ParsedDocument, *, chunk_size: int = 1000, chunk_overlap: int = 150,
                   splitter: str = "heading") -> list[ChunkDraft]:
    if splitter not in SPLITTERS:
        raise ValueError(f"Unknown splitter {splitter!r}: use {', '.join(SPLITTERS)}.")
    if chunk_size < 50:
        raise ValueError("chunk_size must be at least 50 characters.")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError("chunk_overlap must be at least 0 and smaller than chunk_size.")
    drafts: list[ChunkDraft] = []
    records = [s for s in doc.sections if s.record]
    if records and len(records) == len(doc.sections):
        return [ChunkDraft(s.text[: chunk_size * 4], [], None, {"record": i + 1})
                for i, s in enumerate(records)]
    if splitter == "recursive":
        # one stream per page; a chunk takes the heading path of the section it starts in
        for s in doc.sections:
            for piece in _split_recursive(s.text, chunk_size, chunk_overlap):
                drafts.append(ChunkDraft(piece, list(s.heading_path), s.page))
        return merge_short(drafts, min_chunk_chars(chunk_size))
    sections = _pack_sections(doc.sections, chunk_size)
    for s in sections:
        pieces = (_split_sentences(s.text, chunk_size, chunk_overlap) if splitter == "sentence"
                  else _split_recursive(s.text, chunk_size, chunk_overlap))
        drafts.extend(ChunkDraft(p, list(s.heading_path), s.page) for p in pieces)
    return merge_short(drafts, min_chunk_chars(chunk_size))
