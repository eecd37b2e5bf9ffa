"""Fine-tuning as pages and the CLI see it: describe a base model, estimate a run on the
workers' hardware, launch it as a ``finetune`` job on the gpu queue, list runs, export a result.

Everything is checked before launch (model, dataset and method agree, settings are sane, QLoRA
can run): a bad request launches nothing. The job trains (``backend.training.finetune``),
registers the merged model with its lineage (base, dataset version, method, settings, job) and
returns the evaluation figures as its result.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backend.accounts.actor import Actor, Role
from backend.config import get_settings
from backend.db import session_scope
from backend.jobs import titles
from backend.jobs.context import JobContext
from backend.jobs.kinds import job_kind
from backend.models.jobs import Job
from backend.services import datasets as datasets_service
from backend.services import jobs as jobs_service
from backend.services import models as models_service
from backend.training import datasets as ds
from backend.training.finetune_config import PRESETS, FinetuneConfig, qlora_available
from backend.training.finetune_estimate import Estimate, ModelInfo, estimate, model_info

KIND = "finetune"


def base_model_info(*, actor: Actor, model: int | str) -> ModelInfo:
    """Size, architecture, context length and chat template of a registered local model."""
    actor.require_role(Role.builder, "see fine-tuning")
    spec = models_service.model_spec(actor=actor, model=model, capability="chat")
    if not spec.is_local or not Path(spec.source).is_dir():
        raise ValueError(f"{spec.name!r} is not a model folder on this machine; fine-tuning "
                         "needs a local model (registered from a folder, or made by the studio).")
    return model_info(Path(spec.source))


def methods_available() -> dict[str, str | None]:
    """Method -> None when it can run here, else why not."""
    ok, why = qlora_available()
    return {"lora": None, "full": None, "dpo": None, "qlora": None if ok else why}


def make_config(*, preset: str | None = None, settings: dict[str, Any] | None = None
                ) -> FinetuneConfig:
    """A preset (default ``balanced``) with the given settings over it, checked."""
    base = PRESETS.get(preset or "balanced")
    if base is None:
        raise ValueError(f"Unknown preset {preset!r}: use {', '.join(PRESETS)}.")
    settings = dict(settings or {})
    names = set(FinetuneConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ValueError(f"Unknown fine-tuning setting(s): {', '.join(unknown)}.")
    return replace(base, **settings).checked()


def _check_method(config: FinetuneConfig, dataset_format: str, info: ModelInfo) -> None:
    if config.method == "dpo" and dataset_format != "preference":
        raise ValueError("DPO trains on preference pairs (prompt, chosen, rejected); this "
                         "dataset holds chat examples. Pick LoRA, or a preference dataset.")
    if config.method != "dpo" and dataset_format == "preference":
        raise ValueError("This dataset holds preference pairs: pick the DPO method for it.")
    if config.method == "qlora":
        ok, why = qlora_available()
        if not ok:
            raise ValueError(why)
    if config.method == "full" and info.parameters > 3_000_000_000:
        raise ValueError("Full fine-tuning is offered for models up to 3B parameters; use "
                         "LoRA or QLoRA for this one.")
    if info.context_length and config.max_length > int(info.context_length):
        raise ValueError(f"The maximum length ({config.max_length}) is above the model's "
                         f"context length ({info.context_length}).")


def estimate_run(*, actor: Actor, base_model: int | str, dataset: int | str,
                 config: FinetuneConfig, version: int | None = None) -> Estimate:
    """Memory and time on the first GPU a gpu worker reports (or on the CPU)."""
    actor.require_role(Role.builder, "see fine-tuning")
    from backend.training.finetune_data import count_tokens

    info = base_model_info(actor=actor, model=base_model)
    _, _, records = datasets_service.load_records(actor=actor, dataset=dataset, version=version)
    tok = datasets_service.base_tokenizer(actor=actor, model=base_model)
    lengths = [min(count_tokens(tok, r), config.max_length) for r in records]
    train, _ = ds.split(lengths, val_fraction=config.val_fraction, seed=config.seed)
    gpus = [g for w in jobs_service.list_workers(actor=Actor.system()) if "gpu" in w.queues
            for g in w.gpus]
    return estimate(info, config, tokens_per_epoch=sum(train), longest=max(lengths, default=1),
                    gpus=gpus, cpu_threads=get_settings().torch_threads)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"


def start_finetune(*, actor: Actor, base_model: int | str, dataset: int | str,
                   config: FinetuneConfig, name: str | None = None, version: int | None = None,
                   eval_dataset: int | str | None = None, enqueue: bool = True
                   ) -> jobs_service.JobView:
    """Check everything, then launch the ``finetune`` job. ``name``: the registered result."""
    actor.require_role(Role.builder, "launch fine-tuning")
    config = config.checked()
    base = models_service.get_model(actor=actor, model=base_model)
    info = base_model_info(actor=actor, model=base.id)
    view, number, records = datasets_service.load_records(actor=actor, dataset=dataset,
                                                          version=version)
    _check_method(config, view.format, info)
    if len(records) < 2 and config.val_fraction > 0:
        config = replace(config, val_fraction=0.0)
    out_name = (name or f"{base.name}-{view.name}-{config.method}").strip()
    models_service._check_name(out_name)
    if any(m.name == out_name for m in models_service.list_models(actor=actor)):
        raise models_service.ModelExists(f"A model named {out_name!r} already exists in this "
                                         "workspace. Pick another name for the result.")
    eval_ref: dict[str, Any] | None = None
    if eval_dataset is not None:
        eview, enumber, _ = datasets_service.load_records(actor=actor, dataset=eval_dataset)
        if eview.format != "chat":
            raise ValueError("An evaluation file holds question/answer examples (alpaca or chat).")
        eval_ref = {"id": eview.id, "name": eview.name, "version": enumber}
    params = {
        "base_model": base.name, "base_model_id": base.id,
        "dataset": view.name, "dataset_id": view.id, "dataset_version": number,
        "dataset_format": view.format, "config": config.to_dict(), "output_name": out_name,
        "eval_dataset": eval_ref,
    }
    title_args = {"method": titles.METHOD_NAMES.get(config.method, config.method),
                  "base": base.name, "dataset": view.name, "version": number, "output": out_name}
    return jobs_service.submit_job(
        actor=actor, kind=KIND, params=params, enqueue=enqueue, title_args=title_args,
        title_template=titles.FINETUNE_FULL if config.method == "full" else titles.FINETUNE)


def list_runs(*, actor: Actor, limit: int = 50) -> list[jobs_service.JobView]:
    actor.require_role(Role.builder, "see fine-tuning")
    return jobs_service.list_jobs(actor=actor, kinds=[KIND], limit=limit)


def export_zip(*, actor: Actor, model: int | str) -> Path:
    """The merged model folder of a produced model as a zip (written once, then reused)."""
    actor.require_role(Role.builder, "see fine-tuning")
    view = models_service.get_model(actor=actor, model=model)
    folder = Path(view.source)
    if view.kind != "produced" or not folder.is_dir():
        raise ValueError(f"{view.name!r} is not a model folder the studio made.")
    exports = get_settings().data_dir / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    target = exports / f"ws{view.workspace_id}-{view.id}-{_safe(view.name)}.zip"
    if not target.exists():
        partial = target.with_suffix(".zip.part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    zf.write(f, Path(_safe(view.name)) / f.relative_to(folder))
        partial.rename(target)
    return target


# --- the job --------------------------------------------------------------------------------

def _job_actor(ctx: JobContext) -> Actor:
    """Who launched the job, acting in the job's workspace."""
    with session_scope() as session:
        job = session.execute(select(Job).where(Job.id == ctx.job_id)).scalar_one()
        return Actor(user_id=job.created_by, username=f"job #{job.id}", role=Role.builder,
                     workspace_id=job.workspace_id)


