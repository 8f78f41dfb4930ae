"""Schema validation of each object, with jsonschema errors turned into one-line findings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jsonschema.exceptions import ValidationError

from mmgitops.errors import Finding
from mmgitops.gitops.objects import K8sObject
from mmgitops.gitops.schemas.catalog import Catalog
from mmgitops.gitops.schemas.crd import apply_defaults

_REQUIRED = re.compile(r"'([^']+)' is a required property")


def field_path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: ValidationError) -> Iterator[tuple[str, str]]:
    """(field path, message) pairs for one jsonschema error."""
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and err.validator_value is False and isinstance(err.instance, dict):
        known = err.schema.get("properties", {})
        for key in err.instance:
            if key not in known:
                yield field_path([*path, key]), f"unknown field {key!r}"
        return
    if err.validator == "required":
        match = _REQUIRED.search(err.message)
        missing = match.group(1) if match else "?"
        yield field_path([*path, missing]), "required field is missing"
        return
    if err.validator == "enum":
        allowed = [v for v in err.validator_value if v is not None]
        yield field_path(path), f"{short(err.instance)} is not one of {allowed}"
        return
    if err.validator == "type":
        yield field_path(path), f"{short(err.instance)} is not of type {err.validator_value}"
        return
    if err.validator == "anyOf" and err.schema.get("anyOf") == [{"type": "integer"}, {"type": "string"}]:
        yield field_path(path), f"{short(err.instance)} is neither an integer nor a string"
        return
    yield field_path(path), err.message.replace("\n", " ")[:200]


def check_object(obj: K8sObject, catalog: Catalog, counts: dict[str, int]) -> tuple[list[Finding], str]:
    """Findings, and which schema source checked the object ("crd", "builtin" or "")."""
    source, validator = catalog.validator(obj.group, obj.version, obj.kind)
    if validator is None:
        return [no_schema(obj, catalog)], ""
    counts[source] = counts.get(source, 0) + 1
    findings = []
    for err in validator.iter_errors(defaulted(obj, catalog)):
        for path, message in describe(err):
            findings.append(Finding(obj.file, obj.ref, path, message, "schema"))
    return findings, source


def defaulted(obj: K8sObject, catalog: Catalog) -> Any:
    """The object as the API server validates it: with its CRD's defaults applied."""
    crd = catalog.crd(obj.group, obj.version, obj.kind)
    return apply_defaults(obj.body, crd.schema) if crd else obj.body


def no_schema(obj: K8sObject, catalog: Catalog) -> Finding:
    if not obj.kind or not obj.api_version:
        missing = "kind" if not obj.kind else "apiVersion"
        return Finding(obj.file, obj.ref, missing, "required field is missing", "schema")
    served = catalog.crd_versions(obj.group, obj.kind) or catalog.builtin.versions_of(obj.group, obj.kind)
    if served:
        return Finding(obj.file, obj.ref, "apiVersion",
                       f"{obj.api_version} is not served; {obj.kind} is served as "
                       + ", ".join(f"{obj.group + '/' if obj.group else ''}{v}" for v in served), "schema")
    elsewhere = catalog.crd_groups_of(obj.kind)
    hint = f" ({obj.kind} is known as {', '.join(elsewhere)})" if elsewhere else (
        "; pin its CRD in pins.toml or pass --crds DIR")
    return Finding(obj.file, obj.ref, "apiVersion",
                   f"no schema for {obj.api_version} {obj.kind}{hint}", "schema")
