"""Batch evaluation data: read a CSV or JSONL of variable values (optionally with expected
answers), and summarise and export the results."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

MAX_ROWS = 5_000
EXPECTED_COLUMN = "expected"
RESULT_COLUMNS = ("row", "model", "variables", "expected", "output", "score", "note", "valid",
                  "tokens_in", "tokens_out", "error")


def read_rows(data: bytes | str, filename: str) -> list[dict[str, Any]]:
    """Rows from a CSV (with a header) or JSONL file; ValueError saying what is wrong."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    name = filename.lower()
    rows: list[dict[str, Any]] = []
    if name.endswith((".jsonl", ".ndjson")):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"Line {i} of {filename} is not JSON: {exc.msg}.") from None
            if not isinstance(obj, dict):
                raise ValueError(f"Line {i} of {filename} must be a JSON object of variables.")
            rows.append(obj)
    elif name.endswith((".csv", ".tsv")):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if name.endswith(".tsv") else ",")
        if not reader.fieldnames or any(not (f or "").strip() for f in reader.fieldnames):
            raise ValueError(f"{filename} needs a header row naming every column.")
        rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in reader]
    else:
        raise ValueError(f"{filename}: upload a .csv or .jsonl file.")
    if not rows:
        raise ValueError(f"{filename} has no rows.")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"{filename} has {len(rows)} rows; an evaluation takes at most "
                         f"{MAX_ROWS}.")
    return rows


def split_expected(row: Mapping[str, Any], column: str = EXPECTED_COLUMN
                   ) -> tuple[dict[str, Any], str | None]:
    variables = {k: v for k, v in row.items() if k != column}
    exp = row.get(column)
    return variables, (None if exp is None else str(exp))


def summarise(results: Sequence[Mapping[str, Any]], models: Sequence[str],
              seconds: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per model: rows, rows scored, mean score, rows that failed, rows per second."""
    out = []
    for m in models:
        mine = [r for r in results if r["model"] == m]
        scored = [r["score"] for r in mine if r.get("score") is not None]
        secs = seconds.get(m) or 0.0
        out.append({
            "model": m, "rows": len(mine), "scored": len(scored),
            "score": sum(scored) / len(scored) if scored else None,
            "errors": sum(1 for r in mine if r.get("error")),
            "seconds": secs, "rows_per_s": len(mine) / secs if secs > 0 else None,
        })
    return out


def results_csv(results: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for r in results:
        row = dict(r)
        row["variables"] = json.dumps(row.get("variables") or {}, ensure_ascii=False)
        w.writerow(row)
    return buf.getvalue()
