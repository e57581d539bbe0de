"""examples/chat: accounts through headers, rooms, history, presence, the page, durability."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from example_apps import load_example

from lexicons import SignalError
from lexicons.headers import subprotocol_credential
from lexicons.testing import HandshakeFailed, Peer, TestClient

PASSWORD = "correct horse"


@pytest.fixture
def chat() -> ModuleType:
    return load_example("chat")


@pytest.fixture
async def client(chat: ModuleType, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(chat.app, data=str(tmp_path)) as client:
        yield client


def credential(name: str, password: str = PASSWORD) -> str:
    return json.dumps({"name": name, "password": password})


async def register(client: TestClient, name: str) -> Peer:
    """A new account, connected; its session and welcome are read."""
    peer = await client.connect(headers={"Register": credential(name)})
    assert (await peer.expect("session"))["user"] == name
    assert (await peer.expect("welcome"))["user"] == name
    return peer


async def test_register_then_log_in_with_the_password_only(
    chat: ModuleType, client: TestClient
) -> None:
    await (await register(client, "ada")).close()
    stored = chat.app.db.get(chat.User, name="ada").password
    assert stored.startswith("scrypt$") and PASSWORD not in stored

    ada = await client.connect(headers={"Login": credential("ada")})
    assert (await ada.expect("welcome"))["user"] == "ada"
    for refused in (
        {"Login": credential("ada", "wrong password")},
        {"Login": credential("nobody")},
        {"Register": credential("ada")},  # the name is taken
        {"Register": credential("bad name!")},  # invalid payload
        {},  # no credential at all
    ):
        with pytest.raises(HandshakeFailed) as failed:
            await client.connect(headers=refused)
        assert failed.value.status == 403


async def test_the_page_logs_in_with_a_subprotocol_and_resumes_with_its_session(
    client: TestClient,
) -> None:
    offer = ["lexicons", subprotocol_credential("Register", credential("ada"))]
    ada = await client.connect(subprotocols=offer)
    assert ada.subprotocol == "lexicons"  # the credential itself is never echoed
    token = (await ada.expect("session"))["token"]

    again = await client.connect(
        subprotocols=["lexicons", subprotocol_credential("Session", token)]
    )
    assert (await again.expect("welcome"))["user"] == "ada"
    assert await again.call("logout", token=token) == {"ok": True}
    with pytest.raises(HandshakeFailed):
        await client.connect(subprotocols=["lexicons", subprotocol_credential("Session", token)])


async def test_rooms_history_and_notices(client: TestClient) -> None:
    ada = await register(client, "ada")
    joined = await ada.call("join", room="lobby")
    assert joined == {"room": "lobby", "history": [], "members": ["ada"]}
    await ada.send("say", room="lobby", text="first")
    assert (await ada.expect("say"))["text"] == "first"

    bob = await register(client, "bob")
    assert await ada.expect("online") == {"user": "bob"}
    joined = await bob.call("join", room="lobby")
    assert [m["text"] for m in joined["history"]] == ["first"]
    assert joined["members"] == ["ada", "bob"]
    assert await ada.expect("joined") == {"room": "lobby", "user": "bob"}

    await bob.send("say", room="lobby", text="second")
    for peer in (ada, bob):
        message = await peer.expect("say")
        assert (message["author"], message["text"], message["room"]) == ("bob", "second", "lobby")

    assert await bob.call("leave", room="lobby") == {"room": "lobby"}
    assert await ada.expect("left") == {"room": "lobby", "user": "bob"}
    assert await bob.call("leave", room="lobby") == {"room": "lobby"}  # announced once
    await bob.close()
    assert await ada.expect("offline") == {"user": "bob"}
    await ada.assert_nothing_received()


async def test_messages_reach_their_room_only(client: TestClient) -> None:
    ada, bob = await register(client, "ada"), await register(client, "bob")
    await ada.call("join", room="red")
    await bob.call("join", room="blue")
    await ada.send("say", room="red", text="only red")
    assert (await ada.expect("say"))["text"] == "only red"
    await bob.assert_nothing_received()


async def test_speaking_needs_a_joined_room_and_valid_text(client: TestClient) -> None:
    ada = await register(client, "ada")
    with pytest.raises(SignalError) as outside:
        await ada.call("say", room="lobby", text="hi")
    assert outside.value.code == "not_in_room"
    await ada.call("join", room="lobby")
    with pytest.raises(SignalError) as empty:
        await ada.call("say", room="lobby", text="")
    assert empty.value.code == "invalid_payload"


async def test_two_tabs_of_one_user_are_online_once(client: TestClient) -> None:
    ada = await register(client, "ada")
    bob = await register(client, "bob")
    assert await ada.expect("online") == {"user": "bob"}
    bob_again = await client.connect(headers={"Login": credential("bob")})
    assert (await bob_again.expect("welcome"))["online"] == ["ada", "bob"]
    await bob.close()
    await ada.assert_nothing_received()  # bob is still online in his other tab
    await bob_again.close()
    assert await ada.expect("offline") == {"user": "bob"}


async def test_serves_its_page(client: TestClient) -> None:
    page = await client.get("/")
    script = await client.get("/chat.js")
    assert page.status == 200 and "<title>lexicons chat</title>" in page.text
    assert script.status == 200 and "lexicons.${header}" in script.text


async def test_history_survives_a_restart(tmp_path: Path) -> None:
    async with TestClient(load_example("chat").app, data=str(tmp_path)) as client:
        ada = await register(client, "ada")
        await ada.call("join", room="lobby")
        await ada.send("say", room="lobby", text="kept")
        await ada.expect("say")
    async with TestClient(load_example("chat").app, data=str(tmp_path)) as client:
        ada = await client.connect(headers={"Login": credential("ada")})
        history = (await ada.call("join", room="lobby"))["history"]
    assert [(m["author"], m["text"]) for m in history] == [("ada", "kept")]
