"""Prometheus metrics: the meter without I/O, then real servers scraped over real sockets."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import Process, eventually
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from lexicons import Broker, ConfigurationError, Response, Server
from lexicons.errors import SignalError
from lexicons.metrics import Meter, Snapshot, combine
from lexicons.metrics.meter import BUCKETS, REASONS, Timing
from lexicons.metrics.serving import CountedBroker
from lexicons.metrics.shared import STALE_AFTER, SharedFigures
from lexicons.testing import HandshakeFailed, TestClient

# --- the meter, without I/O --------------------------------------------------------


@given(st.integers(0, 6), st.integers(0, 500))
def test_one_message_in_sample_is_timed(power: int, messages: int) -> None:
    meter = Meter(sample=2**power)
    timed = [n for n in range(1, messages + 1) if meter.receive()]
    assert timed == list(range(1, messages + 1, 2**power))
    assert meter.received == messages


@pytest.mark.parametrize("sample", [0, 3, 12])
def test_a_sample_that_is_not_a_power_of_two_is_refused(sample: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Meter(sample=sample)


@given(st.lists(st.floats(0, 100, allow_nan=False), max_size=50))
def test_bucket_bounds_are_inclusive_and_everything_lands_somewhere(values: list[float]) -> None:
    timing = Timing()
    for value in values:
        timing.observe(value)
    assert sum(timing.buckets) == len(values)
    for bound_index, bound in enumerate(BUCKETS):
        # Cumulative count at a bound is the number of values <= it, as Prometheus reads it.
        assert sum(timing.buckets[: bound_index + 1]) == sum(v <= bound for v in values)
    assert timing.total == pytest.approx(sum(values))


def test_refusals_are_counted_by_a_bounded_set_of_reasons() -> None:
    meter = Meter()
    for reason in ("untrusted address", "origin not allowed", "refused by gate", "??"):
        meter.refuse(reason)
    assert meter.refused == {**dict.fromkeys(REASONS, 0), "untrusted": 1, "origin": 1,
                             "gate": 1, "other": 1}  # fmt: skip


snapshots = st.builds(
    Snapshot,
    pid=st.integers(1, 2**22),
    live=st.booleans(),
    connections=st.integers(0, 1000),
    opened=st.integers(0, 10**6),
    received=st.integers(0, 10**6),
    sent=st.integers(0, 10**6),
    broadcasts=st.integers(0, 10**6),
    deliveries=st.integers(0, 10**6),
    cut_off=st.integers(0, 100),
    refused=st.fixed_dictionaries({r: st.integers(0, 100) for r in REASONS}),
    latency=st.just({}),
    broker_connected=st.booleans(),
    broker_undelivered=st.integers(0, 100),
)


@given(st.lists(snapshots, max_size=6))
def test_combine_adds_counters_of_all_and_gauges_of_live_processes(
    found: list[Snapshot],
) -> None:
    totals = combine(found)
    assert totals.received == sum(s.received for s in found)
    assert totals.sent == sum(s.sent for s in found)
    assert totals.cut_off == sum(s.cut_off for s in found)
    assert totals.processes == sum(s.live for s in found)
    assert totals.connections == sum(s.connections for s in found if s.live)
    assert totals.broker_connected == sum(s.broker_connected for s in found if s.live)
    for reason in REASONS:
        assert totals.refused[reason] == sum(s.refused[reason] for s in found)


def test_combined_latency_adds_bucket_by_bucket() -> None:
    meter = Meter(["echo"], sample=1)
    meter.timings["echo"].observe(0.002)
    one = meter.snapshot(connections=0, broker_connected=True, broker_undelivered=0, live=True)
    totals = combine([one, one])
    assert totals.latency["echo"].count == 2
    assert totals.latency["echo"].total == pytest.approx(0.004)


def test_a_snapshot_survives_its_file(tmp_path: Path) -> None:
    mine, theirs = SharedFigures(tmp_path), SharedFigures(tmp_path)
    theirs.pid, theirs.path = 1, tmp_path / "1.json"  # as if written by another process
    meter = Meter(["echo"])
    meter.received = 7
    theirs.publish(
        meter.snapshot(connections=3, broker_connected=True, broker_undelivered=0, live=True)
    )
    (found,) = mine.others()
    assert (found.received, found.connections, found.live) == (7, 3, True)
    # A live process whose file is no longer refreshed was killed: its gauges leave.
    old = os.stat(theirs.path).st_mtime - STALE_AFTER - 1
    os.utime(theirs.path, (old, old))
    (found,) = mine.others()
    assert found.live is False and found.received == 7


def test_a_broken_file_is_skipped_not_fatal(tmp_path: Path, caplog: Any) -> None:
    (tmp_path / "9.json").write_bytes(b'{"pid": ')
    (tmp_path / "8.json").write_bytes(json.dumps({"pid": "x"}).encode())
    assert SharedFigures(tmp_path).others() == []
    assert "skipped" in caplog.text


def test_the_counting_broker_passes_every_method_of_the_interface() -> None:
    """A method added to Broker must be passed on, or the real broker's would be bypassed."""
    for name, _ in inspect.getmembers(Broker, inspect.isfunction):
        if not name.startswith("_"):
            assert name in vars(CountedBroker), f"CountedBroker does not pass on {name}"


