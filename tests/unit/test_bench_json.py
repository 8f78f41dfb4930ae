"""`--format json` of `bench validate` and `bench conform`: one object, the text's figures as numbers."""

from __future__ import annotations

import json

import pytest
from mmgitops.cli import conform_bench
from mmgitops.gitops import bench as validate_bench

pytestmark = pytest.mark.unit


def test_validate_json_has_the_texts_figures() -> None:
    figures = validate_bench.Figures(kustomizations=40, objects_rendered=900, objects_checked=850, findings=2,
                                     bare_s=[2.0, 1.5, 1.75], validate_s=[3.5, 2.7, 3.0])
    data = json.loads(validate_bench.to_json(figures))
    assert data == {"bench": "validate", "kustomizations": 40, "objects_rendered": 900, "objects_checked": 850,
                    "findings": 2, "repeat": 3, "bare_best_s": 1.5, "validate_best_s": 2.7,
                    "bare_runs_s": [2.0, 1.5, 1.75], "validate_runs_s": [3.5, 2.7, 3.0], "ratio": pytest.approx(1.8),
                    "ratio_goal_max": 2.0, "goal_met": True}
    text = validate_bench.render_text(figures)
    assert "ratio                : 1.80x (goal: at most 2x)" in text
    assert "bare kustomize build : 1.500 s (best of 3; runs 2.000, 1.500, 1.750)" in text


def test_validate_json_says_when_the_goal_is_missed() -> None:
    figures = validate_bench.Figures(1, 1, 1, 0, [1.0], [2.5])
    assert json.loads(validate_bench.to_json(figures))["goal_met"] is False


def test_conform_json_has_the_texts_figures() -> None:
    suite = conform_bench.SuiteRun(95.2, 0, {"passed": 27, "skipped": 1}, ["not shown"])
    overhead = conform_bench.Overhead([0.9] * 99 + [5.0], [0.8] * 99 + [4.0])
    data = json.loads(conform_bench.to_json(suite, overhead))
    assert data["bench"] == "conform"
    assert data["suite"] == {"wall_s": 95.2, "exit_code": 0, "counts": {"passed": 27, "skipped": 1},
                             "wall_goal_max_s": 360.0, "goal_met": True, "tail": []}
    assert data["overhead"] == {"requests": 100, "harness_p50_ms": 0.9, "harness_p99_ms": 5.0, "bare_p50_ms": 0.8,
                                "bare_p99_ms": 4.0, "added_p50_ms": pytest.approx(0.1), "added_goal_max_ms": 0.2,
                                "goal_met": True}


def test_conform_json_of_a_failed_suite_carries_its_output_and_none_without_it() -> None:
    failed = conform_bench.SuiteRun(400.0, 1, {}, ["E   assert 1 == 2"])
    data = json.loads(conform_bench.to_json(failed, conform_bench.Overhead([1.5], [1.0])))
    assert data["suite"]["goal_met"] is False and data["suite"]["tail"] == ["E   assert 1 == 2"]
    assert data["overhead"]["goal_met"] is False
    assert json.loads(conform_bench.to_json(None, conform_bench.Overhead([1.0], [1.0])))["suite"] is None
