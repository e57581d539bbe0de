"""The chat example in headless Chromium: two pages register, talk, and one reloads.

The app is served in-process, in the test's event loop; the browsers are driven by
Selenium from a worker thread (its calls block), against Debian's chromium and
chromium-driver, never a downloaded browser.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import chromium_path
from example_apps import load_example

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

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

Driver = Any
WAIT = 15.0  # seconds for a page to show what the test waits for


@contextmanager
def chromium() -> Iterator[Driver]:
    """A headless Chromium with a fresh profile that talks to no host but ours."""
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
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Driver, condition: Callable[[Driver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message=f"page never showed {what}")


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
