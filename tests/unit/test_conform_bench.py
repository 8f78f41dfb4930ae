"""`mmgitops bench conform`: pytest's summary parsed, and the figures with their goals and verdicts."""

from __future__ import annotations

import pytest
from mmgitops.cli import conform_bench as bench

pytestmark = pytest.mark.unit

OUTPUT = """\
tests/conformance/test_routing.py ..F.s                                        [100%]
conformance summary
  group     checks  passed  failed
  routing   5 passed, 1 failed in the table, not the summary
=========================== short test summary info ============================
FAILED tests/conformance/test_routing.py::test_pinned - assert 1 == 2
\x1b[31m========= 1 failed, 27 passed, 1 skipped, 2 errors in 95.20s (0:01:35) =========\x1b[0m
"""


def test_counts_come_from_pytests_last_summary_line() -> None:
    assert bench.parse_summary(OUTPUT) == {"failed": 1, "passed": 27, "skipped": 1, "errors": 2}
    assert bench.parse_summary("==== 1 passed, 1 error in 3.1s ====") == {"passed": 1, "errors": 1}


def test_no_summary_line_gives_no_counts() -> None:
    assert bench.parse_summary("mmgitops: error: no conformance check matched\n") == {}


def test_figures_with_goals_and_verdicts() -> None:
    suite = bench.SuiteRun(95.2, 0, {"passed": 27, "skipped": 1}, ["not shown"])
    # p50 harness 0.9 ms, bare 0.8 ms: 0.1 ms overhead, within the 0.2 ms goal.
    overhead = bench.Overhead([0.9] * 99 + [5.0], [0.8] * 99 + [4.0])
    text = bench.render(suite, overhead)
    assert "exit 0: 27 passed, 1 skipped" in text
    assert "wall 95.2 s (goal: at most 360 s): met" in text
    assert "overhead p50 0.100 ms (goal: at most 0.2 ms): met" in text
    assert "p99  5.000 ms" in text
    assert "not shown" not in text


def test_missed_goals_and_a_failed_suite_show_its_output() -> None:
    suite = bench.SuiteRun(400.0, 1, {}, ["E   assert 1 == 2", "mmgitops: error: boom"])
    text = bench.render(suite, bench.Overhead([1.5], [1.0]))
    assert "exit 1: no pytest summary line" in text
    assert "wall 400.0 s (goal: at most 360 s): missed" in text
    assert text.splitlines()[4:6] == ["    E   assert 1 == 2", "    mmgitops: error: boom"]
    assert "overhead p50 0.500 ms (goal: at most 0.2 ms): missed" in text


def test_without_the_suite_only_the_overhead_is_shown() -> None:
    text = bench.render(None, bench.Overhead([1.0], [1.0]))
    assert text.startswith("harness overhead per inference (1 requests per path")
    assert "conformance suite" not in text
