"""Turn a CRD's openAPIV3Schema into a strict JSON schema, as the API server would apply it.

Strict means: a field that the API server would prune is an error here. CEL rules
(x-kubernetes-validations) are collected with the path they apply at.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from mmgitops.errors import ToolError
from mmgitops.gitops.yamlio import load_all

CONVERTER_VERSION = "5"  # bump when the conversion below changes, to refresh caches
COPIED = (
    "default", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "required", "multipleOf", "format",
)


@dataclass
class CelRule:
    path: list[str]  # property names; "[]" = every item, "{}" = every map value
    rule: str
    message: str


@dataclass
class CrdKind:
    group: str
    version: str
    kind: str
    scope: str
    source: str  # module@version/path, or the file given with --crds
    schema: dict[str, Any]
    rules: list[CelRule] = field(default_factory=list)


def convert(node: dict[str, Any], path: tuple[str, ...], rules: list[CelRule] | None) -> dict[str, Any]:
    """rules is None inside allOf/anyOf/oneOf/not: there the schema only constrains, never prunes."""
    out: dict[str, Any] = {}
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        kind = None
    if kind:
        out["type"] = [kind, "null"] if node.get("nullable") else kind
    for key in COPIED:
        if key in node:
            out[key] = node[key]
    if node.get("format") not in (None, "date-time", "email", "ipv4", "ipv6", "uri"):
        out.pop("format", None)  # int32, byte, quantity...: the API server's own formats
    if node.get("nullable") and "enum" in out:
        out["enum"] = [*out["enum"], None]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            subs = [convert(sub, path, None) for sub in node[key] if isinstance(sub, dict)]
            if key in out:  # anyOf already holds int-or-string: nest to keep both
                out.setdefault("allOf", []).append({key: subs})
            else:
                out[key] = subs
    if isinstance(node.get("not"), dict):
        out["not"] = convert(node["not"], path, None)
    if "properties" in node:
        out["properties"] = {k: convert(v, (*path, k), rules) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = convert(node["items"], (*path, "[]"), rules)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = convert(extra, (*path, "{}"), rules)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif kind == "object" and rules is not None and not node.get("x-kubernetes-preserve-unknown-fields"):
        if node.get("x-kubernetes-embedded-resource"):
            props = out.setdefault("properties", {})
            for key in ("apiVersion", "kind"):
                props.setdefault(key, {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        out["additionalProperties"] = False
    if rules is not None:
        for item in node.get("x-kubernetes-validations") or []:
            rules.append(CelRule(list(path), item.get("rule", ""), item.get("message") or item.get("rule", "")))
    return out


def kinds_from_crd(doc: dict[str, Any], source: str, object_meta_ref: dict[str, str]) -> list[CrdKind]:
    spec = doc.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        raw = ((version.get("schema") or {}).get("openAPIV3Schema")) or (spec.get("validation") or {}).get(
            "openAPIV3Schema") or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        rules: list[CelRule] = []
        schema = convert(raw, (), rules)
        props = schema.setdefault("properties", {})
        props["metadata"] = object_meta_ref
        props["apiVersion"] = {"type": "string"}
        props["kind"] = {"type": "string"}
        out.append(CrdKind(spec.get("group", ""), version["name"], names.get("kind", ""),
                           spec.get("scope", "Namespaced"), source, schema, rules))
    return out


def cache_file(key: str) -> Path:
    return Path(platformdirs.user_cache_dir("mmgitops")) / "crd-schemas" / f"{key}.json"


def load_crd_files(files: list[tuple[Path, str]], object_meta_ref: dict[str, str]) -> list[CrdKind]:
    """CRD kinds from (file, source label) pairs, through a cache keyed by content."""
    digest = hashlib.sha256(CONVERTER_VERSION.encode())
    for path, label in files:
        digest.update(label.encode())
        digest.update(path.read_bytes())
    cached = cache_file(digest.hexdigest()[:24])
    if cached.is_file():
        try:
            return [CrdKind(**{**k, "rules": [CelRule(**r) for r in k["rules"]]})
                    for k in json.loads(cached.read_text(encoding="utf-8"))]
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache is rebuilt below
    kinds: list[CrdKind] = []
    for path, label in files:
        try:
            docs = load_all(path.read_text(encoding="utf-8"))
        except Exception as exc:
            raise ToolError(f"{path}: cannot read CRD: {str(exc).splitlines()[0]}") from exc
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                try:
                    kinds.extend(kinds_from_crd(doc, label, object_meta_ref))
                except (KeyError, TypeError, AttributeError) as exc:
                    raise ToolError(f"{path}: not a CRD this tool can read ({type(exc).__name__}: {exc})") from exc
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(k) for k in kinds]), encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a cache directory that cannot be written costs the next run this conversion, nothing else
    return kinds


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """A copy of value with the schema's defaults filled in, as the API server does before it validates."""
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = json.loads(json.dumps(sub["default"]))
        for key, item in list(out.items()):
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if isinstance(sub, dict):
                out[key] = apply_defaults(item, sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value
