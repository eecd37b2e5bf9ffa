"""Terms for BM25: the same function cuts documents at ingest and questions at search time.

English: lower case, words of letters and digits, a light suffix stemmer, common stop words
dropped. Chinese (and any run of CJK characters in English text): ``jieba`` in search mode.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from functools import lru_cache
from typing import Any

MAX_TERM = 100
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_OR_DIGIT = re.compile(r"[a-z0-9]+")

_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves also may might must shall us let get got
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())

_ZH_STOP_TEXT = """
的 了 和 是 在 也 有 就 不 都 而 及 与 着 或 一个 没有 我们 你们 他们 这 那 吗 呢 吧 啊 之 其
为 以 于 上 中 对 把 被 让 从 到 要 会 能 可以 怎么 如何 什么 哪些 哪个
"""
ZH_STOP_WORDS = frozenset(_ZH_STOP_TEXT.split())

_jieba_lock = threading.Lock()
_jieba: Any = None


def _get_jieba() -> Any:
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import logging

                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English stemmer: plurals, -ing, -ed, -ly. Consistent, not linguistic (its
    answers are kept: ingest and highlighting ask for the same words again and again)."""
    n = len(word)
    if n <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith(("ies", "ied")) and n > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    n = len(word)
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and n - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if not any(c in "aeiouy" for c in base):
                break
            if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            word = base
            break
    if word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    return word


def _latin_terms(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text):
        if _CJK.search(w):
            continue
        if w in STOP_WORDS or len(w) > MAX_TERM:
            continue
        out.append(stem(w))
    return out


def terms(text: str, language: str = "en") -> list[str]:
    """The terms of ``text`` in order (duplicates kept)."""
    low = text.lower()
    out = _latin_terms(_CJK.sub(" ", low))
    if language == "zh" or _CJK.search(low):
        jieba = _get_jieba()
        for run in _CJK.findall(low):
            for tok in jieba.cut_for_search(run):
                tok = tok.strip()
                if tok and tok not in ZH_STOP_WORDS and len(tok) <= MAX_TERM:
                    out.append(tok)
    return out


def term_counts(text: str, language: str = "en") -> Counter[str]:
    return Counter(terms(text, language))


def highlight_terms(query: str, language: str = "en") -> list[str]:
    """Words of the question worth highlighting in a hit (stems and CJK words)."""
    return sorted(set(terms(query, language)), key=len, reverse=True)


def matches(text: str, query_terms: list[str]) -> list[tuple[int, int]]:
    """Character spans in ``text`` whose term is one of ``query_terms`` (for highlighting)."""
    wanted = set(query_terms)
    # ``stem`` keeps a word's first two letters: only words that begin as a wanted term does
    # are stemmed (most of a hit's words are not)
    starts = {t[:2] for t in wanted}
    cjk_text = _CJK.search(text) is not None
    spans: list[tuple[int, int]] = []
    for m in _WORD.finditer(text):
        w = m.group(0).lower()
        if w[:2] not in starts or (cjk_text and _CJK.search(w)):
            continue
        if stem(w) in wanted:
            spans.append((m.start(), m.end()))
    cjk = [t for t in wanted if _CJK.search(t)]
    for t in cjk:
        start = 0
        while (i := text.find(t, start)) >= 0:
            spans.append((i, i + len(t)))
            start = i + len(t)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged
