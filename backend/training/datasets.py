"""Fine-tuning datasets: read a JSONL/JSON/CSV file in one of three forms, check every record,
and normalise it.

Forms (``format``):
- ``alpaca``: ``instruction``, optional ``input``, ``output`` (and optional ``system``);
- ``chat``: ``messages``, a list of ``{"role", "content"}`` (optional system first, then user and
  assistant turns alternating, ending with the assistant);
- ``preference``: ``prompt``, ``chosen``, ``rejected`` (strings, or message lists).

Every problem names its line (JSONL: the file's line; CSV: the row's line, header is line 1;
JSON: the record's position in the array) and says what to fix. Normalised records are
``{"messages": [...]}`` for SFT and ``{"prompt": [...], "chosen": str, "rejected": str}`` for
preference pairs. Nothing here imports torch: pages and the CLI validate without it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

FORMATS = ("alpaca", "chat", "preference")
Format = Literal["alpaca", "chat", "preference"]
ROLES = ("system", "user", "assistant")
FILE_KINDS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}
MAX_ISSUES = 200


class DatasetInvalid(ValueError):
    """The dataset has bad records; ``issues`` lists each by line. Nothing was launched."""

    def __init__(self, issues: list[Issue], total: int | None = None) -> None:
        self.issues = issues
        shown = "; ".join(i.text() for i in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"The dataset has {len(issues)} bad record(s): {shown}{more}. "
                         "Fix them and try again.")


@dataclass(frozen=True)
class Issue:
    line: int
    message: str
    where: str = "line"  # "line" (JSONL, CSV) or "record" (JSON array)

    def text(self) -> str:
        return f"{self.where} {self.line}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Example:
    line: int
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.record, sort_keys=True, ensure_ascii=False)
                            .encode()).hexdigest()


@dataclass
class ParsedDataset:
    format: str
    examples: list[Example]
    issues: list[Issue]
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, first seen at)
    total: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def records(self) -> list[dict[str, Any]]:
        return [e.record for e in self.examples]

    def report(self) -> dict[str, Any]:
        return {
            "format": self.format, "records": self.total, "valid": len(self.examples),
            "ok": self.ok, "issues": [i.to_dict() for i in self.issues],
            "duplicates": [{"line": a, "duplicate_of": b} for a, b in self.duplicates],
        }


# --- reading files ---------------------------------------------------------------------------

def file_kind(name: str) -> str:
    kind = FILE_KINDS.get(Path(name).suffix.lower())
    if kind is None:
        raise ValueError(f"{Path(name).name!r}: a dataset is a .jsonl, .json or .csv file.")
    return kind


def read_rows(data: bytes | str, kind: str) -> tuple[list[tuple[int, Any]], list[Issue], str]:
    """Rows as ``(line, value)`` plus issues for unreadable lines, and how lines are named."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    rows: list[tuple[int, Any]] = []
    issues: list[Issue] = []
    if kind == "jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as err:
                issues.append(Issue(lineno, f"bad JSON ({err.msg} at column {err.colno})"))
        return rows, issues, "line"
    if kind == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            return [], [Issue(err.lineno, f"bad JSON ({err.msg} at column {err.colno}); the "
                                          "file must be one JSON array of records")], "line"
        if isinstance(value, dict):
            for key in ("data", "examples", "records"):
                if isinstance(value.get(key), list):
                    value = value[key]
                    break
        if not isinstance(value, list):
            return [], [Issue(1, "a .json dataset must be an array of records")], "line"
        return [(i, v) for i, v in enumerate(value, 1)], [], "record"
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        try:
            for row in reader:
                clean = {k.strip(): (v or "") for k, v in row.items() if k is not None}
                rows.append((reader.line_num, clean))
        except csv.Error as err:
            issues.append(Issue(reader.line_num, f"unreadable CSV ({err})"))
        return rows, issues, "line"
    raise ValueError(f"Unknown dataset file kind {kind!r}.")


def detect_format(rows: Sequence[tuple[int, Any]]) -> str:
    """The form most records have (chat, preference or alpaca); alpaca when unsure."""
    votes = {"alpaca": 0, "chat": 0, "preference": 0}
    for _, row in rows[:200]:
        if not isinstance(row, dict):
            continue
        if "messages" in row or "conversations" in row:
            votes["chat"] += 1
        elif "chosen" in row or "rejected" in row:
            votes["preference"] += 1
        elif "instruction" in row or "output" in row:
            votes["alpaca"] += 1
    return max(votes, key=lambda k: votes[k]) if any(votes.values()) else "alpaca"


