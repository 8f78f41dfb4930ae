"""ModelMesh rules on how a runtime pod's processes find each other: the endpoints ModelMesh and the adapter dial,
and the ports and paths the model server must use for the built-in adapter (its "layout")."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mmgitops.errors import Finding
from mmgitops.gitops.checks.modelmesh.srspec import (
    DEFAULT_ADAPTER_PORT,
    LITELINKS_PORT,
    PRESTOP_PORT,
    TCP_ENDPOINT,
    adapter,
    adapter_env,
    containers,
    deployed_spec,
    env_index,
    env_values,
    go_int,
    pod_ports,
    server_container,
    server_type,
    socket_dir,
    tcp_port,
    uses_puller,
)
from mmgitops.gitops.checks.rules import Context, finding, rule
from mmgitops.gitops.checks.schema import field_path
from mmgitops.gitops.objects import K8sObject
from mmgitops.modelmesh.defaults import PROBE_PORT

ENDPOINTS, LAYOUT = "mm-runtime-endpoints", "mm-runtime-layout"
NOT_READY = "the pods never become Ready"


def _relative_socket(value: str, outcome: str) -> str:
    """endpoint.go ParseEndpoint takes what is not "port:..." for a unix socket path: '' when that is plainly what
    the author meant (unix:..., an absolute path), else a message."""
    if value.startswith("port:"):
        return "" if TCP_ENDPOINT.fullmatch(value) else (
            f"{value!r} has no port number: ModelMesh parses it as one and fails to start; write \"port:N\"")
    if value.startswith(("unix:", "/")):
        return ""
    digits = "".join(re.findall(r"\d+$", value)) or "N"
    return (f"{value!r} is neither \"port:N\" nor \"unix:PATH\": the controller takes it for the unix socket "
            f"{value!r}, where nothing listens, so {outcome}; write \"port:{digits}\"")


def _grpc_endpoint(obj: K8sObject, spec: dict[str, Any]) -> Iterator[Finding]:
    grpc = spec.get("grpcEndpoint")
    if grpc is None:
        yield finding(obj, "spec.grpcEndpoint", "grpcEndpoint is unset: the controller dereferences it building the "
                      "Deployment and panics, so the modelmesh-controller pod crash-loops and reconciles nothing "
                      "while this runtime exists; set it (e.g. \"port:8085\")", ENDPOINTS)
    elif not isinstance(grpc, str):
        return  # the schema check reports it
    elif adapter(spec) is not None and not TCP_ENDPOINT.fullmatch(grpc):
        yield finding(obj, "spec.grpcEndpoint", f"{grpc!r}: the built-in adapter listens on a TCP port only, the "
                      "controller fails the reconcile (\"Built-in adapter grpcEndpoint must be of the form "
                      "port:N\") and builds no Deployment; write \"port:8085\"", ENDPOINTS)
    elif uses_puller(spec) and not (TCP_ENDPOINT.fullmatch(grpc) or grpc.startswith("unix:")):
        yield finding(obj, "spec.grpcEndpoint", f"{grpc!r} is neither \"port:N\" nor \"unix:PATH\": the controller "
                      "fails the reconcile (\"Invaid Endpoint\") and builds no Deployment; fix it", ENDPOINTS)
    elif why := _relative_socket(grpc, NOT_READY):
        yield finding(obj, "spec.grpcEndpoint", why, ENDPOINTS)


def _data_endpoint(obj: K8sObject, spec: dict[str, Any]) -> Iterator[Finding]:
    data = spec.get("grpcDataEndpoint")
    if data is None and (adapter(spec) is not None or uses_puller(spec)):
        middle = f"{server_type(spec)}-adapter" if adapter(spec) is not None else "puller"
        yield finding(obj, "spec.grpcDataEndpoint", f"grpcDataEndpoint is unset: ModelMesh sends inference to the "
                      f"{middle} at grpcEndpoint, which serves only the model-runtime SPI (UNIMPLEMENTED); set the "
                      "model server's gRPC port (e.g. \"port:8001\")", ENDPOINTS)
    elif isinstance(data, str) and (why := _relative_socket(data, "inference fails")):
        yield finding(obj, "spec.grpcDataEndpoint", why, ENDPOINTS)


def _collisions(obj: K8sObject, spec: dict[str, Any], ctx: Context) -> Iterator[Finding]:
    ports = pod_ports(spec, ctx.mesh.config())
    data = tcp_port(spec.get("grpcDataEndpoint"))
    if data in ports:
        yield finding(obj, "spec.grpcDataEndpoint", f"port {data} is {ports[data]} port in every runtime pod: "
                      "inference goes there, not to the model server; use the model server's gRPC port", ENDPOINTS)
    grpc, ports = tcp_port(spec.get("grpcEndpoint")), pod_ports(spec, ctx.mesh.config(), with_adapter=False)
    if grpc in ports:
        yield finding(obj, "spec.grpcEndpoint", f"port {grpc} is {ports[grpc]} port in every runtime pod: one of "
                      f"the two fails to bind and {NOT_READY}; use another (e.g. 8085)", ENDPOINTS)


@rule(ENDPOINTS, "grpcEndpoint and grpcDataEndpoint decide where ModelMesh and the adapter dial; the controller "
      "takes anything not port:N for a socket path",
      source="modelmesh-serving controllers/modelmesh/endpoint.go ParseEndpoint/ValidateEndpoint, modelmesh.go "
             "addMMEnvVars, puller.go addPullerSidecar, runtime.go addRuntimeToDeployment/addDomainSocketMount",
      symptom="controller panics (no grpcEndpoint) or fails the reconcile (no Deployment); pods never Ready; or "
              "inference fails with nowhere to go",
      fix="grpcEndpoint \"port:8085\" and grpcDataEndpoint \"port:<the server's gRPC port>\"")
def endpoints(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors modelmesh-serving controllers/modelmesh/endpoint.go ParseEndpoint and ValidateEndpoint as
    modelmesh.go addMMEnvVars, puller.go addPullerSidecar and runtime.go addRuntimeToDeployment and
    addDomainSocketMount use them, and ModelMesh's SidecarModelMesh.java startup, which dials them."""
    spec = deployed_spec(obj)
    if spec is None:
        return
    yield from _grpc_endpoint(obj, spec)
    yield from _data_endpoint(obj, spec)
    dirs = {socket_dir(spec.get(key)) for key in ("grpcDataEndpoint", "grpcEndpoint")} - {None}
    if len(dirs) > 1:
        yield finding(obj, "spec.grpcDataEndpoint", f"the two endpoints are unix sockets in different directories "
                      f"({', '.join(sorted(str(d) for d in dirs))}): the controller fails the reconcile (\"Only one "
                      "unix domain socket path is allowed\") and builds no Deployment; put both in one", ENDPOINTS)
    yield from _collisions(obj, spec, ctx)


