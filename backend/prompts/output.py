"""Output formats of a prompt and parsing an answer into them.

A format is a small dict: ``{"type": "text"}``, ``{"type": "list"}`` or
``{"type": "json", "schema": {...}}`` (a JSON Schema; none means any JSON). An answer is parsed
and validated; when it does not fit, the reason says where and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

FORMAT_TYPES = ("text", "list", "json")
FIELD_TYPES = ("string", "number", "integer", "boolean", "array", "object")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)、]|[a-zA-Z][.)])\s+")


@dataclass
class Parsed:
    valid: bool
    value: Any = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_format(fmt: Mapping[str, Any] | None) -> dict[str, Any]:
    """A valid format dict (text when none); ValueError saying what is wrong."""
    if not fmt:
        return {"type": "text"}
    kind = fmt.get("type", "text")
    if kind not in FORMAT_TYPES:
        raise ValueError(f"Unknown output format {kind!r}: use {', '.join(FORMAT_TYPES)}.")
    if kind != "json":
        return {"type": kind}
    schema = fmt.get("schema")
    if schema in (None, "", {}):
        return {"type": "json"}
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"The JSON schema is not valid JSON: {exc.msg} at line {exc.lineno}"
                             f", column {exc.colno}.") from None
    if not isinstance(schema, dict):
        raise ValueError("A JSON schema must be a JSON object, such as "
                         '{"type": "object", "properties": {...}}.')
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"The JSON schema is not valid: {exc.message}.") from None
    return {"type": "json", "schema": schema}


def schema_from_fields(fields: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema the small form builds: one property per field (name, type, required,
    description)."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for i, f in enumerate(fields, 1):
        name = str(f.get("name") or "").strip()
        if not name:
            continue
        kind = str(f.get("type") or "string")
        if kind not in FIELD_TYPES:
            raise ValueError(f"Field {i} ({name}): type must be one of {', '.join(FIELD_TYPES)}.")
        prop: dict[str, Any] = {"type": kind}
        if f.get("description"):
            prop["description"] = str(f["description"])
        props[name] = prop
        if f.get("required", True):
            required.append(name)
    if not props:
        raise ValueError("Give the JSON at least one field.")
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": True}


def extract_json(text: str) -> str:
    """The JSON inside an answer: a fenced block, or from the first { or [ to its last match."""
    m = _FENCE.search(text)
    if m:
        return m.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return text.strip()
    start = min(starts)
    end = max(text.rfind("}"), text.rfind("]"))
    return text[start:end + 1] if end > start else text[start:]


def parse_output(text: str, fmt: Mapping[str, Any] | None) -> Parsed:
    fmt = check_format(fmt)
    kind = fmt["type"]
    if kind == "text":
        return Parsed(valid=True, value=text)
    if kind == "list":
        items = [_BULLET.sub("", line).strip() for line in text.splitlines()]
        items = [i for i in items if i]
        if not items:
            return Parsed(valid=False, reason="The answer is empty: no list items.")
        return Parsed(valid=True, value=items)
    raw = extract_json(text)
    if not raw:
        return Parsed(valid=False, reason="The answer is empty: expected JSON.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Parsed(valid=False, reason=f"Not valid JSON: {exc.msg} at line {exc.lineno}, "
                                          f"column {exc.colno}.")
    schema = fmt.get("schema")
    if schema:
        from jsonschema import Draft202012Validator

        errors = sorted(Draft202012Validator(schema).iter_errors(value),
                        key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path) or "the top level"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return Parsed(valid=False, value=value,
                          reason=f"Does not match the schema at {where}: {e.message}{more}.")
    return Parsed(valid=True, value=value)


def as_rows(value: Any) -> list[dict[str, Any]]:
    """A parsed value as table rows (for showing it as a table)."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return [{k: _cell(v) for k, v in row.items()} for row in value]
        return [{"value": _cell(v)} for v in value]
    if isinstance(value, dict):
        return [{"field": k, "value": _cell(v)} for k, v in value.items()]
    return [{"value": _cell(value)}]


def _cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return v


def response_format(fmt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` for this output format (json only)."""
    fmt = check_format(fmt)
    if fmt["type"] != "json":
        return None
    if fmt.get("schema"):
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": fmt["schema"]}}
    return {"type": "json_object"}
