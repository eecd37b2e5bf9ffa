"""A pre-training corpus from files: read, clean, remove duplicates, count, split.

Accepted: text, Markdown and reStructuredText (``.txt .md .markdown .rst``), HTML (main text
through trafilatura), PDF (pdfplumber), JSON Lines with a ``text`` field (one document a line),
a folder of those, or a zip of those. Everything else is skipped and said so.

The result of :func:`build_corpus` is written to one folder and never changed:
``train.jsonl`` and ``val.jsonl`` (one ``{"source", "text"}`` per line) and ``stats.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".jsonl", ".zip"}

MIN_DOCUMENT_CHARS = 20  # shorter documents (after cleaning) are dropped
NEAR_DUPLICATE_JACCARD = 0.7  # estimated shingle overlap above which a document is a near-copy


class CorpusRefused(ValueError):
    """The files give no usable text; the message says what was found and what to add."""


@dataclass
class Document:
    source: str  # the file name as given (inside a folder or zip: its relative path)
    text: str


@dataclass
class ReadReport:
    files_read: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"source", "reason"}

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append({"source": source, "reason": reason})


# --- reading ----------------------------------------------------------------------------------

def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        return str(best) if best is not None else data.decode("utf-8", errors="replace")


def _html_text(raw: str) -> str:
    import trafilatura

    text = trafilatura.extract(raw, include_comments=False, include_tables=True) or ""
    if len(text) < 50:  # short pages and fragments: fall back to all visible text
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(raw, "lxml")
        for tag in soup(["script", "style", "nav", "header", "footer"]):
            tag.decompose()
        text = soup.get_text("\n")
    return text


def _pdf_text(data: bytes) -> str:
    import io

    import pdfplumber

    with pdfplumber.open(io.BytesIO(data)) as pdf:
        return "\n\n".join(page.extract_text() or "" for page in pdf.pages)


def _documents_from_bytes(name: str, data: bytes, report: ReadReport) -> Iterator[Document]:
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        report.skip(name, f"unsupported file type {suffix or '(none)'}")
        return
    if suffix == ".zip":
        import io

        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            report.skip(name, "not a readable zip file")
            return
        with archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if info.is_dir() or "__MACOSX" in info.filename:
                    continue
                yield from _documents_from_bytes(info.filename, archive.read(info), report)
        return
    report.files_read += 1
    try:
        if suffix == ".pdf":
            yield Document(name, _pdf_text(data))
        elif suffix in HTML_SUFFIXES:
            yield Document(name, _html_text(_decode(data)))
        elif suffix == ".jsonl":
            bad = 0
            for n, line in enumerate(_decode(data).splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    yield Document(f"{name}:{n}", row["text"])
                else:
                    bad += 1
            if bad:
                report.skip(name, f"{bad} lines without a string 'text' field")
        else:
            yield Document(name, _decode(data))
    except Exception as exc:  # noqa: BLE001 - a broken file is skipped with its reason
        report.skip(name, f"unreadable ({type(exc).__name__}: {exc})"[:300])


Source = Path | str | tuple[str, Path]  # a path, or (name to show, path) for stored uploads


def read_documents(paths: Iterable[Source], report: ReadReport | None = None
                   ) -> Iterator[Document]:
    """Documents from files, folders (recursively, in name order) and zips."""
    report = report if report is not None else ReadReport()
    for p in paths:
        if isinstance(p, tuple):
            shown, stored = p
            if Path(stored).is_file():
                yield from _documents_from_bytes(shown, Path(stored).read_bytes(), report)
            else:
                report.skip(shown, "the stored upload is missing")
            continue
        path = Path(p).expanduser()
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts):
                    yield from _documents_from_bytes(str(f.relative_to(path)), f.read_bytes(), report)
        elif path.is_file():
            yield from _documents_from_bytes(path.name, path.read_bytes(), report)
        else:
            report.skip(str(path), "no such file or folder")


# --- cleaning ---------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """NFC, no control characters, one space for runs of spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# --- languages (by script, plus English function words) ----------------------------------------

_EN_WORDS = frozenset({
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "or", "an", "not", "from", "at", "which", "you", "can", "have",
})


