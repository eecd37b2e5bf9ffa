"""Take a PNG of every studio page into docs/screenshots/ (run: .venv/bin/python scripts/screenshots.py).

It starts a throwaway studio the way the browser suite does (``tests/browser/harness.py``: its own
embedded Postgres and Redis in a temporary folder, a worker, the API and Streamlit on free ports),
creates an admin, seeds data so the pages are not empty (demo jobs running, failed and done, tiny
models, a pre-train run, a fine-tune, a knowledge base, bots with conversations, a prompt), logs
in with headless Chromium under Playwright (Debian's, nothing downloaded) and photographs each page
listed in the sidebar, reached by clicking it as a person does (``tests/browser/ui.py``). Then
Home, Jobs and Models again after switching the sidebar's language to Chinese (``*-zh_CN.png``).
Nothing of the user's data or services is touched: the environment's STUDIO_* settings are ignored.

Chromium: ``apt-get install -y chromium fonts-noto-color-emoji fonts-noto-cjk`` (or set CHROMIUM).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.browser import ui  # noqa: E402
from tests.browser.harness import (  # noqa: E402
    INSTALL_HINT,
    launch_chromium,
    missing,
    new_context,
    start_studio,
)

OUT_DIR = ROOT / "docs" / "screenshots"
WIDTH = 1400
DEFAULT_HEIGHT = 900
# long pages get a taller window (Streamlit scrolls inside the page, so this is how to see more)
HEIGHTS: dict[str, int] = {"home": 1250, "jobs": 1500, "jobs-failed": 1500, "settings": 2300,
                           "pretrain": 1500, "playground": 2100, "playground-tokens": 2100,
                           "finetune-data": 1900, "finetune-train": 1500,
                           "finetune-evaluate": 1700, "knowledge": 1400, "agents": 1500,
                           "agents-bot": 1500, "chat": 1100}
ADMIN = ("admin", "screenshots-admin-pw")

# --------------------------------------------------------------------------------- seeding
# Runs in a child process with the studio's environment (``screenshots.py --seed``), so this
# process never holds the embedded services or loads torch.

HANDBOOK = """# Office handbook

## Parking

Staff park in the underground garage on level minus two. The gate code is 4711 and changes
every January.

## Lunch

