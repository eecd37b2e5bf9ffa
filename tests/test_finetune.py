"""Fine-tuning on tiny real models: datasets checked line by line, a LoRA fine-tune that makes a
tiny model reproduce its 20 answers through `studio chat` (and merged + reloaded still does),
DPO raising the preference margin, resume after a cancel at the same step and data position,
packing, and the CLI's JSON outcome."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from typer.testing import CliRunner

from backend.accounts.actor import Actor
from backend.jobs.context import JobCancelled, LocalContext
from backend.services import datasets as datasets_service
from backend.services import finetune as finetune_service
from backend.services import models as models_service
from backend.training import datasets as ds
from backend.training.finetune import FinetuneInputs, run_finetune
from backend.training.finetune_config import FinetuneConfig
from backend.training.finetune_data import IGNORE, encode_chat

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = Actor.system()

COLOURS = ["red", "orange", "yellow", "green", "blue", "violet", "black", "white", "grey", "brown"]
FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "melon"]
JOBS = ["doctor", "teacher", "engineer", "farmer", "writer", "painter", "singer", "driver", "pilot", "nurse"]


def qa_pairs(n: int = 20) -> list[dict[str, str]]:
    return [{"instruction": f"What does {JOBS[i % 10]} {i} like?",
             "output": f"The {COLOURS[(i * 3) % 10]} {FRUITS[(i * 7) % 10]}."} for i in range(n)]


def chat_records(pairs: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": p["instruction"]},
                          {"role": "assistant", "content": p["output"]}]} for p in pairs]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def tiny_base(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model registered under a name of its own."""
    folder = tmp_path_factory.mktemp("ft-base") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    name = unique("ft-base")
    models_service.register_produced_model(actor=SYSTEM, name=name, path=folder,
                                           lineage={"recipe": "tiny"})
    return name


