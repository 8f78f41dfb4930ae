"""Which ServingRuntimes will serve an InferenceService, as modelmesh-serving (RHOAI 2.25) decides it.

The controller reduces an InferenceService to a predictor (pkg/predictor_source/inferenceservice_registry.go
BuildBasePredictorFromInferenceService) and gives its model one type label (controllers/modelmesh/
model_type_labels.go GetPredictorTypeLabel); each runtime's pods carry a label set (GetServingRuntimeLabelSets).
ModelMesh places the model only on pods that carry every `|`-separated part of its label
(controllers/servingruntime_controller.go runtimeSupportsPredictor). Only runtimes with `multiModel: true` and not
`disabled` publish labels (controllers/modelmesh/cluster_config.go calculateConstraintData), and a namespaced
ServingRuntime replaces the ClusterServingRuntime of the same name (servingruntime_controller.go Reconcile).
Nothing else about a runtime takes part in the choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mmgitops.gitops.checks.modelmesh.context import NamespaceView
from mmgitops.gitops.objects import K8sObject, dig

# getPredictorFramework's order: with several set, the first wins. KServe's paddle and huggingface are not here:
# modelmesh-serving does not know them.
FRAMEWORKS = ("xgboost", "lightgbm", "sklearn", "tensorflow", "onnx", "pytorch", "triton", "pmml")
RUNTIME_ANNOTATION = "serving.kserve.io/servingRuntime"
RUNTIME_ANNOTATION_FIELD = f"metadata.annotations.{RUNTIME_ANNOTATION}"
MODEL = "spec.predictor.model"
FIXES = {"case": "spell the format as the runtime does", "inactive": "set multiModel: true and drop disabled",
         "autoselect": "add autoSelect: true to that format or name the runtime in predictor.model.runtime",
         "version": "use the runtime's version string or drop modelFormat.version",
         "protocol": "drop protocolVersion or serve it from a runtime that offers it"}


@dataclass(frozen=True)
class Predictor:
    """What the controller keeps of an InferenceService's predictor for placement."""

    format: str
    version: str | None
    protocol: str | None
    runtime: str | None  # an explicit runtime; None lets the labels choose
    base: str  # the spec it came from: spec.predictor.model or spec.predictor.<framework>
    runtime_field: str  # where an explicit runtime is named

    @property
    def legacy(self) -> bool:
        return self.base != MODEL


@dataclass(frozen=True)
class Refusal:
    """Why BuildBasePredictorFromInferenceService returns an error for the InferenceService."""

    field: str
    why: str
    fix: str


@dataclass(frozen=True)
class Runtime:
    name: str
    variants: tuple[K8sObject, ...]  # every rendered variant; any one of them may be what the cluster gets
    cluster: bool  # a ClusterServingRuntime no namespaced ServingRuntime replaces

    def specs(self) -> list[dict[str, Any]]:
        return [_mapping(v.body.get("spec")) for v in self.variants]


@dataclass(frozen=True)
class Reason:
    """Why one runtime does not carry a predictor's label; `kind` picks the field and the fix."""

    kind: str  # case, inactive, autoselect, version or protocol
    text: str

    @property
    def fix(self) -> str:
        return FIXES[self.kind]


def predictor(body: dict[str, Any]) -> Predictor | Refusal:
    """Port of BuildBasePredictorFromInferenceService (inferenceservice_registry.go) for a ModelMesh ISVC."""
    spec = _mapping(dig(body, "spec", "predictor"))
    annotations = _mapping(dig(body, "metadata", "annotations"))
    framework = next((f for f in FRAMEWORKS if isinstance(spec.get(f), dict)), None)
    model = spec.get("model")
    if isinstance(model, dict):
        if framework:
            return Refusal(f"spec.predictor.{framework}", f"predictor.model together with predictor.{framework}",
                           f"remove predictor.{framework}")
        if RUNTIME_ANNOTATION in annotations:
            return Refusal(RUNTIME_ANNOTATION_FIELD, f"predictor.model together with the {RUNTIME_ANNOTATION} "
                           "annotation", "name the runtime in predictor.model.runtime instead")
        model_format = _mapping(model.get("modelFormat"))
        return Predictor(_text(model_format.get("name")) or "", _text(model_format.get("version")),
                         _protocol(model), _text(model.get("runtime")) or None, MODEL, f"{MODEL}.runtime")
    if framework is None:
        return Refusal("spec.predictor", "no predictor.model and no predictor framework modelmesh-serving knows "
                       "(no valid InferenceService predictor framework found)",
                       "write predictor.model with modelFormat.name")
    # The legacy form: the format is the framework's key, with no version; the runtime comes from the annotation.
    runtime = annotations.get(RUNTIME_ANNOTATION)
    return Predictor(framework, None, _protocol(spec[framework]), _text(runtime) or None,
                     f"spec.predictor.{framework}", RUNTIME_ANNOTATION_FIELD)


