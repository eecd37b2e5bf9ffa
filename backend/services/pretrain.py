"""Pre-training as pages and the CLI see it: plan a run (config, estimates), compare tokenizers,
launch the ``pretrain`` gpu job, read its outcome. The job itself (:func:`run_pretrain_job`) is a
straight recipe: tokenizer -> token files -> train -> register the model with its lineage.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.accounts.actor import Actor, Role
from backend.config import get_settings
from backend.jobs import titles
from backend.jobs.context import JobContext
from backend.jobs.kinds import job_kind
from backend.services import corpora
from backend.services import jobs as jobs_service
from backend.services import models as models_service
from backend.training.pretrain_config import (
    PRESETS,
    Estimate,
    PretrainConfig,
    estimate,
    preset_config,
)

KIND = "pretrain"
BYTES_BASELINE = "bytes"


@dataclass
class Plan:
    config: PretrainConfig
    estimate: Estimate
    vocab_size: int  # what the model will have (the tokenizer's size)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "estimate": self.estimate.to_dict(),
                "vocab_size": self.vocab_size}


def presets(*, actor: Actor) -> dict[str, dict[str, Any]]:
    """The presets with their shapes and parameter counts (at their default vocabulary)."""
    actor.require_role(Role.builder, "see pre-training")
    out: dict[str, dict[str, Any]] = {}
    for name in PRESETS:
        cfg = preset_config(name)
        out[name] = {**PRESETS[name], "parameters": estimate(cfg, devices=["cpu"]).parameters}
    return out


def _worker_devices() -> list[str]:
    workers = jobs_service.list_workers(actor=Actor.system())
    return [w.device for w in workers if "gpu" in w.queues]


def _tokenizer_source(actor: Actor, tokenizer_model: str | None) -> Path | None:
    if not tokenizer_model:
        return None
    spec = models_service.model_spec(actor=actor, model=tokenizer_model)
    folder = Path(spec.source) if spec.is_local else None
    if folder is None or not folder.is_dir() or not (
            (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists()):
        raise ValueError(f"The model {tokenizer_model!r} has no tokenizer folder on this machine; "
                         "pick a local or studio-made model, or train a BPE tokenizer.")
    return folder


def plan_run(*, actor: Actor, preset: str = "tiny", objective: str = "causal",
             tokenizer_model: str | None = None, overrides: dict[str, Any] | None = None
             ) -> Plan:
    """The config a launch would use, validated, with its estimates on the workers' hardware."""
    actor.require_role(Role.builder, "see pre-training")
    cfg = preset_config(preset, objective=objective, **(overrides or {}))
    vocab = cfg.vocab_size
    folder = _tokenizer_source(actor, tokenizer_model)
    if folder is not None:
        from backend.training.pretrain_data import load_tokenizer

        vocab = len(load_tokenizer(folder)) + (1 if objective == "masked" else 0)
        cfg.vocab_size = max(300, min(vocab, 200_000))
    cfg.validate()
    return Plan(config=cfg, estimate=estimate(cfg, vocab_size=vocab, devices=_worker_devices()),
                vocab_size=vocab)


def compare_tokenizers(*, actor: Actor, corpus: int | str, version: int | None = None,
                       vocab_size: int = 8000, tokenizer_model: str | None = None,
                       sample: str | None = None, docs: int = 100) -> list[dict[str, Any]]:
    """How a sample of the corpus splits with a BPE tokenizer trained on it (made once per
    vocabulary size), with a registered model's tokenizer, and with plain bytes; and each
    one's compression (characters per token) on held-out documents."""
    from itertools import islice

    from backend.training.corpus import iter_texts
    from backend.training.pretrain_data import load_tokenizer, split_sample, train_bpe_tokenizer

    actor.require_role(Role.builder, "prepare tokenizers")
    v = corpora.get_version(actor=actor, corpus=corpus, version=version)
    folder = Path(v.folder)
    text = sample or corpora.corpus_sample(actor=actor, corpus=corpus, version=v.version, chars=300)
    texts = list(islice(iter_texts(folder / "val.jsonl"), docs))
    out = [split_sample(f"BPE {vocab_size}", load_tokenizer(train_bpe_tokenizer(folder, vocab_size)),
                        text, texts).to_dict()]
    model_folder = _tokenizer_source(actor, tokenizer_model)
    if model_folder is not None:
        out.append(split_sample(str(tokenizer_model), load_tokenizer(model_folder), text,
                                texts).to_dict())
    raw = text.encode()
    out.append({"name": BYTES_BASELINE, "vocab_size": 256,
                "pieces": [bytes([b]).decode("latin-1") for b in raw[:200]],
                "chars_per_token": round(sum(map(len, texts)) /
                                         max(1, sum(len(t.encode()) for t in texts)), 3)})
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "model"


