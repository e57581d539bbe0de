"""examples/original: an app written the original framework's way runs unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
from example_apps import load_example

from lexicons.testing import HandshakeFailed, Peer, TestClient


@pytest.fixture
def chat() -> ModuleType:
    return load_example("original")


@pytest.fixture
async def client(chat: ModuleType) -> AsyncIterator[TestClient]:
    async with TestClient(chat.sv) as client:
        yield client


def credentials(username: str, password: str) -> dict[str, str]:
    return {"username": username, "password": password}


async def register(client: TestClient, username: str, password: str = "pw") -> Peer:
    value = json.dumps(credentials(username, password))
    return await client.connect(headers={"Register": value})


async def login(client: TestClient, username: str, password: str = "pw") -> Peer:
    return await client.connect(query={"Login": json.dumps(credentials(username, password))})


async def welcomed(peer: Peer, username: str) -> None:
    """A new account hears its header's ``ws.send`` and then on_connect's broadcast."""
    received = [await peer.receive(), await peer.receive()]
    assert received == [
        [{"Register": {"success": True}}],
        {"UserEnter": f"{username} has come online..."},
    ]


async def test_register_login_chat_and_history(client: TestClient, chat: ModuleType) -> None:
    ada = await register(client, "ada")
    await welcomed(ada, "ada")  # subscribed by its header, it hears its own arrival
    bob = await register(client, "bob")
    assert await ada.receive() == {"UserEnter": "bob has come online..."}
    await welcomed(bob, "bob")

    await ada.send("CreateChat", body="hello")
    for peer in (ada, bob):
        said = await peer.expect("CreateChat")
        assert (said["body"], said["username"]) == ("hello", "ada")
        assert said["user"] == chat.sv.db.get("User", username="ada").pk
    await bob.send("GetChatList")
    history = await bob.expect("GetChatList")
    assert [(m["username"], m["body"]) for m in history] == [("ada", "hello")]
    await ada.assert_nothing_received()

    await bob.close()
    assert await ada.expect("UserExit") == "bob is now offline..."
    again = await login(client, "bob")
    assert await ada.expect("UserEnter") == "bob has come online..."
    await again.send("CreateChat", body="back")
    assert (await ada.expect("CreateChat"))["username"] == "bob"


async def test_refused_clients_are_never_subscribed(client: TestClient, chat: ModuleType) -> None:
    ada = await register(client, "ada")
    await welcomed(ada, "ada")
    public = chat.sv.channels["Public"]
    for attempt in (
        login(client, "ada", "wrong"),
        login(client, "nobody"),
        register(client, "ada"),  # taken
        client.connect(),  # no header at all: absent headers count False
    ):
        with pytest.raises(HandshakeFailed) as refused:
            await attempt
        assert refused.value.status == 403
    assert list(public.subscribers) == [ada_pk(chat)]
    await ada.send("CreateChat", body="still alone")
    assert (await ada.expect("CreateChat"))["body"] == "still alone"
    await ada.assert_nothing_received()


def ada_pk(chat: ModuleType) -> str:
    (pk,) = chat.sv.connections
    return str(pk)