def type_label(p: Predictor) -> str:
    """Port of GetPredictorTypeLabel: `rt:<runtime>`, else `mt:<format>[:<version>][|pv:<protocol>]`."""
    if p.runtime:
        return f"rt:{p.runtime}"
    label = f"mt:{p.format}" if p.version is None else f"mt:{p.format}:{p.version}"
    return f"{label}|pv:{p.protocol}" if p.protocol else label


def runtime_labels(spec: dict[str, Any], rest_proxy: bool, name: str) -> set[str]:
    """Port of GetServingRuntimeLabelSet: formats only with autoSelect: true; `pv:v2` for grpc-v2 behind the
    REST proxy; always `rt:<name>`."""
    labels = {f"rt:{name}"}
    for entry in formats(spec):
        if entry.get("autoSelect") is True:
            labels.add(f"mt:{_text(entry.get('name')) or ''}")
            if entry.get("version") is not None:
                labels.add(f"mt:{_text(entry.get('name')) or ''}:{_text(entry.get('version'))}")
    for protocol in protocols(spec):
        labels.add(f"pv:{protocol}")
        if rest_proxy and protocol == "grpc-v2":
            labels.add("pv:v2")
    return labels


def publishes(spec: dict[str, Any]) -> bool:
    """calculateConstraintData's filter: only these runtimes' labels exist in ModelMesh's type constraints."""
    return spec.get("multiModel") is True and spec.get("disabled") is not True


def supports(spec: dict[str, Any], name: str, label: str, rest_proxy: bool) -> bool:
    """Port of runtimeSupportsPredictor: the runtime has every part of the label."""
    have = runtime_labels(spec, rest_proxy, name)
    return all(part in have for part in label.split("|"))


def runtimes(view: NamespaceView, cluster: dict[str, list[K8sObject]]) -> dict[str, Runtime]:
    """The runtime set of a namespace (servingruntime_controller.go Reconcile): multi-model ClusterServingRuntimes,
    then every namespaced ServingRuntime by name over them, whatever its own multiModel."""
    table: dict[str, Runtime] = {}
    for name, variants in cluster.items():
        multi = tuple(v for v in variants if _mapping(v.body.get("spec")).get("multiModel") is True)
        if multi:
            table[name] = Runtime(name, multi, cluster=True)
    for name, variants in view.runtimes.items():
        table[name] = Runtime(name, tuple(variants), cluster=False)
    return table


def serving(p: Predictor, table: dict[str, Runtime], rest_proxy: bool) -> list[Runtime]:
    """The runtimes ModelMesh may place the predictor's model on: any variant publishing its label."""
    label = type_label(p)
    return [rt for rt in table.values()
            if any(publishes(s) and supports(s, rt.name, label, rest_proxy) for s in rt.specs())]


def why_not(p: Predictor, table: dict[str, Runtime], rest_proxy: bool) -> list[Reason]:
    """For a predictor no runtime serves: what near miss each runtime variant has, in the order ModelMesh would
    need them (name, active, autoSelect, version, protocol)."""
    reasons: list[Reason] = []
    for rt in table.values():
        for spec in rt.specs():
            reason = _near_miss(p, rt.name, spec, rest_proxy)
            if reason and reason not in reasons:
                reasons.append(reason)
    return reasons


def lists_format(spec: dict[str, Any], name: str) -> bool:
    """Whether a runtime lists the format at all; the adapters lower-case the type (e.g. RA
    model-mesh-triton-adapter/server/adaptmodellayout.go adaptModelLayoutForRuntime), so case does not matter."""
    return any((_text(f.get("name")) or "").lower() == name.lower() for f in formats(spec))


def formats(spec: dict[str, Any]) -> list[dict[str, Any]]:
    entries = spec.get("supportedModelFormats")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def protocols(spec: dict[str, Any]) -> list[str]:
    entries = spec.get("protocolVersions")
    return [str(e) for e in entries] if isinstance(entries, list) else []


