"""An app that prints every lifecycle step, for the subprocess shutdown tests."""

import os
import sys

from lexicons import Server

app = Server(debug=False)


def step(name: str) -> None:
    print(name, flush=True)


@app.on_start
def on_start() -> None:
    step("on_start")


@app.task.startup
def startup_task() -> None:
    step("startup task")
    if os.environ.get("FAIL_STARTUP"):
        raise ConnectionError("database unreachable")


@app.on_connect
def on_connect(ws) -> None:
    step("on_connect")


@app.on_disconnect
def on_disconnect(ws) -> None:
    step("on_disconnect")


@app.task.shutdown
def shutdown_task() -> None:
    step("shutdown task")


@app.on_shutdown
def on_shutdown() -> None:
    step("on_shutdown")


@app.signal
def hello() -> str:
    return "hi"


if __name__ == "__main__":
    app.run(sys.argv[1:])
