"""How the /v1 API names things (issue 23, items 1, 4 and 10's error body): a model is named by
its name in the key's own workspace, never by id; odd digit strings and huge numbers are 404s,
and every 404/405 under /v1 answers the declared OpenAI-style error body.

Runs against the real uvicorn server of ``tests/test_api_chat.py`` (its fixtures are reused)."""

from __future__ import annotations

import httpx
import pytest

from backend.accounts.actor import Actor, Role
from backend.services import models as models_service
from tests import test_api_chat as _chat
from tests.accounts_helpers import make_key, make_user
from tests.test_api_chat import World

api_url, world = _chat.api_url, _chat.world
fake_upstream, broken_upstream = _chat.fake_upstream, _chat.broken_upstream


def get(api_url: str, key: str, path: str) -> httpx.Response:
    return httpx.get(f"{api_url}{path}", timeout=30, headers={"Authorization": f"Bearer {key}"})


def assert_error_body(res: httpx.Response, status: int) -> dict[str, object]:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and err["type"], err
    assert "Traceback" not in err["message"] and "/work" not in err["message"]
    return err


def _model_id(world: World) -> int:
    return models_service.get_model(actor=Actor.system(world.ws_a), model=world.model).id


def test_a_model_is_not_readable_by_id_from_another_workspace(api_url: str,
                                                              world: World) -> None:
    mid = _model_id(world)
    full_width = "".join(chr(ord(c) - ord("0") + ord("０")) for c in str(mid))
    for key in (world.key_b_admin, world.key_b):
        for ref in (str(mid), f"{mid:05d}", full_width):
            res = get(api_url, key, f"/models/{ref}")
            err = assert_error_body(res, 404)
            assert err["code"] == "model_not_found"
            assert "workspace-" not in res.text
    # by name, it is the owner's alone
    assert get(api_url, world.key_a, f"/models/{world.model}").status_code == 200
    assert_error_body(get(api_url, world.key_b_admin, f"/models/{world.model}"), 404)


def test_in_the_api_a_model_is_named_by_its_name_not_its_id(api_url: str, world: World) -> None:
    mid = _model_id(world)
    assert_error_body(get(api_url, world.key_a, f"/models/{mid}"), 404)
    assert get(api_url, world.key_a, f"/models/{world.model}").json()["id"] == world.model


@pytest.mark.parametrize("ref", ["%C2%B9", "%C2%B2", "%E2%91%A0", "99999999999999999999",
                                 "9223372036854775808", "-1", "0", "%EF%BC%91"])
def test_odd_digits_and_huge_numbers_are_404s(api_url: str, world: World, ref: str) -> None:
    for key in (world.key_a, world.key_b_admin):
        err = assert_error_body(get(api_url, key, f"/models/{ref}"), 404)
        assert err["code"] == "model_not_found"


def test_odd_digits_in_every_id_or_name_lookup_are_not_found() -> None:
    from backend.services import agents, corpora, datasets, knowledge, prompts

    admin = Actor(user_id=None, username="admin", role=Role.admin, workspace_id=1)
    lookups = [
        (lambda r: models_service.get_model(actor=admin, model=r)),
        (lambda r: agents.get_agent(actor=admin, agent=r)),
        (lambda r: agents.run_agent(actor=admin, agent=r, question="hi")),
        (lambda r: corpora.get_corpus(actor=admin, corpus=r)),
        (lambda r: datasets.get_dataset(actor=admin, dataset=r)),
        (lambda r: knowledge.get_knowledge_base(actor=admin, kb=r)),
        (lambda r: prompts.get_prompt(actor=admin, name=r)),
    ]
    for ref in ("¹", "²", "①", "99999999999999999999", "٣", 10**30):
        for lookup in lookups:
            with pytest.raises(LookupError):
                lookup(ref)


@pytest.mark.parametrize("path", ["/models/a%0Ab", "/models/a%0Db", "/nothing-here",
                                  "/models/x/%0A"])
def test_unknown_paths_under_v1_answer_the_error_body(api_url: str, world: World,
                                                      path: str) -> None:
    assert_error_body(get(api_url, world.key_a, path), 404)


def test_a_wrong_method_answers_the_error_body(api_url: str, world: World) -> None:
    res = httpx.delete(f"{api_url}/models", timeout=30,
                       headers={"Authorization": f"Bearer {world.key_a}"})
    err = assert_error_body(res, 405)
    assert "GET" in err["message"]
    res = httpx.get(f"{api_url}/chat/completions", timeout=30,
                    headers={"Authorization": f"Bearer {world.key_a}"})
    assert_error_body(res, 405)


def test_a_user_key_cannot_read_a_model_by_id_either(api_url: str, world: World) -> None:
    key = make_key(make_user(Role.user, [world.ws_a]), world.ws_a)
    assert_error_body(get(api_url, key, f"/models/{_model_id(world)}"), 404)
