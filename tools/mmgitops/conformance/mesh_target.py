"""The `mesh` target: ModelMesh pods reached by their endpoints, or a local mesh this module starts.

Models are registered as modelmesh-serving registers an InferenceService (controllers/predictor_controller.go
setVModel): a vmodel named after it whose target is a concrete model `<name>__isvc-<10 hex>`, created with the
vmodel and deleted with it, of type `mt:<format>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from mmgitops.conformance import clients, settings
from mmgitops.conformance.target import (
    GONE,
    STATE_OF_MESH_STATUS,
    UNIT_BYTES,
    Deployed,
    InferResult,
    Platform,
    SampleRef,
    ScaleUp,
    ServiceStatus,
    TargetError,
    VModel,
    model_type_label,
)
from mmgitops.modelmesh import defaults, ids

# One small mesh serves the whole suite: two pods with the smallest capacity ModelMesh starts with at a one-unit
# default model size (10 units, ModelMesh.setupMemory; one of them is its unload buffer), so that eviction
# needs a handful of models, and a churn age short enough to wait out.
EMBEDDED_FLAGS = ("--instances", "2", "--capacity", str(10 * UNIT_BYTES), "--min-churn-age-ms",
                  str(settings.EMBEDDED_CHURN_MS), "--samples", "6", "--no-register")


@dataclass(frozen=True)
class Pod:
    id: str  # the instance id, as copy locations name it
    grpc: str  # HOST:PORT
    rest: str | None = None  # base URL of the REST proxy
    metrics: str | None = None  # URL of /metrics, or HOST:PORT whose scheme (https or http) is found by trying
    probes: str | None = None  # base URL of the probe port (`/ready`)
    pid: int | None = None  # the leader of the pod's process group, when a local mesh state lists it
    name: str = ""  # the pod's name as the user gave it, for --kill-command


class MeshTarget:
    def __init__(self, pods: Sequence[Pod], samples: Sequence[SampleRef], min_churn_age_ms: int,
                 kill_command: str = "") -> None:
        if not pods:
            raise ValueError("a mesh target needs at least one endpoint")
        self._pods = {pod.id: pod for pod in pods}
        self._samples = list(samples)
        self.min_churn_age_ms = min_churn_age_ms
        self.kill_command = kill_command
        self._scraper = clients.MetricsScraper()
        # What the pods are, for the report: {"engine": ..., "reference_commit": ...} of a local mesh.
        self.about: dict[str, str] = {}
        self._channels = {pod.id: grpc.insecure_channel(pod.grpc) for pod in pods}
        # One stub per pod, made once: a fresh stub per request costs about 0.2 ms (`mmgitops bench conform`).
        self._inference = {pod_id: clients.Inference(channel) for pod_id, channel in self._channels.items()}
        self._deployed: dict[str, Deployed] = {}

    # ---- what the target offers -------------------------------------------------------------
    def samples(self) -> list[SampleRef]:
        return list(self._samples)

    def pods(self) -> list[str]:
        return list(self._pods)

    def _pod(self, pod: str | None) -> Pod:
        if pod is None:
            return next(iter(self._pods.values()))
        try:
            return self._pods[pod]
        except KeyError:
            raise ValueError(f"no pod {pod!r}; pods: {', '.join(self._pods)}") from None

    def _management(self, pod: str | None = None) -> clients.Management:
        return clients.Management(self._channels[self._pod(pod).id])

    # ---- models -----------------------------------------------------------------------------
    def deploy(self, name: str, sample: SampleRef, load: bool = True, runtime: str | None = None) -> Deployed:
        deployed = Deployed(name, ids.concrete_id(name, sample.path), sample)
        model_type = f"rt:{runtime}" if runtime else model_type_label(sample)
        self._management().set_vmodel(name, deployed.model_id, model_type, sample.path, sample.key, load)
        self._deployed[name] = deployed
        return deployed

    def update(self, name: str, sample: SampleRef) -> Deployed:
        """A new target for the vmodel, as the controller sets it for an edited InferenceService: not waited for,
        so that the transition runs while requests go on."""
        deployed = Deployed(name, ids.concrete_id(name, sample.path), sample)
        self._management().set_vmodel(name, deployed.model_id, model_type_label(sample), sample.path, sample.key,
                                      load=True, sync=False)
        self._deployed[name] = deployed
        return deployed

    def vmodel(self, name: str) -> VModel:
        status = self._management().vmodel_status(name)
        return VModel(status.activeModelId, status.targetModelId)

    def concrete_state(self, model_id: str) -> str:
        return clients.status_name(self._management().model_status(model_id).status)

    def undeploy(self, name: str) -> None:
        self._management().delete_vmodel(name)
        self._deployed.pop(name, None)

    def model_state(self, name: str) -> str:
        status = self._management().vmodel_status(name)
        if clients.status_name(status.activeModelStatus.status) == "NOT_FOUND" or not status.activeModelId:
            return GONE
        return STATE_OF_MESH_STATUS[clients.status_name(status.activeModelStatus.status)]

    def copy_locations(self, name: str) -> list[str]:
        status = self._management().vmodel_status(name)
        return sorted(copy.location for copy in status.activeModelStatus.modelCopyInfos)

    # ---- requests ---------------------------------------------------------------------------
    def infer(self, name: str, pod: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> InferResult:
        return self._inference[self._pod(pod).id].infer(name, headers)

    def infer_rest(self, name: str, pod: str | None = None) -> InferResult:
        chosen = self._pod(pod)
        if chosen.rest is None:
            raise TargetError("UNIMPLEMENTED", f"no REST endpoint known for pod {chosen.id}")
        return clients.Rest(chosen.rest).infer(name)

    # ---- metrics ----------------------------------------------------------------------------
    def metrics(self, pod: str) -> dict[str, Any]:
        chosen = self._pod(pod)
        if chosen.metrics is None:
            raise TargetError("UNIMPLEMENTED", f"no metrics endpoint known for pod {chosen.id}")
        if "://" in chosen.metrics:
            return clients.scrape(chosen.metrics)
        return self._scraper.scrape(chosen.id, chosen.metrics)

    def probe_ready(self, pod: str) -> bool:
        chosen = self._pod(pod)
        if chosen.probes is None:
            raise TargetError("UNIMPLEMENTED", f"no probe endpoint known for pod {chosen.id}")
        return clients.probe_ready(chosen.probes)

    # ---- faults -----------------------------------------------------------------------------
    def kill_pod(self, pod: str) -> None:
        """Kill the pod as a node loss would: SIGKILL its process group when this machine started it (its model
        server dies with it), else run the user's --kill-command. The pod then leaves `pods()`, so later
        requests go through the survivors."""
        chosen = self._pod(pod)
        if chosen.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone: the pod is lost either way
                os.killpg(chosen.pid, signal.SIGKILL)
        elif self.kill_command:
            _run_kill_command(self.kill_command, chosen)
        else:
            raise TargetError("UNIMPLEMENTED", f"no way to kill pod {chosen.name or chosen.id}: pass --kill-command")
        del self._pods[chosen.id]
        del self._inference[chosen.id]
        self._channels.pop(chosen.id).close()

    def platform(self) -> Platform:
        raise TargetError("UNIMPLEMENTED", "the mesh target has no Kubernetes API (run with --target cluster)")

    def service_status(self, name: str) -> ServiceStatus:
        raise TargetError("UNIMPLEMENTED", "the mesh target has no controller to write an InferenceService status "
                                           "(run with --target cluster)")

    def scale_up(self) -> ScaleUp:
        raise TargetError("UNIMPLEMENTED", "the mesh target's pods run whether or not a model uses them "
                                           "(run with --target cluster)")

    def declared_room(self) -> int | None:
        return None  # its pods were given or started with their own sizes: what they report is all there is

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


# ---- building a target ------------------------------------------------------------------------
def pods_of(state: dict[str, Any]) -> list[Pod]:
    return [Pod(i["id"], i["grpc"], i["rest"], i["metrics"], i.get("probes"), i.get("pid"))
            for i in state.get("instances", [])]


def samples_of(state: dict[str, Any]) -> list[SampleRef]:
    return [SampleRef(s["name"], int(s["expected"]), s["path"], s["key"])
            for s in state.get("samples", [])]


def given_pods(text: str, rest_port: int = defaults.REST_PORT, metrics_port: int = defaults.METRICS_PORT,
               probe_port: int = defaults.PROBE_PORT) -> list[Pod]:
    """Pods this project did not start, at their gRPC endpoints, with REST, metrics and probes on the same host
    at ModelMesh's ports (or the ones given)."""
    pods = []
    for name, address in settings.parse_endpoints(text):
        host = address.rsplit(":", 1)[0]
        pods.append(Pod(defaults.instance_id(name), address, f"http://{host}:{rest_port}", f"{host}:{metrics_port}",
                        f"http://{host}:{probe_port}", name=name))
    return pods


