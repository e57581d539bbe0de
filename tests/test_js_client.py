"""The JavaScript client (clients/js): its node tests against real servers, and the built
module every server serves at ``/lexicons.js`` kept up to date with its TypeScript source.

The node tests start ``python -m lexicons run tests/apps/js_app.py`` with this interpreter;
they need Node.js and the packages the lockfile pins (``npm ci`` in clients/js).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Process
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

import lexicons
from lexicons import Server

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "clients" / "js"
BUILT = Path(lexicons.__file__).parent / "client_js"
NODE = shutil.which("node")
TSC = JS / "node_modules" / ".bin" / "tsc"
MSGPACK = Subprotocol("lexicons.msgpack")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        NODE is None or not TSC.exists() or not (JS / "node_modules" / "ws").is_dir(),
        reason="needs Node.js and `npm ci` in clients/js",
    ),
]


def node_test(*names: str, **env: str) -> None:
    """Run node's test runner on ``clients/js/test/<name>``; fail with its output."""
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--test", *(str(JS / "test" / name) for name in names)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "LEXICONS_PYTHON": sys.executable, **env},
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "# fail 0" in result.stdout and "# skipped 0" in result.stdout, result.stdout


def test_codec_and_reconnection() -> None:
    node_test("codec.test.js", "reconnect.test.js")


async def speaks_msgpack() -> bool:
    """Whether this lexicons selects ``lexicons.msgpack`` when a client offers it."""
    app = Server(debug=False)
    async with app.serve(host="127.0.0.1", port=0) as running:
        async with connect(running.url, subprotocols=[MSGPACK, Subprotocol("lexicons")]) as ws:
            return ws.subprotocol == MSGPACK


def test_client_against_a_server() -> None:
    msgpack = asyncio.run(speaks_msgpack())
    node_test("client.test.js", LEXICONS_TEST_MSGPACK="1" if msgpack else "0")


def test_recovery_across_two_processes_on_redis(redis_url: str) -> None:
    node_test("redis.test.js", LEXICONS_TEST_REDIS=redis_url)


def test_the_node_tests_are_all_run_here() -> None:
    ran = {"codec.test.js", "reconnect.test.js", "client.test.js", "redis.test.js"}
    assert {path.name for path in (JS / "test").glob("*.test.js")} == ran


def test_the_node_example_in_the_docs_runs(process: type[Process], tmp_path: Path) -> None:
    page = (ROOT / "docs" / "client-js.md").read_text()
    example = re.search(r"^```js\n(// node add\.mjs.*?)^```", page, re.S | re.M)
    assert example is not None, "docs/client-js.md lost its Node example"
    ws = (JS / "node_modules" / "ws" / "wrapper.mjs").as_uri()
    code = example.group(1).replace('"lexicons-client"', f'"{(BUILT / "lexicons.js").as_uri()}"')
    (tmp_path / "add.mjs").write_text(code.replace('from "ws"', f'from "{ws}"'))
    server = process(
        sys.executable, "-m", "lexicons", "run", "tests/apps/js_app.py",
        "--host", "127.0.0.1", "--port", "0", "--no-debug",
    )  # fmt: skip
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(tmp_path / "add.mjs"), server.url()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "invalid_payload"]
    assert server.stop(signal.SIGTERM)[0] == 0


def test_the_typed_contract_checks_calls_messages_and_channels() -> None:
    # test/types/app.ts marks each call that must not type-check; tsc fails on one that does.
    result = subprocess.run(
        [str(TSC), "-p", str(JS / "test" / "types")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_served_module_is_built_from_the_sources(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(TSC), "-p", str(JS), "--outDir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("lexicons.js", "lexicons.d.ts"):
        assert (tmp_path / name).read_text() == (BUILT / name).read_text(), (
            f"{name} is out of date: run `npx tsc` in clients/js"
        )
    fresh, served = (json.loads((d / "lexicons.js.map").read_text()) for d in (tmp_path, BUILT))
    fresh.pop("sources"), served.pop("sources")  # relative to where each was written
    assert fresh == served, "lexicons.js.map is out of date: run `npx tsc` in clients/js"


END_TO_END = """\
import { Client } from "CLIENT";
import type { App } from "./app.js";

export async function typed(client: Client<App>): Promise<void> {
  const sum: number = await client.call("add", { a: 1, b: 2 });
  const me: string = await client.call("whoami", {});
  await client.call("say", { room: "room:1", text: "hi" });
  client.on("whoami", (name: string) => name.length);
  client.subscribe("room:7");
  // @ts-expect-error b is missing, as the handler's annotations say
  await client.call("add", { a: 1 });
  // @ts-expect-error a is an int
  await client.call("add", { a: "1", b: 2 });
  // @ts-expect-error add replies with an int
  const text: string = await client.call("add", { a: 1, b: 2 });
  // @ts-expect-error whoami takes no payload
  await client.call("whoami", { who: 1 });
  // @ts-expect-error no such signal
  await client.call("nope", {});
  void [sum, me, text];
}
"""


def test_lexicons_types_checks_client_calls_end_to_end(tmp_path: Path) -> None:
    # What a user does: generate the app's declarations, then type-check calls made with
    # the client against them. Each marked line must be an error, and only those.
    generated = subprocess.run(
        [sys.executable, "-m", "lexicons", "types", str(ROOT / "tests/apps/js_app.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    (tmp_path / "app.ts").write_text(generated.stdout)
    usage = END_TO_END.replace("CLIENT", (JS / "src" / "lexicons.js").as_posix())
    flags = ["--noEmit", "--strict", "--target", "es2022", "--module", "esnext"]
    flags += ["--moduleResolution", "bundler", "--lib", "es2022,dom", "--types", ""]

    def check(source: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "usage.ts").write_text(source)
        return subprocess.run(
            [str(TSC), *flags, "app.ts", "usage.ts"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    passed = check(usage)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    unmarked = check(usage.replace("// @ts-expect-error", "//"))
    assert unmarked.stdout.count("error TS") == usage.count("@ts-expect-error"), unmarked.stdout
