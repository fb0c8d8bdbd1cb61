"""Shared by the browser tests: uvicorn serving the app in a thread on 127.0.0.1 (port 0) and
Debian's Chromium driven by Playwright (no ``playwright install``; see the test-services notes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from web_support import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
# Quiet and offline: no component updates, no background fetches (see test-services notes §3).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 with a port the kernel picks, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # reported by __enter__, not lost in the thread
            self.failure = exc

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            self.thread.join(0.01)
        assert self.server.started, f"uvicorn did not start: {self.failure!r}"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Any]:
    """Chromium, launched once per test; import this into a test module to use ``browser``."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, base_url: str, user: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def page_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no sideways scroll)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def overflowing(page: Any, limit: int = 5) -> list[str]:
    """The outermost elements that reach past the viewport's right edge (for messages)."""
    return list(
        page.evaluate(
            """(limit) => {
              const out = [];
              for (const el of document.querySelectorAll("body *")) {
                const r = el.getBoundingClientRect();
                if (r.right > window.innerWidth + 0.5 && !el.closest("div.scroll, pre")) {
                  if (out.some((o) => o.el.contains(el))) continue;
                  out.push({el, text: el.tagName.toLowerCase() + "." + el.className + " " +
                            Math.round(r.right)});
                }
              }
              return out.slice(0, limit).map((o) => o.text);
            }""",
            limit,
        )
    )
