"""Server-side apply in Argo CD's order: phase, wave, kind, name; each wave waits for the last to be healthy."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from mmgitops import kubeconfig as kubeconfig_mod
from mmgitops.errors import Finding, ToolError
from mmgitops.gitops.apply import health as health_mod
from mmgitops.gitops.objects import K8sObject
from mmgitops.gitops.plan import plan as plan_mod

FIELD_MANAGER = "mmgitops"
# As kubectl does: a field the schema does not know is an error, not silently pruned.
STRICT = [("fieldValidation", "Strict")]


@dataclass
class Outcome:
    applied: list[tuple[str, str]] = field(default_factory=list)  # (object, created|configured|unchanged)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (object, why)

    def count(self, what: str) -> int:
        return sum(1 for _, result in self.applied if result == what)


class NotYet(Exception):
    """Something to wait for; its text names it."""


def _body(obj: K8sObject) -> dict[str, Any]:
    return json.loads(json.dumps(obj.body))


def server_error(obj: K8sObject, exc: ApiException) -> list[Finding]:
    """The API server's error as one line per cause, naming the object and the field."""
    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        status = {}
    causes = (status.get("details") or {}).get("causes") or []
    message = status.get("message") or exc.reason or str(exc.status)
    if not causes:
        text = " ".join(str(message).split())
        # Server-side apply reports an unknown field only in its message.
        if match := re.search(r"\.(\S+): field not declared in schema", text):
            return [Finding(obj.file, obj.ref, match.group(1), "unknown field (not declared in the schema)", "server")]
        return [Finding(obj.file, obj.ref, "", text, "server")]
    return [Finding(obj.file, obj.ref, c.get("field", ""), " ".join(str(c.get("message", "")).split()), "server")
            for c in causes]


def run(path: Path, repo_root: Path, kustomize: list[str], kubeconfig: str | None, dry_run: bool,
        timeout: float, progress: Callable[[str], None]) -> Outcome:
    plan = plan_mod.build(path, repo_root, kustomize)
    # A provider missing from the plan may already be on the cluster: waiting for its kind tells.
    blocking = [v for v in plan.violations if v.rule != "plan-missing"]
    if blocking:
        return Outcome(findings=blocking)
    steps = [s for s in plan.steps if s.depth == 0]
    api = kubeconfig_mod.api_client(kubeconfig)
    dyn = DynamicClient(api)
    lua = health_mod.scripts(repo_root, tuple(kustomize))
    outcome = Outcome()
    for gates, group in itertools.groupby(steps, key=lambda s: s.gates):
        wave_steps = list(group)
        label = f"wave {gates[-1][1]}"
        for step in wave_steps:
            resource = _resource(dyn, step.obj, dry_run, timeout, progress, label)
            if resource is None:
                outcome.skipped.append((step.obj.ref, "its kind is not served yet (dry run)"))
                continue
            _apply_one(resource, step.obj, dry_run, outcome)
        if outcome.findings:
            return outcome
        if not dry_run:
            _wait_healthy(dyn, wave_steps, lua, timeout, progress, label)
    return outcome


def _resource(dyn: DynamicClient, obj: K8sObject, dry_run: bool, timeout: float,
              progress: Callable[[str], None], label: str) -> Any:
    """The API resource of obj's kind, waiting for its CRD to be Established (not in a dry run)."""
    def lookup() -> Any:
        try:
            return dyn.resources.get(api_version=obj.api_version, kind=obj.kind)
        except ResourceNotFoundError:
            dyn.resources.invalidate_cache()
            progress(f"{label}: waiting for the API server to serve {obj.api_version} {obj.kind}")
            raise NotYet(f"{obj.api_version} {obj.kind} (its CRD is not Established)") from None

    if dry_run:
        try:
            return lookup()
        except NotYet:
            return None
    return _wait(lookup, timeout)


def _wait(func: Callable[[], Any], timeout: float) -> Any:
    try:
        for attempt in Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(1),
                                retry=retry_if_exception_type(NotYet), reraise=True):
            with attempt:
                return func()
    except NotYet as exc:
        raise ToolError(f"timed out after {timeout:.0f} s waiting for {exc}") from None
    return None


def _apply_one(resource: Any, obj: K8sObject, dry_run: bool, outcome: Outcome) -> None:
    namespace = obj.namespace or None
    before = None
    try:
        before = resource.get(name=obj.name, namespace=namespace).metadata.resourceVersion
    except ApiException as exc:
        if exc.status != 404:
            outcome.findings.extend(server_error(obj, exc))
            return
    body = _body(obj)
    note = ""
    try:
        after = resource.server_side_apply(
            body=body, name=obj.name, namespace=namespace, field_manager=FIELD_MANAGER,
            force_conflicts=True, dry_run="All" if dry_run else None, query_params=list(STRICT))
    except ApiException as exc:
        if not (dry_run and exc.status == 404 and obj.namespace):
            outcome.findings.extend(server_error(obj, exc))
            return
        # An earlier wave creates the namespace, which a dry run does not persist. Validation does
        # not depend on the namespace, so the server checks the object in `default` instead.
        body["metadata"]["namespace"] = "default"
        note = f" in namespace default ({obj.namespace} is created by an earlier wave)"
        try:
            after = resource.server_side_apply(body=body, name=obj.name, namespace="default",
                                               field_manager=FIELD_MANAGER, force_conflicts=True, dry_run="All",
                                               query_params=list(STRICT))
        except ApiException as retry_exc:
            outcome.findings.extend(server_error(obj, retry_exc))
            return
    if note:
        outcome.applied.append((obj.ref, "validated" + note))
    elif before is None:
        outcome.applied.append((obj.ref, "created"))
    elif after.metadata.resourceVersion == before:
        outcome.applied.append((obj.ref, "unchanged"))
    else:
        outcome.applied.append((obj.ref, "configured"))


def _wait_healthy(dyn: DynamicClient, steps: list[plan_mod.Step], lua: dict[tuple[str, str], str],
                  timeout: float, progress: Callable[[str], None], label: str) -> None:
    def check() -> None:
        pending = []
        for step in steps:
            obj = step.obj
            resource = dyn.resources.get(api_version=obj.api_version, kind=obj.kind)
            try:
                live = resource.get(name=obj.name, namespace=obj.namespace or None).to_dict()
            except ApiException as exc:
                if exc.status != 404:
                    raise ToolError(f"reading {obj.ref}: {exc.reason}") from exc
                pending.append(f"{obj.ref} is gone (deleted by someone else?)")
                continue
            status, message = health_mod.health(live, lua)
            if status != "Healthy":
                pending.append(f"{obj.ref} {status}{': ' + message if message else ''}")
        if pending:
            progress(f"{label}: waiting for {len(pending)} object(s) to be healthy: {pending[0]}")
            raise NotYet(f"{label} to be healthy: " + "; ".join(pending))

    _wait(check, timeout)


def summary(outcome: Outcome, dry_run: bool) -> str:
    verb = "checked by the server (dry run)" if dry_run else "applied"
    elsewhere = sum(1 for _, result in outcome.applied if result.startswith("validated"))
    parts = [f"{len(outcome.applied)} objects {verb}: {outcome.count('created')} created, "
             f"{outcome.count('configured')} configured, {outcome.count('unchanged')} unchanged"
             + (f", {elsewhere} validated in namespace default" if elsewhere else "")]
    if outcome.skipped:
        parts.append(f"{len(outcome.skipped)} skipped")
    return "; ".join(parts)

