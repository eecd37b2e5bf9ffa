"""Fitting a question's prompt into the model's context.

The studio builds an agent's prompt (its instructions, the conversation so far, retrieved
passages, the question), so the studio makes it fit: the model's context window (or the agent's
own, smaller context budget) less the tokens kept for the answer. Passages go in best-ranked
first while they fit; the first one that does not fit whole is cut at a sentence end, and the
rest are left out. When even the instructions, the conversation and the question leave too
little room, the oldest turns of the conversation go first.

Tokens are counted with the model's own tokenizer and chat template where the studio has them
(:class:`PromptBudget` ``exact``), else with :func:`estimate_tokens`, which errs on the high side.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# tokens per chat message (role markers, separators) when the template is not known
MESSAGE_OVERHEAD = 8
# what an estimate or a tokenizer's merges across joined pieces may add: kept free
SAFETY_TOKENS = 16
# the least room passages should have before older turns of the conversation are dropped
MIN_PASSAGE_ROOM = 192
# an answer never gets more than this share of the context (the prompt needs the rest)
MAX_ANSWER_SHARE = 0.5
# the least kept for an answer (or an eighth of the window) when the prompt needs the rest
MIN_ANSWER_TOKENS = 64
# the shortest useful piece of a trimmed passage, in tokens
MIN_TRIMMED_TOKENS = 24

_WIDE = re.compile(r"[\u1100-\u11ff\u2e80-\ua4cf\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f"
                   r"\uff00-\uffef\U00020000-\U0002fa1f]")
_SENTENCE_END = re.compile(r"(?<=[.!?;:\u3002\uff01\uff1f\uff1b])[\"')\]\u201d\u2019]*\s+"
                           r"|(?<=[\u3002\uff01\uff1f\uff1b])|\n{2,}")


def estimate_tokens(text: str) -> int:
    """A safe guess of a text's tokens for a tokenizer the studio cannot load (a remote
    model's): one per CJK character, one per three other characters (English runs about four
    characters a token), rounded up."""
    if not text:
        return 0
    wide = len(_WIDE.findall(text))
    return wide + -(-(len(text) - wide) // 3)


def estimate_messages(messages: Sequence[dict[str, Any]]) -> int:
    return sum(estimate_tokens(str(m.get("content") or "")) + MESSAGE_OVERHEAD
               for m in messages) + MESSAGE_OVERHEAD


class PromptTooLong(ValueError):
    """The agent's instructions and the question alone do not fit the model's context."""


@dataclass
class PromptBudget:
    """How many tokens one question may use, and how to count them.

    ``window``: tokens the model reads, prompt and answer together (the smaller of the model's
    context window and the agent's context budget). ``answer_tokens``: the longest answer asked
    for. ``count``: tokens of a list of chat messages ({role, content}), template included.
    ``count_text``: tokens of a piece of text. ``model``: the model's registered name (errors
    name it so; never a path)."""

    window: int
    answer_tokens: int
    model: str = "the model"
    count: Callable[[list[dict[str, Any]]], int] = estimate_messages
    count_text: Callable[[str], int] = estimate_tokens
    exact: bool = False
    extra_tokens: int = 0  # what the request adds besides the messages (tool definitions)

    @property
    def answer_reserve(self) -> int:
        return max(1, min(self.answer_tokens, int(self.window * MAX_ANSWER_SHARE)))

    @property
    def answer_floor(self) -> int:
        """The least kept for the answer when the instructions and the question need more."""
        return min(self.answer_reserve, max(MIN_ANSWER_TOKENS, self.window // 8))

    @property
    def prompt_limit(self) -> int:
        """The most tokens the prompt may take: the window less the answer, the tools and a
        safety margin."""
        return self.window - self.answer_reserve - self.extra_tokens - SAFETY_TOKENS


@dataclass
class Packed:
    """What went into the prompt."""

    system: str  # the system text with the passages that fit
    history: list[dict[str, Any]]  # the turns kept (oldest dropped first)
    passages: list[dict[str, Any]]  # the hits used, best first (the last may be trimmed)
    found: int  # passages retrieved
    dropped_turns: int = 0  # messages of the conversation left out
    trimmed: bool = False  # the last passage was cut at a sentence end
    prompt_tokens: int = 0  # the prompt as sent, as counted
    limit: int = 0  # the most the prompt could take
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self, budget: PromptBudget) -> dict[str, Any]:
        """The trace's record of the fit."""
        return {"passages_used": len(self.passages), "passages_found": self.found,
                "trimmed": self.trimmed, "turns_dropped": self.dropped_turns // 2,
                "prompt_tokens": self.prompt_tokens,
                "prompt_limit": self.limit or budget.prompt_limit,
                "context_window": budget.window,
                "answer_tokens": budget.window - budget.extra_tokens - SAFETY_TOKENS
                - (self.limit or budget.prompt_limit),
                "counted": "tokenizer" if budget.exact else "estimate"}


