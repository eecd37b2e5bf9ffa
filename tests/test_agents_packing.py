"""Fitting an agent's prompt into the model's context (issue 22, finding 2): retrieved passages
go in best first while they fit, the last one cut at a sentence end, the oldest turns leave
first, and the count of passages used is in the trace. Errors about a prompt too long name the
model as registered, never its folder on the server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.agents.packing import (
    PromptBudget,
    PromptTooLong,
    estimate_tokens,
    fit_prompt,
    model_budget,
    sentences,
)

SENTENCE = "The gate code of garage {i} is {code} and it changes every month on the first day. "


def _hits(n: int = 5, sentences_each: int = 8) -> list[dict[str, Any]]:
    return [{"source": f"doc{i}.md", "chunk_id": i, "score": 1 - i / 10, "metadata": {},
             "text": "".join(SENTENCE.format(i=i, code=1000 + j) for j in range(sentences_each))
             .strip()} for i in range(1, n + 1)]


def test_passages_fit_a_small_context_best_first_and_the_count_is_reported(
        tiny_model_dir: Path) -> None:
    budget = model_budget(name="demo", source=str(tiny_model_dir), answer_tokens=64,
                          context_budget=256)
    assert budget.exact and budget.window == 256  # the tokenizer, the smaller window
    hits = _hits()
    packed = fit_prompt(budget, system="You answer from the documents.",
                        question="What is the gate code?", hits=hits)
    used = packed.passages
    assert 1 <= len(used) < len(hits) and packed.found == 5
    # best-ranked first, in their order
    assert [p["source"] for p in used] == [h["source"] for h in hits[:len(used)]]
    # the whole prompt, counted with the model's template, fits what the answer leaves
    messages = [{"role": "system", "content": packed.system},
                {"role": "user", "content": "What is the gate code?"}]
    assert budget.count(messages) <= budget.prompt_limit
    assert packed.prompt_tokens == budget.count(messages)
    if packed.trimmed:  # the last one is cut at a sentence end, not inside a word
        assert used[-1]["text"].endswith(".") and used[-1]["text"] in hits[len(used) - 1]["text"]
    summary = packed.summary(budget)
    assert summary["passages_used"] == len(used) and summary["passages_found"] == 5
    assert summary["counted"] == "tokenizer"
    # a larger budget fits more passages
    roomy = model_budget(name="demo", source=str(tiny_model_dir), answer_tokens=64,
                         context_budget=1024)
    assert len(fit_prompt(roomy, system="s", question="q", hits=hits).passages) > len(used)


def test_the_last_passage_is_cut_at_a_sentence_end() -> None:
    budget = PromptBudget(window=400, answer_tokens=100)
    hits = _hits(2, sentences_each=20)
    packed = fit_prompt(budget, system="sys", question="q?", hits=hits)
    assert len(packed.passages) == 1 and packed.trimmed
    text = packed.passages[0]["text"]
    assert text.endswith(".") and hits[0]["text"].startswith(text)
    assert len(text) < len(hits[0]["text"])
    assert sentences("One. Two! Three? 四。五") == ["One. ", "Two! ", "Three? ", "四。", "五"]


def test_oldest_turns_leave_first_when_passages_would_have_no_room() -> None:
    budget = PromptBudget(window=600, answer_tokens=100)
    history = []
    for i in range(6):
        history += [{"role": "user", "content": f"old question {i} " + "x" * 150},
                    {"role": "assistant", "content": f"old answer {i} " + "y" * 150}]
    packed = fit_prompt(budget, system="sys", question="new?", history=history,
                        hits=_hits(3))
    assert packed.dropped_turns > 0 and packed.dropped_turns % 2 == 0
    assert packed.history == history[packed.dropped_turns:]  # the newest stay, in order
    assert packed.passages and packed.summary(budget)["turns_dropped"] == \
        packed.dropped_turns // 2


def test_a_question_too_long_for_the_model_names_it_not_its_folder(tiny_model_dir: Path
                                                                   ) -> None:
    budget = model_budget(name="ws-demo", source=str(tiny_model_dir), answer_tokens=64,
                          context_budget=256)
    with pytest.raises(PromptTooLong) as err:
        fit_prompt(budget, system="s", question="word " * 400, hits=_hits(1))
    assert "ws-demo" in str(err.value) and str(tiny_model_dir) not in str(err.value)
    assert str(tiny_model_dir.parent) not in str(err.value)


def test_the_estimate_errs_high() -> None:
    english = "The quick brown fox jumps over the lazy dog. " * 10
    assert estimate_tokens(english) >= len(english) // 4
    assert estimate_tokens("知识库里的文档") == 7


def test_an_over_long_prompt_error_from_the_model_names_no_path(
        studio_env: dict[str, str], tiny_model_dir: Path) -> None:
    from backend.accounts.actor import Role
    from backend.llm.errors import InvalidChatRequest
    from backend.services import models
    from backend.services.chat import chat
    from tests.accounts_helpers import actor_of, make_user, make_workspace

    wid = make_workspace("packing")
    builder = actor_of(make_user(Role.builder, [wid], prefix="pack-builder"), wid)
    name = f"demo-{uuid.uuid4().hex[:6]}"
    models.add_local_model(actor=builder, name=name, source=str(tiny_model_dir))
    with pytest.raises(InvalidChatRequest) as err:
        chat(name, [{"role": "user", "content": "word " * 3000}], {"max_new_tokens": 4},
             actor=builder, placement="local")
    message = str(err.value)
    assert "reads at most 1024" in message and name in message
    assert str(tiny_model_dir) not in message and "/" not in message.split("model")[1][:60]


WORDS = ("amber", "birch", "cedar", "delta", "ember", "fjord", "granite", "harbor", "iris",
         "juniper", "kestrel", "lantern", "meadow", "nectar", "orchid", "pebble", "quartz",
         "raven", "saffron", "thistle", "umber", "violet", "willow", "yarrow", "zephyr")


def _garage(i: int) -> str:
    """A long page of its own words (pages that share their text are boilerplate)."""
    w = WORDS
    return f"# Garage {w[i]}\n\n" + " ".join(
        f"In the {w[(i * 7 + j) % 25]} wing the gate opens with the {w[(i + j * 3) % 25]} card, "
        f"and {w[(i * j + 5) % 25]} visitors park by the {w[(i * 11 + j * 2) % 25]} stairs."
        for j in range(30))


@pytest.fixture(scope="module")
def place(studio_env: dict[str, str], tiny_model_dir: Path) -> dict[str, Any]:
    from backend.accounts.actor import Role
    from backend.services import jobs, models
    from backend.services import knowledge as kbs
    from tests.accounts_helpers import actor_of, make_key, make_user, make_workspace

    wid = make_workspace("fit")
    user = make_user(Role.builder, [wid], prefix="fit-builder")
    builder = actor_of(user, wid)
    model = models.add_local_model(actor=builder, name=f"demo-{uuid.uuid4().hex[:6]}",
                                   source=str(tiny_model_dir)).name
    kb = kbs.create_knowledge_base(actor=builder, name=f"garages-{uuid.uuid4().hex[:4]}")
    uploads = [(f"garage{i}.md", _garage(i).encode()) for i in range(1, 6)]
    job = jobs.run_inline(actor=builder, job_id=kbs.ingest_files(
        actor=builder, kb=kb.id, uploads=uploads, enqueue=False))
    assert job.status == "succeeded", job.error
    return {"builder": builder, "model": model, "kb": kb.name, "key": make_key(user, wid)}


def test_the_three_step_bot_answers_its_first_question_on_the_tiny_model(
        place: dict[str, Any]) -> None:
    """Finding 2: the retrieved passages (top 5 of long pages) are far more than the tiny
    model's 1,024 tokens; the bot answers anyway, with the passages that fit as its sources."""
    from backend.services import agents

    bot = agents.create_bot(actor=place["builder"], name=f"garage-bot-{uuid.uuid4().hex[:4]}",
                            model=place["model"], knowledge_bases=[place["kb"]], top_k=5)
    agents.update_agent(actor=place["builder"], agent=bot.id, config={
        **bot.config, "params": {"temperature": 0, "max_new_tokens": 8}})
    agents.publish_agent(actor=place["builder"], agent=bot.id)
    run = agents.stream_agent(actor=place["builder"], agent=bot.id, placement="local",
                              question="How does the gate of the garage open?")
    answer = "".join(run)
    res = run.result
    assert res is not None and answer.strip() and res.answer == answer
    fit = next(s for s in res.steps if s["kind"] == "context")["output"]
    assert fit["passages_found"] == 5 and 1 <= fit["passages_used"] < 5
    assert fit["counted"] == "tokenizer" and fit["context_window"] == 1024
    assert fit["prompt_tokens"] <= fit["prompt_limit"]
    assert len(res.sources) == fit["passages_used"]
    model_step = next(s for s in res.steps if s["kind"] == "model")
    assert model_step["error"] is None and model_step["prompt_tokens"] <= 1024


