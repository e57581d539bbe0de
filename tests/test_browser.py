"""The example pages in headless Chromium: the chat (two pages register, talk, reload,
and ride out a server outage), the location map and the tic-tac-toe board.

The apps are served in-process, in the test's event loop, and the browsers driven by
Selenium from a worker thread (its calls block); the outage needs a server subprocess
to stop. Debian's chromium and chromium-driver, never a downloaded browser.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Process, chromium_path, free_port
from example_apps import EXAMPLES, load_example

from lexicons.testing import TestClient

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = (
    "install Debian packages chromium and chromium-driver "
    "(apt-get install chromium chromium-driver)"
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[test]' (selenium)")
if chromium_path() is None or shutil.which("chromedriver") is None:
    pytest.skip(INSTALL, allow_module_level=True)

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

Driver = Any
WAIT = 15.0  # seconds for a page to show what the test waits for


@contextmanager
def chromium(phone: tuple[int, int] | None = None) -> Iterator[Driver]:
    """A headless Chromium with a fresh profile that talks to no host but ours;
    ``phone``: the width and height of a phone's screen it emulates (a window cannot
    be narrower than 500 px)."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path() or CHROMIUM
    profile = tempfile.mkdtemp(prefix="lexicons-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1000,720",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    if phone is not None:
        width, height = phone
        metrics = {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(
    driver: Driver, condition: Callable[[Driver], Any], what: str, timeout: float = WAIT
) -> Any:
    # A page that re-renders a list between finding its items and reading them makes the
    # items stale: that is a condition not met yet, so it is asked again.
    wait = WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition, message=f"page never showed {what}")


def messages(driver: Driver) -> list[str]:
    """The room's messages as 'author text' lines."""
    return [
        f"{item.find_element(By.CLASS_NAME, 'author').text} "
        f"{item.find_element(By.CLASS_NAME, 'text').text}"
        for item in driver.find_elements(By.CSS_SELECTOR, "#messages li.message")
    ]


def submit(driver: Driver, name: str, password: str, button: str) -> None:
    wait_for(driver, lambda d: d.find_element(By.ID, "login").is_displayed(), "the login form")
    for field, value in (("name", name), ("password", password)):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.ID, button).click()


def sign_up(driver: Driver, url: str, name: str) -> None:
    driver.get(url)
    submit(driver, name, "correct horse", "register-button")
    in_lobby(driver)


def in_lobby(driver: Driver) -> None:
    wait_for(driver, lambda d: d.find_element(By.ID, "current-room").text == "lobby", "the lobby")
    assert not driver.find_element(By.ID, "login").is_displayed()


def say(driver: Driver, text: str) -> None:
    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "send").click()


def converse(url: str) -> None:
    """What two people do in two browsers; runs in a worker thread."""
    with chromium() as ada, chromium() as bob:
        sign_up(ada, url, "ada")
        # A refused handshake shows on the form (the page cannot see the 403 itself).
        bob.get(url)
        submit(bob, "ada", "not her password", "login-button")
        error = bob.find_element(By.ID, "login-error")
        wait_for(bob, lambda d: error.text == "Wrong name or password.", "the login error")
        assert "403" in str(bob.get_log("browser"))  # reading the log empties it
        sign_up(bob, url, "bob")
        say(ada, "hello from ada")
        wait_for(bob, lambda d: "ada hello from ada" in messages(d), "ada's message")
        say(bob, "hi ada, bob here")
        wait_for(ada, lambda d: "bob hi ada, bob here" in messages(d), "bob's message")
        assert "bob" in ada.find_element(By.ID, "members").text

        # A reload keeps the login (a session token in sessionStorage) and the room,
        # and the history comes back from the database.
        bob.refresh()
        in_lobby(bob)
        wait_for(bob, lambda d: len(messages(d)) == 2, "the history")
        assert messages(bob) == ["ada hello from ada", "bob hi ada, bob here"]
        page_errors = [entry for entry in bob.get_log("browser") if entry.get("level") == "SEVERE"]
        assert not page_errors, page_errors


