"""Take a PNG of every studio page into docs/screenshots/ (run: .venv/bin/python scripts/screenshots.py).

It starts the studio (embedded Postgres and Redis, a worker, Streamlit) on free ports with a
throwaway data folder, creates an admin, seeds demo jobs (one running, one failed, one succeeded)
so the pages are not empty, logs in with headless Chromium and photographs each page listed in
the sidebar. Nothing of the user's data or services is touched: the database and Redis URLs of
the environment are ignored.

Chromium: ``apt-get install -y chromium`` (or set CHROMIUM=/path/to/chrome). It is driven over
the DevTools protocol rather than with ``--screenshot``: Streamlit draws a page over a websocket
after the page has loaded, which ``--virtual-time-budget`` does not wait for, and a login lives
in one browser session, so the pages are reached by clicking the sidebar as a person would.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT_DIR = ROOT / "docs" / "screenshots"
WIDTH = 1400
DEFAULT_HEIGHT = 900
# long pages get a taller window (Streamlit scrolls inside the page, so this is how to see more)
HEIGHTS: dict[str, int] = {"home": 1250, "jobs": 1500, "settings": 2300, "pretrain": 1500,
                           "playground": 2100, "finetune-data": 1900, "finetune-train": 1500,
                           "finetune-evaluate": 1700, "knowledge": 1400}
DEFAULT_PAGE = "home"  # the page st.navigation shows at the root address
ADMIN_USER = "admin"
ADMIN_PASSWORD = "screenshots-admin-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    raise SystemExit("Chromium is not installed: run `apt-get install -y chromium` "
                     "(or set CHROMIUM to a Chrome/Chromium binary).")


def prepare_env(data_dir: Path) -> None:
    for key in ("STUDIO_DATABASE_URL", "STUDIO_REDIS_URL", "STUDIO_SECRET_KEY", "STUDIO_API_KEY"):
        os.environ.pop(key, None)
    os.environ.update({
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_HOST": "127.0.0.1",
        "STUDIO_STUDIO_PORT": str(free_port()),
        "STUDIO_API_PORT": str(free_port()),
        "STUDIO_HEARTBEAT_INTERVAL_S": "1",
        "OMP_NUM_THREADS": "1",
        # the side-by-side run's second chat waits while the worker's other slot runs a job
        "STUDIO_INFERENCE_ACCEPT_TIMEOUT_S": "180",
    })


def create_admin() -> tuple[str, str] | None:
    """The first admin, where the studio has accounts; None where it has no login."""
    try:
        from backend.services import accounts
    except ImportError:
        return None
    if accounts.needs_first_admin():
        accounts.create_first_admin(username=ADMIN_USER, password=ADMIN_PASSWORD)
    return ADMIN_USER, ADMIN_PASSWORD


def seed_jobs() -> dict[str, int]:
    """A running, a failed and a succeeded demo job (newest last: the Jobs page opens it)."""
    from backend.accounts.actor import Actor
    from backend.services.jobs import get_job, run_inline, submit_job

    actor = Actor.system()
    running = submit_job(actor=actor, kind="demo", title="Demo job: long run",
                         params={"steps": 3000, "step_seconds": 0.2})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = get_job(actor=actor, job_id=running.id)
        if job.status == "running" and job.progress > 0.02:
            break
        time.sleep(0.5)
    failed = submit_job(actor=actor, kind="demo", title="Demo job that fails at step 12",
                        params={"steps": 30, "step_seconds": 0.01, "fail_at": 12}, enqueue=False)
    run_inline(actor=actor, job_id=failed.id)
    done = submit_job(actor=actor, kind="demo", title="Demo job: 60 steps",
                      params={"steps": 60, "step_seconds": 0.01}, enqueue=False)
    run_inline(actor=actor, job_id=done.id)
    return {"running": running.id, "failed": failed.id, "done": done.id}


def seed_models() -> None:
    """A tiny demo model, so the Models page shows the registry with an entry."""
    from backend.accounts.actor import Actor
    from backend.services.models import add_tiny_model

    add_tiny_model(actor=Actor.system(), name="tiny-demo")


def seed_pretrain() -> None:
    """A corpus (CPython's reference topics, which ship with Python) and a short causal run on
    it, so the Pre-train page shows statistics, and the run its charts and samples."""
    from pydoc_data.topics import topics

    from backend.accounts.actor import Actor
    from backend.services.corpora import add_corpus
    from backend.services.jobs import run_inline
    from backend.services.pretrain import launch_pretrain

    actor = Actor.system()
    folder = Path(tempfile.mkdtemp(prefix="pydocs-"))
    for name, text in topics.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    corpus = add_corpus(actor=actor, name="python-docs", paths=[folder], heldout_fraction=0.05)
    job = launch_pretrain(actor=actor, corpus=corpus.id, name="python-docs-gpt", enqueue=False,
                          overrides={"max_steps": 60, "vocab_size": 2000, "block_size": 128,
                                     "eval_interval": 20, "sample_interval": 30})
    run_inline(actor=actor, job_id=job.id)
    shutil.rmtree(folder, ignore_errors=True)


def seed_playground() -> None:
    """A second tiny model (for a side-by-side run) and a saved prompt with two versions."""
    from backend.accounts.actor import Actor
    from backend.services.models import add_tiny_model
    from backend.services.prompts import create_prompt, save_version

    actor = Actor.system()
    # named to come first in the model pickers, so the two columns run these two
    add_tiny_model(actor=actor, name="chat-tiny-a", seed=1)
    add_tiny_model(actor=actor, name="chat-tiny-b", seed=2)
    create_prompt(actor=actor, name="support-answer", system="You are a support agent.",
                  template="Customer: {{ question }}", message="First version")
    save_version(actor=actor, name="support-answer", system="You are a support agent. Be brief.",
                 template="Context: {{ context }}\n\nCustomer: {{ question }}",
                 message="Answer from the context")


HANDBOOK = """# Office handbook

## Parking

Staff park in the underground garage on level minus two. The gate code is 4711 and changes
every January.

## Lunch

The canteen on the third floor serves lunch from noon to two o'clock.
"""


def seed_agents() -> None:
    """A knowledge base, a published bot made in three steps, an agent with tools, and a few
    turns with each (answered by the tiny model, so the words are nonsense but every step of
    the trace is real)."""
    from backend.accounts.actor import Actor
    from backend.services import agents
    from backend.services import knowledge as kbs
    from backend.services.jobs import run_inline

    actor = Actor.system()
    kb = kbs.create_knowledge_base(actor=actor, name="office-handbook")
    run_inline(actor=actor, job_id=kbs.ingest_files(
        actor=actor, kb=kb.id, uploads=[("handbook.md", HANDBOOK.encode())], enqueue=False))
    bot = agents.create_bot(actor=actor, name="office-helper", model="tiny-demo",
                            knowledge_bases=["office-handbook"],
                            welcome="Ask me about parking, lunch and the office.")
    agents.update_agent(actor=actor, agent=bot.id, config={
        **bot.config, "params": {"temperature": 0, "max_new_tokens": 24},
        "suggestions": ["What is the gate code?", "When is lunch?"]})
    agents.publish_agent(actor=actor, agent=bot.id)
    helper = agents.create_agent(actor=actor, name="tools-helper", icon="🧮", config={
        "model": "tiny-demo", "tools": ["calculator", "current_datetime"],
        "params": {"temperature": 0, "max_new_tokens": 24}},
        description="Calculates with a tool.")
    agents.publish_agent(actor=actor, agent=helper.id)
    first = agents.run_agent(actor=actor, agent="office-helper", channel="share",
                             question="What is the gate code of the parking garage?")
    agents.give_feedback(actor=actor, message_id=first.message_id, rating=1)
    agents.run_agent(actor=actor, agent="office-helper", question="When is lunch served?",
                     conversation_id=first.conversation_id)
    res = agents.run_agent(actor=actor, agent="tools-helper", question="What is 12 * 7?")
    agents.give_feedback(actor=actor, message_id=res.message_id, rating=-1,
                         comment="It should have used the calculator.")


def shoot_agents(browser: Browser, paths: dict[str, str], args: argparse.Namespace
                 ) -> list[Path]:
    """The Agents page with a conversation and its trace open, the bot in three steps, and the
    shared Chat page with a conversation."""
    def click_text(selector: str, text: str, *, contains: bool = False) -> None:
        test = "e.innerText.trim().includes" if contains else "e.innerText.trim() === "
        deadline = time.monotonic() + args.timeout
        while not browser.evaluate(
                f"(() => {{ const e = Array.from(document.querySelectorAll("
                f"{json.dumps(selector)})).find(e => {test}({json.dumps(text)}));"
                " if (!e) return false; e.click(); return true; })()"):
            if time.monotonic() > deadline:  # the page may still be drawing: wait for it
                seen = browser.evaluate(
                    f"Array.from(document.querySelectorAll({json.dumps(selector)}))"
                    ".map(e => e.innerText.trim()).join(' | ')")
                raise RuntimeError(f"no {selector} says {text!r}; there are: {seen}")
            time.sleep(0.5)
        time.sleep(0.8)
        browser.wait_until_drawn(args.timeout)

    def shot(name: str) -> Path:
        t0 = time.monotonic()
        out = args.out / f"{name}.png"
        browser.capture(out)
        _report(out, t0, True, browser)
        return out

    taken = []
    browser.resize(1500)
    browser.go_to_page(paths["agents"], args.timeout)
    click_text("[role=tab]", "History")
    click_text("label", "What is the gate code", contains=True)
    click_text("summary", "Trace #", contains=True)
    taken.append(shot("agents"))
    click_text("[role=tab]", "Bot in three steps")
    taken.append(shot("agents-bot"))
    browser.resize(1100)
    browser.go_to_page(paths["chat"], args.timeout)
    click_text("label", "What is the gate code", contains=True)
    click_text("summary", "Sources", contains=True)
    taken.append(shot("chat"))
    return taken
def seed_knowledge() -> None:
    """A knowledge base of a few pages of Python's own documentation (Debian's python3-doc, when
    installed), so the Knowledge page shows documents, chunks and its map."""
    from backend.accounts.actor import Actor
    from backend.services.jobs import run_inline
    from backend.services.knowledge import create_knowledge_base, ingest_files

    roots = [Path("/usr/share/doc/python3-doc/html"), Path("/usr/share/doc/python3.11/html")]
    root = next((r for r in roots if (r / "tutorial").is_dir()), None)
    if root is None:
        return
    actor = Actor.system()
    kb = create_knowledge_base(actor=actor, name="python-docs",
                               description="A few pages of the Python documentation")
    pages = [root / p for p in ("tutorial/appetite.html", "tutorial/venv.html",
                                "howto/sorting.html", "faq/installed.html",
                                "library/secrets.html", "library/bisect.html")]
    run_inline(actor=actor, job_id=ingest_files(actor=actor, kb=kb.id,
                                                paths=[p for p in pages if p.exists()],
                                                enqueue=False))


def shoot_playground(browser: Browser, path: str, args: argparse.Namespace) -> list[Path]:
    """The Playground with a side-by-side run of two models (a gallery template), then its
    token and attention view."""
    def click_text(selector: str, text: str) -> None:
        ok = browser.evaluate(
            f"(() => {{ const e = Array.from(document.querySelectorAll({json.dumps(selector)}))"
            f".find(e => e.innerText.trim() === {json.dumps(text)}); if (!e) return false;"
            " e.click(); return true; })()")
        if not ok:
            raise RuntimeError(f"no {selector} says {text!r} on the Playground")
        time.sleep(0.8)
        browser.wait_until_drawn(args.timeout)

    taken = []
    browser.resize(HEIGHTS["playground"])
    browser.go_to_page(path, args.timeout)
    click_text("button", "Use this template")
    # two columns: the number input's "+" button
    browser.click("[data-testid=stNumberInput] button[data-testid=stNumberInputStepUp]")
    time.sleep(0.8)
    browser.wait_until_drawn(args.timeout)
    click_text("button", "Run the prompt")
    browser.wait_until_drawn(120, settle_s=2.0)
    t0 = time.monotonic()
    out = args.out / "playground.png"
    browser.capture(out)
    taken.append(out)
    _report(out, t0, True, browser)
    click_text("[role=tab]", "Tokens and attention")
    click_text("button", "Show attention")
    browser.wait_until_drawn(120, settle_s=2.0)
    t0 = time.monotonic()
    out = args.out / "playground-tokens.png"
    browser.capture(out)
    taken.append(out)
    _report(out, t0, True, browser)
    return taken


def seed_finetune() -> None:
    """A dataset and a short, real fine-tune of the tiny model, so every step of the Fine-tune
    wizard has something to show."""
    import json as _json

    from backend.accounts.actor import Actor
    from backend.services import datasets, finetune
    from backend.services.jobs import run_inline

    actor = Actor.system()
    colours = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]
    rows = [{"instruction": f"What colour is box {i}?", "output": f"Box {i} is {c}."}
            for i, c in enumerate(colours * 3)]
    data = "\n".join(_json.dumps(r) for r in rows).encode()
    datasets.add_dataset(actor=actor, name="boxes", filename="boxes.jsonl", data=data)
    config = finetune.make_config(preset="quick", settings={
        "epochs": 40, "batch_size": 8, "val_fraction": 0.25, "samples": 4,
        "sample_max_new_tokens": 16})
    job = finetune.start_finetune(actor=actor, base_model="tiny-demo", dataset="boxes",
                                  config=config, name="tiny-boxes", enqueue=False)
    run_inline(actor=actor, job_id=job.id)


def use_language(username: str, language: str) -> None:
    """Save the admin's language: the studio applies it at the next login."""
    from backend.accounts.actor import Actor, Role
    from backend.services.accounts import find_user, set_user_language

    user = find_user(actor=Actor.system(), username=username)
    set_user_language(actor=Actor(user_id=user.id, username=username, role=Role.admin),
                      language=language)


