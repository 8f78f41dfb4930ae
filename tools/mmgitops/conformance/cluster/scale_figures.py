"""`mmgitops bench scale`'s figures, from what scale.measure recorded: a summary of numbers and its table.

Pure, so that it can be tested on recorded measurements. The recipe's claims, which the table sets its figures
beside: about 20 of 100 models loaded at a time on 3 pods, the rest on standby, a cold load of 200-500 ms.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

RECIPE = {"loaded": "about 20", "standby": "about 80", "cold_ms": "200-500"}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def _ms(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}": None if (v := percentile(values, q)) is None else round(v, 1) for q in (50, 95, 99)}


def loaded_per_pod(timeline: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per pod: the fewest, the most and the last count of loaded models, and its capacity in bytes."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for point in timeline:
        if point.get("models") is not None:
            per[point["pod"]].append(point)
    return {pod: {"min": min(p["models"] for p in points), "max": max(p["models"] for p in points),
                  "last": points[-1]["models"], "capacity_bytes": points[-1].get("capacity_bytes") or 0,
                  "max_used_bytes": max(p.get("used_bytes") or 0 for p in points)}
            for pod, points in sorted(per.items())}


def summarize(measured: dict[str, Any]) -> dict[str, Any]:
    first, requests = measured["first_requests"], measured["stream"]
    cold = [r["ms"] for r in first if r["ok"] and r["cold"]]
    warm_first = [r["ms"] for r in first if r["ok"] and not r["cold"]]
    hot = [r["ms"] for r in requests if r["ok"] and r["hot"]]
    other = [r["ms"] for r in requests if r["ok"] and not r["hot"]]
    minutes = max(measured["plan"]["stream_s"], 1.0) / 60
    pods = loaded_per_pod(measured["timeline"])
    loaded = int(sum(p["last"] for p in pods.values()))
    over = [pod for pod, p in pods.items() if p["capacity_bytes"] and p["max_used_bytes"] > p["capacity_bytes"]]
    return {
        "models": measured["plan"]["models"], "pods": len(pods), **measured["registered"],
        "every_answered_s": measured["every_answered_s"],
        "loaded_at_end": loaded, "standby_at_end": measured["plan"]["models"] - loaded,
        "loaded_per_pod": {pod: int(p["last"]) for pod, p in pods.items()}, "pods_over_capacity": over,
        "first_requests_answered": sum(r["ok"] for r in first), "first_request_cold": len(cold),
        "cold_ms": _ms(cold), "first_request_warm_ms": _ms(warm_first),
        "stream_requests": len(requests), "stream_rps": round(len(requests) / (minutes * 60), 1),
        "hot_ms": _ms(hot), "outside_hot_set_ms": _ms(other),
        "evictions_per_min": round(measured["stream_evictions"] / minutes, 1),
        "cache_misses_per_min": round(measured["stream_cache_misses"] / minutes, 1),
        "failed_requests": sum(not r["ok"] for r in [*first, *requests]),
        "failures": sorted({r["error"] for r in [*first, *requests] if not r["ok"]})[:5],
        "memory_mib": measured.get("memory_mib", {}),
    }


def _q(ms: dict[str, float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:g}" for v in ms.values())


def table(s: dict[str, Any]) -> str:
    rows = [
        ("InferenceServices, pods", f"{s['models']} on {s['pods']}", ""),
        ("created in one pass (s)", f"{s['applied_s']:g}", ""),
        ("to every one with a status (s)", f"{s['every_status_s']:g}", ""),
        ("controller's lag to a status p50 / max (s)",
         f"{s['controller_status_p50_s']:g} / {s['controller_status_max_s']:g}", ""),
        ("to every one requested once (s)", f"{s['every_answered_s']:g}", ""),
        ("first requests answered", f"{s['first_requests_answered']} of {s['models']}", "all"),
        ("loaded at the end", str(s["loaded_at_end"]), RECIPE["loaded"]),
        ("standby at the end", str(s["standby_at_end"]), RECIPE["standby"]),
        ("loaded per pod", ", ".join(str(n) for n in s["loaded_per_pod"].values()) or "-", ""),
        ("cold loads, first requests p50 / p95 / p99 (ms)", _q(s["cold_ms"]), RECIPE["cold_ms"]),
        ("first requests to a Loaded model p50 / p95 / p99 (ms)", _q(s["first_request_warm_ms"]), ""),
        ("stream: requests, per second", f"{s['stream_requests']}, {s['stream_rps']:g}", ""),
        ("stream: hot set p50 / p95 / p99 (ms)", _q(s["hot_ms"]), ""),
        ("stream: outside the hot set p50 / p95 / p99 (ms)", _q(s["outside_hot_set_ms"]), ""),
        ("stream: evictions, cache misses per minute",
         f"{s['evictions_per_min']:g}, {s['cache_misses_per_min']:g}", ""),
        ("failed requests", str(s["failed_requests"]), "0"),
        ("pods over capacity", ", ".join(s["pods_over_capacity"]) or "none", "none"),
    ]
    rows += [(f"memory of pod {pod} (MiB)", f"{mib:g}", "") for pod, mib in s["memory_mib"].items()]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}{'measured':>24}  {'the recipe':>12}"]
    lines += [f"{label:<{width}}{value:>24}  {claim:>12}" for label, value, claim in rows]
    lines += [f"failure: {text}" for text in s["failures"]]
    return "\n".join(lines)

