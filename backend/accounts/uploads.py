"""Uploads: size limit, type checked by content (not only by extension), stored under a generated
name. The user's file name is kept for display only and never used as a path.

    from backend.accounts.uploads import store_upload, UploadRejected
    stored = store_upload(uploaded.name, uploaded, allowed={"pdf", "docx", "md", "txt"},
                          subdir="knowledge")
    stored.path            # <uploads_dir>/knowledge/3f2a...c1.pdf
    stored.display_name    # "report.pdf" (basename, control characters removed)
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from backend.config import get_settings

CHUNK = 1 << 20

# extension -> kind; the kind decides which content check applies
EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".xlsx": "xlsx",
    ".pptx": "pptx",
    ".zip": "zip",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".md": "md",
    ".markdown": "md",
    ".rst": "txt",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".html": "html",
    ".htm": "html",
    ".xml": "txt",
    ".yaml": "txt",
    ".yml": "txt",
}
TEXT_KINDS = frozenset({"txt", "md", "csv", "json", "jsonl", "html"})
OOXML_MARKERS = {"docx": "word/document.xml", "xlsx": "xl/workbook.xml",
                 "pptx": "ppt/presentation.xml"}
KIND_LABELS = {
    "pdf": "a PDF document", "docx": "a Word document (.docx)", "xlsx": "an Excel workbook",
    "pptx": "a PowerPoint deck", "zip": "a ZIP archive", "txt": "a UTF-8 text file",
    "md": "a Markdown (UTF-8 text) file", "csv": "a CSV (UTF-8 text) file",
    "json": "a JSON file", "jsonl": "a JSON Lines file", "html": "an HTML (UTF-8 text) file",
}
_SAFE_SUBDIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})*$")


class UploadRejected(ValueError):
    """The upload is too big, of a type not accepted, or its content does not match its name."""


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class StoredUpload:
    path: Path
    display_name: str
    kind: str
    size: int
    sha256: str


def display_name(name: str, *, keep_dirs: bool = False) -> str:
    """A name safe to show and store as text: no control characters, no absolute path, no ``..``.

    ``keep_dirs`` keeps a relative folder path (``docs/a.md``) for uploads of folders."""
    name = unicodedata.normalize("NFC", name or "")
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    parts = [p.strip() for p in re.split(r"[\\/]+", name)]
    parts = [p for p in parts if p and p not in {".", ".."}]
    if not parts:
        return "unnamed"
    shown = "/".join(parts) if keep_dirs else parts[-1]
    return shown[-255:]


def kind_for_name(name: str) -> str | None:
    return EXTENSIONS.get(Path(display_name(name)).suffix.lower())


def max_upload_bytes() -> int:
    return get_settings().max_upload_mb * 1024 * 1024


def _describe_content(head: bytes, path: Path) -> str:
    if head.startswith(b"%PDF-"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        found = _ooxml_kind(path)
        return KIND_LABELS[found] if found else "a ZIP archive"
    for magic, label in _OTHER_MAGIC:
        if head.startswith(magic):
            return label
    if b"\x00" in head:
        return "binary data"
    return "text"


_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "a Linux program"),
    (b"MZ", "a Windows program"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.doc/.xls); save it as .docx/.xlsx"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
)


def _ooxml_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return None
    for kind, marker in OOXML_MARKERS.items():
        if marker in names:
            return kind
    return None


def _check_utf8(path: Path) -> str | None:
    """None if the file is UTF-8 text without NUL bytes, else what is wrong."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        offset = 0
        while chunk := fh.read(CHUNK):
            if b"\x00" in chunk:
                return "it contains binary data (NUL bytes)"
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                return f"it is not UTF-8 text (bad byte at position {offset + err.start})"
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "it is not UTF-8 text (it ends in the middle of a character)"
    return None


