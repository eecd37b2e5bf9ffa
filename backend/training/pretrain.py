"""Pre-training from scratch, as plainly as nanoGPT's ``train.py``.

    data   : memory-mapped token files (see pretrain_data); a batch is random windows of
             block_size + 1 tokens, drawn from a generator seeded by (seed, step, micro-batch),
             so the data position is the step and a resumed run sees what an unbroken one would
    model  : a Hugging Face Llama (causal) or BERT (masked), SDPA attention (flash on GPU)
    loop   : AdamW (decay on matrices only), linear warmup + cosine decay, gradient accumulation,
             gradient clipping, bf16 autocast on GPU, optional torch.compile
    report : loss, held-out loss and perplexity, learning rate, tokens/s and MFU (GPU) through
             the job context; samples (causal) or filled masks (masked) in the log
    save   : one checkpoint dict (model, optimizer, config, step, data position, best and
             initial held-out loss) under run_dir; the final model in Hugging Face format

Several GPUs: run this module under torchrun (:func:`launch_distributed` does it for the job);
each rank takes its share of the micro-batches and rank 0 reports and saves.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.context import JobCancelled, JobContext
from backend.training.pretrain_config import PretrainConfig, flops_per_token, hf_config, peak_flops_for
from backend.training.pretrain_data import TokenFiles, load_tokenizer, token_memmap

CHECKPOINT = "ckpt.pt"
MASK_TOKEN = "<mask>"


def get_lr(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_steps + 1)
    if step >= cfg.max_steps:
        return cfg.min_lr
    ratio = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


# --- data -------------------------------------------------------------------------------------

class Batches:
    """Windows of a token file. ``get(step, micro)`` is a pure function of its arguments."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int) -> None:
        self.tokens = tokens
        self.block_size = min(block_size, len(tokens) - 1)
        self.batch_size = batch_size
        self.seed = seed

    def get(self, step: int, micro: int) -> tuple[Any, Any]:
        import torch

        rng = np.random.default_rng([self.seed, step, micro])
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        chunk = np.stack([self.tokens[s:s + self.block_size + 1] for s in starts]).astype(np.int64)
        t = torch.from_numpy(chunk)
        return t[:, :-1], t[:, 1:]


def mask_tokens(x: Any, *, mask_id: int, vocab_size: int, prob: float, special_ids: list[int],
                seed: int) -> tuple[Any, Any]:
    """BERT's masking: of ``prob`` of the (non-special) tokens, 80% become the mask token, 10% a
    random token, 10% stay; only those are predicted (labels -100 elsewhere)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    labels = x.clone()
    chosen = torch.rand(x.shape, generator=g) < prob
    for sid in special_ids:
        chosen &= x != sid
    labels[~chosen] = -100
    inputs = x.clone()
    r = torch.rand(x.shape, generator=g)
    inputs[chosen & (r < 0.8)] = mask_id
    randomise = chosen & (r >= 0.8) & (r < 0.9)
    inputs[randomise] = torch.randint(vocab_size, x.shape, generator=g)[randomise]
    return inputs, labels


# --- model ------------------------------------------------------------------------------------

def special_ids(tok: Any) -> dict[str, int | None]:
    eos = tok.eos_token_id
    return {"pad": tok.pad_token_id if tok.pad_token_id is not None else eos,
            "bos": tok.bos_token_id, "eos": eos, "mask": tok.mask_token_id}


def prepare_tokenizer(tokenizer_dir: Path, objective: str) -> Any:
    """The tokenizer the model is saved with; a masked model gets a mask token if it lacks one."""
    tok = load_tokenizer(tokenizer_dir)
    if objective == "masked" and tok.mask_token_id is None:
        tok.add_special_tokens({"mask_token": MASK_TOKEN})
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(cfg: PretrainConfig, tok: Any) -> Any:
    import torch
    from transformers import BertForMaskedLM, LlamaForCausalLM

    config = hf_config(cfg, vocab_size=len(tok), special=special_ids(tok))
    torch.manual_seed(cfg.seed)
    cls = BertForMaskedLM if cfg.objective == "masked" else LlamaForCausalLM
    return cls._from_config(config, attn_implementation="sdpa")


def configure_optimizer(model: Any, cfg: PretrainConfig, device_type: str) -> Any:
    """AdamW; weight decay on the matrices (2-D and more), none on norms and biases."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = device_type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2),
                             fused=fused)


