"""The conformance report: DIR/report.html rendered from DIR/results.json, and the terminal's summary table.

The HTML is one self-contained file (plots are inline PNGs) so it can be attached to a ticket or a CI run.
"""

from __future__ import annotations

import base64
import io
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmgitops.conformance.groups import GROUPS
from mmgitops.conformance.verdict import NOT_REACHED
from mmgitops.errors import ToolError

ORDER = tuple(GROUPS)
PLOTTED = ("cold_ms", "warm_ms", "eviction_timeline", "models_per_pod")
STATE_COLOURS = {"Loaded": "tab:green", "Loading": "tab:orange", "Standby": "tab:gray", "Gone": "tab:red",
                 "NotLoaded": "tab:gray", "Failed": "tab:red"}


# What the page reads of results.json (docs/conformance.md, results.json); anything else in it is left alone.
_TEXT, _NUMBER = {"type": "string"}, {"type": "number"}
RESULTS_SCHEMA = {
    "type": "object", "required": ["tests"],
    "properties": {
        "tests": {"type": "array", "items": {
            "type": "object", "required": ["nodeid", "group", "outcome"],
            "properties": {"nodeid": _TEXT, "group": _TEXT, "outcome": _TEXT, "duration_s": _NUMBER,
                           "call_s": _NUMBER, "skip_reason": _TEXT, "message": _TEXT, "figures": {"type": "object"}}}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "options": {"type": "object"}, "target": {"type": "object"}, "installed": {"type": "object"},
        "verdict": _TEXT, "verdict_line": _TEXT, "started": _TEXT, "duration_s": _NUMBER,
    },
}


def load(directory: Path) -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    path = directory / "results.json"
    if not path.is_file():
        raise ToolError(f"{path}: no such file (run `mmgitops conform --report {directory}` first)")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ToolError(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise ToolError(f"{path}: JSON nested too deeply to read (not the results.json `mmgitops conform` "
                        "writes)") from None
    error = next(iter(sorted(Draft202012Validator(RESULTS_SCHEMA).iter_errors(run), key=lambda e: e.path)), None)
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "(document)"
        raise ToolError(f"{path}: {where}: {error.message} (not the results.json `mmgitops conform` writes)")
    return run


def _numbers(value: Any) -> list[float]:
    if not isinstance(value, list):
        return []
    return [float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool)]


def _short(number: float) -> str:
    return f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"


def key_figures(figures: dict[str, Any]) -> str:
    """One line per check: scalars as they are, lists as n and median, mappings as their items."""
    parts = []
    for name, figure in figures.items():
        value = figure.get("value") if isinstance(figure, dict) else figure
        unit = f" {figure['unit']}" if isinstance(figure, dict) and figure.get("unit") else ""
        if isinstance(value, bool) or value is None or isinstance(value, str):
            parts.append(f"{name}={value}")
        elif isinstance(value, int | float):
            parts.append(f"{name}={_short(value)}{unit}")
        elif name == "eviction_timeline" and isinstance(value, list):
            parts.append(f"{name}: {len(value)} events")
        elif isinstance(value, list) and (numbers := _numbers(value)):
            parts.append(f"{name}: n={len(numbers)} p50={_short(statistics.median(numbers))}{unit}")
        elif isinstance(value, dict):
            items = ", ".join(f"{k}={v}" for k, v in list(value.items())[:6])
            parts.append(f"{name}: {items}{', ...' if len(value) > 6 else ''}")
        else:
            parts.append(f"{name}: {len(value) if hasattr(value, '__len__') else '?'} items")
    return "; ".join(parts)


def _group_key(group: str) -> tuple[int, str]:
    return (ORDER.index(group) if group in ORDER else len(ORDER), group)


def by_group(tests: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for test in tests:
        groups.setdefault(test.get("group") or "other", []).append(test)
    return dict(sorted(groups.items(), key=lambda item: _group_key(item[0])))


def summary_table(tests: list[dict[str, Any]]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in ("group", "passed", "failed", "not reached", "skipped"):
        table.add_column(column, justify="left" if column == "group" else "right")
    table.add_column("key figures", overflow="fold")
    for group, members in by_group(tests).items():
        count = {o: sum(1 for t in members if t["outcome"] == o)
                 for o in ("passed", "failed", "error", NOT_REACHED, "skipped")}
        failed, missed = count["failed"] + count["error"], count[NOT_REACHED]
        figures = "; ".join(f for t in members if (f := key_figures(t.get("figures") or {})))
        table.add_row(group, str(count["passed"]), f"[red]{failed}[/red]" if failed else "0",
                      f"[yellow]{missed}[/yellow]" if missed else "0", str(count["skipped"]),
                      escape(figures) if figures else "-")
    return table


# ---- plots ---------------------------------------------------------------------------------------


def _figure_values(tests: list[dict[str, Any]], name: str) -> list[tuple[str, Any]]:
    found = []
    for test in tests:
        figure = (test.get("figures") or {}).get(name)
        if figure is not None:
            found.append((test["nodeid"], figure.get("value") if isinstance(figure, dict) else figure))
    return found


def _recorded(tests: list[dict[str, Any]], name: str, kind: type) -> list[tuple[str, Any]]:
    """The non-empty figures `name` of type `kind`, each with the node id of the check that recorded it."""
    return [(nodeid, value) for nodeid, value in _figure_values(tests, name) if isinstance(value, kind) and value]


def _subplots(rows: int, columns: int, size: tuple[float, float]) -> tuple[Any, Any]:
    # matplotlib takes a second to import: only a report with plots pays for it.
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=size, squeeze=False)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _latency(tests: list[dict[str, Any]]) -> str | None:
    cold = [v for _, value in _figure_values(tests, "cold_ms") for v in _numbers(value)]
    warm = [v for _, value in _figure_values(tests, "warm_ms") for v in _numbers(value)]
    if not cold and not warm:
        return None
    series = [(label, data) for label, data in (("cold", cold), ("warm", warm)) if data]
    fig, axes = _subplots(1, 2, (10, 3.6))
    box, hist = axes[0]
    box.boxplot([data for _, data in series], tick_labels=[f"{label} (n={len(data)})" for label, data in series])
    # Cold loads and warm requests differ by orders of magnitude: only a log axis shows both.
    box.set_yscale("log")
    box.set_ylabel("ms")
    import numpy

    low, high = min(min(d) for _, d in series), max(max(d) for _, d in series)
    log = 0 < low < high
    bins = numpy.geomspace(low, high, 40) if log else 40
    for label, data in series:
        hist.hist(data, bins=bins, alpha=0.6, label=label)
    if log:
        hist.set_xscale("log")
    hist.set_xlabel("ms")
    hist.set_ylabel("requests")
    hist.legend()
    return _png(fig)


def _timeline(tests: list[dict[str, Any]]) -> str | None:
    recorded = _recorded(tests, "eviction_timeline", list)
    if not recorded:
        return None
    fig, axes = _subplots(len(recorded), 1, (10, 0.5 + 2.6 * len(recorded)))
    for ax, (nodeid, events) in zip(axes[:, 0], recorded, strict=True):
        rows: dict[str, list[tuple[float, str]]] = {}
        for event in events:
            rows.setdefault(str(event.get("model", "?")), []).append((float(event.get("t_s", 0)),
                                                                       str(event.get("state", "?"))))
        end = max(t for row in rows.values() for t, _ in row) or 1.0
        seen: set[str] = set()
        for y, (_, row) in enumerate(sorted(rows.items())):
            row.sort()
            # Each state lasts until the model's next event, the last one until the end of the timeline.
            for (start, state), (stop, _) in zip(row, [*row[1:], (end * 1.08, "")], strict=True):
                ax.broken_barh([(start, max(stop - start, end * 0.005))], (y - 0.35, 0.7),
                               color=STATE_COLOURS.get(state, "tab:blue"), label=None if state in seen else state)
                seen.add(state)
        ax.set_yticks(range(len(rows)), sorted(rows))
        ax.set_xlabel("s since the check started")
        ax.set_title(nodeid.split("::")[-1], fontsize=9)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def _packing(tests: list[dict[str, Any]]) -> str | None:
    recorded = _recorded(tests, "models_per_pod", dict)
    if not recorded:
        return None
    fig, axes = _subplots(1, len(recorded), (max(5, 4.5 * len(recorded)), 3.4))
    for ax, (nodeid, counts) in zip(axes[0], recorded, strict=True):
        pods = sorted(counts)
        bars = ax.bar(pods, [float(counts[p]) for p in pods], color="tab:blue", width=0.6)
        ax.bar_label(bars, fmt="%g")
        ax.set_ylabel("models")
        ax.set_title(nodeid.split("::")[-1], fontsize=9)
        ax.tick_params(axis="x", labelrotation=30)
    return _png(fig)


PLOTS = (("Cold vs warm latency", "cold_ms / warm_ms", _latency),
         ("Eviction timeline", "eviction_timeline", _timeline),
         ("Models per pod", "models_per_pod", _packing))


def plots(tests: list[dict[str, Any]]) -> list[dict[str, str | None]]:
    import matplotlib

    matplotlib.use("Agg")  # no display: CI and headless machines
    return [{"title": title, "figures": figures, "png": draw(tests)} for title, figures, draw in PLOTS]


# ---- the page ------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ModelMesh conformance report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; font-size: 0.9em; }
th { background: #f3f3f3; }
.passed { color: #1a7f37; } .failed, .error, .xpassed { color: #c00; font-weight: bold; }
.skipped, .xfailed { color: #888; } .note { color: #666; font-style: italic; }
.not-reached, .incomplete { color: #b35900; font-weight: bold; } .certified { color: #1a7f37; font-weight: bold; }
p.verdict { font-size: 1.2em; }
code { font-size: 0.95em; } img { max-width: 100%; }
</style></head><body>
<h1>ModelMesh conformance report</h1>
{% if run.verdict_line %}<p class="verdict {{ run.verdict }}">{{ run.verdict_line }}</p>{% endif %}
<p>Started {{ run.started }}, {{ run.duration_s }} s; target <code>{{ run.options.target or "mesh" }}</code>,
{% if run.options.endpoint %}endpoints <code>{{ run.options.endpoint }}</code>
{%- elif run.target.engine == "reference" %}reference pods, ModelMesh <code>{{ run.target.reference_commit }}</code>
{%- elif run.options.target == "cluster" %}cluster <code>{{ run.target.server }}</code>
{%- if run.target.namespace %}, namespace <code>{{ run.target.namespace }}</code>{% endif %}
{%- if run.target.runner %}, as {{ run.target.runner }}{% endif %}
{%- if run.target.mesh_engine %}, runtime pods backed by the {{ run.target.mesh_engine }} engine
{%- if run.target.reference_commit %} (ModelMesh <code>{{ run.target.reference_commit }}</code>){% endif %}{% endif %}
{%- if run.target.controller %}, controller {{ run.target.controller }}{% endif %}
{%- else %}embedded local mesh{% endif %}
{%- if run.options.markexpr %}, <code>-m {{ run.options.markexpr }}</code>{% endif %}.
{% if run.installed %}Profile <code>{{ run.installed.profile }}</code> installed by {{ run.installed.by }}
{%- if run.installed.commit %} from commit <code>{{ run.installed.commit[:12] }}</code>
{%- if run.installed.uncommitted_changes %} (a snapshot with uncommitted changes){% endif %}, {{ run.installed.apps }}
apps Synced and Healthy in {{ run.installed.sync_seconds }} s{% endif %}.
{% endif %}
{% for outcome, n in run.counts|dictsort %}<span class="{{ outcome|replace(" ", "-") }}">{{ n }} {{ outcome }}</span>
{%- if not loop.last %}, {% endif %}{% endfor %}.</p>
<h2>By group</h2>
<table><tr><th>group</th><th>passed</th><th>failed</th><th>not reached</th><th>skipped</th></tr>
{% for group, members in groups.items() %}<tr><td>{{ group }}</td>
<td>{{ members|selectattr("outcome", "equalto", "passed")|list|length }}</td>
<td>{{ members|selectattr("outcome", "in", ["failed", "error"])|list|length }}</td>
<td>{{ members|selectattr("outcome", "equalto", "not reached")|list|length }}</td>
<td>{{ members|selectattr("outcome", "equalto", "skipped")|list|length }}</td></tr>
{% endfor %}</table>
<h2>Checks</h2>
<table><tr><th>group</th><th>test</th><th>outcome</th>
<th title="the check itself; with its fixtures in the tooltip">time</th><th>key figures</th><th>why</th></tr>
{% for group, members in groups.items() %}{% for t in members %}<tr><td>{{ group }}</td>
<td title="{{ t.nodeid }}">{{ t.nodeid.split("::")[-1] }}</td><td class="{{ t.outcome|replace(" ", "-") }}">
{{- t.outcome }}</td>
<td title="{{ "%.1f"|format(t.duration_s or 0) }} s with fixtures">
{{- "%.2f"|format(t.call_s or t.duration_s or 0) }} s</td>
<td>{{ t.key }}</td><td>{{ t.skip_reason or t.message }}</td></tr>
{% endfor %}{% endfor %}</table>
<h2>Plots</h2>
{% for plot in plots %}<h3>{{ plot.title }}</h3>
{% if plot.png %}<img alt="{{ plot.title }}" src="data:image/png;base64,{{ plot.png }}">
{% else %}<p class="note">Left out: no check recorded {{ plot.figures }} in this run.</p>{% endif %}
{% endfor %}
<p class="note">From results.json in this directory; re-render with <code>mmgitops conform report DIR</code>.</p>
</body></html>
"""


def render(directory: Path) -> Path:
    """Write directory/report.html from directory/results.json; returns its path."""
    import jinja2

    run = load(directory)
    tests = [{**t, "key": key_figures(t.get("figures") or {})} for t in run.get("tests", [])]
    run.setdefault("options", {})
    run.setdefault("target", {})
    run.setdefault("counts", {})
    page = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined).from_string(PAGE).render(
        run=run, groups=by_group(tests), plots=plots(tests))
    out = directory / "report.html"
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as error:
        raise ToolError(f"{out}: cannot write: {error.strerror or error}") from None
    return out
