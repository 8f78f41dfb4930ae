"""Evaluate a CRD's x-kubernetes-validations (CEL) rules with cel-python.

Transition rules (those that read oldSelf) need the live object and are left to the
API server; rules that use Kubernetes' own CEL library functions that cel-python lacks
are counted as unsupported, never reported as failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import celpy
from celpy.evaluation import CELEvalError

from mmgitops.errors import Finding
from mmgitops.gitops.checks.schema import field_path
from mmgitops.gitops.objects import K8sObject
from mmgitops.gitops.schemas.crd import CelRule

_ENV = celpy.Environment()


@lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def values_at(body: Any, path: list[str], done: list[Any]) -> Iterator[tuple[list[Any], Any]]:
    if not path:
        yield done, body
        return
    head, rest = path[0], path[1:]
    if head == "[]" and isinstance(body, list):
        for index, item in enumerate(body):
            yield from values_at(item, rest, [*done, index])
    elif head == "{}" and isinstance(body, dict):
        for key, item in body.items():
            yield from values_at(item, rest, [*done, key])
    elif isinstance(body, dict) and head in body and body[head] is not None:
        yield from values_at(body[head], rest, [*done, head])


_UNSUPPORTED = ("undeclared reference", "unknown function", "no such overload for function")


def evaluate(rule: str, value: Any) -> bool | None:
    """True/False, or None where cel-python cannot evaluate the rule.

    A runtime error caused by the data (a missing key, say) fails the rule, as it makes the
    API server reject the object; a function cel-python lacks leaves the rule unchecked.
    """
    try:
        program = _program(rule)
    except Exception:
        return None
    try:
        result = program.evaluate({"self": celpy.json_to_cel(value)})
    except CELEvalError as exc:
        return None if any(u in str(exc) for u in _UNSUPPORTED) else False
    except Exception:
        return None
    if isinstance(result, CELEvalError):
        return None if any(u in str(result) for u in _UNSUPPORTED) else False
    if not isinstance(result, celpy.celtypes.BoolType):
        return None
    return bool(result)


def check_rules(obj: K8sObject, body: Any, rules: list[CelRule], counts: dict[str, int]) -> list[Finding]:
    """body is obj as the API server sees it (defaults applied); obj names it in findings."""
    findings = []
    for rule in rules:
        if "oldSelf" in rule.rule:
            counts["transition_skipped"] = counts.get("transition_skipped", 0) + 1
            continue
        for where, value in values_at(body, rule.path, []):
            verdict = evaluate(rule.rule, value)
            key = {True: "passed", False: "failed", None: "unsupported"}[verdict]
            counts[key] = counts.get(key, 0) + 1
            if verdict is False:
                findings.append(Finding(obj.file, obj.ref, field_path(where) or "(object)",
                                        f"CEL rule failed: {rule.message}", "cel"))
    return findings


def _rules_in(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(field, rule) of every x-kubernetes-validations rule in an OpenAPI schema node, with the rule's own path."""
    if not isinstance(node, dict):
        return
    for index, item in enumerate(node.get("x-kubernetes-validations") or []):
        if isinstance(item, dict) and isinstance(item.get("rule"), str):
            yield f"{where}.x-kubernetes-validations[{index}].rule", item["rule"]
    for key in ("properties", "patternProperties"):
        for name, child in (node.get(key) or {}).items():
            yield from _rules_in(child, f"{where}.{key}.{name}")
    for key in ("items", "additionalProperties", "not"):
        yield from _rules_in(node.get(key), f"{where}.{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        for index, child in enumerate(node.get(key) or []):
            yield from _rules_in(child, f"{where}.{key}[{index}]")


def check_compiles(obj: K8sObject) -> list[Finding]:
    """A CustomResourceDefinition of the repository: each CEL rule must parse, as the API server refuses a CRD whose
    rule does not compile. Only the syntax: a function cel-python lacks is no error of the CRD's."""
    findings = []
    for index, version in enumerate((obj.body.get("spec") or {}).get("versions") or []):
        schema = ((version or {}).get("schema") or {}).get("openAPIV3Schema")
        for field, rule in _rules_in(schema, f"spec.versions[{index}].schema.openAPIV3Schema"):
            try:
                _ENV.compile(rule)
            except celpy.CELParseError as error:
                # The parser's own words ("Unexpected token ...") are in the error it chained.
                cause = " ".join(str(error.__context__ or "syntax error").split())[:200]
                at = f" at column {error.column}" if getattr(error, "column", None) else ""
                findings.append(Finding(obj.file, obj.ref, field, f"CEL rule does not compile{at}: {rule!r}: "
                                        f"{cause}", "cel"))
    return findings