def studio(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


# --- datasets ------------------------------------------------------------------------------

MALFORMED = "\n".join([
    json.dumps({"instruction": "ok", "output": "fine"}),                    # 1 good
    '{"instruction": "broken", "output": ',                                 # 2 bad JSON
    json.dumps({"instruction": "no answer field"}),                         # 3 missing field
    json.dumps({"instruction": "empty", "output": "   "}),                  # 4 empty answer
    "",
    json.dumps({"messages": [{"role": "assistant", "content": "hi"},        # 6 wrong order
                             {"role": "user", "content": "hello"}]}),
    json.dumps({"instruction": "long " * 300, "output": "x"}),              # 7 too long
    json.dumps({"instruction": "ok", "output": "fine"}),                    # 8 duplicate of 1
])


def test_every_malformed_line_is_reported_by_number(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from backend.training.finetune_data import count_tokens

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    parsed = ds.parse_dataset(MALFORMED, kind="jsonl", format="alpaca",
                              count_tokens=lambda r: count_tokens(tok, r), max_length=128)
    found = {i.line: i.message for i in parsed.issues}
    assert set(found) == {2, 3, 4, 6, 7}
    assert found[2].startswith("bad JSON")
    assert "missing field 'output'" in found[3]
    assert "empty answer" in found[4]
    assert "missing field 'messages'" in found[6] or "instruction" in found[6]
    assert "over the maximum length" in found[7] and "> 128" in found[7]
    assert parsed.duplicates == [(8, 1)]
    # chat form: role order, an empty assistant turn, a bad role
    chat = "\n".join(json.dumps(r) for r in [
        {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
        {"messages": [{"role": "robot", "content": "q"}]},
        {"messages": [{"role": "user", "content": "q"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"},
                      {"role": "assistant", "content": "a2"}]},
    ])
    parsed = ds.parse_dataset(chat, kind="jsonl", format="chat")
    found = {i.line: i.message for i in parsed.issues}
    assert "wrong role order" in found[1] and "empty answer" in found[2]
    assert "role 'robot'" in found[3] and "last message must be the assistant" in found[4]
    assert 5 not in found and len(parsed.examples) == 1
    # preference form and CSV (line numbers count the header as line 1)
    csv_text = "prompt,chosen,rejected\nq1,good,bad\nq2,,bad\nq3,same,same\n"
    parsed = ds.parse_dataset(csv_text, kind="csv", format="preference")
    assert {i.line: i.message for i in parsed.issues} == {
        3: "empty answer (chosen)", 4: "chosen and rejected are the same answer"}
    # a JSON array names records by position
    parsed = ds.parse_dataset(json.dumps([{"instruction": "a", "output": "b"}, {"x": 1}]),
                              kind="json")
    assert [i.text() for i in parsed.issues] == [
        "record 2: missing field 'instruction' (an alpaca record needs instruction and output)"]


def test_answer_tokens_only_count_for_the_loss(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name?"},
            {"role": "assistant", "content": "Tiny."}]
    enc = encode_chat(tok, msgs)
    learned = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True)
                          if lab != IGNORE])
    assert learned == "Hello.<|im_end|>\nTiny.<|im_end|>\n"
    # the ids are those of the whole rendered chat
    assert tok.decode(enc.input_ids) == tok.apply_chat_template(msgs, tokenize=False)


def test_dataset_versions_preview_and_refusal(tiny_base: str, tmp_path: Path) -> None:
    name = unique("faq")
    data = "\n".join(json.dumps(p) for p in qa_pairs(10)).encode()
    v1 = datasets_service.add_dataset(actor=SYSTEM, name=name, filename="faq.jsonl", data=data)
    assert (v1.format, v1.latest_version, v1.records) == ("chat", 1, 10)
    v2 = datasets_service.add_dataset(actor=SYSTEM, name=name, filename="faq.jsonl",
                                      data=data + b"\n" + data.splitlines()[0])
    assert v2.latest_version == 2 and v2.records == 11
    assert v2.versions[0].stats["duplicates"] == [{"line": 11, "duplicate_of": 1}]
    with pytest.raises(datasets_service.DatasetInvalid) as err:
        datasets_service.add_dataset(actor=SYSTEM, name=name, filename="bad.jsonl",
                                     data=MALFORMED.encode())
    assert [i.line for i in err.value.issues] == [2, 3, 4, 6]
    assert datasets_service.get_dataset(actor=SYSTEM, dataset=name).latest_version == 2
    with pytest.raises(ValueError, match="holds chat records"):
        datasets_service.add_dataset(actor=SYSTEM, name=name, filename="p.csv",
                                     data=b"prompt,chosen,rejected\nq,a,b\n")
    prev = datasets_service.preview(actor=SYSTEM, dataset=name, base_model=tiny_base, version=1)
    assert prev["records"] == 10 and prev["train"] == 9 and prev["validation"] == 1
    runs = prev["examples"][0]
    assert [r["loss"] for r in runs] == [False, True]
    assert runs[1]["text"].startswith("The ") and "<|im_start|>assistant" in runs[0]["text"]
    assert sum(b["count"] for b in prev["histogram"]) == 10
    info = finetune_service.base_model_info(actor=SYSTEM, model=tiny_base)
    assert info.model_type == "llama" and info.context_length == 1024
    assert 3_000_000 < info.parameters < 6_000_000 and "im_start" in (info.chat_template or "")
    cfg = finetune_service.make_config(preset="quick")
    est = finetune_service.estimate_run(actor=SYSTEM, base_model=tiny_base, dataset=name,
                                        config=cfg)
    assert est.device == "cpu" and est.memory_gb > 0 and est.seconds > 0 and est.fits
    with pytest.raises(ValueError, match="DPO trains on preference pairs"):
        finetune_service.start_finetune(actor=SYSTEM, base_model=tiny_base, dataset=name,
                                        config=FinetuneConfig(method="dpo"), enqueue=False)
    datasets_service.delete_dataset(actor=SYSTEM, dataset=name)
    assert not datasets_service.list_datasets(actor=SYSTEM, search=name)


def test_cli_refuses_a_malformed_dataset_with_line_numbers(studio_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(MALFORMED)
    out = studio(studio_env, "datasets", "validate", str(bad), "--format", "alpaca", "--json")
    assert out.returncode == 1
    assert [i["line"] for i in json.loads(out.stdout)["issues"]] == [2, 3, 4, 6]
    out = studio(studio_env, "finetune", "run", "--base", "nothing", "--data", str(bad))
    assert out.returncode == 1
    assert "line 2: bad JSON" in out.stderr and "line 6:" in out.stderr
    assert "Traceback" not in out.stderr


# --- training ------------------------------------------------------------------------------

def _chat_answers(model: str, prompts: list[str]) -> list[str]:
    """Greedy answers through `studio chat --json` (in this process: the model loads once)."""
    from backend.cli import app

    runner = CliRunner()
    answers = []
    for p in prompts:
        res = runner.invoke(app, ["chat", model, p, "-t", "0", "-n", "24", "--placement",
                                  "local", "--json"])
        assert res.exit_code == 0, res.output
        answers.append(json.loads(res.stdout.strip().splitlines()[-1])["text"].strip())
    return answers


@pytest.mark.parametrize("pairs_n, options", [
    pytest.param(10, ["--epochs", "150", "--batch-size", "10"], id="10-pairs"),
    pytest.param(20, ["--epochs", "100"], id="20-pairs", marks=pytest.mark.slow),
])
def test_lora_finetune_reproduces_answers_through_studio_chat(
        studio_env: dict[str, str], tiny_base: str, tmp_path: Path, pairs_n: int,
        options: list[str]) -> None:
    pairs = qa_pairs(pairs_n)
    data = tmp_path / f"qa{pairs_n}.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in pairs))
    prompts, expected = [p["instruction"] for p in pairs], [p["output"] for p in pairs]
    before = _chat_answers(tiny_base, prompts)
    assert sum(a == e for a, e in zip(before, expected, strict=True)) == 0
    out_name = unique("tuned")
    proc = studio(studio_env, "finetune", "run", "--base", tiny_base, "--data", str(data),
                  *options, "--val-fraction", "0", "--name", out_name, "--wait", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1  # one JSON line
    job = json.loads(proc.stdout)
    assert job["status"] == "succeeded" and job["model"] == out_name
    assert job["evaluation"]["train_loss"] > 0
    result = job["result"]
    assert result["train_loss"] > 0 and result["steps"] in (150, 500)
    assert result["samples"] and result["samples"][0]["base"] != result["samples"][0]["tuned"]
    # through `studio chat`: the registered model is the merged folder, loaded from disk
    after = _chat_answers(out_name, prompts)
    exact = sum(a == e for a, e in zip(after, expected, strict=True))
    assert exact >= 0.9 * pairs_n, list(zip(after, expected, strict=True))
    tuned = models_service.get_model(actor=SYSTEM, model=out_name)
    assert tuned.lineage and tuned.lineage["base_model"] == tiny_base
    assert tuned.lineage["method"] == "lora" and tuned.lineage["job_id"] == job["id"]
    assert tuned.lineage["dataset"] == f"qa{pairs_n}" and tuned.lineage["dataset_version"] >= 1
    assert (Path(tuned.source) / "model.safetensors").exists()
    # the adapter alone, on a freshly loaded base, gives the same answers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.training.finetune import generate

    base_spec = models_service.model_spec(actor=SYSTEM, model=tiny_base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_spec.source),
                                      result["adapter_path"])
    tok = AutoTokenizer.from_pretrained(result["adapter_path"])
    msgs = [[{"role": "user", "content": p}] for p in prompts[:5]]
    assert [generate(model.eval(), tok, m, 24) for m in msgs] == after[:5]
    # the zip export holds a loadable safetensors folder
    import zipfile

    zpath = finetune_service.export_zip(actor=SYSTEM, model=out_name)
    names = zipfile.ZipFile(zpath).namelist()
    assert any(n.endswith("model.safetensors") for n in names)
    assert any(n.endswith("config.json") for n in names)


def _ctx(tmp_path: Path, name: str, **kw: Any) -> LocalContext:
    return LocalContext(run_dir=tmp_path / name, **kw)


def test_resume_after_cancel_continues_at_the_saved_step(tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    """A cancel saves a checkpoint; a resumed run goes on from that step over the same data
    and ends with the same weights as a run that was never stopped."""
    import torch
    from safetensors.torch import load_file

    records = chat_records(qa_pairs(8))
    cfg = FinetuneConfig(epochs=2, batch_size=2, val_fraction=0, samples=0, save_every=100,
                         merge=False, lora_dropout=0.0)

    def inputs(out: str) -> FinetuneInputs:
        return FinetuneInputs(tiny_model_dir, records, [], cfg, tmp_path / out)

    straight = run_finetune(_ctx(tmp_path, "straight"), inputs("o1"))
    assert straight["steps"] == 8

    first = _ctx(tmp_path, "first")

    def stop_at_3(fraction: float, stage: str | None) -> None:
        if first.stage == "training: step 3/8":
            first.cancel_event.set()

    first.on_progress = stop_at_3
    with pytest.raises(JobCancelled):
        run_finetune(first, inputs("o2"))
    assert (first.run_dir / "checkpoints" / "checkpoint-3").is_dir()

    second = _ctx(tmp_path, "second", resume_dir=first.run_dir)
    resumed = run_finetune(second, inputs("o3"))
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 8
    assert any("Resumed at step 3" in line for line in second.logs)
    assert min(s for n, s, _ in second.metrics if n == "train_loss") > 3
    a = load_file(str(Path(straight["adapter_path"]) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed["adapter_path"]) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_dpo_raises_the_margin_between_chosen_and_rejected(tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    pairs = [{"prompt": [{"role": "user", "content": f"Which fruit for {JOBS[i]}?"}],
              "chosen": f"The {FRUITS[i]}.", "rejected": f"The {COLOURS[i]} stone."}
             for i in range(8)]
    cfg = FinetuneConfig(method="dpo", epochs=6, batch_size=4, val_fraction=0, samples=1,
                         merge=True, dpo_beta=0.1)
    ctx = _ctx(tmp_path, "dpo")
    result = run_finetune(ctx, FinetuneInputs(tiny_model_dir, pairs, [], cfg, tmp_path / "out"))
    assert result["margin_after"] > result["margin_before"] + 1.0, result
    assert any(n == "train_loss" for n, _, _ in ctx.metrics)
    assert (Path(result["merged_path"]) / "model.safetensors").exists()


def test_packed_examples_do_not_see_each_other(tiny_model_dir: Path) -> None:
    """In a packed row each example is computed as if it were alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from backend.training.finetune import _packed_collator

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    a, b = list(range(10, 15)), list(range(40, 47))
    batch = _packed_collator(0)([{"input_ids": a + b, "labels": a + b, "seq_lengths": [5, 7]},
                                 {"input_ids": b, "labels": b, "seq_lengths": [7]}])
    batch.pop("labels")
    with torch.no_grad():
        packed = model(**batch).logits
        alone = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(packed[0, 5:], alone, atol=1e-4)
    assert torch.allclose(packed[1, :7], alone, atol=1e-4)


def test_packing_trains_on_fewer_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    records = chat_records(qa_pairs(16))
    cfg = FinetuneConfig(epochs=2, batch_size=4, packing=True, max_length=128, val_fraction=0.25,
                         samples=1, merge=False)
    ctx = _ctx(tmp_path, "packed")
    train, val = ds.split(records, val_fraction=0.25, seed=42)
    result = run_finetune(ctx, FinetuneInputs(tiny_model_dir, train, val, cfg, tmp_path / "o"))
    # 12 examples of ~20 tokens fit in two 128-token rows: one step per epoch
    assert result["steps"] == 2 and result["val_loss"] > 0 and result["perplexity"] > 1
    names = {n for n, _, _ in ctx.metrics}
    assert {"train_loss", "learning_rate", "val_loss", "tokens_per_s", "eta_s"} <= names
    for name in ("tokens_per_s", "eta_s"):  # one point a step, not one per log call
        steps = [s for n, s, _ in ctx.metrics if n == name]
        assert steps == sorted(set(steps)), (name, steps)


def test_torchrun_launch_relays_progress_and_result(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The multi-GPU path's launcher, with one CPU process: torchrun runs the recipe, rank 0's
    progress, metrics and logs reach the job's context, and the result comes back."""
    from backend.training import finetune_ddp

    cfg = FinetuneConfig(max_steps=3, batch_size=4, val_fraction=0, samples=1,
                         sample_max_new_tokens=4, merge=False)
    ctx = _ctx(tmp_path, "ddp")
    result = finetune_ddp.launch(ctx, FinetuneInputs(tiny_model_dir, chat_records(qa_pairs(8)),
                                                     [], cfg, tmp_path / "out"), nproc=1,
                                 poll_s=0.1)
    assert result["steps"] == 3 and Path(result["adapter_path"]).is_dir()
    assert ctx.stage == "saving the model" and ctx.progress_value == 0.95
    assert any(n == "train_loss" for n, _, _ in ctx.metrics)
    assert any("Launching 1 training process" in line for line in ctx.logs)


@pytest.mark.gpu
def test_data_parallel_on_every_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    """On a machine with CUDA: one process per GPU (bf16), the run finishes and saves once."""
    import torch

    from backend.training import finetune_ddp

    n = torch.cuda.device_count()
    cfg = FinetuneConfig(epochs=2, batch_size=2, val_fraction=0.25, samples=2, merge=True)
    records = chat_records(qa_pairs(16))
    train, val = ds.split(records, val_fraction=0.25, seed=42)
    ctx = _ctx(tmp_path, "ddp-gpu")
    result = finetune_ddp.launch(ctx, FinetuneInputs(tiny_model_dir, train, val, cfg,
                                                     tmp_path / "out"), nproc=n)
    assert result["steps"] >= 1 and result["val_loss"] > 0
    assert (Path(result["merged_path"]) / "model.safetensors").exists()


@pytest.mark.gpu
def test_qlora_on_cuda(tiny_model_dir: Path, tmp_path: Path) -> None:
    """QLoRA loads the base in 4 bits (bitsandbytes) and trains an adapter; merged in fp32."""
    pytest.importorskip("bitsandbytes")
    cfg = FinetuneConfig(method="qlora", epochs=30, batch_size=4, val_fraction=0, samples=2,
                         merge=True)
    result = run_finetune(_ctx(tmp_path, "qlora"), FinetuneInputs(
        tiny_model_dir, chat_records(qa_pairs(8)), [], cfg, tmp_path / "out"))
    assert result["train_loss"] > 0 and (Path(result["merged_path"]) / "config.json").exists()


def test_agent_feedback_becomes_chat_examples_and_preference_pairs() -> None:
    """Thumbs up: a chat example; thumbs down with the corrected answer: a preference pair;
    thumbs down without one: nothing."""
    from backend.services import agents as agents_service
    from tests.agents_helpers import Script

    endpoint = models_service.add_openai_model(actor=SYSTEM, name=unique("fb-model"),
                                               base_url="http://127.0.0.1:9/v1",
                                               remote_model="never-called")
    bot = agents_service.create_agent(actor=SYSTEM, name=unique("fb-bot"),
                                      config={"model": endpoint.name})
    answers = {"How do I reset it?": ("Hold the red button.", 1, ""),
               "Where is the manual?": ("On page 3.", -1, "In the drawer under the desk."),
               "Is it waterproof?": ("Maybe.", -1, "")}
    for question, (answer, rating, comment) in answers.items():
        res = agents_service.run_agent(actor=SYSTEM, agent=bot.id, question=question,
                                       version="draft", llm=Script(answer).model())
        agents_service.give_feedback(actor=SYSTEM, message_id=res.message_id, rating=rating,
                                     comment=comment)
    name = unique("feedback")
    out = datasets_service.build_from_feedback(actor=SYSTEM, name=name, agent=bot.id)
    assert out["chat"] == [{"messages": [
        {"role": "user", "content": "How do I reset it?"},
        {"role": "assistant", "content": "Hold the red button."}]}]
    assert out["preference"] == [{"prompt": [{"role": "user", "content": "Where is the manual?"}],
                                  "chosen": "In the drawer under the desk.",
                                  "rejected": "On page 3."}]
    chat = datasets_service.get_dataset(actor=SYSTEM, dataset=name)
    prefs = datasets_service.get_dataset(actor=SYSTEM, dataset=f"{name}-preferences")
    assert (chat.format, chat.source, chat.records) == ("chat", "feedback", 1)
    assert (prefs.format, prefs.records) == ("preference", 1)


def _qa_endpoint() -> tuple[str, Any]:
    """An OpenAI-compatible endpoint that writes a Q&A pair about the passage it is sent:
    "What about <heading>?" / the passage's first sentence (a reply it cannot parse for the
    passage about parking)."""
    import re
    import socket
    import threading
    import time

    import uvicorn

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        passage = body["messages"][-1]["content"].split("Passage:\n", 1)[1]
        heading = re.search(r"#+\s*(.+)", passage)
        first = re.sub(r"#+[^\n]*\n", "", passage).strip().split(".")[0] + "."
        answer = ("I cannot help with that." if "Parking" in passage else
                  f"Question: What about {heading.group(1) if heading else 'this'}?\n"
                  f"Answer: {first}")
        chunks = [{"choices": [{"index": 0, "delta": {"content": answer}}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]

        async def events() -> Any:
            for c in chunks:
                yield f"data: {json.dumps(c)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    name = unique("qa-writer")
    models_service.add_openai_model(actor=SYSTEM, name=name, base_url=f"http://127.0.0.1:{port}/v1",
                                    remote_model="scripted")
    return name, server


HANDBOOK = """# Office handbook

## Opening hours

The office opens at eight in the morning. It closes at six in the evening.

## Lunch

The canteen on the third floor serves lunch from noon to two o'clock.

## Parking

Parking spaces are in the basement. Ask reception for a card.
"""


def test_qa_pairs_from_a_knowledge_base_are_reviewed_then_saved() -> None:
    from backend.services import jobs as jobs_service
    from backend.services import knowledge as kbs

    writer, server = _qa_endpoint()
    try:
        kb = kbs.create_knowledge_base(actor=SYSTEM, name=unique("handbook"), chunk_size=120,
                                       chunk_overlap=0)
        ingest = jobs_service.run_inline(actor=SYSTEM, job_id=kbs.ingest_files(
            actor=SYSTEM, kb=kb.id, uploads=[("handbook.md", HANDBOOK.encode())],
            enqueue=False))
        assert ingest.status == "succeeded", ingest.error
        job = datasets_service.start_qa_generation(actor=SYSTEM, kb=kb.name, model=writer,
                                                   enqueue=False)
        done = jobs_service.run_inline(actor=SYSTEM, job_id=job.id)
        assert done.status == "succeeded", done.error
        pairs = done.result["pairs"]  # type: ignore[index]
        assert pairs and all(p["question"].startswith("What about") for p in pairs), pairs
        assert any("eight in the morning" in p["answer"] for p in pairs), pairs
        assert not any("basement" in p["answer"] for p in pairs)  # the unparsable reply
        assert done.result["skipped"] >= 1  # type: ignore[index]
        assert all(p["source"] == "handbook.md" for p in pairs)
        # a person deletes one pair and corrects another, then saves
        reviewed = [{"question": "When does the office open?", "answer": "At eight."}]
        view = datasets_service.save_qa_pairs(actor=SYSTEM, name=unique("hb-qa"), pairs=reviewed)
        assert (view.source, view.records, view.format) == ("knowledge_base", 1, "chat")
        _, _, records = datasets_service.load_records(actor=SYSTEM, dataset=view.id)
        assert records[0]["messages"][-1] == {"role": "assistant", "content": "At eight."}
    finally:
        server.should_exit = True
