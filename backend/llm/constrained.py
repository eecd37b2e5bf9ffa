"""Constrained decoding for local models: OpenAI's ``response_format`` (``json_object``,
``json_schema``) and a forced tool call (``tool_choice`` ``"required"`` or a named tool) become a
grammar (xgrammar) that masks the logits every step, so the answer follows it whatever the model.

``GrammarSampler`` is the one logits processor: it masks what the grammar forbids, then applies
temperature and top-p itself and picks the token (``generate`` runs greedy over its output), so a
filter can never leave only forbidden tokens (no inf/nan). Near the end of the token budget it
finishes the document: among the tokens the grammar allows it prefers those that close strings,
objects and arrays, so an answer within ``max_tokens`` is complete JSON even from a model that
would ramble (a tiny random one writes endless strings). A budget too small for the schema's
required keys still ends with ``finish_reason: length``, as OpenAI's does.

A forced tool call is written the way local chat templates and ``ToolCallFilter`` expect:
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from backend.llm.errors import InvalidChatRequest
from backend.llm.types import GenerationParams

LOOKAHEAD = 128  # tokens before the end of the budget from which finishing is planned
FINISH_MARGIN = 3  # tokens of slack kept (the stop token among them)


def _json_schema(params: GenerationParams) -> dict[str, Any] | None:
    """The JSON Schema the answer must follow (None: any JSON object)."""
    rf = params.response_format or {}
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        return dict(schema) if isinstance(schema, Mapping) and schema else None
    return None


def _tool_schema(tools: Sequence[Mapping[str, Any]], forced: str) -> dict[str, Any]:
    options = []
    for t in tools:
        fn = t.get("function") or {}
        if forced not in ("*", fn.get("name")):
            continue
        args = fn.get("parameters") or {"type": "object"}
        options.append({"type": "object", "properties": {
            "name": {"const": fn["name"]}, "arguments": args}, "required": ["name", "arguments"]})
    if not options:
        raise InvalidChatRequest(f"tool_choice asks for the tool {forced!r}, which is not among "
                                 "the tools sent.", param="tool_choice")
    return options[0] if len(options) == 1 else {"anyOf": options}


def build_grammar(params: GenerationParams, tools: Sequence[Mapping[str, Any]] | None) -> Any:
    """The xgrammar ``Grammar`` for these settings (None when unconstrained). Raises
    InvalidChatRequest when the engine cannot follow the schema."""
    import xgrammar as xgr

    forced = params.forced_tool
    param = "tools" if forced is not None and tools else "response_format"
    try:
        if forced is not None and tools:
            body = xgr.Grammar.from_json_schema(json.dumps(_tool_schema(tools, forced)),
                                                any_whitespace=False)
            return xgr.Grammar.concat(xgr.Grammar.from_ebnf('root ::= "<tool_call>"'), body,
                                      xgr.Grammar.from_ebnf('root ::= "</tool_call>"'))
        if not params.response_format:
            return None
        schema = _json_schema(params)
        if schema is None:
            return xgr.Grammar.from_json_schema(json.dumps({"type": "object"}),
                                                any_whitespace=False, strict_mode=False)
        return xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    except InvalidChatRequest:
        raise
    except Exception as exc:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError kinds
        raise InvalidChatRequest(_cannot_enforce(exc, param), param=param) from None


_ENGINE_PREFIX = re.compile(r"^\s*(\[[0-9:.]+\]\s*)?(\S*\.(cc|cpp|h|py):\d+:\s*)?")


def engine_reason(exc: BaseException) -> str:
    """The grammar engine's complaint in a person's words: without its timestamp, source file
    and line (``[21:56:12] /project/cpp/json_schema_converter.cc:5088: ...``)."""
    text = " ".join(_ENGINE_PREFIX.sub("", line).strip() for line in str(exc).splitlines()
                    if line.strip())
    text = _ENGINE_PREFIX.sub("", text).strip().rstrip(".")
    ref = re.match(r"Cannot find field '([^']*)' in (#\S*)", text)
    if ref:
        return (f"the $ref {ref.group(2)!r} points to nothing in the schema "
                f"(no {ref.group(1)!r} there); define it or remove the $ref")
    if "minimum greater than maximum" in text.lower():
        return "a minimum is greater than its maximum; change one of them"
    return text or type(exc).__name__


def _cannot_enforce(exc: BaseException, param: str) -> str:
    what = "The tools' parameters" if param == "tools" else "The JSON Schema of response_format"
    return (f"{what} cannot be enforced: {engine_reason(exc)}. Change the schema (types, "
            "properties, required, enum, items, anyOf, $defs with $ref work).")


def check_grammar(params: GenerationParams,
                  tools: Sequence[Mapping[str, Any]] | None) -> None:
    """Build the grammar now (no model needed): InvalidChatRequest, naming the field, when the
    engine cannot follow the schema; the API checks this before the chat starts."""
    build_grammar(params, tools)


class _Engine:
    """Per loaded model: the tokenizer as xgrammar sees it, a compiler (with its cache) and the
    token ids that close JSON structures."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        import torch
        import xgrammar as xgr

        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                       stop_token_ids=stop_ids or None)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1)
        quote, close, comma = [], [], []
        for i, raw in enumerate(self.info.decoded_vocab):
            text = raw.decode("utf-8", errors="ignore").strip()
            if not text or not set(text) <= set('"}],'):
                continue
            if text[0] == '"' and "," not in text:
                quote.append(i)  # ends a string (and maybe what holds it)
            elif text[0] in "}]" and "," not in text:
                close.append(i)  # ends an object or an array
            elif text == ",":
                comma.append(i)  # on to the next required key or item
        # preferred first when finishing; a tier applies when the grammar allows one of it
        self.tiers = [torch.tensor(t, dtype=torch.long) for t in (quote, close, comma)]
        self.lengths = torch.tensor([len(raw) for raw in self.info.decoded_vocab],
                                    dtype=torch.long)
        self.vocab_size = int(self.info.vocab_size)


