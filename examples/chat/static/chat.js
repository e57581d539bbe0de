// The chat page: plain JavaScript, no build step. It talks to examples/chat/app.py through
// the lexicons client, which every lexicons server serves at /lexicons.js. The client
// reconnects through outages, subscribes the page's channels again from where they
// stopped, and says when the server refused the credentials (the only reason to log out).
import { Client } from "/lexicons.js";

const $ = (id) => document.getElementById(id);
// sessionStorage is per tab and gone when the tab closes: a reload stays logged in.
const SESSION = "lexicons-chat.session";
const ROOM = "lexicons-chat.room";
const REFUSED = {
  Register: "That name is taken.",
  Login: "Wrong name or password.",
  Session: "Your session has ended; please log in.",
};

let client = null;
let credentials = null; // {Header: value}: what the client offers on each attempt
let me = null;
let room = null; // {name, subscription, shown: Set of message pks, reloading: [] or null}

// The client reads `credentials` at every attempt: once the server hands out a session
// token, reconnections offer the token, never the password again.
function connect(header, value) {
  client?.close();
  credentials = { [header]: value };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const current = new Client(`${scheme}://${location.host}/`, {
    credentials,
    // At most 10 s between attempts: back within seconds of the server. While the device
    // is offline, no attempts; the first goes out the moment the network is back.
    reconnect: { maximum: 10000 },
    pause: { offline: true },
  });
  client = current;
  current.onState((state) => changed(current, state));
  current.on("session", (session) => {
    sessionStorage.setItem(SESSION, session.token);
    for (const name of Object.keys(credentials)) delete credentials[name];
    credentials.Session = session.token;
  });
  // Errors of what the page sent without waiting for a reply (`say`): shown, not thrown.
  current.on("Errors", (errors) => status(errors.map((error) => error.message).join("; ")));
  current.on("welcome", (welcome) => {
    me = welcome.user;
    $("me").textContent = me;
    showChat();
  });
  // Who is online: the members of the Lobby channel, kept by the client.
  const online = () => render($("online"), lobby.members);
  const lobby = current.subscribe("Lobby", {
    presence: true, onJoin: online, onLeave: online, onPresence: online,
  });
  room = null;
  enter(sessionStorage.getItem(ROOM) || "lobby");
}

function changed(current, state) {
  if (current !== client) return;
  if (state === "open") status("");
  else if (state === "waiting" || state === "connecting") {
    if (me !== null) status("Connection lost, reconnecting…");
  } else if (state === "paused") status("Offline: reconnecting once the network is back…");
  else if (state === "refused") {
    const [header] = Object.keys(credentials);
    if (header === "Session") sessionStorage.removeItem(SESSION);
    loggedOut(REFUSED[header] ?? "Refused.");
  }
}

function resume() {
  const token = sessionStorage.getItem(SESSION);
  if (token) connect("Session", token);
  else showLogin("");
}

// --- rooms ------------------------------------------------------------------------------

function enter(name) {
  if (room?.name === name) return;
  room?.subscription.unsubscribe().catch(() => undefined);
  sessionStorage.setItem(ROOM, name);
  $("current-room").textContent = name;
  $("room-name").value = name;
  $("messages").replaceChildren();
  const entered = { name, subscription: null, shown: new Set(), reloading: null };
  room = entered;
  const members = () => room === entered && render($("members"), entered.subscription.members);
  entered.subscription = client.subscribe(`room:${name}`, {
    presence: true,
    // Recovered: what was missed follows, each message once. Not recovered (the first
    // time, or the room's history no longer reaches back that far): load it again.
    onSubscribed: (answer) => answer.recovered || reload(entered),
    onMessage: (signal, message) => signal === "say" && receive(entered, message),
    onJoin: members,
    onLeave: members,
    onPresence: members,
    onError: (error) => status(error.message),
  });
}

async function reload(entered) {
  // Messages broadcast while the history is on its way wait, then follow it.
  const waiting = [];
  entered.reloading = waiting;
  try {
    const history = await client.call("history", { room: entered.name });
    if (room !== entered || entered.reloading !== waiting) return;
    $("messages").replaceChildren();
    entered.shown.clear();
    history.forEach((message) => show(entered, message));
  } catch {
    // The connection dropped: the next subscription answer asks again.
  } finally {
    if (entered.reloading === waiting) {
      entered.reloading = null;
      waiting.forEach((message) => show(entered, message));
    }
  }
}

function receive(entered, message) {
  if (entered.reloading !== null) entered.reloading.push(message);
  else show(entered, message);
}

// User text only ever goes through textContent: nothing a user types becomes markup.
function show(entered, message) {
  if (room !== entered || entered.shown.has(message.pk)) return;
  entered.shown.add(message.pk);
  const item = document.createElement("li");
  item.className = "message";
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = new Date(message.sent).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = message.author;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  item.append(time, author, text);
  const list = $("messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

// Presence lists connections: a user with two tabs is two members with one name.
function render(list, members) {
  const names = new Set([...members.values()].map((info) => info.user));
  list.replaceChildren(...[...names].sort().map((user) => {
    const item = document.createElement("li");
    item.textContent = user === me ? `${user} (you)` : user;
    return item;
  }));
}

// --- what the page shows ---------------------------------------------------------------------

function status(text) {
  $("status").textContent = text;
}

function loggedOut(error) {
  client?.close();
  client = null;
  room = null;
  me = null;
  showLogin(error);
}

function showLogin(error) {
  $("chat").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error;
}

function showChat() {
  if (!$("chat").hidden) return; // a reconnection: the page stays as it is
  $("login").hidden = true;
  $("chat").hidden = false;
  $("text").focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const header = event.submitter ? event.submitter.dataset.header : "Login";
  const login = { name: $("name").value, password: $("password").value };
  $("password").value = "";
  $("login-error").textContent = "";
  connect(header, login);
});

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  enter($("room-name").value);
});

$("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  // Held by the client while it reconnects, and sent once the room is subscribed again.
  if (text && room) client.send("say", { room: room.name, text });
  $("text").value = "";
});

$("logout").addEventListener("click", () => {
  const token = sessionStorage.getItem(SESSION) || "";
  sessionStorage.removeItem(SESSION);
  sessionStorage.removeItem(ROOM);
  const leaving = client;
  client = null;
  room = null;
  me = null;
  showLogin("");
  leaving?.call("logout", { token }).catch(() => undefined).finally(() => leaving.close());
});

resume();
