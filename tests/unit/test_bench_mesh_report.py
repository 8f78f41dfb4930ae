"""`mmgitops bench mesh`'s figures: the side-by-side table and the JSON object, from fake figures (no processes)."""

from __future__ import annotations

import json

import pytest
from mmgitops.cli.main import parser
from mmgitops.lab.mesh import bench_report as report

pytestmark = pytest.mark.unit

SETTINGS = report.Settings(instances=3, samples=10, capacity_bytes=64 * 2**20, requests=200, seconds=2.0, clients=4,
                           cold_loads=5, models=1000, hot=50, rounds=10, density_capacity_bytes=10_076_160)


def embedded() -> report.EngineFigures:
    figures = report.EngineFigures("embedded", {
        "direct_p50_ms": 0.8, "direct_p99_ms": 1.5, "mesh_p50_ms": 1.1, "mesh_p99_ms": 2.0,
        "forwarded_p50_ms": 1.9, "forwarded_p99_ms": 3.0, "added_p50_ms": 0.3, "added_p99_ms": 0.5,
        "forwarded_added_p50_ms": 1.1, "forwarded_added_p99_ms": 1.5, "direct_rps": 1500.0, "mesh_rps": 1200.0,
        "forwarded_rps": 800.0, "throughput_ratio": 0.8, "cold_p50_ms": 120.5, "cold_p95_ms": 180.25,
        "cold_max_ms": 200.0, "cold_misses": 5.0, "density_registered": 1000.0, "density_hot_p50_ms": 1.2,
        "density_hot_p99_ms": 2.4, "density_cold_p50_ms": 130.0, "density_evictions": 410.0,
        "density_failures": 0.0, "density_hot_p99_over_warm_p50": 2.18})
    figures.skip(["bridge_added_p50_ms", "bridge_added_p99_ms"], "no bridge")
    return figures


def reference() -> report.EngineFigures:
    figures = report.EngineFigures("reference", {
        "direct_p50_ms": 1.0, "direct_p99_ms": 2.0, "mesh_p50_ms": 3.0, "mesh_p99_ms": 4.0,
        "forwarded_p50_ms": 5.5, "forwarded_p99_ms": 9.0, "added_p50_ms": 2.0, "added_p99_ms": 2.0,
        "forwarded_added_p50_ms": 4.5, "forwarded_added_p99_ms": 7.0, "bridge_added_p50_ms": 0.04,
        "bridge_added_p99_ms": 0.2, "direct_rps": 700.0, "mesh_rps": 250.0, "forwarded_rps": 150.0,
        "throughput_ratio": 0.36, "cold_p50_ms": 1262.0, "cold_p95_ms": 1500.0, "cold_max_ms": 1600.0,
        "cold_misses": 5.0})
    figures.skip(report.KEYS[-7:], "density failed: the mesh did not start: boom")
    return figures


def row(text: str, label: str) -> list[str]:
    """The cells of the table row whose label is `label`."""
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.strip()[len(label):].split()


def test_a_column_per_engine_in_the_order_they_ran() -> None:
    text = report.render_text(SETTINGS, [embedded(), reference()], "2026-12-03")
    header = next(line for line in text.splitlines() if line.strip() == "embedded   reference")
    assert header.index("embedded") < header.index("reference")
    assert row(text, "added by the mesh, holder, p50 ms") == ["0.300", "2.000"]
    assert row(text, "added by the mesh, forwarded, p99 ms") == ["1.500", "7.000"]
    assert row(text, "mesh, pod holding the copy, req/s") == ["1,200", "250"]
    assert row(text, "p95 ms") == ["180.2", "1,500.0"]


def test_a_missing_figure_is_a_dash_with_its_reason_once() -> None:
    text = report.render_text(SETTINGS, [embedded(), reference()], "2026-12-03")
    assert row(text, "bridge: TCP round trip added, p50 ms") == ["-", "0.040"]
    assert row(text, "hot set p99 ms") == ["2.400", "-"]
    assert "  embedded: bridge_added_p50_ms, bridge_added_p99_ms: no bridge" in text
    reasons = [line for line in text.splitlines() if "density failed" in line]
    assert reasons == ["  reference: density_registered, density_hot_p50_ms, density_hot_p99_ms, density_cold_p50_ms, "
                       "density_evictions, density_failures, density_hot_p99_over_warm_p50: density failed: the mesh "
                       "did not start: boom"]


