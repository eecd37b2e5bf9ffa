"""Walk what an AppTest run put on screen and find words left in English.

Used by ``test_i18n_pages.py``. What counts as visible: titles, headers, markdown, captions,
alerts, toasts, metric labels, widget labels, help texts, placeholders and options, tab and
expander labels, table column titles and chart titles, axis titles and legend names. Not checked:
code and JSON blocks, table cells (user data), inline ``code`` (commands), links' targets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

#: Names that stay as they are in every language (products, standards, units, file formats).
PROPER_NAMES = (
    "LLM Studio", "Hugging Face", "OpenAI", "LangChain", "LangGraph", "Streamlit", "Postgres",
    "PostgreSQL", "pgvector", "Redis", "Celery", "FastAPI", "Ollama", "vLLM", "DeepSeek", "Qwen",
    "Llama", "MiniLM", "LoRA", "QLoRA", "PEFT", "RAG", "LLM", "GPU", "CPU", "CUDA", "API", "JSON",
    "JSONL", "URL", "HTTP", "HTTPS", "ID", "PDF", "CSV", "TXT", "DOCX", "Markdown", "HTML", "SQL",
    "BPE", "Token", "Tokens", "Top-k", "Top-p", "English", "Python", "Docker", "Fernet", "UTC",
    "argon2", "bf16", "fp16", "fp32", "int8", "int4", "Admin", "AM", "PM", "KB", "MB", "GB", "TB",
    "GiB", "MiB", "cpu", "gpu", "Studio", "PyTorch", "torch", "Linux", "macOS", "Windows",
    "Hugging Face Hub", "Hub", "DashScope", "Ollama", "ModelScope", "DPO", "SFT", "zip",
    "MCP", "OpenAPI", "YAML", "GET", "POST", "PUT", "PATCH", "DELETE", "Retry-After",
)
_PROPER = sorted(PROPER_NAMES, key=len, reverse=True)
_PROPER_RE = re.compile(
    r"(?<![A-Za-z])(" + "|".join(re.escape(n) for n in _PROPER) + r")(?![A-Za-z])"
)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
_CODE_RE = re.compile(r"```.*?```|`[^`]*`", re.S)
_ICON_RE = re.compile(r":material/[a-z0-9_]+:|:[a-z0-9_+-]+:|:[a-z]+(?:-[a-z]+)*\[")
_URL_RE = re.compile(r"https?://\S+|\]\([^)]*\)|<[^>]+>")
_ID_RE = re.compile(r"\b[a-z]+[_.][a-z0-9_.]+\b|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\b[0-9a-f]{8,}\b"
                    r"|(?<![A-Za-z0-9])\.[a-z]+\b")
# Runs of ASCII "word" characters that are technical values: paths, model ids, versions.
_RUN_RE = re.compile(r"[A-Za-z0-9._:/@+-]+")
_TECHNICAL_RE = re.compile(r"[0-9/:_@]|\.[A-Za-z0-9]|^[a-z0-9]+(-[a-z0-9]+)+$")

# Element types whose whole text is UI prose.
_PROSE = {"markdown", "title", "header", "subheader", "caption", "text", "alert", "toast",
          "exception", "heading", "latex"}
# Element types never checked (their contents are code or data).
_SKIP = {"code", "json", "html", "dataframe_cells", "empty", "divider", "image", "iframe",
         "balloons", "snow", "favicon", "page_link_href"}


def _proto_fields(proto: Any, names: Iterable[str]) -> Iterator[str]:
    for name in names:
        value = getattr(proto, name, None)
        if isinstance(value, str) and value:
            yield value
        elif value is not None and not isinstance(value, str | bytes | int | float | bool):
            try:
                yield from (v for v in value if isinstance(v, str) and v)
            except TypeError:
                continue


def _chart_texts(spec: str) -> Iterator[str]:
    try:
        fig = json.loads(spec)
    except ValueError:
        return
    layout = fig.get("layout", {})
    for key, value in layout.items():
        if isinstance(value, dict) and (key == "title" or key.startswith(("xaxis", "yaxis",
                                                                           "legend"))):
            title = value.get("title") if key != "title" else value
            if isinstance(title, dict):
                title = title.get("text")
            if isinstance(title, str):
                yield title
    for trace in fig.get("data", []):
        if isinstance(trace.get("name"), str):
            yield trace["name"]


def _dataframe_titles(proto: Any) -> Iterator[str]:
    raw = getattr(proto, "columns", "") or ""
    try:
        columns = json.loads(raw) if raw else {}
    except ValueError:
        return
    for config in columns.values():
        if isinstance(config, dict) and isinstance(config.get("label"), str):
            yield config["label"]


def element_texts(node: Any) -> Iterator[tuple[str, str]]:
    """``(element type, text)`` for every visible text of ``node`` and its children."""
    kind = getattr(node, "type", "") or ""
    proto = getattr(node, "proto", None)
    children = getattr(node, "children", None) or {}
    if kind in _SKIP:
        return
    if kind in _PROSE:
        value = getattr(node, "value", None)
        if isinstance(value, str):
            yield kind, value
    elif kind in {"tab", "expandable", "expander", "popover", "dialog", "form"}:
        for text in _proto_fields(getattr(node, "proto", None), ("label", "title")):
            yield kind, text
    elif kind == "metric":
        for text in _proto_fields(proto, ("label", "help")):
            yield kind, text
    elif kind == "arrow_data_frame" or kind == "dataframe" or kind == "table":
        for text in _dataframe_titles(proto):
            yield "table column", text
    elif kind == "plotly_chart":
        spec = getattr(proto, "spec", "") or getattr(proto, "figure", None)
        if isinstance(spec, str):
            for text in _chart_texts(spec):
                yield "chart", text
    elif proto is not None and kind not in {"block", ""}:
        for text in _proto_fields(proto, ("label", "help", "placeholder", "body")):
            yield kind, text
        options = getattr(proto, "options", None)
        if options is not None and kind in {"selectbox", "multiselect", "radio",
                                            "select_slider", "segmented_control", "pills"}:
            for text in options:
                yield f"{kind} option", text if isinstance(text, str) else str(text)
    for child in children.values():
        yield from element_texts(child)


def english_words(text: str, *, data: Iterable[str] = ()) -> list[str]:
    """Words in ``text`` that are English, after removing code, names, user data and ids."""
    for value in sorted({d for d in data if d}, key=len, reverse=True):
        text = text.replace(value, " ")
    text = _CODE_RE.sub(" ", text)
    text = _ICON_RE.sub(" ", text)
    text = _URL_RE.sub(" ", text)
    text = _ID_RE.sub(" ", text)
    text = _RUN_RE.sub(lambda m: " " if _TECHNICAL_RE.search(m.group()) else m.group(), text)
    text = _PROPER_RE.sub(" ", text)
    return _WORD_RE.findall(text)


def untranslated(root: Any, *, data: Iterable[str] = ()) -> list[str]:
    """``"type: text -> [words]"`` for each visible text that still holds English words."""
    data = list(data)
    found = []
    for kind, text in element_texts(root):
        words = english_words(text, data=data)
        if words:
            found.append(f"{kind}: {text!r} -> {words}")
    return found


def table_cells(node: Any) -> Iterator[str]:
    """The text cells of every table under ``node`` (user data mostly; see ``ui_strings_in``)."""
    if getattr(node, "type", "") in {"arrow_data_frame", "dataframe", "table"}:
        try:
            frame = node.value
        except Exception:  # noqa: BLE001 - an element AppTest cannot decode
            frame = None
        if frame is not None:
            for column in frame.columns:
                yield from (v for v in frame[column].tolist() if isinstance(v, str))
    for child in (getattr(node, "children", None) or {}).values():
        yield from table_cells(child)


def ui_strings_in(root: Any, english: set[str]) -> list[str]:
    """Texts on screen, table cells included, that are exactly an untranslated English UI
    string (a label the page forgot to pass through ``_``)."""
    texts = [text for _, text in element_texts(root)] + list(table_cells(root))
    return sorted({t for t in texts if t in english})
