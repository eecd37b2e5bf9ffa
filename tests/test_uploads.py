"""Uploads: size limit, type by content, generated names (never the user's name as a path)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from backend.accounts.uploads import UploadRejected, display_name, store_upload
from backend.config import get_settings, reset_settings


def _docx_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


def test_good_files_are_stored_under_generated_names() -> None:
    cases = {
        "report.pdf": b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF",
        "notes.md": "# 标题\n\nSome *text*.".encode(),
        "data.csv": b"q,a\n1,2\n",
        "rows.jsonl": b'{"q": 1}\n\n{"q": 2}\n',
        "conf.json": json.dumps({"a": [1, 2]}).encode(),
        "letter.docx": _docx_bytes(),
        "plain.txt": "\ufeffBOM and UTF-8 ✓".encode(),
    }
    for name, data in cases.items():
        stored = store_upload(name, io.BytesIO(data), subdir="tests")
        assert stored.path.parent == get_settings().uploads_dir / "tests"
        assert stored.path.name != name and stored.path.suffix == Path(name).suffix
        assert stored.path.read_bytes() == data
        assert stored.display_name == name and stored.size == len(data)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("fake.pdf", b"just some text", "named like a PDF document but its content is text"),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00", "content is a PNG image"),
    ("latin1.txt", "café".encode("latin-1"), "not UTF-8 text"),
    ("zip.docx", b"PK\x05\x06" + b"\x00" * 18, "named like a Word document"),
    ("broken.json", b'{"a": ', "not valid JSON"),
    ("rows.jsonl", b'{"ok": 1}\nnot json\n', "line 2 is not valid JSON"),
    ("program.exe", b"MZ\x90\x00", "not a file type accepted here"),
    ("empty.txt", b"", "is empty"),
])
def test_mismatches_are_refused_with_a_clear_message(name: str, data: bytes,
                                                     message: str) -> None:
    before = set(get_settings().uploads_dir.rglob("*"))
    with pytest.raises(UploadRejected, match=message):
        store_upload(name, data, subdir="tests")
    assert set(get_settings().uploads_dir.rglob("*")) == before  # nothing left behind


def test_allowed_kinds_are_enforced() -> None:
    with pytest.raises(UploadRejected, match=r"Accepted: \.jsonl, \.ndjson"):
        store_upload("notes.md", b"# hi", allowed={"jsonl"})


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "1")
    reset_settings()
    try:
        with pytest.raises(UploadRejected, match="larger than the 1 MB upload limit"):
            store_upload("big.txt", io.BytesIO(b"a" * (1024 * 1024 + 1)))
        assert store_upload("fits.txt", b"a" * 1024).size == 1024
    finally:
        monkeypatch.undo()
        reset_settings()


def test_file_names_never_become_paths() -> None:
    for evil in ("../../etc/passwd.txt", "/etc/cron.d/x.txt", "..\\..\\boot.txt",
                 "a/../../b.txt", "nul\x00byte.txt"):
        stored = store_upload(evil, b"harmless", subdir="tests")
        assert stored.path.parent == get_settings().uploads_dir / "tests"
        assert "/" not in stored.display_name and ".." not in stored.display_name
    assert display_name("docs/sub/a.md", keep_dirs=True) == "docs/sub/a.md"
    assert display_name("../docs/./a.md", keep_dirs=True) == "docs/a.md"
    with pytest.raises(ValueError, match="plain relative name"):
        store_upload("a.txt", b"x", subdir="../outside")
