// Recovery across processes: two servers share channels and history through Redis; the
// client's server dies, publications go on on the other, the client comes back and
// receives exactly what it missed, in order. LEXICONS_TEST_REDIS names the Redis.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { Client } from "../../../src/lexicons/client_js/lexicons.js";
import { Inbox, REDIS, WebSocket, startServer } from "./servers.js";

const skip = REDIS ? false : "needs Redis: start redis-server and set LEXICONS_TEST_REDIS=redis://127.0.0.1:6379/0";

test("a client recovers what it missed while its server was down", { skip }, async () => {
  const args = ["--broker", REDIS, "--broker-namespace", `js-${randomUUID()}`];
  let near = await startServer({ args });
  const far = await startServer({ args });
  const options = { WebSocket, credentials: { Token: "ok" }, reconnect: { initial: 20, maximum: 100 } };
  const client = new Client(near.url, options);
  const speaker = new Client(far.url, options);
  const answers = new Inbox();
  const heard = new Inbox();
  try {
    const room = client.subscribe("room:z", { onSubscribed: answers.push, onMessage: (s, p, offset) => heard.push([p.text, offset]) });
    const first = await answers.take();
    await speaker.call("add", { a: 0, b: 0 });
    speaker.send("say", { room: "room:z", text: "one" });
    assert.deepEqual(await heard.take(), ["one", first.offset + 1]);
    await near.stop();
    speaker.send("say", { room: "room:z", text: "two" });
    speaker.send("say", { room: "room:z", text: "three" });
    await speaker.call("add", { a: 0, b: 0 }); // both published before the restart
    near = await startServer({ port: near.port, args });
    const again = await answers.take();
    assert.equal(again.recovered, true);
    assert.equal(again.epoch, first.epoch);
    assert.deepEqual(await heard.take(), ["two", first.offset + 2]);
    assert.deepEqual(await heard.take(), ["three", first.offset + 3]);
    speaker.send("say", { room: "room:z", text: "four" });
    assert.deepEqual(await heard.take(), ["four", first.offset + 4]);
    assert.equal(room.offset, first.offset + 4);
    assert.equal(heard.items.length, 0);
  } finally {
    client.close();
    speaker.close();
    await near.stop();
    await far.stop();
  }
});
