"""A ServingRuntime as modelmesh-serving reads it when it builds the runtime's Deployment: which runtimes get one,
the adapter's environment, the endpoints and the ports every runtime pod already uses. Shared by the runtime rules
(runtime.py, capacity.py, wiring.py); no rules here."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from mmgitops.gitops.checks.modelmesh.context import SERVING, MeshConfig
from mmgitops.gitops.objects import K8sObject
from mmgitops.modelmesh import defaults

# modelmesh-serving pkg/config/config.go defaults: InferenceServiceName, the prefix of every runtime Deployment.
SERVICE_NAME = "modelmesh-serving"
# controllers/modelmesh/runtime.go addRuntimeToDeployment: the adapter's port when grpcEndpoint is unset.
DEFAULT_ADAPTER_PORT = 8085
# controllers/modelmesh/const.go PullerPortNumber; deployment.yaml.tmpl: LiteLinks, preStop and oauth-proxy ports.
PULLER_PORT, LITELINKS_PORT, PRESTOP_PORT, OAUTH_PORT = 8086, 8080, 8090, 8443
# The shape ValidateEndpoint and the built-in adapter branch accept for a TCP endpoint (endpoint.go, runtime.go).
TCP_ENDPOINT = re.compile(r"port:([0-9]+)")
# Go's strconv.Atoi: an optional sign and digits, nothing else (no spaces, no underscores).
GO_INT = re.compile(r"[+-]?[0-9]+")


def multi_model_spec(obj: K8sObject) -> dict[str, Any] | None:
    """The spec of a ServingRuntime ModelMesh serves (multiModel: true), else None: the controller deletes the
    Deployment of every other runtime and its webhook lets them all through (IsMultiModelRuntime)."""
    if obj.kind != "ServingRuntime" or obj.group != SERVING:
        return None
    spec = obj.body.get("spec")
    return spec if isinstance(spec, dict) and spec.get("multiModel") is True else None


def deployed_spec(obj: K8sObject) -> dict[str, Any] | None:
    """A multi-model spec that is not `disabled`: only these get a Deployment (servingruntime_controller.go
    Reconcile deletes it for a disabled runtime), so only these have pods to predict."""
    spec = multi_model_spec(obj)
    return spec if spec is not None and spec.get("disabled") is not True else None


def containers(spec: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    items = spec.get("containers")
    return [(i, c) for i, c in enumerate(items) if isinstance(c, dict)] if isinstance(items, list) else []


def adapter(spec: dict[str, Any]) -> dict[str, Any] | None:
    value = spec.get("builtInAdapter")
    return value if isinstance(value, dict) else None


def server_type(spec: dict[str, Any]) -> str:
    return str((adapter(spec) or {}).get("serverType") or "")


def server_container(spec: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """The container named builtInAdapter.serverType; of several, the last, which replaces the others in the
    Deployment (addRuntimeToDeployment: "the last one wins")."""
    named = [(i, c) for i, c in containers(spec) if server_type(spec) and c.get("name") == server_type(spec)]
    return named[-1] if named else None


def uses_puller(spec: dict[str, Any]) -> bool:
    """util.go useStorageHelper: the puller sidecar stands between ModelMesh and a runtime without an adapter."""
    helper = spec.get("storageHelper")
    return adapter(spec) is None and not (isinstance(helper, dict) and helper.get("disabled") is True)


def env_values(entries: Any) -> dict[str, str | None]:
    """name -> value of a container env list; None for a valueFrom, which only the pod knows."""
    out: dict[str, str | None] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name"):
            out[str(entry["name"])] = None if entry.get("valueFrom") else str(entry.get("value") or "")
    return out


def env_index(entries: Any, name: str) -> int | None:
    """Where `name` last appears in an env list (a later entry of one name wins in the controller's override)."""
    found = [i for i, e in enumerate(entries if isinstance(entries, list) else [])
             if isinstance(e, dict) and e.get("name") == name]
    return found[-1] if found else None


def _go_int_field(value: Any) -> str | None:
    """An integer CRD field as strconv.Itoa writes it: an omitted field is Go's zero, 0. None for a value the API
    server would not store (the schema check reports it)."""
    if value is None:
        return "0"
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def adapter_env(obj: K8sObject, spec: dict[str, Any]) -> dict[str, str | None]:
    """The `<serverType>-adapter` container's env as addRuntimeToDeployment writes it: its own values, then the
    annotations maxLoadingConcurrency and perModelConcurrencyLimit, then builtInAdapter.env replacing by name.
    None: known only in the pod (CONTAINER_MEM_REQ_BYTES comes from the downward API) or unreadable here."""
    settings = adapter(spec) or {}
    grpc = spec.get("grpcEndpoint")
    port = TCP_ENDPOINT.fullmatch(grpc) if isinstance(grpc, str) else None
    runtime_port = _go_int_field(settings.get("runtimeManagementPort"))
    data = spec.get("grpcDataEndpoint")
    env: dict[str, str | None] = {
        "ADAPTER_PORT": port[1] if port else str(DEFAULT_ADAPTER_PORT),
        "RUNTIME_PORT": runtime_port,
        "RUNTIME_DATA_ENDPOINT": data if isinstance(data, str) else f"port:{runtime_port}",
        "CONTAINER_MEM_REQ_BYTES": None,
        "MEM_BUFFER_BYTES": _go_int_field(settings.get("memBufferBytes")),
        "LOADTIME_TIMEOUT": _go_int_field(settings.get("modelLoadingTimeoutMillis")),
        "USE_EMBEDDED_PULLER": "true",
    }
    for annotation, name in (("maxLoadingConcurrency", "LOADING_CONCURRENCY"),
                             ("perModelConcurrencyLimit", "LIMIT_PER_MODEL_CONCURRENCY")):
        if annotation in obj.annotations:
            env[name] = str(obj.annotations[annotation])
    env.update(env_values(settings.get("env")))
    return env


def go_int(value: str | None) -> int | None:
    return int(value) if value is not None and GO_INT.fullmatch(value) else None


def tcp_port(endpoint: Any) -> int | None:
    match = TCP_ENDPOINT.fullmatch(endpoint) if isinstance(endpoint, str) else None
    return int(match[1]) if match else None


def socket_dir(endpoint: Any) -> str | None:
    """endpoint.go ParseEndpoint: anything not starting with "port:" is a unix socket path, after removing the
    first "unix://" and then the first "unix:" wherever they are; the socket volume is mounted at its directory."""
    if not isinstance(endpoint, str) or endpoint.startswith("port:"):
        return None
    path = endpoint.replace("unix://", "", 1).replace("unix:", "", 1)
    return posixpath.normpath(posixpath.dirname(path) or ".")


def pod_ports(spec: dict[str, Any], config: MeshConfig, with_adapter: bool = True) -> dict[int, str]:
    """The ports the controller's own containers hold in every runtime pod, and whose they are
    (deployment.yaml.tmpl; the validator's internalPorts; the adapter's or the puller's port)."""
    ports = {LITELINKS_PORT: "ModelMesh's LiteLinks", defaults.PROBE_PORT: "ModelMesh's probe",
             PRESTOP_PORT: "ModelMesh's preStop", defaults.GRPC_PORT: "ModelMesh's gRPC",
             defaults.METRICS_PORT: "ModelMesh's metrics", OAUTH_PORT: "the oauth-proxy's"}
    if config.rest_proxy:
        ports[defaults.REST_PORT] = "the rest-proxy's"
    if uses_puller(spec):
        ports[PULLER_PORT] = "the puller's"
    if with_adapter and adapter(spec) is not None:
        ports[tcp_port(spec.get("grpcEndpoint")) or DEFAULT_ADAPTER_PORT] = f"the {server_type(spec)}-adapter's"
    return ports
