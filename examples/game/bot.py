"""A tic-tac-toe bot for the game example, written with lexicons.Client.

Start the server (``python examples/game/app.py run``), then two bots::

    python examples/game/bot.py --games 3 & python examples/game/bot.py --games 3

It queues, plays random legal moves, and when its connection drops the client
reconnects with backoff and ``on_connect`` asks the server for the running game.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
from collections.abc import Callable
from typing import Any

from lexicons.client import Client


def show(board: list[str]) -> str:
    """The board on one line: ``X O . | . X . | . . O``."""
    cells = [mark or "." for mark in board]
    return " | ".join(" ".join(cells[row : row + 3]) for row in (0, 3, 6))


async def play(
    url: str,
    games: int = 1,
    *,
    token: str | None = None,
    rng: random.Random | None = None,
    report: Callable[[str], None] = print,
) -> list[str]:
    """Play ``games`` games; return how each ended for this bot: won, lost or draw."""
    token = token or secrets.token_urlsafe(16)  # who we are, across reconnections
    rng = rng or random.Random()
    game: dict[str, Any] = {}  # the running game's state; empty while queued
    results: list[str] = []

    async def move_if_my_turn(client: Client) -> None:
        if game and game["turn"] == game["mark"]:
            free = [cell for cell, mark in enumerate(game["board"]) if not mark]
            await client.send("move", game=game["game"], cell=rng.choice(free))

    async def resume(client: Client) -> None:
        # After every (re)connection: `play` queues us, or answers with our running game.
        reply = await client.call("play")
        if "game" in reply:
            game.update(reply)
            await move_if_my_turn(client)

    async with Client(url, headers={"Player": token}, on_connect=resume) as client:
        async for message in client:
            ((name, data),) = message.items()
            if name == "Errors":
                report(f"refused: {data}")
                continue
            if name == "start":
                game.clear()
                game.update(data)
                report(f"game {data['game']}: playing {data['mark']}")
            elif not game or data.get("game") != game["game"]:
                continue  # news of an earlier game
            elif name == "move":
                game.update(board=data["board"], turn=data["turn"])
                report(f"{data['mark']} takes {data['cell']}: {show(data['board'])}")
            elif name == "over":
                report(f"{data['winner']} wins: the other player left")
            winner = data.get("winner")
            if winner is None:
                await move_if_my_turn(client)
                continue
            mine = game["mark"]
            results.append("draw" if winner == "draw" else "won" if winner == mine else "lost")
            report(f"game {game['game']}: {results[-1]}")
            game.clear()
            if len(results) == games:
                break
            await client.call("play")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Play tic-tac-toe against anyone queued.")
    parser.add_argument("--url", default="ws://localhost:5000/")
    parser.add_argument("--games", type=int, default=1)
    args = parser.parse_args()
    print("results:", asyncio.run(play(args.url, args.games)))


if __name__ == "__main__":
    main()
