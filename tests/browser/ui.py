"""What a person does in the studio, as Playwright steps: open, log in, go to a page, click,
type, choose, upload. Every step waits for Streamlit to settle and photographs the page.

Widgets are found as a person finds them: by their visible label and role. Streamlit commits a
text input on blur or Enter, so ``fill`` presses Tab after typing (as a person clicks away).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

Page = Any  # playwright.sync_api.Page (imported lazily: the suite is skipped without it)

_SHOTS: dict[int, tuple[Path, list[int]]] = {}

# true while Streamlit still works on the page: the script runs, a placeholder or a spinner shows
_BUSY_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return 'no-app';
  const state = app.getAttribute('data-test-script-state');
  if (state && state !== 'notRunning') return 'script:' + state;
  if (document.querySelector('[data-testid="stSkeleton"]')) return 'skeleton';
  if (document.querySelector('[data-testid="stSpinner"]')) return 'spinner';
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && status.offsetParent !== null && /running|connecting/i.test(status.innerText))
    return 'status';
  return '';
}"""


def start_shots(page: Page, folder: Path) -> None:
    _SHOTS[id(page)] = (folder, [0])


def shot(page: Page, name: str) -> Path | None:
    """A full-page PNG of what the person sees now, numbered in step order."""
    entry = _SHOTS.get(id(page))
    if entry is None:
        return None
    folder, counter = entry
    folder.mkdir(parents=True, exist_ok=True)
    counter[0] += 1
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:60] or "step"
    path = folder / f"{counter[0]:02d}-{slug}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def settle(page: Page, timeout_s: float = 60, quiet_s: float = 0.5) -> None:
    """Wait until Streamlit has finished the run the last action started (quiet for quiet_s).
    A page that never stops (a live job fragment) is left after timeout_s without error: the
    assertion that follows says what was missing."""
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    time.sleep(0.15)  # let the click reach the server before the first look
    while time.monotonic() < deadline:
        try:
            busy = page.evaluate(_BUSY_JS)
        except Exception:  # noqa: BLE001 - navigation in flight
            busy = "navigating"
        if busy:
            quiet_since = None
        else:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        time.sleep(0.1)


def goto(page: Page, studio: Any, path: str = "", *, name: str | None = None) -> None:
    """Open an address as a person types it (a share link, a reload of a page)."""
    base = studio.url if hasattr(studio, "url") else str(studio)
    page.goto(base.rstrip("/") + "/" + path.lstrip("/"))
    page.wait_for_selector('[data-testid="stApp"]')
    settle(page)
    shot(page, name or f"open-{path or 'root'}")


def main(page: Page) -> Any:
    """The main area (not the sidebar)."""
    return page.get_by_test_id("stMain")


def login(page: Page, username: str, password: str) -> None:
    """Fill the login form and submit it; waits for the sidebar of a logged-in session."""
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_test_id("stSidebarNav").wait_for()
    settle(page)
    shot(page, f"logged-in-{username}")


def logout(page: Page) -> None:
    button(page, "Log out")


def nav_titles(page: Page) -> list[str]:
    """The page titles listed in the sidebar, in order."""
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    return [re.sub(r"^\W+", "", t).strip() for t in links.all_inner_texts()]


def nav(page: Page, title: str) -> None:
    """Click a page in the sidebar, as a person does (the login stays in this session)."""
    link = page.get_by_test_id("stSidebarNav").get_by_role(
        "link", name=re.compile(rf"(^|\W){re.escape(title)}$"))
    link.first.click()
    settle(page)
    shot(page, f"page-{title}")


def button(page: Page, name: str, *, exact: bool = False, within: Any = None,
           timeout_s: float = 60) -> None:
    """Click the (first visible, enabled) button with this text and wait for the rerun."""
    scope = within if within is not None else page
    target = scope.get_by_role("button", name=name, exact=exact).filter(visible=True).first
    target.wait_for(state="visible")
    deadline = time.monotonic() + 10
    while not target.is_enabled() and time.monotonic() < deadline:
        time.sleep(0.1)
    target.click()
    settle(page, timeout_s=timeout_s)
    shot(page, f"clicked-{name}")


