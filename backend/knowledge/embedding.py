"""The bundled MiniLM for knowledge bases.

On CPUs that compute bfloat16 natively (AVX512-BF16, AMX-BF16; ``embedding_backend="auto"``
or ``"bf16"``) the transformer runs in torch with its matrix products in bfloat16: about twice
the speed of float32, vectors within cosine 0.9999 of the float ones (measured on the
python-docs chunks: minimum 0.99997; the same python-docs questions rank the same). That is as
close as two float32 runtimes are to each other, so an index built with float32 vectors keeps
working with bfloat16 ones and back (the bench's retrieval check compares them).

Elsewhere an ONNX export of the same model (made once with ``torch.onnx.export``, cached under
the data folder, never downloaded) runs with onnxruntime, mean-pooled and normalised in numpy:
the same vectors as sentence-transformers (cosine > 0.9999), faster. Where the export cannot be
made or onnxruntime is missing, the sentence-transformers model serves.

``embedding_backend="onnx-int8"`` quantizes the export's weight matrices to int8 (per channel;
activations stay dynamic): about 1.7x the speed on CPUs with VNNI, vectors within cosine ~0.99 of
the float ones, but retrieval a little worse (vector-only MRR@10 0.798 against 0.818 on the
python-docs questions), so it is not the default. An index records which of the two kinds of
vectors it was built with (``kb_indexes.vectors``: ``float`` or ``int8``) and keeps embedding its
chunks and questions with that kind when the setting changes (``bundled_embedder(variant)``);
a re-index moves it to the current one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ONNX_NAME = "all-MiniLM-L6-v2"
EXPORT_VERSION = "1"

# bfloat16 vectors must stay this close to the float32 ones (measured: >= 0.99997 on the
# python-docs chunks), so an index built with either keeps working with the other
BF16_MIN_COSINE = 0.9999
PROBE = ["How do I read a file line by line?", "Ein zweiter, längerer Satz zur Prüfung der "
         "Vektoren, mit Umlauten.", "检查向量是否一致。", "def f(x):\n    return {k: v for k, v in x}"]
INT8_PROBE = ["How do I read a file line by line?", "检查向量是否一致。",
              "The quick brown fox jumps over the lazy dog, twice, in the rain."]

_lock = threading.Lock()
_cached: Any = None
# the embedders of the kind of vectors the setting does not choose (for indexes built before it
# changed), by variant
_others: dict[str, Any] = {}
VARIANTS = ("float", "int8")


class PooledMiniLM:
    """all-MiniLM-L6-v2 run outside sentence-transformers: tokenise (fast tokenizer), run the
    transformer, mean-pool, normalise. Texts are sorted by length and batched so padding costs
    little. Subclasses run the transformer (``_hidden``)."""

    variant = ""

    def __init__(self, model_dir: Path, *, batch_size: int = 64) -> None:
        from tokenizers import Tokenizer

        self.name = "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.max_len = int(cfg.get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.no_padding()

    def dimension(self) -> int:
        return 384

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        encs = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encs], kind="stable")
        out: np.ndarray = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids: np.ndarray = np.zeros((len(idx), width), dtype=np.int64)
            mask: np.ndarray = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
            hidden = self._hidden(ids, mask)
            m: np.ndarray = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.clip(norms, 1e-12, None)
        return out


class OnnxMiniLM(PooledMiniLM):
    """The ONNX export run by onnxruntime (float32: the same vectors as sentence-transformers;
    or the int8 variant)."""

    def __init__(self, model_dir: Path, onnx_path: Path, *, threads: int = 1,
                 batch_size: int = 64) -> None:
        import onnxruntime as ort

        super().__init__(model_dir, batch_size=batch_size)
        self.variant = f"onnx-{'int8' if onnx_path.name.endswith('int8.onnx') else 'fp32'}" \
            f"-v{EXPORT_VERSION}"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts,
                                            providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return np.asarray(self.session.run(None, feed)[0])


class Bf16MiniLM(PooledMiniLM):
    """The transformer in torch with its matrix products in bfloat16 (``torch.autocast``;
    LayerNorm, softmax and the pooling stay float32). On CPUs with bfloat16 arithmetic
    (AVX512-BF16, AMX) oneDNN runs them about twice as fast as float32, and the vectors stay
    within cosine 0.9999 of the float ones (checked at load on probe texts). Threads: torch's
    (the worker's ``torch_threads``)."""

    variant = "torch-bf16"
    # a call with at most this many texts (a search's question) goes to the ONNX float32 export
    # when it can be had: for one short text it takes half the time and CPU of torch (7 against
    # 14 ms on one thread here), and it leaves the other core to the BM25 query hybrid search
    # runs meanwhile; the vectors agree within cosine 0.9999
    small_batch = 8

    def __init__(self, model_dir: Path, *, batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModel

        super().__init__(model_dir, batch_size=batch_size)
        self.model = AutoModel.from_pretrained(str(model_dir))
        self.model.eval()
        self._torch = torch
        self._bf16 = True
        self._small: Any = None  # the ONNX embedder for small calls; False: none to be had
        self._small_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if 0 < len(texts) <= self.small_batch:
            small = self._small_embedder()
            if small is not None:
                return np.asarray(small.embed(texts))
        return super().embed(texts)

    def _small_embedder(self) -> Any:
        if self._small is None:
            with self._small_lock:
                if self._small is None:
                    self._small = _onnx_embedder() or False
        return self._small or None

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self._bf16):
            hidden = self.model(input_ids=t_ids, attention_mask=t_mask,
                                token_type_ids=torch.zeros_like(t_ids)).last_hidden_state
        return np.asarray(hidden.float().numpy())

    def probe_cosine(self, texts: Sequence[str]) -> float:
        """Smallest cosine between this embedder's vectors for ``texts`` and the float32 ones
        of the same model (call before sharing the embedder between threads)."""
        got = PooledMiniLM.embed(self, texts)
        self._bf16 = False
        try:
            ref = PooledMiniLM.embed(self, texts)
        finally:
            self._bf16 = True
        return float(np.min(np.sum(ref * got, axis=1)))


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (x86 AVX512-BF16 or AMX-BF16,
    ARM BF16). Without it bfloat16 is emulated and slower than float32."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Export the MiniLM transformer to ONNX (opset 17), atomically."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir))
    model.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with torch.no_grad():
        torch.onnx.export(
            Wrapper(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"], opset_version=17, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                          "attention_mask": {0: "batch", 1: "seq"},
                          "token_type_ids": {0: "batch", 1: "seq"},
                          "last_hidden_state": {0: "batch", 1: "seq"}})
    os.replace(tmp, target)
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Weights of the MatMuls to int8, per output channel, atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"MatMulConstBOnly": True})
    os.replace(tmp, target)
    return target


