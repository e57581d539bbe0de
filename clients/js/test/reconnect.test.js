// Reconnection with an injected clock and random source (no sleeps, no timing asserted),
// and the client's channel logic over a scripted socket: $lagged, replays, pausing.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, backoffDelay } from "../../../src/lexicons/client_js/lexicons.js";
import { WebSocket, freePort, next } from "./servers.js";

test("backoffDelay: full jitter under an exponential ceiling, capped", () => {
  const backoff = { initial: 100, maximum: 1000, factor: 2 };
  const ceilings = [100, 200, 400, 800, 1000, 1000];
  ceilings.forEach((ceiling, attempt) => {
    assert.equal(backoffDelay(attempt, backoff, () => 0), 0);
    assert.equal(backoffDelay(attempt, backoff, () => 0.5), ceiling / 2);
    assert.ok(backoffDelay(attempt, backoff, () => 0.999999) < ceiling);
  });
  assert.equal(backoffDelay(50, {}, () => 0.5), 15000); // defaults: 500 ms up to 30 s
});

/** Timers that run only when the test says so. */
class ManualClock {
  timers = [];
  setTimeout = (callback, ms) => {
    const timer = { callback, ms };
    this.timers.push(timer);
    return timer;
  };
  clearTimeout = (timer) => {
    this.timers = this.timers.filter((t) => t !== timer);
  };
  /** Run the timer the client armed for its next attempt; returns its delay. */
  fire() {
    const timer = this.timers.shift();
    timer.callback();
    return timer.ms;
  }
}

test("an unreachable server: attempts forever, each wait within its ceiling", async () => {
  const port = await freePort();
  const clock = new ManualClock();
  const draws = [0.99, 0.5, 0.25, 0.99, 0.99, 0.99, 0.99];
  const client = new Client(`ws://127.0.0.1:${port}/`, {
    WebSocket, clock, random: () => draws.shift(), reconnect: { initial: 100, maximum: 1000 },
  });
  const expected = [99, 100, 100, 792, 990, 990];
  for (const delay of expected) {
    await next((listener) => client.onState(listener), (state) => state === "waiting");
    assert.equal(clock.timers.length, 1);
    assert.ok(Math.abs(clock.fire() - delay) < 1e-9);
  }
  assert.equal(client.state, "connecting"); // still trying, never refused
  client.close();
  assert.equal(clock.timers.length, 0); // close() disarms the next attempt
});

test("attempts: n gives up after n failures in a row", async () => {
  const port = await freePort();
  const clock = new ManualClock();
  const client = new Client(`ws://127.0.0.1:${port}/`, {
    WebSocket, clock, random: () => 0, reconnect: { attempts: 2 },
  });
  await next((listener) => client.onState(listener), (state) => state === "waiting");
  clock.fire();
  await next((listener) => client.onState(listener), (state) => state === "waiting");
  clock.fire();
  await assert.rejects(client.ready(), { code: "closed" });
  assert.equal(client.state, "closed");
});

/** A scripted WebSocket: the test opens it, feeds it frames and reads what was sent. */
class ScriptedSocket {
  static last = null;
  protocol = "lexicons";
  binaryType = "blob";
  onopen = null;
  onclose = null;
  onerror = null;
  onmessage = null;
  sent = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    ScriptedSocket.last = this;
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen({});
  }
  receive(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
  drop() {
    this.onclose({ code: 1006, reason: "" });
  }
}

test("$lagged: the client subscribes again from its offset; replays are delivered once", async () => {
  const client = new Client("ws://example.invalid/", { WebSocket: ScriptedSocket, clock: new ManualClock() });
  const socket = ScriptedSocket.last;
  socket.open();
  const seen = [];
  const lagged = [];
  const room = client.subscribe("room:1", {
    onMessage: (signal, payload, offset) => seen.push(offset),
    onLagged: (dropped) => lagged.push(dropped),
  });
  assert.deepEqual(socket.sent[0], { $subscribe: { channel: "room:1" }, ref: 1 });
  socket.receive({ $subscribe: { channel: "room:1", epoch: "E", offset: 4, recovered: false }, ref: 1 });
  await room.ready;
  socket.receive({ say: { text: "5" }, channel: "room:1", offset: 5 });
  socket.receive({ $lagged: { channel: "room:1", dropped: 3 } });
  assert.deepEqual(lagged, [3]);
  assert.deepEqual(socket.sent[1], {
    $subscribe: { channel: "room:1", since: { epoch: "E", offset: 5 } }, ref: 2,
  });
  socket.receive({ say: { text: "9" }, channel: "room:1", offset: 9 }); // live, before the answer
  socket.receive({ $subscribe: { channel: "room:1", epoch: "E", offset: 9, recovered: true }, ref: 2 });
  for (const offset of [6, 7, 8, 9, 10]) socket.receive({ say: {}, channel: "room:1", offset });
  assert.deepEqual(seen, [5, 9, 10]); // offsets at or below the last one are replays: skipped
  assert.equal(room.offset, 10);
  client.close();
});