# --- checking records ------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _alpaca(row: dict[str, Any]) -> dict[str, Any] | str:
    for key in ("instruction", "output"):
        if key not in row:
            return f"missing field {key!r} (an alpaca record needs instruction and output)"
    instruction, inp, output = _text(row["instruction"]), _text(row.get("input")), _text(row["output"])
    system = _text(row.get("system"))
    if instruction is None or inp is None or output is None or system is None:
        return "instruction, input, output and system must be text"
    if not instruction.strip():
        return "empty instruction"
    if not output.strip():
        return "empty answer (output)"
    user = instruction.strip() + (f"\n\n{inp.strip()}" if inp.strip() else "")
    messages = [{"role": "system", "content": system.strip()}] if system.strip() else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output.strip()}]
    return {"messages": messages}


def _messages(value: Any, *, what: str) -> list[dict[str, str]] | str:
    if isinstance(value, str):
        try:
            value = json.loads(value)  # CSV cells may hold the list as JSON
        except json.JSONDecodeError:
            return f"{what} must be a list of messages with role and content"
    if not isinstance(value, list) or not value:
        return f"{what} must be a non-empty list of messages with role and content"
    out: list[dict[str, str]] = []
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            return f"message {i} is not an object with role and content"
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = {"human": "user", "gpt": "assistant", "bot": "assistant"}.get(str(role), role)
        if role not in ROLES:
            return f"message {i} has role {role!r}; use system, user or assistant"
        text = _text(content)
        if text is None:
            return f"message {i} ({role}) has no text content"
        out.append({"role": str(role), "content": text})
    return out


def _check_order(messages: list[dict[str, str]]) -> str | None:
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if any(m["role"] == "system" for m in body):
        return "wrong role order: a system message may only come first"
    if not body:
        return "wrong role order: no user message"
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            return (f"wrong role order: message {i + 1 + (len(messages) - len(body))} is "
                    f"{m['role']} but {expected} was expected (user and assistant alternate, "
                    "starting with user)")
    if body[-1]["role"] != "assistant":
        return "wrong role order: the last message must be the assistant's answer"
    for m in messages:
        if m["role"] == "assistant" and not m["content"].strip():
            return "empty answer (an assistant message has no text)"
        if m["role"] == "user" and not m["content"].strip():
            return "empty question (a user message has no text)"
    return None


def _chat(row: dict[str, Any]) -> dict[str, Any] | str:
    if "messages" not in row and "conversations" not in row:
        return "missing field 'messages' (a chat record needs a list of messages)"
    messages = _messages(row.get("messages", row.get("conversations")), what="messages")
    if isinstance(messages, str):
        return messages
    problem = _check_order(messages)
    return problem or {"messages": messages}


def _answer(value: Any, what: str) -> str | None:
    if isinstance(value, list):
        msgs = _messages(value, what=what)
        if isinstance(msgs, str) or not msgs or msgs[-1]["role"] != "assistant":
            return None
        return msgs[-1]["content"]
    return _text(value)


def _preference(row: dict[str, Any]) -> dict[str, Any] | str:
    for key in ("prompt", "chosen", "rejected"):
        if key not in row:
            return f"missing field {key!r} (a preference record needs prompt, chosen and rejected)"
    prompt_value = row["prompt"]
    if isinstance(prompt_value, list):
        prompt = _messages(prompt_value, what="prompt")
        if isinstance(prompt, str):
            return prompt
        if prompt[-1]["role"] != "user":
            return "wrong role order: the prompt must end with a user message"
    else:
        text = _text(prompt_value)
        if text is None or not text.strip():
            return "empty prompt"
        prompt = [{"role": "user", "content": text.strip()}]
    chosen, rejected = _answer(row["chosen"], "chosen"), _answer(row["rejected"], "rejected")
    if chosen is None or rejected is None:
        return "chosen and rejected must be text (or messages ending with the assistant)"
    if not chosen.strip():
        return "empty answer (chosen)"
    if not rejected.strip():
        return "empty answer (rejected)"
    if chosen.strip() == rejected.strip():
        return "chosen and rejected are the same answer"
    return {"prompt": prompt, "chosen": chosen.strip(), "rejected": rejected.strip()}


_CHECKS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | str]] = {
    "alpaca": _alpaca, "chat": _chat, "preference": _preference,
}


