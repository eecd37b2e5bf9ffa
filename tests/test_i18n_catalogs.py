"""The catalogs cover the source: every string extracted, translated, not fuzzy, placeholders kept.

This is ``scripts/i18n.py check`` as a test, plus checks that the check itself can fail.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages.pofile import read_po, write_po

from studio import i18n

ROOT = Path(__file__).resolve().parent.parent


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("i18n_script", ROOT / "scripts" / "i18n.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load_script()


def test_catalogs_are_complete() -> None:
    problems = script.find_problems()
    assert not problems, "run `make i18n` and translate:\n" + "\n".join(problems)


def test_check_command_passes() -> None:
    done = subprocess.run([sys.executable, "scripts/i18n.py", "check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_both_languages_have_catalogs() -> None:
    for lang in ("en", "zh_CN"):
        assert script.po_path(lang).is_file()
    assert set(script.LANGUAGES) == set(i18n.LANGUAGES)


def test_terminology() -> None:
    """The words every page uses read as Chinese tools (Dify, LlamaBoard) write them."""
    expected = {"Knowledge": "知识库", "Fine-tune": "微调", "Pre-train": "预训练", "Jobs": "任务",
                "Workers": "工作节点", "Agents": "智能体", "Models": "模型", "Settings": "设置"}
    for english, chinese in expected.items():
        assert i18n.translate(english, "zh_CN") == chinese
        assert i18n.translate(english, "en") == english


def _broken_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the catalogs in which the check has something to find."""
    locales = tmp_path / "locales"
    shutil.copytree(script.LOCALES_DIR, locales, ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(script, "LOCALES_DIR", locales)
    path = script.po_path("zh_CN")
    with path.open("rb") as fp:
        catalog = read_po(fp, locale="zh_CN")
    catalog["Jobs"].string = ""
    catalog["Knowledge"].flags.add("fuzzy")
    catalog["Job #{id} is cancelled."].string = "任务 #{job} 已取消。"
    del catalog["Settings"]
    with path.open("wb") as fp:
        write_po(fp, catalog)
    return path


def test_check_finds_untranslated_fuzzy_missing_and_placeholders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_copy(tmp_path, monkeypatch)
    problems = "\n".join(script.find_problems())
    assert "untranslated: Jobs" in problems
    assert "fuzzy (check, then remove the flag): Knowledge" in problems
    assert "placeholders differ (source: {id}; translation: {job})" in problems
    assert "not in the catalog (run `make i18n`): Settings" in problems


def test_update_adds_missing_strings_and_fills_english(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _broken_copy(tmp_path, monkeypatch)
    script.update(script.extract_template())
    with path.open("rb") as fp:
        catalog = read_po(fp, locale="zh_CN")
    assert catalog.get("Settings") is not None and not catalog["Settings"].string
    with script.po_path("en").open("rb") as fp:
        english = read_po(fp, locale="en")
    assert all(m.string == m.id for m in english if m.id)


def test_plural_placeholders() -> None:
    from babel.messages.catalog import Message

    plural = ("One thing needs attention:", "{n} things need attention:")
    assert script._placeholder_problem(Message(plural, ("有 {n} 项需要注意：",)), 1) is None
    assert script._placeholder_problem(Message(plural, ("有几项需要注意：",)), 1)
    # English: the singular form may spell the number out
    assert script._placeholder_problem(Message(plural, plural), 2) is None


def test_calls_inside_fstrings_are_reported(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "page.py").write_text(
        "label = f\"| {_('Part')} | {value} |\"\nok = f\"{_(variable)}\"\n")
    monkeypatch.setattr(script, "SOURCE_DIR", tmp_path)
    assert [w.rsplit(":", 1)[1] for w in script.calls_inside_fstrings()] == ["1"]