_engines: dict[int, _Engine] = {}
_engines_lock = threading.Lock()


def _engine(lm: Any) -> _Engine:
    with _engines_lock:
        eng = _engines.get(id(lm.model))
        if eng is None:
            eos = lm.model.generation_config.eos_token_id if lm.model.generation_config else None
            stop_ids = [eos] if isinstance(eos, int) else list(eos or [])
            if not stop_ids and lm.tokenizer.eos_token_id is not None:
                stop_ids = [lm.tokenizer.eos_token_id]
            eng = _Engine(lm.tokenizer, int(lm.model.config.vocab_size), stop_ids)
            _engines.clear()  # one model's engine at a time is plenty; models come and go
            _engines[id(lm.model)] = eng
        return eng


class GrammarSampler:
    """A transformers logits processor that follows a grammar, samples by itself and finishes
    the document before the budget runs out. One per ``generate`` call.

    Finishing: in the last ``LOOKAHEAD`` tokens it plays the finishing policy forward on a copy
    of the grammar state (closing tokens first, else the shortest allowed token) to count the
    tokens a complete document still needs; once that fills what is left of the budget, it
    decodes with that policy (the model still chooses where the grammar leaves a choice)."""

    def __init__(self, engine: _Engine, compiled: Any, params: GenerationParams,
                 budget: int) -> None:
        import xgrammar as xgr

        self.engine = engine
        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, engine.vocab_size)
        self.sim_mask = xgr.allocate_token_bitmask(1, engine.vocab_size)
        self.params = params
        self.budget = budget
        self.steps = 0
        self.finishing = False
        self.next_check = LOOKAHEAD  # plan the finish when this few tokens are left

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        import xgrammar as xgr

        if self.steps and not self.matcher.is_terminated():
            self.matcher.accept_token(int(input_ids[0, -1]))
        self.steps += 1
        if self.matcher.is_terminated():  # only a stop token may follow
            return scores
        device = scores.device
        cpu = scores.float().to("cpu")
        self.matcher.fill_next_token_bitmask(self.bitmask)
        xgr.apply_token_bitmask_inplace(cpu, self.bitmask)
        left = self.budget - self.steps + 1  # tokens still allowed, this one included
        if not self.finishing and left <= self.next_check:
            need = self._tokens_to_finish(limit=left) + FINISH_MARGIN
            self.finishing = need >= left
            self.next_check = left - max(1, (left - need) // 2)  # halve the slack, then look again
        chosen = self._finishing_pick(cpu, left) if self.finishing else self._pick(cpu[0])
        out = torch.full_like(cpu, float("-inf"))
        out[0, chosen] = 0.0
        return out.to(device)

    def _allowed(self, scores: Any) -> Any:
        import torch

        return torch.isfinite(scores[0])

    def _finishing_pick(self, scores: Any, left: int) -> int:
        """A closing token when one is allowed; else the model's choice if the document can
        still be finished after it, else the finishing policy's own token."""
        allowed = self._allowed(scores)
        for tier in self.engine.tiers:
            tier = tier[tier < scores.shape[-1]]
            ok = tier[allowed[tier]]
            if len(ok):
                kept = scores.new_full(scores.shape, float("-inf"))
                kept[0, ok] = scores[0, ok]
                return self._pick(kept[0])
        choice = self._pick(scores[0])
        trial = self.matcher.fork()
        if trial.accept_token(choice) and \
                1 + self._tokens_to_finish(limit=left, matcher=trial) + FINISH_MARGIN <= left:
            return choice
        return self._policy_token(self.matcher) or choice

    def _policy_token(self, matcher: Any) -> int | None:
        """The finishing policy's next token: a closing one, else the longest allowed one (most
        of a key or literal the grammar forces, in one token)."""
        import torch

        mask = self.sim_mask
        matcher.fill_next_token_bitmask(mask)
        bits = torch.arange(32, dtype=torch.int32)
        allowed = ((mask[0].unsqueeze(1) >> bits) & 1).flatten().bool()[: self.engine.vocab_size]
        for tier in self.engine.tiers:
            ok = tier[allowed[tier]]
            if len(ok):
                return int(ok[0])
        if not bool(allowed.any()):
            return None
        lengths = torch.where(allowed, self.engine.lengths[: len(allowed)], -1)
        return int(torch.argmax(lengths))

    def _tokens_to_finish(self, *, limit: int, matcher: Any = None) -> int:
        """Tokens the finishing policy needs from here to a complete document (capped)."""
        sim = (matcher or self.matcher).fork()
        for n in range(limit + 1):
            if sim.is_completed():
                return n
            token = self._policy_token(sim)
            if token is None or token in sim.stop_token_ids or not sim.accept_token(token):
                return n
        return limit + 1

    def _pick(self, logits: Any) -> int:
        import torch

        p = self.params
        if p.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_p, dim=-1)
            drop = cum - sorted_p > p.top_p  # keep the smallest head reaching top_p (>= 1)
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
            return int(torch.argmax(logits))
        return int(torch.multinomial(probs / probs.sum(), 1))


def logits_processor(lm: Any, params: GenerationParams,
                     tools: Sequence[Mapping[str, Any]] | None, budget: int) -> Any:
    """The processor for one ``generate`` call, or None when the chat is unconstrained."""
    grammar = build_grammar(params, tools)
    if grammar is None:
        return None
    eng = _engine(lm)
    try:
        compiled = eng.compiler.compile_grammar(grammar)
    except Exception as exc:  # noqa: BLE001
        param = "tools" if params.forced_tool is not None and tools else "response_format"
        raise InvalidChatRequest(_cannot_enforce(exc, param), param=param) from None
    return GrammarSampler(eng, compiled, params, budget)
