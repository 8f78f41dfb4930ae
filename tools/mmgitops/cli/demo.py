"""`mmgitops demo` (`make demo`): from a fresh clone to a conformance report, on this machine.

1. the local cluster (built and started if it is not up; reused if it is);
2. the `conformance` profile, installed by a real Argo CD (`local argocd up`, then `local argocd sync
   conformance`), or with `--apply` by `mmgitops apply overlays/conformance` in wave order;
3. the conformance suite in cluster mode, against the runtimes RHOAI's modelmesh-serving controller (built from its
   pinned source) runs, as the profile's least-privileged runner (a ServiceAccount that may act in namespace
   mmgitops-conformance only);
4. the report's path; the report says how the profile was installed and which controller served it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError
from mmgitops.gitops import render

PROFILE = Path("overlays/conformance")
BOOTSTRAP = "conformance"  # argocd/bootstrap/conformance: the same profile as Applications
CHURN_MS = 1500  # what the profile's fast-churn component sets
RUNNER = ("mmgitops-conformance", "conformance-runner")  # the profile's components/conformance/runner-namespace
SYNC_TIMEOUT = 900.0
DEMO_TIME = "demo"  # its key in binaries.BUILD_TIMES: a whole demo from a stopped cluster with every binary cached
TYPICAL_DEMO_S = 270  # a 2-core machine, 2026-12-08 (258 s measured)


def plan(engine: str, through_argocd: bool) -> tuple[str, bool]:
    """The demo's first line: its steps, what it builds first and how long it takes; and whether this run is a
    steady one (nothing to build, no cluster up yet), whose time is the next run's estimate."""
    from mmgitops.lab import binaries, builds
    from mmgitops.lab.cluster import cluster

    running = cluster.read_state() is not None
    todo = builds.pending("cluster", *(("reference",) if engine == "reference" else ()))
    steps = ("the local cluster is up: it is reused" if running else
             f"the local cluster starts (runtime pods backed by the {engine} mesh engine)")
    steps += (", Argo CD syncs the conformance profile" if through_argocd else
              ", `mmgitops apply` installs the conformance profile")
    steps += ", then the conformance suite runs as the profile's runner"
    last = binaries.last_build_s(DEMO_TIME)
    usual = f"{last / 60:.0f} min last time here" if last is not None else f"typically {TYPICAL_DEMO_S // 60} min"
    built = builds.summary(todo)
    lines = [f"mmgitops demo: {steps} ({usual} once built)."] + ([f"mmgitops demo: {built}."] if built else [])
    return "\n".join(lines), not todo and not running


def record(seconds: float) -> None:
    from mmgitops.lab import binaries

    binaries.record_build(DEMO_TIME, seconds)


def prepare(root: Path, progress: Callable[[str], None], engine: str | None = None,
            through_argocd: bool = True) -> dict[str, Any]:
    """Steps 1 and 2: the local cluster's info, once the profile is installed and healthy; `installed` says how.
    engine: what backs the runtime pods (embedded or reference) of a cluster started here; a running cluster
    must match it."""
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
    info["installed"] = _through_argocd(root, progress) if through_argocd else _apply(root, info, progress)
    return info


def _apply(root: Path, info: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    from mmgitops.gitops.apply import apply as apply_mod
    from mmgitops.lab.cluster import profile_storage

    command = render.find_kubectl()
    render.check_kustomize(command)
    outcome = apply_mod.run(root / PROFILE, root, command, info["kubeconfig"], False, 300.0, progress)
    if outcome.findings:
        raise ToolError(f"apply {PROFILE}: {outcome.findings[0].line()}")
    # The profile's samples name a placeholder S3: their models go to the cluster's own, so that they load.
    profile_storage.stage(root, info, progress)
    return {"by": "mmgitops apply", "profile": str(PROFILE)}


def _through_argocd(root: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    from mmgitops.lab.argocd import instance, sync

    argocd = instance.read_state() or instance.up(root, progress)

    def show(outcome: sync.Outcome) -> None:
        ready = sum(r.done for r in outcome.rows)
        waiting = outcome.blocker()
        progress(f"Argo CD: {ready}/{len(outcome.rows)} apps Synced and Healthy after {outcome.seconds:.0f} s"
                 + (f"; waiting for {waiting.name} ({waiting.sync}/{waiting.health})" if waiting else ""))

    outcome = sync.run(root, BOOTSTRAP, SYNC_TIMEOUT, show, progress)
    if not outcome.done:
        blocker = outcome.blocker()
        assert blocker is not None
        raise ToolError(f"Argo CD did not sync argocd/bootstrap/{BOOTSTRAP} in {SYNC_TIMEOUT:.0f} s: {blocker.name} "
                        f"is {blocker.sync}/{blocker.health}: {blocker.message or 'no message from Argo CD'}")
    return {"by": f"Argo CD {argocd['version']}", "profile": f"argocd/bootstrap/{BOOTSTRAP}",
            "commit": outcome.commit, "uncommitted_changes": outcome.dirty, "apps": len(outcome.rows),
            "sync_seconds": outcome.seconds}


def runner_kubeconfig(info: dict[str, Any]) -> Path:
    """A kubeconfig holding only a token of the profile's conformance runner: the suite runs with the rights a
    platform team would give it (components/conformance/runner-namespace), not the local cluster's admin ones."""
    from mmgitops.lab.cluster import identity

    admin = Path(info["kubeconfig"])
    return identity.service_account_kubeconfig(admin, *RUNNER, admin.parent / "conformance-runner.kubeconfig")


def conform(info: dict[str, Any], report: Path) -> int:
    """Step 3: the suite in cluster mode; pytest's output goes straight to the terminal. The report then says
    how the profile was installed."""
    from mmgitops.conformance import report as report_mod
    from mmgitops.conformance import run

    kubeconfig = runner_kubeconfig(info)
    code = run.run({"target": "cluster", "kubeconfig": str(kubeconfig), "namespace": RUNNER[0],
                    "storage_config": info["storage_config"], "resolver": "port-forward",
                    "min_churn_age_ms": CHURN_MS}, report)
    results = report / "results.json"
    if results.is_file():
        data = json.loads(results.read_text(encoding="utf-8"))
        data["installed"] = info["installed"]
        data["target"]["runner"] = f"ServiceAccount {RUNNER[0]}/{RUNNER[1]}"
        # Which controller wrote the runtime Deployments and the InferenceServices' status (the runner may not read
        # the applications namespace, so the lab says it)
        data["target"]["controller"] = info.get("controller") or "unknown"
        results.write_text(json.dumps(data, indent=2), encoding="utf-8")
        report_mod.render(report)
    return code
