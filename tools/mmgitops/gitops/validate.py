"""Render every kustomization, then check every object: schema, CEL, policy, health checks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgitops.errors import Finding
from mmgitops.gitops import render
from mmgitops.gitops.checks import cel, health, policy, rules, schema  # noqa: F401 (policy: registering)
from mmgitops.gitops.checks.modelmesh import capacity, isvc, runtime, storage, wiring  # noqa: F401 (registering)
from mmgitops.gitops.checks.modelmesh.context import SERVING, MeshContext
from mmgitops.gitops.objects import K8sObject
from mmgitops.gitops.schemas.catalog import Catalog


@dataclass
class Result:
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity != "warning"]

    def to_json(self) -> str:
        return json.dumps({"ok": not self.errors(), "counts": self.counts,
                           "findings": [f.to_dict() for f in self.findings]}, indent=2)


def all_rules() -> list[rules.Rule]:
    return list(rules.RULES)


def validate(paths: list[Path], catalog: Catalog, kustomize: list[str],
             live: Callable[[set[str]], list[K8sObject]] | None = None) -> Result:
    """`live`, given the namespaces the trees' objects name, returns what a cluster holds there for the ModelMesh
    rules to read beside the trees (`validate --cluster`)."""
    started = time.perf_counter()
    targets = render.discover(paths)
    renders = render.render_all(targets, kustomize)
    namespaces = {o.name: o.labels for r in renders for o in r.objects if o.kind == "Namespace" and o.group == ""}
    mesh = MeshContext.from_objects(o for r in renders for o in r.objects)
    if live is not None:
        mesh.source = "this repository or on the cluster"
        for obj in live({o.namespace for r in renders for o in r.objects if o.group == SERVING}):
            mesh.add(obj)
            if obj.kind == "Namespace":
                namespaces.setdefault(obj.name, obj.labels)
    ctx = rules.Context(catalog, namespaces, mesh)
    sources: dict[str, int] = {}
    cel_counts: dict[str, int] = {}
    health_counts: dict[str, int] = {}
    findings: set[Finding] = set()
    checked: set[str] = set()
    objects = unchecked = 0
    for rendered in renders:
        findings.update(rendered.findings)
        findings.update(rules.run_render_rules(rendered, ctx))
        for obj in rendered.objects:
            objects += 1
            # A base rendered on its own and again through each overlay is checked once per content.
            key = json.dumps([obj.file, obj.body], sort_keys=True, default=str)
            if key in checked:
                continue
            checked.add(key)
            found, source = schema.check_object(obj, catalog, sources)
            if not source:
                unchecked += 1
            findings.update(found)
            crd = catalog.crd(obj.group, obj.version, obj.kind)
            if crd is not None:
                findings.update(cel.check_rules(obj, schema.defaulted(obj, catalog), crd.rules, cel_counts))
            if obj.kind == "CustomResourceDefinition" and obj.group == "apiextensions.k8s.io":
                findings.update(cel.check_compiles(obj))
            findings.update(rules.run_object_rules(obj, ctx))
            if obj.kind == "ArgoCD" and obj.group == "argoproj.io":
                findings.update(health.check_instance(obj, health_counts))
    findings.update(rules.run_tree_rules(targets, ctx))
    result = Result(one_per_field(findings))
    result.counts = {
        "kustomizations": sum(t.kind == "Kustomization" for t in targets),
        "components": sum(t.kind == "Component" for t in targets),
        "files": sum(t.kind == "File" for t in targets),
        "objects_rendered": objects,
        "objects_checked": len(checked),
        "checked_against": {"builtin_schema": sources.get("builtin", 0), "crd_schema": sources.get("crd", 0)},
        "without_schema": unchecked,
        "cel_rules": cel_counts,
        "health_check_cases": health_counts.get("health_cases", 0),
        "policy_rules": len(rules.RULES),
        "crd_sources": catalog.sources(),
        "findings": len(result.errors()),
        "warnings": len(result.findings) - len(result.errors()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return result


def one_per_field(findings: set[Finding]) -> list[Finding]:
    """One problem, one line: where a policy rule explains a field the schema also rejects, keep the rule;
    where several schema keywords reject one value (a pattern and an enum), keep the enum, which says most."""
    # A warning explains nothing: the schema's error stays beside it.
    explained = {(f.file, f.obj, f.field) for f in findings if f.rule != "schema" and f.severity != "warning"}
    schema: dict[tuple[str, str, str], Finding] = {}
    for f in sorted((f for f in findings if f.rule == "schema"), key=lambda f: ("is not one of" not in f.message, f)):
        key = (f.file, f.obj, f.field)
        if key not in explained:
            schema.setdefault(key, f)
    return sorted([f for f in findings if f.rule != "schema"] + list(schema.values()))
