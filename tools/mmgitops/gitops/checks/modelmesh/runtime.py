"""ModelMesh rules on a ServingRuntime: what the controller refuses, what makes its adapter or ModelMesh refuse to
start, what its webhook denies. Only multi-model runtimes: ModelMesh ignores the others. The capacity rule is in
capacity.py, the endpoint and layout rules in wiring.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mmgitops.errors import Finding
from mmgitops.gitops.checks.modelmesh.srspec import (
    GO_INT,
    SERVICE_NAME,
    adapter,
    adapter_env,
    containers,
    deployed_spec,
    env_index,
    go_int,
    multi_model_spec,
    server_container,
    server_type,
    uses_puller,
)
from mmgitops.gitops.checks.rules import Context, finding, rule
from mmgitops.gitops.checks.schema import field_path
from mmgitops.gitops.objects import K8sObject

CONTRACT = "mm-runtime-adapter-contract"
REFUSED = "the controller refuses the runtime (\"Invalid runtime Spec\") and builds no Deployment"
# servingruntime_validator.go: internalContainerNames, internalOnlyVolumeMounts, internalVolumes, internalNamedPorts,
# internalPorts and the range kept for ModelMesh (11881-11899); every name also may not start with "mm-".
RESERVED_CONTAINERS = ("mm", "rest-proxy", "puller")
RESERVED_MOUNTS = ("storage-config", "etcd-config", "tc-config", "domain-socket")
RESERVED_VOLUMES = (*RESERVED_MOUNTS, "models-dir")
RESERVED_PORT_NAMES = ("grpc", "http", "prometheus")
RESERVED_PORTS = (8080, 8085, 8089, 8090)
# Images of model servers that do not speak ModelMesh's model-runtime SPI, by the last part of their name.
STOCK_SERVERS = ("tritonserver", "mlserver", "model_server", "openvino-model-server", "torchserve")
# The adapter's settings it parses with GetEnvInt (internal/envconfig): anything else makes it exit at start.
ADAPTER_INTS = ("ADAPTER_PORT", "RUNTIME_PORT", "CONTAINER_MEM_REQ_BYTES", "MEM_BUFFER_BYTES", "LOADING_CONCURRENCY",
                "LOADTIME_TIMEOUT", "DEFAULT_MODELSIZE", "LIMIT_PER_MODEL_CONCURRENCY")
ANNOTATED = {"LOADING_CONCURRENCY": "maxLoadingConcurrency", "LIMIT_PER_MODEL_CONCURRENCY": "perModelConcurrencyLimit"}
FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _reserved(name: Any, reserved: tuple[str, ...]) -> str:
    """servingruntime_validator.go checkName: why a name is refused, or ''."""
    if name in reserved:
        return f"{name!r} is reserved for ModelMesh's own"
    return f"{name!r} starts with 'mm-', reserved for ModelMesh" if str(name).startswith("mm-") else ""


def _container_problems(i: int, c: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """validateContainer, every problem rather than the first: (field, why, fix)."""
    at = ["spec", "containers", i]
    if why := _reserved(c.get("name"), RESERVED_CONTAINERS):
        yield field_path([*at, "name"]), f"container name {why} containers", "rename it"
    for key in ("readinessProbe", "lifecycle"):
        if c.get(key) is not None:
            yield field_path([*at, key]), f"{key} is ModelMesh's to manage", "remove it"
    for j, mount in enumerate(c.get("volumeMounts") or []):
        if isinstance(mount, dict) and (why := _reserved(mount.get("name"), RESERVED_MOUNTS)):
            yield field_path([*at, "volumeMounts", j, "name"]), f"volume {why} volumes", "mount another volume"
    for j, port in enumerate(c.get("ports") or []):
        if not isinstance(port, dict):
            continue
        if port.get("name") and (why := _reserved(port.get("name"), RESERVED_PORT_NAMES)):
            yield field_path([*at, "ports", j, "name"]), f"port name {why} ports", "rename it"
        number = port.get("containerPort")
        if number in RESERVED_PORTS or (isinstance(number, int) and 11881 <= number <= 11899):
            yield (field_path([*at, "ports", j, "containerPort"]),
                   f"port {number} is reserved for ModelMesh's own containers", "use another port")


def _validator(spec: dict[str, Any], types: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    """servingruntime_validator.go validateServingRuntimeSpec: (field, why, fix) for each refusal."""
    if adapter(spec) is not None:
        kind = server_type(spec)
        if kind not in types:
            yield ("spec.builtInAdapter.serverType", f"serverType {kind!r} is not one of model-serving-config's "
                   f"builtInServerTypes ({', '.join(types)})", "use one of them")
        elif server_container(spec) is None:
            yield "spec.containers", f"no container is named {kind!r}, the serverType", f"name the server {kind!r}"
    for i, c in containers(spec):
        yield from _container_problems(i, c)
    for i, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, dict) and (why := _reserved(volume.get("name"), RESERVED_VOLUMES)):
            yield field_path(["spec", "volumes", i, "name"]), f"volume name {why} volumes", "rename it"


def _template_clashes(obj: K8sObject, spec: dict[str, Any]) -> Iterator[Finding]:
    """Names the validator lets through but the Deployment already holds (deployment.yaml.tmpl, runtime.go)."""
    for i, c in containers(spec):
        name = c.get("name")
        if adapter(spec) is not None and name == f"{server_type(spec)}-adapter":
            yield finding(obj, field_path(["spec", "containers", i, "name"]), f"the controller adds its own "
                          f"container {name!r}: the API server rejects a Deployment with two, so the runtime gets "
                          "no pods; rename it", CONTRACT)
        elif name == "oauth-proxy":
            yield finding(obj, field_path(["spec", "containers", i, "name"]), "the controller replaces its "
                          "oauth-proxy container with this one, so routes with enable-auth lose their proxy on "
                          "8443; rename it", CONTRACT, "warning")
    for i, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, dict) and volume.get("name") == "proxy-tls":
            yield finding(obj, field_path(["spec", "volumes", i, "name"]), "the Deployment template already has "
                          "the volume 'proxy-tls' (oauth-proxy's): the API server rejects the Deployment, so the "
                          "runtime gets no pods; rename it", CONTRACT)


def _env_field(obj: K8sObject, spec: dict[str, Any], name: str, default: str) -> str:
    """Where an adapter setting comes from: its builtInAdapter.env override, its annotation, else `default`."""
    index = env_index((adapter(spec) or {}).get("env"), name)
    if index is not None:
        return field_path(["spec", "builtInAdapter", "env", index, "value"])
    return f"metadata.annotations.{ANNOTATED[name]}" if name in ANNOTATED else default


def _adapter_settings(obj: K8sObject, spec: dict[str, Any]) -> Iterator[Finding]:
    """What the adapter (envconfig GetEnvInt/GetEnvFloat, config.go) and ModelMesh (ModelMesh.java initialize)
    refuse among the settings the controller hands the adapter."""
    env = adapter_env(obj, spec)
    exits = "the adapter exits at start (\"Environment variable must be\") and the pods never become Ready"
    for name in ADAPTER_INTS:
        value = env.get(name)
        if value is not None and go_int(value) is None:
            field = _env_field(obj, spec, name, "spec.builtInAdapter.env")
            shown = ANNOTATED[name] if field.startswith("metadata.") else name
            yield finding(obj, field, f"{shown} {value!r} is not an integer: {exits}; use a whole number", CONTRACT)
    multiplier = env.get("MODELSIZE_MULTIPLIER")
    if multiplier is not None and (not FLOAT.fullmatch(multiplier) or float(multiplier) <= 0):
        yield finding(obj, _env_field(obj, spec, "MODELSIZE_MULTIPLIER", ""), f"MODELSIZE_MULTIPLIER {multiplier!r} "
                      f"is not a number > 0: {exits}; remove it or set e.g. 1.25", CONTRACT)
    port_field = _env_field(obj, spec, "RUNTIME_PORT", "spec.builtInAdapter.runtimeManagementPort")
    if go_int(env.get("RUNTIME_PORT")) == 0:
        yield finding(obj, port_field, "runtimeManagementPort is unset: the controller sends RUNTIME_PORT=0, the "
                      "adapter never reaches the model server and the pods never become Ready; set the server's "
                      "management port (e.g. 8001)", CONTRACT)
    timeout = go_int(env.get("LOADTIME_TIMEOUT"))
    if timeout is not None and timeout < 100:
        shown = "unset: the controller sends LOADTIME_TIMEOUT=0" if timeout == 0 else f"{timeout} ms"
        yield finding(obj, _env_field(obj, spec, "LOADTIME_TIMEOUT", "spec.builtInAdapter.modelLoadingTimeoutMillis"),
                      f"modelLoadingTimeoutMillis is {shown} and ModelMesh refuses to start (\"Loading timeout must "
                      "be >= 100 ms\"); set it (e.g. 90000)", CONTRACT)
    concurrency = go_int(env.get("LOADING_CONCURRENCY"))
    if concurrency is not None and concurrency < 1:
        yield finding(obj, _env_field(obj, spec, "LOADING_CONCURRENCY", ""), f"loading concurrency {concurrency}: "
                      "ModelMesh refuses to start (\"Model loading concurrency must be >= 1\"); set 1 or more",
                      CONTRACT)
    size = go_int(env.get("DEFAULT_MODELSIZE"))
    if size is not None and size < 1:
        yield finding(obj, _env_field(obj, spec, "DEFAULT_MODELSIZE", ""), f"DEFAULT_MODELSIZE {size}: ModelMesh "
                      "refuses to start (\"Default model size must be >= 1 unit\"); remove it", CONTRACT)


def _image_name(image: Any) -> str:
    last = str(image or "").rsplit("/", 1)[-1]
    return re.split(r"[:@]", last, maxsplit=1)[0]


def _stock_server_without_adapter(obj: K8sObject, spec: dict[str, Any]) -> Iterator[Finding]:
    """Without builtInAdapter ModelMesh calls the model-runtime SPI (runtimeStatus, loadModel) at grpcEndpoint:
    through the puller, which passes runtimeStatus on (puller.go addPullerSidecar; runtime-adapter
    model-serving-puller server.go RuntimeStatus), or directly when storageHelper is disabled (modelmesh.go
    addMMEnvVars)."""
    if adapter(spec) is not None:
        return
    middle = "the puller forwards" if uses_puller(spec) else "ModelMesh sends"
    for i, c in containers(spec):
        name = _image_name(c.get("image"))
        if any(stock in name for stock in STOCK_SERVERS):
            yield finding(obj, field_path(["spec", "containers", i, "image"]), f"{name} does not speak ModelMesh's "
                          f"model-runtime SPI, and without builtInAdapter {middle} runtimeStatus to it: ModelMesh "
                          "never sees READY and the pods never become Ready; add builtInAdapter", CONTRACT)


@rule(CONTRACT, "a runtime the controller refuses, or whose adapter or ModelMesh will not start",
      source="modelmesh-serving servingruntime_validator.go validateServingRuntimeSpec, modelmesh/runtime.go "
             "addRuntimeToDeployment; runtime-adapter envconfig GetEnvInt; modelmesh ModelMesh.java initialize",
      symptom="no runtime Deployment (controller log \"Invalid runtime Spec\"), or runtime pods never Ready: "
              "adapter exits, mm aborts startup; InferenceServices wait on \"RuntimeUnhealthy\"",
      fix="keep to the controller's reserved names and ports; name a container after serverType; set "
          "runtimeManagementPort and modelLoadingTimeoutMillis")
def adapter_contract(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors modelmesh-serving controllers/servingruntime_validator.go validateServingRuntimeSpec and
    controllers/modelmesh/runtime.go addRuntimeToDeployment, with what the adapter (internal/envconfig) and
    ModelMesh (ModelMesh.java initialize) then refuse."""
    spec = deployed_spec(obj)
    if spec is None:
        return
    for field, why, fix in _validator(spec, ctx.mesh.config().built_in_server_types):
        yield finding(obj, field, f"{why}: {REFUSED}; {fix}", CONTRACT)
    yield from _template_clashes(obj, spec)
    if adapter(spec) is not None:
        yield from _adapter_settings(obj, spec)
    yield from _stock_server_without_adapter(obj, spec)


