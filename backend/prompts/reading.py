"""How a model reads a prompt: its tokenizer's split (ids, pieces, count against the context
window) and, for local models, the attention of one layer and head over the prompt's tokens
(computed with eager attention, ``output_attentions=True``).

Tokenizers and the attention model are loaded in this process and kept (a few tokenizers, one
attention model), so moving between layers and heads costs a forward pass at most.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_ATTENTION_TOKENS = 256
_lock = threading.Lock()
_tokenizers: OrderedDict[str, Any] = OrderedDict()
_attention_model: dict[str, Any] = {}
_attention_cache: dict[tuple[str, tuple[int, ...]], Any] = {}


class ReadingError(ValueError):
    """The view cannot be made; the message says why."""


@dataclass
class TokenPiece:
    id: int
    text: str  # the token as text (special tokens as written, spaces visible)
    special: bool


@dataclass
class TokenView:
    model: str
    tokens: list[TokenPiece]
    context_window: int | None

    @property
    def count(self) -> int:
        return len(self.tokens)

    @property
    def share(self) -> float | None:
        return self.count / self.context_window if self.context_window else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "count": self.count, "context_window": self.context_window,
                "tokens": [{"id": t.id, "text": t.text, "special": t.special}
                           for t in self.tokens]}


@dataclass
class AttentionView:
    model: str
    tokens: list[str]
    layer: int
    head: int
    layers: int
    heads: int
    weights: list[list[float]]  # [query token][key token]; each row sums to 1
    truncated: bool


def _tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    with _lock:
        tok = _tokenizers.get(source)
        if tok is not None:
            _tokenizers.move_to_end(source)
            return tok
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - say what failed, in one line
        raise ReadingError(f"Cannot load the tokenizer of {source}: {exc}") from None
    with _lock:
        _tokenizers[source] = tok
        while len(_tokenizers) > 4:
            _tokenizers.popitem(last=False)
    return tok


def encode(source: str, messages: Sequence[dict[str, Any]]) -> list[int]:
    """The ids a local model is given for these messages (its chat template, generation
    prompt included), exactly as chat encodes them."""
    tok = _tokenizer(source)
    if not getattr(tok, "chat_template", None):
        raise ReadingError(f"The model {source} has no chat template.")
    enc = tok.apply_chat_template(list(messages), add_generation_prompt=True, return_dict=True)
    return [int(i) for i in enc["input_ids"]]


def context_window(source: str) -> int | None:
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(source)
    except Exception:  # noqa: BLE001 - unknown is an honest answer
        return None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def token_view(name: str, source: str, messages: Sequence[dict[str, Any]]) -> TokenView:
    tok = _tokenizer(source)
    ids = encode(source, messages)
    special = set(getattr(tok, "all_special_ids", []) or [])
    pieces = [TokenPiece(id=i, text=_piece(tok, i), special=i in special) for i in ids]
    return TokenView(model=name, tokens=pieces, context_window=context_window(source))


def _piece(tok: Any, token_id: int) -> str:
    text = tok.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if text and "\ufffd" not in text:
        return str(text)
    raw = tok.convert_ids_to_tokens(token_id)  # part of a multi-byte character: show the bytes
    return str(raw) if raw is not None else f"<{token_id}>"


def _model(source: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    with _lock:
        if _attention_model.get("source") == source:
            return _attention_model["model"]
    try:
        model = AutoModelForCausalLM.from_pretrained(source, attn_implementation="eager",
                                                     dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - one line for people
        raise ReadingError(f"Cannot load {source} to show attention: {exc}") from None
    model.eval()
    with _lock:
        _attention_model.clear()
        _attention_model.update(source=source, model=model)
        _attention_cache.clear()
    return model


def attention_view(name: str, source: str, messages: Sequence[dict[str, Any]], *, layer: int,
                   head: int) -> AttentionView:
    """The attention weights of one layer and head (0-based) over the prompt's tokens (the
    first ``MAX_ATTENTION_TOKENS``)."""
    import torch

    ids = encode(source, messages)
    truncated = len(ids) > MAX_ATTENTION_TOKENS
    ids = ids[:MAX_ATTENTION_TOKENS]
    model = _model(source)
    key = (source, tuple(ids))
    attn = _attention_cache.get(key)
    if attn is None:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids]), output_attentions=True)
        if not out.attentions or out.attentions[0] is None:
            raise ReadingError(f"{name} does not return attention weights.")
        attn = [a[0].float().numpy() for a in out.attentions]  # per layer: [heads, q, k]
        _attention_cache.clear()
        _attention_cache[key] = attn
    layers, heads = len(attn), int(attn[0].shape[0])
    if not 0 <= layer < layers:
        raise ReadingError(f"{name} has layers 1 to {layers}.")
    if not 0 <= head < heads:
        raise ReadingError(f"{name} has heads 1 to {heads}.")
    tok = _tokenizer(source)
    return AttentionView(model=name, tokens=[_piece(tok, i) for i in ids], layer=layer,
                         head=head, layers=layers, heads=heads,
                         weights=attn[layer][head].round(4).tolist(), truncated=truncated)
