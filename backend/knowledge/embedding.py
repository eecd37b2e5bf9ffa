"""The bundled MiniLM for knowledge bases.

On CPU an ONNX export of the same model (made once with ``torch.onnx.export``, cached under the
data folder, never downloaded) runs with onnxruntime, mean-pooled and normalised in numpy: the
same vectors as sentence-transformers (cosine > 0.9999), faster. Where the export cannot be made
or onnxruntime is missing, the sentence-transformers model serves.

``embedding_backend="onnx-int8"`` quantizes the export's weight matrices to int8 (per channel;
activations stay dynamic): about 1.7x the speed on CPUs with VNNI, vectors within cosine ~0.99 of
the float ones, but retrieval a little worse (vector-only MRR@10 0.798 against 0.818 on the
python-docs questions), so it is not the default. Use it for a whole deployment, not back and
forth: an index keeps the vectors it was built with.
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

INT8_PROBE = ["How do I read a file line by line?", "检查向量是否一致。",
              "The quick brown fox jumps over the lazy dog, twice, in the rain."]

_lock = threading.Lock()
_cached: Any = None


class OnnxMiniLM:
    """all-MiniLM-L6-v2 through onnxruntime: tokenise (fast tokenizer), run, mean-pool,
    normalise. Texts are sorted by length and batched so padding costs little."""

    def __init__(self, model_dir: Path, onnx_path: Path, *, threads: int = 1,
                 batch_size: int = 64) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.max_len = int(cfg.get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts,
                                            providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def dimension(self) -> int:
        return 384

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
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feed)[0]
            m: np.ndarray = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.clip(norms, 1e-12, None)
        return out


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


def _onnx_embedder() -> OnnxMiniLM | None:
    from backend.config import get_settings
    from backend.llm.embeddings import LocalEmbedder, default_model_path

    s = get_settings()
    if s.inference_device == "cuda" or s.embedding_backend == "torch":
        return None
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
        if s.embedding_backend == "onnx-int8":
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


def bundled_embedder() -> Any:
    """The embedder for indexes built with the bundled all-MiniLM-L6-v2."""
    global _cached
    with _lock:
        if _cached is None:
            from backend.config import get_settings
            from backend.llm.embeddings import LocalEmbedder

            s = get_settings()
            _cached = _onnx_embedder() or LocalEmbedder(
                None, batch_size=s.embedding_batch_size, device_preference=s.inference_device)
        return _cached
