"""Fine-tune a causal language model: a straight recipe (tokenizer → data → model → trainer →
evaluate → save), reporting through a ``JobContext``.

- SFT (``lora``, ``qlora``, ``full``) runs peft + transformers' ``Trainer`` on examples tokenized
  through the model's chat template, prompt tokens masked; packing puts several examples into
  one row (TRL's best-fit-decreasing packer, padding-free with per-example positions).
- DPO runs TRL's ``DPOTrainer`` with a LoRA adapter (the base, adapter off, is the reference).

Checkpoints go to ``ctx.run_dir/checkpoints``; a run given ``ctx.resume_dir`` continues from the
last checkpoint there at the same step and data position (the Trainer restores optimizer,
scheduler, RNG and skips the batches already seen). A cancel saves a checkpoint first.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs.context import JobContext
from backend.training.finetune_config import NORM_MODULES, FinetuneConfig, qlora_available
from backend.training.finetune_data import encode_chat, prompt_and_answer, prompt_ids
from backend.training.pace import Pace

CHECKPOINTS = "checkpoints"


@dataclass
class FinetuneInputs:
    base_path: Path
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    config: FinetuneConfig
    output_dir: Path  # the adapter and the merged model land here
    eval_records: list[dict[str, Any]] | None = None


def _torch_setup() -> Any:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()
    return torch


def device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def last_checkpoint(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    root = folder / CHECKPOINTS
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and
             (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def load_base(path: Path, config: FinetuneConfig) -> tuple[Any, Any]:
    torch = _torch_setup()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {}
    if config.method == "qlora":
        ok, why = qlora_available()
        if not ok:
            raise ValueError(why)
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    elif torch.cuda.is_available():
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model, tokenizer


def lora_config(model: Any, config: FinetuneConfig) -> Any:
    from peft import LoraConfig

    model_type = getattr(model.config, "model_type", "")
    return LoraConfig(
        r=config.lora_rank, lora_alpha=config.alpha, lora_dropout=config.lora_dropout,
        target_modules=config.targets_for(model_type), task_type="CAUSAL_LM",
        modules_to_save=NORM_MODULES.get(model_type) if config.train_norms else None,
    )


# --- generation and scoring ------------------------------------------------------------------

def generate(model: Any, tokenizer: Any, messages: Sequence[dict[str, str]],
             max_new_tokens: int = 64) -> str:
    """Greedy answer, as ``studio chat --temperature 0`` would give it."""
    import torch

    ids = torch.tensor([prompt_ids(tokenizer, messages)], device=model.device)
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) or tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id)
    return str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)).strip()


def answer_logprob(model: Any, tokenizer: Any, prompt: Sequence[dict[str, str]],
                   answer: str) -> float:
    """Sum of the log-probabilities of the answer's tokens after the prompt."""
    import torch

    enc = encode_chat(tokenizer, [*prompt, {"role": "assistant", "content": answer}])
    ids = torch.tensor([enc.input_ids], device=model.device)
    labels = torch.tensor([enc.labels], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != -100
    logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((logp * mask).sum())


def preference_margin(model: Any, tokenizer: Any, pairs: Sequence[dict[str, Any]]) -> float:
    """Mean of log p(chosen) - log p(rejected) over the pairs."""
    was_training = model.training
    model.eval()
    try:
        margins = [answer_logprob(model, tokenizer, p["prompt"], p["chosen"])
                   - answer_logprob(model, tokenizer, p["prompt"], p["rejected"]) for p in pairs]
    finally:
        model.train(was_training)
    return sum(margins) / max(1, len(margins))


def score(answers: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    """Exact match (after trimming) and contains (the expected answer appears in the answer)."""
    n = max(1, len(expected))
    exact = sum(a.strip() == e.strip() for a, e in zip(answers, expected, strict=True))
    contains = sum(e.strip().lower() in a.lower() for a, e in zip(answers, expected, strict=True))
    return {"exact_match": exact / n, "contains": contains / n, "count": len(expected)}


def answer_all(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]],
               max_new_tokens: int) -> list[str]:
    model.eval()
    return [generate(model, tokenizer, prompt_and_answer(r)[0], max_new_tokens) for r in records]


# --- reporting -----------------------------------------------------------------------------

