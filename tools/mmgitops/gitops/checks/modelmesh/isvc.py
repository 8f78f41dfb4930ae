"""ModelMesh rules for InferenceServices: what modelmesh-serving (RHOAI 2.25), odh-model-controller and KServe's
webhook will do with one. Only InferenceServices annotated `serving.kserve.io/deploymentMode: ModelMesh` exactly:
modelmesh-serving ignores every other one (inferenceservice_registry.go BuildBasePredictorFromInferenceService)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mmgitops.errors import Finding
from mmgitops.gitops.checks.modelmesh import selection as sel
from mmgitops.gitops.checks.modelmesh.context import SERVING, NamespaceView
from mmgitops.gitops.checks.rules import Context, finding, rule
from mmgitops.gitops.objects import K8sObject, dig

MODE = "serving.kserve.io/deploymentMode"
REGISTRY = "modelmesh-serving pkg/predictor_source/inferenceservice_registry.go"
NO_SUPPORT = "FailedToLoad/NoSupportingRuntime"
NOT_RECOGNIZED = "FailedToLoad/RuntimeNotRecognized"
NO_STATUS = "the InferenceService never gets a status, only a modelmesh-controller log line per retry"
R1, R5, R15 = "mm-isvc-runtime-match", "mm-isvc-silent-spec", "mm-clusterservingruntime"


def modelmesh_isvc(obj: K8sObject) -> bool:
    return obj.kind == "InferenceService" and obj.group == SERVING and obj.annotations.get(MODE) == "ModelMesh"


def _placed(obj: K8sObject, ctx: Context) -> tuple[sel.Predictor, NamespaceView, dict[str, sel.Runtime]] | None:
    """The predictor the controller places, its namespace and runtime set; None when it never gets that far, or
    the namespace lacks modelmesh-enabled (no runtime runs there; `isvc-modelmesh-namespace` says so)."""
    if not modelmesh_isvc(obj) or not obj.namespace:
        return None
    view = ctx.mesh.namespace(obj.namespace)
    p = sel.predictor(obj.body)
    if not isinstance(p, sel.Predictor) or (view.labels is not None and view.labels.get("modelmesh-enabled") != "true"):
        return None
    return p, view, sel.runtimes(view, ctx.mesh.cluster_runtimes)


# --- R1: runtime selection -----------------------------------------------------------------

@rule(R1, "ModelMesh places a model only on a multi-model runtime whose labels carry its format, version and "
      "protocol, or on the runtime it names",
      source="modelmesh-serving controllers/modelmesh/model_type_labels.go GetPredictorTypeLabel, "
      "GetServingRuntimeLabelSets; cluster_config.go calculateConstraintData; servingruntime_controller.go Reconcile",
      symptom="FailedToLoad with NoSupportingRuntime or RuntimeNotRecognized; with a wrong explicit runtime, "
      "ModelLoadFailed from its adapter",
      fix="list the format with autoSelect: true, an equal version and the protocol on a multiModel runtime, or "
      "name a runtime that lists it in predictor.model.runtime")
def runtime_match(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors GetPredictorTypeLabel/GetServingRuntimeLabelSets (controllers/modelmesh/model_type_labels.go),
    runtimeSupportsPredictor and Reconcile's runtime set (controllers/servingruntime_controller.go); the status
    predicted is decodeModelState's (controllers/predictor_controller.go)."""
    placed = _placed(obj, ctx)
    if placed:
        p, view, table = placed
        yield from (_explicit if p.runtime else _auto)(obj, ctx, p, view, table)