test("after a drop the client rejoins with since; a lost epoch reports recovered: false", async () => {
  const clock = new ManualClock();
  const client = new Client("ws://example.invalid/", { WebSocket: ScriptedSocket, clock, random: () => 0 });
  let socket = ScriptedSocket.last;
  socket.open();
  const answers = [];
  const seen = [];
  const room = client.subscribe("room:2", {
    onSubscribed: (answer) => answers.push(answer),
    onMessage: (signal, payload, offset) => seen.push(offset),
  });
  socket.receive({ $subscribe: { channel: "room:2", epoch: "A", offset: 7, recovered: false }, ref: 1 });
  await room.ready;
  socket.drop();
  assert.equal(client.state, "waiting");
  clock.fire();
  socket = ScriptedSocket.last;
  socket.open();
  assert.deepEqual(socket.sent[0].$subscribe, { channel: "room:2", since: { epoch: "A", offset: 7 } });
  // The history was lost: a new epoch, whose offsets start again, read in the same chunk.
  socket.receive({ $subscribe: { channel: "room:2", epoch: "B", offset: 0, recovered: false }, ref: socket.sent[0].ref });
  socket.receive({ say: {}, channel: "room:2", offset: 1 });
  assert.deepEqual(answers.map((a) => [a.epoch, a.recovered]), [["A", false], ["B", false]]);
  assert.deepEqual(seen, [1]);
  assert.equal(room.offset, 1);
  assert.equal(client.reconnections, 1);
  client.close();
});

test("pause: hidden: the connection closes while the page is hidden and resumes after", async () => {
  const page = Object.assign(new EventTarget(), { visibilityState: "visible" });
  globalThis.document = page;
  try {
    const client = new Client("ws://example.invalid/", {
      WebSocket: ScriptedSocket, clock: new ManualClock(), pause: { hidden: true },
    });
    const first = ScriptedSocket.last;
    first.open();
    page.visibilityState = "hidden";
    page.dispatchEvent(new Event("visibilitychange"));
    assert.equal(client.state, "paused");
    assert.equal(first.closed, true);
    page.visibilityState = "visible";
    page.dispatchEvent(new Event("visibilitychange"));
    assert.equal(client.state, "connecting");
    assert.notEqual(ScriptedSocket.last, first);
    client.close();
    page.dispatchEvent(new Event("visibilitychange")); // listeners were removed on close
    assert.equal(client.state, "closed");
  } finally {
    delete globalThis.document;
  }
});

test("frames that are not JSON objects, or answer nothing asked, are ignored", async () => {
  const client = new Client("ws://example.invalid/", { WebSocket: ScriptedSocket, clock: new ManualClock() });
  const socket = ScriptedSocket.last;
  socket.open();
  const told = [];
  client.on("told", (payload) => told.push(payload));
  for (const data of ["not json", "[1,2]", "null", '"text"', '{"told": 1, "ref": 99}']) {
    socket.onmessage({ data });
  }
  socket.onmessage({ data: new Uint8Array([0xc1]).buffer }); // binary that is not MessagePack
  assert.deepEqual(told, [1]); // a ref nobody waits for: delivered as a message
  const reply = client.call("add", { a: 1, b: 2 });
  socket.receive({ Errors: [{ signal: "add", code: "invalid_payload", message: "bad" }], ref: 1 });
  await assert.rejects(reply, { code: "invalid_payload", signal: "add" });
  client.close();
});

test("a server that accepts then closes at once: the backoff keeps growing", () => {
  const clock = new ManualClock();
  const client = new Client("ws://example.invalid/", {
    WebSocket: ScriptedSocket, clock, random: () => 0.5, reconnect: { initial: 100, maximum: 1000 },
  });
  const waits = [];
  for (let i = 0; i < 3; i++) {
    ScriptedSocket.last.open();
    ScriptedSocket.last.drop(); // open, then closed without a frame (a failing on_connect)
    waits.push(clock.timers.at(-1).ms);
    clock.timers.at(-1).callback();
    clock.timers = [];
  }
  assert.deepEqual(waits, [50, 100, 200]);
  ScriptedSocket.last.open();
  ScriptedSocket.last.receive({ hello: 1 }); // this one works: the count starts again
  ScriptedSocket.last.drop();
  assert.equal(clock.timers.at(-1).ms, 50);
  client.close();
});

