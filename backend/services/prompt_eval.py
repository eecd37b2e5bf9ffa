"""Batch evaluation of a prompt as a job: every row of a data file through 1-4 models, scored.

Local models answer a batch of rows at once (one left-padded ``generate`` on the worker's model
cache); endpoints get several requests at once. The job kind runs on the ``gpu`` queue, where
local models live; the CLI's ``--wait`` runs it in-process when no gpu worker is alive.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.accounts.actor import Actor, Role
from backend.config import get_settings
from backend.jobs import titles
from backend.jobs.context import JobContext
from backend.jobs.kinds import job_kind
from backend.llm.types import GenerationParams, Message
from backend.prompts.evaluation import (
    EXPECTED_COLUMN,
    MAX_ROWS,
    read_rows,
    results_csv,
    split_expected,
    summarise,
)
from backend.prompts.output import check_format, parse_output
from backend.prompts.scoring import JUDGE_PROMPT, check_method, needs_expected, score_answer
from backend.prompts.template import PromptParts, TemplateError
from backend.services import jobs as jobs_service
from backend.services.prompts import (
    MAX_COLUMNS,
    chat_params,
    get_prompt,
    render_parts,
)

log = logging.getLogger(__name__)

KIND = "prompt_eval"
DEFAULT_BATCH = 32
DEFAULT_CONCURRENCY = 4


@dataclass
class EvalResults:
    job_id: int
    status: str
    summary: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "summary": self.summary,
                "rows": self.rows}


def parse_data_file(*, actor: Actor, data: bytes | str, filename: str) -> list[dict[str, Any]]:
    """Read an uploaded CSV/JSONL into rows (checks only; nothing is stored)."""
    actor.require_role(Role.builder, "see batch evaluations")
    return read_rows(data, filename)


def submit_eval(*, actor: Actor, rows: Sequence[Mapping[str, Any]], models: Sequence[str],
                prompt: int | str | None = None, version: int | None = None,
                parts: PromptParts | None = None,
                output_format: Mapping[str, Any] | None = None,
                context: Mapping[str, Any] | None = None,
                params: Mapping[str, Any] | None = None, scoring: str = "exact",
                pattern: str | None = None, rubric: str = "", judge_model: str | None = None,
                expected_column: str = EXPECTED_COLUMN, batch_size: int = DEFAULT_BATCH,
                concurrency: int = DEFAULT_CONCURRENCY, enqueue: bool = True) -> int:
    """Check everything (every row renders, models exist, scoring is complete) and submit the
    job; returns its id."""
    from backend.services.models import model_spec

    actor.require_role(Role.builder, "run batch evaluations")
    models = [m for m in dict.fromkeys(str(m).strip() for m in models) if m]
    if not 1 <= len(models) <= MAX_COLUMNS:
        raise ValueError(f"Evaluate against 1 to {MAX_COLUMNS} models.")
    for m in models:
        model_spec(actor=actor, model=m, capability="chat")
    if not rows:
        raise ValueError("The data has no rows.")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"An evaluation takes at most {MAX_ROWS} rows.")
    if not 1 <= int(batch_size) <= 256:
        raise ValueError("The batch size must be 1 to 256.")
    if not 1 <= int(concurrency) <= 64:
        raise ValueError("Concurrent requests must be 1 to 64.")
    check_method(scoring, pattern=pattern, rubric=rubric)
    if scoring == "judge":
        if not judge_model:
            raise ValueError("Pick a judge model for judge scoring.")
        model_spec(actor=actor, model=judge_model, capability="chat")
    prompt_id = None
    context = dict(context) if context and context.get("kb") else None
    if parts is None:
        if prompt is None:
            raise ValueError("Give a saved prompt or the prompt's content.")
        v = get_prompt(actor=actor, name=prompt, version=version).current
        parts, prompt_id, version = v.parts, v.prompt_id, v.version
        output_format = output_format or v.output_format
        params = {**v.params, **dict(params or {})}
        context = v.context
    fmt = check_format(output_format)
    gp = chat_params(params, fmt)
    if needs_expected(scoring, pattern) and not any(expected_column in r for r in rows):
        raise ValueError(f"{scoring} scoring needs the expected answers in a column named "
                         f"{expected_column!r}.")
    for i, row in enumerate(rows, 1):  # a missing variable is named before anything runs
        variables, _ = split_expected(row, expected_column)
        try:
            if context:  # the knowledge base fills it when the job runs
                variables = {"context": "", **variables}
            render_parts(actor=actor, parts=parts, variables=variables)
        except TemplateError as exc:
            raise ValueError(f"Row {i}: {exc}") from None
    data_dir = get_settings().data_dir / "prompt_eval"
    data_dir.mkdir(parents=True, exist_ok=True)
    data_path = data_dir / f"{uuid.uuid4().hex}.jsonl"
    data_path.write_text("\n".join(json.dumps(dict(r), ensure_ascii=False) for r in rows))
    job_params = {
        "prompt": {"system": parts.system, "template": parts.template,
                   "examples": list(parts.examples)},
        "prompt_id": prompt_id, "version": version, "context": context, "output_format": fmt,
        "models": models, "params": gp, "scoring": scoring, "pattern": pattern,
        "rubric": rubric, "judge_model": judge_model, "expected_column": expected_column,
        "batch_size": int(batch_size), "concurrency": int(concurrency),
        "data_path": str(data_path), "n_rows": len(rows),
        "actor": {"user_id": actor.user_id, "username": actor.username,
                  "role": actor.role.value, "workspace_id": actor.workspace_id},
    }
    counts = {"rows": len(rows), "models": len(models)}
    job = jobs_service.submit_job(
        actor=actor, kind=KIND, params=job_params, enqueue=enqueue,
        title_template=titles.PROMPT_EVAL if prompt_id else titles.PROMPT_EVAL_DRAFT,
        title_args={"prompt": prompt, "version": version, **counts} if prompt_id else counts)
    return job.id


def eval_results(*, actor: Actor, job_id: int) -> EvalResults:
    actor.require_role(Role.builder, "see batch evaluations")
    job = jobs_service.get_job(actor=actor, job_id=job_id)
    if job.kind != KIND:
        raise jobs_service.JobNotFound(f"Job #{job_id} is not a prompt evaluation.")
    res = job.result or {}
    return EvalResults(job_id=job.id, status=job.status, summary=list(res.get("summary") or []),
                       rows=list(res.get("rows") or []))


def eval_csv(*, actor: Actor, job_id: int) -> str:
    """The results as CSV (row, model, variables, expected, output, score, ...)."""
    actor.require_role(Role.builder, "see batch evaluations")
    return results_csv(eval_results(actor=actor, job_id=job_id).rows)


# --- the job -------------------------------------------------------------------------------------

Answer = dict[str, Any]  # text, tokens_in, tokens_out, error


def answer_all(actor: Actor, model: str, conversations: Sequence[list[Message]],
               params: Mapping[str, Any], *, batch_size: int, concurrency: int,
               on_done: Callable[[int], None], should_stop: Callable[[], bool]) -> list[Answer]:
    """Answer every conversation: batched ``generate`` for a local model, concurrent requests
    for an endpoint. ``on_done(n)`` after each n rows."""
    from backend.services.models import model_spec

    spec = model_spec(actor=actor, model=model, capability="chat")
    gp = GenerationParams.from_dict({**spec.default_params, **dict(params)})
    out: list[Answer] = []
    if spec.is_local:
        from backend.llm.batch import generate_batch
        from backend.llm.local_hf import model_cache

        lm = model_cache().get(spec.source)
        if gp.response_format:
            # constrained JSON is decoded one conversation at a time (its grammar follows each
            # row's own tokens); a failed row is a result, as with an endpoint
            return [_answer_constrained(lm, c, gp, on_done, should_stop) for c in conversations
                    if not should_stop()]
        for start in range(0, len(conversations), batch_size):
            if should_stop():
                break
            chunk = conversations[start:start + batch_size]
            for a in generate_batch(lm, chunk, gp, should_stop=should_stop):
                out.append({"text": a.text, "tokens_in": a.prompt_tokens,
                            "tokens_out": a.completion_tokens, "error": None})
            on_done(len(chunk))
        return out
    from backend.services.chat import stream_chat

    def one(msgs: list[Message]) -> Answer:
        try:
            res = stream_chat(spec, msgs, gp, actor=actor).collect()
            u = res.usage
            return {"text": res.text, "tokens_in": u.prompt_tokens if u else None,
                    "tokens_out": u.completion_tokens if u else None, "error": None}
        except Exception as exc:  # noqa: BLE001 - one failed row is a result, not the job's end
            return {"text": "", "tokens_in": None, "tokens_out": None, "error": str(exc)}
        finally:
            on_done(1)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        return list(pool.map(one, conversations))


def _answer_constrained(lm: Any, messages: list[Message], gp: GenerationParams,
                        on_done: Callable[[int], None], should_stop: Callable[[], bool]
                        ) -> Answer:
    """One conversation on a local model under ``gp.response_format`` (in this process)."""
    from backend.llm.local_hf import run_local_chat

    pieces: list[str] = []
    try:
        usage = run_local_chat(lm, list(messages), gp, should_stop=should_stop,
                               emit=lambda p: pieces.append(p) if isinstance(p, str) else None)
        return {"text": "".join(pieces), "tokens_in": usage.prompt_tokens,
                "tokens_out": usage.completion_tokens, "error": None}
    except Exception as exc:  # noqa: BLE001 - one failed row is a result, not the job's end
        return {"text": "", "tokens_in": None, "tokens_out": None, "error": str(exc)}
    finally:
        on_done(1)


@job_kind(KIND, queue="gpu", title="Prompt evaluation")
def run_prompt_eval(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    a = params["actor"]
    actor = Actor(user_id=a["user_id"], username=a["username"], role=Role(a["role"]),
                  workspace_id=int(a["workspace_id"]))
    parts = PromptParts(**params["prompt"])
    column = params.get("expected_column") or EXPECTED_COLUMN
    rows = [json.loads(line) for line in
            Path(params["data_path"]).read_text().splitlines() if line.strip()]
    models: list[str] = list(params["models"])
    fmt = params.get("output_format") or {"type": "text"}
    total = len(rows) * len(models)
    ctx.log(f"Evaluating {len(rows)} rows on {', '.join(models)}")
    convs: list[list[Message]] = []
    variables: list[dict[str, Any]] = []
    expected: list[str | None] = []
    for row in rows:
        v, e = split_expected(row, column)
        variables.append(v)
        expected.append(e)
        convs.append(render_parts(actor=actor, parts=parts, variables=v,
                                  context=params.get("context")))
    done = [0]

    def on_done(n: int) -> None:
        done[0] += n
        ctx.progress(done[0] / total * 0.95, "row {done}/{total}", done=done[0], total=total)

    results: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for model in models:
        ctx.check_cancelled()
        started = time.perf_counter()
        answers = answer_all(actor, model, convs, params.get("params") or {},
                             batch_size=int(params.get("batch_size") or DEFAULT_BATCH),
                             concurrency=int(params.get("concurrency") or DEFAULT_CONCURRENCY),
                             on_done=on_done, should_stop=ctx.should_stop)
        seconds[model] = time.perf_counter() - started
        ctx.check_cancelled()
        for i, ans in enumerate(answers):
            parsed = parse_output(ans["text"], fmt)
            results.append({"row": i + 1, "model": model, "variables": variables[i],
                            "expected": expected[i], "output": ans["text"],
                            "valid": parsed.valid, "invalid_reason": parsed.reason,
                            "tokens_in": ans["tokens_in"], "tokens_out": ans["tokens_out"],
                            "error": ans["error"], "score": None, "note": ""})
        ctx.metric("rows_per_s", len(answers) / max(seconds[model], 1e-9), models.index(model))
    _score(actor, results, params, fmt, convs, ctx)
    summary = summarise(results, models, seconds)
    (ctx.run_dir / "results.csv").parent.mkdir(parents=True, exist_ok=True)
    (ctx.run_dir / "results.csv").write_text(results_csv(results))
    ctx.progress(1.0, "row {done}/{total}", done=total, total=total)
    for s in summary:
        score = "-" if s["score"] is None else f"{s['score']:.3f}"
        ctx.log(f"{s['model']}: score {score} over {s['scored']} rows, "
                f"{s['rows_per_s'] or 0:.2f} rows/s")
    return {"summary": summary, "rows": results, "csv": str(ctx.run_dir / "results.csv")}


def _reply(text: str) -> Callable[[str], str]:
    return lambda _prompt: text


def _score(actor: Actor, results: list[dict[str, Any]], params: Mapping[str, Any],
           fmt: Mapping[str, Any], convs: Sequence[list[Message]], ctx: JobContext) -> None:
    method = str(params.get("scoring") or "exact")
    pattern = params.get("pattern")
    rubric = str(params.get("rubric") or "")
    if method != "judge":
        for r in results:
            if r["error"]:
                continue
            r["score"], r["note"] = score_answer(method, r["output"], r["expected"],
                                                 output_format=fmt, pattern=pattern)
        return
    # the judge answers every (row, model) pair in one batch call of its own
    prompts = [JUDGE_PROMPT.format(rubric=rubric, input=convs[r["row"] - 1][-1]["content"],
                                   expected=r["expected"] or "", answer=r["output"])
               for r in results]
    ctx.progress(0.96, "judging {n} answers", n=len(prompts))
    replies = answer_all(actor, str(params["judge_model"]),
                         [[{"role": "user", "content": p}] for p in prompts],
                         {"temperature": 0, "max_new_tokens": 64},
                         batch_size=int(params.get("batch_size") or DEFAULT_BATCH),
                         concurrency=int(params.get("concurrency") or DEFAULT_CONCURRENCY),
                         on_done=lambda n: None, should_stop=ctx.should_stop)
    for r, reply in zip(results, replies, strict=False):
        if r["error"]:
            continue
        r["score"], r["note"] = score_answer("judge", r["output"], r["expected"], rubric=rubric,
                                             judge=_reply(str(reply["text"])))
