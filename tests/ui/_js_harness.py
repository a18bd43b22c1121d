"""Runs the widget's ESM (evkit/notebook/assets/run_widget.js) in headless Chromium
against a fake anywidget model, without Jupyter: for the DOM test and the measurements."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from evkit.notebook.widget import RunWidget

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

# A model with anywidget's surface (get/set/on/off/send) that records what the view sends.
PAGE_SCRIPT = """
async ([code, css, state]) => {
  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const mod = await import(url);
  const handlers = {};
  const model = {
    sent: [],
    get: (k) => state[k],
    set(k, v) { state[k] = v; for (const f of handlers["change:" + k] || []) f(); },
    on(ev, f) { (handlers[ev] ||= []).push(f); },
    off(ev, f) { handlers[ev] = (handlers[ev] || []).filter((g) => g !== f); },
    send(content) { this.sent.push(content); },
  };
  const el = document.createElement("div");
  document.body.appendChild(el);
  const t0 = performance.now();
  mod.default.render({ model, el });
  window.renderMs = performance.now() - t0;
  window.evkitModel = model;
  window.evkitModule = mod;
}
"""


def data_state(widget: RunWidget) -> dict[str, object]:
    """The synced data traits (what the frontend model holds), JSON round-tripped."""
    state = widget.get_state()
    return json.loads(json.dumps({k: v for k, v in state.items() if not k.startswith("_")}))


@contextmanager
def rendered(widget: RunWidget, *, timezone_id: str | None = None) -> Iterator[object]:
    """A Playwright page with the widget's view rendered from its current state.

    ``timezone_id`` (e.g. ``"Asia/Tokyo"``) sets the browser's zone and the locale to
    ``en-US``, for tests of how the view writes times.
    """
    from playwright.sync_api import sync_playwright

    code, css = widget.get_state()["_esm"], widget.get_state()["_css"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=ARGS)
        try:
            zone: dict[str, str] = {"timezone_id": timezone_id, "locale": "en-US"} if timezone_id else {}
            page = browser.new_page(viewport={"width": 1200, "height": 900}, **zone)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_content("<!doctype html><html><head></head><body></body></html>")
            page.evaluate(PAGE_SCRIPT, [code, css, data_state(widget)])
            yield page
            assert errors == [], errors
        finally:
            browser.close()
