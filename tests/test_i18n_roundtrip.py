"""Chinese names survive every layer: services, Celery, the database, the CLI's ``--json``.

The CLI runs in a subprocess under the bare C locale (what a server or a container often has),
so the test does not lean on the terminal's encoding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from backend.accounts.actor import Actor
from backend.db import get_engine
from backend.services import jobs as jobs_service

ROOT = Path(__file__).resolve().parent.parent
NAMES = [
    "产品手册问答（2025 版）",
    "客服对话微调 · 第二轮 🚀",
    "混合 English 与中文：“引号”、全角空格\u3000和 emoji 😀",
]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    bare = {k: v for k, v in env.items() if k not in {"PYTHONIOENCODING", "PYTHONUTF8"}}
    bare.update(LC_ALL="C", LANG="C")
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=bare,
                          capture_output=True, timeout=120)


def cli_json(env: dict[str, str], *args: str) -> Any:
    done = cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return json.loads(done.stdout.decode("utf-8"))


def test_database_speaks_utf8() -> None:
    with get_engine().connect() as conn:
        assert conn.execute(text("SHOW server_encoding")).scalar() == "UTF8"
        assert conn.execute(text("SHOW client_encoding")).scalar() == "UTF8"


def test_job_titles_round_trip(studio_env: dict[str, str]) -> None:
    actor = Actor.system()
    ids = {}
    for name in NAMES:
        job = jobs_service.submit_job(actor=actor, kind="demo", title=name, enqueue=False,
                                      params={"steps": 1, "note": name})
        ids[job.id] = name
        assert job.title == name
        again = jobs_service.get_job(actor=actor, job_id=job.id)
        assert again.title == name and again.params["note"] == name

    # searching by a Chinese word finds it
    found = jobs_service.list_jobs(actor=actor, search="产品手册")
    assert [j.title for j in found if j.id in ids] == [NAMES[0]]

    # straight from the database
    with get_engine().connect() as conn:
        rows = conn.execute(text("SELECT id, title, params->>'note' FROM jobs WHERE id = ANY(:ids)"),
                            {"ids": list(ids)}).all()
    assert {r[0]: (r[1], r[2]) for r in rows} == {i: (n, n) for i, n in ids.items()}
    with get_engine().connect() as conn:
        raw = conn.execute(text("SELECT convert_to(title, 'UTF8') FROM jobs WHERE id = :id"),
                           {"id": min(ids)}).scalar()
    assert bytes(raw) == NAMES[0].encode("utf-8")

    # the CLI's JSON: the names come back whole, written as UTF-8 (not \\u escapes)
    listed = cli(studio_env, "jobs", "list", "--json", "--limit", "500")
    assert listed.returncode == 0, listed.stderr.decode("utf-8", "replace")
    for name in NAMES:
        assert name.encode("utf-8") in listed.stdout
    by_id = {j["id"]: j["title"] for j in json.loads(listed.stdout.decode("utf-8"))}
    assert {i: by_id[i] for i in ids} == ids

    # a Chinese argument reaches the service intact
    searched = cli_json(studio_env, "jobs", "list", "--search", "客服对话")
    assert [j["title"] for j in searched if j["id"] in ids] == [NAMES[1]]
    shown = cli_json(studio_env, "jobs", "show", str(max(ids)))
    assert shown["title"] == NAMES[2] and shown["params"]["note"] == NAMES[2]

    # the human-readable listing prints them too
    human = cli(studio_env, "jobs", "list", "--search", "产品手册")
    assert human.returncode == 0
    assert NAMES[0] in human.stdout.decode("utf-8")


def test_chinese_title_through_a_worker(worker: object) -> None:
    """Through Redis and a real Celery worker process, the job keeps its name and reports in."""
    actor = Actor.system()
    name = "中文演示任务：数到三"
    job = jobs_service.submit_job(actor=actor, kind="demo", title=name,
                                  params={"steps": 3, "step_seconds": 0.01})
    done = jobs_service.wait_for_job(actor=actor, job_id=job.id, timeout_s=60)
    assert done.status == "succeeded", done.error
    assert done.title == name
    assert jobs_service.job_metrics(actor=actor, job_id=job.id)["loss"]


def test_workspace_names_round_trip(studio_env: dict[str, str]) -> None:
    """A Chinese name typed on the command line comes back from the service and the CLI."""
    from backend.services import workspaces

    name = "研发部·知识库团队"
    created = cli_json(studio_env, "workspaces", "create", name)
    assert created["name"] == name
    views = workspaces.list_workspaces(actor=Actor.system())
    assert name in [w.name for w in views]
    assert name in [w["name"] for w in cli_json(studio_env, "workspaces", "list")]


def test_model_names_round_trip(studio_env: dict[str, str]) -> None:
    """A model registered from the CLI with a Chinese name and description."""
    from backend.services import models as models_service

    name, description = "通义千问·客服助手", "用于回答售后问题的中文模型"
    added = cli_json(studio_env, "models", "add", name, "--base-url", "http://127.0.0.1:9/v1",
                     "--model", "qwen2.5:7b", "--description", description)
    assert added["name"] == name and added["description"] == description
    try:
        view = models_service.get_model(actor=Actor.system(), model=name)
        assert (view.name, view.description) == (name, description)
        assert [m.name for m in models_service.list_models(actor=Actor.system(), search="客服")] \
            == [name]
        listed = cli_json(studio_env, "models", "list")
        assert name in [m["name"] for m in listed]
        with get_engine().connect() as conn:
            row = conn.execute(text("SELECT name, description FROM models WHERE id = :id"),
                               {"id": view.id}).one()
        assert tuple(row) == (name, description)
    finally:
        models_service.remove_model(actor=Actor.system(), model=name)
