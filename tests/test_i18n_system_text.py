"""What the system writes (job titles, a model's lineage) is kept as a template with its values
and shown in the reader's language, while the CLI and the API keep the English text."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from backend.accounts.actor import Actor
from backend.jobs import titles
from backend.services import corpora, jobs, lineage
from backend.services import models as models_service
from studio.i18n import translate, using_language

SYSTEM = Actor.system()
_FIELDS = re.compile(r"\{(\w+)\}")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("template", titles.TEMPLATES + lineage.TEMPLATES)
def test_every_system_template_has_a_chinese_translation_with_the_same_fields(
        template: str) -> None:
    zh = translate(template, "zh_CN")
    assert zh != template, f"no zh_CN translation for {template!r}"
    assert sorted(_FIELDS.findall(zh)) == sorted(_FIELDS.findall(template))
    assert re.search(r"[\u4e00-\u9fff]", zh)


def test_a_system_title_is_stored_as_its_template_and_shown_in_the_readers_language() -> None:
    from studio.components.jobs_widgets import job_title

    job = jobs.submit_job(actor=SYSTEM, kind="demo", params={"steps": 1, "step_seconds": 0},
                          title_template=titles.PRETRAIN, title_args={"name": "wiki-gpt"},
                          enqueue=False)
    # the English text for the CLI, the API and search
    assert job.title == "Pre-train wiki-gpt"
    assert [j.id for j in jobs.list_jobs(actor=SYSTEM, search="Pre-train wiki-gpt")] == [job.id]
    with using_language("zh_CN"):
        assert job_title(job) == "预训练 wiki-gpt"
    with using_language("en"):
        assert job_title(job) == "Pre-train wiki-gpt"
    # a retry keeps the template, so it too shows translated
    jobs.cancel_job(actor=SYSTEM, job_id=job.id)
    again = jobs.retry_job(actor=SYSTEM, job_id=job.id)
    assert (again.title_template, again.title_args) == (titles.PRETRAIN, {"name": "wiki-gpt"})
    with using_language("zh_CN"):
        assert job_title(jobs.get_job(actor=SYSTEM, job_id=again.id)) == "预训练 wiki-gpt"
    jobs.cancel_job(actor=SYSTEM, job_id=again.id)
    # a person's own title shows as written, in any language
    own = jobs.submit_job(actor=SYSTEM, kind="demo", title="My nightly run", enqueue=False)
    assert own.title_template is None
    with using_language("zh_CN"):
        assert job_title(own) == "My nightly run"
    jobs.cancel_job(actor=SYSTEM, job_id=own.id)


def test_knowledge_jobs_get_translatable_titles(tmp_path: Path) -> None:
    from backend.services import knowledge
    from studio.components.jobs_widgets import job_title

    kb = knowledge.create_knowledge_base(actor=SYSTEM, name=_unique("kb-titles"))
    doc = tmp_path / "parking.txt"
    doc.write_text("Visitors park on level two of the garage. " * 5)
    ingest = jobs.get_job(actor=SYSTEM, job_id=knowledge.ingest_files(
        actor=SYSTEM, kb=kb.id, paths=[doc], enqueue=False))
    reindex = jobs.get_job(actor=SYSTEM, job_id=knowledge.reindex(actor=SYSTEM, kb=kb.id,
                                                                  enqueue=False))
    assert ingest.title == f"Add parking.txt to {kb.name}"
    assert reindex.title == f"Re-index {kb.name}"
    with using_language("zh_CN"):
        assert job_title(ingest) == f"向 {kb.name} 添加 parking.txt"
        assert job_title(reindex) == f"重建 {kb.name} 的索引"
    for j in (ingest, reindex):
        jobs.cancel_job(actor=SYSTEM, job_id=j.id)


def test_lineage_reads_as_a_chain_from_corpus_to_fine_tuned_model(tiny_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    from studio.components.lineage import chain_label

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"page{i}.txt").write_text(f"Page {i} tells how the printer on floor {i} works.")
    corpus = corpora.add_corpus(actor=SYSTEM, name=_unique("wiki"), paths=[docs])
    assert corpus.versions[-1].stats["files_read"] == 3
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_model_dir, folder_a)
    shutil.copytree(tiny_model_dir, folder_b)
    pre = models_service.register_produced_model(
        actor=SYSTEM, name=_unique("wiki-gpt"), path=folder_a,
        lineage={"recipe": "pretrain", "objective": "causal", "corpus": corpus.name,
                 "corpus_id": corpus.id, "corpus_version": 1, "job_id": 3,
                 "tokenizer_dir": "/srv/somewhere", "steps": 80})
    tuned = models_service.register_produced_model(
        actor=SYSTEM, name=_unique("faq-bot"), path=folder_b,
        lineage={"base_model": pre.name, "base_model_id": pre.id, "dataset": "faq",
                 "dataset_id": 1, "dataset_version": 2, "method": "lora", "job_id": 5,
                 "adapter_path": "/srv/adapter"})
    steps = lineage.lineage_chain(actor=SYSTEM, model=tuned.name)
    english = lineage.chain_text(steps)
    assert english == (f"corpus {corpus.name} v1 → pre-train job #3 → model {pre.name} → "
                       f"LoRA (dataset faq v2, job #5) → model {tuned.name}")
    with using_language("zh_CN"):
        assert chain_label(steps) == (f"语料库 {corpus.name} v1 → 预训练任务 #3 → 模型 {pre.name} → "
                                      f"LoRA（数据集 faq v2，任务 #5） → 模型 {tuned.name}")
    # the base removed since: its recorded name stands in
    models_service.remove_model(actor=SYSTEM, model=pre.id)
    assert lineage.chain_text(lineage.lineage_chain(actor=SYSTEM, model=tuned.id)) == (
        f"model {pre.name} → LoRA (dataset faq v2, job #5) → model {tuned.name}")
    models_service.remove_model(actor=SYSTEM, model=tuned.id)
    corpora.delete_corpus(actor=SYSTEM, corpus=corpus.id)


def test_a_model_from_outside_is_a_chain_of_itself(tiny_model_dir: Path) -> None:
    m = models_service.add_local_model(actor=SYSTEM, name=_unique("outside"),
                                       source=str(tiny_model_dir))
    try:
        assert lineage.chain_text(lineage.lineage_chain(actor=SYSTEM, model=m.id)) == \
            f"model {m.name}"
    finally:
        models_service.remove_model(actor=SYSTEM, model=m.id)


def test_corpus_from_given_documents_counts_them_as_files_read(tmp_path: Path) -> None:
    """A knowledge base's documents reach the corpus as text: each one is a file read."""
    from backend.training.corpus import Document, build_corpus

    given = [Document(f"doc{i}.html", f"Document number {i} explains the parking rules.")
             for i in range(30)]
    stats = build_corpus([], tmp_path / "out", extra_documents=given)
    assert stats.files_read == 30 and stats.documents_given == 30
    (tmp_path / "one.txt").write_text("One more file about the printers on the third floor.")
    stats = build_corpus([tmp_path / "one.txt"], tmp_path / "out2", extra_documents=given[:5])
    assert stats.files_read == 6


def test_streamlits_own_words_are_rewritten_into_the_readers_language() -> None:
    """Streamlit writes them in English in the browser; the page's script swaps them with these
    rules (JavaScript's replace; checked here with Python's)."""
    from studio.components.streamlit_text import rules

    def swap(lang: str, text: str) -> str:
        for pattern, replacement in rules(lang):
            if re.match(pattern, text):
                return re.sub(pattern, re.sub(r"\$(\d)", r"\\\1", replacement), text)
        return text

    assert swap("zh_CN", "Upload") == "上传"
    assert swap("zh_CN", "200MB per file") == "每个文件不超过 200MB"
    assert swap("zh_CN", "File must be 200.0MB or smaller.") == "文件不能超过 200.0MB。"
    assert swap("zh_CN", "upload") == "upload"  # the icon's name is not a word on the page
    assert swap("en", "每个文件不超过 200MB") == "200MB per file"  # and back after a switch
    assert swap("en", "Upload") == "Upload"
    assert swap("zh_CN", "Choose an option") == "请选择"
