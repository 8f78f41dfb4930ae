"""`mmgitops demo` (`make demo`): from a fresh clone to a conformance report, on this machine.

1. the local cluster (built and started if it is not up; reused if it is);
2. the `conformance` profile applied in wave order, until every wave is healthy;
3. the conformance suite in cluster mode, against the runtimes the ModelMesh stand-in runs;
4. the report's path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError
from mmgitops.gitops import render

PROFILE = Path("overlays/conformance")
CHURN_MS = 1500  # what the profile's fast-churn component sets


def prepare(root: Path, progress: Callable[[str], None], engine: str | None = None) -> dict[str, Any]:
    """Steps 1 and 2: the local cluster's info, once the profile is applied and healthy. engine: what backs
    the runtime pods (embedded or reference) of a cluster started here; a running cluster must match it."""
    from mmgitops.gitops.apply import apply as apply_mod
    from mmgitops.lab.cluster import cluster

    info = cluster.read_state()
    if info is None:
        info = cluster.up(progress, engine or "embedded")
    elif engine is not None and info.get("engine", "embedded") != engine:
        raise ToolError(f"the local cluster {cluster.name()!r} is up with the {info.get('engine', 'embedded')} "
                        f"mesh engine: `mmgitops local cluster down` first, or run the demo without --engine")
    elif "storage_config" not in info:
        raise ToolError(f"the local cluster {cluster.name()!r} was started by an older mmgitops (it has no S3 "
                        f"server): `mmgitops local cluster down`, then run the demo again")
    command = render.find_kubectl()
    render.check_kustomize(command)
    outcome = apply_mod.run(root / PROFILE, root, command, info["kubeconfig"], False, 300.0, progress)
    if outcome.findings:
        raise ToolError(f"apply {PROFILE}: {outcome.findings[0].line()}")
    return info


def conform(info: dict[str, Any], report: Path) -> int:
    """Step 3: the suite in cluster mode; pytest's output goes straight to the terminal."""
    from mmgitops.conformance import run

    return run.run({"target": "cluster", "kubeconfig": info["kubeconfig"], "storage_config": info["storage_config"],
                    "resolver": "port-forward", "min_churn_age_ms": CHURN_MS}, report)