class Browser:
    """Headless Chromium over the DevTools protocol: open, type, click, wait, capture."""

    def __init__(self, chromium: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self._stack = ExitStack()
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--window-size={WIDTH},{DEFAULT_HEIGHT}",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import httpx
        from websockets.sync.client import connect

        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20))
        self._id = 0

    def call(self, method: str, **params: object) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    def resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height,
                  deviceScaleFactor=1, mobile=False)

    def open(self, url: str, timeout_s: float) -> bool:
        self.call("Page.navigate", url=url)
        time.sleep(0.5)
        return self.wait_until_drawn(timeout_s)

    def wait_until_drawn(self, timeout_s: float, *, path: str = "", settle_s: float = 1.2) -> bool:
        """True once the script has stopped, no placeholder is left and the page has a title,
        for ``settle_s`` on end (and, given ``path``, the address ends with it)."""
        check = (
            "(() => { const app = document.querySelector('[data-testid=stApp]');"
            " if (!app) return false;"
            f" if (!location.pathname.endsWith({json.dumps(path)})) return false;"
            " return app.getAttribute('data-test-script-state') === 'notRunning'"
            " && !document.querySelector('[data-testid=stSkeleton]')"
            " && !!document.querySelector('[data-testid=stMainBlockContainer] h1'); })()"
        )
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.evaluate(check):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.2)
        return False

    def type_into(self, selector: str, text: str) -> None:
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              " if (!e) return false; e.focus(); return true; })()")
        if not found:
            raise RuntimeError(f"nothing on the page matches {selector}")
        self.call("Input.insertText", text=text)

    def click(self, selector: str) -> bool:
        return bool(self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"))

    def nav_pages(self) -> list[str]:
        """The url paths of the pages listed in the sidebar, in order."""
        paths = self.evaluate(
            "Array.from(document.querySelectorAll('[data-testid=stSidebarNav] a'))"
            ".map(a => new URL(a.href).pathname.replace(/^\\/+/, ''))")
        return list(paths or [])

    def go_to_page(self, path: str, timeout_s: float) -> bool:
        """Click the page's link in the sidebar: the login lives in this browser session, so
        the studio is navigated as a person does, never by loading a new address."""
        clicked = self.evaluate(
            "(() => { const a = Array.from(document.querySelectorAll("
            "'[data-testid=stSidebarNav] a')).find(a => new URL(a.href).pathname"
            f".replace(/^\\/+/, '') === {json.dumps(path)});"
            " if (!a) return false; a.click(); return true; })()")
        if not clicked:
            raise RuntimeError(f"the sidebar has no link to {path!r}")
        time.sleep(0.6)
        return self.wait_until_drawn(timeout_s, path=path)

    def click_button(self, text: str, timeout_s: float) -> bool:
        """Click the first button whose text contains ``text``; wait for the page to redraw."""
        clicked = self.evaluate(
            "(() => { const b = Array.from(document.querySelectorAll("
            "'[data-testid=stMainBlockContainer] button')).find(b => b.innerText.includes("
            f"{json.dumps(text)})); if (!b) return false; b.click(); return true; }})()")
        if not clicked:
            raise RuntimeError(f"no button on the page says {text!r}")
        time.sleep(0.6)
        return self.wait_until_drawn(timeout_s)

    def follow_link(self, text: str, path: str, timeout_s: float) -> bool:
        """Click the first page link whose text contains ``text``; wait for ``path`` to draw."""
        clicked = self.evaluate(
            "(() => { const a = Array.from(document.querySelectorAll("
            "'[data-testid=stMainBlockContainer] a')).find(a => a.innerText.includes("
            f"{json.dumps(text)})); if (!a) return false; a.click(); return true; }})()")
        if not clicked:
            raise RuntimeError(f"no link on the page says {text!r}")
        time.sleep(0.6)
        return self.wait_until_drawn(timeout_s, path=path)

    def errors_on_page(self) -> list[str]:
        found = self.evaluate(
            "Array.from(document.querySelectorAll('[data-testid=stException]'))"
            ".map(e => e.innerText.slice(0, 300))")
        return list(found or [])

    def capture(self, out: Path) -> None:
        time.sleep(0.4)  # charts animate in
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._stack.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.profile, ignore_errors=True)


