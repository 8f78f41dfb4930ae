"""The sync plan of a bootstrap (app of apps) or a profile overlay, and its findings: ordering violations, and
whatever keeps it from being rendered or ordered at all (then the order is never called valid)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgitops.errors import Finding, ToolError
from mmgitops.gitops import render
from mmgitops.gitops.checks.health import health_checks
from mmgitops.gitops.checks.policy import dependencies
from mmgitops.gitops.objects import WAVE_ANNOTATION, K8sObject, dig
from mmgitops.gitops.plan.order import gate, phase, sort_key, wave, wave_is_integer


@dataclass
class Step:
    obj: K8sObject
    app: str  # the Application that syncs it; "" for what `oc apply -k` applies
    gates: tuple[tuple[int, int], ...]  # (phase, wave) at each level of apps
    depth: int


@dataclass
class Plan:
    root: str
    steps: list[Step] = field(default_factory=list)
    violations: list[Finding] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({
            "root": self.root,
            "ok": not self.violations,
            "steps": [{"app": s.app, "depth": s.depth, "phase": phase(s.obj), "wave": wave(s.obj),
                       "kind": s.obj.kind, "name": s.obj.name, "namespace": s.obj.namespace,
                       "file": s.obj.file} for s in self.steps],
            "violations": [v.to_dict() for v in self.violations],
        }, indent=2)


def before(a: Step, b: Step) -> bool:
    """True when Argo CD finishes a (and waits for it to be healthy) before it starts b."""
    for ga, gb in zip(a.gates, b.gates, strict=False):
        if ga != gb:
            return ga < gb
    return False


def build(path: Path, repo_root: Path, kustomize: list[str]) -> Plan:
    plan = Plan(render.display(path))
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # pathlib raises RuntimeError for a symlink loop
        raise ToolError(f"{render.display(path)}: a symlink loop, or a path that cannot be resolved") from None
    _expand(plan, resolved, repo_root.resolve(), kustomize, "", (), 0, set())
    plan.violations = sorted(set(plan.violations) | set(_violations(plan.steps)))
    return plan


def _expand(plan: Plan, path: Path, repo_root: Path, kustomize: list[str], app: str,
            gates: tuple[tuple[int, int], ...], depth: int, seen: set[Path]) -> None:
    if not render.kustomization_file(path):
        raise ToolError(f"{render.display(path)}: no kustomization.yaml to plan")
    rendered = render.render_kustomization(kustomize, render.Target(path, "Kustomization"))
    plan.violations.extend(rendered.findings)
    for obj in sorted(rendered.objects, key=sort_key):
        step = Step(obj, app, (*gates, gate(obj)), depth)
        plan.steps.append(step)
        if not wave_is_integer(obj):
            plan.violations.append(Finding(obj.file, obj.ref, f"metadata.annotations.{WAVE_ANNOTATION}",
                                           f"{obj.annotations[WAVE_ANNOTATION]!r} is not an integer: Argo CD "
                                           "refuses the sync, so no order holds", "plan"))
        source = dig(obj.body, "spec", "source", "path")
        if obj.kind == "Application" and obj.group == "argoproj.io" and isinstance(source, str):
            child = _child(plan, obj, source, repo_root, seen | {path})
            if child is not None:
                _expand(plan, child, repo_root, kustomize, obj.name, step.gates, depth + 1, seen | {path})


def _child(plan: Plan, app: K8sObject, source: str, repo_root: Path, ancestors: set[Path]) -> Path | None:
    """The kustomization an Application syncs, or None with the reason among the violations."""
    try:
        child = (repo_root / source).resolve()
    except (RuntimeError, OSError):
        child = None
    why = ""
    if child is None or not child.is_relative_to(repo_root):
        why = f"{source} leaves the repository, which Argo CD refuses"
    elif child in ancestors:
        why = f"{source} is an app of apps that syncs itself (a cycle): Argo CD would never finish it"
    elif not render.kustomization_file(child):
        why = f"{source} is not a kustomization in this repository"
    if why:
        plan.violations.append(Finding(app.file, app.ref, "spec.source.path", why, "plan"))
        return None
    return child


def _matches(step: Step, need: dict[str, Any], dependent: Step) -> bool:
    obj = step.obj
    return (obj.kind == need["kind"]
            and (not need.get("name") or obj.name == need["name"])
            and (not need.get("same_namespace") or obj.namespace == dependent.obj.namespace))


def _violations(steps: list[Step]) -> list[Finding]:
    deps = dependencies()
    out = []
    for step in steps:
        obj = step.obj
        needs = list((deps["kinds"].get(obj.kind) or {}).get("needs") or [])
        creator = deps["namespaces_created_by"].get(obj.namespace)
        if creator and obj.kind != creator:
            needs.append({"kind": creator, "why": f"it creates namespace {obj.namespace}"})
        for need in needs:
            providers = [s for s in steps if s is not step and _matches(s, need, step)]
            wanted = need["kind"] + (f"/{need['name']}" if need.get("name") else "")
            if not providers:
                out.append(Finding(obj.file, obj.ref, "(order)",
                                   f"needs {wanted}, which this plan never syncs: {need['why']}", "plan-missing"))
            elif not any(before(p, step) for p in providers):
                out.append(Finding(obj.file, obj.ref, "(order)",
                                   f"not synced after {wanted} "
                                   f"({_where(providers[0])}): {need['why']}", "plan-order"))
        if obj.kind != "Namespace":
            out.extend(_namespace_order(step, steps))
    out.extend(_app_health(steps))
    return out


def _namespace_order(step: Step, steps: list[Step]) -> list[Finding]:
    for other in steps:
        o = other.obj
        if o.kind == "Namespace" and o.group == "" and o.name == step.obj.namespace:
            # Within one application Argo CD moves the Namespace ahead by itself.
            if other.app == step.app or before(other, step):
                return []
            return [Finding(step.obj.file, step.obj.ref, "metadata.namespace",
                            f"namespace {o.name} is created later ({_where(other)})", "plan-order")]
    return []


def _app_health(steps: list[Step]) -> list[Finding]:
    """Waves of child Applications only wait for each other if Application health is on."""
    children = [s for s in steps if s.obj.kind == "Application" and s.depth >= 1]
    if len({wave(s.obj) for s in children}) < 2:
        return []
    for s in steps:
        if s.obj.kind == "ArgoCD" and any(c.get("kind") == "Application" for _, c in health_checks(s.obj)):
            return []
    first = children[0]
    return [Finding(first.obj.file, first.obj.ref, "metadata.annotations",
                    "app waves do not wait for health: no Application health check in an ArgoCD "
                    "instance of this plan", "plan-order")]


def _where(step: Step) -> str:
    app = f"app {step.app}, " if step.app else ""
    return f"{app}wave {wave(step.obj)}"


def render_text(plan: Plan) -> str:
    lines = [f"Sync plan of {plan.root}: phase, wave, kind, name; apps wait for the previous wave's health",
             f"{'#':>3}  {'phase':<8} {'wave':>5}  object"]
    for index, step in enumerate(plan.steps, 1):
        indent = "  " * step.depth
        where = f"   [{step.app}]" if step.app else "   [oc apply -k]"
        ns = f" -n {step.obj.namespace}" if step.obj.namespace else ""
        lines.append(f"{index:>3}  {phase(step.obj):<8} {wave(step.obj):>5}  {indent}{step.obj.ref}{ns}{where}")
    lines.append("")
    if plan.violations:
        lines += [v.line() for v in plan.violations]
        lines.append(f"{len(plan.violations)} finding(s): the order is not valid")
    else:
        lines.append(f"order is valid: {len(plan.steps)} objects")
    return "\n".join(lines)
