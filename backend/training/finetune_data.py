"""Examples through the base model's chat template, with the tokens that count for the loss.

A chat is rendered turn by turn: the text up to each assistant answer (the prompt, with the
template's generation prompt) is masked; the answer with its end-of-turn token counts for the
loss. Rendering in pieces keeps the masks exact whatever the template writes around a turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def render(tokenizer: Any, messages: Sequence[dict[str, str]], *, generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                 add_generation_prompt=generation_prompt))
    # No template (a base model pre-trained without one): a plain, readable layout
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + ("assistant: " if generation_prompt else "")


def segments(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered chat as ``(text, counts_for_loss)`` pieces, in order."""
    out: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], generation_prompt=True)
        full = render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not tokenizer.chat_template:
            full = prompt + m["content"] + (tokenizer.eos_token or "") + "\n"
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ValueError("The chat template does not render turns as a growing text, so the "
                             "answer tokens cannot be marked; use a model with a standard template.")
        out.append((prompt[len(done):], False))
        out.append((full[len(prompt):], True))
        done = full
    return [(t, loss) for t, loss in out if t]


def encode_chat(tokenizer: Any, messages: Sequence[dict[str, str]],
                max_length: int | None = None) -> Encoded:
    """Token ids and labels (prompt tokens ``-100``), cut to ``max_length``."""
    ids: list[int] = []
    labels: list[int] = []
    for text, loss in segments(tokenizer, messages):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if loss else [IGNORE] * len(piece)
    if max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(ids, labels)


def count_tokens(tokenizer: Any, record: dict[str, Any]) -> int:
    """Length of a normalised record as the model sees it (the longer side of a preference)."""
    if "messages" in record:
        return len(encode_chat(tokenizer, record["messages"]).input_ids)
    prompt = record["prompt"]
    return max(len(encode_chat(tokenizer, [*prompt, {"role": "assistant", "content": record[k]}])
                   .input_ids) for k in ("chosen", "rejected"))


def prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    text = render(tokenizer, messages, generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def preview(tokenizer: Any, record: dict[str, Any], max_length: int | None = None
            ) -> list[dict[str, Any]]:
    """Tokens of one example as ``[{"text", "loss"}]`` runs (consecutive tokens merged), so a
    page can show which ones the model learns to write."""
    messages = record.get("messages") or [*record["prompt"],
                                           {"role": "assistant", "content": record["chosen"]}]
    enc = encode_chat(tokenizer, messages, max_length)
    runs: list[dict[str, Any]] = []
    for tok, lab in zip(enc.input_ids, enc.labels, strict=True):
        loss = lab != IGNORE
        text = tokenizer.decode([tok])
        if runs and runs[-1]["loss"] == loss:
            runs[-1]["text"] += text
            runs[-1]["tokens"] += 1
        else:
            runs.append({"text": text, "loss": loss, "tokens": 1})
    return runs


def prompt_and_answer(record: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """The conversation up to the last answer, and that answer (for sampling and scoring)."""
    if "messages" in record:
        msgs = record["messages"]
        return list(msgs[:-1]), msgs[-1]["content"]
    return list(record["prompt"]), record["chosen"]
