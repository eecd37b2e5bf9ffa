"""Scrubbing secrets, in the forms a server may send them back in.

A tool's server may echo a header it was sent, and rarely as sent: JSON escapes quotes and
backslashes, a URL encodes it, Basic auth base64-encodes it after ``user:``, and some servers upper-
case or reverse what they echo. :class:`Redactor` replaces each secret in these forms:

- as given, and in any letter case (case-folded);
- JSON-escaped, up to three levels deep, with or without ``\\/`` and ``\\uXXXX`` escapes;
- URL-encoded (``%XX`` in either case, ``+`` for spaces, with ``/`` kept or encoded);
- HTML-escaped; hex;
- base64 (standard and URL-safe, padded or not), also where the secret is part of a longer
  base64 text at any alignment (the characters that depend on the secret alone);
- reversed (and the reversed text in the forms above but base64).

Secrets shorter than 4 characters are not scrubbed (they would hit ordinary text)."""

from __future__ import annotations

import base64
import html
import json
import re
import urllib.parse
from collections.abc import Iterable

MIN_SECRET = 4  # shorter values are not scrubbed
MIN_BASE64_PART = 6  # shortest base64 fragment (of a secret inside a longer base64 text)


def _json_forms(text: str, depth: int = 3) -> set[str]:
    out: set[str] = set()
    level = {text}
    for _ in range(depth):
        nxt: set[str] = set()
        for t in level:
            plain = json.dumps(t, ensure_ascii=False)[1:-1]
            ascii_ = json.dumps(t)[1:-1]
            nxt |= {plain, ascii_, plain.replace("/", "\\/"), ascii_.replace("/", "\\/")}
        out |= nxt
        level = nxt
    return out


def _url_forms(text: str) -> set[str]:
    q = urllib.parse
    return {q.quote(text, safe=""), q.quote(text), q.quote_plus(text),
            q.quote_plus(text, safe="/")}


def text_forms(secret: str) -> set[str]:
    """The forms matched in any letter case."""
    out: set[str] = set()
    for s in (secret, secret[::-1]):
        out |= {s, html.escape(s), html.escape(s, quote=False), s.encode().hex()}
        out |= _json_forms(s)
        for u in _url_forms(s):
            out |= {u, *_json_forms(u, 1)}
    return {f for f in out if len(f) >= MIN_SECRET}


def base64_forms(secret: str) -> set[str]:
    """The base64 forms (matched as they are: base64 is case-sensitive)."""
    raw = secret.encode()
    n = len(raw)
    out = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    for k in range(3):  # the secret starting k bytes into a 3-byte group
        enc = base64.b64encode(b"\0" * k + raw + b"\0\0").decode()
        start, end = -(-8 * k // 6), (8 * (k + n) - 6) // 6 + 1
        part = enc[start:end]
        if len(part) >= MIN_BASE64_PART:
            out |= {part, part.replace("+", "-").replace("/", "_")}
    out |= {f.rstrip("=") for f in out}
    return {f for f in out if len(f) >= MIN_SECRET}


class Redactor:
    """Replaces every covered form of the given secrets with ``mask``."""

    def __init__(self, secrets: Iterable[str], mask: str) -> None:
        self.mask = mask
        values = {s for s in secrets if s and len(s) >= MIN_SECRET}
        texts: set[str] = set()
        exact: set[str] = set()
        for s in values:
            texts |= text_forms(s)
            exact |= base64_forms(s)
        exact -= texts

        def pattern(forms: set[str], flags: int) -> re.Pattern[str] | None:
            if not forms:
                return None
            ordered = sorted(forms, key=len, reverse=True)  # the longest form wins
            return re.compile("|".join(re.escape(f) for f in ordered), flags)

        self._texts = pattern(texts, re.IGNORECASE)
        self._exact = pattern(exact, 0)

    def __call__(self, text: str) -> str:
        if self._texts is not None:
            text = self._texts.sub(self.mask, text)
        if self._exact is not None:
            text = self._exact.sub(self.mask, text)
        return text
