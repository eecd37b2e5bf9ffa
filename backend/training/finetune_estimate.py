"""What a model folder is (size, architecture, context, chat template) and what a fine-tune of
it will need (memory, time) on a given device. Reads config and file headers only: no weights.

The estimate is deliberately simple and in the open:
- weights: parameters x bytes per weight (fp32 on CPU, bf16 on GPU, ~0.55 byte for 4-bit);
- trainable: every weight for full fine-tuning, else the adapter (rank x (in + out) per target);
- gradients + AdamW state: 4 + 8 bytes per trainable parameter (+ a fp32 master copy for full);
- activations: batch x length x hidden x layers x ~34 bytes (x 0.5 with 16-bit activations);
- time: 6 x parameters x tokens FLOPs at an assumed sustained rate for the device.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.training.finetune_config import LORA_TARGETS, FinetuneConfig

GIB = 2**30
# sustained training FLOP/s assumed per device family (about 35-40% of the bf16 peak)
GPU_FLOPS = {"H200": 350e12, "H100": 350e12, "A100": 110e12, "L40": 60e12, "A10": 40e12,
             "4090": 60e12, "3090": 25e12, "V100": 30e12, "T4": 10e12}
DEFAULT_GPU_FLOPS = 30e12
CPU_FLOPS_PER_THREAD = 2.5e10  # measured on the tiny Llama: ~2,000 tokens/s at 4.2M parameters


@dataclass
class ModelInfo:
    path: str
    architecture: str
    model_type: str
    parameters: int
    hidden_size: int
    layers: int
    context_length: int | None
    vocab_size: int | None
    chat_template: str | None
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _safetensors_parameters(folder: Path) -> tuple[int, int]:
    """(parameters, bytes) from the safetensors headers."""
    params = size = 0
    for f in folder.glob("*.safetensors"):
        size += f.stat().st_size
        with f.open("rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                params += count
    return params, size


def model_info(path: Path) -> ModelInfo:
    cfg = json.loads((path / "config.json").read_text())
    params, size = _safetensors_parameters(path)
    if not params:
        size = sum(f.stat().st_size for f in path.glob("*.bin"))
        params = size // 4
    template = None
    tc = path / "tokenizer_config.json"
    if (path / "chat_template.jinja").exists():
        template = (path / "chat_template.jinja").read_text()
    elif tc.exists():
        template = json.loads(tc.read_text()).get("chat_template")
    hidden = int(cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model") or 0)
    layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers") or 0)
    return ModelInfo(
        path=str(path), architecture=(cfg.get("architectures") or ["?"])[0],
        model_type=str(cfg.get("model_type", "")), parameters=params, hidden_size=hidden,
        layers=layers,
        context_length=cfg.get("max_position_embeddings") or cfg.get("n_positions"),
        vocab_size=cfg.get("vocab_size"), chat_template=template if isinstance(template, str)
        else None, size_bytes=size,
    )


@dataclass
class Estimate:
    device: str
    memory_gb: float
    available_gb: float | None
    fits: bool
    seconds: float
    trainable_parameters: int
    tokens: int
    warning: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flops_for(gpu_name: str) -> float:
    for key, flops in GPU_FLOPS.items():
        if key.lower() in gpu_name.lower():
            return flops
    return DEFAULT_GPU_FLOPS


def estimate(info: ModelInfo, config: FinetuneConfig, *, tokens_per_epoch: int,
             longest: int, gpus: list[dict[str, Any]], cpu_threads: int = 1) -> Estimate:
    """Memory and time of the run on the first GPU reported (or the CPU when none is)."""
    gpu = gpus[0] if gpus else None
    on_gpu = gpu is not None
    p = info.parameters
    weight_bytes = 0.55 if config.method == "qlora" else (2 if on_gpu else 4)
    if config.method == "full":
        trainable = p
    else:
        n_targets = len(config.targets_for(info.model_type)) or len(LORA_TARGETS["llama"])
        trainable = info.layers * n_targets * config.lora_rank * 2 * info.hidden_size
    optimizer = trainable * (12 + (4 if config.method == "full" and on_gpu else 0))
    seq = min(config.max_length, max(longest, 1))
    act_bytes = 34 * (0.5 if on_gpu else 1)
    if config.method == "qlora":
        act_bytes *= 0.3  # gradient checkpointing
    dpo = 2 if config.method == "dpo" else 1
    activations = config.batch_size * seq * info.hidden_size * max(info.layers, 1) * act_bytes * dpo
    memory = p * weight_bytes + optimizer + activations + 0.5 * GIB * on_gpu
    tokens = int(tokens_per_epoch * config.epochs)
    if config.max_steps:
        tokens = min(tokens, config.max_steps * config.batch_size * config.grad_accum * seq)
    flops = (_flops_for(str(gpu.get("name", ""))) if gpu else CPU_FLOPS_PER_THREAD * cpu_threads)
    seconds = 6 * p * tokens * dpo / flops
    available = None
    warning = None
    if gpu:
        total = float(gpu.get("memory_total_mb") or 0) / 1024
        used = float(gpu.get("memory_used_mb") or 0) / 1024
        available = max(0.0, total - used)
        if memory / GIB > available:
            warning = (f"This run needs about {memory / GIB:.1f} GiB of GPU memory but the "
                       f"worker's GPU has {available:.1f} GiB free: lower the batch size or the "
                       "maximum length, or use QLoRA.")
    elif p > 300_000_000:
        warning = ("No worker reports a GPU: this run would train on the CPU, which is far too "
                   "slow for a model this size. Start a worker on a GPU machine.")
    return Estimate(device=str(gpu.get("name")) if gpu else "cpu",
                    memory_gb=round(memory / GIB, 3),
                    available_gb=round(available, 1) if available is not None else None,
                    fits=warning is None or not on_gpu, seconds=round(seconds, 1),
                    trainable_parameters=int(trainable), tokens=tokens, warning=warning)
