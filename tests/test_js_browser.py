"""The JavaScript client in headless Chromium, loaded from the server's own ``/lexicons.js``.

What only a browser shows: its WebSocket hides the status of a refused handshake, so the
client must learn a 403 from the probe with ``fetch`` (same origin, and across origins
through CORS), and must keep trying when the server is down or will not say.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import chromium_path, free_port

from lexicons import History, Server
from lexicons.testing import TestClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

INSTALL = (
    "install Debian packages chromium and chromium-driver "
    "(apt-get install chromium chromium-driver)"
)
pytest.importorskip("selenium.webdriver", reason="pip install -e '.[test]' (selenium)")
if chromium_path() is None or shutil.which("chromedriver") is None:
    pytest.skip(INSTALL, allow_module_level=True)

from test_browser import chromium  # noqa: E402

#: Runs in the page: import the client from the server, connect, and report what happened.
SCRIPT = """
const [url, token, expect, done] = arguments;
import("/lexicons.js").then(async ({ Client }) => {
  const credentials = token ? { Token: token } : {};
  const client = new Client(url, { credentials, reconnect: { initial: 20, maximum: 100 } });
  try {
    if (expect === "open") {
      await client.ready();
      const sum = await client.call("add", { a: 1, b: 2 });
      const answer = await client.subscribe("room:1").ready;
      done({ state: client.state, protocol: client.protocol, sum, offset: answer.offset });
    } else {
      let waits = 0;
      await new Promise((resolve) => client.onState((state) => {
        if (state === "waiting" && ++waits === 3) resolve();
      }));
      done({ state: client.state, waits });
    }
  } catch (error) {
    done({ state: client.state, code: error.code, status: error.status ?? null });
  } finally {
    client.close();
  }
}, (error) => done({ importError: String(error) }));
"""


def token_app(static: Path, origins: list[str] | None = None) -> Server:
    app = Server(debug=False, static=str(static), origins=origins)
    app.channel("room:{id}", history=History(10), join=True)

    @app.header
    def Token(header: str) -> bool:
        return header == "ok"

    @app.signal
    def add(a: int, b: int) -> int:
        return a + b

    return app


def run_in_pages(page: str, cases: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Each case (WebSocket URL, token, "open" or "retry") in the page; runs in a thread."""
    results = []
    with chromium() as browser:
        browser.set_script_timeout(20)
        browser.get(page)
        for url, token, expect in cases:
            results.append(browser.execute_async_script(SCRIPT, url, token, expect))
    return results


async def test_the_client_in_a_browser_tells_refusals_from_outages(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>lexicons</title>")
    async with TestClient(token_app(tmp_path)) as home:
        page = home.url.replace("ws://", "http://", 1)
        origin = page.rstrip("/")
        async with (
            TestClient(token_app(tmp_path, origins=[origin])) as friend,
            TestClient(token_app(tmp_path)) as stranger,
        ):
            down = f"ws://127.0.0.1:{free_port()}/"
            cases = [
                (home.url, "ok", "open"),
                (home.url, "wrong", "open"),
                (home.url, "", "open"),
                (friend.url, "ok", "open"),  # another origin its server allows
                (friend.url, "wrong", "open"),  # its refusal readable through CORS
                (stranger.url, "wrong", "retry"),  # an origin refused: the page cannot tell
                (down, "ok", "retry"),
            ]
            results = await asyncio.to_thread(run_in_pages, page, cases)
    opened = {"state": "open", "protocol": "lexicons", "sum": 3, "offset": 0}
    refused = {"state": "refused", "code": "refused", "status": 403}
    retrying = {"state": "waiting", "waits": 3}
    assert results == [opened, refused, refused, opened, refused, retrying, retrying]
