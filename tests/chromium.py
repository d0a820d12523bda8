"""A headless Chromium driven over the DevTools protocol on a pipe (no web driver, no network).

``open_page(html, width)`` loads a local HTML file in a fresh headless Chromium with the
network switched off and returns what a reader's browser saw: the page's size, the images
and their rendered sizes, the requests it tried to make, and a full-page PNG screenshot.
Used by the report's browser test; ``python tests/chromium.py PAGE.html OUT.png [WIDTH]``
takes a screenshot by hand and prints the page's height.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from base64 import b64decode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_MEASURE = """JSON.stringify({
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
  headings: [...document.querySelectorAll('h1, h2, h3')].map(h => [h.tagName, h.id,
                                                                  h.innerText.trim()]),
  images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
    natural: [i.naturalWidth, i.naturalHeight], shown: [i.width, i.height],
    design: parseFloat(i.style.width) || null})),
  overflowing: [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
    .map(e => e.tagName + (e.id ? '#' + e.id : '')).slice(0, 20),
  text: document.body.innerText})"""


def find_browser() -> str | None:
    """The path of an installed Chromium, or None. Raises: nothing."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class Page:
    """What the browser saw: ``width``/``height`` of the document (CSS px), ``headings``
    ([tag, id, text]), ``images`` (alt, complete, natural and shown [w, h] in px, the width
    the page asked for, ``design``),
    ``overflowing`` (elements reaching past the viewport's right edge), ``text`` (the
    visible text), ``requests`` (every URL the page asked for) and ``png`` (full page)."""

    width: int
    height: int
    headings: list[list[str]]
    images: list[dict[str, Any]]
    overflowing: list[str]
    text: str
    requests: list[str]
    png: bytes


class _Pipe:
    """The DevTools protocol over ``--remote-debugging-pipe``: JSON messages ending in NUL,
    the browser reading fd 3 and writing fd 4."""

    def __init__(self, browser: str, profile: str) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def fds() -> None:  # in the child: its fds 3 and 4 are the pipe
            high = [os.dup(to_browser), os.dup(from_browser)]  # neither is 3 or 4 now
            for fd, number in zip(high, (3, 4), strict=True):
                os.dup2(fd, number)

        self.process = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)  # our other fds are close-on-exec anyway
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, timeout: float = 60,
             **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events on the way are kept)."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        os.write(self._write, json.dumps(message | ({"sessionId": session} if session
                                                    else {})).encode() + b"\0")
        while True:
            reply = self._receive(timeout, method)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        """Wait until ``event`` has arrived (or had already)."""
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._receive(timeout, event))

    def _receive(self, timeout: float, waiting_for: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer {waiting_for} in {timeout} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        """Ask the browser to quit (its helper processes with it), kill it if it does not."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):  # gone, or hanging
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


def open_page(html: str | Path, width: int = 1280, browser: str | None = None) -> Page:
    """Load ``html`` (a local file) at a viewport ``width`` CSS px wide, offline, and measure
    it once every image has loaded.

    Raises:
        FileNotFoundError: no Chromium installed (``apt-get install chromium``).
        TimeoutError: the page or the browser did not answer within a minute.
    """
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found; install it (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="lmtie-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        pipe = _Pipe(browser, profile)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target,
                                flatten=True)["sessionId"]
            for domain in ("Page", "Network"):
                pipe.call(f"{domain}.enable", session)
            pipe.call("Network.emulateNetworkConditions", session, offline=True, latency=0,
                      downloadThroughput=-1, uploadThroughput=-1)
            pipe.call("Emulation.setDeviceMetricsOverride", session, width=width, height=800,
                      deviceScaleFactor=1, mobile=False)
            pipe.call("Page.navigate", session, url=Path(html).resolve().as_uri())
            pipe.wait_for("Page.loadEventFired")
            seen = json.loads(pipe.call("Runtime.evaluate", session, expression=_MEASURE,
                                        returnByValue=True)["result"]["value"])
            png = b64decode(pipe.call("Page.captureScreenshot", session, format="png",
                                      captureBeyondViewport=True)["data"])
        finally:
            pipe.close()
    requests = [e["params"]["request"]["url"] for e in pipe.events
                if e.get("method") == "Network.requestWillBeSent"]
    return Page(**seen, requests=requests, png=png)


if __name__ == "__main__":
    page = open_page(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 1280)
    Path(sys.argv[2]).write_bytes(page.png)
    print(json.dumps({"width": page.width, "height": page.height,
                      "images": page.images, "overflowing": page.overflowing,
                      "requests": [u[:80] for u in page.requests]}, indent=1))
