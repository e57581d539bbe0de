"""examples/game: matchmaking, move validation, reconnection, forfeits, and the bot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
from example_apps import load_example

from lexicons import SignalError
from lexicons.testing import HandshakeFailed, Peer, TestClient

X_TOKEN, O_TOKEN = "x" * 16, "o" * 16


@pytest.fixture
def game() -> ModuleType:
    return load_example("game")


@pytest.fixture
async def client(game: ModuleType) -> AsyncIterator[TestClient]:
    async with TestClient(game.app) as client:
        yield client


async def player(client: TestClient, token: str) -> Peer:
    return await client.connect(headers={"Player": token})


async def start(client: TestClient) -> tuple[Peer, Peer, str]:
    """Two players matched: X (first in the queue) and O; returns them and the game id."""
    x, o = await player(client, X_TOKEN), await player(client, O_TOKEN)
    assert await x.call("play") == {"waiting": True}
    assert await o.call("play") == {"waiting": False}
    started = await x.expect("start")
    assert started == {**await o.expect("start"), "mark": "X"}
    assert (started["turn"], started["board"]) == ("X", [""] * 9)
    return x, o, started["game"]


async def test_a_game_to_the_end(client: TestClient) -> None:
    x, o, game_id = await start(client)
    for peer, cell in [(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)]:
        await peer.send("move", game=game_id, cell=cell)
        for watcher in (x, o):
            moved = await watcher.expect("move")
            assert (moved["cell"], moved["mark"]) == (cell, "X" if peer is x else "O")
    assert moved["winner"] == "X"
    assert moved["board"] == ["X", "X", "X", "O", "O", "", "", "", ""]
    # Over: both may queue again, into a new game.
    assert await x.call("play") == {"waiting": True}


@pytest.mark.parametrize(
    ("who", "payload", "code"),
    [
        ("o", {"cell": 4}, "not_your_turn"),
        ("x", {"cell": 9}, "invalid_payload"),
        ("x", {"cell": "4"}, "invalid_payload"),
        ("x", {"cell": 4, "extra": 1}, "invalid_payload"),
        ("x", {"cell": 4, "game": "nope"}, "no_such_game"),
        ("stranger", {"cell": 4}, "not_your_game"),
    ],
)
async def test_moves_are_checked_on_the_server(
    client: TestClient, who: str, payload: dict, code: str
) -> None:
    x, o, game_id = await start(client)
    stranger = await player(client, "s" * 16)
    peer = {"x": x, "o": o, "stranger": stranger}[who]
    with pytest.raises(SignalError) as refused:
        await peer.call("move", **{"game": game_id, **payload})
    assert refused.value.code == code


async def test_a_taken_cell_is_refused(client: TestClient) -> None:
    x, o, game_id = await start(client)
    await x.send("move", game=game_id, cell=4)
    await o.expect("move")
    with pytest.raises(SignalError) as refused:
        await o.call("move", game=game_id, cell=4)
    assert refused.value.code == "cell_taken"


async def test_reconnecting_resumes_the_game(client: TestClient) -> None:
    x, o, game_id = await start(client)
    await x.send("move", game=game_id, cell=4)
    await o.expect("move")
    await x.close()
    assert await o.expect("away") == {"game": game_id, "mark": "X"}

    x = await player(client, X_TOKEN)
    assert await o.expect("back") == {"game": game_id, "mark": "X"}
    state = await x.call("play")  # what a reconnecting client asks first
    assert state["board"][4] == "X" and (state["mark"], state["turn"]) == ("X", "O")
    await o.send("move", game=game_id, cell=0)
    assert (await x.expect("move"))["cell"] == 0  # subscribed to the game again


async def test_a_second_connection_replaces_the_first(client: TestClient) -> None:
    first = await player(client, X_TOKEN)
    await player(client, X_TOKEN)
    assert await first.closed() == (4000, "replaced by a newer connection")


async def test_staying_away_forfeits(game: ModuleType, client: TestClient) -> None:
    x, o, game_id = await start(client)
    await x.close()
    await o.expect("away")
    game.games[game_id].away["X"] -= game.AWAY_LIMIT + 1  # as if a minute went by
    assert await o.expect("over") == {"game": game_id, "winner": "O"}
    assert game_id not in game.games


async def test_player_tokens_are_checked(client: TestClient) -> None:
    for token in ("short", "not a token at all!"):
        with pytest.raises(HandshakeFailed):
            await player(client, token)


def test_winner_rules(game: ModuleType) -> None:
    assert game.winner(["X", "O", "X", "X", "O", "O", "O", "X", "X"]) == "draw"
    assert game.winner(["O", "X", "", "X", "O", "", "", "X", "O"]) == "O"
    assert game.winner([""] * 9) is None


async def test_two_bots_play_each_other(client: TestClient) -> None:
    bot = load_example("game", "bot")
    lines: list[str] = []
    first, second = await asyncio.gather(
        bot.play(client.url, 2, rng=random.Random(1), report=lines.append),
        bot.play(client.url, 2, rng=random.Random(2), report=lines.append),
    )
    flipped = {"won": "lost", "lost": "won", "draw": "draw"}
    assert [flipped[result] for result in first] == second
    assert sum(": playing " in line for line in lines) == 4  # two games, two bots


async def test_serves_its_page(client: TestClient) -> None:
    page = await client.get("/")
    script = await client.get("/game.js")
    assert page.status == 200 and "<title>lexicons tic-tac-toe</title>" in page.text
    assert script.status == 200 and 'from "/lexicons.js"' in script.text
