"""Tools an agent may call: what the model sees (name, description, JSON-schema parameters) and
what runs (a function of the parsed arguments returning text).

Built in: ``calculator`` (arithmetic by walking the expression's syntax tree: no ``eval``) and
``current_datetime``. User-defined HTTP tools (from a form or an OpenAPI document) are built by
:func:`http_tool`; MCP tools by ``backend.agents.mcp_tools``; knowledge search by the service,
which holds the actor.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.agents import net

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class ToolError(RuntimeError):
    """A tool failed; the message goes back to the model and into the trace."""


@dataclass
class ToolOutput:
    text: str
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class AgentTool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], str | ToolOutput]
    kind: str = "builtin"  # builtin | knowledge | http | mcp
    secrets: tuple[str, ...] = ()  # values to scrub from traces

    def spec(self) -> dict[str, Any]:
        """The OpenAI-style tool spec the model sees."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters or {"type": "object", "properties": {}}}}


# ------------------------------------------------------------------------------- calculator

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log,
    "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "floor": math.floor, "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_EXPRESSION = 500
MAX_MAGNITUDE = 1e100


def calculate(expression: str) -> float | int:
    """Evaluate arithmetic: numbers, + - * / // % **, parentheses, a few math functions and
    constants. Anything else (names, attributes, calls to other things) is refused."""
    expr = (expression or "").strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not expr:
        raise ToolError("Give an expression such as 2 * (3 + 4).")
    if len(expr) > MAX_EXPRESSION:
        raise ToolError(f"The expression is longer than {MAX_EXPRESSION} characters.")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ToolError(f"{expression!r} is not an arithmetic expression.") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e6
                                                 and abs(right) > 10):
                raise ToolError("That power is too large to compute.")
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ToolError("Division by zero.") from None
            if isinstance(value, complex):
                raise ToolError("The result is not a real number.")
            if abs(value) > MAX_MAGNITUDE:
                raise ToolError("The result is too large.")
            return value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCTIONS and not node.keywords:
            try:
                return _FUNCTIONS[node.func.id](*[ev(a) for a in node.args])
            except (ValueError, TypeError) as exc:
                raise ToolError(f"{node.func.id}: {exc}") from None
        raise ToolError(f"Only arithmetic is allowed; {ast.unparse(node)!r} is not.")

    result = ev(tree)
    if isinstance(result, float) and result.is_integer() and abs(result) < 1e15:
        return int(result)
    return result


def calculator_tool() -> AgentTool:
    def run(args: dict[str, Any]) -> str:
        return str(calculate(str(args.get("expression", ""))))

    return AgentTool(
        name="calculator", kind="builtin",
        description="Evaluate an arithmetic expression exactly, e.g. '(12.5 * 4) / 3' or "
                    "'sqrt(2) ** 2'. Use it for any calculation.",
        parameters={"type": "object", "properties": {"expression": {
            "type": "string", "description": "The expression to evaluate."}},
            "required": ["expression"]},
        run=run)


def datetime_tool(now: Callable[[], datetime] | None = None) -> AgentTool:
    def run(args: dict[str, Any]) -> str:
        tz_name = str(args.get("timezone") or "UTC")
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"Unknown time zone {tz_name!r}; use a name such as Europe/Paris "
                            "or Asia/Shanghai.") from None
        moment = (now() if now else datetime.now(tz)).astimezone(tz)
        return moment.strftime(f"%A %Y-%m-%d %H:%M:%S ({tz_name}, UTC%z)")

    return AgentTool(
        name="current_datetime", kind="builtin",
        description="The current date, weekday and time, in a time zone (default UTC).",
        parameters={"type": "object", "properties": {"timezone": {
            "type": "string", "description": "An IANA time zone such as Asia/Shanghai."}}},
        run=run)


BUILTIN_TOOLS: dict[str, Callable[[], AgentTool]] = {
    "calculator": calculator_tool,
    "current_datetime": datetime_tool,
}


# ------------------------------------------------------------------------------- HTTP tools

SECRET_RE = re.compile(r"\{secret:([A-Za-z0-9][A-Za-z0-9_.:-]{0,199})\}")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class HttpToolSpec:
    """A user-defined HTTP tool, checked in one place."""

    name: str
    description: str
    method: str
    url_template: str
    parameters: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.name.strip()
        if not NAME_RE.match(self.name):
            raise ValueError("A tool's name starts with a letter and has letters, digits, _ or - "
                             f"(at most 64), e.g. get_weather (got {self.name!r}).")
        self.method = self.method.strip().upper()
        if self.method not in METHODS:
            raise ValueError(f"The method must be one of {', '.join(METHODS)} "
                             f"(got {self.method!r}).")
        if not self.url_template.strip().lower().startswith(("http://", "https://")):
            raise ValueError("The URL must start with http:// or https://, e.g. "
                             "https://api.example.com/weather?city={city}.")
        if not isinstance(self.parameters, dict) or (
                self.parameters and self.parameters.get("type", "object") != "object"):
            raise ValueError('The parameters must be a JSON schema object, e.g. {"type": '
                             '"object", "properties": {"city": {"type": "string"}}}.')
        props = self.parameters.get("properties", {}) if self.parameters else {}
        missing = [p for p in PLACEHOLDER_RE.findall(self.url_template.split("?")[0])
                   if p not in props]
        if missing:
            raise ValueError(f"The URL uses {{{missing[0]}}} but the parameters do not define "
                             f"{missing[0]!r}.")
        for k, v in self.headers.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k.strip():
                raise ValueError("Headers are names with text values, e.g. "
                                 '{"Authorization": "Bearer {secret:WEATHER_KEY}"}.')

    def secret_names(self) -> list[str]:
        return sorted({n for v in self.headers.values() for n in SECRET_RE.findall(v)})


