"""Run one benchmark target: ``python -m benchmarks.targets NAME [--loop uvloop|asyncio]``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal

from ..harness import raise_fd_limit
from . import TARGETS, loop_factory


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.targets")
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    args = parser.parse_args()
    target = TARGETS[args.target]
    raise_fd_limit()
    module = importlib.import_module(f"{__package__}.{target.module}")
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(_until_terminated(module.main(target.variant)))


async def _until_terminated(serving: object) -> None:
    """Run the target's ``main`` coroutine until SIGTERM (the harness's way to stop it)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.ensure_future(serving)  # type: ignore[arg-type]
    await asyncio.wait([task, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()  # a target that failed: show why
    task.cancel()


if __name__ == "__main__":
    main()