@dataclass
class Runtime:
    device: str
    device_type: str
    dtype: str
    autocast: Any
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    peak_flops: float | None = None
    device_name: str = "cpu"
    ddp: bool = False

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_runtime(cfg: PretrainConfig) -> Runtime:
    import torch

    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but this worker has no GPU.")
    if ddp:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if use_cuda and torch.cuda.is_bf16_supported() else "float32"
    if not use_cuda and dtype != "float32":
        dtype = "float32"  # CPU: autocast gains nothing here
    autocast: Any = (torch.autocast(device_type="cuda", dtype=getattr(torch, dtype))
                     if use_cuda and dtype != "float32" else contextlib.nullcontext())
    name = torch.cuda.get_device_name(local_rank) if use_cuda else "cpu"
    return Runtime(device=device, device_type="cuda" if use_cuda else "cpu", dtype=dtype,
                   autocast=autocast, rank=rank, world_size=world, local_rank=local_rank,
                   peak_flops=peak_flops_for(name) if use_cuda else None, device_name=name,
                   ddp=ddp)


def _stop_everywhere(ctx: JobContext, rt: Runtime) -> bool:
    """Should the run stop? With several processes, all of them agree (at the same step)."""
    stop = ctx.should_stop()
    if not rt.ddp:
        return stop
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0], device=rt.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


# --- checkpoints ------------------------------------------------------------------------------

def find_checkpoint(*dirs: Path | None) -> Path | None:
    for d in dirs:
        if d is not None and (d / CHECKPOINT).exists():
            return d / CHECKPOINT
    return None


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


# --- the run ----------------------------------------------------------------------------------

@dataclass
class RunResult:
    steps: int
    resumed_from: int
    tokens_seen: int
    initial_eval_loss: float
    final_eval_loss: float
    best_eval_loss: float
    parameters: int
    seconds: float  # the whole loop
    train_seconds: float  # without evaluations, samples and checkpoints
    tokens_per_second: float  # training tokens / train_seconds
    mfu: float | None
    model_dir: str
    samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _loss(model: Any, x: Any, y: Any, cfg: PretrainConfig, special: list[int], mask_id: int | None,
          vocab: int, seed: int) -> Any:
    import torch.nn.functional as F

    if cfg.objective == "masked":
        assert mask_id is not None
        inputs, labels = mask_tokens(x, mask_id=mask_id, vocab_size=vocab, prob=cfg.mask_prob,
                                     special_ids=special, seed=seed)
        inputs, labels = inputs.to(x.device), labels.to(x.device)
        logits = model(input_ids=inputs).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1),
                               ignore_index=-100)
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))


