"""The playground's draft (the prompt in the editor) as the evaluation and the model pickers see it:
which saved version the draft is, the editor's variable values for the columns a data file lacks,
and the model a picker starts with.

The draft itself lives in the browser session; these calls only read the saved prompts and runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.accounts.actor import Actor, Role
from backend.prompts.output import check_format
from backend.prompts.template import PromptParts, check_examples
from backend.services.prompts import PromptNotFound, list_runs, list_versions


@dataclass
class ColumnFill:
    """Rows with the editor's values put in for the variables a row lacks."""

    rows: list[dict[str, Any]]
    filled: dict[str, str] = field(default_factory=dict)  # variable -> the editor's value used
    missing: list[str] = field(default_factory=list)  # lacked by some row, no value in the editor


def _same_context(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if not (a and a.get("kb")) or not (b and b.get("kb")):
        return not (a and a.get("kb")) and not (b and b.get("kb"))
    return (str(a["kb"]), str(a.get("query_variable") or ""), int(a.get("k") or 3)) == \
        (str(b["kb"]), str(b.get("query_variable") or ""), int(b.get("k") or 3))


def saved_version(*, actor: Actor, name: str, parts: PromptParts,
                  output_format: Mapping[str, Any] | None = None,
                  context: Mapping[str, Any] | None = None) -> int | None:
    """The newest version of the saved prompt ``name`` whose content (system, template,
    examples, output format, knowledge-base context) is the draft's; None when the draft
    differs from every version or no prompt has that name."""
    actor.require_role(Role.builder, "use the playground")
    name = (name or "").strip()
    if not name:
        return None
    try:
        versions = list_versions(actor=actor, name=name)
        examples = check_examples(parts.examples)
        fmt = check_format(output_format)
    except (PromptNotFound, ValueError):
        return None
    for v in versions:  # newest first
        if (v.template == parts.template and v.system == (parts.system or "")
                and v.examples == examples and check_format(v.output_format) == fmt
                and _same_context(v.context, context)):
            return v.version
    return None


def fill_missing_columns(*, actor: Actor, rows: Sequence[Mapping[str, Any]],
                         names: Sequence[str], values: Mapping[str, Any]) -> ColumnFill:
    """For each variable in ``names`` that a row lacks (the file has no such column, or a JSON
    line no such key), put in the editor's value from ``values``; the variables that stay
    missing (no value in the editor either) are listed."""
    actor.require_role(Role.builder, "run batch evaluations")
    out = [dict(r) for r in rows]
    filled: dict[str, str] = {}
    missing: list[str] = []
    for name in dict.fromkeys(names):
        if all(name in r for r in out):
            continue
        value = values.get(name)
        if value is None or str(value) == "":
            missing.append(name)
            continue
        filled[name] = str(value)
        for r in out:
            r.setdefault(name, filled[name])
    return ColumnFill(rows=out, filled=filled, missing=missing)


def default_model(*, actor: Actor, models: Sequence[str]) -> str | None:
    """The model a picker starts with: the one this user ran a prompt on last, when it is
    among ``models``; else the first of ``models``."""
    actor.require_role(Role.builder, "use the playground")
    if not models:
        return None
    for run in list_runs(actor=actor, limit=50):
        if run.created_by == actor.user_id and run.model in models:
            return run.model
    return models[0]