def extension(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where the controller reads storage from: predictor.model, else the first framework it knows."""
    p = predictor(body)
    base = p.base if isinstance(p, Predictor) else MODEL
    return base, _mapping(dig(body, *base.split(".")))


def route_runtimes(p: Predictor, view: NamespaceView) -> list[K8sObject]:
    """odh-model-controller's choice for the Route (mm_route_reconciler.go findSupportingRuntimeForISvc): the named
    namespaced runtime, else any not disabled, multiModel not false, listing the format name with autoSelect; it
    takes the newest of those, which the repository cannot know. ClusterServingRuntimes never count."""
    if p.runtime:
        return list(view.runtimes.get(p.runtime, []))
    return [v for variants in view.runtimes.values() for v in variants if _route_candidate(v, p.format)]


@dataclass(frozen=True)
class StorageUri:
    scheme: str
    host: str
    path: str


def parse_storage_uri(text: str) -> StorageUri | str:
    """The scheme, host and path Go's net/url.Parse gives processInferenceServiceStorage, or why Parse fails
    (the cases a storageUri meets: control characters, a leading ':', a colon before the first '/' without a
    scheme, a bad port or host character, a bad %-escape)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "invalid control character in URL"
    scheme, rest = _scheme(text.split("#", 1)[0])
    if scheme is None:
        return "missing protocol scheme"
    rest = rest.split("?", 1)[0]
    if not rest.startswith("/"):
        if not scheme and ":" in rest.split("/", 1)[0]:
            return "first path segment in URL cannot contain colon"
        return StorageUri(scheme, "", "")  # opaque: Go leaves Host and Path empty
    host, path = "", rest
    if rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        host, path = authority.rpartition("@")[2], slash + tail
        port = host.rpartition(":")[2] if ":" in host and not host.startswith("[") else ""
        if port and not (port.isascii() and port.isdigit()):
            return f"invalid port {':' + port!r} after host"
        if re.search(r"[ \\^`{|}]", host):
            return "invalid character in host name"
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        return "invalid URL escape"
    return StorageUri(scheme.lower(), host, path)


def _scheme(text: str) -> tuple[str | None, str]:
    """Go's getScheme: letters, then letters, digits, '+', '-', '.' up to ':'; None for a leading ':'."""
    for i, c in enumerate(text):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-.") and i > 0:
            continue
        if c == ":":
            return (None, "") if i == 0 else (text[:i], text[i + 1:])
        break
    return "", text


def _route_candidate(obj: K8sObject, model_format: str) -> bool:
    spec = _mapping(obj.body.get("spec"))
    return (spec.get("disabled") is not True and spec.get("multiModel") is not False
            and any(f.get("autoSelect") is True and f.get("name") == model_format for f in formats(spec)))


def _near_miss(p: Predictor, name: str, spec: dict[str, Any], rest_proxy: bool) -> Reason | None:
    same = [f for f in formats(spec) if _text(f.get("name")) == p.format]
    if not same:
        other = next((n for f in formats(spec) if (n := _text(f.get("name")) or "").lower() == p.format.lower()),
                     None)
        return Reason("case", f"{name} lists {other!r}, not {p.format!r}: names are case-sensitive") if other else None
    if not publishes(spec):
        state = "disabled" if spec.get("disabled") is True else "not multiModel: true"
        return Reason("inactive", f"{name} lists {p.format} but is {state}")
    auto = [f for f in same if f.get("autoSelect") is True]
    if not auto:
        return Reason("autoselect", f"{name} lists {p.format} without autoSelect: true")
    versions = sorted({repr(_text(f.get("version"))) if f.get("version") is not None else "no version" for f in auto})
    if p.version is not None and repr(p.version) not in versions:
        return Reason("version", f"{name} lists {p.format} with {' and '.join(versions)}, not {p.version!r}, and "
                      "versions match only as equal strings")
    if p.protocol and f"pv:{p.protocol}" not in runtime_labels(spec, rest_proxy, name):
        return Reason("protocol", _protocol_miss(name, spec, p.protocol, rest_proxy))
    return None


def _protocol_miss(name: str, spec: dict[str, Any], protocol: str, rest_proxy: bool) -> str:
    offered = protocols(spec)
    if protocol == "v2" and "grpc-v2" in offered and not rest_proxy:
        return f"{name} offers grpc-v2 but model-serving-config disables the REST proxy, which alone adds v2"
    shown = ", ".join(offered) if offered else "no protocolVersions"
    hint = " (v2 comes only from grpc-v2 with the REST proxy)" if protocol == "v2" else ""
    return f"{name} offers {shown}, not {protocol}{hint}"


def _protocol(spec: Any) -> str | None:
    # KServe's ProtocolUnknown is "": the controller drops it like an absent protocolVersion.
    return _text(_mapping(spec).get("protocolVersion")) or None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