The canteen on the third floor serves lunch from noon to two o'clock.
"""


def seed() -> None:
    from pydoc_data.topics import topics

    from backend.accounts.actor import Actor
    from backend.services import agents, corpora, datasets, finetune, jobs, models, prompts
    from backend.services import knowledge as kbs
    from backend.services.pretrain import launch_pretrain

    actor = Actor.system()

    def run(job_id: int) -> None:
        jobs.run_inline(actor=actor, job_id=job_id)

    # a corpus (CPython's reference topics, which ship with Python) and a short causal run on it
    folder = Path(tempfile.mkdtemp(prefix="pydocs-"))
    for name, text in topics.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    corpus = corpora.add_corpus(actor=actor, name="python-docs", paths=[folder],
                                heldout_fraction=0.05)
    run(launch_pretrain(actor=actor, corpus=corpus.id, name="python-docs-gpt", enqueue=False,
                        overrides={"max_steps": 60, "vocab_size": 2000, "block_size": 128,
                                   "eval_interval": 20, "sample_interval": 30}).id)
    shutil.rmtree(folder, ignore_errors=True)

    # demo jobs: one running on the worker, one failed, one done (newest last)
    running = jobs.submit_job(actor=actor, kind="demo", title="Demo job: long run",
                              params={"steps": 3000, "step_seconds": 0.2})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = jobs.get_job(actor=actor, job_id=running.id)
        if job.status == "running" and job.progress > 0.02:
            break
        time.sleep(0.5)
    run(jobs.submit_job(actor=actor, kind="demo", title="Demo job that fails at step 12",
                        params={"steps": 30, "step_seconds": 0.01, "fail_at": 12},
                        enqueue=False).id)
    run(jobs.submit_job(actor=actor, kind="demo", title="Demo job: 60 steps",
                        params={"steps": 60, "step_seconds": 0.01}, enqueue=False).id)

    # tiny models (the two chat-tiny ones come first in the Playground's pickers) and a prompt
    models.add_tiny_model(actor=actor, name="tiny-demo")
    models.add_tiny_model(actor=actor, name="chat-tiny-a", seed=1)
    models.add_tiny_model(actor=actor, name="chat-tiny-b", seed=2)
    prompts.create_prompt(actor=actor, name="support-answer", system="You are a support agent.",
                          template="Customer: {{ question }}", message="First version")
    prompts.save_version(actor=actor, name="support-answer",
                         system="You are a support agent. Be brief.",
                         template="Context: {{ context }}\n\nCustomer: {{ question }}",
                         message="Answer from the context")

    # a dataset and a short, real fine-tune of the tiny model for every step of the wizard
    colours = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]
    rows = [{"instruction": f"What colour is box {i}?", "output": f"Box {i} is {c}."}
            for i, c in enumerate(colours * 3)]
    datasets.add_dataset(actor=actor, name="boxes", filename="boxes.jsonl",
                         data="\n".join(json.dumps(r) for r in rows).encode())
    config = finetune.make_config(preset="quick", settings={
        "epochs": 40, "batch_size": 8, "val_fraction": 0.25, "samples": 4,
        "sample_max_new_tokens": 16})
    run(finetune.start_finetune(actor=actor, base_model="tiny-demo", dataset="boxes",
                                config=config, name="tiny-boxes", enqueue=False).id)

    # a knowledge base, a bot made in three steps, an agent with tools, and a few turns with
    # each (the tiny model's words are nonsense, but every step of the trace is real)
    kb = kbs.create_knowledge_base(actor=actor, name="office-handbook")
    run(kbs.ingest_files(actor=actor, kb=kb.id, uploads=[("handbook.md", HANDBOOK.encode())],
                         enqueue=False))
    bot = agents.create_bot(actor=actor, name="office-helper", model="tiny-demo",
                            knowledge_bases=["office-handbook"],
                            welcome="Ask me about parking, lunch and the office.")
    agents.update_agent(actor=actor, agent=bot.id, config={
        **bot.config, "params": {"temperature": 0, "max_new_tokens": 24},
        "suggestions": ["What is the gate code?", "When is lunch?"]})
    agents.publish_agent(actor=actor, agent=bot.id)
    helper = agents.create_agent(actor=actor, name="tools-helper", icon="🧮", config={
        "model": "tiny-demo", "tools": ["calculator", "current_datetime"],
        "params": {"temperature": 0, "max_new_tokens": 24}}, description="Calculates with a tool.")
    agents.publish_agent(actor=actor, agent=helper.id)
    first = agents.run_agent(actor=actor, agent="office-helper", channel="share",
                             question="What is the gate code of the parking garage?")
    agents.give_feedback(actor=actor, message_id=first.message_id, rating=1)
    agents.run_agent(actor=actor, agent="office-helper", question="When is lunch served?",
                     conversation_id=first.conversation_id)
    res = agents.run_agent(actor=actor, agent="tools-helper", question="What is 12 * 7?")
    agents.give_feedback(actor=actor, message_id=res.message_id, rating=-1,
                         comment="It should have used the calculator.")

    # a few pages of Python's own documentation (Debian's python3-doc, when installed)
    root = next((r for r in (Path("/usr/share/doc/python3-doc/html"),
                             Path("/usr/share/doc/python3.11/html")) if (r / "tutorial").is_dir()),
                None)
    if root is not None:
        docs = kbs.create_knowledge_base(actor=actor, name="python-docs",
                                         description="A few pages of the Python documentation")
        pages = [root / p for p in ("tutorial/appetite.html", "tutorial/venv.html",
                                    "howto/sorting.html", "faq/installed.html",
                                    "library/secrets.html", "library/bisect.html")]
        run(kbs.ingest_files(actor=actor, kb=docs.id, paths=[p for p in pages if p.exists()],
                             enqueue=False))


# -------------------------------------------------------------------------------- shooting


class Camera:
    """Names the PNGs, sizes the window for each, and says what it took."""

    def __init__(self, page: Any, args: argparse.Namespace, suffix: str = "") -> None:
        self.page, self.out, self.timeout, self.suffix = page, args.out, args.timeout, suffix
        self.taken: list[Path] = []
        self.t0 = time.monotonic()

    def size(self, name: str) -> None:
        """Call before the steps that lead to the picture: the page draws for its height."""
        self.page.set_viewport_size({"width": WIDTH, "height": HEIGHTS.get(name, DEFAULT_HEIGHT)})
        self.t0 = time.monotonic()

    def take(self, name: str) -> None:
        """The PNG of what shows now (the ui step before it waited for Streamlit to settle)."""
        self.page.locator('[data-testid="stMainBlockContainer"] h1').first.wait_for()
        time.sleep(0.4)  # charts animate in
        out = self.out / f"{name}{self.suffix}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(out))
        self.taken.append(out)
        crashed = self.page.get_by_test_id("stException").all_inner_texts()
        note = f"  PAGE SHOWS AN ERROR: {crashed[0][:300]!r}" if crashed else ""
        shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
        print(f"{shown}  ({time.monotonic() - self.t0:.1f} s){note}", flush=True)


def sidebar_pages(page: Any) -> dict[str, str]:
    """File name -> title of each page in the sidebar, in order (Home sits at the root)."""
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    hrefs = links.evaluate_all("as => as.map(a => new URL(a.href).pathname.replace(/^\\/+/, ''))")
    return {href or "home": title for href, title in zip(hrefs, ui.nav_titles(page), strict=True)}


def click_text(page: Any, selector: str, text: str, timeout_s: float) -> None:
    """Click the first ``selector`` element that shows ``text`` (a radio label, an expander)."""
    page.locator(selector).filter(has_text=text).first.click(timeout=timeout_s * 1000)
    ui.settle(page, timeout_s=timeout_s)


# pages photographed only after a few clicks, by ``shoot_extras``
AFTER_CLICKS = {"playground", "agents", "chat"}


def shoot_extras(cam: Camera, titles: dict[str, str], wanted: list[str]) -> None:
    """The pictures behind a click: a run, a tab, a conversation, a wizard's steps."""
    page, timeout = cam.page, cam.timeout
    if "playground" in wanted:  # a side-by-side run of two models, then its attention view
        cam.size("playground")
        ui.nav(page, titles["playground"])
        ui.button(page, "Use this template")
        ui.fill(page, "Models side by side", "2")
        ui.button(page, "Run the prompt", timeout_s=120)
        ui.settle(page, timeout_s=120, quiet_s=2.0)
        cam.take("playground")
        ui.tab(page, "Tokens and attention")
        ui.button(page, "Show attention", timeout_s=120)
        ui.settle(page, timeout_s=120, quiet_s=2.0)
        cam.take("playground-tokens")
    if "agents" in wanted:  # a conversation with its trace; the bot in three steps
        cam.size("agents")
        ui.nav(page, titles["agents"])
        ui.tab(page, "History")
        click_text(page, "label", "What is the gate code", timeout)
        click_text(page, "summary", "Trace #", timeout)
        cam.take("agents")
        ui.tab(page, "Bot in three steps")
        cam.take("agents-bot")
    if "chat" in wanted:  # the shared chat page with that conversation and its sources
        cam.size("chat")
        ui.nav(page, titles["chat"])
        click_text(page, "label", "What is the gate code", timeout)
        click_text(page, "summary", "Sources", timeout)
        cam.take("chat")
    if "home" in wanted and "jobs" in titles:  # a failed job, opened from its link on Home
        cam.size("jobs-failed")
        ui.nav(page, titles["home"])
        click_text(page, '[data-testid="stMainBlockContainer"] a', "fails at step 12", timeout)
        page.wait_for_url("**/jobs**")
        cam.take("jobs-failed")
    if "finetune" in wanted:  # the wizard's other steps, clicked as a person would
        ui.nav(page, titles["finetune"])
        for step, name in (("2 · Prepare data", "data"), ("3 · Train", "train"),
                           ("4 · Evaluate", "evaluate"), ("5 · Deploy", "deploy")):
            cam.size(f"finetune-{name}")
            ui.tab(page, step)
            cam.take(f"finetune-{name}")