def unreachable(pods: Sequence[Pod], timeout_s: float = 5.0) -> list[str]:
    """The gRPC endpoints of `pods` that accept no TCP connection."""
    found = []
    for pod in pods:
        host, port = pod.grpc.rsplit(":", 1)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        except OSError:
            found.append(pod.grpc)
    return found


def _run_kill_command(template: str, pod: Pod) -> None:
    """The user's command with {pod}, {instance}, {host} and {port} filled in (shell-quoted), run by the shell."""
    host, port = pod.grpc.rsplit(":", 1)
    try:
        command = template.format(pod=shlex.quote(pod.name), instance=shlex.quote(pod.id), host=shlex.quote(host),
                                  port=port)
    except (KeyError, IndexError, ValueError) as error:
        raise TargetError("INVALID_ARGUMENT", f"--kill-command {template!r}: {error!r} is not one of "
                                              "{pod}, {instance}, {host}, {port}") from None
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise TargetError("INTERNAL", f"--kill-command for pod {pod.name} exited {done.returncode}: {last}")


def _mmgitops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mmgitops ARGS` to its end. A Ctrl-C meanwhile is held until it ends: `local mesh up` killed midway would
    leave processes it has not recorded yet, which `local mesh down` could not find."""
    command = [sys.executable, "-m", "mmgitops", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          stdin=subprocess.DEVNULL, start_new_session=True) as child:
        interrupted = False
        while True:
            try:
                out, err = child.communicate(timeout=300)
                break
            except KeyboardInterrupt:
                interrupted = True
            except subprocess.TimeoutExpired:
                child.kill()
                raise
    if interrupted:
        raise KeyboardInterrupt
    return subprocess.CompletedProcess(command, child.returncode, out, err)


# Test-only: comma-separated fault switches every embedded mesh starts with, so that the suite can be run
# against a deliberately broken mesh (tests/mesh/test_suite_catches_faults.py). Never set it otherwise.
FAULTS_ENV = "MMGITOPS_CONFORMANCE_FAULTS"


def fault_flags() -> list[str]:
    names = [n.strip() for n in os.environ.get(FAULTS_ENV, "").split(",") if n.strip()]
    return [flag for n in names for flag in ("--fault", n)]


@contextmanager
def local_mesh(state_root: Path, name: str, flags: Sequence[str] = EMBEDDED_FLAGS,
               min_churn_age_ms: int = settings.EMBEDDED_CHURN_MS, engine: str = "embedded") -> Iterator[MeshTarget]:
    """A local mesh of its own name and state directory, so a user's mesh is never touched; stopped on exit.
    `engine`: the embedded mesh, or reference pods built from ModelMesh's sources."""
    env = {**os.environ, "MMGITOPS_MESH_NAME": name, "MMGITOPS_STATE": str(state_root)}
    _mmgitops(env, "local", "mesh", "down")
    try:
        up = _mmgitops(env, "local", "mesh", "up", "--format", "json", "--engine", engine, *flags,
                       *(fault_flags() if engine == "embedded" else ()))
        if up.returncode != 0:
            raise RuntimeError(f"local mesh up failed: {up.stderr.strip()[-2000:]}")
        state = json.loads(up.stdout)
        target = MeshTarget(pods_of(state), samples_of(state), min_churn_age_ms)
        target.about = {"engine": str(state.get("engine", "embedded")),
                        **({"reference_commit": state["reference_commit"]} if state.get("reference_commit") else {})}
        try:
            yield target
        finally:
            target.close()
    finally:
        _mmgitops(env, "local", "mesh", "down")
