"""``run --reload`` for real: change a file, see the new code served after a clean restart."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Process
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from lexicons.reloader import directories

pytest.importorskip("watchfiles", reason="pip install -e '.[test]' (watchfiles)")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

RUN = ["run", "--host", "127.0.0.1", "--port", "0", "--reload"]


def write(path: Path, version: str, broken: bool = False) -> None:
    """The app, answering ``version``; ``on_shutdown`` says which version stops."""
    path.write_text(
        textwrap.dedent(
            f"""\
            from lexicons import Server

            app = Server(debug=False)


            @app.signal
            def version() -> str:
                return {version!r}{" +" if broken else ""}


            @app.on_shutdown
            def goodbye() -> None:
                print("on_shutdown", {version!r}, flush=True)


            if __name__ == "__main__":
                app.run()
            """
        )
    )


def start(process: type[Process], folder: Path, **options: bool) -> tuple[Process, Path, str]:
    """``python app.py run --reload`` of version ``v1`` in ``folder``: the reloader, the
    app's file, and the URL of its first server."""
    app = folder / "app.py"
    write(app, "v1")
    server = process(sys.executable, app, *RUN, cwd=folder, **options)
    return server, app, server.url()


async def version(url: str) -> str:
    async with connect(url) as ws:
        await ws.send(json.dumps({"version": {}}))
        return str(json.loads(await ws.recv())["version"])


async def test_a_changed_file_is_served_after_a_clean_restart(
    process: type[Process], tmp_path: Path
) -> None:
    server, app, url = start(process, tmp_path)
    assert await version(url) == "v1"
    async with connect(url) as ws:
        write(app, "v2")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # a clean restart
    server.wait_for("app.py changed: restarting the server")
    assert await version(server.url()) == "v2"
    code, out, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert out.splitlines() == ["on_shutdown v1", "on_shutdown v2"]


async def test_code_that_fails_to_import_waits_for_the_next_change(
    process: type[Process], tmp_path: Path
) -> None:
    server, app, _ = start(process, tmp_path)
    write(app, "v2", broken=True)
    server.wait_for("SyntaxError")
    server.wait_for("the server exited with code 1; it restarts on the next change")
    write(app, "v3")
    assert await version(server.url()) == "v3"
    code, out, err = server.stop(signal.SIGINT)
    assert code == 0, err
    assert out.splitlines() == ["on_shutdown v1", "on_shutdown v3"]


async def test_ctrl_c_in_a_terminal_stops_both_processes_cleanly(
    process: type[Process], tmp_path: Path
) -> None:
    """A terminal sends SIGINT to the reloader and the server alike: one clean shutdown."""
    server, _, url = start(process, tmp_path, session=True)
    assert await version(url) == "v1"
    os.killpg(server.popen.pid, signal.SIGINT)
    out, err = server.popen.communicate(timeout=30)
    assert server.popen.returncode == 0, err
    assert out.splitlines() == ["on_shutdown v1"]
    assert "killing" not in err


async def test_the_server_stops_when_the_reloader_is_killed(
    process: type[Process], tmp_path: Path
) -> None:
    server, _, _ = start(process, tmp_path)
    server.popen.kill()  # SIGKILL: the reloader cannot tell the server anything
    out, err = server.popen.communicate(timeout=30)  # EOF once the server has exited too
    assert "the supervisor is gone; shutting down" in err
    assert out.splitlines() == ["on_shutdown v1"]


def test_the_watched_directory_is_the_app_folder_or_its_top_package(tmp_path: Path) -> None:
    (tmp_path / "project" / "chat" / "rooms").mkdir(parents=True)
    for folder in ("chat", "chat/rooms"):
        (tmp_path / "project" / folder / "__init__.py").write_text("")
    assert directories(tmp_path / "project" / "chat" / "rooms" / "app.py") == [
        tmp_path / "project"
    ]
    assert directories(tmp_path / "app.py") == [tmp_path]
    assert directories(None) == [Path.cwd()]
