"""The model registry against the real database: adding each kind, validation, encrypted keys,
roles and workspace isolation, produced models with lineage, and connection tests that fail
fast with the endpoint named."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.accounts.actor import Actor, PermissionDenied, Role
from backend.db import session_scope
from backend.models.workspaces import Workspace
from backend.services import models as models_service

SYSTEM = Actor.system()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def other_workspace() -> int:
    with session_scope() as s:
        ws = Workspace(name=uniq("models-ws"))
        s.add(ws)
        s.flush()
        return ws.id


def test_local_folder_is_registered_and_listed(tiny_model_dir: Path) -> None:
    name = uniq("tiny")
    m = models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir))
    assert m.kind == "local" and m.source == str(tiny_model_dir.resolve())
    assert m.capabilities == ["chat"]
    listed = models_service.list_models(actor=SYSTEM, search=name)
    assert [x.name for x in listed] == [name]
    assert models_service.get_model(actor=SYSTEM, model=m.id).name == name
    with pytest.raises(models_service.ModelExists, match="already exists"):
        models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir))


@pytest.mark.parametrize("bad", ["/no/such/folder", "./missing-model-dir"])
def test_bad_folder_path_is_rejected_on_add(bad: str) -> None:
    with pytest.raises(ValueError, match="No folder at"):
        models_service.add_local_model(actor=SYSTEM, name=uniq("bad"), source=bad)
    assert not models_service.list_models(actor=SYSTEM, search="bad-")


def test_folder_without_model_files_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="config.json"):
        models_service.add_local_model(actor=SYSTEM, name=uniq("x"), source=str(tmp_path),
                                       source_type="folder")


def test_hub_id_is_accepted_without_network_and_nonsense_refused() -> None:
    m = models_service.add_local_model(actor=SYSTEM, name=uniq("hub"),
                                       source="Qwen/Qwen2.5-0.5B-Instruct", source_type="hub")
    assert m.source == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(ValueError, match="hub id"):
        models_service.add_local_model(actor=SYSTEM, name=uniq("hub"), source="not a hub id!",
                                       source_type="hub")


def test_api_key_is_encrypted_at_rest_and_only_shown_masked() -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    name = uniq("remote")
    m = models_service.add_openai_model(actor=SYSTEM, name=name,
                                        base_url="http://127.0.0.1:9/v1/", remote_model="gpt-x",
                                        api_key=secret)
    assert m.base_url == "http://127.0.0.1:9/v1"
    assert m.api_key_masked and secret not in m.api_key_masked
    assert secret not in str(m.to_dict())
    with session_scope() as s:
        dump = s.execute(text("SELECT models::text FROM models")).scalars().all()
    assert dump and not any(secret in row for row in dump)
    assert any(name in row for row in dump)
    assert models_service.model_spec(actor=SYSTEM, model=name).api_key == secret


def test_bad_endpoint_settings_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="not an endpoint URL"):
        models_service.add_openai_model(actor=SYSTEM, name=uniq("r"), base_url="localhost:8000",
                                        remote_model="remote-test-model")
    with pytest.raises(ValueError, match="model name"):
        models_service.add_openai_model(actor=SYSTEM, name=uniq("r"),
                                        base_url="http://localhost:1/v1", remote_model=" ")
    with pytest.raises(ValueError, match="Unknown capability"):
        models_service.add_openai_model(actor=SYSTEM, name=uniq("r"),
                                        base_url="http://localhost:1/v1",
                                        remote_model="remote-test-model",
                                        capabilities=["chat", "vision"])


def test_roles_and_workspace_isolation(tiny_model_dir: Path, other_workspace: int) -> None:
    builder = Actor(user_id=901, username="bob", role=Role.builder, workspace_id=other_workspace)
    user = Actor(user_id=902, username="ann", role=Role.user, workspace_id=other_workspace)
    outsider = Actor(user_id=903, username="eve", role=Role.builder, workspace_id=1)
    name = uniq("ws-model")
    with pytest.raises(PermissionDenied, match="builder"):
        models_service.add_local_model(actor=user, name=name, source=str(tiny_model_dir))
    m = models_service.add_local_model(actor=builder, name=name, source=str(tiny_model_dir))
    assert m.workspace_id == other_workspace and m.created_by == 901
    # builders of the workspace list and use it; a user chats with the published bots only
    assert name in [x.name for x in models_service.list_models(actor=builder)]
    assert models_service.model_spec(actor=builder, model=name).source == m.source
    for call in (models_service.list_models, models_service.get_model,
                 models_service.model_spec):
        with pytest.raises(PermissionDenied, match="builder role"):
            call(actor=user, **({} if call is models_service.list_models else {"model": name}))
    # another workspace cannot see it, by name or by id
    assert name not in [x.name for x in models_service.list_models(actor=outsider)]
    for ref in (name, m.id):
        with pytest.raises(models_service.ModelNotFound):
            models_service.get_model(actor=outsider, model=ref)
        with pytest.raises(models_service.ModelNotFound):
            models_service.remove_model(actor=outsider, model=ref)
    # an admin sees across workspaces when asking
    all_names = [x.name for x in models_service.list_models(actor=SYSTEM, all_workspaces=True)]
    assert name in all_names
    with pytest.raises(PermissionDenied):
        models_service.remove_model(actor=user, model=m.id)
    models_service.remove_model(actor=builder, model=m.id)
    assert name not in [x.name for x in models_service.list_models(actor=builder)]


def test_produced_model_keeps_its_lineage(tiny_model_dir: Path) -> None:
    lineage = {"base_model": "tiny", "dataset": "faq.jsonl", "job_id": 42}
    m = models_service.register_produced_model(actor=SYSTEM, name=uniq("ft"),
                                               path=tiny_model_dir, lineage=lineage)
    assert m.kind == "produced" and m.lineage == lineage
    assert models_service.get_model(actor=SYSTEM, model=m.id).lineage == lineage
    with pytest.raises(ValueError, match="No folder"):
        models_service.register_produced_model(actor=SYSTEM, name=uniq("ft"),
                                               path="/nope/x", lineage=lineage)


def test_add_tiny_builds_a_loadable_model_quickly() -> None:
    stages: list[str] = []
    started = time.perf_counter()
    m = models_service.add_tiny_model(actor=SYSTEM, name=uniq("demo"),
                                      progress=lambda f, s: stages.append(s))
    assert time.perf_counter() - started < 30
    assert m.kind == "produced" and m.lineage and m.lineage["recipe"] == "tiny"
    folder = Path(m.source)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (folder / f).exists(), f
    assert stages[-1] == "Done"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    s = "你好，世界！Hello, world."
    assert tok.decode(tok(s)["input_ids"]) == s
    assert 1500 <= len(tok) <= 4096
    removed = models_service.remove_model(actor=SYSTEM, model=m.id, delete_files=True)
    assert removed.id == m.id and not folder.exists()


def test_tiny_builder_is_deterministic(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from backend.llm.tiny import build_tiny_model

    a = load_file(str(build_tiny_model(tmp_path / "a", seed=3) / "model.safetensors"))
    b = load_file(str(build_tiny_model(tmp_path / "b", seed=3) / "model.safetensors"))
    c = load_file(str(build_tiny_model(tmp_path / "c", seed=4) / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)
    assert 1_000_000 < sum(v.numel() for v in a.values()) < 5_000_000


# --- connection tests that fail -------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    conns: list[socket.socket] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    done.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


def test_refused_connection_fails_fast_naming_the_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    m = models_service.add_openai_model(actor=SYSTEM, name=uniq("refuse"), base_url=url,
                                        remote_model="remote-test-model",
                                        api_key="sk-whatever-123456")
    started = time.perf_counter()
    result = models_service.test_model(actor=SYSTEM, model=m.id, timeout_s=3)
    assert time.perf_counter() - started < 3.5
    assert not result.ok and url in result.message and "connect" in result.message.lower()
    assert models_service.get_model(actor=SYSTEM, model=m.id).last_test_ok is False
    from backend.services.chat import stream_chat

    with pytest.raises(ValueError, match=url.replace(".", r"\.")):
        stream_chat(m.id, [{"role": "user", "content": "hi"}], actor=SYSTEM).collect()


def test_endpoint_that_never_answers_times_out_naming_it(silent_server: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.config import reset_settings

    url = f"http://127.0.0.1:{silent_server}/v1"
    m = models_service.add_openai_model(actor=SYSTEM, name=uniq("silent"), base_url=url,
                                        remote_model="remote-test-model")
    monkeypatch.setenv("STUDIO_REQUEST_TIMEOUT_S", "1.5")
    reset_settings()
    try:
        started = time.perf_counter()
        result = models_service.test_model(actor=SYSTEM, model=m.id)
        elapsed = time.perf_counter() - started
        assert not result.ok, result
        assert url in result.message and ("1.5 s" in result.message), result.message
        assert 1.0 < elapsed < 3.0
        from backend.services.chat import stream_chat

        started = time.perf_counter()
        with pytest.raises(ValueError, match="did not answer within 1.5 s"):
            stream_chat(m.id, [{"role": "user", "content": "hi"}], actor=SYSTEM).collect()
        assert time.perf_counter() - started < 3.0
    finally:
        monkeypatch.delenv("STUDIO_REQUEST_TIMEOUT_S")
        reset_settings()


def test_generation_params_are_validated_with_clear_messages() -> None:
    from backend.llm.types import GenerationParams

    with pytest.raises(ValueError, match="temperature"):
        GenerationParams.from_dict({"temperature": 5})
    with pytest.raises(ValueError, match="Unknown generation setting"):
        GenerationParams.from_dict({"max_tokens": 5})
    p = GenerationParams.from_dict({"stop": "###", "max_new_tokens": 7, "temperature": 0})
    assert p.stop == ("###",) and p.greedy
