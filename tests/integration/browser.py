"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client; no extra
dependency): open a page, evaluate JavaScript in it, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

HOW_TO_INSTALL = "install Chromium with `apt-get install -y chromium` (scripts/setup does)"


class Browser:
    """One headless Chromium process and one page of it."""

    def __init__(self, profile_dir: Path, width: int = 1400, height: int = 1000) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise RuntimeError(f"no chromium on PATH: {HOW_TO_INSTALL}")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--window-size={width},{height}",
             "--remote-debugging-port=0", f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.endpoint = self._devtools_endpoint()
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    def _devtools_endpoint(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            lines.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1)
            if not line and self.process.poll() is not None:
                break
        self.process.kill()
        raise RuntimeError("chromium did not start: " + "".join(lines)[-2000:])

    async def open(self, url: str) -> None:
        host = re.match(r"ws://([^/]+)/", self.endpoint).group(1)
        self._session = aiohttp.ClientSession()
        async with self._session.put(f"http://{host}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        self._ws = await self._session.ws_connect(target["webSocketDebuggerUrl"],
                                                  max_msg_size=0)
        # Navigated rather than given to /json/new, whose query would swallow the URL's own.
        await self.call("Page.navigate", url=url)

    async def call(self, method: str, **params: Any) -> dict:
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads((await self._ws.receive()).data)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30, what: str = "") -> Any:
        """The value of ``expression`` once truthy, polled until ``timeout``."""
        deadline = time.monotonic() + timeout
        failed = None
        while True:
            try:
                value = await self.evaluate(expression)
            except RuntimeError as exc:  # the page still loading: no document.body yet
                value, failed = None, exc
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"page: {what or expression} not true within {timeout}s"
                                     + (f" (last error: {failed})" if failed else ""))
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