# --- a real server, scraped --------------------------------------------------------


def scrape_text(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels."""
    parser = pytest.importorskip("prometheus_client.parser", reason="pip install -e '.[test]'")
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return scrape_text(response.text)


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def metrics_app(tmp_path: Path, **settings: Any) -> Server:
    pytest.importorskip("prometheus_client", reason="the metrics extra: pip install -e '.[test]'")
    app = Server(data=str(tmp_path), debug=False, metrics=True, **settings)
    app.channel("Room")

    @app.signal
    def echo(text: str) -> dict[str, str]:
        return {"text": text}

    @app.signal
    async def later(text: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"text": text}

    @app.signal
    def join(ws: Any, sv: Server) -> bool:
        sv.channels["Room"].subscribe(ws)
        return True

    @app.signal
    def say(text: str) -> Response:
        return Response({"text": text}, ["Room"])

    @app.signal
    def fail() -> None:
        raise SignalError("nope", "refused on purpose")

    return app


async def test_counts_are_exact_after_known_traffic(tmp_path: Path) -> None:
    app = metrics_app(tmp_path)
    async with TestClient(app) as client:
        a, b, c = await client.connect(), await client.connect(), await client.connect()
        for n in range(40):
            await a.call("echo", text=str(n))
        for n in range(5):
            await b.call("later", text=str(n))
        await a.call("join")
        await b.call("join")
        await c.send_raw('[{"echo": {"text": "1"}}, {"echo": {"text": "2"}}]')  # one message
        await c.receive()
        await c.receive()
        await c.send_raw("not json")  # an error frame is a message sent
        assert "Errors" in await c.receive()
        await c.send("nobody")  # an unknown signal: counted, but not as a label of its own
        assert "Errors" in await c.receive()
        await c.send("fail")
        assert "Errors" in await c.receive()
        await c.send("say", text="hi")
        assert await a.expect("say") == await b.expect("say") == {"text": "hi"}
        await c.close()
        await eventually(_true_when(lambda: len(app.connections) == 2), "c to leave")
        samples = await scrape(client)
    received = 40 + 5 + 2 + 1 + 1 + 1 + 1 + 1  # echo, later, joins, batch, bad, unknown, fail, say
    sent = 40 + 5 + 2 + 2 + 1 + 1 + 1 + 2  # ... the batch's two replies, errors, 2 deliveries
    assert value(samples, "lexicons_messages_received_total") == received
    assert value(samples, "lexicons_messages_sent_total") == sent
    assert value(samples, "lexicons_broadcasts_total") == 1
    assert value(samples, "lexicons_deliveries_total") == 2
    assert value(samples, "lexicons_connections") == 2
    assert value(samples, "lexicons_connections_opened_total") == 3
    assert value(samples, "lexicons_processes") == 1
    assert value(samples, "lexicons_broker_connected") == 1
    # Messages 1, 17, 33 and 49 are timed: three echoes, and the 49th, a bad frame, has no
    # request, so the next message's is timed instead (an unknown name: no label of its own).
    timed = {"echo": 3, "(unregistered)": 1, "later": 0, "join": 0, "say": 0, "fail": 0}
    for signal_name, count in timed.items():
        assert value(samples, "lexicons_handler_seconds_count", signal=signal_name) == count
        assert value(samples, "lexicons_handler_seconds_bucket", signal=signal_name, le="+Inf") \
            == count  # fmt: skip
    assert value(samples, "lexicons_handler_seconds_sum", signal="echo") > 0
    assert not any(labels == (("signal", "nobody"),) for _, labels in samples)


def _true_when(condition: Any) -> Any:
    async def check() -> bool:
        return bool(condition())

    return check


async def test_refused_handshakes_are_counted_by_reason(tmp_path: Path) -> None:
    app = metrics_app(tmp_path, max_connections=2, origins=["https://ok.example"])

    @app.header
    def Token(header: str) -> bool:
        return header == "secret"

    async with TestClient(app) as client:
        await client.connect(headers={"Token": "secret"})
        for _ in range(2):
            with pytest.raises(HandshakeFailed):
                await client.connect(headers={"Token": "wrong"})
        with pytest.raises(HandshakeFailed):
            await client.connect(headers={"Token": "secret"}, origin="https://evil.example")
        await client.connect(headers={"Token": "secret"})
        with pytest.raises(HandshakeFailed) as full:
            await client.connect(headers={"Token": "secret"})
        assert full.value.status == 503
        samples = await scrape(client)
    refused = {"gate": 2, "origin": 1, "full": 1, "untrusted": 0, "storage": 0, "other": 0}
    for reason, count in refused.items():
        assert value(samples, "lexicons_handshakes_refused_total", reason=reason) == count
    assert value(samples, "lexicons_connections_opened_total") == 2


async def test_untrusted_addresses_are_counted(tmp_path: Path) -> None:
    app = metrics_app(tmp_path, trust=["10.0.0.0/8"])
    async with TestClient(app) as client:
        with pytest.raises(HandshakeFailed):
            await client.connect()
        samples = await scrape(client)
    assert value(samples, "lexicons_handshakes_refused_total", reason="untrusted") == 1


async def test_a_slow_consumer_cut_off_is_counted(tmp_path: Path, raw: Any) -> None:
    app = metrics_app(tmp_path, max_buffer=64 * 1024)
    dropped = asyncio.Event()

    @app.on_connect
    def enter(ws: Any, sv: Server) -> None:
        sv.channels["Room"].subscribe(ws)

    @app.on_disconnect
    def left() -> None:
        dropped.set()

    @app.signal
    def flood(n: int) -> Response:
        return Response({"n": n, "blob": "x" * 65536}, ["Room"])

    async with TestClient(app) as client:
        await raw(client.url, rcvbuf=4096)  # subscribed, then never reads again
        fast = await client.connect()
        n = 0
        while not dropped.is_set() and n < 500:
            await fast.send("flood", n=n)
            await fast.expect("flood")
            n += 1
        assert dropped.is_set()
        samples = await scrape(client)
    assert value(samples, "lexicons_slow_consumers_total") == 1


async def test_async_latency_is_the_whole_handler(tmp_path: Path) -> None:
    app = Server(data=str(tmp_path), metrics=True)

    @app.signal
    async def nap() -> bool:
        await asyncio.sleep(0.03)
        return True

    async with TestClient(app) as client:
        peer = await client.connect()
        assert await peer.call("nap") is True
        samples = await scrape(client)
    assert value(samples, "lexicons_handler_seconds_bucket", signal="nap", le="0.025") == 0
    assert value(samples, "lexicons_handler_seconds_bucket", signal="nap", le="0.05") == 1


async def test_head_openmetrics_and_other_methods(tmp_path: Path) -> None:
    app = metrics_app(tmp_path)
    async with TestClient(app) as client:
        response = await client.get(
            "/metrics?x=1", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")
        head = await raw_http(client, "HEAD")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
        assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
        assert (await raw_http(client, "POST")).startswith(b"HTTP/1.1 405")


async def raw_http(client: TestClient, method: str) -> bytes:
    assert client.running is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.running.port)
    writer.write(f"{method} /metrics HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_metrics_off_means_404(client: TestClient) -> None:
    response = await client.get("/metrics")
    assert response.status == 404


def test_metrics_is_a_setting_an_environment_variable_and_a_flag(tmp_path: Path) -> None:
    from lexicons.commands import build_parser, settings_for

    app = Server(data=str(tmp_path))
    parser = build_parser("app.py", target=False)
    assert settings_for(app, parser.parse_args(["run", "--metrics"])).metrics is True
    os.environ["LEXICONS_METRICS"] = "1"
    try:
        assert settings_for(app, parser.parse_args(["run"])).metrics is True
        assert settings_for(app, parser.parse_args(["run", "--no-metrics"])).metrics is False
    finally:
        del os.environ["LEXICONS_METRICS"]


async def test_without_prometheus_client_start_up_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = metrics_app(tmp_path)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises
    with pytest.raises(ConfigurationError, match=r"lexicons\[metrics\]"):
        async with app.serve(host="127.0.0.1", port=0):
            pass
    assert app.running is None


# --- workers --------------------------------------------------------------------

CLUSTER_APP = Path(__file__).parent / "apps" / "cluster_app.py"


@pytest.mark.slow
async def test_one_scrape_adds_up_every_worker(
    process: type[Process], redis_url: str, namespace: str
) -> None:
    server = process(
        sys.executable, CLUSTER_APP, "run", "--host", "127.0.0.1", "--port", "0",
        "--workers", "2", "--broker", redis_url, "--metrics",
        env={"LEXICONS_BROKER_NAMESPACE": namespace},
    )  # fmt: skip
    url = server.wait_for(r"serving on (ws://\S+) with 2 workers").group(1)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    by_worker: dict[int, list[Any]] = {}
    sockets = []
    try:
        for _ in range(100):  # the kernel spreads connections: open until both have some
            ws = await connect(url)
            sockets.append(ws)
            await ws.send(json.dumps({"whoami": {}}))
            by_worker.setdefault(json.loads(await ws.recv())["whoami"], []).append(ws)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2
        for group in by_worker.values():
            for _ in range(3):
                await group[0].send(json.dumps({"whoami": {}}))
                await group[0].recv()
        opened = len(sockets)
        expected = {
            "lexicons_processes": 2,
            "lexicons_connections": opened,
            "lexicons_connections_opened_total": opened,
            "lexicons_messages_received_total": opened + 6,
            "lexicons_messages_sent_total": opened + 6,
            "lexicons_broker_connected": 2,
        }

        async def adds_up() -> bool:
            samples = await http_scrape(port)
            return all(value(samples, name) == count for name, count in expected.items())

        # Each scrape reaches one worker, which reads the other's published figures.
        for _ in range(4):
            await eventually(adds_up, f"a scrape showing {expected}")
    finally:
        for ws in sockets:
            await ws.close()
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err


async def http_scrape(port: int) -> dict[Any, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return scrape_text(body.decode())


def test_snapshot_round_trips_as_json() -> None:
    meter = Meter(["a"])
    snap = meter.snapshot(connections=1, broker_connected=False, broker_undelivered=2, live=True)
    assert msgspec.json.decode(msgspec.json.encode(snap), type=Snapshot) == snap