# --- layout: what each built-in adapter expects of its model server ----------------------------------------

FLAG = r"(?:^|[\s'\"]){}(?:=|\s+)['\"]?([^\s'\"]+)"
VALIDATED_PORTS = (LITELINKS_PORT, DEFAULT_ADAPTER_PORT, PROBE_PORT, PRESTOP_PORT)  # the contract rule's


@dataclass
class Layout:
    """What a model server container offers the adapter: problems (field, message); the ports it listens on
    (label -> port, field; None: not known here); which of them the adapter manages it through (RUNTIME_PORT) and
    which serves inference (grpcDataEndpoint)."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    listens: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    management: str = ""
    data: str = ""


class Server:
    """The serverType container: its command line as one text, its env, and the fields they come from."""

    def __init__(self, index: int, container: dict[str, Any]) -> None:
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        self.text = " ".join(str(w) for w in words)
        self.entries = container.get("env")
        self.env = env_values(self.entries)
        self.at: list[Any] = ["spec", "containers", index]
        self.flags = field_path([*self.at, "args" if container.get("args") else "command"])

    def flag(self, *names: str) -> str | None:
        for name in names:
            if match := re.search(FLAG.format(re.escape(name)), self.text):
                return match[1]
        return None

    def env_field(self, name: str) -> str:
        index = env_index(self.entries, name)
        return field_path([*self.at, "env", *([index, "value"] if index is not None else [])])

    def env_port(self, name: str, default: int) -> tuple[int | None, str]:
        """A port from the env, the server's default when unset; None when only the pod knows it (valueFrom)."""
        value = self.env.get(name, str(default))
        return (go_int(value) if value is not None else None), self.env_field(name)

    def flag_port(self, name: str, default: int | None) -> tuple[int | None, str]:
        value = self.flag(name)
        return (go_int(value) if value is not None else default), self.flags


