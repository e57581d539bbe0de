"""Run tasks: startup tasks in order, interval tasks on a steady schedule, shutdown tasks in order.

The server builds one :class:`TaskRunner` over its task registry and an ``invoke``
function that calls a handler with ``sv``/``db`` injected (and commits the store after
it). Every user function, timers included, goes through ``invoke``; the clock and the
sleep are injectable so tests can run a thousand intervals in a millisecond.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from .errors import ConfigurationError, TaskError
from .handlers import Handler

__all__ = ["Invoke", "Schedule", "TaskInfo", "TaskKind", "TaskRunner", "TaskSpec", "as_seconds"]

TaskKind: TypeAlias = Literal["startup", "interval", "shutdown"]

#: Calls a handler with ``sv``/``db`` injected and returns its (awaited) result.
Invoke = Callable[[Handler], Awaitable[Any]]

_logger = logging.getLogger("lexicons.tasks")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One registered task, checked once at registration; what the runner schedules."""

    name: str
    kind: TaskKind
    handler: Handler
    #: Where it was defined (``module.qualname``), for error messages.
    source: str
    priority: int | None = None
    #: Seconds to wait before a startup task, or a handler that returns them.
    delay: float | Handler = 0
    allow_failure: bool = False
    seconds: float | None = None
    timer: Handler | None = None
    immediate: bool = False


