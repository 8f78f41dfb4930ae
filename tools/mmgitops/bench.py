"""Validation wall time against bare `kustomize build` of the same directories, in one run."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mmgitops import render
from mmgitops.schemas import catalog as catalog_mod
from mmgitops.validate import validate


def bare_kustomize(targets: list[render.Target], command: list[str]) -> float:
    dirs = [t.path for t in targets if t.kind == "Kustomization"]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(lambda d: render.run_kustomize(command, d, with_origin=False), dirs))
    return time.perf_counter() - started


def run(paths: list[Path], command: list[str], repeat: int, crds: Path | None) -> str:
    targets = render.discover(paths)
    catalog_mod.build(crds)  # warm the schema cache once, as any second run would find it
    bare, full = [], []
    for _ in range(repeat):
        bare.append(bare_kustomize(targets, command))
        started = time.perf_counter()
        result = validate(paths, catalog_mod.build(crds), command)
        full.append(time.perf_counter() - started)
    best_bare, best_full = min(bare), min(full)
    kustomizations = sum(t.kind == "Kustomization" for t in targets)
    return "\n".join([
        f"kustomizations: {kustomizations}, objects rendered: {result.counts['objects_rendered']}, "
        f"checked: {result.counts['objects_checked']}, findings: {len(result.findings)}",
        f"bare kustomize build : {best_bare:.3f} s (best of {repeat}; runs {', '.join(f'{b:.3f}' for b in bare)})",
        f"mmgitops validate    : {best_full:.3f} s (best of {repeat}; runs {', '.join(f'{f:.3f}' for f in full)})",
        f"ratio                : {best_full / best_bare:.2f}x (goal: at most 2x)",
    ])