def _reporting_callback(ctx: JobContext, save_every_s: float) -> Any:
    from transformers import TrainerCallback

    class Report(TrainerCallback):  # type: ignore[misc]
        """Loss, validation loss, learning rate, tokens/s and time left to the job; cancel.
        Tokens/s and time left come from a window of recent steps (``Pace``) and are reported
        once per training log, so their charts show the trend, not every step's jitter."""

        def __init__(self) -> None:
            self.pace = Pace()
            self.cancelled = False
            self.last_save = time.monotonic()
            self.reported_step = -1
            self.training = False
            self.last_step_end = time.monotonic()

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_save = time.monotonic()
            self.pace.step_begin(self.last_save)  # a step's time runs from here

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.training = True
            self.last_step_end = time.monotonic()
            self.pace.begin(self.last_step_end, state.global_step, _tokens_seen(state))
            self.pace.step_begin(self.last_step_end)
            if state.global_step:
                ctx.log(f"Resumed at step {state.global_step} of {state.max_steps}")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # a step's time: from the end of what came before it (the last step, its log,
            # evaluation or checkpoint) to its end, so its batch's loading counts, those not
            self.last_step_end = time.monotonic()
            self.pace.step_end(self.last_step_end, state.global_step, _tokens_seen(state))
            self.pace.step_begin(self.last_step_end)
            total = max(1, state.max_steps)
            ctx.progress(0.05 + 0.85 * state.global_step / total,
                         "training: step {step}/{total}", step=state.global_step, total=total)
            if _any_rank(time.monotonic() - self.last_save >= save_every_s):
                control.should_save = True  # a checkpoint every few minutes, whatever the steps
            if _any_rank(ctx.should_stop()):
                self.cancelled = True
                control.should_save = True
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.training = False

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.training:  # an evaluation between steps (it follows a step's end)
                now = time.monotonic()
                self.pace.evaluated(now - self.last_step_end)
                self.pace.step_begin(now)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            step = state.global_step
            if "loss" in logs:
                ctx.metric("train_loss", float(logs["loss"]), step)
            if "learning_rate" in logs:
                ctx.metric("learning_rate", float(logs["learning_rate"]), step)
            if "eval_loss" in logs:
                ctx.metric("val_loss", float(logs["eval_loss"]), step)
            if "rewards/margins" in logs:
                ctx.metric("reward_margin", float(logs["rewards/margins"]), step)
            if "loss" not in logs or step <= self.reported_step:
                return  # evaluation and end-of-run logs: no second point at the same step
            self.reported_step = step
            rate = self.pace.tokens_per_s()
            if rate is not None:
                ctx.metric("tokens_per_s", rate, step)
            left = self.pace.seconds_left(time.monotonic(), state.max_steps,
                                          _evals_left(args, step, state.max_steps))
            if left is not None:
                ctx.metric("eta_s", left, step)
            self.pace.step_begin(time.monotonic())  # writing the metrics is not training

    return Report()


