"""Tasks: work the server runs at start-up, on an interval, or at shutdown.

Decorator style (the documented one)::

    @app.task.startup(priority=1)
    def load(db):
        db.load()

    @app.task.interval(60)
    async def save(db):
        db.save()

Class style (the original documents' style; both end in the same registry)::

    class Save(Task.Interval):
        def timer(self, **kwargs):
            return 60

        async def execute(self, db=None, **kwargs):
            db.save()

The registry only records and checks tasks; :class:`TaskRunner` (in :mod:`lexicons.scheduler`,
re-exported here) runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar, overload

from .errors import RegistrationError
from .handlers import inspect_handler
from .scheduler import TaskInfo, TaskKind, TaskRunner, TaskSpec, as_seconds

__all__ = [
    "IntervalTask",
    "ShutdownTask",
    "StartupTask",
    "Task",
    "TaskInfo",
    "TaskKind",
    "TaskRegistry",
    "TaskRunner",
    "TaskSpec",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound="type[Task] | Task")


class Task:
    """Base of class-style tasks: subclass ``Task.Startup``, ``Task.Interval``, ``Task.Shutdown``.

    ``execute`` (sync or async) receives ``sv`` and ``db`` by name; the task's name is
    the class name. Install it with ``Server(Save)``, ``tasks=[Save]`` or ``app.task.add(Save)``::

        class Save(Task.Interval):
            seconds = 60

            async def execute(self, db=None, **kwargs):
                db.save()
    """

    kind: ClassVar[TaskKind]

    if TYPE_CHECKING:  # at run time these are set below, once the classes exist
        Startup: TypeAlias = "StartupTask"
        Interval: TypeAlias = "IntervalTask"
        Shutdown: TypeAlias = "ShutdownTask"

    #: The task's work, sync or async; it receives ``sv`` and ``db`` when it names them.
    #: Declared, not defined, so a subclass may give it any signature a type checker accepts.
    execute: Callable[..., Any]


class StartupTask(Task):
    """Runs once before the server listens, in priority order (``Task.Startup``).

    ``delay`` seconds are waited before it runs (which also delays the tasks after it);
    as in the original documents ``delay`` may also be a method returning seconds.
    """

    kind = "startup"
    priority: int | None = None
    delay: float = 0
    allow_failure: bool = False


class IntervalTask(Task):
    """Runs every ``seconds`` while the server listens (``Task.Interval``).

    Instead of ``seconds``, define ``timer(self, sv=None, db=None, **kwargs) -> float``;
    it is called before every wait, so each interval can differ.
    """

    kind = "interval"
    seconds: float | None = None
    immediate: bool = False


class ShutdownTask(Task):
    """Runs once at shutdown, after interval tasks stopped, by priority (``Task.Shutdown``)."""

    kind = "shutdown"
    priority: int | None = None


if not TYPE_CHECKING:
    Task.Startup = StartupTask
    Task.Interval = IntervalTask
    Task.Shutdown = ShutdownTask


class TaskRegistry:
    """Every task of one server, by name; the server exposes it as ``app.task``.

    The decorators return the function unchanged and end in the same record as
    :meth:`add`::

        @app.task.shutdown(priority=0)
        def goodbye(sv):
            ...
    """

    def __init__(self, guard: Callable[[str], None] | None = None) -> None:
        self._specs: dict[str, TaskSpec] = {}
        self._frozen = False
        #: Called with a description of each task before it is recorded; may refuse it
        #: (the server refuses registrations while it runs).
        self._guard = guard

    @overload
    def startup(self, func: F, /) -> F: ...
    @overload
    def startup(
        self,
        func: None = None,
        /,
        *,
        priority: int | None = None,
        delay: float = 0,
        allow_failure: bool = False,
    ) -> Callable[[F], F]: ...
    def startup(
        self,
        func: F | None = None,
        /,
        *,
        priority: int | None = None,
        delay: float = 0,
        allow_failure: bool = False,
    ) -> F | Callable[[F], F]:
        """Run the function once before the server listens (lower ``priority`` first).

        ``@app.task.startup`` or ``@app.task.startup(priority=1, delay=2, allow_failure=True)``.
        """

        def register(f: F) -> F:
            name = _func_name(f, "startup")
            self._add(
                f,
                name,
                "startup",
                _source(f),
                priority=_check_priority(name, priority),
                delay=_check_delay(name, delay),
                allow_failure=bool(allow_failure),
            )
            return f

        return register if func is None else register(_positional(func, "startup", "priority"))

    def interval(
        self,
        seconds: float | None = None,
        /,
        *,
        timer: Callable[..., Any] | None = None,
        immediate: bool = False,
    ) -> Callable[[F], F]:
        """Run the function every ``seconds`` (or every ``timer()`` seconds) while listening.

        ``@app.task.interval(5)``, ``@app.task.interval(timer=next_gap)``; the first run
        comes one interval after the server listens, or at once with ``immediate=True``.
        """
        if callable(seconds):
            raise RegistrationError(
                f"interval task {_func_name(seconds, 'interval')!r}: give the interval, as "
                "@app.task.interval(seconds) or @app.task.interval(timer=callable)"
            )

        def register(f: F) -> F:
            name = _func_name(f, "interval")
            fields = _interval_fields(name, seconds, timer)
            self._add(f, name, "interval", _source(f), **fields, immediate=bool(immediate))
            return f

        return register

    @overload
    def shutdown(self, func: F, /) -> F: ...
    @overload
    def shutdown(
        self, func: None = None, /, *, priority: int | None = None
    ) -> Callable[[F], F]: ...
    def shutdown(
        self, func: F | None = None, /, *, priority: int | None = None
    ) -> F | Callable[[F], F]:
        """Run the function once at shutdown, after interval tasks stopped (lower priority first).

        ``@app.task.shutdown`` or ``@app.task.shutdown(priority=0)``.
        """

        def register(f: F) -> F:
            name = _func_name(f, "shutdown")
            self._add(f, name, "shutdown", _source(f), priority=_check_priority(name, priority))
            return f

        return register if func is None else register(_positional(func, "shutdown", "priority"))

    def add(self, task: T) -> T:
        """Register a class-style task: a ``Task.Startup/Interval/Shutdown`` subclass or instance.

        A class is instantiated with no arguments; its name is the class name.
        ``app.task.add(Save)`` is what ``Server(Save)`` and ``Server(tasks=[Save])`` call.
        """
        if isinstance(task, type) and issubclass(task, Task):
            try:
                instance = task()
            except TypeError as exc:
                raise RegistrationError(
                    f"task {task.__name__!r}: cannot create it without arguments ({exc}); "
                    "pass an instance instead"
                ) from exc
        elif isinstance(task, Task):
            instance = task
        else:
            raise RegistrationError(f"{task!r} is not a Task subclass or instance")
        cls = type(instance)
        name, source = cls.__name__, f"{cls.__module__}.{cls.__qualname__}"
        execute = getattr(instance, "execute", None)
        if isinstance(instance, StartupTask):
            delay = instance.delay
            self._add(
                execute,
                name,
                "startup",
                source,
                priority=_check_priority(name, instance.priority),
                delay=(
                    inspect_handler(delay, f"{name}.delay", payload=False)
                    if callable(delay)
                    else _check_delay(name, delay)
                ),
                allow_failure=bool(instance.allow_failure),
            )
        elif isinstance(instance, IntervalTask):
            timer = getattr(instance, "timer", None)
            if timer is not None and not callable(timer):
                raise RegistrationError(
                    f"interval task {name!r}: timer must be a method; for a fixed interval "
                    f"set seconds = {timer!r}"
                )
            fields = _interval_fields(name, instance.seconds, timer)
            self._add(
                execute, name, "interval", source, **fields, immediate=bool(instance.immediate)
            )
        elif isinstance(instance, ShutdownTask):
            self._add(
                execute,
                name,
                "shutdown",
                source,
                priority=_check_priority(name, instance.priority),
            )
        else:
            raise RegistrationError(
                f"task {name!r}: subclass Task.Startup, Task.Interval or Task.Shutdown"
            )
        return task

    def _add(self, func: Any, name: str, kind: TaskKind, source: str, **options: Any) -> None:
        """Check and record one task; every decorator and :meth:`add` end here."""
        if self._guard is not None:
            self._guard(f"{kind} task {name!r}")
        if self._frozen:
            raise RegistrationError(
                f"cannot register {kind} task {name!r} ({source}): "
                "the server has already started; register tasks before it starts"
            )
        old = self._specs.get(name)
        if old is not None:
            raise RegistrationError(
                f"duplicate task name {name!r}: {old.source} ({old.kind}) is already "
                f"registered; cannot also register {source} ({kind})"
            )
        if not callable(func):
            raise RegistrationError(f"{kind} task {name!r}: define an execute method")
        handler = inspect_handler(func, name, payload=False)
        self._specs[name] = TaskSpec(name, kind, handler, source, **options)

    def freeze(self) -> None:
        """Refuse further registrations; the runner calls it when the server starts."""
        self._frozen = True

    def run_order(self) -> list[TaskSpec]:
        """Every task: startup tasks in run order, then interval, then shutdown tasks."""
        return [*self.ordered("startup"), *self.ordered("interval"), *self.ordered("shutdown")]

    def infos(self) -> list[TaskInfo]:
        """``sv.tasks`` before the server runs: every task in :meth:`run_order`, none run."""
        return [TaskInfo(spec.name, spec.kind, spec.priority) for spec in self.run_order()]

    def ordered(self, kind: TaskKind) -> list[TaskSpec]:
        """The tasks of one kind in run order: lower priority first, ``None`` last, ties
        in registration order (interval tasks: registration order)."""
        specs = [s for s in self._specs.values() if s.kind == kind]
        # sorted() is stable, so equal priorities keep their registration order.
        return sorted(specs, key=lambda s: (s.priority is None, s.priority or 0))

    def __getitem__(self, name: str) -> TaskSpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def _interval_fields(
    name: str, seconds: object, timer: Callable[..., Any] | None
) -> dict[str, Any]:
    if timer is not None and seconds is not None:
        raise RegistrationError(f"interval task {name!r}: give seconds or timer, not both")
    if timer is not None:
        return {"timer": inspect_handler(timer, f"{name}.timer", payload=False)}
    if seconds is None:
        raise RegistrationError(f"interval task {name!r}: give seconds or a timer")
    value = as_seconds(seconds)
    if value is None:
        raise RegistrationError(
            f"interval task {name!r}: seconds must be a positive number, got {seconds!r}"
        )
    return {"seconds": value}


def _check_priority(name: str, priority: object) -> int | None:
    if priority is None or (isinstance(priority, int) and not isinstance(priority, bool)):
        return priority
    raise RegistrationError(f"task {name!r}: priority must be an int or None, got {priority!r}")


def _check_delay(name: str, delay: object) -> float:
    value = as_seconds(delay, zero=True)
    if value is None:
        raise RegistrationError(
            f"startup task {name!r}: delay must be a number of seconds >= 0, got {delay!r}"
        )
    return value


def _positional(func: F, decorator: str, keyword: str) -> F:
    if not callable(func):
        raise RegistrationError(
            f"@app.task.{decorator}({func!r}): pass {keyword} by keyword, "
            f"as @app.task.{decorator}({keyword}={func!r})"
        )
    return func


def _func_name(func: Callable[..., Any], kind: str) -> str:
    name = getattr(func, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise RegistrationError(f"{kind} task {func!r}: a task needs a named function")
    return name


def _source(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)!s}"
