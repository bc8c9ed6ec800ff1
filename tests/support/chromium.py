"""Open a page in headless Chromium and report what a user would meet: a screenshot and the console's errors.

    with Chromium() as browser:
        page = browser.open("file:///…/index.html", screenshot=tmp_path / "page.png", width=1600, height=2000)
    page.errors        # console.error calls, uncaught exceptions, browser log entries at level "error"
    page.requests      # every URL the page fetched (an http(s) one: the page is not self-contained)
    png_summary(page.screenshot)   # (width, height, distinct colours): a blank page has one colour

Chromium comes from Debian's ``chromium`` package (``make install-system``); ``chromium_binary()``
is None without it. It is driven through the DevTools protocol over a websocket
(websocket-client, which the kubernetes client already depends on): events are
collected from the start of the navigation until the page has been quiet for ``settle_s``.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def chromium_binary() -> str | None:
    return next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)


@dataclass
class PageReport:
    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None


class Chromium:
    """One headless Chromium for a test; ``open`` each page in a tab of its own."""

    def __init__(self, binary: str | None = None, start_timeout_s: float = 30.0) -> None:
        self.binary = binary or chromium_binary()
        if self.binary is None:
            raise RuntimeError("chromium not found: install Debian's chromium package (make install-system)")
        self.start_timeout_s = start_timeout_s
        self.profile = Path(tempfile.mkdtemp(prefix="lathe-chromium-"))
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> Chromium:
        log = (self.profile / "chromium.log").open("w")
        self.process = subprocess.Popen(
            [self.binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=log, stderr=log,
        )  # fmt: skip
        # Chromium writes the port it chose into the profile once DevTools listens.
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout_s
        while not (active.exists() and active.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"chromium did not open DevTools: {(self.profile / 'chromium.log').read_text()}")
            time.sleep(0.1)
        self.port = int(active.read_text().split()[0])
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(
        self, url: str, screenshot: Path | None = None, width: int = 1600, height: int = 2000,
        load_timeout_s: float = 60.0, settle_s: float = 1.5,
    ) -> PageReport:  # fmt: skip
        """Load ``url`` at ``width`` × ``height``, wait for it to settle, screenshot it, report what happened."""
        target = httpx.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=10).json()
        session = _Session(target["webSocketDebuggerUrl"])
        report = PageReport(url)
        try:
            for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
                session.call(method)
            session.call("Emulation.setDeviceMetricsOverride",
                         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
            session.call("Page.navigate", {"url": url})
            session.wait_for("Page.loadEventFired", load_timeout_s)
            session.drain(settle_s)
            if screenshot is not None:
                shot = session.call("Page.captureScreenshot", {"format": "png"})
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                report.screenshot = screenshot
            session.drain(0.2)
        finally:
            session.close()
            httpx.get(f"http://127.0.0.1:{self.port}/json/close/{target['id']}", timeout=10)
        report.errors = [e for e in map(_error, session.events) if e]
        report.requests = [
            e["params"]["request"]["url"] for e in session.events if e.get("method") == "Network.requestWillBeSent"
        ]
        return report


class _Session:
    """A DevTools websocket: ``call`` waits for its answer, and every event met on the way is kept."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.timeout_error = websocket.WebSocketTimeoutException
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self.ws.close()

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        message_id = next(self.ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._next(deadline)
            if message is None:
                raise TimeoutError(f"chromium did not answer {method} in {timeout_s:.0f} s")
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == event for e in self.events):
            if self._next(deadline) is None:
                raise TimeoutError(f"no {event} from chromium in {timeout_s:.0f} s")

    def drain(self, quiet_s: float) -> None:
        """Keep reading events until none has come for ``quiet_s``."""
        while self._next(time.monotonic() + quiet_s) is not None:
            pass

    def _next(self, deadline: float) -> dict[str, Any] | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.ws.settimeout(remaining)
        try:
            message = json.loads(self.ws.recv())
        except self.timeout_error:
            return None
        if "method" in message:
            self.events.append(message)
        return message


def _error(event: dict[str, Any]) -> str | None:
    """The text of an event that is an error a user would see in the console, else None."""
    method, params = event.get("method"), event.get("params") or {}
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        parts = [str(a.get("value", a.get("description", ""))) for a in params.get("args") or []]
        return "console.error: " + " ".join(parts)
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails") or {}
        return "uncaught: " + str((details.get("exception") or {}).get("description") or details.get("text"))
    if method == "Log.entryAdded" and (params.get("entry") or {}).get("level") == "error":
        entry = params["entry"]
        return f"log: {entry.get('text')} {entry.get('url') or ''}".strip()
    return None


def png_summary(path: Path) -> tuple[int, int, int]:
    """Width, height and number of distinct colours of a PNG (sampled on a grid for speed)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        colours = {rgb.getpixel((x, y)) for x in range(0, width, 7) for y in range(0, height, 7)}
    return width, height, len(colours)
