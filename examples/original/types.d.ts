// TypeScript declarations of original, written by `lexicons types`: do not edit.

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

export interface CreateChatPayload {
  body?: unknown;
  [key: string]: unknown;
}

export interface LoginPayload {
  username?: unknown;
  password?: unknown;
  [key: string]: unknown;
}

export interface RegisterPayload {
  username?: unknown;
  password?: unknown;
  [key: string]: unknown;
}

/** The signals, messages and joinable channels, for `new Client<App>(url)`. */
export type App = {
  signals: {
    CreateChat: {
      payload: CreateChatPayload;
      reply: unknown;
    };
    GetChatList: {
      payload: { [key: string]: unknown };
      reply: unknown;
    };
  };
  messages: {
    CreateChat: unknown;
    GetChatList: unknown;
    [message: string]: unknown;
  };
  channels: {};
};