def shoot(browser: Any, url: str, args: argparse.Namespace) -> list[Path]:
    context = new_context(browser, width=WIDTH, height=DEFAULT_HEIGHT)
    context.set_default_timeout(args.timeout * 1000)
    page = context.new_page()
    cam = Camera(page, args)
    try:
        ui.goto(page, url)
        ui.login(page, *ADMIN)
        titles = sidebar_pages(page)
        wanted = args.pages or list(titles)
        if unknown := [p for p in wanted if p not in titles]:
            raise SystemExit(f"Unknown pages: {', '.join(unknown)}. Pages: {', '.join(titles)}")
        for name in wanted:
            if name not in AFTER_CLICKS:
                cam.size(name)
                ui.nav(page, titles[name])
                cam.take(name)
        shoot_extras(cam, titles, wanted)
        if not args.pages:
            # the same studio in Chinese, switched in the sidebar as a person does
            ui.choose(page, "🌐 Language", "简体中文")
            cam.suffix = "-zh_CN"
            titles = sidebar_pages(page)
            for name in ("home", "jobs", "models"):
                cam.size(name)
                ui.nav(page, titles[name])
                cam.take(name)
    finally:
        context.close()
    return cam.taken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="Folder for the PNGs.")
    parser.add_argument("--pages", nargs="*", default=[],
                        help="Url paths of the pages to photograph (default: every page, the "
                             "pictures behind clicks and the Chinese ones).")
    parser.add_argument("--timeout", type=float, default=40,
                        help="Seconds to wait for a page to finish drawing.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary data folder.")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:  # the child process: the studio's environment is ours
        seed()
        return 0
    if (why := missing()) is not None:
        raise SystemExit(f"{why}: {INSTALL_HINT} (or set CHROMIUM to a Chromium binary).")
    from playwright.sync_api import sync_playwright

    data_dir = Path(tempfile.mkdtemp(prefix="studio-screens-"))
    server = None
    try:
        print("starting the studio…", flush=True)
        server = start_studio(data_dir)
        server.wait_for_worker()
        server.create_admin(*ADMIN)
        print("seeding…", flush=True)
        seeded = subprocess.run([sys.executable, __file__, "--seed"], cwd=ROOT, env=server.env,
                                capture_output=True, text=True)
        if seeded.returncode != 0:  # its log is noisy on purpose (a demo job fails): only then
            raise SystemExit(f"seeding failed:\n{seeded.stdout[-3000:]}{seeded.stderr[-6000:]}")
        print(f"studio at {server.url}", flush=True)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                shoot(browser, server.url, args)
            finally:
                browser.close()
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
