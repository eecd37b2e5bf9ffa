"""Local Hugging Face models: pick the device, keep recently used models loaded (LRU bounded by
count and memory), apply the chat template and stream tokens as ``model.generate`` makes them.

A streamer decodes each token as ``generate`` makes it, cuts at stop strings, lifts tool calls
out and hands the pieces to a callback (the worker publishes them straight to Redis). Stopping is
a flag the stopping criterion reads each token, so a stop takes effect at the next token.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.llm.errors import InvalidChatRequest, LLMError, ModelLoadError
from backend.llm.stream_filters import StopStringFilter, ToolCallFilter
from backend.llm.types import ChatEvent, ChatPiece, GenerationParams, Message, Usage

log = logging.getLogger(__name__)

STOP_POLL_S = 0.1  # how often an outside stop signal (e.g. Redis) is polled


def pick_device(preference: str = "auto") -> tuple[str, Any]:
    """(device, dtype): cuda with bf16 (fp16 where bf16 is missing), else cpu with fp32."""
    import torch

    if preference in ("auto", "cuda") and torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return "cuda", dtype
    if preference == "cuda":
        raise LLMError("STUDIO_INFERENCE_DEVICE is cuda but this machine has no CUDA device.")
    return "cpu", torch.float32


@dataclass
class LoadedModel:
    source: str
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    nbytes: int
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)

    @property
    def gb(self) -> float:
        return self.nbytes / 1e9


def load_model(source: str, *, device_preference: str = "auto") -> LoadedModel:
    """Load tokenizer and causal LM from a folder or hub id, in eval mode, on the picked device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no tqdm bars in worker logs and CLI output
    device, dtype = pick_device(device_preference)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise ModelLoadError(f"Cannot load the model {source!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; keep the message
        log.exception("loading %s failed", source)
        raise ModelLoadError(f"Cannot load the model {source!r}: {type(exc).__name__}: {exc}") \
            from exc
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    nbytes += sum(b.numel() * b.element_size() for b in model.buffers())
    return LoadedModel(source=source, model=model, tokenizer=tokenizer, device=device,
                       dtype=str(dtype).removeprefix("torch."), nbytes=nbytes)


# Two models loading at once in two threads (two playground columns on two models) failed
# with "Cannot copy out of meta tensor": from_pretrained creates weights under process-wide
# patches (empty weights on the meta device) that the other thread's load then sees.
_LOAD_ONE_AT_A_TIME = threading.Lock()


class ModelCache:
    """Recently used models, kept loaded. Thread-safe; one load per source at a time."""

    def __init__(self, *, max_models: int, max_gb: float, device_preference: str = "auto",
                 loader: Callable[..., LoadedModel] = load_model) -> None:
        self.max_models = max_models
        self.max_bytes = int(max_gb * 1e9)
        self.device_preference = device_preference
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, source: str, *, on_load: Callable[[], None] | None = None) -> LoadedModel:
        with self._lock:
            lm = self._models.get(source)
            if lm is not None:
                self._models.move_to_end(source)
                lm.last_used = time.time()
                return lm
            load_lock = self._loading.setdefault(source, threading.Lock())
        with load_lock:
            with self._lock:
                lm = self._models.get(source)
                if lm is not None:
                    return lm
            if on_load is not None:
                on_load()
            started = time.perf_counter()
            with _LOAD_ONE_AT_A_TIME:  # transformers' loading is not thread-safe (see there)
                lm = self._loader(source, device_preference=self.device_preference)
            log.info("loaded %s on %s (%s, %.2f GB) in %.1f s", source, lm.device, lm.dtype,
                     lm.gb, time.perf_counter() - started)
            with self._lock:
                self._models[source] = lm
                self._evict(keep=source)
            return lm

    def _evict(self, *, keep: str) -> None:
        def too_big() -> bool:
            total = sum(m.nbytes for m in self._models.values())
            return len(self._models) > self.max_models or total > self.max_bytes

        while too_big() and len(self._models) > 1:
            victim = next(k for k in self._models if k != keep)
            self._models.pop(victim)
            log.info("unloaded %s (model cache full)", victim)
        _free_accelerator_memory()

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
        _free_accelerator_memory()


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    """The process-wide cache, sized from the settings (one per worker process)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            from backend.config import get_settings

            s = get_settings()
            _cache = ModelCache(max_models=s.model_cache_size, max_gb=s.model_cache_max_gb,
                                device_preference=s.inference_device)
        return _cache


# --- generation ----------------------------------------------------------------------------

class _PieceStreamer:
    """A transformers streamer: decodes each new token incrementally (holding incomplete UTF-8),
    applies the stop-string and tool-call filters, and hands what may be shown to ``emit``."""

    def __init__(self, tokenizer: Any, emit: Callable[[ChatPiece], None], stop: Sequence[str],
                 parse_tools: bool, forced_tool: bool = False) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.stop_filter = StopStringFilter(stop)
        self.tool_filter = ToolCallFilter(forced=forced_tool) if parse_tools else None
        self.tokens: list[int] = []
        self.printed = 0
        self.prompt_seen = False
        self.n_tokens = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.n_tokens += len(ids)
        self.tokens.extend(ids)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
            return
        new = text[self.printed:]
        if text.endswith("\n"):
            self.tokens, self.printed = [], 0
        else:
            self.printed = len(text)
        self._emit(self.stop_filter.feed(new))

    def _emit(self, text: str) -> None:
        if not text:
            return
        pieces: list[ChatPiece] = self.tool_filter.feed(text) if self.tool_filter else [text]
        for p in pieces:
            self.emit(p)

    def end(self) -> None:
        if self.tokens and not self.stop_filter.hit:
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
            self._emit(self.stop_filter.feed(text[self.printed:]))
        self._emit(self.stop_filter.flush())
        if self.tool_filter:
            for p in self.tool_filter.flush():
                self.emit(p)

    @property
    def tool_calls(self) -> int:
        return self.tool_filter.calls if self.tool_filter else 0


def _generation_kwargs(lm: LoadedModel, params: GenerationParams,
                       max_new_tokens: int | None = None,
                       constrained: bool = False) -> dict[str, Any]:
    from transformers import GenerationConfig

    base = lm.model.generation_config.to_dict() if lm.model.generation_config else {}
    keep = {k: base[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in base}
    if keep.get("pad_token_id") is None:
        keep["pad_token_id"] = lm.tokenizer.pad_token_id
    cfg: dict[str, Any] = {**keep, "max_new_tokens": max_new_tokens or params.max_new_tokens}
    if params.greedy or constrained:  # a constrained chat samples in its GrammarSampler
        cfg.update(do_sample=False)
    else:
        cfg.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
    if params.repetition_penalty != 1.0:
        cfg["repetition_penalty"] = params.repetition_penalty
    return {"generation_config": GenerationConfig(**cfg)}


def model_label(source: str, name: str | None = None) -> str:
    """How an error names a local model: its registered name, else its folder's (or hub id's)
    last part; never a path on the server."""
    if name:
        return name
    return os.path.basename(str(source).rstrip("/\\")) or "the model"


def hide_source(text: str, source: str, name: str | None = None) -> str:
    """``text`` with the model's folder (as given, absolute or resolved) named by
    :func:`model_label` instead: error messages leave the server without its paths."""
    if not source:
        return text
    label = model_label(source, name)
    forms = {str(source)}
    with contextlib.suppress(OSError, ValueError):
        forms |= {os.path.abspath(source), os.path.realpath(source)}
    for form in sorted((f for f in forms if f and len(f) > 1), key=len, reverse=True):
        text = text.replace(repr(form), repr(label)).replace(form, label)
    return text


def renamed(exc: BaseException, source: str, name: str | None = None) -> BaseException:
    """The same error, its message naming the model by :func:`model_label` (never a path)."""
    message = str(exc)
    hidden = hide_source(message, source, name)
    if hidden == message:
        return exc
    if isinstance(exc, LLMError):
        new = copy.copy(exc)
        new.args = (hidden,)
        return new
    return LLMError(hidden)


def encode_chat(lm: LoadedModel, messages: list[Message],
                tools: list[dict[str, Any]] | None, name: str | None = None) -> dict[str, Any]:
    tok = lm.tokenizer
    label = model_label(lm.source, name)
    if not getattr(tok, "chat_template", None):
        raise LLMError(
            f"The model {label} has no chat template, so it cannot chat. Use an instruct/chat "
            "model, or add a chat_template.jinja to its folder."
        )
    try:
        enc = tok.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
    except Exception as exc:  # noqa: BLE001 - the template refuses these messages: say why
        raise InvalidChatRequest(
            f"The chat template of {label} refused these messages: "
            f"{hide_source(str(exc), lm.source, name)}", param="messages") from None
    n = int(enc["input_ids"].shape[1])
    limit = context_length(lm)
    if limit is not None and n >= limit:
        raise InvalidChatRequest(
            f"The prompt has {n} tokens but the model {label} reads at most {limit}; "
            "shorten the messages.", param="messages")
    return {k: v.to(lm.device) for k, v in enc.items()}


def context_length(lm: LoadedModel) -> int | None:
    """The longest sequence (prompt and answer) the model takes, when its config says."""
    n = getattr(lm.model.config, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


class _StopFlag:
    """Read by the stopping criterion every token: a local flag, plus an outside signal polled at
    most every ``STOP_POLL_S`` (it may be a Redis lookup)."""

    def __init__(self, outside: Callable[[], bool] | None) -> None:
        self.event = threading.Event()
        self.outside = outside
        self.next_poll = time.monotonic() + STOP_POLL_S

    def is_set(self) -> bool:
        if self.event.is_set():
            return True
        if self.outside is not None and time.monotonic() >= self.next_poll:
            self.next_poll = time.monotonic() + STOP_POLL_S
            if self.outside():
                self.event.set()
        return self.event.is_set()


def run_local_chat(
    lm: LoadedModel,
    messages: list[Message],
    params: GenerationParams,
    tools: list[dict[str, Any]] | None = None,
    *,
    emit: Callable[[ChatPiece], None],
    should_stop: Callable[[], bool] | None = None,
    stop_flag: threading.Event | None = None,
    where: str = "in-process",
    name: str | None = None,
) -> Usage:
    """Generate in this thread, handing each text piece or tool call to ``emit`` as it is made.

    ``should_stop`` is polled about every 100 ms (so it may be slow); ``stop_flag`` is read every
    token. Returns the usage: tokens in/out, time to first token, tokens/s, why it ended.
    ``name``: the model's registered name, which errors use (never its folder).
    """
    import torch
    from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

    from backend.llm.constrained import logits_processor

    started = time.perf_counter()
    inputs = encode_chat(lm, messages, tools, name)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    limit = context_length(lm)
    budget = params.max_new_tokens if limit is None else \
        min(params.max_new_tokens, limit - prompt_tokens)
    grammar = logits_processor(lm, params, tools, budget)
    streamer = _PieceStreamer(lm.tokenizer, emit, params.stop, parse_tools=bool(tools),
                              forced_tool=bool(tools) and params.forced_tool is not None)
    flag = _StopFlag(should_stop)
    if stop_flag is not None:
        flag.event = stop_flag

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = streamer.stop_filter.hit or flag.is_set()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool,
                              device=input_ids.device)

    try:
        with torch.inference_mode():
            if params.seed is not None:
                # torch's RNG is per process: two seeded chats running at once on one worker
                # may still interleave draws; one at a time they repeat exactly.
                torch.manual_seed(params.seed)
            lm.model.generate(**inputs, **_generation_kwargs(lm, params, budget, bool(grammar)),
                              streamer=streamer, stopping_criteria=StoppingCriteriaList([_Stop()]),
                              logits_processor=LogitsProcessorList([grammar] if grammar else []))
    except LLMError:
        raise
    except Exception as exc:  # noqa: BLE001 - a readable line for the user, the trace in the log
        log.exception("generation with %s failed", lm.source)
        raise LLMError(f"Generation with {model_label(lm.source, name)} failed: "
                       f"{type(exc).__name__}: {hide_source(str(exc), lm.source, name)}") \
            from exc
    ended = time.perf_counter()
    n = streamer.n_tokens
    if flag.event.is_set():
        reason = "stopped"
    elif streamer.tool_calls:
        reason = "tool_calls"
    elif streamer.stop_filter.hit or n < budget:
        reason = "stop"
    else:
        reason = "length"
    first = streamer.first_token_at
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=n,
        ttft_ms=(first - started) * 1000 if first else None,
        tokens_per_s=n / (ended - started) if n and ended > started else None,
        total_ms=(ended - started) * 1000,
        finish_reason=reason,
        where=f"{where} ({lm.device}, {lm.dtype})",
    )


_END = object()


def generate_local(
    lm: LoadedModel,
    messages: list[Message],
    params: GenerationParams,
    tools: list[dict[str, Any]] | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    where: str = "in-process",
    name: str | None = None,
) -> Iterator[ChatEvent]:
    """:func:`run_local_chat` as an iterator: pieces as they are made, then one Usage. Generation
    runs in a helper thread; closing the iterator early stops it."""
    out: queue.Queue[Any] = queue.Queue()
    stop_flag = threading.Event()
    result: list[Usage] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(run_local_chat(lm, messages, params, tools, emit=out.put,
                                         should_stop=should_stop, stop_flag=stop_flag,
                                         where=where, name=name))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)
        finally:
            out.put(_END)

    thread = threading.Thread(target=run, name="generate", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not _END:
            yield item
    finally:
        stop_flag.set()  # no-op when generation already ended
        thread.join()
    if errors:
        raise errors[0]
    yield result[0]
