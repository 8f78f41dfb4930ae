"""`mmgitops bench mesh`'s figures, as a side-by-side table (a column per engine) and as one JSON object.

Pure: no processes, no gRPC, so the rendering can be tested on fake figures and the command line can import
it to validate `--engine` at parse time without loading MLServer.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

ENGINES = ("embedded", "reference")
NO_VALUE = "-"
WRAP = 110

# The goals a change is judged by. The comparison goal is the point of running both engines: the embedded
# imitation must not cost more than the real ModelMesh on what the suite measures, or it would flatter checks.
ADDED_P50_GOAL_MS = 1.0
THROUGHPUT_RATIO_GOAL = 0.70
COLD_P50_GOAL_MS = 150.0
HOT_P99_OVER_WARM_GOAL = 3.0
COMPARED = ("added_p50_ms", "added_p99_ms", "forwarded_added_p50_ms", "forwarded_added_p99_ms")
GOAL_TEXT = "the embedded mesh's added latency stays at or below the reference's (p50 and p99, holder and forwarded)"

# (section, [(key, label, decimals)]): the table's rows, and the only keys the JSON object's figures carry.
SECTIONS: list[tuple[str, list[tuple[str, str, int]]]] = [
    ("warm latency, one model, sequential requests", [
        (f"{path}_{q}_ms", f"{label}, {q} ms", 3)
        for path, label in (("direct", "bare MLServer on the holding pod"), ("mesh", "mesh, pod holding the copy"),
                            ("forwarded", "mesh, forwarded by another pod"), ("added", "added by the mesh, holder"),
                            ("forwarded_added", "added by the mesh, forwarded"),
                            ("bridge_added", "bridge: TCP round trip added"))
        for q in ("p50", "p99")]),
    ("throughput, concurrent clients", [
        ("direct_rps", "bare MLServer, req/s", 0),
        ("mesh_rps", "mesh, pod holding the copy, req/s", 0),
        ("forwarded_rps", "mesh, forwarded, req/s", 0),
        ("throughput_ratio", "mesh / bare MLServer", 2)]),
    ("cold loads (S3 pull and MLServer load included)", [
        ("cold_p50_ms", "p50 ms", 1),
        ("cold_p95_ms", "p95 ms", 1),
        ("cold_max_ms", "max ms", 1),
        ("cold_misses", "cache misses counted", 0)]),
    ("density (many more models registered than fit)", [
        ("density_registered", "models registered", 0),
        ("density_hot_p50_ms", "hot set p50 ms", 3),
        ("density_hot_p99_ms", "hot set p99 ms", 3),
        ("density_cold_p50_ms", "cold requests p50 ms", 1),
        ("density_evictions", "evictions during the run", 0),
        ("density_failures", "failed registrations or requests", 0),
        ("density_hot_p99_over_warm_p50", "hot p99 / warm p50 (mesh, holder)", 2)]),
]
KEYS = [key for _, rows in SECTIONS for key, _, _ in rows]


@dataclass
class EngineFigures:
    """One engine's figures by key (numbers only), and for each figure it could not measure, why."""

    engine: str
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def skip(self, keys: list[str] | tuple[str, ...], reason: str) -> None:
        for key in keys:
            if key not in self.values:
                self.skipped[key] = reason

    def measured(self) -> bool:
        return bool(self.values)


@dataclass(frozen=True)
class Settings:
    instances: int
    samples: int
    capacity_bytes: int
    requests: int
    seconds: float
    clients: int
    cold_loads: int
    models: int
    hot: int
    rounds: int
    density_capacity_bytes: int


def engines(text: str) -> list[str]:
    """`--engine embedded,reference`: known names, each once, in the order given (the order they run in)."""
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if name not in ENGINES:
            raise argparse.ArgumentTypeError(f"{name!r}: expected {' or '.join(ENGINES)} (comma-separated)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: an engine is named twice")
    return names


engines.__name__ = "engine list"  # argparse names the type in its error line