def login(browser: Browser, credentials: tuple[str, str] | None, timeout_s: float) -> None:
    """Fill in the login form, where there is one."""
    if not browser.evaluate("!!document.querySelector('input[type=password]')"):
        return
    if credentials is None:
        raise RuntimeError("the studio asks for a login but no admin could be created")
    browser.type_into("[data-testid=stTextInput] input:not([type=password])", credentials[0])
    browser.type_into("input[type=password]", credentials[1])
    if not browser.click("[data-testid=stFormSubmitButton] button"):
        raise RuntimeError("the login form has no submit button")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if browser.nav_pages():
            browser.wait_until_drawn(timeout_s)
            return
        time.sleep(0.3)
    raise RuntimeError("logging in did not show the studio's pages")


def _report(out: Path, started: float, drawn: bool, browser: Browser) -> None:
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    note = "" if drawn else "  (still drawing when taken: look at it)"
    errors = browser.errors_on_page()
    if errors:
        note += f"  PAGE SHOWS AN ERROR: {errors[0]!r}"
    print(f"{shown}  ({time.monotonic() - started:.1f} s){note}", flush=True)


def shoot_all(chromium: str, base: str, args: argparse.Namespace,
              credentials: tuple[str, str] | None, ids: dict[str, int],
              suffix: str = "") -> list[Path]:
    browser = Browser(chromium)
    taken: list[Path] = []
    try:
        browser.resize(DEFAULT_HEIGHT)
        browser.open(f"{base}/", args.timeout)
        login(browser, credentials, args.timeout)
        # url path -> file name; the default page (Home) sits at the root address
        pages = {path: path or DEFAULT_PAGE for path in browser.nav_pages()}
        if not pages:
            raise RuntimeError("the studio shows no page list in its sidebar")
        by_name = {name: path for path, name in pages.items()}
        wanted = args.pages or list(by_name)
        unknown = [p for p in wanted if p not in by_name]
        if unknown:
            raise SystemExit(f"Unknown pages: {', '.join(unknown)}. Pages: {', '.join(by_name)}")
        for name in wanted:
            browser.resize(HEIGHTS.get(name, DEFAULT_HEIGHT))
            t0 = time.monotonic()
            drawn = browser.go_to_page(by_name[name], args.timeout)
            out = args.out / f"{name}{suffix}.png"
            browser.capture(out)
            taken.append(out)
            _report(out, t0, drawn, browser)
        if not suffix and "playground" in wanted:
            taken += shoot_playground(browser, by_name["playground"], args)
        if not suffix and "agents" in wanted and "chat" in by_name:
            taken += shoot_agents(browser, by_name, args)
        if "failed" in ids and not args.pages and not suffix and "home" in by_name:
            # a failed job, opened from its link on Home, shows how errors read
            browser.go_to_page(by_name["home"], args.timeout)
            browser.resize(HEIGHTS["jobs"])
            t0 = time.monotonic()
            drawn = browser.follow_link(f"#{ids['failed']} ", "jobs", args.timeout)
            out = args.out / "jobs-failed.png"
            browser.capture(out)
            taken.append(out)
            _report(out, t0, drawn, browser)
        if "finetune" in by_name and "finetune" in wanted and not suffix:
            # the wizard's other steps, reached by clicking them as a person would
            browser.go_to_page(by_name["finetune"], args.timeout)
            for label, name in (("2 · ", "data"), ("3 · ", "train"), ("4 · ", "evaluate"),
                                ("5 · ", "deploy")):
                browser.resize(HEIGHTS.get(f"finetune-{name}", DEFAULT_HEIGHT))
                t0 = time.monotonic()
                drawn = browser.click_button(label, args.timeout)
                out = args.out / f"finetune-{name}.png"
                browser.capture(out)
                taken.append(out)
                _report(out, t0, drawn, browser)
    finally:
        browser.close()
    return taken


