"""Validation wall time against bare `kustomize build` of the same directories, in one run."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mmgitops.gitops import render
from mmgitops.gitops.schemas import catalog as catalog_mod
from mmgitops.gitops.validate import validate

RATIO_GOAL = 2.0


@dataclass(frozen=True)
class Figures:
    kustomizations: int
    objects_rendered: int
    objects_checked: int
    findings: int
    bare_s: list[float]  # one wall time per repeat
    validate_s: list[float]

    @property
    def ratio(self) -> float:
        return min(self.validate_s) / min(self.bare_s)


def bare_kustomize(targets: list[render.Target], command: list[str]) -> float:
    dirs = [t.path for t in targets if t.kind == "Kustomization"]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda d: render.run_kustomize(command, d, with_origin=False), dirs))
    return time.perf_counter() - started


def measure(paths: list[Path], command: list[str], repeat: int, crds: Path | None) -> Figures:
    targets = render.discover(paths)
    catalog_mod.build(crds)  # warm the schema cache once, as any second run would find it
    bare, full = [], []
    for _ in range(repeat):
        bare.append(bare_kustomize(targets, command))
        started = time.perf_counter()
        result = validate(paths, catalog_mod.build(crds), command)
        full.append(time.perf_counter() - started)
    return Figures(sum(t.kind == "Kustomization" for t in targets), result.counts["objects_rendered"],
                   result.counts["objects_checked"], len(result.findings), bare, full)


def render_text(f: Figures) -> str:
    repeat = len(f.bare_s)
    return "\n".join([
        f"kustomizations: {f.kustomizations}, objects rendered: {f.objects_rendered}, "
        f"checked: {f.objects_checked}, findings: {f.findings}",
        f"bare kustomize build : {min(f.bare_s):.3f} s (best of {repeat}; runs "
        f"{', '.join(f'{b:.3f}' for b in f.bare_s)})",
        f"mmgitops validate    : {min(f.validate_s):.3f} s (best of {repeat}; runs "
        f"{', '.join(f'{v:.3f}' for v in f.validate_s)})",
        f"ratio                : {f.ratio:.2f}x (goal: at most {RATIO_GOAL:g}x)",
    ])


def to_json(f: Figures) -> str:
    return json.dumps({
        "bench": "validate", "kustomizations": f.kustomizations, "objects_rendered": f.objects_rendered,
        "objects_checked": f.objects_checked, "findings": f.findings, "repeat": len(f.bare_s),
        "bare_best_s": min(f.bare_s), "validate_best_s": min(f.validate_s), "bare_runs_s": f.bare_s,
        "validate_runs_s": f.validate_s, "ratio": f.ratio, "ratio_goal_max": RATIO_GOAL,
        "goal_met": f.ratio <= RATIO_GOAL}, indent=2)


def run(paths: list[Path], command: list[str], repeat: int, crds: Path | None, output: str = "text") -> str:
    figures = measure(paths, command, repeat, crds)
    return to_json(figures) if output == "json" else render_text(figures)