def _same_path(given: str | None, expected: str) -> bool:
    return bool(given) and posixpath.normpath(str(given)) == posixpath.normpath(expected)


def _triton(s: Server, env: dict[str, str | None], root: str) -> Layout:
    """runtime-adapter model-mesh-triton-adapter: models under ROOT_MODEL_DIR/_triton_models, loaded and unloaded
    through Triton's repository API (explicit mode only), management and inference on Triton's gRPC port
    (Triton's defaults: gRPC 8001, HTTP 8000, metrics 8002)."""
    out = Layout(management="gRPC port (--grpc-port)", data="gRPC port (--grpc-port)")
    if "tritonserver" not in s.text:
        if not s.text:
            out.problems.append((s.flags, "the container runs its image's default command, not tritonserver with the "
                                 "adapter's model repository and explicit model control; run tritonserver"))
        return out  # a wrapper script: its flags are not visible here
    expected, repository = posixpath.join(root, "_triton_models"), s.flag("--model-repository", "--model-store")
    if not _same_path(repository, expected):
        out.problems.append((s.flags, f"--model-repository is {repository or 'not given'}, while the triton adapter "
                             f"writes models under {expected}: every load fails; pass --model-repository={expected}"))
    if (mode := s.flag("--model-control-mode")) != "explicit":
        out.problems.append((s.flags, f"--model-control-mode is {mode or 'not given (none)'}: Triton refuses the "
                             "adapter's load calls and every load fails; pass --model-control-mode=explicit"))
    out.listens = {"gRPC port (--grpc-port)": s.flag_port("--grpc-port", 8001),
                   "HTTP port (--http-port)": s.flag_port("--http-port", 8000),
                   "metrics port (--metrics-port)": s.flag_port("--metrics-port", 8002)}
    return out


def _mlserver(s: Server, env: dict[str, str | None], root: str) -> Layout:
    """model-mesh-mlserver-adapter: models under ROOT_MODEL_DIR/_mlserver_models, management and inference on
    MLServer's gRPC port. MLServer's defaults (mlserver/settings.py): gRPC 8081, HTTP 8080, metrics 8082; its
    image serves $MLSERVER_MODELS_DIR, /mnt/models unless set (MLServer's Dockerfile)."""
    out = Layout(management="gRPC port (MLSERVER_GRPC_PORT)", data="gRPC port (MLSERVER_GRPC_PORT)")
    expected, models = posixpath.join(root, "_mlserver_models"), s.env.get("MLSERVER_MODELS_DIR", "")
    inside = bool(models) and (expected + "/").startswith(posixpath.normpath(str(models)).rstrip("/") + "/")
    if models is not None and not inside and not (not models and "_mlserver_models" in s.text):
        said = models or "unset (the image serves /mnt/models)"
        out.problems.append((s.env_field("MLSERVER_MODELS_DIR"), f"MLSERVER_MODELS_DIR is {said}, while the "
                             f"mlserver adapter writes models under {expected}: every load fails; set it to that"))
    out.listens = {"gRPC port (MLSERVER_GRPC_PORT)": s.env_port("MLSERVER_GRPC_PORT", 8081),
                   "HTTP port (MLSERVER_HTTP_PORT)": s.env_port("MLSERVER_HTTP_PORT", 8080),
                   "metrics port (MLSERVER_METRICS_PORT)": s.env_port("MLSERVER_METRICS_PORT", 8082)}
    return out


def _ovms(s: Server, env: dict[str, str | None], root: str) -> Layout:
    """model-mesh-ovms-adapter: it writes MODEL_CONFIG_FILE and has OVMS reload it over REST at RUNTIME_PORT;
    inference goes to OVMS's gRPC --port."""
    out = Layout(management="REST port (--rest_port)", data="gRPC port (--port)")
    expected, config = env.get("MODEL_CONFIG_FILE") or "/models/model_config_list.json", s.flag("--config_path")
    if not _same_path(config, expected):
        out.problems.append((s.flags, f"--config_path is {config or 'not given'}, while the ovms adapter writes the "
                             f"model list to {expected}: OVMS never loads a model; pass --config_path={expected}"))
    if s.flag("--rest_port") is None:
        out.problems.append((s.flags, "--rest_port is not given: OVMS serves no REST API, through which the adapter "
                             f"reloads its config, so {NOT_READY}; pass --rest_port=<runtimeManagementPort>"))
    out.listens = {"REST port (--rest_port)": s.flag_port("--rest_port", None),
                   "gRPC port (--port)": s.flag_port("--port", None)}
    return out


