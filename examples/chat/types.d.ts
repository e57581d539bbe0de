// TypeScript declarations of chat, written by `lexicons types`: do not edit.

/** The codes of error frames: lexicons' own, or a handler's SignalError code. */
export type ErrorCode =
  | "forbidden"
  | "internal_error"
  | "invalid_frame"
  | "invalid_json"
  | "invalid_payload"
  | "no_presence"
  | "not_subscribed"
  | "rate_limited"
  | "storage_error"
  | "unavailable"
  | "unknown_channel"
  | "unknown_signal"
  | (string & {});

export interface LoginPayload {
  name: string;
  password: string;
}

export interface Message {
  pk?: string;
  room: string;
  author: string;
  text: string;
  sent: string;
}

export interface RegisterPayload {
  name: string;
  password: string;
}

export interface historyPayload {
  room: string;
}

export interface logoutPayload {
  token: string;
}

export interface sayPayload {
  room: string;
  text: string;
}

/** The signals, messages and joinable channels, for `new Client<App>(url)`. */
export type App = {
  signals: {
    /** The room's latest messages, oldest first: what a page shows on entering a room, or after an outage longer than the room's history remembers. */
    history: {
      payload: historyPayload;
      reply: Message[];
    };
    /** Forget a session token, so it cannot log in again. */
    logout: {
      payload: logoutPayload;
      reply: { [key: string]: boolean };
    };
    /** Store a message and broadcast it to the room (the sender receives it too). */
    say: {
      payload: sayPayload;
      reply: null;
    };
  };
  messages: {
    history: Message[];
    logout: { [key: string]: boolean };
    say: Message;
    [message: string]: unknown;
  };
  channels: {
    Lobby: unknown;
    [channel: `room:${string}`]: unknown;
  };
};