def passage_label(i: int, hit: dict[str, Any]) -> str:
    meta = hit.get("metadata") or {}
    where = meta.get("page") and f"page {meta['page']}" or " > ".join(
        str(h) for h in meta.get("heading_path") or []) or ""
    return f"[{i}] {hit.get('source', '')}" + (f" ({where})" if where else "")


def context_header(citations: bool) -> str:
    rule = "Cite the numbers of the passages you use, like [1]. " if citations else ""
    return ("Answer from these passages of the knowledge base. " + rule
            + "If they do not contain the answer, say that you don't know.")


def context_block(hits: Sequence[dict[str, Any]], citations: bool) -> str:
    parts = [f"{passage_label(i, h)}\n{h.get('text', '')}" for i, h in enumerate(hits, 1)]
    return context_header(citations) + "\n\n" + "\n\n".join(parts)


def sentences(text: str) -> list[str]:
    """The text cut after each sentence end (the pieces join back to the text)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start:
            out.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [s for s in out if s]


def trim_to(text: str, room: int, count_text: Callable[[str], int]) -> str:
    """The longest run of whole sentences from the text's start within ``room`` tokens ("" when
    not even the first fits)."""
    parts = sentences(text)
    lo, hi = 0, len(parts)  # lo sentences fit; find the most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_text("".join(parts[:mid]).rstrip()) <= room:
            lo = mid
        else:
            hi = mid - 1
    return "".join(parts[:lo]).rstrip()


def _cut_words(text: str, room: int, count_text: Callable[[str], int]) -> str:
    """A passage whose first sentence alone is too long: whole words, ending with "…"."""
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_text(" ".join(words[:mid]) + " …") <= room:
            lo = mid
        else:
            hi = mid - 1
    return (" ".join(words[:lo]) + " …") if lo else ""


def _messages(system: str, history: Sequence[dict[str, Any]], question: str
              ) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system},
            *({"role": m["role"], "content": m["content"]} for m in history),
            {"role": "user", "content": question}]


def fit_prompt(budget: PromptBudget, *, system: str, question: str,
               history: Sequence[dict[str, Any]] = (),
               hits: Sequence[dict[str, Any]] | None = None, citations: bool = True) -> Packed:
    """Fit the prompt into ``budget``: the oldest turns go first when the passages would have
    too little room (or the prompt would not fit at all), then the passages (``hits``, best
    first) go in while they fit, the last one cut at a sentence end. Raises
    :class:`PromptTooLong` when the instructions and the question alone are too long."""
    limit = budget.prompt_limit
    hist = [dict(m) for m in history]
    with_passages = hits is not None and len(hits) > 0
    head = (system + "\n\n" + context_header(citations)) if with_passages else system
    want_room = min(MIN_PASSAGE_ROOM, max(0, limit // 3)) if with_passages else 0
    base = budget.count(_messages(head, hist, question))
    dropped = 0
    while hist and base + want_room > limit:
        # a user turn and its answer leave together; an odd first message leaves alone
        n = 2 if len(hist) >= 2 and hist[0]["role"] == "user" else 1
        hist = hist[n:]
        dropped += n
        base = budget.count(_messages(head, hist, question))
    if base > limit:
        # the answer may be shorter than the longest asked for (generation stops at the
        # window's end): give the prompt what a short answer leaves
        stretched = budget.window - budget.answer_floor - budget.extra_tokens - SAFETY_TOKENS
        limit = max(limit, stretched)
    if base > limit:
        raise PromptTooLong(
            f"The agent's instructions and the question take {base:,} tokens, but "
            f"{budget.model} leaves {max(limit, 0):,} for a prompt ({budget.window:,} in all, "
            f"{budget.answer_reserve:,} kept for the answer). Shorten the question or the "
            "system prompt, lower the longest answer, or raise the context budget.")
    if not with_passages:
        return Packed(system=system, history=hist, passages=[], found=0, dropped_turns=dropped,
                      prompt_tokens=base, limit=limit)
    assert hits is not None
    used: list[dict[str, Any]] = []
    trimmed = False
    room = limit - base
    for i, hit in enumerate(hits, 1):
        label = passage_label(i, hit)
        text = str(hit.get("text") or "")
        cost = budget.count_text(f"\n\n{label}\n{text}")
        if cost <= room:
            used.append(dict(hit))
            room -= cost
            continue
        left = room - budget.count_text(f"\n\n{label}\n")
        if left >= MIN_TRIMMED_TOKENS or not used:
            cut = trim_to(text, left, budget.count_text) or (
                _cut_words(text, left, budget.count_text) if not used else "")
            if cut:
                used.append({**hit, "text": cut, "trimmed": True})
                trimmed = True
        break
    # the count of the whole may differ from the sum of its parts: check it, and give up
    # passages from the end until it fits
    while True:
        text_sys = system + "\n\n" + context_block(used, citations) if used else system
        total = budget.count(_messages(text_sys, hist, question))
        if total <= limit or not used:
            break
        last = used.pop()
        if last.get("trimmed"):
            trimmed = False
    return Packed(system=text_sys, history=hist, passages=used, found=len(hits),
                  dropped_turns=dropped, trimmed=trimmed, prompt_tokens=total, limit=limit)


DEFAULT_WINDOW = 8192  # for a model whose context window the studio cannot read
DEFAULT_ANSWER_TOKENS = 512


class _TokenizerCount:
    """Counts with a local model's own tokenizer and chat template (kept loaded by
    ``backend.prompts.reading``, a few at a time)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._tok: Any = None

    def tokenizer(self) -> Any:
        if self._tok is None:
            from backend.prompts.reading import _tokenizer

            self._tok = _tokenizer(self.source)
        return self._tok

    def messages(self, messages: list[dict[str, Any]]) -> int:
        tok = self.tokenizer()
        if not getattr(tok, "chat_template", None):
            return estimate_messages(messages)
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return len(enc["input_ids"])

    def text(self, text: str) -> int:
        return len(self.tokenizer().encode(text, add_special_tokens=False))


