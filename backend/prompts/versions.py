"""Comparing two versions of a prompt: a unified diff per part (system, template, examples,
output format, settings), only the parts that changed."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PARTS = ("system", "template", "examples", "output_format", "context", "params")


@dataclass
class PartDiff:
    part: str
    diff: str  # unified diff text

    def to_dict(self) -> dict[str, str]:
        return {"part": self.part, "diff": self.diff}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def diff_versions(a: Mapping[str, Any], b: Mapping[str, Any], *, a_label: str = "a",
                  b_label: str = "b") -> list[PartDiff]:
    out: list[PartDiff] = []
    for part in PARTS:
        old, new = _text(a.get(part)), _text(b.get(part))
        if old == new:
            continue
        lines = difflib.unified_diff(old.splitlines(), new.splitlines(),
                                     fromfile=f"{a_label}/{part}", tofile=f"{b_label}/{part}",
                                     lineterm="")
        out.append(PartDiff(part=part, diff="\n".join(lines)))
    return out