def http_tool(spec: HttpToolSpec, *, secret_value: Callable[[str], str],
              allowed_hosts: Collection[str] = (), timeout_s: float = 10.0,
              max_bytes: int = 1_000_000, resolve: net.Resolver | None = None) -> AgentTool:
    """The tool that makes ``spec``'s request. Secrets are looked up when the tool is built;
    their values are listed in ``secrets`` so traces can scrub them."""
    values = {n: secret_value(n) for n in spec.secret_names()}
    headers = {k: SECRET_RE.sub(lambda m: values[m.group(1)], v) for k, v in spec.headers.items()}
    path_part, _, query_part = spec.url_template.partition("?")
    used = set(PLACEHOLDER_RE.findall(spec.url_template))

    def run(args: dict[str, Any]) -> str:
        def fill(template: str) -> str:
            def sub(m: re.Match[str]) -> str:
                if m.group(1) not in args:
                    raise ToolError(f"Missing argument {m.group(1)!r}.")
                return quote(str(args[m.group(1)]), safe="")
            return PLACEHOLDER_RE.sub(sub, template)

        url = fill(path_part) + ("?" + fill(query_part) if query_part else "")
        rest = {k: v for k, v in args.items() if k not in used}
        kwargs: dict[str, Any] = {}
        if spec.method in ("GET", "DELETE"):
            kwargs["params"] = {k: v if isinstance(v, str) else json.dumps(v)
                                for k, v in rest.items()} or None
        else:
            kwargs["json_body"] = rest
        if resolve is not None:
            kwargs["resolve"] = resolve
        try:
            res = net.fetch(spec.method, url, headers=headers, timeout_s=timeout_s,
                            max_bytes=max_bytes, allowed_hosts=allowed_hosts, **kwargs)
        except (net.BlockedAddress, net.FetchError) as exc:
            raise ToolError(str(exc)) from None
        if res.status >= 400:
            raise ToolError(f"HTTP {res.status}: {res.text()[:500]}")
        return res.text()

    return AgentTool(name=spec.name, description=spec.description, kind="http",
                     parameters=spec.parameters or {"type": "object", "properties": {}},
                     run=run, secrets=tuple(v for v in values.values() if v))


# ---------------------------------------------------------------------------- OpenAPI import

def openapi_operations(document: str | Mapping[str, Any]) -> list[HttpToolSpec]:
    """Every operation of an OpenAPI 3 document (JSON or YAML) as an HTTP tool spec, named by
    its ``operationId`` (or method_path). Path and query parameters and a JSON request body's
    properties become the tool's parameters."""
    if isinstance(document, str):
        import yaml

        try:
            doc = yaml.safe_load(document)
        except yaml.YAMLError as exc:
            raise ValueError(f"The OpenAPI document is neither JSON nor YAML ({exc}).") from None
    else:
        doc = dict(document)
    if not isinstance(doc, dict) or "paths" not in doc:
        raise ValueError("This is not an OpenAPI document: it has no 'paths'.")
    servers = doc.get("servers") or []
    base = (servers[0].get("url", "") if servers and isinstance(servers[0], dict) else "")
    if not base.lower().startswith(("http://", "https://")):
        raise ValueError("The OpenAPI document needs an absolute server URL in 'servers' "
                         "(e.g. https://api.example.com).")
    out: list[HttpToolSpec] = []
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method, op in item.items():
            if method.upper() not in METHODS or not isinstance(op, dict):
                continue
            props: dict[str, Any] = {}
            required: list[str] = []
            for p in [*shared, *(op.get("parameters") or [])]:
                if not isinstance(p, dict) or p.get("in") not in ("path", "query"):
                    continue
                props[p["name"]] = {**(p.get("schema") or {"type": "string"}),
                                    "description": p.get("description", "")}
                if p.get("required") or p.get("in") == "path":
                    required.append(p["name"])
            body = ((op.get("requestBody") or {}).get("content") or {}).get(
                "application/json", {}).get("schema") or {}
            props.update(body.get("properties") or {})
            required += [r for r in body.get("required") or [] if r not in required]
            raw_name = op.get("operationId") or f"{method}_{path}"
            name = re.sub(r"[^A-Za-z0-9_-]", "_", raw_name).strip("_")[:64] or "operation"
            if not name[0].isalpha():
                name = "op_" + name[:60]
            template = base.rstrip("/") + path  # query parameters travel as params
            out.append(HttpToolSpec(
                name=name, method=method.upper(), url_template=template,
                description=(op.get("summary") or op.get("description") or raw_name)[:2000],
                parameters={"type": "object", "properties": props,
                            **({"required": required} if required else {})}))
    if not out:
        raise ValueError("The OpenAPI document has no operations.")
    return out
