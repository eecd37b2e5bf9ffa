"""Where a local model comes from: a folder on disk, or a hub id (downloaded by transformers
where the machine has network; never in tests). Checks here are cheap: no weights are read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass(frozen=True)
class LocalSource:
    kind: Literal["folder", "hub"]
    value: str  # absolute folder path, or the hub id


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~", ".\\")) or "\\" in s or s.count("/") > 1


def resolve_local_source(
    source: str, *, source_type: Literal["folder", "hub"] | None = None, embeddings: bool = False
) -> LocalSource:
    """Validate a folder path or hub id and say plainly what is wrong with it."""
    s = (source or "").strip()
    if not s:
        raise ValueError("Give a model folder path or a Hugging Face hub id.")
    path = Path(s).expanduser()
    if source_type == "folder" or (source_type is None and (path.exists() or _looks_like_path(s))):
        return LocalSource("folder", str(check_model_folder(path, embeddings=embeddings)))
    if not HUB_ID.match(s):
        raise ValueError(
            f"{s!r} is neither an existing folder nor a hub id like 'Qwen/Qwen2.5-0.5B-Instruct'."
        )
    return LocalSource("hub", s)


def check_model_folder(path: Path, *, embeddings: bool = False) -> Path:
    """The folder must exist and hold a transformers config and a tokenizer."""
    path = path.expanduser().resolve()
    if not path.exists():
        raise ValueError(f"No folder at {path}. Check the path (it is read on the worker's machine).")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; give the folder that holds config.json.")
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ValueError(
            f"{path} has no config.json: it is not a Hugging Face model folder "
            "(save one with model.save_pretrained(folder))."
        )
    if not embeddings and not any((path / f).exists() for f in TOKENIZER_FILES):
        raise ValueError(
            f"{path} has no tokenizer (tokenizer.json or tokenizer_config.json). "
            "Save it next to the model with tokenizer.save_pretrained(folder)."
        )
    return path
