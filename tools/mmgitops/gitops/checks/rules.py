"""The rule registry: every policy and ModelMesh rule, with what it checks, where its truth comes from, what a
cluster shows when it is broken and how to fix it (`mmgitops rules RULE`), and the context rules read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mmgitops.errors import Finding
from mmgitops.gitops.checks.modelmesh.context import MeshContext
from mmgitops.gitops.objects import K8sObject
from mmgitops.gitops.render import Rendered, Target
from mmgitops.gitops.schemas.catalog import Catalog


@dataclass
class Context:
    catalog: Catalog
    namespaces: dict[str, dict[str, str]]  # every Namespace rendered anywhere, with its labels
    mesh: MeshContext = field(default_factory=MeshContext)


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str
    scope: str  # "object", "render" or "tree"
    check: Callable[..., Iterator[Finding]]
    source: str = ""  # the upstream code whose behaviour the rule mirrors (file and function)
    symptom: str = ""  # what a cluster shows when the rule is broken
    fix: str = ""


RULES: list[Rule] = []


def rule(name: str, reason: str, scope: str = "object", *, source: str = "", symptom: str = "", fix: str = ""
         ) -> Callable:
    def register(func: Callable[..., Iterator[Finding]]) -> Callable[..., Iterator[Finding]]:
        RULES.append(Rule(name, reason, scope, func, source, symptom, fix))
        return func
    return register


def finding(obj: K8sObject, field: str, message: str, name: str, severity: str = "error") -> Finding:
    return Finding(obj.file, obj.ref, field, message, name, severity)


def run_object_rules(obj: K8sObject, ctx: Context) -> list[Finding]:
    return [f for r in RULES if r.scope == "object" for f in r.check(obj, ctx)]


def run_render_rules(rendered: Rendered, ctx: Context) -> list[Finding]:
    return [f for r in RULES if r.scope == "render" for f in r.check(rendered, ctx)]


def run_tree_rules(targets: list[Target], ctx: Context) -> list[Finding]:
    return [f for r in RULES if r.scope == "tree" for f in r.check(targets, ctx)]