def _explicit(obj: K8sObject, ctx: Context, p: sel.Predictor, view: NamespaceView, table: dict[str, sel.Runtime]
              ) -> Iterator[Finding]:
    name, field = p.runtime or "", p.runtime_field
    runtime = table.get(name)
    if runtime is None and not view.runtimes:
        yield finding(obj, field, f"{_none_defined(obj, ctx)}; unless {name} is made elsewhere (e.g. the dashboard),"
                      f" ModelMesh will report {NOT_RECOGNIZED}", R1, "warning")
    elif runtime is None:
        yield finding(obj, field, f"no ServingRuntime {name!r} in namespace {obj.namespace} (there: "
                      f"{', '.join(sorted(table))}); ModelMesh will report {NOT_RECOGNIZED}; fix the name", R1)
    elif not any(sel.publishes(s) for s in runtime.specs()):
        state = "disabled" if all(s.get("disabled") is True for s in runtime.specs()) else "not multiModel: true"
        yield finding(obj, field, f"ServingRuntime {name} is {state}: the controller deletes its Deployment and "
                      f"publishes no labels; ModelMesh will report {NOT_RECOGNIZED}; enable it or name another", R1)
    elif not any(sel.lists_format(s, p.format) for s in runtime.specs() if sel.publishes(s)):
        listed = ", ".join(sorted({str(f.get("name")) for s in runtime.specs() for f in sel.formats(s)})) or "none"
        yield finding(obj, field, f"{name} does not list format {p.format!r} (only {listed}); the controller does not "
                      f"check, so the model goes to {name} and its adapter lays it out for the wrong server "
                      f"(FailedToLoad/ModelLoadFailed); name a runtime that lists {p.format}", R1)


def _auto(obj: K8sObject, ctx: Context, p: sel.Predictor, view: NamespaceView, table: dict[str, sel.Runtime]
          ) -> Iterator[Finding]:
    rest_proxy = ctx.mesh.config().rest_proxy
    found = sel.serving(p, table, rest_proxy)
    if len(found) > 1:
        yield finding(obj, _format_field(p), f"{len(found)} runtimes serve {_wanted(p)} ("
                      f"{', '.join(sorted(rt.name for rt in found))}): ModelMesh pools their pods and may place copies"
                      " on any of them, and odh-model-controller takes Route settings from the newest; name one in "
                      "predictor.model.runtime", R1, "warning")
    if found:
        return
    reasons = sel.why_not(p, table, rest_proxy)
    because = f" ({'; '.join(r.text for r in reasons)})" if reasons else ""
    if not view.runtimes:
        yield finding(obj, _format_field(p), f"{_none_defined(obj, ctx)}{because}; unless one serving {_wanted(p)} is"
                      f" made elsewhere (e.g. the dashboard), ModelMesh will report {NO_SUPPORT}", R1, "warning")
        return
    fix = reasons[0].fix if reasons else "add a multiModel runtime listing it with autoSelect: true"
    yield finding(obj, _reason_field(p, {r.kind for r in reasons}), f"no multi-model ServingRuntime in namespace "
                  f"{obj.namespace} serves {_wanted(p)}{because}; ModelMesh will report {NO_SUPPORT}; {fix}", R1)


def _none_defined(obj: K8sObject, ctx: Context) -> str:
    return f"no ServingRuntime for namespace {obj.namespace} is defined in {ctx.mesh.source}"


def _wanted(p: sel.Predictor) -> str:
    version = f" version {p.version!r}" if p.version is not None else ""
    return f"format {p.format!r}{version}" + (f" over {p.protocol}" if p.protocol else "")


def _format_field(p: sel.Predictor) -> str:
    return p.base if p.legacy else f"{p.base}.modelFormat.name"


def _reason_field(p: sel.Predictor, kinds: set[str]) -> str:
    if kinds == {"protocol"}:
        return f"{p.base}.protocolVersion"
    return f"{p.base}.modelFormat.version" if kinds == {"version"} else _format_field(p)


# --- R15: ClusterServingRuntimes -------------------------------------------------------------

@rule(R15, "RHOAI's ModelMesh install deletes the ClusterServingRuntime CRD; odh-model-controller reads only "
      "namespaced ServingRuntimes",
      source="modelmesh-serving main.go checkCSRVar, config/overlays/odh/kustomization.yaml; odh-model-controller "
      "mm_route_reconciler.go findSupportingRuntimeForISvc",
      symptom="FailedToLoad/NoSupportingRuntime when the CRD was absent at controller start; no Route either way",
      fix="define the runtime as a ServingRuntime in the InferenceService's namespace")
