/**
 * lexicons-client: the browser and Node client of lexicons WebSocket servers.
 *
 *     import { Client } from "/lexicons.js";            // every lexicons server serves it
 *     const client = new Client("ws://localhost:5000/", { credentials: { Token: token } });
 *     const reply = await client.call("join", { room: "lobby" });
 *     client.on("say", (message) => show(message));
 *     client.subscribe("room:lobby", { onSubscribed: (answer) => answer.recovered || reload() });
 *
 * Credentials travel in the subprotocol offer (`lexicons.<Name>.<base64url>`), never in
 * the URL. The client reconnects forever with exponential backoff and full jitter, joins
 * its channels again from the last offset it saw, and stops only when the server refuses
 * the credentials (HTTP 403, learnt from the `/lexicons.attempt` probe, since a browser's
 * WebSocket cannot see the status of a refused handshake).
 *
 * One file on purpose: it is built into the single ES module `GET /lexicons.js` serves.
 */

// --- the typed contract with `lexicons types` -------------------------------------------

/** The shape `lexicons types app.py` generates for an app. */
export interface AppTypes {
  signals: { [signal: string]: { payload: unknown; reply: unknown } };
  /** What `on(signal, ...)` receives: direct messages and broadcasts. */
  messages: { [signal: string]: unknown };
  /** The channel names (value: the channel's broadcast payloads, or unknown). */
  channels: { [channel: string]: unknown };
}

/** Any app: every signal, message and channel name is accepted, untyped. */
export type AnyApp = {
  signals: { [s: string]: { payload: any; reply: any } };
  messages: { [s: string]: any };
  channels: { [c: string]: any };
};

// --- errors -------------------------------------------------------------------------------

/** The base of every error the client rejects a promise with; `code` is stable. */
export class LexiconsError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The server answered with an error frame (`{"Errors": [...]}`): its code and message. */
export class SignalError extends LexiconsError {
  readonly signal: string | null;
  constructor(code: string, message: string, signal: string | null) {
    super(code, message);
    this.signal = signal;
  }
}

/** No reply came within the call's timeout (the server may still have run it). */
export class TimeoutError extends LexiconsError {
  constructor(signal: string, ms: number) {
    super("timeout", `no reply to ${signal} within ${ms} ms`);
  }
}

/** The connection dropped after the request was sent: the server may have run it. */
export class DisconnectedError extends LexiconsError {
  constructor(signal: string) {
    super("disconnected", `the connection dropped before the reply to ${signal}`);
  }
}

/** The server refused the credentials (HTTP 403): the client stopped reconnecting. */
export class RefusedError extends LexiconsError {
  readonly status: number;
  constructor(status: number, reason: string) {
    super("refused", `the server refused the connection (${status})${reason ? ": " + reason : ""}`);
    this.status = status;
  }
}

/** The client was closed, or gave up reconnecting, before the request could be answered. */
export class ClosedError extends LexiconsError {
  constructor(why: string) {
    super("closed", why);
  }
}

// --- reconnection: exponential backoff with full jitter ---------------------------------

/** How long to wait between connection attempts. */
export interface Backoff {
  /** Milliseconds: the ceiling of the first wait (default 500). */
  initial?: number;
  /** Milliseconds: the largest ceiling (default 30000). */
  maximum?: number;
  /** The ceiling grows by this factor per failed attempt (default 2). */
  factor?: number;
  /** Attempts in a row before giving up; `null` (the default) retries forever. */
  attempts?: number | null;
}

/**
 * The wait before attempt `attempt` (from 0): a uniform draw in
 * `[0, min(maximum, initial * factor ** attempt)]`. The jitter spreads out the clients
 * of a restarted server, which would otherwise all come back in the same instant.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number): number {
  const initial = backoff.initial ?? 500;
  const maximum = backoff.maximum ?? 30000;
  const factor = backoff.factor ?? 2;
  const ceiling = Math.min(maximum, initial * Math.pow(factor, attempt));
  return random() * ceiling;
}

// --- MessagePack: the subset lexicons speaks ---------------------------------------------

/** The deepest nesting `decodeMsgpack` accepts: hostile input cannot exhaust the stack. */
export const MAX_DEPTH = 256;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Encode nil, booleans, numbers, strings, bytes, arrays and plain objects as MessagePack. */
export function encodeMsgpack(value: unknown): Uint8Array {
  const out = new Writer();
  writeValue(out, value, 0);
  return out.bytes();
}

