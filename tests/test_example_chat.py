"""examples/chat: accounts through headers, rooms, history, presence, the page, durability."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from example_apps import load_example
from hypothesis import given
from hypothesis import strategies as st

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


async def signed_up(client: TestClient, name: str) -> tuple[Peer, str]:
    """A new account, connected, and its session token; its welcome is read."""
    peer = await client.connect(headers={"Register": credential(name)})
    session = await peer.expect("session")
    assert session["user"] == name
    assert (await peer.expect("welcome"))["user"] == name
    return peer, session["token"]


async def register(client: TestClient, name: str) -> Peer:
    return (await signed_up(client, name))[0]


def session_offer(token: str) -> list[str]:
    """What the page offers when it reconnects: its session token as a subprotocol."""
    return ["lexicons", subprotocol_credential("Session", token)]


@functools.cache
def chat_module() -> ModuleType:
    """One instance of the app, for the tests of its pure functions."""
    return load_example("chat")


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


async def test_rooms_history_and_presence(client: TestClient) -> None:
    ada = await register(client, "ada")
    await ada.subscribe("Lobby")
    assert (await ada.expect("$join"))["info"] == {"user": "ada"}  # her own
    answer = await ada.subscribe("room:lobby")
    assert (answer["offset"], answer["recovered"]) == (0, False)
    assert (await ada.expect("$join"))["channel"] == "room:lobby"
    await ada.send("say", room="lobby", text="first")
    assert (await ada.expect("say"))["text"] == "first"

    bob = await register(client, "bob")
    await bob.subscribe("Lobby")
    joined = await ada.expect("$join")
    assert (joined["channel"], joined["info"]) == ("Lobby", {"user": "bob"})
    await bob.subscribe("room:lobby")
    assert [m["text"] for m in await bob.call("history", room="lobby")] == ["first"]
    assert sorted(m["info"]["user"] for m in await bob.presence("room:lobby")) == ["ada", "bob"]
    assert (await ada.expect("$join"))["channel"] == "room:lobby"

    await bob.send("say", room="lobby", text="second")
    for peer in (ada, bob):
        message = await peer.expect("say")
        assert (message["author"], message["text"], message["room"]) == ("bob", "second", "lobby")

    await bob.unsubscribe("room:lobby")
    left = await ada.expect("$leave")
    assert (left["channel"], left["pk"], left["info"]) == (
        "room:lobby",
        joined["pk"],
        {"user": "bob"},
    )
    await bob.close()
    assert (await ada.expect("$leave"))["channel"] == "Lobby"
    await ada.assert_nothing_received()


async def test_messages_reach_their_room_only(client: TestClient) -> None:
    ada, bob = await register(client, "ada"), await register(client, "bob")
    await ada.subscribe("room:red")
    await bob.subscribe("room:blue")
    assert (await bob.expect("$join"))["channel"] == "room:blue"  # his own
    await ada.send("say", room="red", text="only red")
    assert (await ada.expect("say"))["text"] == "only red"
    assert [m["text"] for m in await bob.call("history", room="blue")] == []
    await bob.assert_nothing_received()


async def test_speaking_needs_a_subscribed_room_and_valid_text(client: TestClient) -> None:
    ada = await register(client, "ada")
    with pytest.raises(SignalError) as outside:
        await ada.call("say", room="lobby", text="hi")
    assert outside.value.code == "not_in_room"
    await ada.subscribe("room:lobby")
    for text in ("", "x" * 2001, ["not", "text"]):
        with pytest.raises(SignalError) as invalid:
            await ada.call("say", room="lobby", text=text)
        assert invalid.value.code == "invalid_payload"
    for room, code in (
        ("bad name!", "forbidden"),
        ("x" * 25, "forbidden"),
        ("", "unknown_channel"),
    ):
        with pytest.raises(SignalError) as refused:
            await ada.subscribe(f"room:{room}")
        assert refused.value.code == code
    with pytest.raises(SignalError) as nested:
        await ada.call("history", room={"deep": [[[[["room"]]]]]})
    assert nested.value.code == "invalid_payload"


async def test_two_tabs_of_one_user_are_two_members_with_one_name(client: TestClient) -> None:
    ada, (bob, token) = await register(client, "ada"), await signed_up(client, "bob")
    bob_again = await client.connect(subprotocols=session_offer(token))
    for peer in (ada, bob, bob_again):
        await peer.subscribe("Lobby")
    members = await ada.presence("Lobby")
    assert sorted(m["info"]["user"] for m in members) == ["ada", "bob", "bob"]
    await bob.close()
    assert (await ada.expect("$leave"))["info"] == {"user": "bob"}
    members = await ada.presence("Lobby")
    assert sorted(m["info"]["user"] for m in members) == ["ada", "bob"]  # still online


@given(st.text(max_size=30))
def test_a_room_may_be_entered_when_its_name_is_valid(name: str) -> None:
    """The channel's authorization and the signals' ``Name`` type accept the same rooms."""
    chat = chat_module()
    try:
        msgspec.convert(name, chat.Name)
    except msgspec.ValidationError:
        valid = False
    else:
        valid = True
    assert chat.may_enter(name) is valid


async def test_a_page_that_reconnects_receives_what_it_missed(client: TestClient) -> None:
    (ada, token), bob = await signed_up(client, "ada"), await register(client, "bob")
    await ada.subscribe("room:lobby")
    await bob.subscribe("room:lobby")
    await bob.send("say", room="lobby", text="seen")
    assert (await ada.expect("say"))["text"] == "seen"
    await ada.close()
    await bob.send("say", room="lobby", text="missed")
    assert (await bob.expect("say"))["text"] == "seen"
    assert (await bob.expect("say"))["text"] == "missed"  # handled: published to the room

    again = await client.connect(subprotocols=session_offer(token))
    assert (await again.resume(ada))["room:lobby"]["recovered"] is True
    assert (await again.expect("say"))["text"] == "missed"


async def test_serves_its_page_on_the_client(client: TestClient) -> None:
    page = await client.get("/")
    script = await client.get("/chat.js")
    module = await client.get("/lexicons.js")
    assert page.status == 200 and "<title>lexicons chat</title>" in page.text
    assert script.status == 200 and 'from "/lexicons.js"' in script.text
    assert module.status == 200 and "export class Client" in module.text


async def test_history_and_sessions_survive_a_restart(tmp_path: Path) -> None:
    async with TestClient(load_example("chat").app, data=str(tmp_path)) as client:
        ada, token = await signed_up(client, "ada")
        await ada.subscribe("room:lobby")
        await ada.send("say", room="lobby", text="kept")
        await ada.expect("say")
    async with TestClient(load_example("chat").app, data=str(tmp_path)) as client:
        ada = await client.connect(subprotocols=session_offer(token))
        assert (await ada.expect("welcome"))["user"] == "ada"
        history = await ada.call("history", room="lobby")
    assert [(m["author"], m["text"]) for m in history] == [("ada", "kept")]