def _output_dir(actor: Actor, name: str, job_id: int | None) -> Path:
    return get_settings().models_dir / "finetuned" / f"ws{actor.workspace_id}-{_safe(name)}-" \
                                                     f"job{job_id}"


@job_kind(KIND, queue="gpu", title="Fine-tuning")
def run_finetune_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from backend.training import finetune_ddp
    from backend.training.finetune import FinetuneInputs, run_finetune

    actor = _job_actor(ctx) if ctx.job_id is not None else Actor.system()
    config = FinetuneConfig.from_dict(params["config"])
    base = models_service.model_spec(actor=actor, model=int(params["base_model_id"]))
    _, number, records = datasets_service.load_records(
        actor=actor, dataset=int(params["dataset_id"]), version=int(params["dataset_version"]))
    train, val = ds.split(records, val_fraction=config.val_fraction, seed=config.seed)
    eval_records = None
    if params.get("eval_dataset"):
        ref = params["eval_dataset"]
        _, _, eval_records = datasets_service.load_records(actor=actor, dataset=int(ref["id"]),
                                                           version=int(ref["version"]))
    out_dir = _output_dir(actor, params["output_name"], ctx.job_id)
    inputs = FinetuneInputs(base_path=Path(base.source), train=train, val=val, config=config,
                            output_dir=out_dir, eval_records=eval_records)
    if finetune_ddp.use_data_parallel(config):  # one process per GPU, launched by torchrun
        result = finetune_ddp.launch(ctx, inputs, finetune_ddp.gpu_count())
    else:
        result = run_finetune(ctx, inputs)
    lineage = {
        "base_model": params["base_model"], "base_model_id": params["base_model_id"],
        "dataset": params["dataset"], "dataset_id": params["dataset_id"],
        "dataset_version": number, "method": config.method, "settings": config.to_dict(),
        "job_id": ctx.job_id, "adapter_path": result.get("adapter_path"),
    }
    figures = {k: result[k] for k in ("val_loss", "perplexity", "margin_before", "margin_after")
               if result.get(k) is not None}
    model = models_service.register_produced_model(
        actor=actor, name=params["output_name"], path=result["merged_path"], lineage=lineage,
        description=f"{config.method} fine-tune of {params['base_model']} on "
                    f"{params['dataset']} v{number}" + "".join(
                        f"; {k} {v:.4g}" for k, v in figures.items()
                        if isinstance(v, float) and math.isfinite(v)))
    ctx.progress(1.0, "done")
    return {**result, "model": model.name, "model_id": model.id, "dataset_version": number}

