"""Health of live objects, by the same rules as the Argo CD Lua checks in argocd/components/health-checks."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError
from mmgitops.gitops import render
from mmgitops.gitops.checks.health import health_checks, run_check
from mmgitops.gitops.objects import K8sObject, dig

HEALTH_INSTANCE = Path("argocd/instance")


@cache
def scripts(repo_root: Path, kustomize: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """(group, kind) -> Lua script, read from the rendered ArgoCD instance of this repository."""
    target = render.Target((repo_root / HEALTH_INSTANCE).resolve(), "Kustomization")
    if not render.kustomization_file(target.path):
        raise ToolError(f"{HEALTH_INSTANCE}: not found under {repo_root}; run apply from the repository")
    out = render.render_kustomization(list(kustomize), target)
    found: dict[tuple[str, str], str] = {}
    for obj in out.objects:
        if obj.kind == "ArgoCD":
            for _, check in health_checks(obj):
                found[(str(check.get("group", "")), str(check.get("kind", "")))] = str(check.get("check", ""))
    return found


def health(live: dict[str, Any], lua: dict[tuple[str, str], str]) -> tuple[str, str]:
    obj = K8sObject(live, "")
    script = lua.get((obj.group, obj.kind))
    if script:
        return run_check(script, live)
    if obj.kind == "Subscription" and obj.group == "operators.coreos.com":
        state = dig(live, "status", "state")
        return ("Healthy", f"CSV {dig(live, 'status', 'installedCSV')}") if state == "AtLatestKnown" else (
            "Progressing", f"Subscription state: {state or 'none yet'}")
    if obj.kind == "Namespace" and obj.group == "":
        phase = dig(live, "status", "phase")
        return ("Healthy", "") if phase == "Active" else ("Progressing", f"Namespace phase {phase}")
    if obj.kind == "Deployment" and obj.group == "apps":
        want = dig(live, "spec", "replicas")
        have = dig(live, "status", "availableReplicas") or 0
        return ("Healthy", "") if have >= (1 if want is None else want) else (
            "Progressing", f"{have}/{want} replicas available")
    # Everything else is healthy once the API server has it, as in Argo CD.
    return "Healthy", ""
