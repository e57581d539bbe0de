// The client against real lexicons servers: calls, errors, timeouts, messages, channels,
// recovery across a restart, refused credentials vs an unreachable server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  Client, ClosedError, DisconnectedError, RefusedError, SignalError, TimeoutError,
} from "../../../src/lexicons/client_js/lexicons.js";
import { Inbox, WebSocket, freePort, next, startServer } from "./servers.js";

const FAST = { initial: 20, maximum: 100 };
const connect = (url, options = {}) =>
  new Client(url, { WebSocket, credentials: { Token: "ok" }, reconnect: FAST, ...options });
const states = (client) => (listener) => client.onState(listener);

describe("one server", () => {
  let server;
  const clients = [];
  const open = async (options) => {
    const client = connect(server.url, options);
    clients.push(client);
    await client.ready();
    return client;
  };
  before(async () => (server = await startServer()));
  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
  });

  test("a call resolves with its reply; credentials travel in the subprotocol offer", async () => {
    const client = await open();
    assert.equal(await client.call("add", { a: 1, b: 2 }), 3);
    assert.equal(await client.call("whoami", {}), "ok");
    assert.equal(client.protocol, "lexicons");
    assert.equal(client.url.includes("ok"), false);
  });

  test("replies reach their own call when several are in flight", async () => {
    const client = await open();
    const sums = await Promise.all([1, 2, 3, 4, 5].map((a) => client.call("add", { a, b: 10 })));
    assert.deepEqual(sums, [11, 12, 13, 14, 15]);
  });

  test("error frames reject with a typed SignalError", async () => {
    const client = await open();
    await assert.rejects(client.call("fail", { code: "teapot" }), (error) => {
      assert.ok(error instanceof SignalError);
      assert.equal(error.code, "teapot");
      assert.equal(error.signal, "fail");
      return true;
    });
    await assert.rejects(client.call("nope", {}), { code: "unknown_signal" });
    await assert.rejects(client.call("add", { a: "x", b: 2 }), { code: "invalid_payload" });
    assert.equal(await client.call("add", { a: 2, b: 2 }), 4); // the connection carries on
  });

  test("a call without a reply rejects with TimeoutError", async () => {
    const client = await open();
    await assert.rejects(client.call("hang", {}, { timeout: 30 }), TimeoutError);
  });

  test("on() receives direct messages, and its undo stops them", async () => {
    const client = await open();
    const inbox = new Inbox();
    const undo = client.on("told", inbox.push);
    client.send("tell", { text: "psst" });
    assert.deepEqual(await inbox.take(), { text: "psst" });
    undo();
    client.send("tell", { text: "again" });
    assert.equal(await client.call("add", { a: 0, b: 0 }), 0); // ordered after the message
    assert.equal(inbox.items.length, 0);
  });

  test("subscribe: broadcasts with offsets, presence, refusals", async () => {
    const ann = await open();
    const bob = await open({ credentials: { Token: "ok2" } });
    const joins = new Inbox();
    const said = new Inbox();
    const room = ann.subscribe("room:1", { onJoin: joins.push, onMessage: (...args) => said.push(args) });
    const answer = await room.ready;
    assert.equal(answer.channel, "room:1");
    assert.equal(answer.recovered, false);
    const own = await joins.take(); // the joiner hears its own $join
    assert.deepEqual(own.info, { token: "ok" });
    assert.equal(room.members.get(own.pk)?.token, "ok");
    await bob.subscribe("room:1").ready;
    assert.deepEqual((await joins.take()).info, { token: "ok2" });
    const members = await room.presence();
    assert.deepEqual(members.map((m) => m.info.token).sort(), ["ok", "ok2"]);
    assert.equal(room.members.size, 2);
    bob.send("say", { room: "room:1", text: "hi" });
    const [signal, payload, offset] = await said.take();
    assert.equal(signal, "say");
    assert.deepEqual(payload, { room: "room:1", text: "hi" });
    assert.equal(offset, answer.offset + 1);
    assert.equal(room.offset, offset);
    const left = next((listener) => ann.on("$leave", listener));
    bob.close();
    assert.deepEqual((await left).info, { token: "ok2" });
    assert.equal(room.members.size, 1);

    const errors = new Inbox();
    const refused = ann.subscribe("closed", { onError: errors.push });
    await assert.rejects(refused.ready, { code: "forbidden" });
    assert.equal((await errors.take()).code, "forbidden");
    await assert.rejects(ann.subscribe("nowhere").ready, { code: "unknown_channel" });
  });

  test("a reader that lagged gets $lagged and recovers every publication, once, in order", async () => {
    const sockets = [];
    class Watched extends WebSocket {
      constructor(...args) {
        super(...args);
        sockets.push(this);
      }
    }
    const slow = await open({ WebSocket: Watched });
    const fast = await open();
    const COUNT = 1000;
    const slowSeen = [];
    const lagged = new Inbox();
    const done = new Inbox();
    slow.subscribe("feed", {
      onMessage: (signal, payload, offset) => {
        slowSeen.push(payload.n);
        if (payload.n === COUNT) done.push(offset);
      },
      onLagged: lagged.push,
    });
    const fastDone = new Inbox();
    const start = await fast.subscribe("feed", {
      onMessage: (signal, payload) => payload.n === COUNT && fastDone.push(payload.n),
    }).ready;
    sockets[0].pause(); // stops reading: its TCP window fills, the server queues, then drops
    assert.equal(await fast.call("flood", { count: COUNT, size: 16384 }), COUNT);
    await fastDone.take(); // the fast reader got all of them, without waiting for the slow one
    sockets[0].resume();
    assert.ok((await lagged.take()) > 0);
    await done.take();
    assert.deepEqual(slowSeen, Array.from({ length: COUNT }, (_, i) => i + 1));
    assert.equal(start.offset, 0);
  });

  test("unsubscribe leaves the channel", async () => {
    const client = await open();
    const room = client.subscribe("plain:1");
    await room.ready;
    await room.unsubscribe();
    const again = client.subscribe("plain:1");
    assert.notEqual(again, room);
    await again.ready;
  });

  test("encoding msgpack: MessagePack when the server selects it, JSON otherwise", async () => {
    // pytest says whether this server speaks MessagePack (it asks it with a handshake).
    const expected = process.env.LEXICONS_TEST_MSGPACK === "1" ? "lexicons.msgpack" : "lexicons";
    const packed = await open({ encoding: "msgpack" });
    const plain = await open({ credentials: { Token: "ok2" } });
    assert.equal(packed.protocol, expected);
    assert.equal(await packed.call("add", { a: 2 ** 40, b: 2 }), 2 ** 40 + 2);
    await assert.rejects(packed.call("fail", { code: "teapot" }), { code: "teapot", signal: "fail" });
    const told = next((listener) => packed.on("told", listener));
    packed.send("tell", { text: "é\u0000😀" });
    assert.deepEqual(await told, { text: "é\u0000😀" });
    const heard = new Inbox();
    const room = packed.subscribe("room:mp", { onMessage: (signal, payload, offset) => heard.push([signal, payload, offset]) });
    const answer = await room.ready;
    plain.send("say", { room: "room:mp", text: "from a JSON client" });
    assert.deepEqual(await heard.take(), ["say", { room: "room:mp", text: "from a JSON client" }, answer.offset + 1]);
  });

  test("refused credentials stop the client with RefusedError (403)", async () => {
    const client = connect(server.url, { credentials: { Token: "wrong" } });
    clients.push(client);
    const pending = client.call("add", { a: 1, b: 1 });
    await assert.rejects(client.ready(), (error) => error instanceof RefusedError && error.status === 403);
    assert.equal(client.state, "refused");
    await assert.rejects(pending, RefusedError);
    await assert.rejects(client.call("add", { a: 1, b: 1 }), RefusedError);
  });

  test("no credentials at all is a refusal too", async () => {
    const client = new Client(server.url, { WebSocket, reconnect: FAST });
    clients.push(client);
    await assert.rejects(client.ready(), RefusedError);
  });

  test("close() rejects what waits and stops for good", async () => {
    const client = await open();
    const pending = client.call("hang", {});
    client.close();
    await assert.rejects(pending, ClosedError);
    assert.equal(client.state, "closed");
    await assert.rejects(client.ready(), ClosedError);
  });
});