def _wait_for_worker(timeout_s: float = 90) -> None:
    from backend.services.jobs import workers_alive

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if workers_alive(queue="cpu"):
            return
        time.sleep(0.5)
    raise RuntimeError("the worker did not start; see its log in the data folder's logs/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="Folder for the PNGs.")
    parser.add_argument("--pages", nargs="*", default=[],
                        help="Url paths of the pages to photograph (default: every page).")
    parser.add_argument("--timeout", type=float, default=40,
                        help="Seconds to wait for a page to finish drawing.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary data folder.")
    args = parser.parse_args()
    chromium = find_chromium()

    data_dir = Path(tempfile.mkdtemp(prefix="studio-screens-"))
    # registered first, so it runs last: after the embedded services stopped at exit
    if args.keep:
        atexit.register(print, f"data kept in {data_dir}")
    else:
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    prepare_env(data_dir)
    from backend.config import get_settings, reset_settings
    from backend.launcher import Launcher

    reset_settings()
    launcher = Launcher(get_settings(), with_worker=True, with_api=False)
    try:
        print("starting the studio…", flush=True)
        base = launcher.start()
        _wait_for_worker()
        credentials = create_admin()
        seed_pretrain()
        ids = seed_jobs()
        seed_models()
        seed_playground()
        seed_finetune()
        seed_agents()
        seed_knowledge()
        print(f"studio at {base}; seeded jobs {ids}", flush=True)
        shoot_all(chromium, base, args, credentials, ids)
        if credentials is not None and not args.pages:
            # the same studio in Chinese: the admin's saved language applies at login
            use_language(credentials[0], "zh_CN")
            args.pages = ["home", "jobs", "models"]
            shoot_all(chromium, base, args, credentials, {}, suffix="-zh_CN")
    finally:
        launcher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
