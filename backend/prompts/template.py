"""Prompt templates: Jinja2 in an immutable sandbox with strict variables and bounded work.

A template sees only the variables it is given. Attribute tricks (``x.__class__``,
``x.__init__.__globals__``), calling methods that change data, building huge strings and long
loops are refused with a message that says what to change. A missing variable is named before
anything runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 100_000  # a rendered message longer than this is refused
MAX_TEMPLATE_CHARS = 50_000
MAX_LOOP_STEPS = 10_000  # range() steps over one render
MAX_RENDER_S = 2.0
CONTEXT_VARIABLE = "context"  # filled from a knowledge base when the prompt has one


class TemplateError(ValueError):
    """The template cannot be rendered; the message says what to fix."""


class MissingVariables(TemplateError):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        listed = ", ".join(names)
        super().__init__(f"Fill in the variable(s) {listed} before running: the template uses "
                         f"{'it' if len(names) == 1 else 'them'} but no value was given.")


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_S

    def tick(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_LOOP_STEPS:
            raise TemplateError(f"The template loops too much (more than {MAX_LOOP_STEPS} steps). "
                                "Use shorter loops.")
        if time.monotonic() > self.deadline:
            raise TemplateError(f"The template took longer than {MAX_RENDER_S:g} s to render. "
                                "Use shorter loops.")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Refuses string/list repetition that would exceed the output bound."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise TemplateError("Powers above 100 are not allowed in a template.")
            return left**right
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, str | list | tuple) and isinstance(times, int) \
                and len(seq) * times > MAX_OUTPUT_CHARS:
            raise TemplateError(f"The template would repeat text beyond {MAX_OUTPUT_CHARS} "
                                "characters.")
        return left * right


def _environment(budget: _Budget) -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)

    def bounded_range(*args: int) -> Iterator[int]:
        for i in range(*args):
            budget.tick()
            yield i

    env.globals = {"range": bounded_range}  # no cycler/joiner/namespace/lipsum/dict
    return env


_PARSE_ENV = _Sandbox(undefined=StrictUndefined)


def _parse(source: str) -> nodes.Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"A template may be at most {MAX_TEMPLATE_CHARS} characters long.")
    try:
        return _PARSE_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"Template syntax error on line {exc.lineno}: {exc.message}. "
                            "Variables are written {{ name }}.") from None


def template_variables(*sources: str) -> list[str]:
    """The variables the templates use, in the order they first appear."""
    found: list[str] = []
    for source in sources:
        if not source:
            continue
        ast = _parse(source)
        undeclared = meta.find_undeclared_variables(ast)
        ordered = [n.name for n in ast.find_all(nodes.Name) if n.name in undeclared]
        for name in ordered:
            if name not in found and name != "range":
                found.append(name)
    return found


def missing_variables(sources: Sequence[str], variables: Mapping[str, Any]) -> list[str]:
    return [n for n in template_variables(*sources) if n not in variables]


def render_template(source: str, variables: Mapping[str, Any]) -> str:
    """Render one template in the sandbox; raise TemplateError saying what to fix."""
    missing = missing_variables([source], variables)
    if missing:
        raise MissingVariables(missing)
    budget = _Budget()
    env = _environment(budget)
    try:
        tpl = env.from_string(source)
        parts: list[str] = []
        size = 0
        for chunk in tpl.generate(dict(variables)):
            budget.tick(0)
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"The rendered text is longer than {MAX_OUTPUT_CHARS} "
                                    "characters. Shorten the template or its values.")
            parts.append(chunk)
        return "".join(parts)
    except SecurityError as exc:
        raise TemplateError(f"The template is not allowed to do that ({exc}). Templates may "
                            "only use variables, filters, conditions and loops; attributes "
                            "such as __class__ and method calls that change data are "
                            "refused.") from None
    except UndefinedError as exc:
        raise TemplateError(f"The template uses something that is not defined: {exc}.") from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"Template syntax error on line {exc.lineno}: {exc.message}.") \
            from None
    except TemplateError:
        raise
    except (TypeError, ValueError, ArithmeticError, OverflowError) as exc:
        raise TemplateError(f"The template failed: {type(exc).__name__}: {exc}.") from None


@dataclass
class PromptParts:
    """What a prompt is made of (one version's content)."""

    template: str
    system: str = ""
    examples: list[dict[str, str]] = field(default_factory=list)

    def sources(self) -> list[str]:
        return [self.system, self.template]


def check_examples(examples: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, ex in enumerate(examples or [], 1):
        if not isinstance(ex, Mapping):
            raise TemplateError(f"Example {i} must have a user and an assistant turn.")
        user = str(ex.get("user") or "").strip()
        assistant = str(ex.get("assistant") or "").strip()
        if not user and not assistant:
            continue
        if not user or not assistant:
            raise TemplateError(f"Example {i} needs both a user message and an answer.")
        out.append({"user": user, "assistant": assistant})
    return out


def render_messages(parts: PromptParts, variables: Mapping[str, Any]) -> list[dict[str, str]]:
    """System message, few-shot turns and the user message, with the variables filled in."""
    if not parts.template.strip():
        raise TemplateError("The user message template is empty. Write the message to send, "
                            "with {{ variables }} where values go.")
    missing = missing_variables(parts.sources(), variables)
    if missing:
        raise MissingVariables(missing)
    messages: list[dict[str, str]] = []
    system = render_template(parts.system, variables) if parts.system.strip() else ""
    if system.strip():
        messages.append({"role": "system", "content": system})
    for ex in check_examples(parts.examples):
        messages.append({"role": "user", "content": ex["user"]})
        messages.append({"role": "assistant", "content": ex["assistant"]})
    messages.append({"role": "user", "content": render_template(parts.template, variables)})
    return messages