def fill(page: Page, label: str, text: str, *, exact: bool = True, within: Any = None,
         submit: bool = False) -> None:
    """Type into a text input or area found by its label; commit with Tab (or Enter)."""
    scope = within if within is not None else page
    box = scope.get_by_label(label, exact=exact).filter(visible=True).first
    box.fill(text)
    box.press("Enter" if submit else "Tab")
    settle(page)


def chat(page: Page, text: str, *, placeholder: str | None = None) -> None:
    """Send a message through a chat input (Enter sends it)."""
    box = page.get_by_test_id("stChatInputTextArea")
    if placeholder:
        box = page.get_by_placeholder(placeholder)
    box.first.fill(text)
    box.first.press("Enter")
    settle(page, timeout_s=180)
    shot(page, "chat-sent")


def choose(page: Page, label: str, option: str, *, exact: bool = False,
           within: Any = None) -> None:
    """Pick an option of a Streamlit selectbox (or multiselect) found by its label."""
    scope = within if within is not None else page
    box = scope.get_by_label(label, exact=True).filter(visible=True).first
    box.click()
    page.get_by_role("option", name=option, exact=exact).first.click()
    settle(page)
    shot(page, f"chose-{option}")


def upload(page: Page, label: str | int, paths: list[Path] | Path, *,
           timeout_s: float = 60) -> None:
    """Give files to a file uploader (by its label, or its index on the page)."""
    files = [str(p) for p in (paths if isinstance(paths, list) else [paths])]
    uploaders = page.get_by_test_id("stFileUploader")
    target = uploaders.nth(label) if isinstance(label, int) else page.locator(
        '[data-testid="stElementContainer"], .stElementContainer').filter(
        has=page.get_by_test_id("stFileUploader")).filter(has_text=label).last
    target.locator('input[type="file"]').set_input_files(files)
    settle(page, timeout_s=timeout_s)
    shot(page, "uploaded")


def tab(page: Page, name: str) -> None:
    """Open a tab (st.tabs, or the studio's own tab bar of buttons / radio / segments)."""
    for role in ("tab", "radio", "button"):
        found = page.get_by_role(role, name=name).filter(visible=True)
        if found.count():
            found.first.click()
            settle(page)
            shot(page, f"tab-{name}")
            return
    raise AssertionError(f"no tab named {name!r} on the page")


def text_of(page: Page) -> str:
    """What the person reads in the main area."""
    return str(main(page).inner_text())


def wait_for_text(page: Page, text: str | re.Pattern[str], timeout_s: float = 120,
                  *, within: Any = None) -> None:
    """Wait until the text shows (a job finishing, an answer streaming in)."""
    scope = within if within is not None else page
    scope.get_by_text(text).first.wait_for(state="visible", timeout=timeout_s * 1000)
    settle(page)


def errors_shown(page: Page) -> list[str]:
    """The error boxes and exceptions on the page (a story should end with none)."""
    boxes = page.locator('[data-testid="stAlertContentError"], [data-testid="stException"]')
    return [t for t in boxes.all_inner_texts() if t.strip()]


def try_model(page: Page, prompt: str, *, name: str = "answered") -> None:
    """Models page, the picked model: open Try it, type a prompt and click Send once straight
    after typing (as a person does), then wait for the answer's token line."""
    area = main(page)
    area.get_by_text("Try it", exact=True).first.click()  # a toggle
    settle(page)
    area.get_by_label("Prompt").fill(prompt)
    area.get_by_role("button", name="Send").click()
    settle(page, timeout_s=120)
    area.get_by_text("tokens in").first.wait_for(timeout=120_000)
    shot(page, name)