def test_the_goal_is_stated_and_judged_per_figure() -> None:
    figures = reference()
    figures.values["added_p99_ms"] = 0.4  # below the embedded 0.5: that comparison is missed
    text = report.render_text(SETTINGS, [embedded(), figures], "2026-12-03")
    assert "Goal: the embedded mesh's added latency stays at or below the reference's" in text
    assert "goal embedded added_p50_ms <= reference added_p50_ms: 0.300 vs 2.000 ms: met" in text
    assert "goal embedded added_p99_ms <= reference added_p99_ms: 0.500 vs 0.400 ms: missed" in text
    assert "goal embedded density_hot_p99_over_warm_p50 <= 3: 2.180: met" in text


def test_one_engine_alone_has_no_comparison() -> None:
    text = report.render_text(SETTINGS, [embedded()], "2026-12-03")
    header = next(line for line in text.splitlines() if line.strip() == "embedded")
    assert row(text, "added by the mesh, holder, p50 ms") == ["0.300"], header
    assert "<= reference" not in text
    assert "goal embedded throughput_ratio >= 0.7: 0.800: met" in text


def test_json_has_the_same_figures_as_numbers_with_units_in_the_keys() -> None:
    data = json.loads(report.to_json(SETTINGS, [embedded(), reference()], "2026-12-03"))
    assert set(data) == {"bench", "date", "goal", "settings", "engines", "goals"}
    assert data["bench"] == "mesh" and data["date"] == "2026-12-03"
    assert data["settings"]["requests"] == 200 and data["settings"]["seconds"] == 2.0
    assert list(data["engines"]) == ["embedded", "reference"]
    mine, ref = data["engines"]["embedded"], data["engines"]["reference"]
    assert mine["figures"]["added_p50_ms"] == 0.3 and mine["figures"]["mesh_rps"] == 1200.0
    assert "bridge_added_p50_ms" not in mine["figures"]
    assert mine["skipped"] == {"bridge_added_p50_ms": "no bridge", "bridge_added_p99_ms": "no bridge"}
    assert ref["figures"]["bridge_added_p99_ms"] == 0.2
    assert "density_hot_p99_ms" in ref["skipped"]
    for engine in data["engines"].values():
        for key, value in engine["figures"].items():
            assert isinstance(value, int | float), key
            assert key in report.KEYS
            assert key.endswith(("_ms", "_rps", "_ratio", "_misses", "_registered", "_evictions", "_failures",
                                 "_over_warm_p50")), key
    compared = {g["key"]: g for g in data["goals"] if "reference" in g}
    assert compared["added_p50_ms"] == {"goal": "embedded added_p50_ms <= reference added_p50_ms",
                                        "key": "added_p50_ms", "embedded": 0.3, "reference": 2.0, "met": True}


def test_a_goal_without_its_figure_is_not_judged() -> None:
    data = json.loads(report.to_json(SETTINGS, [embedded(), reference()], "2026-12-03"))
    hot = next(g for g in data["goals"] if g["key"] == "density_hot_p99_over_warm_p50")
    assert hot["met"] is True
    mine = embedded()
    del mine.values["added_p50_ms"]
    goal = next(g for g in report.goals([mine, reference()]) if g["key"] == "added_p50_ms")
    assert goal["met"] is None
    assert "0.300" not in report.render_text(SETTINGS, [mine, reference()], "d").split("goal embedded added_p50_ms")[1]


@pytest.mark.parametrize(("given", "engines"), [
    ([], ["embedded"]),
    (["--engine", "reference"], ["reference"]),
    (["--engine", "reference,embedded"], ["reference", "embedded"]),
    (["--engine", " embedded , reference"], ["embedded", "reference"]),
])
def test_engine_list(given: list[str], engines: list[str]) -> None:
    assert parser().parse_args(["bench", "mesh", *given]).engine == engines


@pytest.mark.parametrize(("given", "message"), [
    ("embedded,docker", "argument --engine: 'docker': expected embedded or reference (comma-separated)"),
    ("embedded,embedded", "argument --engine: 'embedded,embedded': an engine is named twice"),
    ("", "argument --engine: '': expected embedded or reference"),
])
def test_bad_engine_lists_are_refused_at_parse_time(given: str, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["bench", "mesh", "--engine", given])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("bench", ["validate", "mesh", "conform"])
def test_every_bench_takes_format_json(bench: str) -> None:
    assert parser().parse_args(["bench", bench]).format == "text"
    assert parser().parse_args(["bench", bench, "--format", "json"]).format == "json"