def _evals_left(args: Any, step: int, max_steps: int) -> int:
    """Evaluations the trainer will still run between steps, by its evaluation settings; the
    one at ``step`` counts (the trainer logs a step's loss before it evaluates)."""
    strategy = getattr(args, "eval_strategy", "no")
    if str(getattr(strategy, "value", strategy)) != "steps" or not args.eval_steps:
        return 0
    every = args.eval_steps if args.eval_steps >= 1 else math.ceil(max_steps * args.eval_steps)
    every = max(1, int(every))
    return max(0, max_steps // every - (step - 1) // every)


def _tokens_seen(state: Any) -> int:
    return int(getattr(state, "num_input_tokens_seen", 0) or 0)


def _any_rank(flag: bool) -> bool:
    """Under data parallelism every process must stop at the same step: true if any says so."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0],
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _schedule_steps(n_rows: int, config: FinetuneConfig) -> int:
    per_epoch = max(1, math.ceil(n_rows / config.batch_size / config.grad_accum))
    return config.max_steps or max(1, math.ceil(per_epoch * config.epochs))


def _training_args(ctx: JobContext, config: FinetuneConfig, n_rows: int, parameters: int,
                   has_val: bool) -> dict[str, Any]:
    import torch

    total = _schedule_steps(n_rows, config)
    cuda = torch.cuda.is_available()
    args: dict[str, Any] = dict(
        output_dir=str(ctx.run_dir / CHECKPOINTS),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.lr_for(parameters),
        lr_scheduler_type=config.lr_schedule,
        warmup_steps=int(config.warmup_ratio * total),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=max(1, total // 100),
        save_strategy="steps",
        save_steps=config.save_every or 10**9,  # else by time, in the callback
        save_total_limit=2,
        eval_strategy="steps" if has_val else "no",
        eval_steps=config.eval_every or max(1, total // 5),
        report_to=[],
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=cuda and not torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        gradient_checkpointing=config.method == "qlora",
    )
    return args


def _pad_collator(pad_id: int) -> Any:
    import torch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def tokenize(tokenizer: Any, records: Sequence[dict[str, Any]], config: FinetuneConfig) -> Any:
    from datasets import Dataset

    rows = []
    for r in records:
        enc = encode_chat(tokenizer, r["messages"], config.max_length)
        labels = enc.labels if config.answers_only else list(enc.input_ids)
        if any(x != -100 for x in labels):
            rows.append({"input_ids": enc.input_ids, "labels": labels})
    return Dataset.from_list(rows)


def sft_datasets(tokenizer: Any, inputs: FinetuneInputs) -> tuple[Any, Any | None, Any]:
    """Train and validation datasets and the collator (padded, or packed and padding-free)."""
    config = inputs.config
    train = tokenize(tokenizer, inputs.train, config)
    val = tokenize(tokenizer, inputs.val, config) if inputs.val else None
    if not len(train):
        raise ValueError("No training example has an answer token left within the maximum "
                         "length; raise the maximum length.")
    if config.packing:
        from trl.data_utils import pack_dataset

        train = pack_dataset(train, config.max_length, "bfd", {})
        return train, val, _packed_collator(tokenizer.pad_token_id)
    return train, val, _pad_collator(tokenizer.pad_token_id)


def _packed_collator(pad_id: int) -> Any:
    """Rows of packed examples, padded to the longest row. Positions restart at each example
    and no attention mask is given, so the model attends within each example only (a
    block-diagonal mask per row: the cost of attention stays per row, not per batch)."""
    import torch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            lengths = list(b.get("seq_lengths") or [n]) + ([width - n] if width > n else [])
            positions[i] = torch.cat([torch.arange(k) for k in lengths])
        # no KV cache: with one, transformers would not read the example boundaries from the
        # positions (measured: logits then leak across examples)
        return {"input_ids": ids, "labels": labels, "position_ids": positions,
                "use_cache": False}

    return collate


def run_finetune(ctx: JobContext, inputs: FinetuneInputs) -> dict[str, Any]:
    """Train, evaluate, save the adapter and the merged model. Returns the result dict."""
    torch = _torch_setup()
    config = inputs.config
    ctx.progress(0.01, "loading the base model")
    model, tokenizer = load_base(inputs.base_path, config)
    parameters = sum(p.numel() for p in model.parameters())
    main = _is_main_process()  # under torchrun, rank 0 alone samples, scores and saves
    sample_records = (inputs.val or inputs.train)[: config.samples] if main else []
    ctx.progress(0.03, "answering sample prompts with the base model")
    base_answers = answer_all(model, tokenizer, sample_records, config.sample_max_new_tokens)
    base_eval = None
    if inputs.eval_records and main:
        base_eval = score(answer_all(model, tokenizer, inputs.eval_records,
                                     config.sample_max_new_tokens),
                          [prompt_and_answer(r)[1] for r in inputs.eval_records])
    margin_before = None
    if config.method == "dpo" and main:
        margin_before = preference_margin(model, tokenizer, inputs.train)
    model.train()
    from transformers import set_seed

    set_seed(config.seed)  # the adapter's initial weights and the data order
    resume = last_checkpoint(ctx.resume_dir) or last_checkpoint(ctx.run_dir)
    callback = _reporting_callback(ctx, config.save_every_s)
    if config.method == "dpo":
        trainer = _dpo_trainer(ctx, model, tokenizer, inputs, parameters, callback)
    else:
        trainer = _sft_trainer(ctx, model, tokenizer, inputs, parameters, callback)
    ctx.log(f"Training {config.method} on {len(inputs.train)} examples "
            f"({len(inputs.val)} for validation), {parameters:,} parameters, "
            f"device {device_kind()}" + (f", resuming from {resume.name}" if resume else ""))
    started = time.monotonic()
    out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if callback.cancelled:
        ctx.log(f"Stopped at step {trainer.state.global_step}; checkpoint saved")
        ctx.check_cancelled()
    seconds = time.monotonic() - started
    model = trainer.model
    ctx.progress(0.9, "evaluating")
    result: dict[str, Any] = {
        "method": config.method, "steps": int(trainer.state.global_step),
        "resumed_from_step": _step_of(resume), "train_loss": float(out.training_loss),
        "train_seconds": round(seconds, 2), "parameters": parameters,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "learning_rate": config.lr_for(parameters), "train_examples": len(inputs.train),
        "val_examples": len(inputs.val),
        "tokens_seen": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
    }
    if inputs.val and config.method != "dpo":
        metrics = trainer.evaluate()
        result["val_loss"] = float(metrics["eval_loss"])
        result["perplexity"] = float(math.exp(min(50.0, result["val_loss"])))
        ctx.metric("val_loss", result["val_loss"], result["steps"])
    if not main:
        return result
    if config.method == "dpo":
        result["margin_before"] = margin_before
        result["margin_after"] = preference_margin(model, tokenizer, inputs.train)
    tuned_answers = answer_all(model, tokenizer, sample_records, config.sample_max_new_tokens)
    result["samples"] = [
        {"prompt": prompt_and_answer(r)[0][-1]["content"], "expected": prompt_and_answer(r)[1],
         "base": b, "tuned": t}
        for r, b, t in zip(sample_records, base_answers, tuned_answers, strict=True)
    ]
    if inputs.eval_records:
        result["eval"] = {
            "base": base_eval,
            "tuned": score(answer_all(model, tokenizer, inputs.eval_records,
                                      config.sample_max_new_tokens),
                           [prompt_and_answer(r)[1] for r in inputs.eval_records]),
        }
    ctx.progress(0.95, "saving the model")
    result.update(save_outputs(model, tokenizer, inputs.output_dir, config))
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[1]) if checkpoint else 0


def _sft_trainer(ctx: JobContext, model: Any, tokenizer: Any, inputs: FinetuneInputs,
                 parameters: int, callback: Any) -> Any:
    from transformers import Trainer, TrainingArguments

    config = inputs.config
    if config.uses_adapter:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model, config))
    train, val, collator = sft_datasets(tokenizer, inputs)
    args = TrainingArguments(**_training_args(ctx, config, len(train), parameters,
                                              val is not None))
    return _quiet(Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                          data_collator=collator, processing_class=tokenizer,
                          callbacks=[callback]))


def _quiet(trainer: Any) -> Any:
    """No log dicts printed to stdout: figures go to the job through the callback."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def _dpo_trainer(ctx: JobContext, model: Any, tokenizer: Any, inputs: FinetuneInputs,
                 parameters: int, callback: Any) -> Any:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    config = inputs.config

    def rows(records: Sequence[dict[str, Any]]) -> Any:
        return Dataset.from_list([
            {"prompt": r["prompt"],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]}
            for r in records])

    raw = _training_args(ctx, config, len(inputs.train), parameters, bool(inputs.val))
    raw.pop("include_num_input_tokens_seen")
    args = DPOConfig(**raw, beta=config.dpo_beta, max_length=config.max_length,
                     dataset_num_proc=None)
    return _quiet(DPOTrainer(model=model, args=args, train_dataset=rows(inputs.train),
                             eval_dataset=rows(inputs.val) if inputs.val else None,
                             processing_class=tokenizer, peft_config=lora_config(model, config),
                             callbacks=[callback]))


def save_outputs(model: Any, tokenizer: Any, out_dir: Path, config: FinetuneConfig
                 ) -> dict[str, Any]:
    """The adapter alone (LoRA) and the merged model as a safetensors HF folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {}
    if config.uses_adapter:
        adapter = out_dir / "adapter"
        model.save_pretrained(str(adapter))
        tokenizer.save_pretrained(str(adapter))
        saved["adapter_path"] = str(adapter)
        merged = model.merge_and_unload() if config.merge else None
    else:
        merged = model
    if merged is not None:
        folder = out_dir / "merged"
        tmp = out_dir / "merged.part"
        shutil.rmtree(tmp, ignore_errors=True)
        import torch

        merged = merged.to(torch.float32) if config.method == "qlora" else merged
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        saved["merged_path"] = str(folder)
    (out_dir / "finetune.json").write_text(json.dumps({"config": config.to_dict()}, indent=2))
    return saved