def guess_language(text: str) -> str:
    """A coarse language label from the script a text is written in: zh, ja, ko, ru, ar, en,
    other (Latin script, not English), or unknown."""
    sample = text[:4000]
    counts: Counter[str] = Counter()
    for ch in sample:
        o = ord(ch)
        if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
            counts["han"] += 1
        elif 0x3040 <= o <= 0x30FF:
            counts["kana"] += 1
        elif 0xAC00 <= o <= 0xD7AF:
            counts["hangul"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["cyrillic"] += 1
        elif 0x0600 <= o <= 0x06FF:
            counts["arabic"] += 1
        elif ch.isalpha() and o < 0x250:
            counts["latin"] += 1
    if not counts:
        return "unknown"
    script, _n = counts.most_common(1)[0]
    if counts["kana"] > 0.1 * (counts["han"] + counts["kana"]) and script in ("han", "kana"):
        return "ja"
    if script == "latin" and counts["han"] > 0.2 * counts["latin"]:
        script = "han"  # Chinese text with some Latin words still reads as Chinese
    if script == "latin":
        words = re.findall(r"[a-z]+", sample.lower())
        hits = sum(w in _EN_WORDS for w in words)
        return "en" if words and hits / len(words) > 0.08 else "other"
    return {"han": "zh", "kana": "ja", "hangul": "ko", "cyrillic": "ru", "arabic": "ar"}[script]


# --- duplicates -------------------------------------------------------------------------------

_PRIME = np.uint64((1 << 31) - 1)
_PERMUTATIONS = 128
_BANDS = 32  # 32 bands of 4 rows: pairs above ~0.5 Jaccard share a band with high probability
_rng = np.random.default_rng(1234)
# a, b and the shingle hashes are below 2**31 - 1, so a * x + b fits in 64 bits, and the modulo
# wraps it billions of times: 128 independent-looking permutations
_A = _rng.integers(1, int(_PRIME), size=_PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, int(_PRIME), size=_PERMUTATIONS, dtype=np.uint64)


def _shingles(text: str) -> set[int]:
    """Word 5-grams (character 5-grams for text without spaces, e.g. Chinese), hashed to 32 bits."""
    words = text.lower().split()
    if len(words) >= 20:
        grams: Iterable[str] = (" ".join(words[i:i + 5]) for i in range(len(words) - 4))
    else:
        squeezed = re.sub(r"\s+", "", text.lower())
        grams = (squeezed[i:i + 5] for i in range(max(1, len(squeezed) - 4)))
    return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
            for g in grams}


def minhash(text: str) -> np.ndarray:
    """A 128-value MinHash signature of the text's shingles: min over shingles of
    (a * x + b) mod (2**31 - 1) for 128 random (a, b)."""
    x = np.fromiter(_shingles(text), dtype=np.uint64) % _PRIME
    if x.size == 0:
        return np.zeros(_PERMUTATIONS, dtype=np.uint64)
    return ((x[:, None] * _A[None, :] + _B[None, :]) % _PRIME).min(axis=0)


def remove_duplicates(docs: list[Document]) -> tuple[list[Document], int, int]:
    """Drop exact copies (same cleaned text) and near-copies (MinHash LSH, estimated Jaccard of
    shingles at least NEAR_DUPLICATE_JACCARD). Keeps the first of each group, in order.
    Returns (kept, exact duplicates, near duplicates)."""
    seen: set[str] = set()
    unique: list[Document] = []
    exact = 0
    for d in docs:
        key = hashlib.sha1(re.sub(r"\s+", " ", d.text.lower()).encode()).hexdigest()
        if key in seen:
            exact += 1
            continue
        seen.add(key)
        unique.append(d)
    rows = _PERMUTATIONS // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = {}
    signatures: list[np.ndarray] = []
    kept: list[Document] = []
    near = 0
    for d in unique:
        sig = minhash(d.text)
        candidates: set[int] = set()
        keys = [(b, sig[b * rows:(b + 1) * rows].tobytes()) for b in range(_BANDS)]
        for k in keys:
            candidates.update(buckets.get(k, ()))
        if any(float(np.mean(signatures[c] == sig)) >= NEAR_DUPLICATE_JACCARD for c in candidates):
            near += 1
            continue
        idx = len(kept)
        kept.append(d)
        signatures.append(sig)
        for k in keys:
            buckets.setdefault(k, []).append(idx)
    return kept, exact, near


# --- the whole recipe -------------------------------------------------------------------------