class Schedule(Protocol):
    """What the runner reads from a task registry (``app.task`` is one)."""

    def run_order(self) -> list[TaskSpec]: ...
    def ordered(self, kind: TaskKind) -> list[TaskSpec]: ...
    def freeze(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One task as ``sv.tasks`` shows it: a snapshot, taken when ``sv.tasks`` is read.

    ``next_run`` is on the runner's clock (``time.monotonic`` by default) and is ``None``
    unless the task is waiting to run; ``last_error`` is the most recent failure, kept
    after later successes; ``runs`` counts finished runs, failed ones included.
    """

    name: str
    kind: TaskKind
    priority: int | None = None
    next_run: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    runs: int = 0


class _State:
    """What the runner tracks for one task while the server runs."""

    __slots__ = ("next_run", "last_duration", "last_error", "runs", "running", "loop")

    def __init__(self) -> None:
        self.next_run: float | None = None
        self.last_duration: float | None = None
        self.last_error: str | None = None
        self.runs = 0
        self.running = False
        self.loop: asyncio.Task[None] | None = None


class TaskRunner:
    """Runs the tasks of one registry through the server's lifecycle.

    The server calls, in this order: ``await run_startup()`` before it listens,
    ``start_intervals()`` once it listens, and at shutdown ``await stop_intervals()``
    then ``await run_shutdown()``::

        runner = TaskRunner(app.task, invoke, grace=5.0)
        await runner.run_startup()        # raises TaskError: the server does not start
    """

    def __init__(
        self,
        registry: Schedule,
        invoke: Invoke,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        grace: float = 5.0,
        logger: logging.Logger = _logger,
    ) -> None:
        checked = as_seconds(grace, zero=True)
        if checked is None:
            raise ConfigurationError(f"grace must be a number of seconds >= 0, got {grace!r}")
        self._registry = registry
        self._invoke = invoke
        self._clock = clock
        self._sleep = sleep
        self._grace = checked
        self._log = logger
        self._states: dict[str, _State] = {}
        self._started = False
        self._stopping = False
        self._shut_down = False

    @property
    def tasks(self) -> list[TaskInfo]:
        """Every task, in run order: startup, then interval, then shutdown tasks."""
        return [self._info(spec) for spec in self._registry.run_order()]

    async def run_startup(self) -> None:
        """Run startup tasks one by one in priority order, waiting each one's ``delay`` first.

        The first failure raises :class:`TaskError` naming the task (chained to the cause),
        unless the task allows failure: then it is logged with its traceback and the rest run.
        """
        self._registry.freeze()
        for spec in self._registry.ordered("startup"):
            state = self._state(spec)
            try:
                delay = await self._delay(spec)
                if delay > 0:
                    state.next_run = self._clock() + delay
                    await self._sleep(delay)
                    state.next_run = None
                await self._execute(spec, state)
            except Exception as exc:
                state.next_run = None
                state.last_error = _describe(exc)
                if not spec.allow_failure:
                    raise TaskError(
                        f"startup task {spec.name!r} failed: {state.last_error}"
                    ) from exc
                self._log.error(
                    "startup task %r failed; going on because it allows failure",
                    spec.name,
                    exc_info=exc,
                )

    def start_intervals(self) -> None:
        """Schedule every interval task on the running loop, one asyncio task each.

        Calling it again, or after :meth:`stop_intervals`, does nothing.
        """
        self._registry.freeze()
        if self._started or self._stopping:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for spec in self._registry.ordered("interval"):
            state = self._state(spec)
            state.loop = loop.create_task(
                self._schedule(spec, state), name=f"lexicons task {spec.name}"
            )

    async def stop_intervals(self) -> None:
        """Cancel waiting interval tasks now; a running one has ``grace`` seconds to finish.

        A run still going after the grace period is cancelled and the fact logged. Returns
        once every interval task has ended; calling it again does nothing.
        """
        self._stopping = True
        loops: list[asyncio.Task[None]] = []
        running: dict[str, asyncio.Task[None]] = {}
        for spec in self._registry.ordered("interval"):
            state = self._state(spec)
            state.next_run = None
            if state.loop is None or state.loop.done():
                continue
            loops.append(state.loop)
            if state.running:
                running[spec.name] = state.loop
            else:
                state.loop.cancel()
        if running:
            await self._wait(list(running.values()), self._grace)
        for name, loop in running.items():
            if not loop.done():
                message = f"cancelled: still running {self._grace:g} s into shutdown"
                self._states[name].last_error = message
                self._log.warning(
                    "interval task %r still running after the %g s grace period; cancelling it",
                    name,
                    self._grace,
                )
                loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def run_shutdown(self) -> None:
        """Stop interval tasks if still running, then run shutdown tasks in priority order.

        A failing shutdown task is logged with its traceback and the others still run.
        Runs once: calling it again does nothing.
        """
        if self._shut_down:
            return
        self._shut_down = True
        self._registry.freeze()
        await self.stop_intervals()
        for spec in self._registry.ordered("shutdown"):
            state = self._state(spec)
            try:
                await self._execute(spec, state)
            except Exception as exc:
                state.last_error = _describe(exc)
                self._log.error(
                    "shutdown task %r failed; running the remaining ones", spec.name, exc_info=exc
                )

    async def _schedule(self, spec: TaskSpec, state: _State) -> None:
        """One interval task's loop: wait, run, ask the timer, repeat; never two runs at once.

        ``due`` advances by whole intervals from the first due time, not from when a run
        ended, so execution time and wake-up latency do not accumulate (no drift).
        """
        base = self._clock()
        if spec.immediate:
            due = base
        else:
            interval = await self._interval(spec, state)
            if interval is None:
                return
            due = base + interval
        while True:
            state.next_run = due
            # Always await, even when late, so a task that overruns never starves the loop.
            await self._sleep(max(due - self._clock(), 0.0))
            state.next_run = None
            try:
                await self._execute(spec, state)
            except Exception as exc:
                state.last_error = _describe(exc)
                self._log.error(
                    "interval task %r failed; it keeps its schedule", spec.name, exc_info=exc
                )
            if self._stopping:
                return
            interval = await self._interval(spec, state)
            if interval is None:
                return
            due += interval
            now = self._clock()
            if now > due:
                self._log.warning(
                    "interval task %r overran its %g s interval (the run took %.3f s); "
                    "the next run starts now and the schedule restarts from it",
                    spec.name,
                    interval,
                    state.last_duration,
                )
                due = now

    async def _interval(self, spec: TaskSpec, state: _State) -> float | None:
        """The next interval: ``seconds``, or the timer's answer; None stops the task."""
        if spec.timer is None:
            return spec.seconds
        try:
            value = await self._invoke(spec.timer)
        except Exception as exc:
            error = TaskError(
                f"interval task {spec.name!r}: its timer raised {_describe(exc)}; "
                "the task is stopped"
            )
            cause: BaseException | None = exc
        else:
            seconds = as_seconds(value)
            if seconds is not None:
                return seconds
            error = TaskError(
                f"interval task {spec.name!r}: its timer returned {value!r}, not a positive "
                "number of seconds; the task is stopped"
            )
            cause = None
        state.last_error = str(error)
        self._log.error("%s", error, exc_info=cause)
        return None

    async def _delay(self, spec: TaskSpec) -> float:
        if not isinstance(spec.delay, Handler):
            return spec.delay
        value = await self._invoke(spec.delay)
        seconds = as_seconds(value, zero=True)
        if seconds is None:
            raise TaskError(
                f"startup task {spec.name!r}: its delay returned {value!r}, not a number "
                "of seconds >= 0"
            )
        return seconds

    async def _execute(self, spec: TaskSpec, state: _State) -> None:
        start = self._clock()
        state.running = True
        try:
            await self._invoke(spec.handler)
        finally:
            state.running = False
            state.runs += 1
            state.last_duration = self._clock() - start

    async def _wait(self, tasks: list[asyncio.Task[None]], timeout: float) -> None:
        """Wait until every task ended or ``timeout`` passed, on the injected sleep."""
        timer: asyncio.Future[Any] = asyncio.ensure_future(self._sleep(timeout))
        pending: set[asyncio.Future[Any]] = set(tasks)
        try:
            while pending and not timer.done():
                _, pending = await asyncio.wait(
                    pending | {timer}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(timer)
        finally:
            timer.cancel()

    def _state(self, spec: TaskSpec) -> _State:
        state = self._states.get(spec.name)
        if state is None:
            state = self._states[spec.name] = _State()
        return state

    def _info(self, spec: TaskSpec) -> TaskInfo:
        state = self._state(spec)
        return TaskInfo(
            name=spec.name,
            kind=spec.kind,
            priority=spec.priority,
            next_run=state.next_run,
            last_duration=state.last_duration,
            last_error=state.last_error,
            runs=state.runs,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def as_seconds(value: object, *, zero: bool = False) -> float | None:
    """``value`` as seconds if it is a finite number > 0 (>= 0 with ``zero``), else None.

    One rule for ``seconds``, ``delay``, ``grace`` and what timers and delays return.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    value = float(value)  # also NumPy scalars and Fractions
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        return None
    return value
