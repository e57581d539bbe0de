// The chat page: plain JavaScript, no build step. It talks to examples/chat/app.py.
"use strict";

const $ = (id) => document.getElementById(id);
// sessionStorage is per tab and gone when the tab closes: a reload stays logged in.
const SESSION = "lexicons-chat.session";
const ROOM = "lexicons-chat.room";

let socket = null;
let me = null;
let room = null;
let leaving = false; // true while we close the socket on purpose
let refs = 0;
const members = new Set();
const online = new Set();

// Browsers cannot set headers on a WebSocket, so the credential travels as a subprotocol
// "lexicons.<Header>.<base64url(value)>", offered next to plain "lexicons", which the
// server selects. Unlike a query string, it does not end up in access logs.
function base64url(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function connect(header, value) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/`, [
    "lexicons",
    `lexicons.${header}.${base64url(value)}`,
  ]);
  let admitted = false;
  ws.onopen = () => { admitted = true; status(""); };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    // A refused handshake (HTTP 403) closes before opening; the page cannot see why.
    if (!admitted) return refused(header);
    if (leaving) return;
    // The server went away (a restart?): come back with the session token.
    status("Disconnected, reconnecting…");
    setTimeout(resume, 1000 + Math.random() * 2000);
  };
  socket = ws;
}

function resume() {
  const token = sessionStorage.getItem(SESSION);
  if (token) connect("Session", token);
  else showLogin("");
}

function refused(header) {
  if (header === "Session") {
    sessionStorage.removeItem(SESSION);
    return showLogin("Your session has ended; please log in.");
  }
  showLogin(header === "Register" ? "That name is taken." : "Wrong name or password.");
}

function send(signal, payload) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ [signal]: payload, ref: ++refs }));
  }
}

// Every message is {"<signal>": payload}, plus "ref" on replies to what we sent.
function handle(message) {
  if (message.Errors) {
    for (const error of message.Errors) status(`${error.signal}: ${error.message}`);
    return;
  }
  const name = Object.keys(message).find((key) => key !== "ref");
  const data = message[name];
  switch (name) {
    case "session":
      sessionStorage.setItem(SESSION, data.token);
      break;
    case "welcome":
      me = data.user;
      $("me").textContent = me;
      online.clear();
      data.online.forEach((user) => online.add(user));
      render($("online"), online);
      showChat();
      enter(sessionStorage.getItem(ROOM) || "lobby");
      break;
    case "join": // the reply to our join: history and who is there
      room = data.room;
      sessionStorage.setItem(ROOM, room);
      $("current-room").textContent = room;
      $("room-name").value = room;
      $("messages").replaceChildren();
      data.history.forEach(addMessage);
      members.clear();
      data.members.forEach((user) => members.add(user));
      render($("members"), members);
      break;
    case "say":
      if (data.room === room) addMessage(data);
      break;
    case "joined":
    case "left":
      if (data.room !== room || data.user === me) break;
      if (name === "joined") members.add(data.user);
      else members.delete(data.user);
      render($("members"), members);
      addNotice(`${data.user} ${name} the room`);
      break;
    case "online":
      online.add(data.user);
      render($("online"), online);
      break;
    case "offline":
      online.delete(data.user);
      render($("online"), online);
      break;
  }
}

function enter(name) {
  if (room && room !== name) send("leave", { room });
  send("join", { room: name });
}

// User text only ever goes through textContent: nothing a user types becomes markup.
function addMessage(message) {
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
  append(item);
}

function addNotice(text) {
  const item = document.createElement("li");
  item.className = "notice";
  item.textContent = text;
  append(item);
}

function append(item) {
  const list = $("messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function render(list, names) {
  list.replaceChildren(...[...names].sort().map((user) => {
    const item = document.createElement("li");
    item.textContent = user === me ? `${user} (you)` : user;
    return item;
  }));
}

function status(text) {
  $("status").textContent = text;
}

function showLogin(error) {
  room = null;
  $("chat").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error;
}

function showChat() {
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
  leaving = false;
  connect(header, JSON.stringify(login));
});

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  enter($("room-name").value);
});

$("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text && room) send("say", { room, text });
  $("text").value = "";
});

$("logout").addEventListener("click", () => {
  send("logout", { token: sessionStorage.getItem(SESSION) || "" });
  sessionStorage.removeItem(SESSION);
  sessionStorage.removeItem(ROOM);
  leaving = true;
  if (socket) socket.close();
  showLogin("");
});

resume();
