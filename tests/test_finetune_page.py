"""The Fine-tune wizard under AppTest, in English and Chinese, against the real database: every
step renders with a tiny model, a dataset and a finished (short, real) fine-tune run; the
preview marks the loss tokens; the evaluate step shows base and tuned answers side by side; the
deploy step links to the playground; launching from the page creates a job."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts.actor import Actor
from backend.services import datasets as datasets_service
from backend.services import finetune as finetune_service
from backend.services import jobs as jobs_service
from backend.services import models as models_service
from tests.i18n_walk import untranslated

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "studio" / "pages" / "finetune.py"
SYSTEM = Actor.system()


@pytest.fixture(scope="module")
def seeded(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("ftpage") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    tag = uuid.uuid4().hex[:6]
    base = f"page-base-{tag}"
    models_service.register_produced_model(actor=SYSTEM, name=base, path=folder,
                                           lineage={"recipe": "tiny"})
    rows = [{"instruction": f"Colour of item {i}?", "output": f"Item {i} is blue."}
            for i in range(6)]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    ds = datasets_service.add_dataset(actor=SYSTEM, name=f"page-faq-{tag}", filename="faq.jsonl",
                                      data=data)
    config = finetune_service.make_config(preset="quick", settings={
        "max_steps": 2, "samples": 2, "sample_max_new_tokens": 12})
    job = finetune_service.start_finetune(actor=SYSTEM, base_model=base, dataset=ds.name,
                                          config=config, name=f"page-tuned-{tag}",
                                          enqueue=False)
    done = jobs_service.run_inline(actor=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error
    return {"base": base, "dataset": ds.name, "job": job.id, "tuned": f"page-tuned-{tag}",
            "result": done.result}


def _app(lang: str, seeded: dict[str, object], step: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = SYSTEM
    at.session_state["lang"] = lang
    at.session_state["ft_step"] = step
    at.session_state["ft_model"] = seeded["base"]
    at.session_state["ft_dataset"] = seeded["dataset"]
    at.session_state["ft_job"] = seeded["job"]
    return at


def _text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "success", "error", "title", "subheader",
             "metric")
    parts = [str(getattr(e, "value", "")) + str(getattr(e, "label", "")) for k in kinds
             for e in getattr(at, k)]
    return "\n".join(parts)


def _data(seeded: dict[str, object]) -> set[str]:
    """What people and jobs wrote: shown as it is."""
    result = seeded["result"]
    assert isinstance(result, dict)
    data = {str(seeded[k]) for k in ("base", "dataset", "tuned")} | {"system"}
    data.add(f"{seeded['base']}-{seeded['dataset']}-lora")  # the suggested name
    for s in result["samples"]:
        data.update(str(v) for v in s.values())
    for j in jobs_service.list_jobs(actor=SYSTEM, limit=200):
        data.add(j.title)
    data.update(d.name for d in datasets_service.list_datasets(actor=SYSTEM))
    from backend.services import knowledge

    data.update(b.name for b in knowledge.list_knowledge_bases(actor=SYSTEM))
    for m in models_service.list_models(actor=SYSTEM):
        data.update(str(v) for v in vars(m).values() if isinstance(v, str) and v)
    return data


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
@pytest.mark.parametrize("step", ["model", "data", "train", "evaluate", "deploy"])
def test_every_step_renders(lang: str, step: str, seeded: dict[str, object]) -> None:
    at = _app(lang, seeded, step).run()
    assert not at.exception, [e.value for e in at.exception]
    text = _text(at)
    if step == "model":
        assert "LlamaForCausalLM" in text
    if step == "data":
        marked = [h.proto.body for h in at.get("html")]  # loss tokens highlighted
        assert marked and "background:#c8f7d4" in marked[0] and "Item 0 is blue." in marked[0]
        assert at.get("plotly_chart")  # the length histogram
    if step == "train":
        assert at.button(key="ft_start")
    if step == "evaluate":
        table = at.dataframe[0].value  # base and tuned answers side by side
        assert len(table) >= 1 and table.shape[1] == 4
    if step == "deploy":
        assert str(seeded["tuned"]) in text
    if lang == "zh_CN":
        left = untranslated(at._tree, data=_data(seeded))
        assert not left, f"{step}: English left on screen:\n" + "\n".join(left)


def test_launch_from_the_page_creates_a_job(seeded: dict[str, object]) -> None:
    at = _app("en", seeded, "train").run()
    before = {j.id for j in finetune_service.list_runs(actor=SYSTEM)}
    at.text_input(key="ft_out_name").input(f"page-launch-{uuid.uuid4().hex[:6]}")
    at.button(key="ft_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = [j for j in finetune_service.list_runs(actor=SYSTEM) if j.id not in before]
    assert len(new) == 1 and new[0].queue == "gpu" and new[0].params["config"]["method"] == "lora"
    assert any(f"#{new[0].id}" in s.value for s in at.success)
    jobs_service.cancel_job(actor=SYSTEM, job_id=new[0].id)


def _fresh(lang: str = "en") -> AppTest:
    """The wizard as a person first opens it: nothing chosen yet."""
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["actor"] = SYSTEM
    at.session_state["lang"] = lang
    return at


def test_choices_survive_the_steps(seeded: dict[str, object]) -> None:
    """Issue 22, finding 1: the model picked in step 1 and the dataset picked in step 2 reach
    step 3 (Streamlit forgets the keys of widgets a rerun does not draw), and the step picker
    cannot be emptied by clicking the active step."""
    at = _fresh().run()
    assert not at.exception, [e.value for e in at.exception]
    steps = at.segmented_control(key="ft_step_pick")
    assert steps.value == "model" and steps.proto.required
    at.selectbox(key="ft_model_pick").set_value(seeded["base"]).run()
    at.button(key="ft_next_data").click().run()  # "Next: prepare the data"
    assert at.segmented_control(key="ft_step_pick").value == "data"
    text = _text(at)
    assert "Choose a base model in step 1" not in text
    at.selectbox(key="ft_dataset_pick").set_value(seeded["dataset"]).run()
    assert at.get("html"), "the preview through the chosen model's template"
    at.segmented_control(key="ft_step_pick").set_value("train").run()
    assert not at.exception, [e.value for e in at.exception]
    text = _text(at)
    assert "Choose a base model (step 1)" not in text
    assert f"**{seeded['base']}**" in text and f"**{seeded['dataset']}**" in text
    assert at.button(key="ft_start")
    at.radio(key="ft_preset").set_value("quick").run()
    assert at.number_input(key="ft_ep").value == finetune_service.PRESETS["quick"].epochs
    at.number_input(key="ft_ep").set_value(2.0).run()
    at.text_input(key="ft_out_name").input("kept-name").run()
    at.segmented_control(key="ft_step_pick").set_value("model").run()
    assert at.selectbox(key="ft_model_pick").value == seeded["base"]
    at.segmented_control(key="ft_step_pick").set_value("data").run()
    assert at.selectbox(key="ft_dataset_pick").value == seeded["dataset"]
    at.segmented_control(key="ft_step_pick").set_value("train").run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert at.radio(key="ft_preset").value == "quick"  # the settings outlive the step change
    assert at.number_input(key="ft_ep").value == 2.0
    assert at.text_input(key="ft_out_name").value == "kept-name"
    at.radio(key="ft_preset").set_value("thorough").run()  # another preset: its own epochs
    assert at.number_input(key="ft_ep").value == finetune_service.PRESETS["thorough"].epochs


def test_upload_names_the_dataset_after_its_file_and_lists_it(seeded: dict[str, object]) -> None:
    """Issue 22, findings 1 and 10: choosing a file fills in the dataset name; a saved dataset
    is listed and chosen in the same run (not "No dataset yet")."""
    at = _fresh()
    at.session_state["ft_step"] = "data"
    at.session_state["ft_model"] = seeded["base"]
    at.run()
    tag = uuid.uuid4().hex[:6]
    rows = [{"instruction": f"Size of box {i}?", "output": f"Box {i} is small."} for i in range(4)]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    at.file_uploader(key="ft_file").upload(f"boxes {tag}.jsonl", data, "application/json").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="ft_ds_name").value == f"boxes-{tag}"
    at.button(key="ft_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"boxes-{tag}" in s.value for s in at.success)
    assert "No dataset yet" not in _text(at)
    assert at.selectbox(key="ft_dataset_pick").value == f"boxes-{tag}"
    assert at.session_state["ft_dataset"] == f"boxes-{tag}"
    # a name typed by hand is kept when another file is chosen
    at.text_input(key="ft_ds_name").input("my-own-name").run()
    at.file_uploader(key="ft_file").upload("other.jsonl", data, "application/json").run()
    assert at.text_input(key="ft_ds_name").value == "my-own-name"
