// Real lexicons servers for the client's tests: `python -m lexicons run` on 127.0.0.1,
// each stopped by its own PID. LEXICONS_PYTHON names the interpreter (pytest passes its own).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const PYTHON = process.env.LEXICONS_PYTHON || "python3";
export const REDIS = process.env.LEXICONS_TEST_REDIS || "";

/** Start tests/apps/js_app.py; resolves once it serves, with its URL and a stop(). */
export async function startServer({ port = 0, args = [] } = {}) {
  const child = spawn(
    PYTHON,
    ["-m", "lexicons", "run", "tests/apps/js_app.py", "--host", "127.0.0.1", "--port", String(port), "--no-debug", ...args],
    { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] },
  );
  // However the test run ends, this server ends with it (by its own PID).
  const reap = () => child.kill();
  process.once("exit", reap);
  child.once("exit", () => process.removeListener("exit", reap));
  let log = "";
  const url = await new Promise((resolve, reject) => {
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const found = /serving on (ws:\/\/\S+)/.exec(log);
      if (found) resolve(found[1]);
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code}) before serving:\n${log}`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

/** A port nothing listens on (bound, then released). */
export async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/** Resolves with the next value `subscribe(listener)` reports that passes `test`. */
export function next(subscribe, test = () => true) {
  return new Promise((resolve) => {
    const stop = subscribe((...args) => {
      if (test(...args)) {
        stop();
        resolve(args[0]);
      }
    });
  });
}

/** A queue of values pushed by callbacks, taken in order by awaiting `take()`. */
export class Inbox {
  items = [];
  waiting = [];
  push = (value) => {
    const waiter = this.waiting.shift();
    if (waiter) waiter(value);
    else this.items.push(value);
  };
  take() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

export { WebSocket };