@dataclass
class CorpusStats:
    files_read: int
    files_skipped: list[dict[str, str]]
    documents_read: int
    too_short: int
    exact_duplicates: int
    near_duplicates: int
    documents: int
    heldout_documents: int
    characters: int
    train_characters: int
    heldout_characters: int
    languages: dict[str, int]  # language -> documents
    byte_tokens: int  # UTF-8 bytes: the token count of a byte-level tokenizer before merges
    # documents given as text (a knowledge base's documents, each one file it was built from);
    # they are counted in ``files_read`` too
    documents_given: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_heldout(docs: list[Document], fraction: float) -> tuple[list[Document], list[Document]]:
    """A deterministic held-out split by a hash of each document (stable when documents are
    added). At least one held-out document; a single document gives its last tenth."""
    if not 0 < fraction < 0.5:
        raise ValueError("The held-out fraction must be between 0 and 0.5 (e.g. 0.05).")
    if len(docs) == 1:
        text = docs[0].text
        cut = int(len(text) * (1 - max(fraction, 0.1)))
        cut = text.rfind("\n", 0, cut) if text.rfind("\n", 0, cut) > len(text) // 2 else cut
        return [Document(docs[0].source, text[:cut])], [Document(docs[0].source, text[cut:])]
    scored = sorted(
        range(len(docs)),
        key=lambda i: hashlib.sha1(f"{docs[i].source}\0{docs[i].text[:200]}".encode()).digest(),
    )
    n_val = max(1, round(len(docs) * fraction))
    val_idx = set(scored[:n_val])
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


def build_corpus(paths: Iterable[Source], out_dir: Path, *, heldout_fraction: float = 0.05,
                 extra_documents: Iterable[Document] = (),
                 progress: Callable[[float, str], None] | None = None) -> CorpusStats:
    """Read, clean, de-duplicate and split; write ``train.jsonl``, ``val.jsonl`` and
    ``stats.json`` into ``out_dir``. Raises :class:`CorpusRefused` when nothing usable is left
    (and then writes nothing)."""
    def say(frac: float, what: str) -> None:
        if progress:
            progress(frac, what)

    report = ReadReport()
    say(0.05, "Reading files")
    given = list(extra_documents)
    raw = list(read_documents(paths, report)) + given
    report.files_read += len(given)
    say(0.35, "Cleaning")
    cleaned = [Document(d.source, clean_text(d.text)) for d in raw]
    usable = [d for d in cleaned if len(d.text) >= MIN_DOCUMENT_CHARS]
    too_short = len(cleaned) - len(usable)
    if not usable:
        found = f"{report.files_read} file(s) read, {len(raw)} document(s), {too_short} too short"
        skipped = "; ".join(f"{s['source']}: {s['reason']}" for s in report.skipped[:5])
        raise CorpusRefused(
            f"No usable text: {found}" + (f"; skipped {skipped}" if skipped else "") + ". "
            f"Give text, Markdown, HTML or PDF files (or a folder or zip of them), or JSONL "
            f"with a 'text' field, with documents of at least {MIN_DOCUMENT_CHARS} characters."
        )
    say(0.5, "Removing duplicates")
    kept, exact, near = remove_duplicates(usable)
    say(0.8, "Splitting off the held-out set")
    train, val = split_heldout(kept, heldout_fraction)
    languages = Counter(guess_language(d.text) for d in kept)
    stats = CorpusStats(
        files_read=report.files_read, files_skipped=report.skipped, documents_read=len(raw),
        too_short=too_short, exact_duplicates=exact, near_duplicates=near, documents=len(kept),
        heldout_documents=len(val),
        characters=sum(len(d.text) for d in kept),
        train_characters=sum(len(d.text) for d in train),
        heldout_characters=sum(len(d.text) for d in val),
        languages=dict(languages.most_common()),
        byte_tokens=sum(len(d.text.encode()) for d in kept),
        documents_given=len(given),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.jsonl", train), ("val.jsonl", val)):
        tmp = out_dir / f".{name}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            for d in part:
                f.write(json.dumps({"source": d.source, "text": d.text}, ensure_ascii=False) + "\n")
        tmp.replace(out_dir / name)
    (out_dir / "stats.json").write_text(json.dumps(stats.to_dict(), ensure_ascii=False, indent=2))
    say(1.0, "Done")
    return stats


def iter_texts(jsonl: Path) -> Iterator[str]:
    """The texts of a ``train.jsonl`` / ``val.jsonl`` file, in order."""
    with jsonl.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["text"]


def sample_text(jsonl: Path, chars: int = 400) -> str:
    """The start of the first document long enough to show how a tokenizer splits text."""
    for text in iter_texts(jsonl):
        if len(text) >= 80:
            return text[:chars]
    return next(iter_texts(jsonl), "")[:chars]
