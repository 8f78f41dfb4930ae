"""`mmgitops local argocd sync PROFILE`: apply argocd/bootstrap/PROFILE, then follow Argo CD until every app is
Synced and Healthy, or say which app, resource and Argo CD message holds it up.

The bootstrap is rendered from the snapshot the git server serves (the working tree, with the generated
repo-source patch), so the root app and its children come from the same commit.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from mmgitops.errors import ToolError
from mmgitops.gitops import render
from mmgitops.gitops.plan import plan as plan_mod
from mmgitops.gitops.plan.order import wave
from mmgitops.lab.argocd import gitserver, instance, objects
from mmgitops.lab.cluster import cluster, profile_storage

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
FIELD_MANAGER = "mmgitops-local-argocd"


@dataclass
class AppRow:
    name: str
    wave: int
    sync: str = "-"
    health: str = "-"
    message: str = ""
    started: str = ""
    finished: str = ""
    blocker: str = ""

    @property
    def done(self) -> bool:
        return self.sync == "Synced" and self.health == "Healthy"


@dataclass
class Outcome:
    profile: str
    root: str
    commit: str
    dirty: bool
    rows: list[AppRow] = field(default_factory=list)
    seconds: float = 0.0  # since the command started
    since_apply: float = 0.0  # since the bootstrap was applied: Argo CD's own part
    done: bool = False

    def blocker(self) -> AppRow | None:
        return next((r for r in sorted(self.rows, key=lambda r: (r.wave, r.name)) if not r.done), None)


def bootstrap_path(root: Path, profile: str) -> Path:
    path = root / "argocd" / "bootstrap" / profile
    if not path.is_dir():
        known = sorted(p.name for p in (root / "argocd" / "bootstrap").iterdir() if p.is_dir())
        raise ToolError(f"argocd/bootstrap/{profile}: no such bootstrap (profiles: {', '.join(known)})")
    return path


def expected_apps(export: Path, profile: str, kustomize: list[str]) -> tuple[str, dict[str, int]]:
    """(root app, {child app: wave}) that the bootstrap's plan predicts."""
    plan = plan_mod.build(export / "argocd" / "bootstrap" / profile, export, kustomize)
    apps = [s for s in plan.steps if s.obj.kind == "Application"]
    roots = [s for s in apps if s.depth == 0]
    if len(roots) != 1:
        raise ToolError(f"argocd/bootstrap/{profile}: expected one root Application, found {len(roots)}")
    return roots[0].obj.name, {s.obj.name: wave(s.obj) for s in apps if s.depth == 1}


def apply_bootstrap(export: Path, profile: str, kustomize: list[str], api: client.ApiClient) -> list[str]:
    """Server-side apply of the bootstrap's objects (what `oc apply -k` does), in plan order."""
    plan = plan_mod.build(export / "argocd" / "bootstrap" / profile, export, kustomize)
    dyn = DynamicClient(api)
    applied = []
    for step in (s for s in plan.steps if s.depth == 0):
        obj = step.obj
        resource = dyn.resources.get(api_version=obj.api_version, kind=obj.kind)
        try:
            resource.server_side_apply(body=obj.body, namespace=obj.namespace or None, field_manager=FIELD_MANAGER,
                                       force_conflicts=True)
        except ApiException as exc:
            raise ToolError(f"argocd/bootstrap/{profile}: {obj.ref}: the API server refused it: {exc.reason}") from exc
        applied.append(obj.ref)
    return applied


def _row(app: dict[str, Any], wave: int) -> AppRow:
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    row = AppRow(app["metadata"]["name"], wave, (status.get("sync") or {}).get("status") or "-",
                 (status.get("health") or {}).get("status") or "-",
                 started=op.get("startedAt") or "", finished=op.get("finishedAt") or "")
    conditions = [c for c in status.get("conditions") or [] if c.get("message")]
    messages = [f"{c.get('type')}: {c['message']}" for c in conditions]
    if op.get("phase") in ("Failed", "Error", "Running") and op.get("message"):
        messages.append(str(op["message"]))
    for res in status.get("resources") or []:
        health = res.get("health") or {}
        if res.get("status") == "OutOfSync" or health.get("status") not in (None, "Healthy"):
            what = f"{res.get('kind')}/{res.get('name')}"
            detail = health.get("message") or res.get("status") or ""
            row.blocker = row.blocker or f"{what}: {health.get('status') or res.get('status')}: {detail}"
    row.message = " | ".join(messages) or row.blocker or (status.get("health") or {}).get("message") or ""
    return row


def observe(api: client.ApiClient, root: str, children: dict[str, int]) -> list[AppRow]:
    custom = client.CustomObjectsApi(api)
    items = custom.list_namespaced_custom_object(GROUP, VERSION, objects.NAMESPACE, PLURAL)["items"]
    by_name = {a["metadata"]["name"]: a for a in items}
    rows = []
    for name, app_wave in [(root, -1000), *sorted(children.items(), key=lambda kv: (kv[1], kv[0]))]:
        app = by_name.get(name)
        rows.append(_row(app, app_wave) if app else AppRow(name, app_wave, "Missing", "Missing", "not created yet"))
    return rows


def refresh(api: client.ApiClient, names: list[str]) -> None:
    """Ask Argo CD to compare now rather than at its next resync (what the UI's Refresh does)."""
    custom = client.CustomObjectsApi(api)
    for name in names:
        try:
            custom.patch_namespaced_custom_object(GROUP, VERSION, objects.NAMESPACE, PLURAL, name, {
                "metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}})
        except ApiException as exc:
            if exc.status != 404:
                raise


def run(root: Path, profile: str, timeout: float, show: Callable[[Outcome], None],
        progress: Callable[[str], None] = lambda _: None) -> Outcome:
    bootstrap_path(root, profile)
    info = instance.read_state()
    if info is None:
        raise ToolError("no local Argo CD is up: `mmgitops local argocd up` first")
    started = time.monotonic()
    progress("serving the working tree to Argo CD")
    snap = instance.publish(root, info)
    kustomize = render.find_kubectl()
    cluster_info = _cluster()
    api = config.new_client_from_config(config_file=cluster_info["kubeconfig"])
    with tempfile.TemporaryDirectory(prefix="mmgitops-argocd-") as tmp:
        export = gitserver.export(instance.state_dir() / "git" / gitserver.REPO, Path(tmp))
        root_app, children = expected_apps(export, profile, kustomize)
        # The samples' models into the cluster's S3 and the storage Secret naming it, before the bootstrap: what
        # docs/argocd.md asks of a user, as the Secret is not in git.
        profile_storage.stage(root, cluster_info, progress)
        apply_bootstrap(export, profile, kustomize, api)
    applied = time.monotonic()
    refresh(api, [root_app, *children])
    outcome = Outcome(profile, root_app, snap.commit, snap.dirty)
    deadline = started + timeout
    while True:
        outcome.rows = observe(api, root_app, children)
        outcome.seconds = round(time.monotonic() - started, 1)
        outcome.since_apply = round(time.monotonic() - applied, 1)
        outcome.done = all(r.done for r in outcome.rows)
        show(outcome)
        if outcome.done or time.monotonic() > deadline:
            return outcome
        time.sleep(1.0)


def _cluster() -> dict[str, Any]:
    found = cluster.read_state()
    if found is None:
        raise ToolError("no local cluster is up: `mmgitops local cluster up` first")
    return found