@rule("mm-runtime-name-length", "the runtime Deployment's label name is modelmesh-serving-<runtime>: at most 63",
      source="modelmesh-serving config/internal/base/deployment.yaml.tmpl (name label), "
             "controllers/servingruntime_controller.go Reconcile",
      symptom="no runtime Deployment; controller log \"could not apply the model mesh deployment\" (label value "
              "longer than 63 characters)",
      fix="name the ServingRuntime with 45 characters or fewer")
def name_length(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors modelmesh-serving config/internal/base/deployment.yaml.tmpl, applied by
    controllers/modelmesh/modelmesh.go Apply: the label `name: modelmesh-serving-<runtime>` must be a valid label
    value (<= 63 characters)."""
    if deployed_spec(obj) is None:
        return
    label = f"{SERVICE_NAME}-{obj.name}"
    if len(label) > 63:
        yield finding(obj, "metadata.name", f"name has {len(obj.name)} characters: the controller labels the "
                      f"Deployment name={label} ({len(label)} > 63), the API server rejects it and the runtime gets "
                      "no pods; use 45 or fewer", "mm-runtime-name-length")


SCALING = "mm-runtime-scaling"
KSERVE = "serving.kserve.io"
CLASS, METRICS = f"{KSERVE}/autoscalerClass", f"{KSERVE}/metrics"
TARGET, MIN_SCALE, MAX_SCALE = f"{KSERVE}/targetUtilizationPercentage", f"{KSERVE}/min-scale", f"{KSERVE}/max-scale"
DENIED = "the modelmesh webhook denies the ServingRuntime, so the sync fails"


def _note(key: str) -> str:
    return f"metadata.annotations.{key}"


def _hpa_denials(notes: dict[str, Any], spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """servingruntime_webhook.go validateServingRuntimeAutoscaler/validateAutoScalingReplicas/validateScalingHPA."""
    if str(notes.get(METRICS, "cpu")) not in ("cpu", "memory"):
        yield _note(METRICS), f"metric {notes[METRICS]!r} is neither cpu nor memory"
    if spec.get("replicas") is not None:
        yield "spec.replicas", "replicas is set together with autoscalerClass hpa (\"You can not set both\")"
    low, high = str(notes.get(MIN_SCALE, "1")), str(notes.get(MAX_SCALE, "1"))
    if not GO_INT.fullmatch(low) or int(low) < 1:
        yield _note(MIN_SCALE), f"min-scale {low!r} is not an integer >= 1"
    elif not GO_INT.fullmatch(high):
        yield _note(MAX_SCALE), f"max-scale {high!r} is not an integer"
    elif int(low) > int(high):
        shown = high if MAX_SCALE in notes else "1, its default"
        yield _note(MAX_SCALE), f"min-scale {low} is above max-scale {shown}"


@rule(SCALING, "the modelmesh webhook refuses contradictory or unknown runtime autoscaling settings",
      source="modelmesh-serving apis/serving/v1alpha1/servingruntime_webhook.go Handle; "
             "controllers/autoscaler/autoscaler_reconciler.go createAutoscaler",
      symptom="the apply is denied by the servingruntime webhook (Argo CD sync fails); annotations without the hpa "
              "class do nothing",
      fix="either spec.replicas or serving.kserve.io/autoscalerClass: hpa with min-scale <= max-scale")
def scaling(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors modelmesh-serving apis/serving/v1alpha1/servingruntime_webhook.go Handle (validating webhook on
    multi-model runtimes) and controllers/autoscaler/autoscaler_reconciler.go createAutoscaler (HPA only for hpa)."""
    spec = multi_model_spec(obj)
    if spec is None:
        return
    notes = obj.annotations
    kind = notes.get(CLASS)
    if kind is not None and kind != "hpa":
        yield finding(obj, _note(CLASS), f"autoscalerClass {kind!r} is not 'hpa', the only class the webhook "
                      f"accepts: {DENIED}; use hpa or remove it", SCALING)
    target = str(notes.get(TARGET, "50"))
    if not GO_INT.fullmatch(target) or not 1 <= int(target) <= 100:
        yield finding(obj, _note(TARGET), f"targetUtilizationPercentage {target!r} is not an integer from 1 to "
                      f"100: {DENIED}; fix it", SCALING)
    if kind == "hpa":
        for field, why in _hpa_denials(notes, spec):
            yield finding(obj, field, f"{why}: {DENIED}; fix it", SCALING)
    elif kind is None:
        for key in (METRICS, TARGET, MIN_SCALE, MAX_SCALE):
            if key in notes:
                yield finding(obj, _note(key), f"without {CLASS}: hpa the controller makes no HPA and ignores "
                              f"this; add the class or remove it", SCALING, "warning")