_windows: dict[str, int | None] = {}


def _window(source: str) -> int | None:
    """A local folder's context window (read once per process)."""
    if source not in _windows:
        from backend.prompts.reading import context_window

        _windows[source] = context_window(source)
    return _windows[source]


def model_budget(*, name: str, source: str | None, answer_tokens: int | None,
                 context_budget: int | None, extra_text: str = "") -> PromptBudget:
    """The budget of a registered model: a local folder's tokenizer, template and context
    window when it has them, else the estimate and ``DEFAULT_WINDOW``; the agent's
    ``context_budget`` caps the window. ``extra_text``: what else the request carries (tool
    definitions), counted against the prompt."""
    import os

    window: int | None = None
    counter: _TokenizerCount | None = None
    if source and os.path.isdir(source):
        from backend.prompts.reading import ReadingError

        window = _window(source)
        counter = _TokenizerCount(source)
        try:
            counter.tokenizer()
        except ReadingError:
            counter = None
    windows = [w for w in (window, context_budget) if w]
    budget = PromptBudget(window=min(windows) if windows else DEFAULT_WINDOW,
                          answer_tokens=int(answer_tokens or DEFAULT_ANSWER_TOKENS), model=name)
    if counter is not None:
        budget.count, budget.count_text, budget.exact = counter.messages, counter.text, True
    if extra_text:
        budget.extra_tokens = budget.count_text(extra_text) + MESSAGE_OVERHEAD * 4
    return budget