class Writer {
  private buffer = new Uint8Array(64);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  private room(size: number): number {
    const at = this.length;
    if (at + size > this.buffer.length) {
      const grown = new Uint8Array(Math.max(this.buffer.length * 2, at + size));
      grown.set(this.buffer);
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    this.length += size;
    return at;
  }
  // The room is made before the view is read: growing replaces the buffer and the view.
  u8(value: number): void {
    const at = this.room(1);
    this.view.setUint8(at, value);
  }
  u16(value: number): void {
    const at = this.room(2);
    this.view.setUint16(at, value);
  }
  u32(value: number): void {
    const at = this.room(4);
    this.view.setUint32(at, value);
  }
  i8(value: number): void {
    const at = this.room(1);
    this.view.setInt8(at, value);
  }
  i16(value: number): void {
    const at = this.room(2);
    this.view.setInt16(at, value);
  }
  i32(value: number): void {
    const at = this.room(4);
    this.view.setInt32(at, value);
  }
  i64(value: bigint): void {
    const at = this.room(8);
    this.view.setBigInt64(at, value);
  }
  u64(value: bigint): void {
    const at = this.room(8);
    this.view.setBigUint64(at, value);
  }
  f64(value: number): void {
    const at = this.room(8);
    this.view.setFloat64(at, value);
  }
  raw(data: Uint8Array): void {
    const at = this.room(data.length);
    this.buffer.set(data, at);
  }
  bytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function writeValue(out: Writer, value: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new RangeError("msgpack: nested too deeply");
  if (value === null || value === undefined) out.u8(0xc0);
  else if (value === false) out.u8(0xc2);
  else if (value === true) out.u8(0xc3);
  else if (typeof value === "number") writeNumber(out, value);
  else if (typeof value === "bigint") writeBigInt(out, value);
  else if (typeof value === "string") writeString(out, value);
  else if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
    writeBinary(out, value instanceof Uint8Array ? value : new Uint8Array(value));
  } else if (Array.isArray(value)) {
    writeHead(out, value.length, 0x90, 0xdc);
    for (const item of value) writeValue(out, item, depth + 1);
  } else if (typeof value === "object") {
    const entries = Object.entries(value as object).filter(([, item]) => item !== undefined);
    writeHead(out, entries.length, 0x80, 0xde);
    for (const [key, item] of entries) {
      writeString(out, key);
      writeValue(out, item, depth + 1);
    }
  } else {
    throw new TypeError(`msgpack: cannot encode a ${typeof value}`);
  }
}

function writeNumber(out: Writer, value: number): void {
  if (!Number.isSafeInteger(value)) {
    out.u8(0xcb);
    out.f64(value);
  } else if (value >= 0) {
    if (value < 0x80) out.u8(value);
    else if (value < 0x100) (out.u8(0xcc), out.u8(value));
    else if (value < 0x10000) (out.u8(0xcd), out.u16(value));
    else if (value < 0x100000000) (out.u8(0xce), out.u32(value));
    else (out.u8(0xcf), out.u64(BigInt(value)));
  } else if (value >= -32) out.i8(value);
  else if (value >= -0x80) (out.u8(0xd0), out.i8(value));
  else if (value >= -0x8000) (out.u8(0xd1), out.i16(value));
  else if (value >= -0x80000000) (out.u8(0xd2), out.i32(value));
  else (out.u8(0xd3), out.i64(BigInt(value)));
}

function writeBigInt(out: Writer, value: bigint): void {
  if (value >= BigInt(0) && value < BigInt(2) ** BigInt(64)) (out.u8(0xcf), out.u64(value));
  else if (value < BigInt(0) && value >= -(BigInt(2) ** BigInt(63))) (out.u8(0xd3), out.i64(value));
  else throw new RangeError("msgpack: integer out of the 64-bit range");
}

function writeString(out: Writer, value: string): void {
  const data = utf8Encoder.encode(value);
  const n = data.length;
  if (n < 32) out.u8(0xa0 | n);
  else if (n < 0x100) (out.u8(0xd9), out.u8(n));
  else if (n < 0x10000) (out.u8(0xda), out.u16(n));
  else (out.u8(0xdb), out.u32(n));
  out.raw(data);
}

function writeBinary(out: Writer, data: Uint8Array): void {
  const n = data.length;
  if (n < 0x100) (out.u8(0xc4), out.u8(n));
  else if (n < 0x10000) (out.u8(0xc5), out.u16(n));
  else (out.u8(0xc6), out.u32(n));
  out.raw(data);
}

/** Array and map heads: the fix form up to 15 items, then 16 or 32 bits (`wide` + 1). */
function writeHead(out: Writer, n: number, fix: number, wide: number): void {
  if (n < 16) out.u8(fix | n);
  else if (n < 0x10000) (out.u8(wide), out.u16(n));
  else (out.u8(wide + 1), out.u32(n));
}

/**
 * Decode one MessagePack value; the whole input must be that value. Integers beyond
 * 2**53 become BigInt; bin becomes Uint8Array; ext types, truncated input, map keys that
 * are not strings or numbers, and nesting past MAX_DEPTH throw.
 */
export function decodeMsgpack(data: Uint8Array | ArrayBuffer): unknown {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const reader = new Reader(bytes);
  const value = reader.value(0);
  if (reader.at !== bytes.length) throw new RangeError("msgpack: extra bytes after the value");
  return value;
}

class Reader {
  at = 0;
  private view: DataView;
  constructor(private data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
  private take(size: number): number {
    const at = this.at;
    if (at + size > this.data.length) throw new RangeError("msgpack: truncated input");
    this.at += size;
    return at;
  }
  private slice(size: number): Uint8Array {
    const at = this.take(size);
    return this.data.subarray(at, at + size);
  }
  private int64(signed: boolean): number | bigint {
    const at = this.take(8);
    const value = signed ? this.view.getBigInt64(at) : this.view.getBigUint64(at);
    const small = value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER);
    return small ? Number(value) : value;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new RangeError("msgpack: nested too deeply");
    const view = this.view;
    const type = view.getUint8(this.take(1));
    if (type < 0x80) return type;
    if (type >= 0xe0) return type - 0x100;
    if (type < 0x90) return this.map(type & 0x0f, depth);
    if (type < 0xa0) return this.array(type & 0x0f, depth);
    if (type < 0xc0) return utf8Decoder.decode(this.slice(type & 0x1f));
    switch (type) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.slice(view.getUint8(this.take(1))).slice();
      case 0xc5: return this.slice(view.getUint16(this.take(2))).slice();
      case 0xc6: return this.slice(view.getUint32(this.take(4))).slice();
      case 0xca: return view.getFloat32(this.take(4));
      case 0xcb: return view.getFloat64(this.take(8));
      case 0xcc: return view.getUint8(this.take(1));
      case 0xcd: return view.getUint16(this.take(2));
      case 0xce: return view.getUint32(this.take(4));
      case 0xcf: return this.int64(false);
      case 0xd0: return view.getInt8(this.take(1));
      case 0xd1: return view.getInt16(this.take(2));
      case 0xd2: return view.getInt32(this.take(4));
      case 0xd3: return this.int64(true);
      case 0xd9: return utf8Decoder.decode(this.slice(view.getUint8(this.take(1))));
      case 0xda: return utf8Decoder.decode(this.slice(view.getUint16(this.take(2))));
      case 0xdb: return utf8Decoder.decode(this.slice(view.getUint32(this.take(4))));
      case 0xdc: return this.array(view.getUint16(this.take(2)), depth);
      case 0xdd: return this.array(view.getUint32(this.take(4)), depth);
      case 0xde: return this.map(view.getUint16(this.take(2)), depth);
      case 0xdf: return this.map(view.getUint32(this.take(4)), depth);
      default: throw new TypeError(`msgpack: unsupported type 0x${type.toString(16)}`);
    }
  }
  private array(n: number, depth: number): unknown[] {
    // Every item takes at least a byte: a forged length cannot allocate past the input.
    if (n > this.data.length - this.at) throw new RangeError("msgpack: truncated input");
    const items: unknown[] = [];
    for (let i = 0; i < n; i++) items.push(this.value(depth + 1));
    return items;
  }
  private map(n: number, depth: number): Record<string, unknown> {
    if (n > this.data.length - this.at) throw new RangeError("msgpack: truncated input");
    const result: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== "string" && typeof key !== "number") {
        throw new TypeError("msgpack: a map key must be a string or a number");
      }
      // defineProperty: a "__proto__" key is data, never the object's prototype.
      Object.defineProperty(result, String(key), {
        value: this.value(depth + 1), enumerable: true, writable: true, configurable: true,
      });
    }
    return result;
  }
}