def _onnx_embedder(int8: bool | None = None) -> OnnxMiniLM | None:
    """The ONNX export (``int8``: its int8 quantization; None: as the setting says)."""
    from backend.config import get_settings
    from backend.llm.embeddings import LocalEmbedder, default_model_path

    s = get_settings()
    if int8 is None:
        if s.inference_device == "cuda" or s.embedding_backend == "torch":
            return None
        int8 = s.embedding_backend == "onnx-int8"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    model_dir = Path(default_model_path())
    target = s.data_dir / "cache" / "onnx" / f"{ONNX_NAME}-v{EXPORT_VERSION}" / "model.onnx"
    try:
        if not target.exists():
            import fcntl

            target.parent.mkdir(parents=True, exist_ok=True)
            with (target.parent / "export.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not target.exists():
                    log.info("exporting %s to ONNX under %s (once)", ONNX_NAME, target)
                    export_onnx(model_dir, target)
                    # check the export against sentence-transformers before trusting it
                    probe = ["A short check sentence.", "Ein zweiter, längerer Satz zur "
                             "Prüfung der Vektoren, mit Umlauten.", "检查向量是否一致。"]
                    ref = LocalEmbedder(None, device_preference="cpu").embed(probe)
                    got = OnnxMiniLM(model_dir, target).embed(probe)
                    if float(np.min(np.sum(ref * got, axis=1))) < 0.999:
                        target.unlink(missing_ok=True)
                        raise RuntimeError("ONNX vectors differ from sentence-transformers")
        if int8:
            source, target = target, target.with_name("model.int8.onnx")
            if not target.exists():
                import fcntl

                with (target.parent / "export.lock").open("w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    if not target.exists():
                        quantize_int8(source, target)
                        ref = OnnxMiniLM(model_dir, source).embed(INT8_PROBE)
                        got = OnnxMiniLM(model_dir, target).embed(INT8_PROBE)
                        if float(np.min(np.sum(ref * got, axis=1))) < 0.97:
                            target.unlink(missing_ok=True)
                            raise RuntimeError("int8 vectors drift too far from float ones")
        return OnnxMiniLM(model_dir, target, threads=s.torch_threads,
                          batch_size=s.embedding_batch_size)
    except Exception:  # noqa: BLE001 - the torch path always works
        log.warning("ONNX embedder unavailable; using sentence-transformers", exc_info=True)
        return None


def _bf16_embedder() -> Bf16MiniLM | None:
    from backend.config import get_settings
    from backend.llm.embeddings import default_model_path

    s = get_settings()
    try:
        emb = Bf16MiniLM(Path(default_model_path()), batch_size=s.embedding_batch_size)
        cos = emb.probe_cosine(PROBE)
    except Exception:  # noqa: BLE001 - the float embedders always work
        log.warning("bfloat16 embedder unavailable; using float32", exc_info=True)
        return None
    if cos < BF16_MIN_COSINE:
        log.warning("bfloat16 vectors drift from float32 ones here (cosine %.5f); using float32",
                    cos)
        return None
    return emb


def bundled_variant() -> str:
    """The kind of vectors the setting makes: ``int8`` for ``onnx-int8``, else ``float`` (bf16,
    ONNX float32 and sentence-transformers give the same vectors)."""
    from backend.config import get_settings

    return "int8" if get_settings().embedding_backend == "onnx-int8" else "float"


def bundled_embedder(variant: str | None = None) -> Any:
    """The embedder for indexes built with the bundled all-MiniLM-L6-v2: on CPU, bfloat16 where
    the CPU computes it natively (``auto``) or when asked (``bf16``), else the ONNX float32
    export, else sentence-transformers. ``variant``: the kind of vectors an index was built
    with (``kb_indexes.vectors``; None: the setting's); another kind than the setting's gets
    its own embedder, so an index never mixes the two."""
    global _cached
    if variant in VARIANTS and variant != bundled_variant():
        return _other_embedder(variant)
    with _lock:
        if _cached is None:
            from backend.config import get_settings

            s = get_settings()
            emb: Any = None
            if s.inference_device != "cuda" and (
                    s.embedding_backend == "bf16"
                    or (s.embedding_backend == "auto" and native_bf16())):
                emb = _bf16_embedder()
            _cached = emb or _onnx_embedder() or _sentence_transformers()
        return _cached


def _other_embedder(variant: str) -> Any:
    with _lock:
        if variant not in _others:
            emb: Any = _onnx_embedder(int8=variant == "int8")
            if emb is None and variant == "float":
                emb = _sentence_transformers()
            if emb is None:
                raise RuntimeError(
                    "This knowledge base was built with int8 vectors (embedding_backend "
                    "onnx-int8), which need onnxruntime here. Install it, or re-index the base "
                    "to use the current embedder.")
            _others[variant] = emb
        return _others[variant]


def _sentence_transformers() -> Any:
    """The float model through sentence-transformers (where neither faster one can run)."""
    from backend.config import get_settings
    from backend.llm.embeddings import LocalEmbedder

    s = get_settings()
    return LocalEmbedder(None, batch_size=s.embedding_batch_size,
                         device_preference=s.inference_device)


def warm_up() -> None:
    """Load the bundled embedder and embed one question with it, as a search would: where the
    bfloat16 model serves batches this also makes (once per data folder) and loads the ONNX
    export that embeds questions, which took the first search a few seconds."""
    try:
        bundled_embedder().embed(["warm-up question"])
    except Exception:  # noqa: BLE001 - a search would meet (and report) the same error
        log.warning("could not warm up the embedder", exc_info=True)


def warm_up_in_background() -> threading.Thread:
    """``warm_up`` on a daemon thread (a worker's start is not held up by it)."""
    thread = threading.Thread(target=warm_up, daemon=True, name="embedder-warm-up")
    thread.start()
    return thread