def _check_structure(path: Path, kind: str) -> str | None:
    """JSON must parse; each JSON Lines line must parse; CSV must be readable as CSV."""
    if kind == "json":
        try:
            json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as err:
            return f"it is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
    elif kind == "jsonl":
        with path.open(encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as err:
                        return f"line {lineno} is not valid JSON ({err.msg})"
    elif kind == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            try:
                for _ in csv.reader(fh):
                    pass
            except csv.Error as err:
                return f"it is not readable as CSV ({err})"
    return None


def check_content(path: Path, kind: str) -> None:
    """Raise ``UploadRejected`` when the file at ``path`` is not really of ``kind``."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    expected = KIND_LABELS[kind]
    problem: str | None = None
    if kind == "pdf":
        if not head.startswith(b"%PDF-"):
            problem = f"its content is {_describe_content(head, path)}"
    elif kind in OOXML_MARKERS:
        if _ooxml_kind(path) != kind:
            problem = f"its content is {_describe_content(head, path)}"
    elif kind == "zip":
        if not zipfile.is_zipfile(path):
            problem = f"its content is {_describe_content(head, path)}"
    elif kind in TEXT_KINDS:
        seen = _describe_content(head, path)
        problem = f"its content is {seen}" if seen != "text" else _check_utf8(path) or _check_structure(path, kind)
    if problem:
        raise UploadRejected(f"This file is named like {expected} but {problem}. "
                             f"Upload {expected}, or give the file the extension that fits it.")


def _copy_limited(source: bytes | _Readable | BinaryIO, dest: Path, limit: int,
                  shown: str) -> tuple[int, str]:
    size = 0
    sha = hashlib.sha256()
    stream: _Readable = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with dest.open("wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise UploadRejected(
                    f"{shown} is larger than the {limit // (1024 * 1024)} MB upload limit "
                    "(setting STUDIO_MAX_UPLOAD_MB). Split it or ask an admin to raise the limit."
                )
            sha.update(chunk)
            out.write(chunk)
    if size == 0:
        raise UploadRejected(f"{shown} is empty.")
    return size, sha.hexdigest()


def store_upload(
    name: str,
    data: bytes | _Readable | BinaryIO,
    *,
    allowed: Iterable[str] | None = None,
    subdir: str = "",
    keep_dirs: bool = False,
) -> StoredUpload:
    """Check an upload and keep it under ``uploads_dir/subdir`` with a generated name.

    ``allowed`` lists accepted kinds (``pdf``, ``docx``, ``txt``, ``md``, ``csv``, ``json``,
    ``jsonl``, ``html``, ``zip``, ``xlsx``, ``pptx``); None accepts every kind we know."""
    shown = display_name(name, keep_dirs=keep_dirs)
    kind = kind_for_name(shown)
    accepted = sorted(set(allowed) if allowed is not None else set(KIND_LABELS))
    if kind is None or kind not in accepted:
        exts = sorted(e for e, k in EXTENSIONS.items() if k in accepted)
        raise UploadRejected(
            f"{shown!r} is not a file type accepted here. Accepted: {', '.join(exts)}."
        )
    if subdir and (not _SAFE_SUBDIR.match(subdir) or ".." in subdir.split("/")):
        raise ValueError(f"Upload folder {subdir!r} must be a plain relative name like 'kb-3'.")
    folder = get_settings().uploads_dir / subdir if subdir else get_settings().uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    ext = Path(shown).suffix.lower()
    final = folder / f"{uuid.uuid4().hex}{ext}"
    partial = final.with_suffix(final.suffix + ".part")
    try:
        size, sha = _copy_limited(data, partial, max_upload_bytes(), repr(shown))
        check_content(partial, kind)
        partial.rename(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return StoredUpload(path=final, display_name=shown, kind=kind, size=size, sha256=sha)


def check_upload_size(size: int, name: str) -> None:
    """Refuse early when the size is known before reading (Streamlit's UploadedFile.size)."""
    limit = max_upload_bytes()
    if size > limit:
        raise UploadRejected(
            f"{display_name(name)!r} is larger than the {limit // (1024 * 1024)} MB upload limit "
            "(setting STUDIO_MAX_UPLOAD_MB). Split it or ask an admin to raise the limit."
        )
