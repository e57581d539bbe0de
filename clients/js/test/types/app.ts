// The typed contract with `lexicons types`: an App alias of the shape it generates makes
// every call, message and channel name checked. `tsc -p test/types` must pass, and each
// line marked as an expected error must be one (an unused marker is itself an error).
import { Client, type AnyApp, type AppTypes, type SubscribeAnswer } from "../../src/lexicons.js";

export interface Say {
  text: string;
}
export interface SayBroadcast {
  from: string;
  text: string;
}

export type App = {
  signals: {
    say: { payload: Say; reply: null };
    add: { payload: { a: number; b: number }; reply: number };
    ping: { payload: Record<string, never>; reply: string };
  };
  messages: { say: SayBroadcast };
  channels: { Public: unknown; "room:1": unknown };
};

const meetsTheContract: AppTypes = {} as App;
const anyApp: AppTypes = {} as AnyApp;

async function typed(client: Client<App>): Promise<void> {
  const sum: number = await client.call("add", { a: 1, b: 2 });
  const nothing: null = await client.call("say", { text: "hi" });
  const pong: string = await client.call("ping", {}, { timeout: 100 });
  // @ts-expect-error: the payload does not match the handler's annotations
  await client.call("say", { text: 1 });
  // @ts-expect-error: a missing field
  await client.call("add", { a: 1 });
  // @ts-expect-error: no such signal
  await client.call("nope", {});
  // @ts-expect-error: a signal without a payload takes none
  await client.call("ping", { x: 1 });
  // @ts-expect-error: the reply of add is a number
  const wrong: string = await client.call("add", { a: 1, b: 2 });
  client.send("say", { text: "hi" });
  client.on("say", (message) => {
    const from: string = message.from;
    void from;
  });
  // @ts-expect-error: not a message of this app
  client.on("other", () => undefined);
  const answer: SubscribeAnswer = await client.subscribe("room:1").ready;
  // @ts-expect-error: not a channel of this app
  client.subscribe("Private");
  void [sum, nothing, pong, wrong, answer];
}

async function untyped(client: Client): Promise<void> {
  const anything: { deep: number } = await client.call("whatever", { any: 1 });
  client.on("anything", (payload: { x: number }) => void payload.x);
  client.subscribe("any:channel");
  void anything;
}

void [meetsTheContract, anyApp, typed, untyped];
