"""The task registry: decorators, class-style tasks, checks at registration, run order."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.errors import RegistrationError
from lexicons.tasks import IntervalTask, ShutdownTask, StartupTask, Task, TaskRegistry


@pytest.fixture
def task() -> TaskRegistry:
    return TaskRegistry()


def names(registry: TaskRegistry, kind: Any) -> list[str]:
    return [spec.name for spec in registry.ordered(kind)]


# Decorators


def test_decorators_return_the_function_unchanged(task: TaskRegistry) -> None:
    def a() -> None: ...
    def b() -> None: ...
    def c() -> None: ...
    def d() -> None: ...
    def e() -> None: ...

    assert task.startup(a) is a
    assert task.startup(priority=1, delay=2, allow_failure=True)(b) is b
    assert task.interval(5)(c) is c
    assert task.shutdown(d) is d
    assert task.shutdown(priority=0)(e) is e
    assert [s.name for s in task] == ["a", "b", "c", "d", "e"]
    assert len(task) == 5 and "b" in task
    b_spec = task["b"]
    assert (b_spec.kind, b_spec.priority, b_spec.delay, b_spec.allow_failure) == (
        "startup",
        1,
        2.0,
        True,
    )
    assert (task["c"].kind, task["c"].seconds, task["c"].timer) == ("interval", 5.0, None)


def test_interval_with_timer_and_immediate(task: TaskRegistry) -> None:
    def every(sv: Any = None) -> float:
        return 1.0

    @task.interval(timer=every, immediate=True)
    def tick() -> None: ...

    spec = task["tick"]
    assert spec.seconds is None and spec.immediate
    assert spec.timer is not None and spec.timer.func is every and spec.timer.inject == ("sv",)


def test_handler_knows_what_to_inject(task: TaskRegistry) -> None:
    @task.startup
    async def load(db: Any, sv: Any = None) -> None: ...

    handler = task["load"].handler
    assert handler.is_async and set(handler.inject) == {"sv", "db"}


def test_bare_interval_decorator_is_refused_naming_the_function(task: TaskRegistry) -> None:
    with pytest.raises(RegistrationError, match="'tick'.*interval\\(seconds\\)"):

        @task.interval  # type: ignore[arg-type]
        def tick() -> None: ...


@pytest.mark.parametrize("decorator", ["startup", "shutdown"])
def test_positional_priority_is_refused(task: TaskRegistry, decorator: str) -> None:
    with pytest.raises(RegistrationError, match="priority=1"):
        getattr(task, decorator)(1)


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, True, "5"])
def test_bad_seconds_name_the_task(task: TaskRegistry, seconds: Any) -> None:
    with pytest.raises(RegistrationError, match="interval task 'tick': seconds"):

        @task.interval(seconds)
        def tick() -> None: ...


@pytest.mark.parametrize("seconds", [1, 0.25, Fraction(1, 2)])
def test_seconds_accepts_any_positive_real(task: TaskRegistry, seconds: Any) -> None:
    @task.interval(seconds)
    def tick() -> None: ...

    assert task["tick"].seconds == float(seconds)
    assert isinstance(task["tick"].seconds, float)


def test_seconds_and_timer_together_or_neither(task: TaskRegistry) -> None:
    def tick() -> None: ...

    with pytest.raises(RegistrationError, match="'tick': give seconds or timer, not both"):
        task.interval(5, timer=lambda: 5)(tick)
    with pytest.raises(RegistrationError, match="'tick': give seconds or a timer"):
        task.interval()(tick)
    assert len(task) == 0


@pytest.mark.parametrize("priority", [1.5, True, "1"])
def test_bad_priority(task: TaskRegistry, priority: Any) -> None:
    def boot() -> None: ...

    with pytest.raises(RegistrationError, match="'boot': priority must be an int"):
        task.startup(priority=priority)(boot)


@pytest.mark.parametrize("delay", [-1, math.nan, "2"])
def test_bad_delay(task: TaskRegistry, delay: Any) -> None:
    def boot() -> None: ...

    with pytest.raises(RegistrationError, match="'boot': delay must be"):
        task.startup(delay=delay)(boot)


def test_duplicate_names_name_both(task: TaskRegistry) -> None:
    def save() -> None: ...

    task.interval(5)(save)

    class Save(Task.Shutdown):
        def execute(self, **kwargs: Any) -> None: ...

    Save.__name__ = "save"
    with pytest.raises(RegistrationError) as info:
        task.add(Save)
    message = str(info.value)
    assert "duplicate task name 'save'" in message
    assert f"{__name__}.test_duplicate_names_name_both.<locals>.save (interval)" in message
    assert f"{__name__}.test_duplicate_names_name_both.<locals>.Save (shutdown)" in message


def test_task_parameters_other_than_sv_db_need_a_default(task: TaskRegistry) -> None:
    def boot(sv: Any, retries: int) -> None: ...

    with pytest.raises(
        RegistrationError, match="boot: lexicons cannot supply parameter 'retries'"
    ):
        task.startup(boot)

    def ok(sv: Any, retries: int = 3, **kwargs: Any) -> None: ...

    task.startup(ok)


def test_lambdas_are_refused(task: TaskRegistry) -> None:
    with pytest.raises(RegistrationError, match="needs a named function"):
        task.startup(lambda: None)


def test_registration_after_start_is_refused(task: TaskRegistry) -> None:
    task.freeze()

    def late() -> None: ...

    with pytest.raises(RegistrationError, match="'late'.*already started"):
        task.shutdown(late)


# Class style


def test_nested_kinds_are_task_subclasses() -> None:
    assert Task.Startup is StartupTask
    assert Task.Interval is IntervalTask
    assert Task.Shutdown is ShutdownTask

    class Load(Task.Startup):
        def execute(self, **kwargs: Any) -> None: ...

    assert isinstance(Load(), Task)


def test_class_style_tasks_install(task: TaskRegistry) -> None:
    class Load(Task.Startup):
        priority = 2
        delay = 1.5
        allow_failure = True

        async def execute(self, db: Any = None, **kwargs: Any) -> None: ...

    class Save(Task.Interval):
        def timer(self, **kwargs: Any) -> float:
            return 60

        def execute(self, db: Any = None, **kwargs: Any) -> None: ...

    class Tick(Task.Interval):
        seconds = 0.5
        immediate = True

        def execute(self) -> None: ...

    class Flush(Task.Shutdown):
        priority = 0

        async def execute(self, sv: Any = None) -> None: ...

    assert task.add(Load) is Load
    tick = Tick()
    assert task.add(tick) is tick
    task.add(Save)
    task.add(Flush)

    load, save, tick_spec, flush = task["Load"], task["Save"], task["Tick"], task["Flush"]
    assert (load.kind, load.priority, load.delay, load.allow_failure) == ("startup", 2, 1.5, True)
    assert load.handler.is_async and load.handler.name == "Load"
    assert save.kind == "interval" and save.seconds is None and save.timer is not None
    assert not save.handler.is_async
    assert (tick_spec.seconds, tick_spec.immediate, tick_spec.timer) == (0.5, True, None)
    assert tick_spec.handler.func == tick.execute
    assert (flush.kind, flush.priority) == ("shutdown", 0)


def test_class_delay_method_as_in_the_original(task: TaskRegistry) -> None:
    class Warm(Task.Startup):
        def delay(self, **kwargs: Any) -> float:  # type: ignore[override]
            return 3

        def execute(self, **kwargs: Any) -> None: ...

    task.add(Warm)
    delay = task["Warm"].delay
    assert not isinstance(delay, float) and delay.name == "Warm.delay"


def test_class_style_refusals(task: TaskRegistry) -> None:
    class NoExecute(Task.Shutdown):
        pass

    class NoKind(Task):
        def execute(self, **kwargs: Any) -> None: ...

    class Both(Task.Interval):
        seconds = 5

        def timer(self) -> float:
            return 5

        def execute(self) -> None: ...

    class Neither(Task.Interval):
        def execute(self) -> None: ...

    class NumericTimer(Task.Interval):
        timer = 60

        def execute(self) -> None: ...

    with pytest.raises(RegistrationError, match="shutdown task 'NoExecute': define an execute"):
        task.add(NoExecute)
    with pytest.raises(RegistrationError, match="'NoKind': subclass Task.Startup"):
        task.add(NoKind)
    with pytest.raises(RegistrationError, match="'Both': give seconds or timer, not both"):
        task.add(Both)
    with pytest.raises(RegistrationError, match="'Neither': give seconds or a timer"):
        task.add(Neither)
    with pytest.raises(RegistrationError, match="'NumericTimer': timer must be a method"):
        task.add(NumericTimer)

    class NeedsArgs(Task.Startup):
        def __init__(self, path: str) -> None:
            self.path = path

        def execute(self) -> None: ...

    with pytest.raises(RegistrationError, match="'NeedsArgs': cannot create it without argu"):
        task.add(NeedsArgs)
    task.add(NeedsArgs("data.json"))  # an instance is fine
    del task._specs["NeedsArgs"]
    with pytest.raises(RegistrationError, match="not a Task subclass or instance"):
        task.add(object)  # type: ignore[type-var]
    assert len(task) == 0


# Order


def test_order_lower_first_none_last_ties_in_registration_order(task: TaskRegistry) -> None:
    for name, priority in [("a", None), ("b", 2), ("c", 1), ("d", 1), ("e", None), ("f", -3)]:
        task.startup(priority=priority)(_named(name))
        task.shutdown(priority=priority)(_named(name.upper()))
    assert names(task, "startup") == ["f", "c", "d", "b", "a", "e"]
    assert names(task, "shutdown") == ["F", "C", "D", "B", "A", "E"]


@given(st.lists(st.one_of(st.none(), st.integers(-3, 3)), max_size=20))
def test_order_property(priorities: list[int | None]) -> None:
    registry = TaskRegistry()
    for index, priority in enumerate(priorities):
        registry.startup(priority=priority)(_named(f"t{index}"))
    order = [int(name[1:]) for name in names(registry, "startup")]
    keys = [(priorities[i] is None, priorities[i] or 0, i) for i in order]
    assert keys == sorted(keys)  # by priority, None last, then by registration index
    assert sorted(order) == list(range(len(priorities)))


def _named(name: str) -> Any:
    def func() -> None: ...

    func.__name__ = func.__qualname__ = name
    return func
