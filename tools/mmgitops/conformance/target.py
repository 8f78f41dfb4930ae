"""What a conformance check may ask of a ModelMesh deployment, whatever runs it.

States are the InferenceService's `status.modelStatus.states.activeModelState` values, so a check reads
the same word a user sees on the cluster, not the mesh's internal enum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmgitops.modelmesh import ids
from mmgitops.modelmesh.defaults import PUBLISH_MIN_PERIOD_S, PUBLISH_PERIOD_S, UNIT_BYTES
from mmgitops.modelmesh.states import ISVC_STATE

__all__ = ["PUBLISH_MIN_PERIOD_S", "UNIT_BYTES"]

# When ModelMesh shows what it does. The per-pod gauges (modelmesh_instance_*) show the pod's last published
# instance record (ModelMesh.publishInstanceRecord, Metrics.logInstanceStats): a load queued on a pod
# publishes at once unless the pod published within the last INSTANCE_REC_PUBLISH_MIN_PERIOD_MS; otherwise a
# task running every INSTANCE_REC_PUBLISH_FREQ_MS (fixed delay) publishes a change large enough, skipping a
# run that comes under 39 s after the last publish. Placement on other pods reads the same records.
# A large change (a pod emptied or filled) shows within two runs of the periodic task.
PUBLISHED_WITHIN_S = 2 * PUBLISH_PERIOD_S + 10.0

LOADED, STANDBY, LOADING, FAILED, PENDING = "Loaded", "Standby", "Loading", "FailedToLoad", "Pending"
GONE = ""  # activeModelState of a name the mesh does not know
NO_RUNTIME = ""  # deploy(runtime=NO_RUNTIME): name no runtime, so that the model's format chooses one

# ModelMesh status -> InferenceService activeModelState, as modelmesh-serving maps it.
STATE_OF_MESH_STATUS = ISVC_STATE


@dataclass(frozen=True)
class SampleRef:
    """A model the target can load, and the integer it answers for the probe input."""

    name: str
    answer: int
    path: str
    key: str
    type: str = "sklearn"  # the model format, as `spec.predictor.model.modelFormat.name` names it


def model_type_label(sample: SampleRef) -> str:
    """The type modelmesh-serving registers the sample's InferenceService with (ids.model_type)."""
    return ids.model_type(sample.type)


@dataclass(frozen=True)
class Deployed:
    name: str  # the vmodel (InferenceService) name
    model_id: str  # the concrete model behind it, `<name>__isvc-<10 hex>`
    sample: SampleRef


@dataclass(frozen=True)
class InferResult:
    answer: int
    model_id: str  # the model id the response names
    ms: float


@dataclass(frozen=True)
class RuntimePod:
    name: str
    ready: bool  # the pod's Ready condition
    containers: dict[str, bool]  # container name -> ready
    node: str
    gpu_request: int  # nvidia.com/gpu requested by the pod's containers
    node_gpus: int | None  # the node's nvidia.com/gpu capacity; None when the runner may not read nodes


@dataclass(frozen=True)
class ServiceReadiness:
    """An InferenceService's status fields, as `oc get isvc -o yaml` shows them."""

    name: str
    active_model_state: str  # status.modelStatus.states.activeModelState
    transition_status: str  # status.modelStatus.transitionStatus
    grpc_url: str  # status.components.predictor.grpcUrl
    rest_url: str  # status.components.predictor.restUrl


@dataclass(frozen=True)
class ServiceStatus:
    """An InferenceService's `status.modelStatus`, as the controller writes it ("" for a field not written)."""

    active_model_state: str  # states.activeModelState
    target_model_state: str  # states.targetModelState: set only while another model is on its way in
    transition_status: str  # transitionStatus
    failure_reason: str  # lastFailureInfo.reason
    failure_message: str  # lastFailureInfo.message


@dataclass(frozen=True)
class VModel:
    """A vmodel as ModelMesh's getVModelStatus reports it."""

    active: str  # activeModelId: the model requests reach
    target: str  # targetModelId: the model it moves to (the active one when it is not moving)


