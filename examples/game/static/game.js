// The tic-tac-toe page, through the lexicons client that the server serves at
// /lexicons.js. Play against another tab, or against `python examples/game/bot.py`.
import { Client } from "/lexicons.js";

const $ = (id) => document.getElementById(id);
// Who this tab is: a secret token made up once and kept for the tab's life, so a reload
// or a reconnection resumes the game. (Per tab: two tabs are two players.)
const PLAYER = "lexicons-game.player";
if (!sessionStorage.getItem(PLAYER)) {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  sessionStorage.setItem(PLAYER, btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_"));
}

// Whether this tab queued or plays: after a drop or a reload it asks `play` again, which
// answers with the running game (or queues it again: the queue forgets who left).
const PLAYING = "lexicons-game.playing";
let game = null; // {game, mark, board, turn, winner}

const scheme = location.protocol === "https:" ? "wss" : "ws";
const client = new Client(`${scheme}://${location.host}/`, {
  credentials: { Player: sessionStorage.getItem(PLAYER) },
});

const cells = Array.from({ length: 9 }, (_, cell) => {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cell";
  button.setAttribute("aria-label", `cell ${cell}`);
  button.addEventListener("click", () => client.send("move", { game: game.game, cell }));
  return button;
});
$("board").append(...cells);

client.onState((state) => {
  if (state === "waiting") $("status").textContent = "Connection lost, reconnecting…";
  else if (state === "open" && sessionStorage.getItem(PLAYING)) play().catch(() => undefined); // dropped again
});

async function play() {
  sessionStorage.setItem(PLAYING, "yes");
  $("error").textContent = "";
  $("play").hidden = true;
  const answer = await client.call("play", {});
  if (answer.game) show({ ...answer, winner: null }); // a running game: its state
  else if (answer.waiting) $("status").textContent = "Waiting for an opponent…";
}

$("play").addEventListener("click", () => play().catch((error) => ($("error").textContent = error.message)));

const ours = (message) => game !== null && message.game === game.game;
client.on("start", (start) => show({ ...start, winner: null }));
// A move carries the mover's mark: keep ours.
client.on("move", (move) => ours(move) && show({ ...game, board: move.board, turn: move.turn, winner: move.winner }));
client.on("away", (away) => ours(away) && ($("status").textContent = "Your opponent left: a minute to come back."));
client.on("back", (back) => ours(back) && show(game));
client.on("over", (over) => ours(over) && show({ ...game, winner: over.winner }));
client.on("Errors", (errors) => ($("error").textContent = errors.map((e) => e.message).join("; ")));

function show(state) {
  game = state;
  $("board").hidden = false;
  $("error").textContent = "";
  state.board.forEach((mark, cell) => {
    cells[cell].textContent = mark;
    cells[cell].disabled = Boolean(mark || state.winner || state.turn !== state.mark);
  });
  if (state.winner) {
    sessionStorage.removeItem(PLAYING);
    $("status").textContent =
      state.winner === "draw" ? "A draw." : state.winner === state.mark ? "You won!" : "You lost.";
    $("play").hidden = false;
  } else {
    $("status").textContent = `You are ${state.mark}: ${state.turn === state.mark ? "your turn" : "their turn"}.`;
  }
}