def timed(call: Callable[[], Any], n: int) -> list[float]:
    """n calls, each timed in ms."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# ---- goals -------------------------------------------------------------------------------------------------
def goals(figures: list[EngineFigures]) -> list[dict[str, Any]]:
    """Each goal with its figures and whether it was met; met is None when a figure it needs is missing."""
    by_engine = {f.engine: f.values for f in figures}
    out: list[dict[str, Any]] = []
    if "embedded" in by_engine and "reference" in by_engine:
        for key in COMPARED:
            mine, ref = by_engine["embedded"].get(key), by_engine["reference"].get(key)
            out.append({"goal": f"embedded {key} <= reference {key}", "key": key, "embedded": mine,
                        "reference": ref, "met": None if mine is None or ref is None else mine <= ref})
    if "embedded" in by_engine:
        values = by_engine["embedded"]
        for key, op, limit in (("added_p50_ms", "<=", ADDED_P50_GOAL_MS),
                               ("throughput_ratio", ">=", THROUGHPUT_RATIO_GOAL),
                               ("cold_p50_ms", "<=", COLD_P50_GOAL_MS),
                               ("density_hot_p99_over_warm_p50", "<=", HOT_P99_OVER_WARM_GOAL)):
            value = values.get(key)
            met = None if value is None else value <= limit if op == "<=" else value >= limit
            out.append({"goal": f"embedded {key} {op} {limit:g}", "key": key, "embedded": value, "limit": limit,
                        "met": met})
    return out


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "missed"


# ---- rendering ---------------------------------------------------------------------------------------------
def cell(figures: EngineFigures, key: str, decimals: int) -> str:
    value = figures.values.get(key)
    return NO_VALUE if value is None else f"{value:,.{decimals}f}"


def render_text(settings: Settings, figures: list[EngineFigures], date: str) -> str:
    label_width = max(len(label) for _, rows in SECTIONS for _, label, _ in rows) + 2
    width = max(12, *(len(f.engine) + 2 for f in figures))
    head = [f"mmgitops bench mesh, {date}: {settings.instances} pods per engine, {settings.samples} samples, "
            f"{settings.requests} sequential requests per path (interleaved), {settings.clients} clients for "
            f"{settings.seconds:g} s per path, {settings.cold_loads} cold loads; density: {settings.models} models "
            f"on pods of {settings.density_capacity_bytes:,} bytes, hot set {settings.hot}, {settings.rounds} rounds.",
            f"Goal: {GOAL_TEXT}.",
            "Added = the mesh minus the bare MLServer on the same pod, from the same client. The reference's bare "
            "MLServer is inside its network namespace and is reached through a bridge of the same kind as the "
            "pods, so its added figures exclude the bridge, whose own cost is the bridge row; its absolute "
            "latency, throughput and cold-load figures include one bridge hop."]
    lines = [*(wrapped for paragraph in head for wrapped in textwrap.wrap(paragraph, WRAP)), "",
             f"{'':<{label_width}}" + "".join(f"{f.engine:>{width}}" for f in figures)]
    for title, rows in SECTIONS:
        lines.append(title)
        for key, label, decimals in rows:
            lines.append(f"  {label:<{label_width - 2}}" + "".join(f"{cell(f, key, decimals):>{width}}"
                                                                     for f in figures))
    lines.append("")
    for goal in goals(figures):
        if "reference" in goal:
            shown = " vs ".join(NO_VALUE if goal[e] is None else f"{goal[e]:.3f}" for e in ("embedded", "reference"))
            lines.append(f"goal {goal['goal']}: {shown} ms: {verdict(goal['met'])}")
        else:
            shown = NO_VALUE if goal["embedded"] is None else f"{goal['embedded']:.3f}"
            lines.append(f"goal {goal['goal']}: {shown}: {verdict(goal['met'])}")
    skipped = [(f.engine, key, f.skipped[key]) for f in figures for key in KEYS if key in f.skipped]
    if skipped:
        lines.append(f"not measured ({NO_VALUE} in the table):")
        # One line per engine and reason: a failed phase skips several figures for the same reason.
        grouped: dict[tuple[str, str], list[str]] = {}
        for engine, key, reason in skipped:
            grouped.setdefault((engine, reason), []).append(key)
        lines += [f"  {engine}: {', '.join(keys)}: {reason}" for (engine, reason), keys in grouped.items()]
    return "\n".join(lines)


def to_json(settings: Settings, figures: list[EngineFigures], date: str) -> str:
    return json.dumps({
        "bench": "mesh", "date": date, "goal": GOAL_TEXT, "settings": asdict(settings),
        "engines": {f.engine: {"figures": {k: f.values[k] for k in KEYS if k in f.values},
                               "skipped": {k: f.skipped[k] for k in KEYS if k in f.skipped}} for f in figures},
        "goals": goals(figures)}, indent=2)
