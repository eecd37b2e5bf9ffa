"""The settings of a fine-tuning run: one dataclass, presets, and every cross-field check in one
place (``FinetuneConfig.checked``) raising ``ValueError`` with what to fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

METHODS = ("lora", "qlora", "full", "dpo")
SCHEDULES = ("cosine", "linear", "constant", "constant_with_warmup")

# Architecture (config.model_type) -> LoRA target modules that work well
LORA_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "bloom": ["query_key_value", "dense"],
    "falcon": ["query_key_value", "dense"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
# Layer norms trained in full beside the adapter: a few thousand weights that let small models
# shift their activations (measured: tiny models memorise answers only with them).
NORM_MODULES: dict[str, list[str]] = {
    "llama": ["norm"], "mistral": ["norm"], "qwen2": ["norm"], "qwen3": ["norm"],
    "gemma": ["norm"], "gemma2": ["norm"], "phi3": ["norm"],
}
SMALL_MODEL_PARAMS = 100_000_000


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "lora"  # lora | qlora (4-bit, CUDA) | full | dpo (preference pairs, with LoRA)
    epochs: float = 3.0  # passes over the training examples
    learning_rate: float | None = None  # None: 3e-3 below 100M parameters, 2e-4 above
    lr_schedule: str = "cosine"
    warmup_ratio: float = 0.03
    batch_size: int = 4  # examples per step per device
    grad_accum: int = 1  # steps whose gradients add up before one update
    max_length: int = 512  # tokens per example (longer ones are refused at validation)
    packing: bool = False  # several short examples in one row (no padding)
    answers_only: bool = True  # loss on answer tokens only (prompt tokens masked)
    seed: int = 42
    val_fraction: float = 0.1  # share held out for validation (0: none)
    weight_decay: float = 0.0
    lora_rank: int = 16
    lora_alpha: int | None = None  # None: 2 x rank
    lora_dropout: float = 0.0
    target_modules: list[str] | None = None  # None: per architecture (LORA_TARGETS)
    train_norms: bool = True  # train the layer norms beside the adapter
    dpo_beta: float = 0.1
    max_steps: int | None = None  # stop after this many updates (tests, quick checks)
    save_every: int | None = None  # updates between checkpoints; None: by time (save_every_s)
    save_every_s: float = 300.0  # a checkpoint at least this often (seconds); cancel saves too
    eval_every: int | None = None  # updates between validations; None: about 5 per run
    samples: int = 5  # validation prompts answered by the base and the tuned model
    sample_max_new_tokens: int = 64
    merge: bool = True  # also write the merged model (safetensors HF folder)
    extra: dict[str, Any] = field(default_factory=dict)

    # presets for people who don't want to choose
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FinetuneConfig:
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(f"Unknown preset {name!r}: use {', '.join(PRESETS)}.") from None
        return replace(base, **overrides).checked()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Unknown fine-tuning setting(s): {', '.join(unknown)}.")
        return cls(**data).checked()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    @property
    def uses_adapter(self) -> bool:
        return self.method in ("lora", "qlora", "dpo")

    def lr_for(self, parameters: int) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        if self.method == "full":
            return 1e-3 if parameters < SMALL_MODEL_PARAMS else 2e-5
        return 3e-3 if parameters < SMALL_MODEL_PARAMS else 2e-4

    def targets_for(self, model_type: str) -> list[str]:
        return list(self.target_modules or LORA_TARGETS.get(model_type, ["q_proj", "v_proj"]))

    def checked(self) -> FinetuneConfig:
        problems: list[str] = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)} (not {self.method!r})")
        if self.lr_schedule not in SCHEDULES:
            problems.append(f"the schedule must be one of {', '.join(SCHEDULES)}")
        if not 0 < self.epochs <= 10000:
            problems.append("epochs must be above 0 (and at most 10000)")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            problems.append("the learning rate must be between 0 and 1, e.g. 0.0002")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("the warm-up share must be at least 0 and below 1")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("batch size and gradient accumulation must be at least 1")
        if not 16 <= self.max_length <= 131072:
            problems.append("the maximum length must be between 16 and 131072 tokens")
        if not 0 <= self.val_fraction < 0.9:
            problems.append("the validation share must be at least 0 and below 0.9")
        if self.lora_rank < 1 or self.lora_rank > 1024:
            problems.append("the LoRA rank must be between 1 and 1024")
        if self.lora_alpha is not None and self.lora_alpha < 1:
            problems.append("LoRA alpha must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            problems.append("LoRA dropout must be at least 0 and below 1")
        if self.dpo_beta <= 0:
            problems.append("the DPO beta must be above 0")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max steps must be at least 1")
        if self.method == "dpo" and self.packing:
            problems.append("packing does not apply to DPO; turn it off")
        if self.method == "full" and self.target_modules:
            problems.append("target modules are for LoRA; full fine-tuning trains every weight")
        if problems:
            raise ValueError("Fine-tuning settings: " + "; ".join(problems) + ".")
        return self


PRESETS: dict[str, FinetuneConfig] = {
    # a first look: one pass, small adapter
    "quick": FinetuneConfig(epochs=1, lora_rank=8, batch_size=8, samples=3),
    # the usual choice
    "balanced": FinetuneConfig(epochs=3, lora_rank=16, batch_size=4),
    # more passes and a larger adapter, for when quality matters more than time
    "thorough": FinetuneConfig(epochs=5, lora_rank=64, batch_size=4, grad_accum=2,
                               lora_dropout=0.05, samples=10),
}


def qlora_available() -> tuple[bool, str]:
    """QLoRA needs CUDA and bitsandbytes; the reason when it cannot run here."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "QLoRA (4-bit) needs a CUDA GPU; this machine has none. Use LoRA."
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False, "QLoRA needs the bitsandbytes package (pip install '.[gpu]')."
    return True, ""