describe("outages", () => {
  test("an unreachable server is retried until it answers; calls made meanwhile go out then", async () => {
    const port = await freePort();
    const client = connect(`ws://127.0.0.1:${port}/`);
    await next(states(client), (state) => state === "waiting");
    await next(states(client), (state) => state === "waiting"); // tried again, still not refused
    const early = client.call("add", { a: 1, b: 1 });
    const server = await startServer({ port });
    try {
      await client.ready();
      assert.equal(await early, 2);
      assert.equal(client.reconnections, 0);
    } finally {
      client.close();
      await server.stop();
    }
  });

  test("a restart: sent calls reject with DisconnectedError, channels resume (new epoch)", async () => {
    let server = await startServer();
    const client = connect(server.url);
    const other = connect(server.url);
    const answers = new Inbox();
    const said = new Inbox();
    try {
      client.subscribe("room:r", { onSubscribed: answers.push, onMessage: (s, p) => said.push(p.text) });
      const first = await answers.take();
      await other.ready();
      other.send("say", { room: "room:r", text: "one" });
      assert.equal(await said.take(), "one");
      const hanging = assert.rejects(client.call("hang", {}), DisconnectedError);
      await server.stop();
      await hanging;
      server = await startServer({ port: server.port });
      const again = await answers.take(); // history was in memory: lost with the process
      assert.equal(again.recovered, false);
      assert.notEqual(again.epoch, first.epoch);
      assert.equal(client.reconnections, 1);
      await other.ready();
      other.send("say", { room: "room:r", text: "two" });
      assert.equal(await said.take(), "two");
    } finally {
      client.close();
      other.close();
      await server.stop();
    }
  });
});
