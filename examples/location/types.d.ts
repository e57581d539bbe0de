// TypeScript declarations of location, written by `lexicons types`: do not edit.

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

export interface Position {
  id: string;
  lat: number;
  lon: number;
  area: string;
  at: number;
}

export interface movePayload {
  lat: number;
  lon: number;
}

export interface unwatchPayload {
  area: string;
}

export interface watchPayload {
  lat: number;
  lon: number;
}

/** The signals, messages and joinable channels, for `new Client<App>(url)`. */
export type App = {
  signals: {
    /** Record a position and tell the watchers of its area, and of the one it left. */
    move: {
      payload: movePayload;
      reply: null;
    };
    unwatch: {
      payload: unwatchPayload;
      reply: { [key: string]: string };
    };
    /** Subscribe to the area around a point; the reply is who is there now. */
    watch: {
      payload: watchPayload;
      reply: { [key: string]: unknown };
    };
  };
  messages: {
    move: Position;
    unwatch: { [key: string]: string };
    watch: { [key: string]: unknown };
    [message: string]: unknown;
  };
  channels: {};
};