def train(cfg: PretrainConfig, *, tokens: TokenFiles, tokenizer_dir: Path, out_dir: Path,
          ctx: JobContext) -> RunResult:
    """Train (or resume) and save the model to ``out_dir``. Reports through ``ctx``."""
    import torch

    cfg.validate()
    rt = setup_runtime(cfg)
    tok = prepare_tokenizer(tokenizer_dir, cfg.objective)
    vocab = len(tok)
    ids = special_ids(tok)
    specials = [i for i in tok.all_special_ids if i is not None]
    train_tokens = token_memmap(tokens.train, tokens.dtype)
    val_tokens = token_memmap(tokens.val, tokens.dtype)
    if len(train_tokens) < cfg.block_size + 2:
        raise ValueError(
            f"The corpus has {len(train_tokens)} training tokens, fewer than one context of "
            f"{cfg.block_size}: add text or lower the context length.")
    if len(val_tokens) < 17:
        raise ValueError(f"The held-out set has only {len(val_tokens)} tokens: raise the "
                         "held-out fraction or add documents.")
    micro_per_rank = max(1, cfg.grad_accum // rt.world_size)
    train_batches = Batches(train_tokens, cfg.block_size, cfg.batch_size, cfg.seed)
    eval_batches = Batches(val_tokens, cfg.block_size, cfg.batch_size, cfg.seed + 1)

    model = build_model(cfg, tok).to(rt.device)
    optimizer = configure_optimizer(model, cfg, rt.device_type)
    scaler = torch.amp.GradScaler(enabled=rt.dtype == "float16")
    n_params = sum(p.numel() for p in model.parameters())

    start_step, best, initial, tokens_seen = 0, math.inf, math.nan, 0
    ckpt_path = find_checkpoint(ctx.resume_dir, ctx.run_dir)
    if ckpt_path is not None:
        checkpoint = torch.load(ckpt_path, map_location=rt.device, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step = int(checkpoint["step"])
        tokens_seen = int(checkpoint["data_position"]["tokens_seen"])
        best = float(checkpoint["best_val_loss"])
        initial = float(checkpoint["initial_eval_loss"])
        if rt.master:
            ctx.log(f"Resuming from step {start_step} ({tokens_seen:,} tokens seen, "
                    f"learning rate {get_lr(start_step, cfg):.3g})")
        del checkpoint
    raw_model = model
    if cfg.compile and rt.device_type == "cuda":
        model = torch.compile(model)
    if rt.ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[rt.local_rank])

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        losses = []
        for i in range(cfg.eval_batches):
            x, y = eval_batches.get(0, i)  # the same windows (and masks) every time
            x, y = x.to(rt.device), y.to(rt.device)
            with rt.autocast:
                losses.append(_loss(model, x, y, cfg, specials, ids["mask"], vocab,
                                    seed=cfg.seed + 7 + i).item())
        model.train()
        return float(np.mean(losses))

    def checkpoint_now(step: int) -> None:
        if not rt.master:
            return
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(ctx.run_dir / CHECKPOINT, {
            "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": cfg.to_dict(),
            "step": step,
            "data_position": {"step": step, "tokens_seen": tokens_seen, "seed": cfg.seed},
            "best_val_loss": best,
            "initial_eval_loss": initial,
            "tokenizer": str(tokenizer_dir),
        })

    def report_eval(step: int) -> float:
        nonlocal best, initial
        val = evaluate()
        if math.isnan(initial):
            initial = val
        best = min(best, val)
        if rt.master:
            ctx.metric("eval_loss", val, step)
            ctx.metric("perplexity", math.exp(min(val, 50.0)), step)
            ctx.log(f"step {step}: held-out loss {val:.4f} (perplexity {math.exp(min(val, 50)):.1f})")
        return val

    samples: list[str] = []
    if rt.master:
        ctx.log(f"{cfg.objective} model, {n_params:,} parameters, on {rt.device_name} "
                f"({rt.dtype}), {len(train_tokens):,} training tokens, "
                f"{cfg.tokens_per_step:,} tokens per step")
    if start_step == 0:
        report_eval(0)
    fpt = flops_per_token(cfg, vocab)
    started = time.perf_counter()
    window_t, window_tokens, window_paused, paused_total = time.perf_counter(), 0, 0.0, 0.0
    final_eval = math.nan
    tokens_per_s = 0.0
    model.train()
    step = start_step
    for step in range(start_step, cfg.max_steps):
        if _stop_everywhere(ctx, rt):
            checkpoint_now(step)
            ctx.check_cancelled()  # cancelled, or the worker shutting down (interrupted)
            raise JobCancelled()  # another rank was asked to stop
        lr = get_lr(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum: Any = 0.0
        for micro in range(micro_per_rank):
            index = micro * rt.world_size + rt.rank
            x, y = train_batches.get(step, index)
            x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
            sync = (not rt.ddp) or micro == micro_per_rank - 1
            with (contextlib.nullcontext() if sync else model.no_sync()), rt.autocast:
                loss = _loss(model, x, y, cfg, specials, ids["mask"], vocab,
                             seed=cfg.seed * 1_000_003 + step * 1009 + index) / micro_per_rank
            scaler.scale(loss).backward()
            loss_sum = loss_sum + loss.detach()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += cfg.tokens_per_step
        window_tokens += cfg.tokens_per_step
        done = step + 1
        if rt.master:
            ctx.metric("loss", float(loss_sum), done)
            ctx.metric("lr", lr, done)
            ctx.progress(done / cfg.max_steps, "step {step}/{total}", step=done,
                         total=cfg.max_steps)
        if done % 10 == 0 or done == cfg.max_steps:
            if rt.device_type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            tokens_per_s = window_tokens / max(now - window_t - window_paused, 1e-9)
            window_t, window_tokens, window_paused = now, 0, 0.0
            if rt.master:
                ctx.metric("tokens_per_s", tokens_per_s, done)
                if rt.peak_flops:
                    ctx.metric("mfu", fpt * tokens_per_s / (rt.peak_flops * rt.world_size), done)
        # evaluation, samples and checkpoints: timed apart from training
        pause = time.perf_counter()
        if done % cfg.eval_interval == 0 or done == cfg.max_steps:
            final_eval = report_eval(done)
        if rt.master and cfg.sample_interval and (done % cfg.sample_interval == 0
                                                  or done == cfg.max_steps):
            text = sample(raw_model, tok, cfg, rt, val_tokens)
            samples.append(text)
            ctx.log(f"sample at step {done}: {text}")
        if done % cfg.checkpoint_interval == 0 or done == cfg.max_steps:
            checkpoint_now(done)
        paused = time.perf_counter() - pause
        window_paused += paused
        paused_total += paused
    seconds = time.perf_counter() - started
    if math.isnan(final_eval):  # resumed at the very end
        final_eval = report_eval(cfg.max_steps)
    if rt.master:
        save_model(raw_model, tok, cfg, out_dir)
    if rt.ddp:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    trained_tokens = (cfg.max_steps - start_step) * cfg.tokens_per_step
    train_seconds = max(seconds - paused_total, 1e-9)
    throughput = trained_tokens / train_seconds
    mfu = fpt * throughput / (rt.peak_flops * rt.world_size) if rt.peak_flops else None
    return RunResult(
        steps=cfg.max_steps, resumed_from=start_step, tokens_seen=tokens_seen,
        initial_eval_loss=round(initial, 5), final_eval_loss=round(final_eval, 5),
        best_eval_loss=round(best, 5), parameters=n_params, seconds=round(seconds, 2),
        train_seconds=round(train_seconds, 2), tokens_per_second=round(throughput, 1),
        mfu=round(mfu, 4) if mfu is not None else None, model_dir=str(out_dir), samples=samples,
    )


def sample(model: Any, tok: Any, cfg: PretrainConfig, rt: Runtime, val_tokens: np.ndarray
           ) -> str:
    """A generation from the start of a held-out window (causal), or a held-out window with
    some tokens masked and the model's guesses in [brackets] (masked)."""
    import torch

    was_training = model.training
    model.eval()
    window = np.asarray(val_tokens[: min(len(val_tokens), 48)], dtype=np.int64)
    try:
        with torch.no_grad(), rt.autocast:
            if cfg.objective == "causal":
                prompt = torch.from_numpy(window[:8])[None].to(rt.device)
                torch.manual_seed(cfg.seed)
                out = model.generate(prompt, max_new_tokens=32, do_sample=True, top_k=20,
                                     temperature=0.8, pad_token_id=special_ids(tok)["pad"])
                return str(tok.decode(out[0].tolist(), skip_special_tokens=True))
            ids = torch.from_numpy(window[:24])[None].to(rt.device)
            positions = list(range(3, ids.size(1), 6))
            masked = ids.clone()
            masked[0, positions] = tok.mask_token_id
            guesses = model(input_ids=masked).logits[0, positions].argmax(-1).tolist()
            pieces = [tok.decode([t]) for t in ids[0].tolist()]
            for p, g in zip(positions, guesses, strict=True):
                pieces[p] = f"[{tok.decode([g]).strip() or '?'}]"
            return "".join(pieces)
    finally:
        model.train(was_training)


def save_model(model: Any, tok: Any, cfg: PretrainConfig, out_dir: Path) -> None:
    """A Hugging Face folder (safetensors + tokenizer); causal models get a generation config,
    masked ones the sentence-transformers files (mean pooling) so they load as embedders."""
    from transformers import GenerationConfig

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = special_ids(tok)
    if cfg.objective == "causal":
        eos = [i for i in (ids["eos"], tok.convert_tokens_to_ids("</s>")) if isinstance(i, int)]
        model.generation_config = GenerationConfig(
            bos_token_id=ids["bos"], eos_token_id=sorted(set(eos)), pad_token_id=ids["pad"])
    model.save_pretrained(str(tmp))
    tok.model_max_length = cfg.block_size
    tok.save_pretrained(str(tmp))
    if cfg.objective == "masked":
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
        ], indent=2))
        (tmp / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": cfg.block_size, "do_lower_case": False}))
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": cfg.n_embd, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }, indent=2))
    (tmp / "studio_pretrain.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)


# --- several GPUs: torchrun children report through a file the job relays ------------------------

class FileContext:
    """The job context of a torchrun child: rank 0 appends events to ``events.jsonl``; every rank
    stops when the parent creates ``stop``."""

    def __init__(self, run_dir: Path, resume_dir: Path | None) -> None:
        self.job_id: int | None = None
        self.run_dir = run_dir
        self.resume_dir = resume_dir
        self._events = run_dir / "events.jsonl"

    def _write(self, event: dict[str, Any]) -> None:
        if int(os.environ.get("RANK", "0")) == 0:
            with self._events.open("a") as f:
                f.write(json.dumps(event) + "\n")

    def progress(self, fraction: float, stage: str | None = None, **stage_args: Any) -> None:
        self._write({"progress": fraction, "stage": stage, "args": stage_args})

    def metric(self, name: str, value: float, step: int) -> None:
        self._write({"metric": name, "value": value, "step": step})

    def log(self, message: str, level: str = "INFO") -> None:
        self._write({"log": message, "level": level})

    def should_stop(self) -> bool:
        return (self.run_dir / "stop").exists()

    def check_cancelled(self) -> None:
        if self.should_stop():
            raise JobCancelled()


def launch_distributed(cfg: PretrainConfig, *, tokens: TokenFiles, tokenizer_dir: Path,
                       out_dir: Path, ctx: JobContext, nproc: int) -> RunResult:
    """Run :func:`train` on ``nproc`` GPUs with torchrun and relay what rank 0 reports."""
    import subprocess

    run_dir = ctx.run_dir
    spec = {"config": cfg.to_dict(), "tokens": tokens.to_dict(), "tokenizer": str(tokenizer_dir),
            "out_dir": str(out_dir), "run_dir": str(run_dir),
            "resume_dir": str(ctx.resume_dir) if ctx.resume_dir else None}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    events = run_dir / "events.jsonl"
    events.unlink(missing_ok=True)
    (run_dir / "stop").unlink(missing_ok=True)
    ctx.log(f"Training on {nproc} GPUs with torchrun")
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={nproc}", "-m", "backend.training.pretrain",
                             str(run_dir / "spec.json")])
    offset = 0

    def relay() -> None:
        nonlocal offset
        if not events.exists():
            return
        with events.open() as f:
            f.seek(offset)
            for line in f:
                if not line.endswith("\n"):
                    break
                offset += len(line.encode())
                e = json.loads(line)
                if "metric" in e:
                    ctx.metric(e["metric"], e["value"], e["step"])
                elif "log" in e:
                    ctx.log(e["log"], e["level"])
                elif "progress" in e:
                    ctx.progress(e["progress"], e["stage"], **(e["args"] or {}))

    while proc.poll() is None:
        time.sleep(1.0)
        relay()
        if ctx.should_stop():
            (run_dir / "stop").touch()
    relay()
    if (run_dir / "stop").exists():
        ctx.check_cancelled()
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with code {proc.returncode}; see the worker log.")
    return RunResult(**json.loads((run_dir / "result.json").read_text()))


def _distributed_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ctx = FileContext(Path(spec["run_dir"]),
                      Path(spec["resume_dir"]) if spec["resume_dir"] else None)
    result = train(PretrainConfig.from_dict(spec["config"]),
                   tokens=TokenFiles.from_dict(spec["tokens"]),
                   tokenizer_dir=Path(spec["tokenizer"]), out_dir=Path(spec["out_dir"]), ctx=ctx)
    if int(os.environ.get("RANK", "0")) == 0:
        (ctx.run_dir / "result.json").write_text(json.dumps(result.to_dict()))


if __name__ == "__main__":
    _distributed_main(sys.argv[1])
