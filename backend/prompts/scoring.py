"""Scoring a batch evaluation's answers against expected values.

Methods: ``exact`` (same text after trimming), ``contains`` (the expected text appears, case
ignored), ``regex`` (the expected value, or a fixed pattern, is found), ``json`` (the answer
parses and fits the prompt's output format), ``judge`` (a judge model rates the answer 1-5
against a rubric; the score is rating/5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from backend.prompts.output import parse_output

METHODS = ("exact", "contains", "regex", "json", "judge")

JUDGE_PROMPT = """You grade an answer against a rubric.
Rubric: {rubric}
Question or input: {input}
Expected answer (may be empty): {expected}
Answer to grade: {answer}
Reply with one number from 1 (bad) to 5 (excellent), then a short reason."""


def check_method(method: str, *, pattern: str | None = None, rubric: str | None = None) -> str:
    if method not in METHODS:
        raise ValueError(f"Unknown scoring {method!r}: use {', '.join(METHODS)}.")
    if method == "judge" and not (rubric or "").strip():
        raise ValueError("Judge scoring needs a rubric: say what a good answer does.")
    if method == "regex" and pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"The regular expression is not valid: {exc}.") from None
    return method


def needs_expected(method: str, pattern: str | None = None) -> bool:
    return method in ("exact", "contains") or (method == "regex" and not pattern)


def score_answer(method: str, answer: str, expected: str | None, *,
                 output_format: Mapping[str, Any] | None = None, pattern: str | None = None,
                 judge: Callable[[str], str] | None = None, rubric: str = "",
                 input_text: str = "") -> tuple[float | None, str]:
    """(score from 0 to 1, or None when it cannot be scored; a short note)."""
    exp = "" if expected is None else str(expected)
    if method == "exact":
        if expected is None:
            return None, "no expected answer"
        return (1.0, "") if answer.strip() == exp.strip() else (0.0, "differs")
    if method == "contains":
        if expected is None:
            return None, "no expected answer"
        return (1.0, "") if exp.strip().casefold() in answer.casefold() else (0.0, "not found")
    if method == "regex":
        pat = pattern or exp
        if not pat:
            return None, "no pattern"
        try:
            return (1.0, "") if re.search(pat, answer) else (0.0, "no match")
        except re.error as exc:
            return None, f"bad pattern: {exc}"
    if method == "json":
        fmt = output_format if (output_format or {}).get("type") == "json" else {"type": "json"}
        parsed = parse_output(answer, fmt)
        return (1.0, "") if parsed.valid else (0.0, parsed.reason or "invalid")
    if method == "judge":
        if judge is None:
            return None, "no judge model"
        reply = judge(JUDGE_PROMPT.format(rubric=rubric, input=input_text, expected=exp,
                                          answer=answer))
        m = re.search(r"[1-5]", reply)
        if not m:
            return None, f"the judge gave no rating: {reply[:80]!r}"
        return int(m.group(0)) / 5.0, reply.strip()[:200]
    raise ValueError(f"Unknown scoring {method!r}.")
