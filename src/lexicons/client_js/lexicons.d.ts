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
/** The shape `lexicons types app.py` generates for an app. */
export interface AppTypes {
    signals: {
        [signal: string]: {
            payload: unknown;
            reply: unknown;
        };
    };
    /** What `on(signal, ...)` receives: direct messages and broadcasts. */
    messages: {
        [signal: string]: unknown;
    };
    /** The channel names (value: the channel's broadcast payloads, or unknown). */
    channels: {
        [channel: string]: unknown;
    };
}
/** Any app: every signal, message and channel name is accepted, untyped. */
export type AnyApp = {
    signals: {
        [s: string]: {
            payload: any;
            reply: any;
        };
    };
    messages: {
        [s: string]: any;
    };
    channels: {
        [c: string]: any;
    };
};
/** The base of every error the client rejects a promise with; `code` is stable. */
export declare class LexiconsError extends Error {
    readonly code: string;
    constructor(code: string, message: string);
}
/** The server answered with an error frame (`{"Errors": [...]}`): its code and message. */
export declare class SignalError extends LexiconsError {
    readonly signal: string | null;
    constructor(code: string, message: string, signal: string | null);
}
/** No reply came within the call's timeout (the server may still have run it). */
export declare class TimeoutError extends LexiconsError {
    constructor(signal: string, ms: number);
}
/** The connection dropped after the request was sent: the server may have run it. */
export declare class DisconnectedError extends LexiconsError {
    constructor(signal: string);
}
/** The server refused the credentials (HTTP 403): the client stopped reconnecting. */
export declare class RefusedError extends LexiconsError {
    readonly status: number;
    constructor(status: number, reason: string);
}
/** The client was closed, or gave up reconnecting, before the request could be answered. */
export declare class ClosedError extends LexiconsError {
    constructor(why: string);
}
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
export declare function backoffDelay(attempt: number, backoff: Backoff, random: () => number): number;
/** The deepest nesting `decodeMsgpack` accepts: hostile input cannot exhaust the stack. */
export declare const MAX_DEPTH = 256;
/** Encode nil, booleans, numbers, strings, bytes, arrays and plain objects as MessagePack. */
export declare function encodeMsgpack(value: unknown): Uint8Array;
/**
 * Decode one MessagePack value; the whole input must be that value. Integers beyond
 * 2**53 become BigInt; bin becomes Uint8Array; ext types, truncated input, map keys that
 * are not strings or numbers, and nesting past MAX_DEPTH throw.
 */
export declare function decodeMsgpack(data: Uint8Array | ArrayBuffer): unknown;
/** The plain subprotocol the server selects next to the credentials it reads. */
export declare const SUBPROTOCOL = "lexicons";
/** The subprotocol of MessagePack binary frames. */
export declare const MSGPACK_SUBPROTOCOL = "lexicons.msgpack";
/**
 * The subprotocol token carrying header `name` with `value`:
 * `lexicons.<name>.<base64url of the UTF-8 value>` (an object is sent as JSON).
 */
export declare function credentialProtocol(name: string, value: string | object): string;
/** What the client needs of a WebSocket: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
    readonly protocol: string;
    binaryType: string;
    onopen: ((event: unknown) => void) | null;
    onclose: ((event: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
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
    headers: Record<string, string>;
    credentials: "include";
    cache: "no-store";
}) => Promise<{
    status: number;
    text(): Promise<string>;
}>;
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
    pause?: {
        offline?: boolean;
        hidden?: boolean;
    };
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
/**
 * A lexicons connection that survives the network: calls, messages, channels.
 *
 * It connects at once and keeps connecting; `ready()` resolves when it is open.
 */
export declare class Client<A extends AppTypes = AnyApp> {
    readonly url: string;
    /** See {@link State}. */
    state: State;
    /** The subprotocol the server selected on the current connection. */
    protocol: string;
    /** How many times a dropped connection was re-established. */
    reconnections: number;
    /** Why the client stopped, once `state` is refused or closed. */
    error: LexiconsError | null;
    private readonly options;
    private readonly clock;
    private readonly WebSocket;
    private socket;
    private binary;
    private attempt;
    private everOpened;
    private refs;
    private timer;
    private steady;
    private readonly pending;
    private readonly queue;
    private readonly handlers;
    private readonly stateListeners;
    private readonly subscriptions;
    private readonly pageChanged;
    constructor(url: string, options?: ClientOptions);
    /**
     * Send `signal` with `payload` and resolve with the payload of its reply. Rejects with
     * SignalError for an error frame, TimeoutError after `timeout` ms (waiting for a
     * connection included), DisconnectedError when the connection drops after sending,
     * RefusedError/ClosedError when the client stops. A signal that broadcasts sends no
     * reply: `send` it instead and listen with `on`.
     */
    call<S extends keyof A["signals"] & string>(signal: S, payload: A["signals"][S]["payload"], options?: {
        timeout?: number;
    }): Promise<A["signals"][S]["reply"]>;
    /** Send `signal` without waiting for an answer; held until the connection is open. */
    send<S extends keyof A["signals"] & string>(signal: S, payload: A["signals"][S]["payload"]): void;
    /** Call `handler` with each `signal` message (direct or broadcast); returns the undo. */
    on<S extends keyof A["messages"] & string>(signal: S, handler: (payload: A["messages"][S], frame: Json) => void): () => void;
    /** Call `listener` with each new state; returns the undo. */
    onState(listener: (state: State) => void): () => void;
    /**
     * Join `channel` and stay in it: after every reconnection the client subscribes
     * again from the last offset it received, and the server sends what was missed.
     * Subscribing again to a channel returns the same Subscription, with its first handlers.
     */
    subscribe<C extends keyof A["channels"] & string>(channel: C, handlers?: SubscribeHandlers): Subscription;
    /** Resolves once the connection is open; rejects when the client stops for good. */
    ready(): Promise<void>;
    /** Close the connection and stop reconnecting; what waits for a reply is rejected. */
    close(): void;
    private offer;
    private open;
    private opened;
    private settled;
    private dropped;
    /** The handshake failed: ask the probe whether the credentials were refused. */
    private failed;
    /** A RefusedError when the server answers the probe 403, else null (try again). */
    private probe;
    private retry;
    private finish;
    private setState;
    private watchPage;
    private paused;
    private followPage;
    private transmit;
    private unqueue;
    private write;
    private frame;
    private answer;
    /** A message that answers no call: to the channel's subscription, then to `on` handlers. */
    private deliver;
    private framework;
}
/** One channel a Client stays subscribed to, from where it stopped, across reconnections. */
export declare class Subscription {
    private readonly client;
    private readonly handlers;
    readonly channel: string;
    /** The epoch of the last answer ("" on a channel without history). */
    epoch: string;
    /** The offset of the last publication received (or of the answer, on joining). */
    offset: number;
    /** The members of a presence channel: pk to info, kept by `$join`/`$leave`/`presence()`. */
    readonly members: Map<string, unknown>;
    /** Resolves with the first answer; rejects when the subscription is refused. */
    readonly ready: Promise<SubscribeAnswer>;
    private active;
    private settle;
    constructor(client: Client<AppTypes>, channel: string, handlers: SubscribeHandlers);
    private answered;
    /** The members of the channel (`$presence`), which also refreshes `members`. */
    presence(): Promise<Member[]>;
    /** Leave the channel: it is not joined again after a reconnection. */
    unsubscribe(): Promise<void>;
}
export {};
