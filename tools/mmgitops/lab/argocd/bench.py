"""`mmgitops bench sync`: how long the conformance profile takes to go healthy through Argo CD, and through
`mmgitops apply`, measured in one run on two fresh local clusters of the bench's own (named bench), side by side.

Argo CD: from the bootstrap applied to every app Synced and Healthy. apply: from the first object applied to
the last wave healthy. Both start after the samples' models are staged, which is the same work in both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError

BENCH_CLUSTER = "bench"
PROFILE, OVERLAY = "conformance", Path("overlays/conformance")
TIMEOUT = 900.0


def _fresh_cluster(progress: Callable[[str], None]) -> AbstractContextManager[dict[str, Any]]:
    from mmgitops.lab.argocd import instance
    from mmgitops.lab.cluster import cluster

    return cluster.fresh(BENCH_CLUSTER, progress, stop_first=instance.down)


def through_argocd(root: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    from mmgitops.lab.argocd import instance, sync

    with _fresh_cluster(progress):
        instance.up(root, progress)
        outcome = sync.run(root, PROFILE, TIMEOUT, lambda o: progress(
            f"Argo CD: {sum(r.done for r in o.rows)}/{len(o.rows)} apps healthy after {o.since_apply:.0f} s"))
        if not outcome.done:
            raise ToolError(f"bench sync: Argo CD did not sync {PROFILE} in {TIMEOUT:.0f} s")
        return {"seconds": outcome.since_apply, "apps": len(outcome.rows)}


def through_apply(root: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    from mmgitops.gitops import render
    from mmgitops.gitops.apply import apply as apply_mod
    from mmgitops.lab.cluster import profile_storage

    with _fresh_cluster(progress) as info:
        profile_storage.stage(root, info, progress)
        command = render.find_kubectl()
        started = time.monotonic()
        outcome = apply_mod.run(root / OVERLAY, root, command, info["kubeconfig"], False, TIMEOUT, progress)
        seconds = round(time.monotonic() - started, 1)
        if outcome.findings:
            raise ToolError(f"bench sync: apply {OVERLAY}: {outcome.findings[0].line()}")
        return {"seconds": seconds, "objects": len(outcome.applied)}


def run(root: Path, progress: Callable[[str], None], output: str) -> str:
    argocd = through_argocd(root, progress)
    applied = through_apply(root, progress)
    if output == "json":
        return json.dumps({"argocd": argocd, "apply": applied}, indent=2)
    return "\n".join([
        f"{'profile ' + PROFILE:<34} {'Argo CD':>10} {'mmgitops apply':>16}",
        f"{'to every app / wave healthy (s)':<34} {argocd['seconds']:>10.1f} {applied['seconds']:>16.1f}",
        f"{'Argo CD / apply':<34} {argocd['seconds'] / max(applied['seconds'], 0.1):>10.2f}x",
    ])
