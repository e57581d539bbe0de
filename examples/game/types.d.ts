// TypeScript declarations of game, written by `lexicons types`: do not edit.

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

/** The ``move`` payload; msgspec refuses anything else before ``move`` runs. */
export interface Move {
  game: string;
  cell: number;
}

/** The signals, messages and joinable channels, for `new Client<App>(url)`. */
export type App = {
  signals: {
    move: {
      payload: Move;
      reply: null;
    };
    /** Queue for a game; during a game, the game's state. */
    play: {
      payload: Record<string, never>;
      reply: { [key: string]: unknown };
    };
  };
  messages: {
    move: unknown;
    play: { [key: string]: unknown };
    [message: string]: unknown;
  };
  channels: {};
};