def test_cli_sets_top_k_and_the_context_budget(place: dict[str, Any]) -> None:
    import json

    from typer.testing import CliRunner

    from backend.cli import app

    def cli(*args: str) -> tuple[int, Any]:
        res = CliRunner().invoke(app, ["--api-key", place["key"], *args])
        return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else res.stderr

    name = f"cli-fit-{uuid.uuid4().hex[:4]}"
    code, out = cli("agents", "create", name, "--model", place["model"], "--kb", place["kb"],
                    "--top-k", "3", "--context-budget", "512", "--json")
    assert code == 0, out
    assert out["config"]["kb_top_k"] == 3 and out["config"]["context_budget"] == 512
    code, out = cli("agents", "update", name, "--top-k", "7", "--context-budget", "0",
                    "-n", "16", "--json")
    assert code == 0, out
    cfg = out["config"]
    assert cfg["kb_top_k"] == 7 and cfg["context_budget"] is None
    assert cfg["params"]["max_new_tokens"] == 16 and cfg["knowledge_bases"] == [place["kb"]]
    code, out = cli("agents", "update", name, "--context-budget", "100", "--json")
    assert code == 1 and "context_budget" in out["error"]


def test_long_instructions_take_room_from_the_answer_before_failing() -> None:
    budget = PromptBudget(window=600, answer_tokens=300)
    system = "Follow these rules. " * 50  # about 340 tokens (estimated)
    packed = fit_prompt(budget, system=system, question="q?")
    assert packed.prompt_tokens > budget.prompt_limit  # more than a 300-token answer leaves
    fit = packed.summary(budget)
    assert fit["answer_tokens"] == 75 and fit["prompt_tokens"] <= fit["prompt_limit"]
    with pytest.raises(PromptTooLong, match="the model leaves"):
        fit_prompt(budget, system=system * 2, question="q?")
