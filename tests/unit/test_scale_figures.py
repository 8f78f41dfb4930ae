"""`mmgitops bench scale`'s figures from what the scenario recorded: counts, percentiles and the recipe's column."""

from __future__ import annotations

import pytest
from mmgitops.conformance.cluster import scale_figures

pytestmark = pytest.mark.unit
UNIT = 8192


def request(ms: float, ok: bool = True, hot: bool = False, cold: bool = False, error: str = "") -> dict:
    return {"at_s": 0.0, "model": "m", "ms": ms, "ok": ok, "hot": hot, "cold": cold, "error": error}


def measured() -> dict:
    timeline = [{"t_s": t, "pod": pod, "models": models, "used_bytes": used * UNIT, "capacity_bytes": 10 * UNIT}
                for t, pod, models, used in ((0, "a", 0, 0), (5, "a", 9, 9), (10, "a", 8, 8),
                                             (0, "b", 0, 0), (5, "b", 9, 11), (10, "b", 9, 9))]
    return {
        "plan": {"models": 30, "stream_s": 120.0},
        "registered": {"applied_s": 1.0, "every_status_s": 6.0, "controller_status_p50_s": 2.0,
                       "controller_status_max_s": 4.0},
        "every_answered_s": 20.0,
        "first_requests": [request(ms, cold=True) for ms in (100, 200, 300, 400)] + [request(10.0)],
        "stream": [request(5.0, hot=True)] * 9 + [request(0.0, ok=False, error="INTERNAL: churn")],
        "stream_evictions": 6.0, "stream_cache_misses": 8.0, "timeline": timeline,
        "memory_mib": {"a": 512.0},
    }


def test_the_summary_counts_what_the_pods_last_published_and_every_failed_request():
    summary = scale_figures.summarize(measured())
    assert summary["loaded_per_pod"] == {"a": 8, "b": 9}
    assert (summary["loaded_at_end"], summary["standby_at_end"]) == (17, 13)
    assert summary["pods_over_capacity"] == ["b"]  # 11 units used of 10 at t=5
    assert summary["failed_requests"] == 1 and summary["failures"] == ["INTERNAL: churn"]
    assert summary["first_requests_answered"] == 5
    assert summary["cold_ms"] == {"p50": 200.0, "p95": 400.0, "p99": 400.0}
    assert (summary["evictions_per_min"], summary["cache_misses_per_min"]) == (3.0, 4.0)
    assert summary["stream_rps"] == round(10 / 120, 1)


def test_the_table_sets_each_figure_beside_the_recipes_claim():
    text = scale_figures.table(scale_figures.summarize(measured()))
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert rows["loaded at the end"].split()[-2:] == ["about", "20"]
    assert "17" in rows["loaded at the end"]
    assert rows["cold loads, first requests p50 / p95 / p99 (ms)"].rstrip().endswith("200-500")
    assert text.splitlines()[-1] == "failure: INTERNAL: churn"
    assert "memory of pod a (MiB)" in text


def test_no_values_leave_a_dash_not_a_number():
    assert scale_figures.percentile([], 50) is None
    assert scale_figures._q({"p50": None, "p95": 1.0}) == "- / 1"
