"""``python -m benchmarks``: lexicons against raw websockets, the floor and python-socketio.

    python -m benchmarks                          # the full run (about 10 minutes)
    python -m benchmarks --quick                  # the smoke run (seconds, tiny sizes)
    python -m benchmarks --scenario echo --target lexicons --target raw --loop uvloop

Prints one line per run, then the tables; writes the raw results to
``benchmarks/results/network.json`` (``--output`` elsewhere; ``--quick`` writes only
with ``--output``). Targets whose packages are missing are skipped with the reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .harness import save_results
from .report import markdown
from .scenarios import Sizes
from .suite import Plan, run
from .targets import TARGETS, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round, seconds")
    parser.add_argument(
        "--scenario",
        action="append",
        help="echo, fanout (or fanout-1k, fanout-5k), churn, idle; repeatable",
    )
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="repeatable")
    parser.add_argument("--loop", action="append", choices=("uvloop", "asyncio"))
    parser.add_argument("--repeat", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-runs of a run during which other processes used a core (default 1)",
    )
    parser.add_argument("--duration", type=float, help="seconds measured per run")
    parser.add_argument(
        "--text-size",
        type=int,
        help="characters of the message text, a location feed (default: a short sentence)",
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    if args.duration:
        sizes = Sizes(**{**sizes.__dict__, "duration": args.duration})
    if args.text_size:
        sizes = Sizes(**{**sizes.__dict__, "text_size": args.text_size})
    loops = args.loop or ["uvloop", "asyncio"]
    if args.quick and not args.loop:
        # One loop keeps the smoke short: uvloop when installed, as a deployment would.
        loops = ["uvloop" if missing(TARGETS["lexicons"], "uvloop") is None else "asyncio"]
    plan = Plan(
        targets=args.target or list(TARGETS),
        scenarios=args.scenario,
        loops=loops,
        repeat=args.repeat or (1 if args.quick else 3),
        sizes=sizes,
        shared_server=args.quick,
        retries=args.retries,
    )
    results = run(plan)
    print()
    print(markdown(results))
    if args.output or not args.quick:
        path = save_results("network", results, args.output)
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
