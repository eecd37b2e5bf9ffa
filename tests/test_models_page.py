"""The Models page under Streamlit's AppTest, against the real database: add a tiny model and an
endpoint through the forms, see keys only masked, test a connection, remove with confirmation,
and refuse a bad folder with a message."""

from __future__ import annotations

import uuid
from pathlib import Path

from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor, Role
from backend.services import models as models_service

PAGE = Path(__file__).resolve().parent.parent / "studio" / "pages" / "models.py"
SYSTEM = Actor.system()


def _app(actor: Actor = SYSTEM) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = actor
    return at


def _all_text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "success", "error", "title", "subheader",
             "text", "code")
    return "\n".join(str(e.value) for k in kinds for e in getattr(at, k))


def _model_id(name: str) -> int:
    return models_service.get_model(actor=SYSTEM, model=name).id


def test_add_tiny_then_test_then_remove() -> None:
    name = f"page-tiny-{uuid.uuid4().hex[:6]}"
    at = _app()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="models_tiny_name").input(name)
    at.button(key="FormSubmitter:models_add_tiny-Build and add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    mid = _model_id(name)
    assert any(name in s.value for s in at.success)
    assert at.selectbox(key="models_pick").value == mid  # the new model is picked
    at.text_input(key="models_search").input(name).run()
    assert [r for r in at.dataframe[0].value.iloc[:, 0]] == [name]

    at.button(key=f"models_test_{mid}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("It works" in s.value for s in at.success), _all_text(at)
    assert any("in-process" in c.value or "worker" in c.value for c in at.code)
    assert models_service.get_model(actor=SYSTEM, model=mid).last_test_ok is True

    at.button(key=f"models_remove_{mid}").click().run()
    assert any(name in w.value for w in at.warning)
    at.button(key=f"models_confirm_{mid}").click().run()
    assert not at.exception
    assert not models_service.list_models(actor=SYSTEM, search=name)


def test_endpoint_key_is_only_ever_masked_on_the_page() -> None:
    name = f"page-remote-{uuid.uuid4().hex[:6]}"
    secret = f"sk-page-{uuid.uuid4().hex}"
    at = _app()
    at.run()
    at.text_input(key="models_endpoint_name").input(name)
    at.text_input(key="models_endpoint_url_Custom").input("http://127.0.0.1:9/v1")
    at.text_input(key="models_endpoint_model").input("some-model")
    at.text_input(key="models_endpoint_key").input(secret)
    at.button(key="FormSubmitter:models_add_endpoint-Add endpoint").click().run()
    assert not at.exception, [e.value for e in at.exception]
    view = models_service.get_model(actor=SYSTEM, model=name)
    at.text_input(key="models_search").input(name).run()
    assert not at.exception
    tables = [df.value.to_csv() for df in [*at.dataframe, *at.table]]
    assert view.api_key_masked and view.api_key_masked in tables[0]
    assert not any(secret in t for t in tables) and secret not in _all_text(at)
    assert all(secret != w.value for w in at.text_input)
    models_service.remove_model(actor=SYSTEM, model=view.id)


def test_bad_folder_is_refused_with_a_message() -> None:
    at = _app()
    at.run()
    at.text_input(key="models_local_name").input("nope")
    at.text_input(key="models_local_source").input("/no/such/model/folder")
    at.button(key="FormSubmitter:models_add_local-Add model").click().run()
    assert not at.exception
    assert any("No folder at" in e.value for e in at.error)


def test_users_see_models_but_no_add_forms() -> None:
    user = Actor(user_id=77, username="reader", role=Role.user, workspace_id=1)
    at = _app(user)
    at.run()
    assert not at.exception
    assert any("builder role" in i.value for i in at.info)
    assert not [t for t in at.text_input if t.key == "models_tiny_name"]


def test_try_it_sends_with_one_submit_and_keeps_the_answer(tiny_model_dir: Path) -> None:
    name = f"page-try-{uuid.uuid4().hex[:6]}"
    view = models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir),
                                          source_type="folder")
    try:
        at = _app()
        at.run()
        at.text_input(key="models_search").input(name).run()
        at.toggle(key=f"models_try_{view.id}").set_value(True).run()
        assert not at.exception, [e.value for e in at.exception]
        assert "Try it in the playground" in _all_text(at)
        # the box and Send are one form: Send takes what was typed, in one click
        at.text_area(key=f"models_prompt_{view.id}").input("Hello there")
        at.button(key=f"FormSubmitter:models_try_form_{view.id}-Send").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("tokens in" in c.value for c in at.caption), _all_text(at)
        at.run()  # another rerun (any click elsewhere): the answer stays
        assert any("You: Hello there" in c.value for c in at.caption)
        assert any("tokens in" in c.value for c in at.caption)
    finally:
        models_service.remove_model(actor=SYSTEM, model=view.id)
