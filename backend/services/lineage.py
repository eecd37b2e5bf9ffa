"""Where a model came from, as a chain a person reads from left to right:

    corpus wiki v1 → pre-train job #3 → model tiny-lm → LoRA (dataset faq v2, job #5) → model faq-bot

Each step is an English template with its values (the CLI and the API print the English text;
the studio shows each template translated, see ``studio/components/lineage.py``). A model made
from another model made here (fine-tuning a pre-trained model) shows the whole chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.accounts.actor import Actor, Role
from backend.jobs.titles import METHOD_NAMES
from backend.services import corpora
from backend.services import models as models_service

KNOWLEDGE_BASE = "knowledge base {kb}"
CORPUS = "corpus {corpus} v{version}"
PRETRAIN = "pre-train job #{job}"
PRETRAIN_NO_JOB = "pre-training"
MODEL = "model {model}"
FINETUNE = "{method} (dataset {dataset} v{version}, job #{job})"
FINETUNE_NO_JOB = "{method} (dataset {dataset} v{version})"
FINETUNE_FULL = "full fine-tune (dataset {dataset} v{version}, job #{job})"
FINETUNE_FULL_NO_JOB = "full fine-tune (dataset {dataset} v{version})"
TINY = "tiny test model (seed {seed})"
TINY_NO_SEED = "tiny test model"

TEMPLATES: tuple[str, ...] = (KNOWLEDGE_BASE, CORPUS, PRETRAIN, PRETRAIN_NO_JOB, MODEL, FINETUNE,
                              FINETUNE_NO_JOB, FINETUNE_FULL, FINETUNE_FULL_NO_JOB, TINY,
                              TINY_NO_SEED)
SEPARATOR = " → "
MAX_DEPTH = 8  # models made from models made from ...: a loop in hand-edited lineage stops here


@dataclass(frozen=True)
class LineageStep:
    template: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.template.format(**self.args)

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "args": dict(self.args), "text": self.text}


def chain_text(steps: list[LineageStep]) -> str:
    """The chain in English, one line."""
    return SEPARATOR.join(s.text for s in steps)


def _pretrain_steps(actor: Actor, lineage: dict[str, Any]) -> list[LineageStep]:
    steps: list[LineageStep] = []
    corpus, number = lineage.get("corpus"), lineage.get("corpus_version")
    if lineage.get("corpus_id") is not None and number is not None:
        try:
            version = corpora.get_version(actor=actor, corpus=int(lineage["corpus_id"]),
                                          version=int(number))
            steps += [LineageStep(KNOWLEDGE_BASE, {"kb": s["knowledge_base"]})
                      for s in version.sources if s.get("knowledge_base")]
        except LookupError:  # the corpus was removed since: its name is in the lineage
            pass
    if corpus is not None:
        steps.append(LineageStep(CORPUS, {"corpus": corpus, "version": number}))
    job = lineage.get("job_id")
    steps.append(LineageStep(PRETRAIN, {"job": job}) if job is not None
                 else LineageStep(PRETRAIN_NO_JOB))
    return steps


def _finetune_step(lineage: dict[str, Any]) -> LineageStep:
    method = str(lineage.get("method") or "")
    args: dict[str, Any] = {"dataset": lineage.get("dataset"),
                            "version": lineage.get("dataset_version")}
    job = lineage.get("job_id")
    if job is not None:
        args["job"] = job
    if method == "full":
        return LineageStep(FINETUNE_FULL if job is not None else FINETUNE_FULL_NO_JOB, args)
    args["method"] = METHOD_NAMES.get(method, method.upper() or "?")
    return LineageStep(FINETUNE if job is not None else FINETUNE_NO_JOB, args)


def _steps(actor: Actor, model: models_service.ModelView, depth: int) -> list[LineageStep]:
    lineage = dict(model.lineage or {})
    steps: list[LineageStep] = []
    if lineage.get("recipe") == "pretrain":
        steps += _pretrain_steps(actor, lineage)
    elif lineage.get("recipe") == "tiny":
        seed = lineage.get("seed")
        steps.append(LineageStep(TINY, {"seed": seed}) if seed is not None
                     else LineageStep(TINY_NO_SEED))
    elif lineage.get("base_model") is not None or lineage.get("base_model_id") is not None:
        base: models_service.ModelView | None = None
        if depth < MAX_DEPTH:
            for ref in (lineage.get("base_model_id"), lineage.get("base_model")):
                if ref is None:
                    continue
                try:
                    base = models_service.get_model(actor=actor, model=ref)
                    break
                except LookupError:
                    continue
        if base is not None:
            steps += _steps(actor, base, depth + 1)
        else:  # removed since (or a loop): its name as recorded
            steps.append(LineageStep(MODEL, {"model": lineage.get("base_model")}))
        steps.append(_finetune_step(lineage))
    steps.append(LineageStep(MODEL, {"model": model.name}))
    return steps


def lineage_chain(*, actor: Actor, model: int | str) -> list[LineageStep]:
    """The model's origin, oldest first, ending with the model itself. A model registered from
    outside (a folder, a hub id, an endpoint) is a chain of one step."""
    actor.require_role(Role.builder, "see where models come from")
    return _steps(actor, models_service.get_model(actor=actor, model=model), 0)
