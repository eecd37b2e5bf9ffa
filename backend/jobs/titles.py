"""The titles the system gives the jobs it launches: English templates with named values.

A job row keeps the filled English text as ``title`` (search, the CLI and the API show it) and
the template with its values as ``title_template`` / ``title_args``, so the studio shows the
title in the reader's language. Every template here is listed with ``N_`` in
``studio/components/jobs_widgets.py`` (``_TITLE_TEMPLATES``) so translators see it;
``tests/test_i18n_system_text.py`` checks that each one has a Chinese translation.
"""

from __future__ import annotations

from typing import Any

PRETRAIN = "Pre-train {name}"
FINETUNE = "{method} fine-tune of {base} on {dataset} v{version} → {output}"
FINETUNE_FULL = "Full fine-tune of {base} on {dataset} v{version} → {output}"
PROMPT_EVAL = "Evaluate prompt {prompt} v{version}: {rows} row(s) × {models} model(s)"
PROMPT_EVAL_DRAFT = "Evaluate the draft prompt: {rows} row(s) × {models} model(s)"
KB_INGEST = "Add {files} to {kb}"
KB_REINDEX = "Re-index {kb}"
KB_REINDEX_COPIES = "Index the copies of {source} in {kb}"
KB_QA = "Q&A pairs from {kb} by {model}"

TEMPLATES: tuple[str, ...] = (PRETRAIN, FINETUNE, FINETUNE_FULL, PROMPT_EVAL,
                              PROMPT_EVAL_DRAFT, KB_INGEST, KB_REINDEX, KB_REINDEX_COPIES, KB_QA)

# how a fine-tuning method is written in a title (the full method has a template of its own)
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA", "dpo": "DPO"}

TITLE_MAX = 300  # the column's width


def fill(template: str, args: dict[str, Any]) -> str:
    """The English title: the template filled with its values, cut to the column's width."""
    return template.format(**args)[:TITLE_MAX]
