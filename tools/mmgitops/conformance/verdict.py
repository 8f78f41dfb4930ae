"""The run's verdict, and the two kinds of check that did not run.

*Not applicable*: the target cannot offer what the check reads (a mesh target has no Kubernetes API, no
controller): `pytest.skip`, an honest skip. *Not reached*: the check applies, and this run could not do it (a
command or option the user gave failed or is missing, the runner lacks a right, a pod or runtime the check needs is
absent): `not_reached`, which pytest counts as a skip of the category "not reached", and which keeps the run from
being certified. docs/conformance.md lists every site of either kind.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

NOT_REACHED = "not reached"  # the outcome in results.json, and pytest's status category
# pytest's exit status for a run whose checks all passed or were skipped, with at least one not reached; pytest's
# own codes end at 5. `mmgitops conform` exits INCOMPLETE_CLI for it.
INCOMPLETE = 6
INCOMPLETE_CLI = 3
CERTIFIED, FAILED, INCOMPLETE_WORD = "certified", "failed", "incomplete"


class NotReached(pytest.skip.Exception):  # type: ignore[misc, name-defined]
    """A check that applies to the target but that this run could not do."""


# As pytest does for Skipped: reports then read "NotReached: <reason>", not the module path.
NotReached.__module__ = "builtins"
PREFIX = "NotReached: "


def not_reached(reason: str) -> NoReturn:
    """Stop the check as not reached: `reason` says what was missing and how to give it."""
    raise NotReached(reason)


def verdict(tests: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """(word, line): "failed" when a check failed or errored, else "incomplete" when one was not reached, else
    "certified"; the line counts them and groups the not-reached reasons."""
    tests = list(tests)
    failed = [t for t in tests if t["outcome"] in ("failed", "error")]
    missed = [t for t in tests if t["outcome"] == NOT_REACHED]
    passed = sum(1 for t in tests if t["outcome"] == "passed")
    skipped = sum(1 for t in tests if t["outcome"] == "skipped")
    if failed:
        return FAILED, f"failed: {_checks(len(failed))} of {len(tests)} failed"
    if missed:
        reasons: dict[str, int] = {}
        for test in missed:
            reasons[test["skip_reason"]] = reasons.get(test["skip_reason"], 0) + 1
        grouped = "; ".join(f"{n} x {reason}" if n > 1 else reason for reason, n in reasons.items())
        return INCOMPLETE_WORD, f"incomplete: {_checks(len(missed))} not reached ({grouped})"
    tail = f", {skipped} not applicable to this target" if skipped else ""
    return CERTIFIED, f"certified: {_checks(passed)} passed{tail}"


def _checks(n: int) -> str:
    return f"{n} check{'' if n == 1 else 's'}"


def mark_junit(path: Path, nodeids: Iterable[str]) -> None:
    """Retype the JUnit `<skipped>` of each not-reached check as `not-reached`, its message prefixed so: a CI system
    that lists skips then tells "did not apply" from "could not be done". Test cases are found as pytest's junitxml
    names them (classname: the node id's path, dotted, without .py)."""
    wanted = set()
    for nodeid in nodeids:
        *where, name = nodeid.split("::")
        wanted.add((".".join([*where[0].removesuffix(".py").split("/"), *where[1:]]), name))
    tree = ET.parse(path)
    for case in tree.getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None and (case.get("classname"), case.get("name")) in wanted:
            skipped.set("type", "not-reached")
            skipped.set("message", f"{NOT_REACHED}: {skipped.get('message', '').removeprefix(PREFIX)}")
    tree.write(path, encoding="utf-8", xml_declaration=True)
