"""Pre-training on a small real corpus (the Python reference topics that ship with CPython in
``pydoc_data``): corpus cleaning and refusal, tokenizers, estimates, a causal model whose
held-out loss falls and which chats through ``studio chat``, a masked model that fills masks
better than chance and embeds for knowledge bases, and resume at the saved step and LR."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from backend.accounts.actor import Actor
from backend.jobs.context import JobCancelled, LocalContext
from backend.services import corpora, pretrain
from backend.services import models as models_service
from backend.training.corpus import CorpusRefused, build_corpus
from backend.training.pretrain import get_lr, train
from backend.training.pretrain_config import (
    PretrainConfig,
    count_parameters,
    estimate,
    preset_config,
)
from backend.training.pretrain_data import prepare_token_files, train_bpe_tokenizer

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = Actor.system()
# small enough for a few seconds per run on one CPU thread
TEST_SHAPE = dict(n_layer=2, n_head=4, n_embd=64, block_size=64, batch_size=8, vocab_size=1000,
                  eval_batches=4, sample_interval=0)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def python_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real English text: CPython's reference topics (pydoc_data), one file per topic."""
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("pydocs")
    for name in sorted(topics)[:40]:
        (folder / f"{name}.txt").write_text(topics[name], encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def docs_corpus(python_docs: Path) -> corpora.CorpusView:
    return corpora.add_corpus(actor=SYSTEM, name=_unique("pydocs"), paths=[python_docs],
                              heldout_fraction=0.1)


@pytest.fixture(scope="module")
def docs_tokens(docs_corpus: corpora.CorpusView):  # type: ignore[no-untyped-def]
    folder = Path(docs_corpus.versions[-1].folder)
    tok_dir = train_bpe_tokenizer(folder, 1000)
    return tok_dir, prepare_token_files(folder, tok_dir)


# --- corpus -------------------------------------------------------------------------------------

def test_corpus_reads_every_format_removes_duplicates_and_counts(tmp_path: Path,
                                                                 python_docs: Path) -> None:
    from pydoc_data.topics import topics

    src = tmp_path / "src"
    src.mkdir()
    texts = [topics[k] for k in sorted(topics)[40:46]]
    (src / "a.txt").write_text(texts[0])
    (src / "copy-of-a.md").write_text(texts[0])  # exact duplicate
    near = texts[1].replace("the", "teh", 1)
    (src / "b.rst").write_text(texts[1])
    (src / "b-edited.txt").write_text(near)  # near duplicate
    (src / "page.html").write_text(f"<html><head><script>var x=1;</script></head><body><nav>menu"
                                   f"</nav><article><p>{texts[2]}</p></article></body></html>")
    (src / "rows.jsonl").write_text(json.dumps({"text": texts[3]}) + "\n"
                                    + json.dumps({"body": "no text field"}) + "\n")
    (src / "zh.txt").write_text("预训练让新模型学习语言本身，一次一个词元，从大量的文本中学习。" * 3)
    (src / "tiny.txt").write_text("too short")
    (src / "program.exe").write_bytes(b"MZ\x00\x01")
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as z:
        z.writestr("inner/c.txt", texts[4])
    stats = build_corpus([src, tmp_path / "more.zip"], tmp_path / "out", heldout_fraction=0.2)
    assert stats.exact_duplicates == 1
    assert stats.near_duplicates == 1
    assert stats.too_short == 1
    assert stats.documents == 6  # a, b, html, jsonl row, zh, zip's c
    assert stats.languages.get("zh") == 1 and stats.languages.get("en") == 5
    assert {s["source"] for s in stats.files_skipped} >= {"program.exe", "rows.jsonl"}
    train_lines = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    val_lines = (tmp_path / "out" / "val.jsonl").read_text().splitlines()
    assert len(train_lines) + len(val_lines) == 6 and len(val_lines) >= 1
    html_doc = next(json.loads(x)["text"] for x in train_lines + val_lines
                    if json.loads(x)["source"] == "page.html")
    assert "var x=1" not in html_doc and "literals are described by" in html_doc
    assert any(json.loads(x)["source"] == "inner/c.txt" for x in train_lines + val_lines)


def test_a_corpus_with_no_usable_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("   \n\n ")
    (tmp_path / "short.md").write_text("hi")
    (tmp_path / "binary.exe").write_bytes(b"\x00\x01")
    name = _unique("empty")
    with pytest.raises(CorpusRefused, match="No usable text") as err:
        corpora.add_corpus(actor=SYSTEM, name=name, paths=[tmp_path])
    assert "binary.exe: unsupported file type .exe" in str(err.value)
    assert not corpora.list_corpora(actor=SYSTEM, search=name)  # nothing half-made
    with pytest.raises(ValueError, match="Give files"):
        corpora.add_corpus(actor=SYSTEM, name=name)


@pytest.mark.slow  # the knowledge base embeds its chunks with MiniLM
def test_a_corpus_from_a_knowledge_base(python_docs: Path, tmp_path: Path) -> None:
    from backend.services import jobs as jobs_service
    from backend.services import knowledge
    from backend.training.corpus import clean_text

    kb = knowledge.create_knowledge_base(actor=SYSTEM, name=_unique("kb-docs"), chunk_size=400,
                                         chunk_overlap=80)
    picked = sorted(p.name for p in python_docs.glob("*.txt") if p.stat().st_size > 2000)[:3]
    job = jobs_service.run_inline(actor=SYSTEM, job_id=knowledge.ingest_files(
        actor=SYSTEM, kb=kb.id, paths=[python_docs / p for p in picked], enqueue=False))
    assert job.status == "succeeded", job.error
    made = corpora.add_corpus(actor=SYSTEM, name=_unique("from-kb"), knowledge_base=kb.name,
                              heldout_fraction=0.3)
    v = made.versions[-1]
    assert v.documents == 3 and v.sources[0]["knowledge_base"] == kb.name
    assert v.stats["files_read"] == 3  # each document of the base was one file
    texts = {json.loads(line)["source"]: json.loads(line)["text"]
             for part in ("train.jsonl", "val.jsonl")
             for line in (Path(v.folder) / part).read_text().splitlines()}
    for name in picked:  # the chunks joined back without their overlap
        original = clean_text((python_docs / name).read_text())
        rebuilt = texts[name]
        assert abs(len(rebuilt) - len(original)) < 0.05 * len(original), name
        assert rebuilt[-60:] == original[-60:]


def test_corpus_versions_and_listing(docs_corpus: corpora.CorpusView, python_docs: Path) -> None:
    v1 = docs_corpus.versions[-1]
    assert v1.documents >= 30 and v1.heldout_documents >= 3
    assert v1.stats["languages"] == {"en": v1.documents}
    again = corpora.add_corpus(actor=SYSTEM, name=docs_corpus.name,
                               paths=[python_docs / "assert.txt"])
    assert [v.version for v in again.versions] == [1, 2]
    assert corpora.get_version(actor=SYSTEM, corpus=docs_corpus.name).version == 2
    assert corpora.get_version(actor=SYSTEM, corpus=docs_corpus.name, version=1).id == v1.id
    assert docs_corpus.name in [c.name for c in corpora.list_corpora(actor=SYSTEM,
                                                                    search="pydocs")]


# --- tokenizer, estimates -------------------------------------------------------------------------

def test_tokenizers_compared_and_token_files_reused(docs_corpus: corpora.CorpusView,
                                                    docs_tokens, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    tok_dir, files = docs_tokens
    folder = Path(docs_corpus.versions[0].folder)
    assert files.dtype == "uint16" and files.train_tokens > 20_000 and files.val_tokens > 500
    before = files.train.stat().st_mtime_ns
    assert prepare_token_files(folder, tok_dir).train.stat().st_mtime_ns == before  # reused
    tiny = models_service.register_produced_model(actor=SYSTEM, name=_unique("tok-src"),
                                                  path=tiny_model_dir, lineage={})
    rows = pretrain.compare_tokenizers(actor=SYSTEM, corpus=docs_corpus.id, version=1,
                                       vocab_size=1000, tokenizer_model=tiny.name)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"BPE 1000", tiny.name, "bytes"}
    bpe = by_name["BPE 1000"]
    assert "".join(bpe["pieces"]) == corpora.corpus_sample(actor=SYSTEM, corpus=docs_corpus.id,
                                                           version=1, chars=300)
    # a BPE trained on this corpus compresses it better than bytes
    assert bpe["chars_per_token"] > 2 * by_name["bytes"]["chars_per_token"]


@pytest.mark.parametrize("objective", ["causal", "masked"])
def test_parameter_count_matches_the_built_model(objective: str) -> None:
    from transformers import AutoTokenizer

    from backend.llm.tiny import build_tokenizer
    from backend.training.pretrain import build_model

    tok = build_tokenizer(vocab_size=600)
    if objective == "masked":
        tok.add_special_tokens({"mask_token": "<mask>"})
    assert AutoTokenizer is not None
    for preset in ("tiny", "small"):
        cfg = preset_config(preset, objective=objective)
        model = build_model(cfg, tok)
        actual = sum(p.numel() for p in model.parameters())
        assert count_parameters(cfg, len(tok))[0] == actual, preset


def test_estimates_and_warnings() -> None:
    base = preset_config("base")
    e = estimate(base, devices=["cuda: NVIDIA H100 80GB HBM3"])
    assert 100e6 < e.parameters < 150e6
    assert e.flops_per_token > 6 * e.parameters
    assert e.optimizer_gb == pytest.approx(2 * e.weights_gb, rel=1e-3)
    assert e.fits is True and e.seconds and e.seconds > 0
    medium = preset_config("medium", batch_size=64, block_size=4096)
    crowded = estimate(medium, devices=["cuda: Tesla T4"])
    assert crowded.fits is False and "GB per GPU" in crowded.warnings[0]["text"]
    assert estimate(preset_config("tiny"), devices=[]).warnings  # no gpu worker: said so
    assert 1.5e6 < estimate(preset_config("tiny"), devices=["cpu"]).parameters < 3e6
    assert 15e6 < estimate(preset_config("small"), devices=["cpu"]).parameters < 30e6
    assert 300e6 < estimate(preset_config("medium"), devices=["cpu"]).parameters < 420e6
    with pytest.raises(ValueError, match="multiple of the number of heads"):
        preset_config("custom", n_embd=100, n_head=3).validate()
    with pytest.raises(ValueError, match="Unknown preset"):
        preset_config("huge")


def test_plan_run_with_a_registered_tokenizer(tiny_model_dir: Path) -> None:
    m = models_service.register_produced_model(actor=SYSTEM, name=_unique("plan-tok"),
                                               path=tiny_model_dir, lineage={})
    plan = pretrain.plan_run(actor=SYSTEM, preset="tiny", tokenizer_model=m.name)
    from transformers import AutoTokenizer

    assert plan.vocab_size == len(AutoTokenizer.from_pretrained(str(tiny_model_dir)))


# --- training -----------------------------------------------------------------------------------

def test_resume_continues_at_the_saved_step_with_its_learning_rate(docs_tokens, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                   ) -> None:
    tok_dir, files = docs_tokens
    cfg = PretrainConfig(**{**TEST_SHAPE, "eval_batches": 2}, max_steps=16, warmup_steps=5,
                         eval_interval=8, checkpoint_interval=100)

    class StopAt(LocalContext):
        def metric(self, name: str, value: float, step: int) -> None:
            super().metric(name, value, step)
            if name == "loss" and step == 7:
                self.cancel_event.set()

    first = StopAt(run_dir=tmp_path / "run1")
    with pytest.raises(JobCancelled):
        train(cfg, tokens=files, tokenizer_dir=tok_dir, out_dir=tmp_path / "m1", ctx=first)
    import torch

    saved = torch.load(tmp_path / "run1" / "ckpt.pt", weights_only=False)
    assert saved["step"] == 7 and saved["data_position"]["tokens_seen"] == 7 * cfg.tokens_per_step
    assert set(saved) >= {"model", "optimizer", "config", "best_val_loss", "initial_eval_loss"}

    second = LocalContext(run_dir=tmp_path / "run2", resume_dir=tmp_path / "run1")
    result = train(cfg, tokens=files, tokenizer_dir=tok_dir, out_dir=tmp_path / "m2", ctx=second)
    assert result.resumed_from == 7 and result.steps == 16
    lrs = [(s, v) for n, s, v in second.metrics if n == "lr"]
    assert lrs[0] == (8, pytest.approx(get_lr(7, cfg)))  # where it left off: past the warmup
    assert lrs[0][1] > get_lr(0, cfg) * 4
    assert [s for s, _ in lrs] == list(range(8, 17))
    assert not [m for m in second.metrics if m[0] == "eval_loss" and m[1] == 0]  # no fresh start
    assert result.initial_eval_loss == pytest.approx(saved["initial_eval_loss"], abs=1e-4)
    RESUMED[cfg.max_steps] = result.final_eval_loss


RESUMED: dict[int, float] = {}


@pytest.mark.slow
def test_a_resumed_run_ends_where_an_unbroken_one_does(docs_tokens, tmp_path: Path  # type: ignore[no-untyped-def]
                                                       ) -> None:
    """Same batches (drawn by step), same schedule: the data position really is the step."""
    tok_dir, files = docs_tokens
    cfg = PretrainConfig(**{**TEST_SHAPE, "eval_batches": 2}, max_steps=16, warmup_steps=5,
                         eval_interval=8, checkpoint_interval=100)
    if cfg.max_steps not in RESUMED:
        pytest.skip("runs after test_resume_continues_at_the_saved_step_with_its_learning_rate")
    straight = LocalContext(run_dir=tmp_path / "run3")
    unbroken = train(cfg, tokens=files, tokenizer_dir=tok_dir, out_dir=tmp_path / "m3",
                     ctx=straight)
    assert unbroken.final_eval_loss == pytest.approx(RESUMED[cfg.max_steps], abs=2e-3)


def _run_cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_pretrains_a_causal_model_that_learns_and_chats(python_docs: Path,
                                                             studio_env: dict[str, str]) -> None:
    env = {**studio_env, "PYTHONPATH": str(ROOT)}
    corpus = _unique("cli-docs")
    added = _run_cli("corpora", "add", corpus, str(python_docs), "--heldout", "0.1", "--json",
                     env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["versions"][0]["documents"] >= 30
    shown = _run_cli("corpora", "list", "--json", env=env)
    assert corpus in [c["name"] for c in json.loads(shown.stdout)]
    name = _unique("docs-gpt")
    run = _run_cli("pretrain", "run", "--corpus", corpus, "--steps", "80", "--vocab-size", "1000",
                   "--layers", "2", "--width", "64", "--heads", "4", "--context", "64",
                   "--lr", "0.003", "--eval-interval", "40", "--name", name, "--wait", "--json",
                   env=env)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["status"] == "succeeded" and out["registered_model"] == name
    assert out["final_eval_loss"] < out["initial_eval_loss"] - 1.0, out
    model = models_service.get_model(actor=SYSTEM, model=name)
    assert model.capabilities == ["chat"]
    assert model.lineage and model.lineage["corpus"] == corpus
    assert model.lineage["corpus_version"] == 1 and model.lineage["job_id"] == out["job_id"]
    from backend.services import jobs as jobs_service
    from backend.services.lineage import chain_text, lineage_chain

    finished = jobs_service.get_job(actor=SYSTEM, job_id=out["job_id"])
    assert finished.stage == "done" and finished.title == f"Pre-train {name}"
    assert chain_text(lineage_chain(actor=SYSTEM, model=name)) == (
        f"corpus {corpus} v1 → pre-train job #{out['job_id']} → model {name}")
    chat = _run_cli("chat", name, "What is a for statement?", "--json", "--placement", "local",
                    "-n", "12", "--seed", "1", env=env, timeout=300)
    assert chat.returncode == 0, chat.stderr[-2000:]
    reply = json.loads(chat.stdout)
    assert reply["text"].strip() and reply["usage"]["completion_tokens"] > 0
    # ... and the fine-tune stage takes it as a base (a local Llama with a chat template)
    from backend.services import finetune

    info = finetune.base_model_info(actor=SYSTEM, model=name)
    assert info.model_type == "llama" and info.context_length == 64 and info.chat_template


def test_masked_model_fills_masks_and_embeds(docs_corpus: corpora.CorpusView) -> None:
    import numpy as np
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from backend.jobs.runner import run_job
    from backend.services import jobs as jobs_service
    from backend.training.pretrain import mask_tokens
    from backend.training.pretrain_data import token_memmap

    name = _unique("docs-bert")
    job = pretrain.launch_pretrain(
        actor=SYSTEM, corpus=docs_corpus.id, version=1, objective="masked", name=name,
        overrides={**TEST_SHAPE, "max_steps": 50, "warmup_steps": 5, "eval_interval": 25,
                   "learning_rate": 2e-3}, enqueue=False)
    run_job(job.id)
    outcome = pretrain.run_result(actor=SYSTEM, job_id=job.id)
    assert outcome["status"] == "succeeded", jobs_service.get_job(actor=SYSTEM, job_id=job.id).error
    assert outcome["final_eval_loss"] < outcome["initial_eval_loss"] - 0.5
    view = models_service.get_model(actor=SYSTEM, model=name)
    assert view.capabilities == ["embeddings"]

    # fill masks on held-out text: top-1 accuracy far above chance (1 / vocabulary)
    tok = AutoTokenizer.from_pretrained(view.source)
    model = AutoModelForMaskedLM.from_pretrained(view.source).eval()
    key = next(iter(corpora.get_version(actor=SYSTEM, corpus=docs_corpus.id,
                                        version=1).token_files.values()))
    val = token_memmap(Path(key["val"]), key["dtype"])
    windows = torch.from_numpy(np.stack([val[i:i + 64] for i in range(0, 64 * 16, 64)])
                               .astype(np.int64))
    inputs, labels = mask_tokens(windows, mask_id=tok.mask_token_id, vocab_size=len(tok),
                                 prob=0.15, special_ids=tok.all_special_ids, seed=5)
    with torch.no_grad():
        guesses = model(input_ids=inputs).logits.argmax(-1)
    chosen = labels != -100
    accuracy = (guesses[chosen] == labels[chosen]).float().mean().item()
    assert accuracy > 20 / len(tok), accuracy

    # registered as an embedding model: the knowledge-base embedder loads it (mean pooling)
    emb = models_service.embedder(actor=SYSTEM, model=name)
    vecs = emb.embed(["The for statement iterates over a sequence.", "Assert statements"])
    assert vecs.shape == (2, TEST_SHAPE["n_embd"]) and emb.dimension() == TEST_SHAPE["n_embd"]
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert not math.isnan(float(vecs.sum()))

    # ... and a knowledge base indexes and searches with it
    from backend.services import knowledge

    kb = knowledge.create_knowledge_base(actor=SYSTEM, name=_unique("kb-bert"), embedder=name)
    assert kb.index["dim"] == TEST_SHAPE["n_embd"]
    docs = Path(docs_corpus.versions[0].folder)
    first = json.loads((docs / "train.jsonl").read_text().splitlines()[0])
    ingest = jobs_service.run_inline(actor=SYSTEM, job_id=knowledge.ingest_files(
        actor=SYSTEM, kb=kb.id, uploads=[("doc.txt", first["text"].encode())], enqueue=False))
    assert ingest.status == "succeeded", ingest.error
    hits = knowledge.search(actor=SYSTEM, kb=kb.id, query=first["text"][:80], mode="vector", k=3)
    assert hits and hits[0].source == "doc.txt"


@pytest.mark.gpu
def test_gpu_bf16_compile_and_mfu(docs_tokens, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tok_dir, files = docs_tokens
    cfg = PretrainConfig(**{**TEST_SHAPE, "n_embd": 256, "block_size": 128}, max_steps=30,
                         warmup_steps=5, eval_interval=30, device="cuda", compile=True)
    ctx = LocalContext(run_dir=tmp_path / "run")
    result = train(cfg, tokens=files, tokenizer_dir=tok_dir, out_dir=tmp_path / "m", ctx=ctx)
    assert "bfloat16" in ctx.logs[0]
    assert result.mfu is not None and result.mfu > 0
    assert [m for m in ctx.metrics if m[0] == "mfu"]
    assert result.final_eval_loss < result.initial_eval_loss


@pytest.mark.gpu
def test_gpu_several_devices_through_torchrun(docs_tokens, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from backend.training.pretrain import launch_distributed

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    tok_dir, files = docs_tokens
    cfg = PretrainConfig(**TEST_SHAPE, max_steps=20, warmup_steps=2, eval_interval=20,
                         grad_accum=2, device="cuda")
    ctx = LocalContext(run_dir=tmp_path / "run")
    ctx.run_dir.mkdir()
    result = launch_distributed(cfg, tokens=files, tokenizer_dir=tok_dir, out_dir=tmp_path / "m",
                                ctx=ctx, nproc=2)
    assert result.final_eval_loss < result.initial_eval_loss
    assert [m for m in ctx.metrics if m[0] == "loss"]
    assert os.path.exists(tmp_path / "m" / "config.json")


def test_corpora_are_private_to_their_workspace(docs_corpus: corpora.CorpusView) -> None:
    from backend.accounts.actor import Role
    from tests.accounts_helpers import actor_of, make_user, make_workspace

    ws = make_workspace("pt-other")
    other = actor_of(make_user(Role.builder, [ws], prefix="pt-other"), ws)
    assert docs_corpus.name not in [c.name for c in corpora.list_corpora(actor=other)]
    with pytest.raises(corpora.CorpusNotFound):
        corpora.get_corpus(actor=other, corpus=docs_corpus.id)
    with pytest.raises(corpora.CorpusNotFound):
        pretrain.launch_pretrain(actor=other, corpus=docs_corpus.id, enqueue=False)
