"""`mmgitops bench scale`: the recipe's scale on the real components, on a fresh local cluster of its own (named
scale): ModelMesh made Managed as a platform team does (the real modelmesh-serving controller), a GPU
ServingRuntime of 3 replicas whose pods are reference pods (the real ModelMesh, rest-proxy, adapter and MLServer;
`--engine embedded` for the embedded mesh), 100 InferenceServices created in one pass, each requested once, then a
request stream with a hot set (conformance/cluster/scale.py). Prints the figures beside the recipe's claims.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmgitops.errors import ToolError

if TYPE_CHECKING:
    from mmgitops.conformance.cluster.scale import Plan

SCALE_CLUSTER = "scale"
RUNTIME = "scale-gpu"
# Each pod's cache holds this many one-unit models: ModelMesh refuses to start with room for fewer than ten models
# of the adapter's default size (ModelMesh.java setupMemory), and the suite's runtimes set that size to one unit.
MODELS_PER_POD = 9
# ModelMesh's churn guard when the platform leaves it alone: ten times a third of the runtime's
# modelLoadingTimeoutMillis (ModelMesh.java, minChurnAgeMs), 90 s in the repo's runtimes.
DEFAULT_CHURN_AGE_MS = 10 * 90_000 // 3


def pod_memory(pods_root: Path, namespace: str) -> dict[str, float]:
    """MiB resident per runtime pod: every process the pod backer started for it, and their children."""
    children: dict[int, list[int]] = defaultdict(list)
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in stat.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        pid = int(stat.parent.name)
        children[int(fields.get("PPid", "0").strip() or 0)].append(pid)
        rss[pid] = int((fields.get("VmRSS") or "0 kB").split()[0])
    from mmgitops.lab.kubelet import backer

    per_pod: dict[str, int] = defaultdict(int)
    for name, pid in backer.recorded(pods_root).items():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != namespace:
            continue
        todo, seen = [pid], set()
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                per_pod[parts[1]] += rss.get(p, 0)
                todo += children.get(p, [])
    return {pod: round(kb / 1024, 1) for pod, kb in sorted(per_pod.items())}


def run(progress: Callable[[str], None], engine: str, replicas: int, plan: Plan, churn_age_ms: int | None,
        output: str) -> str:
    from mmgitops.conformance.cluster import objects, scale, scale_figures
    from mmgitops.conformance.cluster import session as cluster_session
    from mmgitops.conformance.cluster.target import open_target
    from mmgitops.conformance.target import TargetError
    from mmgitops.lab.cluster import cluster
    from mmgitops.lab.controller.managed import manage_modelmesh

    churn = DEFAULT_CHURN_AGE_MS if churn_age_ms is None else churn_age_ms
    with cluster.fresh(SCALE_CLUSTER, progress, engine) as info:
        api = cluster_session.api_client(info["kubeconfig"])
        manage_modelmesh(api, churn_age_ms=churn_age_ms)
        run_id = secrets.token_hex(3)
        session = cluster_session.Session(api, run_id, Path(info["storage_config"]), cluster.S3_KEY, progress)
        session.open()
        try:
            runtime = objects.serving_runtime(objects.read_template("cpu"), RUNTIME, session.namespace, run_id,
                                              replicas, MODELS_PER_POD, gpu=True,
                                              gpu_placement=objects.read_template("gpu")["spec"])
            target = open_target(session, runtime, churn, "port-forward")
            try:
                measured: dict[str, Any] = scale.measure(target, plan, progress)
                measured["memory_mib"] = pod_memory(Path(info["kubeconfig"]).parent / "pods", session.namespace)
            except TargetError as error:  # the scenario could not go on: one line, not a traceback
                raise ToolError(f"bench scale: {error}") from None
            finally:
                target.close()
        finally:
            session.close()
    summary = scale_figures.summarize(measured)
    summary.update(engine=engine, churn_age_ms=churn)
    if output == "json":
        return json.dumps({"summary": summary, "measured": measured}, indent=2)
    return f"engine {engine}, churn age {summary['churn_age_ms'] / 1000:g} s\n" + scale_figures.table(summary)
