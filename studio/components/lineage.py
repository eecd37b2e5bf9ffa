"""A model's lineage as a chain in the reader's language (``backend/services/lineage.py``)."""

from __future__ import annotations

import logging

import streamlit as st

from backend.accounts.actor import Actor
from backend.services.lineage import SEPARATOR, LineageStep, lineage_chain
from studio.i18n import N_, _

log = logging.getLogger("studio")

# the step templates of backend/services/lineage.py, listed so the translator sees them
_STEP_TEMPLATES: tuple[str, ...] = (
    N_("knowledge base {kb}"),
    N_("corpus {corpus} v{version}"),
    N_("pre-train job #{job}"),
    N_("pre-training"),
    N_("model {model}"),
    N_("{method} (dataset {dataset} v{version}, job #{job})"),
    N_("{method} (dataset {dataset} v{version})"),
    N_("full fine-tune (dataset {dataset} v{version}, job #{job})"),
    N_("full fine-tune (dataset {dataset} v{version})"),
    N_("tiny test model (seed {seed})"),
    N_("tiny test model"),
)


def step_label(step: LineageStep) -> str:
    try:
        return _(step.template).format(**step.args)
    except (KeyError, IndexError, ValueError):
        return step.text


def chain_label(steps: list[LineageStep]) -> str:
    """``corpus wiki v1 → pre-train job #3 → model tiny-lm``, translated."""
    return SEPARATOR.join(step_label(s) for s in steps)


def model_lineage(model: int | str, *, actor: Actor) -> str:
    """The model's chain, or "" when it cannot be read (the rest of the page still shows)."""
    try:
        return chain_label(lineage_chain(actor=actor, model=model))
    except Exception:  # noqa: BLE001 - a comfort line; the reason is in the log
        log.exception("reading the lineage of model %s failed", model)
        return ""


def lineage_caption(model: int | str, *, actor: Actor) -> None:
    """One caption line: "Made from: corpus … → … → model …"."""
    text = model_lineage(model, actor=actor)
    if text:
        st.caption(_("Made from: {chain}").format(chain=text))
