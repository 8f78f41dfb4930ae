"""The `mesh` target: ModelMesh pods reached by their endpoints, or a local mesh this module starts.

Models are registered as ModelMesh-serving registers an InferenceService: a vmodel named after it whose
target is a concrete model `<name>__isvc-<10 hex>`, created with the vmodel and deleted with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from mmgitops.conformance import clients
from mmgitops.conformance.target import (
    GONE,
    STATE_OF_MESH_STATUS,
    UNIT_BYTES,
    Deployed,
    InferResult,
    Platform,
    SampleRef,
    TargetError,
)
from mmgitops.mesh import control

# One small mesh serves the whole suite: two pods with room for three one-unit models each, so that
# eviction needs a handful of models, and a churn age short enough to wait out.
EMBEDDED_CHURN_MS = 1500
EMBEDDED_FLAGS = ("--instances", "2", "--capacity", str(3 * UNIT_BYTES), "--min-churn-age-ms", str(EMBEDDED_CHURN_MS),
                  "--samples", "6", "--no-register")


@dataclass(frozen=True)
class Pod:
    id: str
    grpc: str  # HOST:PORT
    rest: str | None = None  # base URL of the REST proxy
    metrics: str | None = None  # URL of /metrics
    pid: int | None = None  # the leader of the pod's process group, when a local mesh state lists it


class MeshTarget:
    def __init__(self, pods: Sequence[Pod], samples: Sequence[SampleRef], min_churn_age_ms: int) -> None:
        if not pods:
            raise ValueError("a mesh target needs at least one endpoint")
        self._pods = {pod.id: pod for pod in pods}
        self._samples = list(samples)
        self.min_churn_age_ms = min_churn_age_ms
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
    def deploy(self, name: str, sample: SampleRef, load: bool = True) -> Deployed:
        deployed = Deployed(name, control.concrete_id(name, sample.path), sample)
        self._management().set_vmodel(name, deployed.model_id, sample.type, sample.path, sample.key, load)
        self._deployed[name] = deployed
        return deployed

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
        return clients.scrape(chosen.metrics)

    def capacity_models(self, pod: str) -> int | None:
        capacity = clients.metric_value(self.metrics(pod), "modelmesh_instance_capacity_bytes")
        return None if capacity is None else int(capacity) // UNIT_BYTES

    # ---- faults -----------------------------------------------------------------------------
    def kill_pod(self, pod: str) -> None:
        """SIGKILL the pod's process group (its MLServer dies with it), as a node loss would; the pod then
        leaves `pods()`, so later requests go through the survivors."""
        chosen = self._pod(pod)
        if chosen.pid is None:
            raise TargetError("UNIMPLEMENTED", f"no process id known for pod {chosen.id}: only pods of a local mesh "
                                               f"whose state lists them can be killed")
        with contextlib.suppress(ProcessLookupError):  # already gone: the pod is lost either way
            os.killpg(chosen.pid, signal.SIGKILL)
        del self._pods[chosen.id]
        del self._inference[chosen.id]
        self._channels.pop(chosen.id).close()

    def platform(self) -> Platform:
        raise TargetError("UNIMPLEMENTED", "the mesh target has no Kubernetes API (run with --target cluster)")

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


# ---- building a target ------------------------------------------------------------------------
def pods_of(state: dict[str, Any]) -> list[Pod]:
    return [Pod(i["id"], i["grpc"], i["rest"], i["metrics"], i.get("pid")) for i in state.get("instances", [])]


def samples_of(state: dict[str, Any]) -> list[SampleRef]:
    return [SampleRef(s["name"], int(s["expected"]), s["path"], control.model_key(s))
            for s in state.get("samples", [])]


def from_endpoints(endpoints: Sequence[str], min_churn_age_ms: int) -> MeshTarget:
    """Pods at the given gRPC endpoints. Their samples, REST and metrics endpoints and instance ids come from
    the local mesh state that lists them (MMGITOPS_MESH_NAME, MMGITOPS_STATE); other endpoints are known by
    their address only."""
    state = control.read_state() or {}
    known = {pod.grpc: pod for pod in pods_of(state)}
    pods = [known.get(endpoint, Pod(endpoint, endpoint)) for endpoint in endpoints]
    samples = samples_of(state) if any(e in known for e in endpoints) else []
    if not samples:
        raise ValueError(f"no sample models known for {', '.join(endpoints)}: the endpoints must belong to the "
                         f"local mesh {control.name()!r} (set MMGITOPS_MESH_NAME / MMGITOPS_STATE to pick another)")
    return MeshTarget(pods, samples, min_churn_age_ms)


def _mmgitops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmgitops", *args], capture_output=True, text=True, env=env,
                          timeout=300, stdin=subprocess.DEVNULL)


# Test-only: comma-separated fault switches every embedded mesh starts with, so that the suite can be run
# against a deliberately broken mesh (tests/mesh/test_suite_catches_faults.py). Never set it otherwise.
FAULTS_ENV = "MMGITOPS_CONFORMANCE_FAULTS"


def fault_flags() -> list[str]:
    names = [n.strip() for n in os.environ.get(FAULTS_ENV, "").split(",") if n.strip()]
    return [flag for n in names for flag in ("--fault", n)]


@contextmanager
def local_mesh(state_root: Path, name: str, flags: Sequence[str] = EMBEDDED_FLAGS,
               min_churn_age_ms: int = EMBEDDED_CHURN_MS) -> Iterator[MeshTarget]:
    """A local mesh of its own name and state directory, so a user's mesh is never touched; stopped on exit."""
    env = {**os.environ, "MMGITOPS_MESH_NAME": name, "MMGITOPS_STATE": str(state_root)}
    _mmgitops(env, "local", "mesh", "down")
    try:
        up = _mmgitops(env, "local", "mesh", "up", "--format", "json", *flags, *fault_flags())
        if up.returncode != 0:
            raise RuntimeError(f"local mesh up failed: {up.stderr.strip()[-2000:]}")
        state = json.loads(up.stdout)
        target = MeshTarget(pods_of(state), samples_of(state), min_churn_age_ms)
        try:
            yield target
        finally:
            target.close()
    finally:
        _mmgitops(env, "local", "mesh", "down")
