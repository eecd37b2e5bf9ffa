"""Pre-training throughput: the studio's loop against a minimal plain PyTorch loop.

Same corpus (CPython's reference topics from ``pydoc_data``, tokenised with a BPE trained on
them), same model (the Hugging Face Llama the studio builds), same batches, optimizer, schedule
and clipping. The studio loop is ``backend.training.pretrain.train`` with what it does for people
on every step (loss, learning rate and progress through a job context, tokens/s every 10 steps);
its held-out evaluations, samples and checkpoints are timed apart and left out of its tokens/s,
as the plain loop has none. The plain loop is forward, loss, backward, clip, step. Rounds
alternate between the two and the median of each round's ratio is reported:

- throughput_ratio: studio tokens/s / plain tokens/s (median of paired rounds)
- mfu: model FLOPs utilisation of the studio loop on a GPU (null on CPU)

Run: ``.venv/bin/python bench/pretrain.py [--preset tiny] [--steps 60] [--rounds 5]``; on a GPU
``--preset base --compile`` measures the ~125M preset. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepare(folder: Path, vocab: int) -> tuple[Path, Any]:
    from pydoc_data.topics import topics

    from backend.training.corpus import build_corpus
    from backend.training.pretrain_data import prepare_token_files, train_bpe_tokenizer

    src = folder / "src"
    src.mkdir(parents=True)
    for name, text in topics.items():
        (src / f"{name}.txt").write_text(text, encoding="utf-8")
    build_corpus([src], folder / "corpus", heldout_fraction=0.1)
    tok_dir = train_bpe_tokenizer(folder / "corpus", vocab)
    return tok_dir, prepare_token_files(folder / "corpus", tok_dir)


def plain_loop(cfg: Any, tok_dir: Path, files: Any) -> float:
    """The baseline: the same model and batches in the shortest loop that trains. Tokens/s."""
    import torch
    import torch.nn.functional as F

    from backend.training.pretrain import (
        Batches,
        build_model,
        configure_optimizer,
        get_lr,
        prepare_tokenizer,
        setup_runtime,
    )
    from backend.training.pretrain_data import token_memmap

    rt = setup_runtime(cfg)
    tok = prepare_tokenizer(tok_dir, cfg.objective)
    model = build_model(cfg, tok).to(rt.device)
    if cfg.compile and rt.device_type == "cuda":
        model = torch.compile(model)
    opt = configure_optimizer(model, cfg, rt.device_type)
    data = Batches(token_memmap(files.train, files.dtype), cfg.block_size, cfg.batch_size, cfg.seed)
    model.train()
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        for g in opt.param_groups:
            g["lr"] = get_lr(step, cfg)
        for micro in range(cfg.grad_accum):
            x, y = data.get(step, micro)
            x, y = x.to(rt.device), y.to(rt.device)
            with rt.autocast:
                logits = model(input_ids=x).logits
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
            (loss / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if rt.device_type == "cuda":
        torch.cuda.synchronize()
    return cfg.max_steps * cfg.tokens_per_step / (time.perf_counter() - start)


def studio_loop(cfg: Any, tok_dir: Path, files: Any, run: Path) -> tuple[float, float | None, float]:
    from backend.jobs.context import LocalContext
    from backend.training.pretrain import train

    ctx = LocalContext(run_dir=run / "run")
    result = train(cfg, tokens=files, tokenizer_dir=tok_dir, out_dir=run / "model", ctx=ctx)
    return result.tokens_per_second, result.mfu, result.final_eval_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    args = parser.parse_args()

    import torch

    from backend.training.pretrain_config import estimate, preset_config

    torch.set_num_threads(args.threads)
    cfg = preset_config(args.preset, max_steps=args.steps, vocab_size=args.vocab_size,
                        block_size=args.block_size, batch_size=args.batch_size,
                        compile=args.compile, eval_interval=10**9, sample_interval=0,
                        checkpoint_interval=10**9)
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        tok_dir, files = prepare(folder, args.vocab_size)
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        params = estimate(cfg, vocab_size=args.vocab_size, devices=["cpu"]).parameters
        print(f"corpus: {files.train_tokens:,} training tokens, prepared in "
              f"{time.perf_counter() - t0:.1f} s; model {args.preset}: {params:,} parameters, "
              f"{cfg.tokens_per_step:,} tokens/step, {args.steps} steps on {device}")
        ratios, studio, plain, mfus = [], [], [], []
        for r in range(args.rounds):
            p = plain_loop(cfg, tok_dir, files)
            s, mfu, final = studio_loop(cfg, tok_dir, files, folder / f"r{r}")
            ratios.append(s / p)
            studio.append(s)
            plain.append(p)
            if mfu is not None:
                mfus.append(mfu)
            print(f"round {r + 1}: studio {s:,.0f} tokens/s, plain {p:,.0f} tokens/s, ratio "
                  f"{s / p:.3f}, held-out loss at the end {final:.3f}"
                  + (f", MFU {mfu:.1%}" if mfu is not None else ""))
    figures = {
        "throughput_ratio": round(statistics.median(ratios), 3),
        "mfu": round(statistics.median(mfus), 4) if mfus else None,
        "studio_tokens_per_s": round(statistics.median(studio), 1),
        "plain_tokens_per_s": round(statistics.median(plain), 1),
        "preset": args.preset, "parameters": params, "steps": args.steps,
        "tokens_per_step": cfg.tokens_per_step, "device": device,
    }
    assert all(math.isfinite(v) for v in ratios)
    print(f"median: studio {figures['studio_tokens_per_s']:,} vs plain "
          f"{figures['plain_tokens_per_s']:,} tokens/s; ratio {figures['throughput_ratio']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