async def test_two_browsers_chat_and_a_reload_shows_history(tmp_path: Path) -> None:
    chat = load_example("chat")
    async with TestClient(chat.app, data=str(tmp_path)) as client:
        page = client.url.replace("ws://", "http://", 1)
        await asyncio.to_thread(converse, page)
    assert [m.text for m in chat.app.db.query(chat.Message, _sort="sent")] == [
        "hello from ada",
        "hi ada, bob here",
    ]


# The outage of issue 17: long enough for several reconnection attempts to fail.
OUTAGE = 5.0
# Seconds a page may take to be back: the chat page's longest wait between attempts
# (10 s), then the attempt.
BACK = 25.0


def serve_chat(process: type[Process], port: int, data: Path) -> tuple[Process, str]:
    """The chat example as a subprocess on ``port``, and its page's URL."""
    server = process(
        sys.executable, EXAMPLES / "chat" / "app.py", "run",
        "--host", "127.0.0.1", "--port", str(port), "--data", str(data),
    )  # fmt: skip
    url = server.url().replace("ws://", "http://", 1)
    # Keep reading its log, so a full pipe never blocks it.
    threading.Thread(target=server.stderr.extend, args=(server.popen.stderr,), daemon=True).start()
    return server, url


def names(driver: Driver, list_id: str) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, f"#{list_id} li")]


def reconnecting(driver: Driver) -> bool:
    return "reconnecting" in driver.find_element(By.ID, "status").text.lower()


def back(driver: Driver, who: str) -> None:
    """Wait until the page is connected again, and check it is still logged in."""
    wait_for(driver, lambda d: not reconnecting(d), f"{who} reconnected", BACK)
    assert not driver.find_element(By.ID, "login").is_displayed(), f"{who} was logged out"
    in_lobby(driver)


def network(driver: Driver, online: bool) -> None:
    """Take the browser's network away, or give it back (it fires offline/online)."""
    driver.execute_cdp_cmd("Network.enable", {})
    conditions = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions", {"offline": not online, **conditions}
    )


def page_errors(driver: Driver) -> list[dict[str, Any]]:
    """SEVERE console entries, but the browser's own reports of refused connections,
    which a page cannot prevent while its server is down."""
    return [
        entry
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE" and entry.get("source") != "network"
    ]


def test_the_chat_survives_a_server_outage(process: type[Process], tmp_path: Path) -> None:
    port = free_port()
    server, url = serve_chat(process, port, tmp_path)
    # Ada's phone is 375 px wide: nothing scrolls sideways, and the input is visible.
    with chromium(phone=(375, 740)) as ada, chromium() as bob:
        sign_up(ada, url, "ada")
        sign_up(bob, url, "bob")
        width = ada.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width} px wide on a 375 px screen"
        bottom = ada.execute_script(
            "return document.getElementById('text').getBoundingClientRect().bottom"
        )
        assert ada.find_element(By.ID, "text").is_displayed() and bottom <= 740
        say(ada, "one")
        wait_for(bob, lambda d: messages(d) == ["ada one"], "ada's message")
        say(bob, "two")
        wait_for(ada, lambda d: messages(d) == ["ada one", "bob two"], "bob's message")

        # The server stops and comes back on the same port with the same data.
        server.popen.kill()
        server.popen.wait()
        for page in (ada, bob):
            wait_for(page, reconnecting, "that it is reconnecting")
        network(ada, online=False)  # and ada's phone loses its network meanwhile
        time.sleep(OUTAGE)  # the outage is the scenario: nothing to wait for but time
        serve_chat(process, port, tmp_path)

        # Bob is back first, and speaks while ada is still away; she writes meanwhile.
        back(bob, "bob")
        say(bob, "three")
        wait_for(bob, lambda d: messages(d)[-1:] == ["bob three"], "bob's message")
        assert reconnecting(ada)
        say(ada, "four")  # held by her client until it is back
        network(ada, online=True)
        back(ada, "ada")
        everything = ["ada one", "bob two", "bob three", "ada four"]
        for page, who in ((ada, "ada"), (bob, "bob")):
            wait_for(page, lambda d: messages(d) == everything, f"each message once for {who}")
        # One more: whatever a page still had to receive from before came ahead of it.
        say(bob, "five")
        everything.append("bob five")
        for page, who in ((ada, "ada"), (bob, "bob")):
            wait_for(page, lambda d: messages(d) == everything, f"nothing twice for {who}")
        # Who is here comes back with the channels' presence.
        for list_ in ("members", "online"):
            wait_for(ada, lambda d, id=list_: names(d, id) == ["ada (you)", "bob"], list_)
        for page in (ada, bob):
            assert page_errors(page) == []