LAYOUTS = {"triton": _triton, "mlserver": _mlserver, "ovms": _ovms}


def _agreement(obj: K8sObject, spec: dict[str, Any], env: dict[str, str | None], out: Layout, kind: str
               ) -> Iterator[Finding]:
    """The adapter manages the server at RUNTIME_PORT and ModelMesh sends inference to grpcDataEndpoint."""
    management, data = go_int(env.get("RUNTIME_PORT")), tcp_port(spec.get("grpcDataEndpoint"))
    port = out.listens.get(out.management, (None, ""))[0]
    if management and port is not None and port != management:
        yield finding(obj, "spec.builtInAdapter.runtimeManagementPort", f"runtimeManagementPort {management} is not "
                      f"{kind}'s {out.management} {port}: the adapter dials a port where nothing listens and "
                      f"{NOT_READY}; make them equal", LAYOUT)
    port = out.listens.get(out.data, (None, ""))[0]
    if data is not None and port is not None and port != data:
        yield finding(obj, "spec.grpcDataEndpoint", f"port {data} is not {kind}'s {out.data} {port}: ModelMesh sends "
                      "inference where nothing listens; make them equal", LAYOUT)


def _port_clashes(obj: K8sObject, spec: dict[str, Any], ctx: Context, listens: dict[str, tuple[int | None, str]]
                  ) -> Iterator[Finding]:
    """Every runtime pod is one network namespace: a server port the controller's containers hold fails to bind."""
    taken = pod_ports(spec, ctx.mesh.config())
    for label, (port, where) in listens.items():
        if port in taken:
            yield finding(obj, where, f"{label} {port} is also {taken[port]} port in every runtime pod: one of the "
                          f"two fails to bind and {NOT_READY}; move it", LAYOUT)
    for i, c in containers(spec):
        for j, declared in enumerate(c.get("ports") or []):
            port = declared.get("containerPort") if isinstance(declared, dict) else None
            if port in taken and port not in VALIDATED_PORTS:
                yield finding(obj, field_path(["spec", "containers", i, "ports", j, "containerPort"]), f"port {port} "
                              f"is also {taken[port]} port in every runtime pod: one of the two fails to bind and "
                              f"{NOT_READY}; move it", LAYOUT)


@rule(LAYOUT, "each built-in adapter expects its model server at given ports and paths; nothing checks them",
      source="runtime-adapter model-mesh-{triton,mlserver,ovms}-adapter server/config.go, const.go; modelmesh-serving "
             "config/internal/base/deployment.yaml.tmpl (the pod's ports)",
      symptom="pods never Ready (the adapter dials nothing, a port fails to bind), or every model FailedToLoad, or "
              "inference goes where nothing listens",
      fix="follow modelmesh-serving config/runtimes/*.yaml: the model directory, explicit loading, the ports "
          "runtimeManagementPort and grpcDataEndpoint name")
def layout(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors the runtime adapters' expectations (model-mesh-triton-adapter, -mlserver-adapter, -ovms-adapter
    server/config.go GetAdapterConfigurationFromEnv and const.go: model directories, ports, the OVMS config file)
    against the serverType container, and the ports of modelmesh-serving config/internal/base/deployment.yaml.tmpl."""
    spec = deployed_spec(obj)
    found = server_container(spec) if spec is not None and adapter(spec) is not None else None
    if spec is None:
        return
    listens: dict[str, tuple[int | None, str]] = {}
    if found is not None and server_type(spec) in LAYOUTS:
        env, kind = adapter_env(obj, spec), server_type(spec)
        out = LAYOUTS[kind](Server(*found), env, env.get("ROOT_MODEL_DIR") or "/models")
        for where, message in out.problems:
            yield finding(obj, where, message, LAYOUT)
        yield from _agreement(obj, spec, env, out, kind)
        listens = {f"{kind}'s {label}": port for label, port in out.listens.items()}
    yield from _port_clashes(obj, spec, ctx, listens)
