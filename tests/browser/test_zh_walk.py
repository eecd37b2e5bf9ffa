"""Story: a Chinese-speaking admin switches the studio to 中文 in the sidebar and walks every page
(every tab of it too) with real content in place: a model the studio pre-trained and one it
fine-tuned from that (so a lineage chain), their jobs (titles the system wrote), a knowledge
base and a corpus. No English may be left on screen but names, code and proper nouns.

The detector reads the visible text of the main area and the sidebar, element by element,
leaves out code, icons, the names seeded here and the proper nouns of ``tests/i18n_walk.py``,
and fails on a run of three or more English words, or on a line that is exactly an English
catalog entry (a single word such as "Upload" that missed its translation).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import ui
from tests.i18n_walk import _ID_RE, _PROPER_RE, _RUN_RE, _TECHNICAL_RE, _URL_RE

ROOT = Path(__file__).resolve().parents[2]
FILES = ("printers.txt", "parking.txt", "canteen.txt")
SEEDED = ("zh-gpt", "zh-faq", "zh-corpus", "zh-kb", "faq", "admin", *FILES)
# visible text inside these is code, an icon's ligature name or a script, never prose
_SKIP_SELECTOR = ('code, pre, script, style, [data-testid="stIconMaterial"], '
                  '[data-testid="stCode"], [data-testid="stCodeBlock"], .stCode, '
                  '[data-testid="stJson"], [data-testid="stIconEmoji"]')
_VISIBLE_TEXTS_JS = """(args) => {
  const [selectors, skip] = args;
  const out = [];
  for (const sel of selectors) {
    for (const root of document.querySelectorAll(sel)) {
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      let n;
      while ((n = walker.nextNode())) {
        const el = n.parentElement;
        if (!el || el.closest(skip)) continue;
        if (!el.checkVisibility({visibilityProperty: true})) continue;
        const t = n.nodeValue.replace(/\\s+/g, ' ').trim();
        if (t) out.push(t);
      }
      // a placeholder shows while its box is empty (a select box shows its choice instead)
      root.querySelectorAll('input[type=text], textarea, input:not([type])').forEach((el) => {
        if (!el.checkVisibility() || !el.placeholder || el.value) return;
        const select = el.closest('[data-baseweb="select"]');
        if (select && select.innerText.trim()) return;
        out.push(el.placeholder.trim());
      });
    }
  }
  return out;
}"""
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]+\b")  # TXT, JSONL, MD: file types and abbreviations
_ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’]*(?:[ ,;:!?()\-]+[A-Za-z][A-Za-z'’]*){2,}")


def _english_catalog() -> set[str]:
    """English msgids whose Chinese differs (a line equal to one of them was not translated)."""
    from studio.i18n import translate

    pot = (ROOT / "studio" / "locales" / "studio.pot").read_text()
    ids = set()
    for m in re.finditer(r'^msgid ((?:".*"\n)+)', pot, re.M):
        text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace('\\"', '"')
        if text and re.search(r"[A-Za-z]{2}", text) and translate(text, "zh_CN") != text:
            ids.add(text)
    return ids


def leftover_english(texts: list[str], catalog: set[str]) -> list[str]:
    """The texts that still read as English."""
    found = []
    for text in texts:
        if text in catalog and not _PROPER_RE.fullmatch(text):
            found.append(text)
            continue
        cleaned = text
        for name in FILES:  # a passage of a seeded document: the document's own words
            cleaned = re.sub(re.escape(name) + ".*", " | ", cleaned)
        for value in sorted(SEEDED, key=len, reverse=True):
            cleaned = cleaned.replace(value, " | ")
        cleaned = _ACRONYM.sub(" | ", cleaned)
        cleaned = _URL_RE.sub(" | ", cleaned)
        cleaned = _ID_RE.sub(" | ", cleaned)
        cleaned = _RUN_RE.sub(lambda m: " | " if _TECHNICAL_RE.search(m.group()) else m.group(),
                              cleaned)
        cleaned = _PROPER_RE.sub(" | ", cleaned)
        if _ENGLISH_RUN.search(cleaned):
            found.append(text)
    return found


def _seed(studio: Any, folder: Path) -> dict[str, Any]:
    """Real content made the way a user makes it through the CLI (fast, few steps)."""
    docs = folder / "docs"
    docs.mkdir()
    topics = {
        "printers.txt": "The printers on the third floor print on both sides. Call the help desk "
                        "when the toner runs out; the spare toner is kept in room 301.",
        "parking.txt": "Visitors park on level two of the garage. Staff park on level three and "
                       "show their badge at the gate. Bicycles go in the yard behind building B.",
        "canteen.txt": "The canteen opens at half past eleven and closes at two. Soup of the day "
                       "is written on the board next to the entrance, with its price.",
    }
    for name, text in topics.items():
        (docs / name).write_text((text + "\n\n") * 6)
    started = time.monotonic()
    studio.cli("corpora", "add", "zh-corpus", str(docs), "--heldout", "0.2")
    pre = studio.cli_json("pretrain", "run", "--corpus", "zh-corpus", "--steps", "4",
                          "--vocab-size", "300", "--layers", "1", "--width", "32", "--heads", "2",
                          "--context", "64", "--batch-size", "4", "--eval-interval", "2",
                          "--name", "zh-gpt", "--wait")
    assert pre["status"] == "succeeded", pre
    faq = folder / "faq.jsonl"
    faq.write_text("\n".join(json.dumps({"instruction": q, "output": a}) for q, a in [
        ("Where do visitors park?", "On level two."),
        ("When does the canteen open?", "At half past eleven."),
        ("Where is the spare toner?", "In room 301."),
        ("Where do bicycles go?", "In the yard behind building B."),
    ]))
    tuned = studio.cli_json("finetune", "run", "--base", "zh-gpt", "--data", str(faq),
                            "--epochs", "1", "--batch-size", "2", "--max-length", "64",
                            "--val-fraction", "0", "--name", "zh-faq", "--wait")
    assert tuned["status"] == "succeeded", tuned
    studio.cli("kb", "create", "zh-kb")
    studio.cli("kb", "ingest", "zh-kb", str(docs))  # indexed while the walk goes on
    print(f"seeded in {time.monotonic() - started:.0f} s")
    return {"pretrain": pre, "finetune": tuned}


@pytest.fixture(scope="module")
def seeded(studio: Any, admin: tuple[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _seed(studio, tmp_path_factory.mktemp("zh-seed"))


def _texts(page: Any) -> list[str]:
    return list(page.evaluate(_VISIBLE_TEXTS_JS, [['[data-testid="stMain"]',
                                                  '[data-testid="stSidebar"]'], _SKIP_SELECTOR]))


def _tabs(page: Any) -> list[Any]:
    return ui.main(page).get_by_role("tab").filter(visible=True).all()


def test_every_page_in_chinese(studio: Any, admin: tuple[str, str], seeded: dict[str, Any],
                               page: Any) -> None:
    catalog = _english_catalog()
    ui.goto(page, studio)
    ui.login(page, *admin)
    ui.choose(page, "🌐 Language", "简体中文")
    page.get_by_text("语言").first.wait_for()
    ui.shot(page, "chinese")

    problems: dict[str, list[str]] = {}

    def check(where: str) -> None:
        ui.settle(page)
        bad = leftover_english(_texts(page), catalog)
        if bad:
            problems[where] = sorted(set(bad))

    titles = ui.nav_titles(page)
    assert "模型" in titles and "任务" in titles, titles
    for title in titles:
        ui.nav(page, title)
        check(title)
        for i, tab_ in enumerate(_tabs(page)):
            if i == 0:
                continue  # the first tab is what the page opened on
            name = tab_.inner_text().strip()
            tab_.click()
            check(f"{title} / {name}")

    # the models the studio made say where they came from, as a chain in Chinese
    ui.nav(page, "模型")  # zh-faq comes first by name: its details are open
    text = ui.text_of(page)
    pre_job, ft_job = seeded["pretrain"]["job_id"], seeded["finetune"]["id"]
    assert (f"语料库 zh-corpus v1 → 预训练任务 #{pre_job} → 模型 zh-gpt → "
            f"LoRA（数据集 faq v1，任务 #{ft_job}） → 模型 zh-faq") in text, text
    assert "{'" not in text and "recipe" not in text  # no raw dict
    check("模型 / zh-faq")

    # the jobs the system launched show their titles in Chinese
    ui.nav(page, "任务")
    ui.choose(page, "查看任务", f"#{pre_job} 预训练 zh-gpt")
    text = ui.text_of(page)
    assert "预训练 zh-gpt" in text, text
    assert "Registering the model" not in text and "正在注册模型" not in text
    check("任务 / pre-train")

    print("\n".join(f"{where}: {texts}" for where, texts in problems.items()))
    assert not problems, "English left on the pages:\n" + "\n".join(
        f"  {where}: {texts}" for where, texts in problems.items())
