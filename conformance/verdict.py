"""The verdict on a fuzzingclient report: ``verdict.py REPORTS ALLOWED JUDGED``.

Prints, for every server in ``REPORTS/index.json`` (``JUDGED`` first), Autobahn's count
per status, then each case not passed outright with Autobahn's one-line description. Exits 1
when a case of the judged server fails: FAILED, a closing that failed or was unclean, or a
NON-STRICT, UNIMPLEMENTED, WRONG CODE or FAILED BY CLIENT outcome that ``ALLOWED`` (a JSON
object ``{"case id": "reason"}``) does not excuse. Other servers are shown for comparison.
Exits 2 when the report or the allow-list cannot be read.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import Any

#: Statuses in the order they are printed; any other is printed after them.
STATUSES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
#: Message behaviours and closing behaviours accepted without a reason.
PASSING = frozenset({"OK", "INFORMATIONAL"})
#: Accepted only with a reason in the allow-list: Autobahn's "non-strict" shades
#: (a SHOULD not followed, a close code other than the expected, TCP closed by the client).
EXCUSABLE = frozenset({"NON-STRICT", "UNIMPLEMENTED", "WRONG CODE", "FAILED BY CLIENT"})


class BadInput(Exception):
    """The report or the allow-list is missing or malformed."""


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort ``"9.1.10"`` after ``"9.1.2"``."""
    return tuple(int(part) for part in case_id.split(".") if part.isdigit())


def outcome(result: dict[str, Any]) -> str:
    """``behavior``, or ``behavior/behaviorClose`` when the closing went otherwise."""
    behavior, close = str(result.get("behavior")), result.get("behaviorClose")
    return behavior if close is None or close in PASSING else f"{behavior}/{close}"


def passes(result: dict[str, Any], excused: bool) -> bool:
    """Whether a case passes: both behaviours accepted, the excusable ones if ``excused``."""
    accepted = PASSING | EXCUSABLE if excused else PASSING
    close = result.get("behaviorClose")
    return result.get("behavior") in accepted and (close is None or close in accepted)


def one_line(description: str) -> str:
    """The first paragraph of an Autobahn description, as plain text on one line."""
    first = re.split(r"<br\s*/?>", description, maxsplit=1)[0]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", first)).split())


def load_allowed(path: Path) -> dict[str, str]:
    try:
        allowed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: {exc}") from exc
    if not isinstance(allowed, dict):
        raise BadInput(f'{path}: expected an object {{"case id": "reason"}}')
    for case_id, reason in allowed.items():
        if not isinstance(reason, str) or not reason.strip():
            raise BadInput(f"{path}: case {case_id}: the reason must be a non-empty string")
    return allowed


def load_index(reports: Path) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        index = json.loads((reports / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"no fuzzingclient report: {exc}") from exc
    if not isinstance(index, dict):
        raise BadInput(f"{reports / 'index.json'}: expected an object of servers")
    return index


def describe(reports: Path, result: dict[str, Any]) -> str:
    """Autobahn's one-line description of a case, from its case report."""
    try:
        case = json.loads((reports / str(result["reportfile"])).read_text(encoding="utf-8"))
        return one_line(str(case["description"]))
    except (KeyError, OSError, ValueError):
        return "(no case report)"


def judge(
    results: dict[str, dict[str, Any]], allowed: dict[str, str]
) -> tuple[list[str], list[str]]:
    """The case ids that fail the run, and warnings about the allow-list."""
    failing = [case for case, result in results.items() if not passes(result, case in allowed)]
    warnings = []
    for case_id in allowed:
        if case_id not in results:
            warnings.append(f"allowed.json: case {case_id} did not run")
        elif passes(results[case_id], excused=False):
            warnings.append(f"allowed.json: case {case_id} passes now; remove it")
    return sorted(failing, key=case_key), warnings


def report(agent: str, results: dict[str, dict[str, Any]], reports: Path) -> None:
    """Autobahn's count per status, then every case not passed outright."""
    counts: dict[str, int] = {}
    for result in results.values():
        behavior = str(result.get("behavior"))
        counts[behavior] = counts.get(behavior, 0) + 1
    seconds = sum(int(result.get("duration", 0)) for result in results.values()) / 1000
    print(f"{agent}: {len(results)} cases, {seconds:.0f} s")
    for name in [*STATUSES, *sorted(set(counts) - set(STATUSES))]:
        if name in counts:
            print(f"  {name:<14}{counts[name]:>4}")
    for case_id in sorted(results, key=case_key):
        result = results[case_id]
        if not passes(result, excused=False):
            print(f"    {outcome(result):<20} {case_id:<9} {describe(reports, result)}")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    reports, judged = Path(argv[1]), argv[3]
    try:
        allowed = load_allowed(Path(argv[2]))
        index = load_index(reports)
    except BadInput as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    if not index.get(judged):
        print(f"conformance: the report has no results for {judged!r}", file=sys.stderr)
        return 2
    for agent in sorted(index, key=lambda name: name != judged):
        report(agent, index[agent], reports)
    failing, warnings = judge(index[judged], allowed)
    for warning in warnings:
        print(f"warning: {warning}")
    if failing:
        print(f"{judged}: failing cases: {' '.join(failing)}")
    # The closing line in the form test runners use, for whoever reads the log's end.
    print(f"conformance: {len(index[judged]) - len(failing)} passed, {len(failing)} failed")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