test("a connection open long enough counts as working, frame or not", () => {
  const clock = new ManualClock();
  const client = new Client("ws://example.invalid/", {
    WebSocket: ScriptedSocket, clock, random: () => 0.5, reconnect: { initial: 100 },
  });
  ScriptedSocket.last.open();
  ScriptedSocket.last.drop();
  clock.timers.at(-1).callback(); // the next attempt
  clock.timers = [];
  ScriptedSocket.last.open();
  assert.equal(clock.timers.length, 1);
  clock.fire(); // the steady timer
  ScriptedSocket.last.drop();
  assert.equal(clock.timers.at(-1).ms, 50);
  client.close();
});

test("pause: offline: no attempt while the browser is offline", () => {
  const scope = new EventTarget();
  const saved = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { onLine: false }, configurable: true });
  globalThis.addEventListener = scope.addEventListener.bind(scope);
  globalThis.removeEventListener = scope.removeEventListener.bind(scope);
  try {
    ScriptedSocket.last = null;
    const client = new Client("ws://example.invalid/", {
      WebSocket: ScriptedSocket, clock: new ManualClock(), pause: { offline: true },
    });
    assert.equal(client.state, "paused");
    assert.equal(ScriptedSocket.last, null);
    globalThis.navigator.onLine = true;
    scope.dispatchEvent(new Event("online"));
    assert.equal(client.state, "connecting");
    ScriptedSocket.last.open();
    assert.equal(client.state, "open");
    client.close();
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    if (saved) Object.defineProperty(globalThis, "navigator", saved);
    else delete globalThis.navigator;
  }
});

test("the probe carries the handshake's offer and query; its 403 stops the client", async () => {
  const asked = [];
  const fetch = async (url, init) => {
    asked.push([url, init]);
    return { status: 403, text: async () => "refused by gate\n" };
  };
  const client = new Client("wss://example.invalid:8443/app?room=1", {
    WebSocket: ScriptedSocket, clock: new ManualClock(), fetch, credentials: { Token: "ok" },
  });
  assert.deepEqual(ScriptedSocket.last.protocols, ["lexicons", "lexicons.Token.b2s"]);
  ScriptedSocket.last.drop(); // the handshake failed
  await assert.rejects(client.ready(), (error) => error.status === 403 && /refused by gate/.test(error.message));
  assert.equal(asked[0][0], "https://example.invalid:8443/lexicons.attempt?room=1");
  assert.equal(asked[0][1].headers["Lexicons-Protocol"], "lexicons, lexicons.Token.b2s");
  assert.equal(asked[0][1].credentials, "include");
  assert.equal(client.state, "refused");
});

test("any other answer to the probe, or none, means: try again", async () => {
  const answers = [200, 404, 429, 503, "unreachable"];
  const fetch = async () => {
    const answer = answers.shift();
    if (answer === "unreachable") throw new TypeError("fetch failed");
    return { status: answer, text: async () => "" };
  };
  const clock = new ManualClock();
  const client = new Client("ws://example.invalid/", { WebSocket: ScriptedSocket, clock, fetch, random: () => 0 });
  for (let i = 0; i < 5; i++) {
    ScriptedSocket.last.drop();
    await next((listener) => client.onState(listener), (state) => state === "waiting");
    clock.fire();
  }
  assert.equal(answers.length, 0);
  assert.equal(client.state, "connecting");
  client.close();
});

test("credentials are read again at each attempt: a value changed in them is offered next", async () => {
  const clock = new ManualClock();
  const credentials = { Login: "password" };
  const client = new Client("ws://example.invalid/", {
    WebSocket: ScriptedSocket, clock, credentials, probe: false, random: () => 0,
  });
  assert.deepEqual(ScriptedSocket.last.protocols, ["lexicons", "lexicons.Login.cGFzc3dvcmQ"]);
  ScriptedSocket.last.open();
  delete credentials.Login;
  credentials.Session = "token"; // what a page does with the token its server sent
  const waiting = next((listener) => client.onState(listener), (state) => state === "waiting");
  ScriptedSocket.last.drop();
  await waiting;
  clock.fire();
  assert.deepEqual(ScriptedSocket.last.protocols, ["lexicons", "lexicons.Session.dG9rZW4"]);
  client.close();
});
