"""The task runner: order, delay, cadence, drift, overlap, overrun, failures, grace, sv.tasks.

Timing tests run on a fake clock whose sleep advances virtual time at once, so schedules
are exact and instant; one small real-time test checks only overlap and a rough count.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from typing import Any

import pytest

from lexicons.errors import ConfigurationError, RegistrationError, TaskError
from lexicons.handlers import Handler
from lexicons.scheduler import TaskInfo, TaskRunner
from lexicons.tasks import Task, TaskRegistry

SV = type("SV", (), {"__repr__": lambda self: "<sv>"})()
DB = type("DB", (), {"__repr__": lambda self: "<db>"})()


async def invoke(handler: Handler) -> Any:
    """What the server's invoke does, minus the store commit: inject sv/db, await if async."""
    result = handler.call({}, None, SV, DB)
    if inspect.isawaitable(result):
        result = await result
    return result


class FakeClock:
    """Virtual time: sleeping moves the clock forward at once (and yields to the loop).

    After ``freeze_after`` sleeps, time stops: further sleeps wait until cancelled.
    """

    def __init__(self, freeze_after: int | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.freeze_after = freeze_after

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.freeze_after is not None and len(self.sleeps) > self.freeze_after:
            await asyncio.get_running_loop().create_future()
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def task() -> TaskRegistry:
    return TaskRegistry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def fake_runner(task: TaskRegistry, clock: FakeClock, **kwargs: Any) -> TaskRunner:
    return TaskRunner(task, invoke, clock=clock, sleep=clock.sleep, **kwargs)


async def run_until(runner: TaskRunner, done: asyncio.Event) -> None:
    runner.start_intervals()
    await asyncio.wait_for(done.wait(), 5)
    await runner.stop_intervals()


def info(runner: TaskRunner, name: str) -> TaskInfo:
    return next(i for i in runner.tasks if i.name == name)


# Startup and shutdown order


async def test_startup_and_shutdown_order_with_priorities_and_ties(task: TaskRegistry) -> None:
    ran: list[str] = []

    def record(name: str) -> Any:
        def func() -> None:
            ran.append(name)

        func.__name__ = name
        return func

    for name, priority in [("a", None), ("b", 2), ("c", 1), ("d", 1), ("e", None), ("f", 0)]:
        task.startup(priority=priority)(record(name))
        task.shutdown(priority=priority)(record(name.upper()))

    class G(Task.Startup):  # class style joins the same order
        priority = 1

        async def execute(self, **kwargs: Any) -> None:
            ran.append("g")

    task.add(G)
    runner = TaskRunner(task, invoke)
    await runner.run_startup()
    assert ran == ["f", "c", "d", "g", "b", "a", "e"]
    ran.clear()
    await runner.run_shutdown()
    assert ran == ["F", "C", "D", "B", "A", "E"]


async def test_startup_tasks_are_awaited_one_by_one(task: TaskRegistry) -> None:
    events: list[str] = []

    @task.startup
    async def first() -> None:
        events.append("first begins")
        await asyncio.sleep(0)
        events.append("first ends")

    @task.startup
    def second() -> None:
        events.append("second")

    await TaskRunner(task, invoke).run_startup()
    assert events == ["first begins", "first ends", "second"]


async def test_tasks_receive_sv_and_db_by_name(task: TaskRegistry) -> None:
    got: dict[str, Any] = {}

    @task.startup
    def wants_db(db: Any) -> None:
        got["db"] = db

    @task.startup
    async def wants_all(**kwargs: Any) -> None:
        got["all"] = kwargs

    await TaskRunner(task, invoke).run_startup()
    assert got == {"db": DB, "all": {"ws": None, "sv": SV, "db": DB}}


async def test_delay_is_waited_before_the_task_and_delays_later_ones(
    task: TaskRegistry, clock: FakeClock
) -> None:
    at: dict[str, float] = {}
    runner = fake_runner(task, clock)

    @task.startup(priority=0)
    def first() -> None:
        at["first"] = clock.now

    @task.startup(priority=1, delay=2)
    def second() -> None:
        at["second"] = clock.now
        assert info(runner, "second").next_run is None

    @task.startup(priority=2)
    def third() -> None:
        at["third"] = clock.now

    await runner.run_startup()
    assert at == {"first": 0, "second": 2, "third": 2}
    assert clock.sleeps == [2]


async def test_delay_method_as_in_the_original(task: TaskRegistry, clock: FakeClock) -> None:
    class Warm(Task.Startup):
        def delay(self, sv: Any = None, **kwargs: Any) -> float:  # type: ignore[override]
            assert sv is SV
            return 1.5

        def execute(self, **kwargs: Any) -> None: ...

    class Bad(Task.Startup):
        def delay(self, **kwargs: Any) -> float:  # type: ignore[override]
            return -1

        def execute(self, **kwargs: Any) -> None: ...

    task.add(Warm)
    task.add(Bad)
    with pytest.raises(TaskError, match="'Bad': its delay returned -1"):
        await fake_runner(task, clock).run_startup()
    assert clock.sleeps == [1.5]


async def test_failing_startup_task_stops_the_start(task: TaskRegistry) -> None:
    ran: list[str] = []

    @task.startup(priority=0)
    def connect() -> None:
        raise ConnectionError("database unreachable")

    @task.startup(priority=1)
    def later() -> None:
        ran.append("later")

    runner = TaskRunner(task, invoke)
    with pytest.raises(TaskError) as caught:
        await runner.run_startup()
    assert str(caught.value) == (
        "startup task 'connect' failed: ConnectionError: database unreachable"
    )
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert ran == []
    record = info(runner, "connect")
    assert record.last_error == "ConnectionError: database unreachable" and record.runs == 1


async def test_allow_failure_logs_with_traceback_and_goes_on(
    task: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @task.startup(allow_failure=True)
    async def warm_cache() -> None:
        raise ValueError("cache cold")

    @task.startup
    def later() -> None:
        ran.append("later")

    with caplog.at_level(logging.ERROR, logger="lexicons.tasks"):
        await TaskRunner(task, invoke).run_startup()
    assert ran == ["later"]
    [record] = caplog.records
    assert "'warm_cache' failed" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "Traceback" in caplog.text and "cache cold" in caplog.text


async def test_failing_shutdown_task_is_logged_and_the_rest_run(
    task: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @task.shutdown(priority=0)
    def broken() -> None:
        raise RuntimeError("disk full")

    @task.shutdown(priority=1)
    def flush() -> None:
        ran.append("flush")

    runner = TaskRunner(task, invoke)
    with caplog.at_level(logging.ERROR, logger="lexicons.tasks"):
        await runner.run_shutdown()
        await runner.run_shutdown()  # a second call (signal, then context exit) does nothing
    assert ran == ["flush"]
    assert "shutdown task 'broken' failed" in caplog.text and "Traceback" in caplog.text
    assert info(runner, "broken").last_error == "RuntimeError: disk full"
    assert info(runner, "flush").runs == 1


async def test_registration_after_start_is_refused(task: TaskRegistry) -> None:
    await TaskRunner(task, invoke).run_startup()
    with pytest.raises(RegistrationError, match="already started"):

        @task.interval(1)
        def late() -> None: ...


def test_bad_grace_is_a_configuration_error(task: TaskRegistry) -> None:
    with pytest.raises(ConfigurationError, match="grace"):
        TaskRunner(task, invoke, grace=-1)


# Interval cadence, drift, overlap, overrun


async def test_no_drift_over_a_thousand_runs(task: TaskRegistry, clock: FakeClock) -> None:
    starts: list[float] = []
    done = asyncio.Event()

    @task.interval(0.5)
    def tick() -> None:
        starts.append(clock.now)
        clock.now += 0.2  # each run takes 0.2 s: it must not push the next ones later
        if len(starts) == 1000:
            done.set()

    runner = fake_runner(task, clock)
    await run_until(runner, done)
    assert starts[:1000] == pytest.approx([0.5 * (k + 1) for k in range(1000)], abs=1e-9)
    record = info(runner, "tick")
    assert record.last_duration == pytest.approx(0.2) and record.runs >= 1000


async def test_immediate_runs_at_once(task: TaskRegistry, clock: FakeClock) -> None:
    starts: list[float] = []
    done = asyncio.Event()

    @task.interval(2, immediate=True)
    def tick() -> None:
        starts.append(clock.now)
        if len(starts) == 3:
            done.set()

    await run_until(fake_runner(task, clock), done)
    assert starts[:3] == [0, 2, 4]


async def test_overrun_is_logged_and_the_schedule_restarts_from_the_late_run(
    task: TaskRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []
    done = asyncio.Event()

    @task.interval(1)
    async def tick() -> None:
        starts.append(clock.now)
        if len(starts) == 3:
            await clock.sleep(2.5)  # the third run (at 3) ends at 5.5, past 4 and 5
        if len(starts) == 6:
            done.set()

    with caplog.at_level(logging.WARNING, logger="lexicons.tasks"):
        await run_until(fake_runner(task, clock), done)
    assert starts[:6] == [1, 2, 3, 5.5, 6.5, 7.5]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "'tick' overran its 1 s interval (the run took 2.500 s)" in warning.getMessage()


async def test_runs_never_overlap(task: TaskRegistry, clock: FakeClock) -> None:
    active = peak = runs = 0
    done = asyncio.Event()

    @task.interval(1)
    async def slow() -> None:
        nonlocal active, peak, runs
        active += 1
        peak = max(peak, active)
        await clock.sleep(3)  # always three times its interval
        active -= 1
        runs += 1
        if runs == 20:
            done.set()

    await run_until(fake_runner(task, clock), done)
    assert peak == 1


async def test_failing_run_is_logged_and_keeps_its_schedule(
    task: TaskRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []
    done = asyncio.Event()

    @task.interval(1)
    def flaky() -> None:
        starts.append(clock.now)
        if len(starts) == 4:
            done.set()
        if len(starts) == 2:
            raise KeyError("gone")

    runner = fake_runner(task, clock)
    with caplog.at_level(logging.ERROR, logger="lexicons.tasks"):
        await run_until(runner, done)
    assert starts[:4] == [1, 2, 3, 4]
    [error] = caplog.records
    assert "interval task 'flaky' failed; it keeps its schedule" == error.getMessage()
    assert error.exc_info is not None and error.exc_info[0] is KeyError
    assert "Traceback" in caplog.text
    assert info(runner, "flaky").last_error == "KeyError: 'gone'"


async def test_dynamic_timer_is_called_before_every_wait(
    task: TaskRegistry, clock: FakeClock
) -> None:
    starts: list[float] = []
    gaps = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    done = asyncio.Event()

    def next_gap(sv: Any, db: Any) -> float:
        assert (sv, db) == (SV, DB)
        return next(gaps)

    @task.interval(timer=next_gap)
    def tick() -> None:
        starts.append(clock.now)
        if len(starts) == 4:
            done.set()

    await run_until(fake_runner(task, clock), done)
    assert starts[:4] == [1, 3, 6, 10]


async def test_class_style_interval_with_timer_method(
    task: TaskRegistry, clock: FakeClock
) -> None:
    starts: list[tuple[str, float]] = []
    done = asyncio.Event()

    class Save(Task.Interval):
        async def timer(self, **kwargs: Any) -> float:  # an async timer works too
            return 4

        async def execute(self, db: Any = None, **kwargs: Any) -> None:
            assert db is DB
            starts.append(("Save", clock.now))
            if len(starts) == 2:
                done.set()

    task.add(Save)
    await run_until(fake_runner(task, clock), done)
    assert starts[:2] == [("Save", 4), ("Save", 8)]


@pytest.mark.parametrize("bad", [0, -1, "soon", None, math.nan, True])
async def test_bad_timer_value_stops_the_task_and_names_it(
    task: TaskRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture, bad: Any
) -> None:
    values = iter([1, bad])
    runs = 0

    @task.interval(timer=lambda: next(values))
    def tick() -> None:
        nonlocal runs
        runs += 1

    runner = fake_runner(task, clock)
    with caplog.at_level(logging.ERROR, logger="lexicons.tasks"):
        runner.start_intervals()
        for _ in range(10):
            await asyncio.sleep(0)
        await runner.stop_intervals()
    expected = f"interval task 'tick': its timer returned {bad!r}, not a positive number"
    assert runs == 1
    assert expected in caplog.text
    record = info(runner, "tick")
    assert record.last_error is not None and record.last_error.startswith(expected)
    assert record.next_run is None


async def test_bad_first_timer_value_means_no_run(
    task: TaskRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    @task.interval(timer=lambda: 0)
    def never() -> None:
        raise AssertionError("must not run")

    runner = fake_runner(task, clock)
    with caplog.at_level(logging.ERROR, logger="lexicons.tasks"):
        runner.start_intervals()
        for _ in range(5):
            await asyncio.sleep(0)
        await runner.stop_intervals()
    assert "'never': its timer returned 0" in caplog.text
    assert info(runner, "never").runs == 0


async def test_raising_timer_stops_the_task_with_traceback(
    task: TaskRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def gap() -> float:
        raise LookupError("no setting")

    @task.interval(timer=gap, immediate=True)
    def tick() -> None: ...

    runner = fake_runner(task, clock)
    with caplog.at_level(logging.ERROR, logger="lexicons.tasks"):
        runner.start_intervals()
        for _ in range(5):
            await asyncio.sleep(0)
        await runner.stop_intervals()
    assert info(runner, "tick").runs == 1
    assert "'tick': its timer raised LookupError: no setting; the task is stopped" in caplog.text
    assert caplog.records[0].exc_info is not None


async def test_every_interval_task_has_its_own_loop(task: TaskRegistry) -> None:
    runs: dict[str, int] = {"fast": 0, "stuck": 0}
    release = asyncio.Event()
    done = asyncio.Event()

    @task.interval(0.001, immediate=True)
    async def stuck() -> None:
        runs["stuck"] += 1
        await release.wait()

    @task.interval(0.001)
    def fast() -> None:
        runs["fast"] += 1
        if runs["fast"] == 5:
            done.set()

    runner = TaskRunner(task, invoke)
    runner.start_intervals()
    await asyncio.wait_for(done.wait(), 5)
    release.set()
    await runner.stop_intervals()
    assert runs["stuck"] == 1 and runs["fast"] >= 5


async def test_real_time_cadence_no_overlap_rough_count(
    task: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Real clock, short intervals, generous bounds: only overlap and a rough count."""
    active = peak = 0
    starts: list[float] = []
    done = asyncio.Event()

    @task.interval(0.02)
    async def tick() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        starts.append(time.monotonic())
        if len(starts) % 3 == 0:
            await asyncio.sleep(0.03)  # overruns now and then
        active -= 1
        if len(starts) == 10:
            done.set()

    runner = TaskRunner(task, invoke)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lexicons.tasks"):
        await run_until(runner, done)
    assert peak == 1
    assert len(starts) >= 10
    assert starts[9] - began >= 10 * 0.02 * 0.5  # never faster than the interval, roughly


# Stopping


async def test_waiting_tasks_are_cancelled_at_once(task: TaskRegistry) -> None:
    @task.interval(3600)
    def hourly() -> None: ...

    runner = TaskRunner(task, invoke, grace=3600)
    runner.start_intervals()
    await asyncio.sleep(0)
    assert info(runner, "hourly").next_run is not None
    await asyncio.wait_for(runner.stop_intervals(), 5)
    assert info(runner, "hourly").runs == 0 and info(runner, "hourly").next_run is None


async def test_a_running_task_gets_the_grace_period_to_finish(task: TaskRegistry) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    @task.interval(0.001, immediate=True)
    async def work() -> None:
        started.set()
        await release.wait()
        finished.append(True)

    runner = TaskRunner(task, invoke, grace=60)
    runner.start_intervals()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(runner.stop_intervals())
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [True]
    record = info(runner, "work")
    assert record.runs == 1 and record.last_error is None  # and no run after the stop


async def test_a_task_still_running_after_grace_is_cancelled(
    task: TaskRegistry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    @task.interval(1, immediate=True)
    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    runner = fake_runner(task, clock, grace=2)
    runner.start_intervals()
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.WARNING, logger="lexicons.tasks"):
        await runner.stop_intervals()
    assert cancelled == [True]
    assert clock.sleeps[-1] == 2  # the grace period, on the injected sleep
    assert "'stuck' still running after the 2 s grace period" in caplog.text
    assert info(runner, "stuck").last_error == "cancelled: still running 2 s into shutdown"


async def test_run_shutdown_stops_intervals_first(task: TaskRegistry, clock: FakeClock) -> None:
    events: list[str] = []

    @task.interval(1, immediate=True)
    def tick() -> None:
        events.append("tick")

    @task.shutdown
    def bye() -> None:
        events.append("bye")

    runner = fake_runner(task, clock)
    runner.start_intervals()
    await asyncio.sleep(0)
    await runner.run_shutdown()
    count = len(events)
    for _ in range(5):
        await asyncio.sleep(0)
    assert events[-1] == "bye" and len(events) == count
    runner.start_intervals()  # after the stop: does nothing
    await asyncio.sleep(0)
    assert len(events) == count


# Introspection


async def test_sv_tasks_records(task: TaskRegistry) -> None:
    clock = FakeClock(freeze_after=1)  # time stops once tick waits for its second run
    ran = asyncio.Event()

    @task.shutdown(priority=1)
    def bye() -> None: ...

    @task.startup(priority=5)
    def boot() -> None:
        clock.now += 0.25

    @task.interval(10)
    def tick() -> None:
        clock.now += 0.5
        ran.set()

    runner = fake_runner(task, clock)
    blank = [
        TaskInfo("boot", "startup", 5),
        TaskInfo("tick", "interval"),
        TaskInfo("bye", "shutdown", 1),
    ]
    assert runner.tasks == task.infos() == blank
    await runner.run_startup()
    runner.start_intervals()
    await asyncio.sleep(0)
    assert info(runner, "tick").next_run == 10.25  # started at 0.25: one interval later
    await asyncio.wait_for(ran.wait(), 5)
    await asyncio.sleep(0)
    assert info(runner, "tick") == TaskInfo("tick", "interval", None, 20.25, 0.5, None, 1)
    await runner.run_shutdown()
    assert runner.tasks == [
        TaskInfo("boot", "startup", 5, None, 0.25, None, 1),
        TaskInfo("tick", "interval", None, None, 0.5, None, 1),
        TaskInfo("bye", "shutdown", 1, None, 0.0, None, 1),
    ]
