"""What a pre-training run is: one config dataclass (model shape and training settings), the
presets, and the estimates shown before launch (parameters, FLOPs per token, memory, time).

The model is a Hugging Face Llama (causal) or BERT (masked) so the result loads with the usual
``AutoModelForCausalLM`` / ``AutoModel`` classes everywhere else in the studio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

Objective = Literal["causal", "masked"]


@dataclass
class PretrainConfig:
    # model -----------------------------------------------------------------------------------
    objective: Objective = "causal"  # causal: Llama-style next token; masked: BERT-style MLM
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads (n_embd must be a multiple)
    n_embd: int = 128  # width of the residual stream
    block_size: int = 256  # context length in tokens
    vocab_size: int = 8000  # BPE vocabulary to train (ignored with a registered model's tokenizer)
    # training --------------------------------------------------------------------------------
    max_steps: int = 200  # optimizer steps
    batch_size: int = 8  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    learning_rate: float = 1e-3  # peak, reached after the warmup
    min_lr: float = 1e-4  # end of the cosine decay
    warmup_steps: int = 20  # linear warmup from 0
    weight_decay: float = 0.1  # AdamW, on matrices only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the global gradient norm (0: off)
    dropout: float = 0.0
    mask_prob: float = 0.15  # masked objective: share of tokens to predict
    eval_interval: int = 50  # steps between held-out evaluations (and at the start and end)
    eval_batches: int = 8  # micro-batches per evaluation
    sample_interval: int = 100  # steps between sample generations / filled masks (0: off)
    checkpoint_interval: int = 100  # steps between checkpoints (and at the end, and on cancel)
    seed: int = 1337
    # hardware --------------------------------------------------------------------------------
    device: str = "auto"  # auto: cuda when present
    dtype: str = "auto"  # auto: bfloat16 autocast on GPUs that support it, float32 otherwise
    compile: bool = False  # torch.compile the model (GPU; slower start, faster steps)

    def validate(self) -> None:
        """Every cross-field check, with what to change."""
        if self.objective not in ("causal", "masked"):
            raise ValueError("The objective must be 'causal' or 'masked'.")
        for name in ("n_layer", "n_head", "n_embd", "block_size", "max_steps", "batch_size",
                     "grad_accum", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1.")
        if self.n_embd % self.n_head:
            raise ValueError(f"The width ({self.n_embd}) must be a multiple of the number of "
                             f"heads ({self.n_head}).")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("The width per head (width / heads) must be even (rotary positions).")
        if not 300 <= self.vocab_size <= 200_000:
            raise ValueError("The vocabulary size must be between 300 and 200000.")
        if not 0 < self.learning_rate < 1 or not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError("The learning rate must be in (0, 1) and the minimum at most it.")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError("The warmup must be shorter than the run (warmup_steps < max_steps).")
        if not 0 < self.mask_prob < 1:
            raise ValueError("mask_prob must be between 0 and 1 (e.g. 0.15).")
        if self.eval_interval < 1 or self.checkpoint_interval < 1 or self.sample_interval < 0:
            raise ValueError("eval_interval and checkpoint_interval must be at least 1.")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError("dtype must be auto, float32, bfloat16 or float16.")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.block_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(unknown)}.")
        return cls(**d)


# The presets: shape only; the parameter count depends a little on the vocabulary.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=256, vocab_size=8000,
                 batch_size=8, learning_rate=1e-3, min_lr=1e-4),  # ~2M
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=512, vocab_size=16000,
                  batch_size=16, learning_rate=6e-4, min_lr=6e-5),  # ~20M
    "base": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=32000,
                 batch_size=16, grad_accum=4, learning_rate=6e-4, min_lr=6e-5),  # ~125M
    "medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, vocab_size=32000,
                   batch_size=8, grad_accum=8, learning_rate=3e-4, min_lr=3e-5),  # ~350M
}


def preset_config(preset: str, **overrides: Any) -> PretrainConfig:
    if preset not in PRESETS and preset != "custom":
        raise ValueError(f"Unknown preset {preset!r}: use {', '.join(PRESETS)} or custom.")
    cfg = replace(PretrainConfig(), **PRESETS.get(preset, {}))
    given = {k: v for k, v in overrides.items() if v is not None}
    if "max_steps" in given and "warmup_steps" not in given:  # a tenth of a short run
        given["warmup_steps"] = min(cfg.warmup_steps, int(given["max_steps"]) // 10)
    return replace(cfg, **given)


def intermediate_size(cfg: PretrainConfig) -> int:
    """MLP width: Llama's 8/3 x width rounded up to a multiple of 64 (SwiGLU has 3 matrices);
    BERT's 4 x width."""
    if cfg.objective == "masked":
        return 4 * cfg.n_embd
    return ((8 * cfg.n_embd // 3) + 63) // 64 * 64


def hf_config(cfg: PretrainConfig, *, vocab_size: int, special: dict[str, int | None]) -> Any:
    """The transformers config for this shape (LlamaConfig or BertConfig)."""
    if cfg.objective == "masked":
        from transformers import BertConfig

        return BertConfig(
            vocab_size=vocab_size, hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head, intermediate_size=intermediate_size(cfg),
            max_position_embeddings=cfg.block_size, hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout, pad_token_id=special.get("pad"),
        )
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.n_embd, intermediate_size=intermediate_size(cfg),
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head, max_position_embeddings=cfg.block_size,
        tie_word_embeddings=True, attention_dropout=cfg.dropout,
        bos_token_id=special.get("bos"), eos_token_id=special.get("eos"),
        pad_token_id=special.get("pad"),
    )


# --- estimates --------------------------------------------------------------------------------

# Peak dense bf16 tensor FLOP/s of common accelerators (no sparsity), for MFU and time.
PEAK_FLOPS: dict[str, float] = {
    "H200": 989e12, "H100": 989e12, "H800": 989e12, "GH200": 989e12, "A100": 312e12,
    "A800": 312e12, "L40S": 362e12, "L40": 181e12, "A10G": 70e12, "A10": 125e12,
    "L4": 121e12, "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12,
    "B200": 2250e12,
}
CPU_FLOPS = 50e9  # a rough per-machine figure for small matmuls on a few cores
ASSUMED_MFU = {"gpu": 0.35, "cpu": 0.3}
GPU_MEMORY_GB: dict[str, float] = {
    "H200": 141, "H100": 80, "H800": 80, "GH200": 96, "A100": 80, "A800": 80, "L40S": 48,
    "L40": 48, "A10G": 24, "A10": 24, "L4": 24, "RTX 4090": 24, "RTX 3090": 24, "V100": 32,
    "T4": 16, "B200": 192,
}


def peak_flops_for(device_name: str) -> float | None:
    """Peak bf16 FLOP/s for a GPU name such as 'NVIDIA H100 80GB HBM3', or None if unknown."""
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_FLOPS[key]
    return None


@dataclass
class Estimate:
    parameters: int
    non_embedding_parameters: int
    flops_per_token: float  # training: forward + backward
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float
    tokens: int
    hardware: str
    seconds: float | None
    fits: bool | None
    # each warning: {"template": English sentence with {named} values, "args": {...}, "text": filled}
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_parameters(cfg: PretrainConfig, vocab_size: int | None = None) -> tuple[int, int]:
    """(all, non-embedding) parameters of the model this config builds, computed in the open."""
    v, d, L, m = vocab_size or cfg.vocab_size, cfg.n_embd, cfg.n_layer, intermediate_size(cfg)
    if cfg.objective == "masked":
        per_layer = 4 * (d * d + d) + 2 * d * m + m + d + 2 * 2 * d  # attn + mlp + 2 layernorms
        embeddings = v * d + cfg.block_size * d + 2 * d + 2 * d  # word, position, type, norm
        head = d * d + d + 2 * d + v  # MLM transform + norm + decoder bias (weights tied)
        body = L * per_layer + head
        return embeddings + body, body
    per_layer = 4 * d * d + 3 * d * m + 2 * d  # q k v o, gate up down, two RMSNorms
    body = L * per_layer + d  # final norm; the output head is tied to the embedding
    return v * d + body, body


def flops_per_token(cfg: PretrainConfig, vocab_size: int | None = None) -> float:
    """Training FLOPs per token: 6 N (forward 2N + backward 4N, N including the output
    projection) + 12 L d T for attention scores (PaLM appendix B; nanoGPT's estimate_mfu)."""
    total, body = count_parameters(cfg, vocab_size)
    v = vocab_size or cfg.vocab_size
    n = body + v * cfg.n_embd  # the output layer's matmul counts even when tied
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def estimate(cfg: PretrainConfig, *, vocab_size: int | None = None,
             devices: list[str] | None = None) -> Estimate:
    """Memory and time for the run on the workers' hardware (``devices``: the device strings
    workers report, e.g. 'cuda: NVIDIA H100 80GB HBM3' or 'cpu')."""
    v = vocab_size or cfg.vocab_size
    total, body = count_parameters(cfg, v)
    fpt = flops_per_token(cfg, v)
    gpu_names = [name.strip() for d in (devices or []) if d.startswith("cuda")
                 for name in d.split(":", 1)[1].split(",")]
    on_gpu = bool(gpu_names)
    cpu_only = bool(devices) and not on_gpu  # no worker yet: count as the GPU it will need
    act_bytes = 4 if cpu_only else 2
    gb = 1024**3
    weights = total * 4 / gb  # fp32 master weights
    grads = total * 4 / gb
    optimizer = total * 8 / gb  # AdamW: two fp32 moments
    tokens_micro = cfg.batch_size * cfg.block_size
    # per layer per token ~34 d values saved for backward with fused (flash) attention
    # (Korthikanti et al. 2022), plus the logits and their gradient in fp32
    attention_scores = 5 * cfg.n_head * cfg.block_size if cpu_only else 0  # unfused on CPU
    activations = (tokens_micro * cfg.n_layer * (34 * cfg.n_embd + attention_scores) * act_bytes
                   + tokens_micro * v * 4 * 2) / gb
    need = weights + grads + optimizer + activations
    tokens = cfg.max_steps * cfg.tokens_per_step
    warnings: list[dict[str, Any]] = []

    def warn(template: str, **args: Any) -> None:
        warnings.append({"template": template, "args": args, "text": template.format(**args)})

    seconds: float | None = None
    fits: bool | None = None
    if on_gpu:
        peak = peak_flops_for(gpu_names[0])
        mem = next((GPU_MEMORY_GB[k] for k in sorted(GPU_MEMORY_GB, key=len, reverse=True)
                    if k.lower() in gpu_names[0].lower()), None)
        hardware = f"{len(gpu_names)} x {gpu_names[0]}"
        if peak:
            seconds = tokens * fpt / (peak * ASSUMED_MFU["gpu"] * len(gpu_names))
        if mem is not None:
            fits = need <= mem * 0.9
            if not fits:
                warn("Needs about {need} GB per GPU but a {gpu} has {have} GB: lower the batch "
                     "size (and raise gradient accumulation) or the context.",
                     need=f"{need:.1f}", gpu=gpu_names[0], have=f"{mem:g}")
    elif devices:
        hardware = "cpu"
        seconds = tokens * fpt / (CPU_FLOPS * ASSUMED_MFU["cpu"])
        import psutil

        mem_gb = psutil.virtual_memory().total / gb
        fits = need <= mem_gb * 0.7
        if not fits:
            warn("Needs about {need} GB of memory; this machine has {have} GB.",
                 need=f"{need:.1f}", have=f"{mem_gb:.0f}")
        if total > 50e6:
            warn("No worker has a GPU: a model this size trains very slowly on CPU.")
    else:
        hardware = "none"
        warn("No worker serves the gpu queue: start one (`studio worker --queues gpu`) before "
             "launching.")
    return Estimate(
        parameters=total, non_embedding_parameters=body, flops_per_token=fpt,
        weights_gb=round(weights, 4), gradients_gb=round(grads, 4),
        optimizer_gb=round(optimizer, 4), activations_gb=round(activations, 4),
        total_gb=round(need, 4), tokens=tokens, hardware=hardware,
        seconds=round(seconds, 1) if seconds is not None else None, fits=fits,
        warnings=warnings,
    )
