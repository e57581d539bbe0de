"""Tic-tac-toe for two: matchmaking, a channel per game, moves checked on the server,
and a player who reconnects finds the game where it was.

Run the server, then let two bots play (or play against one, on the page at
http://localhost:5000/)::

    python examples/game/app.py run
    python examples/game/bot.py & python examples/game/bot.py

- Who you are: the ``Player`` header (or ``?Player=`` in the URL) carries a secret
  token the client makes up once and keeps; reconnecting with it resumes your game.
- ``play``: join the queue; when two players wait, both get ``start``. Sent during a
  game, it answers with that game's state (what a reconnecting client asks first).
- ``move {game, cell}``: a typed payload (a msgspec Struct), then the rules: your game,
  your turn, an empty cell, a game not over. Both players get the ``move`` broadcast.
- A player who stays away for ``AWAY_LIMIT`` seconds forfeits (``over``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from lexicons import Connection, Response, Server, SignalError

AWAY_LIMIT = 60.0  # seconds a disconnected player has to come back
LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]

Mark = Literal["X", "O"]
Token = Annotated[str, Meta(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

app = Server(static=str(Path(__file__).parent / "static"))  # the page: open "/" in a browser


class Move(msgspec.Struct, forbid_unknown_fields=True):
    """The ``move`` payload; msgspec refuses anything else before ``move`` runs."""

    game: str
    cell: Annotated[int, Meta(ge=0, le=8)]  # 0 1 2 / 3 4 5 / 6 7 8


@dataclass
class Game:
    id: str
    players: dict[Mark, str]  # mark -> player token
    board: list[str] = field(default_factory=lambda: [""] * 9)
    turn: Mark = "X"
    winner: str | None = None  # "X", "O" or "draw"
    away: dict[Mark, float] = field(default_factory=dict)  # since when, by mark

    @property
    def channel(self) -> str:
        return f"game:{self.id}"

    def mark_of(self, token: str) -> Mark | None:
        return next((mark for mark, player in self.players.items() if player == token), None)

    def state(self, mark: Mark) -> dict[str, Any]:
        """What one player needs to draw the game."""
        return {"game": self.id, "mark": mark, "board": self.board, "turn": self.turn}


games: dict[str, Game] = {}  # running games, by id
playing: dict[str, Game] = {}  # running game, by player token
sockets: dict[str, Connection] = {}  # each player's live connection, by token
waiting: list[str] = []  # tokens in the queue (at most one: a second one starts a game)


@app.header
def Player(ws: Connection, header: Token) -> bool:
    ws.auth = header  # the token is the player's identity: keep it secret
    return True


@app.on_connect
def arrive(ws: Connection, sv: Server) -> None:
    token = ws.auth
    previous = sockets.get(token)
    if previous is not None:  # the same player in a new tab or after a network change
        previous.close(4000, "replaced by a newer connection")
    sockets[token] = ws
    game = playing.get(token)
    if game is not None:  # back in a running game
        mark = game.mark_of(token)
        assert mark is not None
        game.away.pop(mark, None)
        sv.channels[game.channel].subscribe(ws)
        sv.broadcast({"back": {"game": game.id, "mark": mark}}, game.channel)


@app.on_disconnect
def depart(ws: Connection, sv: Server) -> None:
    token = ws.auth
    if sockets.get(token) is not ws:
        return  # a replaced connection: the newer one speaks for this player
    del sockets[token]
    if token in waiting:
        waiting.remove(token)
    game = playing.get(token)
    if game is not None:
        mark = game.mark_of(token)
        assert mark is not None
        game.away[mark] = time.monotonic()
        sv.broadcast({"away": {"game": game.id, "mark": mark}}, game.channel)


@app.signal
def play(ws: Connection, sv: Server) -> dict[str, Any]:
    """Queue for a game; during a game, the game's state."""
    token = ws.auth
    game = playing.get(token)
    if game is not None:
        mark = game.mark_of(token)
        assert mark is not None
        return game.state(mark)
    leave_finished(ws, sv)
    if not waiting or waiting == [token]:
        waiting[:] = [token]
        return {"waiting": True}
    # First come plays X, and X moves first.
    game = Game(id=secrets.token_hex(4), players={"X": waiting.pop(), "O": token})
    games[game.id] = game
    channel = sv.channels.create(game.channel)
    for mark, player in game.players.items():
        playing[player] = game
        channel.subscribe(sockets[player])
        sockets[player].send({"start": game.state(mark)})
    return {"waiting": False}


@app.signal
def move(ws: Connection, m: Move) -> Response:
    game = games.get(m.game)
    if game is None:
        raise SignalError("no_such_game", f"no running game {m.game!r}")
    mark = game.mark_of(ws.auth)
    if mark is None:
        raise SignalError("not_your_game", "you are not playing in this game")
    if mark != game.turn:
        raise SignalError("not_your_turn", f"it is {game.turn}'s turn")
    if game.board[m.cell]:
        raise SignalError("cell_taken", f"cell {m.cell} holds {game.board[m.cell]}")
    game.board[m.cell] = mark
    game.winner = winner(game.board)
    game.turn = "O" if mark == "X" else "X"
    if game.winner is not None:
        finish(game)
    result = {"game": game.id, "cell": m.cell, "mark": mark, "board": game.board}
    return Response({**result, "turn": game.turn, "winner": game.winner}, [game.channel])


def winner(board: list[str]) -> str | None:
    for a, b, c in LINES:
        if board[a] and board[a] == board[b] == board[c]:
            return board[a]
    return "draw" if all(board) else None


def finish(game: Game) -> None:
    """The game is over: its players may queue again. Its channel stays until they leave,
    so the last broadcast still reaches them."""
    del games[game.id]
    for player in game.players.values():
        playing.pop(player, None)


def leave_finished(ws: Connection, sv: Server) -> None:
    """Leave the channels of finished games before starting another."""
    for name in [name for name in ws.channels if name.startswith("game:")]:
        sv.channels[name].unsubscribe(ws)


@app.task.interval(1.0)
def tidy(sv: Server) -> None:
    """Forfeit games whose player stayed away too long; drop finished games' channels."""
    now = time.monotonic()
    for game in list(games.values()):
        gone = [mark for mark, since in game.away.items() if now - since > AWAY_LIMIT]
        if gone:
            game.winner = "O" if gone[0] == "X" else "X"
            finish(game)
            sv.broadcast({"over": {"game": game.id, "winner": game.winner}}, game.channel)
    for name in [name for name in sv.channels if name.startswith("game:")]:
        if name.removeprefix("game:") not in games and not sv.channels[name].subscribers:
            sv.channels.remove(name)


if __name__ == "__main__":
    app.run()