def parse_dataset(
    data: bytes | str,
    *,
    kind: str,
    format: str | None = None,
    count_tokens: Callable[[dict[str, Any]], int] | None = None,
    max_length: int | None = None,
) -> ParsedDataset:
    """Read and check every record. ``count_tokens(record)`` (the base model's tokenizer through
    its chat template) with ``max_length`` flags records that would not fit."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"Unknown dataset format {format!r}: use {', '.join(FORMATS)}.")
    rows, issues, where = read_rows(data, kind)
    issues = [Issue(i.line, i.message, where) for i in issues]
    fmt = format or detect_format(rows)
    check = _CHECKS[fmt]
    examples: list[Example] = []
    for line, row in rows:
        if not isinstance(row, dict):
            issues.append(Issue(line, "not a JSON object", where))
            continue
        result = check(row)
        if isinstance(result, str):
            issues.append(Issue(line, result, where))
            continue
        if count_tokens is not None and max_length:
            n = count_tokens(result)
            if n > max_length:
                issues.append(Issue(line, f"over the maximum length ({n} tokens > {max_length}); "
                                          "shorten it or raise the maximum length", where))
                continue
        examples.append(Example(line, result))
    if not rows and not issues:
        issues.append(Issue(1, "the file holds no records", where))
    seen: dict[str, int] = {}
    duplicates: list[tuple[int, int]] = []
    for ex in examples:
        first = seen.setdefault(ex.key, ex.line)
        if first != ex.line:
            duplicates.append((ex.line, first))
    issues.sort(key=lambda i: i.line)
    return ParsedDataset(format=fmt, examples=examples, issues=issues[:MAX_ISSUES],
                         duplicates=duplicates, total=len(rows) + sum(
                             1 for i in issues if i.message.startswith("bad JSON")))


def parse_file(path: Path, **kwargs: Any) -> ParsedDataset:
    return parse_dataset(Path(path).read_bytes(), kind=file_kind(path.name), **kwargs)


def split(records: Sequence[T], *, val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """A deterministic train/validation split. ``val_fraction`` 0 keeps every record for
    training. At least one record stays on each side when both are asked for."""
    if not 0 <= val_fraction < 1:
        raise ValueError("The validation share must be at least 0 and below 1.")
    items = list(records)
    if val_fraction == 0 or len(items) < 2:
        return items, []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
    val_idx = set(order[:n_val])
    return ([r for i, r in enumerate(items) if i not in val_idx],
            [r for i, r in enumerate(items) if i in val_idx])


def records_from_feedback(items: Sequence[dict[str, Any]]
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Agent feedback as training data: a thumbs-up answer becomes a chat example; a
    thumbs-down answer whose comment gives the corrected (preferred) answer becomes a preference
    pair. ``items`` have ``question``, ``answer``, ``rating`` (1 or -1) and ``comment``."""
    chat: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for f in items:
        question, answer = str(f.get("question") or "").strip(), str(f.get("answer") or "").strip()
        comment = str(f.get("comment") or "").strip()
        if not question or not answer:
            continue
        if f.get("rating") == 1:
            chat.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}]})
        elif f.get("rating") == -1 and comment and comment != answer:
            pairs.append({"prompt": [{"role": "user", "content": question}],
                          "chosen": comment, "rejected": answer})
    return chat, pairs


QA_INSTRUCTION = (
    "You write training data for a support assistant. From the passage below, write one "
    "question a user could ask that the passage answers, and the answer, taken from the "
    "passage. Reply in exactly two lines:\nQuestion: ...\nAnswer: ...\n\nPassage:\n{passage}"
)
_QA_RE = re.compile(r"question\s*[:：]\s*(?P<q>.+?)\s*\n\s*answer\s*[:：]\s*(?P<a>.+)",
                    re.IGNORECASE | re.DOTALL)


def qa_messages(passage: str) -> list[dict[str, str]]:
    """The request that asks a model for one question/answer pair about a passage."""
    return [{"role": "user", "content": QA_INSTRUCTION.format(passage=passage.strip())}]


def parse_qa(text: str) -> tuple[str, str] | None:
    """A model's reply as (question, answer): ``Question: ...`` / ``Answer: ...`` lines, or a
    JSON object with ``question`` and ``answer``; None when it is neither."""
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            q, a = str(obj.get("question") or "").strip(), str(obj.get("answer") or "").strip()
            return (q, a) if q and a else None
    m = _QA_RE.search(text)
    if not m:
        return None
    q, a = m.group("q").strip(), m.group("a").strip()
    return (q, a) if q and a else None


def dumps_jsonl(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def histogram(lengths: Sequence[int], bins: int = 20) -> list[dict[str, int]]:
    """Token lengths grouped in equal bins: ``[{"start", "end", "count"}]``."""
    if not lengths:
        return []
    lo, hi = min(lengths), max(lengths)
    width = max(1, -(-(hi - lo + 1) // bins))
    counts: dict[int, int] = {}
    for n in lengths:
        b = (n - lo) // width
        counts[b] = counts.get(b, 0) + 1
    return [{"start": lo + b * width, "end": lo + (b + 1) * width - 1, "count": counts.get(b, 0)}
            for b in range(max(counts) + 1)]
