"""Fine-tuning benchmark: the studio's LoRA fine-tune against a minimal plain peft +
transformers Trainer script on the same model, data and settings; and packing on data of
varied length.

Each run goes in a subprocess of its own (so peak memory is that run's): tokens/s counts real
(non-padding) tokens over the time of ``trainer.train()``; peak memory is the process's peak
RSS on CPU, ``torch.cuda.max_memory_allocated`` on a GPU. The three configurations run in
turn, ``--repeat`` rounds; each ratio is the median of the rounds' ratios (runs next to each other
see the same load on a shared machine).

    python bench/finetune.py [--examples 256] [--repeat 2] [--gpu-model]

On a GPU, ``--gpu-model`` (default when CUDA is present) also measures a ~0.5B-parameter
Qwen2-shaped model with random weights. The last line is
``{"throughput_ratio": ..., "peak_mem_ratio": ..., "packing_speedup": ...}``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT = ("the model learns answers from examples and a team writes them down so that every "
        "question about the studio gets a short correct and kind reply")
WORDS = TEXT.split()


def make_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Questions with answers of varied length (5 to 150 words)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 150)))
        out.append({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": a}]})
    return out


SETTINGS = dict(epochs=1, batch_size=8, max_length=256, lora_rank=16, learning_rate=1e-3,
                val_fraction=0.0, samples=0, merge=False, seed=0, warmup_ratio=0.0)


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_studio(model_dir: Path, records: list[dict[str, Any]], packing: bool) -> dict[str, Any]:
    from backend.jobs.context import LocalContext
    from backend.training.finetune import FinetuneInputs, run_finetune
    from backend.training.finetune_config import FinetuneConfig

    cfg = FinetuneConfig(**SETTINGS, packing=packing)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = LocalContext(run_dir=Path(tmp) / "run")
        res = run_finetune(ctx, FinetuneInputs(model_dir, records, [], cfg, Path(tmp) / "out"))
    return {"seconds": res["train_seconds"], "tokens": res["tokens_seen"], "steps": res["steps"]}


def run_plain(model_dir: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The minimal script a person would write: peft + Trainer, answers-only labels."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from backend.training.finetune_data import encode_chat

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.bfloat16 if cuda else torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], modules_to_save=["norm"]))
    rows = []
    for r in records:
        enc = encode_chat(tok, r["messages"], 256)
        rows.append({"input_ids": enc.input_ids, "labels": enc.labels})

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (torch.tensor(b["input_ids"]),
                                                      torch.tensor(b["labels"]), 1)
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, num_train_epochs=1, per_device_train_batch_size=8,
                                 learning_rate=1e-3, lr_scheduler_type="cosine", seed=0,
                                 report_to=[], save_strategy="no", logging_steps=10,
                                 use_cpu=not cuda, bf16=cuda, disable_tqdm=True,
                                 remove_unused_columns=False)
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          data_collator=collate)
        start = time.monotonic()
        out = trainer.train()
        seconds = time.monotonic() - start
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"seconds": seconds, "tokens": tokens, "steps": out.global_step}


def child(which: str, model_dir: Path, n: int) -> None:
    import torch

    from backend.training.finetune import _torch_setup

    _torch_setup()
    torch.set_num_threads(int(__import__("os").environ.get("BENCH_THREADS", "1")))
    records = make_records(n)
    res = (run_plain(model_dir, records) if which == "plain"
           else run_studio(model_dir, records, packing=which == "packed"))
    res["peak_mb"] = peak_memory_mb()
    res["tokens_per_s"] = res["tokens"] / res["seconds"]
    print(json.dumps(res))


def measure(which: str, model_dir: Path, n: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", which, "--model",
                          str(model_dir), "--examples", str(n)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {which:<7} {res['tokens_per_s']:8.0f} tokens/s  {res['steps']:4d} steps  "
          f"{res['seconds']:6.1f} s  peak {res['peak_mb']:7.0f} MiB", flush=True)
    return res


def build_gpu_model(folder: Path) -> Path:
    """A ~0.5B-parameter Qwen2-shaped model with random weights and the tiny tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from backend.llm.tiny import build_tokenizer

    tok = build_tokenizer(folder, vocab_size=4096)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=1024, intermediate_size=4864,
                      num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(str(folder))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--model")
    ap.add_argument("--gpu-model", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.model), args.examples)
        return
    import torch

    from backend.llm.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny", seed=0)
        print(f"tiny Llama, {args.examples} examples of varied length, 1 epoch, batch 8, "
              f"max length 256, LoRA r16 ({'cuda' if torch.cuda.is_available() else 'cpu'}):")
        rounds = []
        for r in range(args.repeat):
            print(f" round {r + 1}:", flush=True)
            rounds.append({w: measure(w, model_dir, args.examples)
                           for w in ("plain", "studio", "packed")})

        def median(key: str, a: str, b: str) -> float:
            return round(statistics.median(x[a][key] / x[b][key] for x in rounds), 3)

        figures: dict[str, Any] = {
            "throughput_ratio": median("tokens_per_s", "studio", "plain"),
            "peak_mem_ratio": median("peak_mb", "studio", "plain"),
            "packing_speedup": median("tokens_per_s", "packed", "studio"),
            "studio_tokens_per_s": round(statistics.median(
                x["studio"]["tokens_per_s"] for x in rounds)),
            "plain_tokens_per_s": round(statistics.median(
                x["plain"]["tokens_per_s"] for x in rounds)),
        }
        if torch.cuda.is_available() or args.gpu_model:
            big = build_gpu_model(Path(tmp) / "qwen2-0.5b")
            print("~0.5B Qwen2-shaped model, random weights:")
            gpu = measure("studio", big, args.examples)
            figures["gpu_0_5b_tokens_per_s"] = round(gpu["tokens_per_s"])
            figures["gpu_0_5b_peak_mem_mb"] = round(gpu["peak_mb"])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
