"""The Playground page under AppTest, in English and Chinese, against the real database and a tiny
local model: fill variables, run, see the answer and its stats; a missing variable is named; the
sandbox refuses attribute tricks with a message; two models side by side; save a version and see
the diff; the token view's count equals the tokenizer's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor
from backend.services import models as models_service
from backend.services import prompts as svc

PAGE = Path(__file__).resolve().parent.parent / "studio" / "pages" / "playground.py"
APP = PAGE.parent.parent / "app.py"
SYSTEM = Actor.system()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> str:
    name = f"page-tiny-{uuid.uuid4().hex[:6]}"
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir),
                                   source_type="folder")
    return name


def _app(lang: str = "en") -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=180)
    at.session_state["actor"] = SYSTEM
    at.session_state["lang"] = lang
    return at


def _text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "success", "error", "title", "subheader",
             "text", "code")
    return "\n".join(str(e.value) for k in kinds for e in getattr(at, k))


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_fill_variables_run_and_see_output_and_stats(tiny: str, lang: str) -> None:
    at = _app(lang)
    at.run()
    _ok(at)
    topic = f"topic-{uuid.uuid4().hex[:6]}"
    at.text_area(key="play_template").input("Tell me about {{ topic }}.").run()
    _ok(at)
    at.selectbox(key="play_model_0").set_value(tiny)
    at.number_input(key="play_max_0").set_value(8)
    at.number_input(key="play_temp_0").set_value(0.0)
    at.button(key="play_run").click().run()
    _ok(at)
    assert "topic" in "\n".join(e.value for e in at.error)  # named before anything runs
    at.text_area(key="play_var_topic").input(topic)
    at.button(key="play_run").click().run()
    _ok(at)
    [run] = svc.list_runs(actor=SYSTEM, search=topic)
    assert run.model == tiny and run.tokens_out == 8 and run.variables == {"topic": topic}
    captions = "\n".join(c.value for c in at.caption)
    if lang == "en":
        assert f"{run.tokens_in} tokens in" in captions and "8 tokens out" in captions
        assert "tokens/s" in captions and "first token" in captions
    else:
        assert "输入" in captions and "输出" in captions
    assert run.text and run.text.strip()[:20] in _text(at)


def test_sandbox_refusal_is_a_message(tiny: str) -> None:
    at = _app()
    at.run()
    at.text_area(key="play_template").input("{{ name.__class__.__mro__ }}").run()
    at.text_area(key="play_var_name").input("x")
    at.selectbox(key="play_model_0").set_value(tiny)
    at.button(key="play_run").click().run()
    _ok(at)
    errors = "\n".join(e.value for e in at.error)
    assert "not allowed" in errors and "__class__" in errors


def test_two_models_side_by_side_save_and_diff(tiny: str) -> None:
    name = f"page-prompt-{uuid.uuid4().hex[:6]}"
    at = _app()
    at.run()
    at.text_area(key="play_system").input("Be brief.")
    at.text_area(key="play_template").input("Q: {{ q }}").run()
    at.text_area(key="play_var_q").input("hello")
    at.number_input(key="play_n_cols").set_value(2).run()
    for i in (0, 1):
        at.selectbox(key=f"play_model_{i}").set_value(tiny)
        at.number_input(key=f"play_max_{i}").set_value(4 + i)
    at.button(key="play_run").click().run()
    _ok(at)
    captions = "\n".join(c.value for c in at.caption)
    assert "4 tokens out" in captions and "5 tokens out" in captions
    at.text_input(key="play_save_name").input(name)
    at.text_input(key="play_save_message").input("first")
    at.button(key="FormSubmitter:play_save_form-Save").click().run()
    _ok(at)
    at.text_area(key="play_template").input("Question: {{ q }}")
    at.text_input(key="play_save_message").input("longer")
    at.button(key="FormSubmitter:play_save_form-Save").click().run()
    _ok(at)
    assert svc.get_prompt(actor=SYSTEM, name=name).version == 2
    at.selectbox(key="play_v_prompt").set_value(name).run()
    _ok(at)
    diff = "\n".join(c.value for c in at.code)
    assert "-Q: {{ q }}" in diff and "+Question: {{ q }}" in diff


def test_token_view_count_equals_the_tokenizer(tiny: str, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    at = _app()
    at.run()
    at.text_area(key="play_system").input("You answer in French.")
    at.text_area(key="play_template").input("Translate: {{ text }}").run()
    at.text_area(key="play_var_text").input("Good morning, 你好")
    at.selectbox(key="play_t_model").set_value(tiny).run()
    _ok(at)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ids = tok.apply_chat_template(
        [{"role": "system", "content": "You answer in French."},
         {"role": "user", "content": "Translate: Good morning, 你好"}],
        add_generation_prompt=True, return_dict=True)["input_ids"]
    view = svc.token_view(actor=SYSTEM, model=tiny, messages=[
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Translate: Good morning, 你好"}])
    assert view.count == len(ids) and [t.id for t in view.tokens] == list(ids)
    progress = at.get("progress")
    assert progress and f"{len(ids)} tokens of a 1024-token" in str(progress[0].proto.text)
    at.button(key="play_t_show").click().run()
    _ok(at)


def test_two_versions_against_one_model(tiny: str) -> None:
    name = f"page-versions-{uuid.uuid4().hex[:6]}"
    svc.create_prompt(actor=SYSTEM, name=name, template="Say {{ word }}.")
    svc.save_version(actor=SYSTEM, name=name, template="Say {{ word }} twice.")
    at = _app()
    at.run()
    at.radio(key="play_mode").set_value("versions").run()
    at.selectbox(key="play_cmp_prompt").set_value(name).run()
    _ok(at)
    at.text_area(key="play_var_word").input("tea")
    at.selectbox(key="play_model_0").set_value(tiny)
    for i in (0, 1):
        at.number_input(key=f"play_max_{i}").set_value(3)
    at.button(key="play_run").click().run()
    _ok(at)
    runs = svc.list_runs(actor=SYSTEM, prompt=name)
    assert sorted((r.version, r.model, r.tokens_out) for r in runs) == [(1, tiny, 3), (2, tiny, 3)]
    assert {r.messages[0]["content"] for r in runs} == {"Say tea.", "Say tea twice."}
    heads = "\n".join(m.value for m in at.markdown)
    assert f"{tiny} · v1" in heads and f"{tiny} · v2" in heads



def test_gallery_template_with_examples_runs_with_its_few_shot_turns(tiny: str) -> None:
    at = _app("zh_CN")
    at.run()
    classify = next(g for g in svc.gallery(actor=SYSTEM, language="zh_CN")
                    if g.key == "classify")
    at.selectbox(key="play_gallery").set_value(classify).run()
    at.button(key="play_use_gallery").click().run()
    _ok(at)
    assert at.text_area(key="play_template").value == "评论：{{ review }}"
    assert at.text_area(key="play_var_review").value  # the sample value is filled in
    at.selectbox(key="play_model_0").set_value(tiny)
    at.number_input(key="play_max_0").set_value(2)
    at.button(key="play_run").click().run()
    _ok(at)
    [run] = svc.list_runs(actor=SYSTEM, search="两分钟就装好了", limit=1)
    roles = [m["role"] for m in run.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant",
                     "user", "assistant"]
    assert run.messages[2]["content"] == "正面"


def test_a_column_continues_as_a_chat(tiny: str) -> None:
    at = _app()
    at.run()
    at.text_area(key="play_template").input("Hello {{ who }}").run()
    at.text_area(key="play_var_who").input("there")
    at.selectbox(key="play_model_0").set_value(tiny)
    at.number_input(key="play_max_0").set_value(3)
    at.button(key="play_run").click().run()
    _ok(at)
    follow = f"and then {uuid.uuid4().hex[:6]}?"
    at.text_input(key="play_follow_0").input(follow)
    at.button(key="play_send_0").click().run()
    _ok(at)
    [run] = svc.list_runs(actor=SYSTEM, search=follow, limit=5)
    assert [m["role"] for m in run.messages] == ["user", "assistant", "user", "assistant"]
    assert run.messages[0]["content"] == "Hello there" and run.messages[2]["content"] == follow
    assert follow in "\n".join(c.value for c in at.caption)  # the turn shows above the answer


@pytest.fixture(scope="module")
def tiny2(tiny_model_dir: Path) -> str:
    name = f"page-tiny2-{uuid.uuid4().hex[:6]}"
    models_service.add_local_model(actor=SYSTEM, name=name, source=str(tiny_model_dir),
                                   source_type="folder")
    return name


def test_the_draft_survives_another_page_and_model_param_keeps_it(tiny: str, tiny2: str) -> None:
    at = AppTest.from_file(str(APP), default_timeout=180)  # the app, with its pages
    at.session_state["actor"] = SYSTEM
    at.session_state["lang"] = "en"
    at.run()
    at.switch_page("pages/playground.py").run()
    _ok(at)
    at.text_area(key="play_system").input("Be kind.")
    at.text_area(key="play_template").input("Hi {{ who }}").run()
    at.text_area(key="play_var_who").input("Ann")
    at.number_input(key="play_n_cols").set_value(2).run()
    at.selectbox(key="play_model_0").set_value(tiny)
    at.selectbox(key="play_model_1").set_value(tiny2)
    at.number_input(key="play_max_1").set_value(7)
    at.run()
    _ok(at)
    at.switch_page("pages/models.py").run()  # Streamlit drops this page's widget values
    _ok(at)
    assert "play_template" not in at.session_state and "play_draft" in at.session_state
    at.switch_page("pages/playground.py").run()
    _ok(at)
    assert at.text_area(key="play_system").value == "Be kind."
    assert at.text_area(key="play_template").value == "Hi {{ who }}"
    assert at.text_area(key="play_var_who").value == "Ann"
    assert at.number_input(key="play_n_cols").value == 2
    assert at.selectbox(key="play_model_1").value == tiny2
    assert at.number_input(key="play_max_1").value == 7
    assert at.selectbox(key="play_model_0").value == tiny
    # "Try it in the playground" (?model=) picks the model and keeps the draft
    at.switch_page("pages/models.py").run()
    at.query_params["model"] = tiny2
    at.switch_page("pages/playground.py").run()
    _ok(at)
    assert at.selectbox(key="play_model_0").value == tiny2
    assert tiny2 in at.multiselect(key="play_e_models").value
    assert at.text_area(key="play_template").value == "Hi {{ who }}"
    assert at.text_area(key="play_var_who").value == "Ann"
    assert any(tiny2 in i.value for i in at.info)
    at.selectbox(key="play_model_0").set_value(tiny).run()  # the person's choice is kept
    assert at.selectbox(key="play_model_0").value == tiny


def test_evaluation_says_which_version_and_fills_missing_columns_from_the_editor(
        tiny: str) -> None:
    name = f"page-eval-{uuid.uuid4().hex[:6]}"
    at = _app()
    at.run()
    at.text_area(key="play_template").input("{{ tone }}: {{ q }}").run()
    at.text_area(key="play_var_tone").input("Brief")
    at.selectbox(key="play_model_0").set_value(tiny).run()
    assert "not saved yet" in _text(at)
    assert at.multiselect(key="play_e_models").value == [tiny]  # preselected, not empty
    at.text_input(key="play_save_name").input(name)
    at.button(key="FormSubmitter:play_save_form-Save").click().run()
    _ok(at)
    assert f"Runs version 1 of **{name}**" in _text(at)
    at.text_area(key="play_template").input("{{ tone }} - {{ q }}").run()
    assert f"not a saved version of **{name}**" in _text(at)
    at.text_area(key="play_template").input("{{ tone }}: {{ q }}").run()
    assert f"Runs version 1 of **{name}**" in _text(at)
    # the data file has no `tone` column: the editor's value fills it, and the page says so
    from backend.services import prompt_drafts

    fill = prompt_drafts.fill_missing_columns(actor=SYSTEM, rows=[{"q": "a"}, {"q": "b"}],
                                              names=["tone", "q", "style"],
                                              values={"tone": "Brief", "q": "x"})
    assert fill.rows == [{"q": "a", "tone": "Brief"}, {"q": "b", "tone": "Brief"}]
    assert fill.filled == {"tone": "Brief"} and fill.missing == ["style"]
    at.session_state["play_e_data"] = ("rows.csv", [{"q": "2+2?", "expected": "4"}])
    at.number_input(key="play_e_max").set_value(2)
    at.run()
    _ok(at)
    assert any("tone" in i.value and "Brief" in i.value for i in at.info), _text(at)
    at.button(key="play_e_start").click().run()
    _ok(at)
    job_id = at.session_state["play_e_job"]
    from backend.services.jobs import get_job

    job = get_job(actor=SYSTEM, job_id=int(job_id))
    assert job.params["version"] == 1 and job.params["prompt_id"]
    assert job.params["prompt"]["template"] == "{{ tone }}: {{ q }}"
    rows = Path(job.params["data_path"]).read_text()
    assert '"tone": "Brief"' in rows