def cluster_runtime(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors modelmesh-serving main.go checkCSRVar (CSRs watched only if their CRD exists at start) with
    servingruntime_controller.go Reconcile, and odh-model-controller findSupportingRuntimeForISvc."""
    placed = _placed(obj, ctx)
    found = sel.serving(placed[0], placed[2], ctx.mesh.config().rest_proxy) if placed else []
    if placed and found and all(rt.cluster for rt in found):
        p = placed[0]
        yield finding(obj, p.runtime_field if p.runtime else _format_field(p), "only ClusterServingRuntime "
                      f"{', '.join(sorted(rt.name for rt in found))} serves it: modelmesh-controller reads those only "
                      "if their CRD (deleted by RHOAI's ModelMesh install, brought by KServe) existed when it started,"
                      f" else {NO_SUPPORT}; odh-model-controller makes no Route from them; define a ServingRuntime in "
                      f"namespace {obj.namespace}", R15, "warning")


# --- R5: what the controller refuses without a status ----------------------------------------

SCHEMES = ("pvc", "s3", "gs", "http", "https")


@rule(R5, "modelmesh-serving refuses these InferenceServices before it writes any status",
      source=f"{REGISTRY} BuildBasePredictorFromInferenceService, processInferenceServiceStorage; "
      "controllers/predictor_controller.go ReconcilePredictor",
      symptom="no status at all; modelmesh-controller logs 'failed to fetch CR from kubebuilder cache for predictor'",
      fix="predictor.model alone, with the runtime in predictor.model.runtime; one of storageUri (s3, gs, pvc, "
      "http, https) or storage.path")
def silent_spec(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors BuildBasePredictorFromInferenceService and processInferenceServiceStorage
    (inferenceservice_registry.go), whose errors ReconcilePredictor (controllers/predictor_controller.go) returns
    before any status update."""
    if not modelmesh_isvc(obj):
        return
    p = sel.predictor(obj.body)
    if isinstance(p, sel.Refusal):
        yield finding(obj, p.field, f"modelmesh-serving refuses {p.why}: {NO_STATUS}; {p.fix}", R5)
        return
    spec = _mapping(dig(obj.body, *p.base.split(".")))
    uri, path = spec.get("storageUri"), _mapping(spec.get("storage")).get("path")
    if uri is None and path is None:
        yield finding(obj, f"{p.base}.storageUri", f"neither storageUri nor storage.path: {NO_STATUS}; set one", R5)
    elif uri is not None and path is not None:
        yield finding(obj, f"{p.base}.storage.path", f"both storageUri and storage.path: {NO_STATUS}; keep one", R5)
    elif uri is not None:
        yield from _uri(obj, f"{p.base}.storageUri", str(uri))
    elif str(path).startswith("/"):
        yield finding(obj, f"{p.base}.storage.path", f"storage.path {path!r} starts with '/': it is used verbatim as "
                      "the S3/GCS object prefix, which then matches nothing (FailedToLoad/ModelLoadFailed 'Error "
                      "calling stat on ...'); drop the leading '/'", R5, "warning")


def _uri(obj: K8sObject, field: str, uri: str) -> Iterator[Finding]:
    parsed = sel.parse_storage_uri(uri)
    if isinstance(parsed, str):
        yield finding(obj, field, f"{uri!r} does not parse as a URL ({parsed}): {NO_STATUS}; fix it", R5)
    elif parsed.scheme not in SCHEMES:
        what = f"scheme {parsed.scheme!r}" if parsed.scheme else "no scheme (a local path?)"
        yield finding(obj, field, f"{uri!r} has {what}; modelmesh-serving reads only {', '.join(SCHEMES)}: "
                      f"{NO_STATUS}; use one of those, or storage.key with storage.path", R5)
    elif parsed.scheme in ("s3", "gs") and not parsed.path.strip("/"):
        yield finding(obj, field, f"{uri!r} gives an empty model path: the puller skips every object for an empty "
                      "prefix and the load fails (FailedToLoad/ModelLoadFailed 'Error calling stat on ...'); add the "
                      "model's path after the bucket", R5)


# --- R9, R10: what nothing reads -------------------------------------------------------------

READ_ANNOTATIONS = {MODE, "serving.kserve.io/secretKey", "serving.kserve.io/schemaPath", sel.RUNTIME_ANNOTATION}
RUNTIME_SCALING = {"autoscalerClass", "metrics", "targetUtilizationPercentage", "min-scale", "max-scale"}


@rule("mm-isvc-unread-annotation", "of the serving.kserve.io annotations on an InferenceService modelmesh-serving "
      "reads only deploymentMode, secretKey, schemaPath and servingRuntime",
      source=f"{REGISTRY} BuildBasePredictorFromInferenceService, processInferenceServiceStorage (its only "
      "annotation reads)", symptom="none: the annotation silently does nothing",
      fix="scaling annotations go on the ServingRuntime; there is no per-model priority; remove the rest")
def unread_annotation(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors the annotation reads of BuildBasePredictorFromInferenceService and processInferenceServiceStorage
    (inferenceservice_registry.go; secretKey and schemaPath only as fallbacks for the storage fields)."""
    if not modelmesh_isvc(obj):
        return
    for key in sorted(obj.annotations):
        if key.startswith("serving.kserve.io/") and key not in READ_ANNOTATIONS:
            yield finding(obj, f"metadata.annotations.{key}", f"nothing in modelmesh-serving reads {key} on an "
                          f"InferenceService; {_annotation_advice(key)}", "mm-isvc-unread-annotation", "warning")
    base, spec = sel.extension(obj.body)
    for key, shadow in (("secretKey", "key"), ("schemaPath", "schemaPath")):
        if f"serving.kserve.io/{key}" in obj.annotations and _mapping(spec.get("storage")).get(shadow) is not None:
            yield finding(obj, f"metadata.annotations.serving.kserve.io/{key}", f"{base}.storage.{shadow} wins: the "
                          "annotation is only its fallback and is ignored; remove one", "mm-isvc-unread-annotation",
                          "warning")


def _annotation_advice(key: str) -> str:
    short = key.removeprefix("serving.kserve.io/")
    if short in RUNTIME_SCALING:
        return "the controller scales runtime pods, not models: put it on the ServingRuntime"
    if short == "priority":
        return "ModelMesh has no per-model priority: it evicts least recently used models only when memory runs out"
    return "remove it"


IGNORED = {  # where the intent of a field ModelMesh ignores lives instead
    **dict.fromkeys(("minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"),
                    "the ServingRuntime's replicas (or its HPA annotations) size the pods that serve every model"),
    "containerConcurrency": "use the ServingRuntime annotation perModelConcurrencyLimit",
    "canaryTrafficPercent": "ModelMesh has no canary: a changed spec replaces the model once the new copy loads",
    "resources": "set resources on the ServingRuntime's containers, shared by every model they load",
    **dict.fromkeys(("nodeSelector", "tolerations", "affinity", "volumes", "labels", "annotations"),
                    "set it on the ServingRuntime's spec, which makes the pods"),
    "serviceAccountName": "runtime pods run as model-serving-config's serviceAccountName (modelmesh-serving-sa)",
    "imagePullSecrets": "use model-serving-config's imagePullSecrets",
    **dict.fromkeys(("transformer", "explainer"), "ModelMesh deploys only the predictor's model"),
    **dict.fromkeys(("paddle", "huggingface"), "modelmesh-serving knows no such framework and reads predictor.model"),
}
MODEL_READ = {"modelFormat", "runtime", "protocolVersion", "storageUri", "storage"}
PREDICTOR_READ = {"model", *sel.FRAMEWORKS, "timeout"}  # odh-model-controller copies timeout onto the Route


@rule("mm-isvc-ignored-fields", "modelmesh-serving takes only format, runtime, protocol and storage from a predictor",
      source=f"{REGISTRY} BuildBasePredictorFromInferenceService, processInferenceServiceStorage",
      symptom="none: replicas, resources, scheduling and containers set on the InferenceService do nothing",
      fix="move the intent to the ServingRuntime (replicas, containers' resources, nodeSelector, tolerations)")
def ignored_fields(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors what BuildBasePredictorFromInferenceService and processInferenceServiceStorage read
    (inferenceservice_registry.go); the controller drops the rest. Refused specs are `mm-isvc-silent-spec`'s."""
    if not modelmesh_isvc(obj) or isinstance(sel.predictor(obj.body), sel.Refusal):
        return
    spec = _mapping(obj.body.get("spec"))
    base, extension = sel.extension(obj.body)
    keep = MODEL_READ if base == sel.MODEL else MODEL_READ - {"modelFormat", "runtime"}
    fields = [f"spec.{k}" for k in spec if k != "predictor"]
    fields += [f"spec.predictor.{k}" for k in _mapping(spec.get("predictor")) if k not in PREDICTOR_READ]
    fields += [f"{base}.{k}" for k in extension if k not in keep]
    for field in fields:
        advice = IGNORED.get(field.rsplit(".", 1)[1], "the ServingRuntime's containers hold the server's settings")
        yield finding(obj, field, f"modelmesh-serving ignores {field} on an InferenceService; {advice}",
                      "mm-isvc-ignored-fields", "warning")


# --- R13, R14: names and the legacy form ----------------------------------------------------

KSERVE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # what Go's strconv.ParseBool reads as true


@rule("mm-isvc-name", "KServe's webhook refuses names outside its pattern; OpenShift refuses a Route whose host "
      "label is over 63 characters", source="kserve pkg/apis/serving/v1beta1/inference_service_validation.go "
      "validateInferenceServiceName; odh-model-controller mm_route_reconciler.go createDesiredResource",
      symptom="apply denied by the KServe webhook; or no Route ('spec.host: must be no more than 63 characters')",
      fix="a name matching [a-z]([-a-z0-9]*[a-z0-9])?; with enable-route, len(name) + 1 + len(namespace) <= 63")
def isvc_name(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors KServe's validateInferenceServiceName (inference_service_validation.go) and odh-model-controller's
    ModelMeshRouteReconciler.createDesiredResource (a Route named after the ISVC, host left to OpenShift)."""
    if not modelmesh_isvc(obj):
        return
    name = obj.name
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        yield finding(obj, "metadata.name", f"{name!r} is not a DNS-1123 subdomain: the API server refuses it",
                      "mm-isvc-name")
    elif not KSERVE_NAME.fullmatch(name):
        yield finding(obj, "metadata.name", f"{name!r} does not match [a-z]([-a-z0-9]*[a-z0-9])?: KServe's "
                      "validating webhook refuses it wherever KServe is installed; rename it", "mm-isvc-name",
                      "warning")
    p, label = sel.predictor(obj.body), f"{name}-{obj.namespace}"
    if isinstance(p, sel.Predictor) and not p.legacy and len(label) > 63:
        picks = sel.route_runtimes(p, ctx.mesh.namespace(obj.namespace))
        routed = sorted({v.name for v in picks if v.annotations.get("enable-route") in TRUE})
        if routed:
            severity = "error" if len(routed) == len({v.name for v in picks}) else "warning"
            yield finding(obj, "metadata.name", f"{', '.join(routed)} has enable-route: odh-model-controller makes "
                          f"a Route whose generated host label {label!r} has {len(label)} > 63 characters, which "
                          "OpenShift refuses (no Route); shorten the InferenceService or namespace name",
                          "mm-isvc-name", severity)


@rule("mm-isvc-legacy-predictor", "odh-model-controller dereferences predictor.model without a check",
      source="odh-model-controller internal/controller/serving/reconcilers/mm_route_reconciler.go "
      "findSupportingRuntimeForISvc; mm_inferenceservice_reconciler.go Reconcile",
      symptom="a recovered nil-pointer panic per reconcile in odh-model-controller; no Route, no modelmesh-serving-sa",
      fix="write predictor.model with modelFormat.name set to the framework")
def legacy_predictor(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors odh-model-controller ModelMeshRouteReconciler.findSupportingRuntimeForISvc (reads
    Spec.Predictor.Model.Runtime first) and ModelMeshInferenceServiceReconciler.Reconcile (Route, then the
    ServiceAccount); modelmesh-serving's getPredictorFramework decides which framework counts."""
    p = sel.predictor(obj.body) if modelmesh_isvc(obj) else None
    if isinstance(p, sel.Predictor) and p.legacy:
        yield finding(obj, p.base, f"predictor.{p.format} is the legacy form: odh-model-controller reads "
                      "predictor.model.runtime without a check and panics on every reconcile, so no Route and no "
                      "modelmesh-serving-sa (which runtime pods run as) come from it; write predictor.model with "
                      f"modelFormat.name: {p.format}", "mm-isvc-legacy-predictor")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