// --- credentials in the subprotocol offer ---------------------------------------------

/** The plain subprotocol the server selects next to the credentials it reads. */
export const SUBPROTOCOL = "lexicons";
/** The subprotocol of MessagePack binary frames. */
export const MSGPACK_SUBPROTOCOL = "lexicons.msgpack";

/**
 * The subprotocol token carrying header `name` with `value`:
 * `lexicons.<name>.<base64url of the UTF-8 value>` (an object is sent as JSON).
 */
export function credentialProtocol(name: string, value: string | object): string {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new TypeError(`a header name must be an HTTP token: ${JSON.stringify(name)}`);
  }
  const text = typeof value === "string" ? value : JSON.stringify(value);
  let binary = "";
  for (const byte of utf8Encoder.encode(text)) binary += String.fromCharCode(byte);
  const encoded = btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${SUBPROTOCOL}.${name}.${encoded}`;
}

// --- the client -------------------------------------------------------------------------

/** What the client needs of a WebSocket: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly protocol: string;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** Timers, injectable so that tests control time (backoff, timeouts) without sleeping. */
export interface Clock {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The HTTP answer of the probe: only its status is read. */
export type Fetch = (url: string, init: {
  headers: Record<string, string>; credentials: "include"; cache: "no-store";
}) => Promise<{ status: number; text(): Promise<string> }>;

export interface ClientOptions {
  /** Handshake credentials by header name, sent in the subprotocol offer. Read again at
   * every attempt: change a value in this object (a password for the session token the
   * server sent, say) and the next reconnection offers the new one. */
  credentials?: Record<string, string | object>;
  /** `"msgpack"` offers `lexicons.msgpack`; JSON is used when the server does not select it. */
  encoding?: "json" | "msgpack";
  /** Milliseconds a call waits for its reply, by default (10000). */
  timeout?: number;
  /** The backoff between attempts, or `false` not to reconnect. */
  reconnect?: Backoff | false;
  /** Stop connecting while the page is offline or hidden (browsers only). */
  pause?: { offline?: boolean; hidden?: boolean };
  /** The URL of the probe that tells a refusal from an outage, or `false` for none. */
  probe?: string | false;
  /** `globalThis.WebSocket` by default; in Node 20, pass the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  /** `globalThis.fetch` by default, for the probe. */
  fetch?: Fetch;
  /** Timers (`globalThis` by default). */
  clock?: Clock;
  /** The jitter's random source in [0, 1) (`Math.random` by default). */
  random?: () => number;
}

/** Where the client is: connecting, open, waiting before the next attempt, paused, or
 * done for good (refused: the credentials were refused; closed: close() or no more tries). */
export type State = "connecting" | "open" | "waiting" | "paused" | "refused" | "closed";

/** The `$subscribe` answer: the channel's position, and whether what was missed follows. */
export interface SubscribeAnswer {
  channel: string;
  epoch: string;
  offset: number;
  recovered: boolean;
}

/** A subscriber of a presence channel. */
export interface Member {
  pk: string;
  info: unknown;
}

export interface SubscribeHandlers {
  /** Each answer, the first and every resubscription; `recovered: false` after one
   * means publications were lost meanwhile: reload the channel's state. */
  onSubscribed?: (answer: SubscribeAnswer) => void;
  /** Each publication of a history channel (they carry the channel's name), once each. */
  onMessage?: (signal: string, payload: unknown, offset: number) => void;
  onJoin?: (member: Member) => void;
  onLeave?: (member: Member) => void;
  /** The member list, fetched after every (re)subscription when `presence` is true. */
  onPresence?: (members: Member[]) => void;
  /** The server dropped `dropped` publications for this slow client; recovery follows. */
  onLagged?: (dropped: number) => void;
  /** The subscription was refused (`forbidden`, `unknown_channel`...) and is over. */
  onError?: (error: LexiconsError) => void;
  /** List the members after every (re)subscription (channels with presence). */
  presence?: boolean;
}

type Json = Record<string, unknown>;

interface Pending {
  signal: string;
  message: Json;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: unknown;
  sent: boolean;
}

/** Milliseconds a connection stays open, without a frame, before it counts as working. */
const STEADY = 5000;

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Attach a no-op handler so that a promise nobody awaits never counts as unhandled. */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/**
 * A lexicons connection that survives the network: calls, messages, channels.
 *
 * It connects at once and keeps connecting; `ready()` resolves when it is open.
 */
export class Client<A extends AppTypes = AnyApp> {
  readonly url: string;
  /** See {@link State}. */
  state: State = "connecting";
  /** The subprotocol the server selected on the current connection. */
  protocol = "";
  /** How many times a dropped connection was re-established. */
  reconnections = 0;
  /** Why the client stopped, once `state` is refused or closed. */
  error: LexiconsError | null = null;

  private readonly options: ClientOptions;
  private readonly clock: Clock;
  private readonly WebSocket: WebSocketConstructor;
  private socket: WebSocketLike | null = null;
  private binary = false;
  private attempt = 0;
  private everOpened = false;
  private refs = 0;
  private timer: unknown = null;
  private steady: unknown = null;
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Pending[] = [];
  private readonly handlers = new Map<string, Set<(payload: never, frame: Json) => void>>();
  private readonly stateListeners = new Set<(state: State) => void>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly pageChanged = (): void => this.followPage();

  constructor(url: string, options: ClientOptions = {}) {
    this.url = url;
    this.options = options;
    this.clock = options.clock ?? {
      setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
      clearTimeout: (handle) => globalThis.clearTimeout(handle as number),
    };
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocket === undefined) {
      throw new TypeError("no WebSocket here: pass one, e.g. new Client(url, { WebSocket }) with the ws package");
    }
    this.WebSocket = WebSocket;
    this.watchPage(true);
    if (this.paused()) this.setState("paused");
    else this.open();
  }

  // --- requests ----------------------------------------------------------------------

  /**
   * Send `signal` with `payload` and resolve with the payload of its reply. Rejects with
   * SignalError for an error frame, TimeoutError after `timeout` ms (waiting for a
   * connection included), DisconnectedError when the connection drops after sending,
   * RefusedError/ClosedError when the client stops. A signal that broadcasts sends no
   * reply: `send` it instead and listen with `on`.
   */
  call<S extends keyof A["signals"] & string>(
    signal: S,
    payload: A["signals"][S]["payload"],
    options: { timeout?: number } = {},
  ): Promise<A["signals"][S]["reply"]> {
    return this.request(signal, payload, options.timeout) as Promise<A["signals"][S]["reply"]>;
  }

  /** Send `signal` without waiting for an answer; held until the connection is open. */
  send<S extends keyof A["signals"] & string>(signal: S, payload: A["signals"][S]["payload"]): void {
    if (this.state === "open") this.write({ [signal]: payload });
    else void quiet(this.request(signal, payload, undefined, false));
  }

  /** Call `handler` with each `signal` message (direct or broadcast); returns the undo. */
  on<S extends keyof A["messages"] & string>(
    signal: S,
    handler: (payload: A["messages"][S], frame: Json) => void,
  ): () => void {
    let set = this.handlers.get(signal);
    if (set === undefined) this.handlers.set(signal, (set = new Set()));
    const added = handler as (payload: never, frame: Json) => void;
    set.add(added);
    return () => void set.delete(added);
  }

  /** Call `listener` with each new state; returns the undo. */
  onState(listener: (state: State) => void): () => void {
    this.stateListeners.add(listener);
    return () => void this.stateListeners.delete(listener);
  }

  /**
   * Join `channel` and stay in it: after every reconnection the client subscribes
   * again from the last offset it received, and the server sends what was missed.
   * Subscribing again to a channel returns the same Subscription, with its first handlers.
   */
  subscribe<C extends keyof A["channels"] & string>(channel: C, handlers: SubscribeHandlers = {}): Subscription {
    const existing = this.subscriptions.get(channel);
    if (existing !== undefined) return existing;
    const subscription = new Subscription(this, channel, handlers);
    this.subscriptions.set(channel, subscription);
    if (this.state === "open") subscription.join();
    return subscription;
  }

  /** Resolves once the connection is open; rejects when the client stops for good. */
  ready(): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    if (this.error !== null) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      const stop = this.onState((state) => {
        if (state === "open") (stop(), resolve());
        else if (this.error !== null) (stop(), reject(this.error));
      });
    });
  }

  /** Close the connection and stop reconnecting; what waits for a reply is rejected. */
  close(): void {
    this.finish("closed", new ClosedError("the client was closed"));
  }

  // --- for Subscription ---------------------------------------------------------------

  /**
   * @internal Send a request; `onReply` sees the reply as its frame is read, before any
   * later frame (a promise would see it after the rest of the socket's data).
   */
  request(
    signal: string,
    payload: unknown,
    timeout?: number,
    answered = true,
    onReply?: (reply: unknown) => void,
  ): Promise<unknown> {
    if (this.error !== null) return Promise.reject(this.error);
    return new Promise((settle, reject) => {
      const message: Json = { [signal]: payload };
      const resolve = (reply: unknown): void => {
        onReply?.(reply);
        settle(reply);
      };
      const entry: Pending = { signal, message, resolve, reject, timer: null, sent: false };
      if (answered) {
        const ref = ++this.refs;
        message.ref = ref;
        this.pending.set(ref, entry);
        const ms = timeout ?? this.options.timeout ?? 10000;
        entry.timer = this.clock.setTimeout(() => {
          this.pending.delete(ref);
          this.unqueue(entry);
          reject(new TimeoutError(signal, ms));
        }, ms);
      }
      if (this.state === "open") this.transmit(entry);
      else this.queue.push(entry);
    });
  }

  /** @internal */
  forget(channel: string, subscription: Subscription): void {
    if (this.subscriptions.get(channel) === subscription) this.subscriptions.delete(channel);
  }

  /** @internal */
  get isOpen(): boolean {
    return this.state === "open";
  }

  // --- the connection's life -----------------------------------------------------------

  private offer(): string[] {
    const offer = this.options.encoding === "msgpack" ? [MSGPACK_SUBPROTOCOL, SUBPROTOCOL] : [SUBPROTOCOL];
    for (const [name, value] of Object.entries(this.options.credentials ?? {})) {
      offer.push(credentialProtocol(name, value));
    }
    return offer;
  }

  private open(): void {
    this.timer = null;
    this.setState("connecting");
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocket(this.url, this.offer());
    } catch (error) {
      // A malformed URL never connects: that is the caller's mistake, not an outage.
      this.finish("closed", new ClosedError(`cannot connect to ${this.url}: ${String(error)}`));
      return;
    }
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    let opened = false;
    socket.onopen = () => {
      opened = true;
      if (this.socket === socket) this.opened(socket);
    };
    socket.onmessage = (event) => {
      if (this.socket === socket) this.frame(event.data);
    };
    socket.onerror = () => undefined; // a close event always follows
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (opened) this.dropped();
      else void this.failed();
    };
  }

  private opened(socket: WebSocketLike): void {
    this.protocol = socket.protocol;
    this.binary = socket.protocol === MSGPACK_SUBPROTOCOL;
    // The backoff starts again once the connection proves itself (a first frame, or
    // STEADY ms open): a server that accepts then closes at once is not hammered.
    this.steady = this.clock.setTimeout(() => this.settled(), STEADY);
    if (this.everOpened) this.reconnections += 1;
    this.everOpened = true;
    this.setState("open");
    // Channels first, then what waited: a reply to a call can never overtake a missed publication.
    for (const subscription of this.subscriptions.values()) subscription.join();
    for (const entry of this.queue.splice(0)) this.transmit(entry);
  }

  private settled(): void {
    this.attempt = 0;
    if (this.steady !== null) this.clock.clearTimeout(this.steady);
    this.steady = null;
  }

  private dropped(): void {
    if (this.steady !== null) this.clock.clearTimeout(this.steady);
    this.steady = null;
    for (const [ref, entry] of this.pending) {
      if (!entry.sent) continue;
      this.pending.delete(ref);
      this.clock.clearTimeout(entry.timer);
      entry.reject(new DisconnectedError(entry.signal));
    }
    this.retry();
  }

  /** The handshake failed: ask the probe whether the credentials were refused. */
  private async failed(): Promise<void> {
    const verdict = await this.probe();
    if (this.state !== "connecting") return; // closed or paused meanwhile
    if (verdict !== null) this.finish("refused", verdict);
    else this.retry();
  }

  /** A RefusedError when the server answers the probe 403, else null (try again). */
  private async probe(): Promise<RefusedError | null> {
    const fetch = this.options.fetch ?? (globalThis as { fetch?: Fetch }).fetch;
    if (this.options.probe === false || fetch === undefined) return null;
    try {
      const answer = await fetch(this.options.probe ?? probeUrl(this.url), {
        headers: { "Lexicons-Protocol": this.offer().join(", ") },
        credentials: "include",
        cache: "no-store",
      });
      if (answer.status !== 403) return null; // admitted now, rate limited, full, no probe...
      return new RefusedError(403, (await answer.text()).trim().slice(0, 200));
    } catch {
      return null; // unreachable (or a cross-origin page its origin setting refuses)
    }
  }

  private retry(): void {
    if (this.state === "refused" || this.state === "closed") return;
    if (this.paused()) return this.setState("paused");
    const backoff = this.options.reconnect;
    if (backoff === false || (backoff?.attempts != null && this.attempt >= backoff.attempts)) {
      return this.finish("closed", new ClosedError(`gave up connecting to ${this.url}`));
    }
    const delay = backoffDelay(this.attempt++, backoff ?? {}, this.options.random ?? Math.random);
    this.setState("waiting");
    this.timer = this.clock.setTimeout(() => this.open(), delay);
  }

  private finish(state: "refused" | "closed", error: LexiconsError): void {
    if (this.state === "refused" || this.state === "closed") return;
    this.error = error;
    this.watchPage(false);
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    if (this.steady !== null) this.clock.clearTimeout(this.steady);
    this.timer = this.steady = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000);
    for (const entry of [...this.pending.values(), ...this.queue]) {
      this.clock.clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
    this.queue.length = 0;
    for (const subscription of this.subscriptions.values()) subscription.stopped(error);
    this.setState(state);
  }

  private setState(state: State): void {
    if (this.state === state) return;
    this.state = state;
    for (const listener of [...this.stateListeners]) listener(state);
  }

  // --- pausing while the page is offline or hidden ------------------------------------

  private watchPage(on: boolean): void {
    const pause = this.options.pause ?? {};
    const change = on ? "addEventListener" : "removeEventListener";
    const scope = globalThis as unknown as Partial<EventTarget>;
    if (pause.offline && scope[change] !== undefined) {
      scope[change]!("online", this.pageChanged);
      scope[change]!("offline", this.pageChanged);
    }
    const document = (globalThis as { document?: Partial<EventTarget> }).document;
    if (pause.hidden && document?.[change] !== undefined) document[change]!("visibilitychange", this.pageChanged);
  }

  private paused(): boolean {
    const pause = this.options.pause ?? {};
    const scope = globalThis as { navigator?: { onLine?: boolean }; document?: { visibilityState?: string } };
    return Boolean(
      (pause.offline && scope.navigator?.onLine === false) ||
        (pause.hidden && scope.document?.visibilityState === "hidden"),
    );
  }

  private followPage(): void {
    if (this.state === "refused" || this.state === "closed") return;
    if (this.paused()) {
      if (this.state === "paused") return;
      if (this.timer !== null) this.clock.clearTimeout(this.timer);
      this.timer = null;
      const socket = this.socket;
      this.socket = null;
      socket?.close(1000, "paused");
      this.setState("paused");
      if (socket !== null) this.dropped();
    } else if (this.state === "paused") {
      this.attempt = 0;
      this.open();
    }
  }

  // --- frames ------------------------------------------------------------------------

  private transmit(entry: Pending): void {
    entry.sent = true;
    if (entry.timer === null) entry.resolve(undefined); // send(): nothing to wait for
    this.write(entry.message);
  }

  private unqueue(entry: Pending): void {
    const index = this.queue.indexOf(entry);
    if (index >= 0) this.queue.splice(index, 1);
  }

  private write(message: Json): void {
    this.socket?.send(this.binary ? encodeMsgpack(message) : JSON.stringify(message));
  }

  private frame(data: unknown): void {
    if (this.steady !== null) this.settled();
    let message: unknown;
    try {
      message = typeof data === "string" ? JSON.parse(data) : decodeMsgpack(data as ArrayBuffer);
    } catch {
      return; // not a frame this client understands: nothing to deliver
    }
    if (!isObject(message)) return;
    const ref = message.ref;
    const entry = typeof ref === "number" ? this.pending.get(ref) : undefined;
    if (entry !== undefined) return this.answer(ref as number, entry, message);
    this.deliver(message);
  }

  private answer(ref: number, entry: Pending, message: Json): void {
    this.pending.delete(ref);
    this.clock.clearTimeout(entry.timer);
    const errors = message.Errors;
    if (Array.isArray(errors) && errors.length > 0 && !(entry.signal in message)) {
      const first = isObject(errors[0]) ? errors[0] : {};
      const signal = typeof first.signal === "string" ? first.signal : null;
      entry.reject(new SignalError(String(first.code ?? "error"), String(first.message ?? ""), signal));
    } else {
      entry.resolve(message[entry.signal]);
    }
  }

  /** A message that answers no call: to the channel's subscription, then to `on` handlers. */
  private deliver(message: Json): void {
    const { channel, offset } = message;
    const published = typeof channel === "string" && typeof offset === "number";
    const subscription = published ? this.subscriptions.get(channel) : undefined;
    if (subscription !== undefined && !subscription.advance(offset as number)) return;
    for (const [key, payload] of Object.entries(message)) {
      if (key === "ref" || (published && (key === "channel" || key === "offset"))) continue;
      if (key.startsWith("$")) this.framework(key, payload);
      else subscription?.published(key, payload, offset as number);
      for (const handler of [...(this.handlers.get(key) ?? [])]) handler(payload as never, message);
    }
  }

  private framework(key: string, payload: unknown): void {
    if (!isObject(payload) || typeof payload.channel !== "string") return;
    const subscription = this.subscriptions.get(payload.channel);
    if (subscription === undefined) return;
    if (key === "$join" || key === "$leave") subscription.member(key === "$join", payload);
    else if (key === "$lagged") subscription.lagged(Number(payload.dropped) || 0);
  }
}

function probeUrl(url: string): string {
  const http = new URL(url);
  http.protocol = http.protocol === "wss:" ? "https:" : "http:";
  const probe = new URL("/lexicons.attempt", http);
  probe.search = http.search; // credentials a caller chose to put in the URL count too
  return probe.href;
}

/** One channel a Client stays subscribed to, from where it stopped, across reconnections. */
export class Subscription {
  readonly channel: string;
  /** The epoch of the last answer ("" on a channel without history). */
  epoch = "";
  /** The offset of the last publication received (or of the answer, on joining). */
  offset = 0;
  /** The members of a presence channel: pk to info, kept by `$join`/`$leave`/`presence()`. */
  readonly members = new Map<string, unknown>();
  /** Resolves with the first answer; rejects when the subscription is refused. */
  readonly ready: Promise<SubscribeAnswer>;
  private active = true;
  private settle: { resolve(answer: SubscribeAnswer): void; reject(error: Error): void } | null = null;

  constructor(
    private readonly client: Client<AppTypes>,
    channel: string,
    private readonly handlers: SubscribeHandlers,
  ) {
    this.channel = channel;
    this.ready = quiet(new Promise((resolve, reject) => (this.settle = { resolve, reject })));
  }

  /** @internal (Re)join from the last position; the client calls it on every open. */
  join(): void {
    const payload: Json = { channel: this.channel };
    if (this.epoch !== "") payload.since = { epoch: this.epoch, offset: this.offset };
    const answered = (answer: unknown): void => this.answered(answer as SubscribeAnswer);
    this.client.request("$subscribe", payload, undefined, true, answered).catch((error: unknown) => {
      // Dropped or timed out: the next connection subscribes again. Refused: over.
      if (error instanceof SignalError) this.stopped(error);
    });
  }

  private answered(answer: SubscribeAnswer): void {
    if (!this.active) return;
    // When recovered, the missed publications follow and move the offset themselves.
    if (!answer.recovered || answer.epoch !== this.epoch) this.offset = answer.offset;
    this.epoch = answer.epoch;
    // Who was there before a drop is unknown now: `$join`s and `presence()` rebuild it.
    this.members.clear();
    this.settle?.resolve(answer);
    this.settle = null;
    this.handlers.onSubscribed?.(answer);
    if (this.handlers.presence) {
      this.presence().then((members) => this.handlers.onPresence?.(members), () => undefined);
    }
  }

  /** @internal Whether a publication at `offset` is new (a replay may repeat one). */
  advance(offset: number): boolean {
    if (this.epoch !== "" && offset <= this.offset) return false;
    this.offset = offset;
    return true;
  }

  /** @internal */
  published(signal: string, payload: unknown, offset: number): void {
    if (this.active) this.handlers.onMessage?.(signal, payload, offset);
  }

  /** @internal */
  member(joined: boolean, payload: Json): void {
    const member = { pk: String(payload.pk), info: payload.info };
    if (joined) this.members.set(member.pk, member.info);
    else this.members.delete(member.pk);
    (joined ? this.handlers.onJoin : this.handlers.onLeave)?.(member);
  }

  /** @internal The server dropped publications: subscribe again from our offset. */
  lagged(dropped: number): void {
    this.handlers.onLagged?.(dropped);
    if (this.active && this.client.isOpen) this.join();
  }

  /** @internal The subscription is over: refused, or the client stopped. */
  stopped(error: LexiconsError): void {
    if (!this.active) return;
    this.active = false;
    this.client.forget(this.channel, this);
    this.settle?.reject(error);
    this.settle = null;
    if (error instanceof SignalError) this.handlers.onError?.(error);
  }

  /** The members of the channel (`$presence`), which also refreshes `members`. */
  async presence(): Promise<Member[]> {
    const listed = (answer: unknown): void => {
      this.members.clear();
      for (const member of (answer as { members: Member[] }).members) this.members.set(member.pk, member.info);
    };
    const answer = await this.client.request("$presence", { channel: this.channel }, undefined, true, listed);
    return (answer as { members: Member[] }).members;
  }

  /** Leave the channel: it is not joined again after a reconnection. */
  async unsubscribe(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    this.client.forget(this.channel, this);
    this.settle?.reject(new ClosedError(`unsubscribed from ${this.channel}`));
    this.settle = null;
    if (this.client.isOpen) await this.client.request("$unsubscribe", { channel: this.channel });
  }
}