@dataclass(frozen=True)
class ScaleUp:
    """How the target's runtime came up from zero pods for its first InferenceService, as the suite saw it."""

    runtime: str  # the ServingRuntime
    replicas_wanted: int  # its spec.replicas
    replicas_before: int  # its Deployment's spec.replicas before any InferenceService used it
    replicas_after: int  # ... once the first one was Loaded
    # The first InferenceService's distinct statuses, with the seconds since it was created.
    statuses: list[tuple[float, ServiceStatus]]
    loaded_after_s: float  # when it was Loaded


@dataclass(frozen=True)
class Platform:
    """What the readiness checks read from the Kubernetes API."""

    namespace: str
    dsc: str  # the DataScienceCluster's name, "" when there is none
    dsc_conditions: dict[str, str]  # condition type -> status
    controller: str  # namespace/name of the modelmesh-controller Deployment
    controller_available: bool
    runtime: str  # the ServingRuntime the target created
    runtime_containers: list[str]  # the containers a runtime pod of it must run
    runtime_pods: list[RuntimePod]
    services: list[ServiceReadiness]
    # What the runner may not read (403), by part ("dsc", "controller"), with the API server's message: the checks
    # of that part are skipped, not failed, since a least-privileged runner is not a broken platform.
    unreadable: dict[str, str] = field(default_factory=dict)


class TargetError(Exception):
    """A request the target refused; `code` is the gRPC status name (for REST, the one the body carries)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Target(Protocol):
    # Loads within this many ms of a model's last use may not evict it (ModelMesh's minChurnAgeMs).
    min_churn_age_ms: int

    def samples(self) -> list[SampleRef]: ...

    def pods(self) -> list[str]:
        """Instance ids, as copy locations name them."""
        ...

    def deploy(self, name: str, sample: SampleRef, load: bool = True, runtime: str | None = None) -> Deployed:
        """Register the model. `runtime`: None for the target's own placement; a name to ask for that runtime
        (the type `rt:<name>`); NO_RUNTIME to ask for none, so the model's format picks (`mt:<format>`)."""
        ...

    def update(self, name: str, sample: SampleRef) -> Deployed:
        """Point a deployed name at another model, as editing the InferenceService's storage path does; returns
        once the mesh knows the new target, without waiting for it to load."""
        ...

    def vmodel(self, name: str) -> VModel: ...

    def concrete_state(self, model_id: str) -> str:
        """ModelMesh's status name (ModelStatusInfo.ModelStatus) of a concrete model; NOT_FOUND once deleted."""
        ...

    def undeploy(self, name: str) -> None: ...

    def model_state(self, name: str) -> str: ...

    def copy_locations(self, name: str) -> list[str]: ...

    def infer(self, name: str, pod: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> InferResult: ...

    def infer_rest(self, name: str, pod: str | None = None) -> InferResult: ...

    def metrics(self, pod: str) -> dict[str, Any]:
        """Metric families by name (prometheus_client's parser)."""
        ...

    def probe_ready(self, pod: str) -> bool:
        """Whether the pod's ModelMesh answers its readiness probe (`GET /ready` on port 8089)."""
        ...

    def kill_pod(self, pod: str) -> None:
        """Kill the pod abruptly (no graceful shutdown); raises TargetError UNIMPLEMENTED when it cannot."""
        ...

    def platform(self) -> Platform:
        """The cluster objects around the mesh; raises TargetError UNIMPLEMENTED where there is no cluster."""
        ...

    def service_status(self, name: str) -> ServiceStatus:
        """The InferenceService's status; raises TargetError UNIMPLEMENTED where no controller writes one."""
        ...

    def scale_up(self) -> ScaleUp:
        """How the target's runtime came up from zero; raises TargetError UNIMPLEMENTED where the suite did not
        make the runtime."""
        ...

    def declared_room(self) -> int | None:
        """How many one-unit models each pod's cache holds by the runtime's spec, where the suite made the runtime;
        None where it did not."""
        ...

    def close(self) -> None: ...
