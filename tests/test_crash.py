"""The durable store, proved: every kind of change survives SIGKILL at any moment.

As SQLite tests itself against power loss: hypothesis generates sequences of every
mutation the Database offers (create, update, drop with cascades along references,
get_or_create, load, save, migrate) and sends them, through signals, to a real durable
server process (``tests/apps/crash_app.py``), which it kills with SIGKILL at random
points (between requests, with requests in flight, during a commit) and restarts on
the same data. After every restart the store must equal a plain-Python reference
(``tests/crash_reference.py``) as of some point between the last acknowledged request
and the last one sent: nothing acknowledged lost, nothing unacknowledged half-applied,
references as the reference has them. Changing the models and running ``migrate`` (also
killed at random) is one of the steps.

A few examples run in the normal suite; ``LEXICONS_CRASH_EXAMPLES=200 pytest
tests/test_crash.py`` runs as many as you ask for.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from crash_reference import ANY, CASCADES, ERROR, FIELDS, MODELS, REFS, REQUIRED, Reference
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

APP = Path(__file__).parent / "apps" / "crash_app.py"
ROOT = Path(__file__).parent.parent
EXAMPLES = int(os.environ.get("LEXICONS_CRASH_EXAMPLES", "3"))
TIMEOUT = 20.0

# Each example starts a few server processes: allow about 20 s per example.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(60, 20 * EXAMPLES))]

# --- what to send -------------------------------------------------------------------------

PKS = {model: [f"{model[0].lower()}{i}" for i in range(8)] for model in MODELS}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["", "ann", "bob"]),
    "age": st.integers(0, 3),
    "bio": st.sampled_from(["", "b"]),
    "title": st.sampled_from(["", "t"]),
    "tags": st.lists(st.sampled_from(["x", "y"]), max_size=2),
    "score": st.sampled_from([0.0, 0.5, -1.5, 2]),
    "text": st.sampled_from(["", "hi"]),
}
#: Operations, as often as they should be drawn.
KINDS = ["create"] * 4 + ["update"] * 3 + ["drop"] * 2 + ["load", "save"] * 2
KINDS += ["get_or_create", "migrate"]
#: Values of the wrong type, sent now and then: an error frame, and nothing changes.
WRONG = {"age": "3", "name": 5, "tags": "x", "score": "high", "title": None, "author": 1}


# Every draw below is made whatever the state, with the same bounds: only what a draw
# means depends on the rows that exist. After a kill the state depends on timing, and
# hypothesis replays a test case only if its draws do not.


def some(draw: st.DrawFn, pks: list[str], model: str) -> str:
    """Mostly a pk that exists (when one does), sometimes any pk of the pool."""
    existing = draw(st.integers(0, 9)) > 0
    index = draw(st.integers(0, len(PKS[model]) - 1))
    return pks[index % len(pks)] if pks and existing else PKS[model][index]


@st.composite
def fields(draw: st.DrawFn, ref: Reference, model: str, required: bool) -> dict[str, Any]:
    known = FIELDS[ref.version][model]
    out: dict[str, Any] = {}
    for name, default in known.items():
        given = draw(st.booleans()) or (
            required and default is REQUIRED and draw(st.integers(0, 9)) > 0
        )
        target = REFS[model].get(name)
        if target is None:
            value = draw(VALUES[name])
        else:
            value = some(draw, list(ref.tables[target]), target)
            if default is None and draw(st.booleans()):
                value = None
        if given:
            out[name] = value
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(sorted(n for n in WRONG if n in known)))
        out[name] = WRONG[name]
    return out


@st.composite
def operation(draw: st.DrawFn, ref: Reference) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    model = draw(st.sampled_from(MODELS))
    existing = list(ref.tables[model])
    if kind == "create":
        free = [pk for pk in PKS[model] if pk not in ref.tables[model]]
        fresh, index = draw(st.integers(0, 4)) > 0, draw(st.integers(0, len(PKS[model]) - 1))
        other = some(draw, existing, model)
        pk = free[index % len(free)] if free and fresh else other
        return {"op": kind, "model": model, "fields": {"pk": pk, **draw(fields(ref, model, True))}}
    if kind == "get_or_create":
        pk, same = some(draw, existing, model), draw(st.booleans())
        given = {"pk": pk, **draw(fields(ref, model, True))}
        if pk in ref.tables[model] and same:  # the row as it is: a get
            given = {"pk": pk, **ref.tables[model][pk]}
        return {"op": kind, "model": model, "fields": given}
    pks = [some(draw, existing, model) for _ in range(draw(st.integers(0, 3)))]
    if kind == "update":
        return {"op": kind, "model": model, "pks": pks, "fields": draw(fields(ref, model, False))}
    if kind == "drop":
        cascade = draw(st.sampled_from(CASCADES[model]))
        return {"op": kind, "model": model, "pks": pks, "cascade": cascade}
    return {"op": kind}


@st.composite
def batch(draw: st.DrawFn, ref: Reference) -> list[dict[str, Any]]:
    """Operations drawn against the state each one finds (rows that exist, mostly)."""
    scratch, ops = ref.copy(), []
    for _ in range(draw(st.integers(1, 5))):
        op = draw(operation(scratch))
        scratch.apply(op)
        ops.append(op)
    return ops


def frame(op: dict[str, Any], ref: int) -> str:
    payload = {k: v for k, v in op.items() if k != "op"}
    return json.dumps({op["op"]: payload, "ref": ref})


# --- the server process -------------------------------------------------------------------


class Server:
    """crash_app.py as a process of this test: started, killed and reaped by its PID."""

    def __init__(self, data: Path, version: int) -> None:
        self.popen = subprocess.Popen(
            [
                sys.executable,
                str(APP),
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data",
                str(data),
            ],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "CRASH_MODEL_VERSION": str(version)},
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self._serving = threading.Event()
        # Read stderr to its end, so the server never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._serving.wait(TIMEOUT) or self.url is None:
            self.kill()
            raise AssertionError("the server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line)
            if "serving on " in line and self.url is None:
                self.url = line.split("serving on ", 1)[1].strip()
                self._serving.set()
        self._serving.set()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGTERM)
        assert self._reap() == 0, "".join(self.lines)

    def _reap(self) -> int:
        code = self.popen.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        assert self.popen.stderr is not None
        self.popen.stderr.close()
        return code


def migrate(
    data: Path, version: int, kill_after: float | None
) -> subprocess.CompletedProcess[str] | None:
    """``python crash_app.py migrate``; killed after ``kill_after`` seconds when given."""
    command = [sys.executable, str(APP), "migrate", "--data", str(data)]
    env = {**os.environ, "CRASH_MODEL_VERSION": str(version)}
    if kill_after is None:
        return subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=TIMEOUT
        )
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        # The kill point, drawn by hypothesis: crash timing, not synchronisation.
        proc.wait(kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    return None


# --- the state machine --------------------------------------------------------------------


class Crashes(RuleBasedStateMachine):
    """A durable server, killed and restarted, against the reference."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.data = Path(self.dir.name)
        self.ref = Reference(version=1)
        self.server: Server | None = None
        self.ws: ClientConnection | None = None
        self.refs = 0
        self.connections = contextlib.ExitStack()

    def teardown(self) -> None:
        self.connections.close()
        if self.server is not None:
            self.server.kill()
        self.dir.cleanup()

    # helpers

    def start(self) -> None:
        self.server = Server(self.data, self.ref.version)
        assert self.server.url is not None
        self.ws = self.connections.enter_context(
            connect(self.server.url, open_timeout=TIMEOUT, close_timeout=1, max_size=None)
        )

    def send(self, ops: list[dict[str, Any]]) -> list[int]:
        assert self.ws is not None
        refs = []
        for op in ops:
            self.refs += 1
            refs.append(self.refs)
            self.ws.send(frame(op, self.refs))
        return refs

    def receive(self) -> dict[str, Any]:
        assert self.ws is not None
        return json.loads(self.ws.recv(TIMEOUT))

    def check_reply(self, op: dict[str, Any], reply: dict[str, Any], expected: Any) -> None:
        event(f"{op['op']} {'refused' if expected is ERROR else 'done'}")
        if expected is ERROR:
            assert "Errors" in reply, (op, reply)
        else:
            assert "Errors" not in reply, (op, reply)
            if expected is not ANY:
                assert reply[op["op"]] == expected, (op, reply, expected)

    def dump(self, what: str = "dump") -> dict[str, Any]:
        """The rows in memory, or (``"stored"``) as the durable file holds them."""
        assert self.ws is not None
        self.refs += 1
        self.ws.send(json.dumps({what: {}, "ref": self.refs}))
        reply = self.receive()
        assert reply["ref"] == self.refs, reply
        return reply[what]  # type: ignore[no-any-return]

    def files(self) -> dict[str, Any]:
        out = {}
        for model in MODELS:
            path = self.data / f"{model}.json"
            out[model] = json.loads(path.read_text()) if path.exists() else None
        return out

    # rules

    @initialize()
    def first_start(self) -> None:
        self.start()

    def exchange(self, data: st.DataObject) -> None:
        """A batch sent at once (all in flight), every reply as the reference says."""
        ops = data.draw(batch(self.ref))
        refs = self.send(ops)
        for op, ref in zip(ops, refs, strict=True):
            reply = self.receive()
            assert reply.get("ref") == ref, (reply, ref)
            self.check_reply(op, reply, self.ref.apply(op))

    @rule(data=st.data())
    def requests(self, data: st.DataObject) -> None:
        """A batch, then the server goes on, is killed, or is stopped and started again.

        One rule rather than three: hypothesis turns rules off at random per test case
        (swarm testing), and no test case should go without kills.
        """
        self.exchange(data)
        then = data.draw(st.sampled_from(["go on", "SIGKILL", "SIGKILL", "SIGTERM"]))
        if then == "SIGKILL":
            self.crash(data)
        elif then == "SIGTERM":
            self.restart()

    def crash(self, data: st.DataObject) -> None:
        """SIGKILL after some replies: between requests, or with some still in flight."""
        ops = data.draw(batch(self.ref))
        kill_at = data.draw(st.integers(0, len(ops)), label="replies before the kill")
        before_files = self.ref.files
        self.send(ops)
        replies: list[dict[str, Any]] = []
        for _ in range(kill_at):
            replies.append(self.receive())
        refs = [self.refs - len(ops) + 1 + i for i in range(len(ops))]
        assert self.server is not None and self.ws is not None
        self.server.kill()
        try:  # replies already sent before the kill are acknowledged too
            while True:
                replies.append(json.loads(self.ws.recv(TIMEOUT)))
        except ConnectionClosed:
            pass
        # Acknowledged: the reference predicts each reply, in order.
        saves = [before_files]
        for op, reply, ref in zip(ops, replies, refs, strict=False):
            assert reply.get("ref") == ref, (reply, ref)
            self.check_reply(op, reply, self.ref.apply(op))
            if op["op"] == "save":
                saves = [self.ref.files]  # older snapshots may no longer be on disk
        acknowledged = self.ref.copy()
        self.start()
        stored = self.dump()
        # Not acknowledged: each applied whole or not at all, in order, up to some point.
        candidate, matched, applied = acknowledged, None, 0
        for index, op in enumerate([None, *ops[len(replies) :]]):
            if op is not None:
                candidate = candidate.copy()
                candidate.apply(op)
                if op["op"] == "save":
                    saves.append(candidate.files)
            if candidate.dump() == stored:
                matched, applied = candidate, index
        event(f"killed with {len(ops) - len(replies)} requests in flight")
        if matched is not None and applied:
            event("unacknowledged requests applied before the kill")
        assert matched is not None, (
            f"after the kill the store matches no prefix of the requests:\n{stored}\n"
            f"acknowledged: {acknowledged.dump()}\nunacknowledged: {ops[len(replies) :]}"
        )
        # Each JSON file is whole: as one of the saves that may have run wrote it.
        files = self.files()
        for model in MODELS:
            assert files[model] in [snapshot[model] for snapshot in saves], (model, files[model])
        matched.files = files
        self.ref = matched

    def restart(self) -> None:
        """A clean stop (SIGTERM) and start: everything is kept exactly."""
        assert self.server is not None and self.ws is not None
        self.ws.close()
        self.server.stop()
        self.start()
        assert self.dump() == self.ref.dump()
        assert self.files() == self.ref.files

    @rule(data=st.data(), kill_after=st.none() | st.floats(0, 0.6))
    def change_models(self, data: st.DataObject, kill_after: float | None) -> None:
        """The next model version: stop, ``migrate`` (perhaps killed midway), serve it."""
        self.exchange(data)
        assert self.server is not None and self.ws is not None
        self.ws.close()
        self.server.stop()
        version = 3 - self.ref.version
        if kill_after is not None:
            migrate(self.data, version, kill_after)
        done = migrate(self.data, version, None)
        assert done is not None and done.returncode == 0, done.stderr
        self.ref.migrate_to(version)
        self.start()
        assert self.dump() == self.ref.dump()
        assert self.files() == self.ref.files

    @invariant()
    def served_and_stored_state_is_the_reference(self) -> None:
        """Every acknowledged change is in memory and already in the file."""
        if self.ws is not None:
            expected = self.ref.dump()
            assert self.dump() == expected
            assert self.dump("stored") == expected


TestCrashes = Crashes.TestCase
TestCrashes.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=8,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