def launch_pretrain(*, actor: Actor, corpus: int | str, version: int | None = None,
                    preset: str = "tiny", objective: str = "causal", name: str | None = None,
                    tokenizer_model: str | None = None, overrides: dict[str, Any] | None = None,
                    title: str = "", enqueue: bool = True) -> jobs_service.JobView:
    """Check everything that can be checked now, then queue the ``pretrain`` job."""
    actor.require_role(Role.builder, "launch pre-training")
    v = corpora.get_version(actor=actor, corpus=corpus, version=version)
    c = corpora.get_corpus(actor=actor, corpus=v.corpus_id)
    plan = plan_run(actor=actor, preset=preset, objective=objective,
                    tokenizer_model=tokenizer_model, overrides=overrides)
    name = (name or f"{c.name}-{objective}-{time.strftime('%Y%m%d-%H%M%S')}").strip()
    models_service._check_name(name)
    if any(m.name == name for m in models_service.list_models(actor=actor)):
        raise models_service.ModelExists(
            f"A model named {name!r} already exists in this workspace. Pick another name.")
    tok_folder = _tokenizer_source(actor, tokenizer_model)
    params = {
        "corpus_id": c.id, "corpus": c.name, "version_id": v.id, "version": v.version,
        "preset": preset, "config": plan.config.to_dict(), "name": name,
        "tokenizer": ({"model": tokenizer_model, "folder": str(tok_folder)} if tok_folder
                      else {"bpe": plan.config.vocab_size}),
        "workspace_id": actor.workspace_id, "user_id": actor.user_id, "username": actor.username,
    }
    if title:  # the person's own words
        return jobs_service.submit_job(actor=actor, kind=KIND, params=params, title=title,
                                       enqueue=enqueue)
    return jobs_service.submit_job(actor=actor, kind=KIND, params=params,
                                   title_template=titles.PRETRAIN, title_args={"name": name},
                                   enqueue=enqueue)


def run_result(*, actor: Actor, job_id: int) -> dict[str, Any]:
    """The outcome a CLI or page shows: status, registered model, initial and final loss."""
    actor.require_role(Role.builder, "see pre-training")
    job = jobs_service.get_job(actor=actor, job_id=job_id)
    result = dict(job.result or {})
    return {"job_id": job.id, "status": job.status, "error": job.error,
            "registered_model": result.get("registered_model"),
            "initial_eval_loss": result.get("initial_eval_loss"),
            "final_eval_loss": result.get("final_eval_loss"), "result": result}


# --- the job ------------------------------------------------------------------------------------

@job_kind(KIND, queue="gpu", title="Pre-train")
def run_pretrain_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from backend.training.pretrain import launch_distributed, train
    from backend.training.pretrain_data import (
        prepare_token_files,
        tokenizer_key,
        train_bpe_tokenizer,
    )

    actor = Actor(user_id=params.get("user_id"), username=params.get("username") or "system",
                  role=Role.builder, workspace_id=int(params["workspace_id"]))
    cfg = PretrainConfig.from_dict(params["config"])
    cfg.validate()
    v = corpora.get_version(actor=actor, corpus=int(params["corpus_id"]),
                            version=int(params["version"]))
    folder = Path(v.folder)
    tok_spec = params["tokenizer"]
    if "bpe" in tok_spec:
        ctx.progress(0.0, "Training the tokenizer")
        tokenizer_dir = train_bpe_tokenizer(folder, int(tok_spec["bpe"]), block_size=cfg.block_size)
    else:
        tokenizer_dir = Path(tok_spec["folder"])
    ctx.check_cancelled()
    ctx.progress(0.0, "Tokenising the corpus")
    tokens = prepare_token_files(folder, tokenizer_dir)
    corpora.record_token_files(actor=actor, version_id=v.id, key=tokenizer_key(tokenizer_dir),
                               info={**tokens.to_dict(), "tokenizer": str(tokenizer_dir)})
    ctx.log(f"Token files: {tokens.train_tokens:,} training and {tokens.val_tokens:,} held-out "
            f"tokens ({tokens.dtype})")
    ctx.check_cancelled()
    out_dir = (get_settings().models_dir / "pretrained"
               / f"ws{actor.workspace_id}-{_safe(params['name'])}-job{ctx.job_id or 0}")
    gpus = _cuda_count() if cfg.device in ("auto", "cuda") else 0
    if gpus > 1:
        result = launch_distributed(cfg, tokens=tokens, tokenizer_dir=tokenizer_dir,
                                    out_dir=out_dir, ctx=ctx, nproc=gpus)
    else:
        result = train(cfg, tokens=tokens, tokenizer_dir=tokenizer_dir, out_dir=out_dir, ctx=ctx)
    ctx.progress(1.0, "Registering the model")
    caps = ["embeddings"] if cfg.objective == "masked" else ["chat"]
    lineage = {
        "recipe": "pretrain", "objective": cfg.objective, "preset": params.get("preset"),
        "corpus": params.get("corpus"), "corpus_id": params.get("corpus_id"),
        "corpus_version": params.get("version"), "corpus_version_id": v.id,
        "tokenizer": tok_spec.get("model") or f"bpe-{tok_spec.get('bpe')}",
        "tokenizer_dir": str(tokenizer_dir), "config": cfg.to_dict(), "steps": result.steps,
        "tokens_seen": result.tokens_seen, "parameters": result.parameters,
        "job_id": ctx.job_id, "initial_eval_loss": result.initial_eval_loss,
        "final_eval_loss": result.final_eval_loss,
    }
    view = models_service.register_produced_model(
        actor=actor, name=params["name"], path=out_dir, lineage=lineage, capabilities=caps,
        description=f"Pre-trained ({cfg.objective}) on {params.get('corpus')} "
                    f"v{params.get('version')}")
    ctx.log(f"Registered the model {view.name!r} ({', '.join(caps)})")
    ctx.progress(1.0, "done")
    return {**result.to_dict(), "registered_model": view.name, "model_id": view.id,
            "objective": cfg.objective}


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