def markers(driver: Driver) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#walkers li.marker")]


async def test_the_location_page_draws_the_walkers_of_its_area() -> None:
    location = load_example("location")
    async with TestClient(location.app) as client:
        page = client.url.replace("ws://", "http://", 1) + "?lat=48.855&lon=2.355"
        with chromium() as driver:
            await asyncio.to_thread(driver.get, page)
            area = driver.find_element(By.ID, "area")
            await asyncio.to_thread(
                wait_for, driver, lambda d: area.text == "area:4885:235", "the area it watches"
            )
            walker = await client.connect()
            await walker.send("move", lat=48.8551, lon=2.3552)
            await asyncio.to_thread(
                wait_for, driver, lambda d: markers(d) == ["48.85510, 2.35520"], "the walker"
            )
            assert len(driver.find_elements(By.CSS_SELECTOR, "#map circle")) == 1
            await walker.close()
            await asyncio.to_thread(wait_for, driver, lambda d: markers(d) == [], "it gone")
            # The server drops the page: it reconnects and watches its area again.
            (page_connection,) = location.app.connections.values()
            page_connection.close(1012, "restarting")
            walker = await client.connect()
            await walker.send("move", lat=48.8552, lon=2.3554)
            await asyncio.to_thread(
                wait_for, driver, lambda d: markers(d) == ["48.85520, 2.35540"], "a new walker"
            )
            # A point off the globe, past the form's own check: the server's error shows.
            driver.execute_script(
                "document.getElementById('lat').value = '91';"
                "document.getElementById('where').dispatchEvent(new Event('submit'))"
            )
            status = driver.find_element(By.ID, "status")
            await asyncio.to_thread(wait_for, driver, lambda d: "lat" in status.text, "the error")
            assert area.text == "area:4885:235"  # still watching the same area
            assert page_errors(driver) == []


def board(driver: Driver) -> list[str]:
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#board button.cell")]


async def test_the_game_page_plays_against_a_python_player() -> None:
    game = load_example("game")
    async with TestClient(game.app) as client:
        page = client.url.replace("ws://", "http://", 1)
        with chromium() as driver:
            await asyncio.to_thread(driver.get, page)
            status = driver.find_element(By.ID, "status")
            play = driver.find_element(By.ID, "play")
            await asyncio.to_thread(play.click)
            await asyncio.to_thread(
                wait_for, driver, lambda d: "Waiting" in status.text, "waiting"
            )
            opponent = await client.connect(headers={"Player": "python-player-0123456789"})
            assert await opponent.call("play") == {"waiting": False}
            start = await opponent.expect("start")
            assert start["mark"] == "O"  # the page queued first: it plays X, and starts
            await asyncio.to_thread(wait_for, driver, lambda d: "your turn" in status.text, "X")

            cells = driver.find_elements(By.CSS_SELECTOR, "#board button.cell")
            await asyncio.to_thread(cells[4].click)
            assert (await opponent.expect("move"))["board"][4] == "X"
            await asyncio.to_thread(wait_for, driver, lambda d: board(d)[4] == "X", "its move")
            assert not cells[0].is_enabled()  # their turn now
            await opponent.send("move", game=start["game"], cell=0)
            await asyncio.to_thread(wait_for, driver, lambda d: board(d)[0] == "O", "O's move")
            assert board(driver) == ["O", "", "", "", "X", "", "", "", ""]
            assert "your turn" in status.text

            # A reload keeps the player (its token is the tab's) and finds the game.
            await asyncio.to_thread(driver.refresh)
            assert await opponent.expect("away") == {"game": start["game"], "mark": "X"}
            assert await opponent.expect("back") == {"game": start["game"], "mark": "X"}
            await asyncio.to_thread(
                wait_for, driver, lambda d: board(d)[:5] == ["O", "", "", "", "X"], "the game"
            )
            assert "your turn" in driver.find_element(By.ID, "status").text
            assert page_errors(driver) == []
