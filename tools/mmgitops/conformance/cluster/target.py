"""The `cluster` target: InferenceServices on a ServingRuntime of the run's own, read through the Kubernetes API.

States come from the InferenceService status, as a user reads them. Requests, the management API and
metrics go to one runtime pod at a time through a resolver (port-forward by default).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import tenacity
from kubernetes.client.rest import ApiException

from mmgitops.conformance import clients
from mmgitops.conformance.cluster import bringup, objects, platform, resolve
from mmgitops.conformance.cluster.platform import api_error, get, pod_ready, reason
from mmgitops.conformance.cluster.session import Session
from mmgitops.conformance.target import (
    GONE,
    Deployed,
    InferResult,
    Platform,
    SampleRef,
    ScaleUp,
    ServiceStatus,
    TargetError,
    VModel,
)
from mmgitops.errors import Forbidden, ToolError

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
RUNTIMES = ("serving.kserve.io", "v1alpha1", "servingruntimes")
POD_WAIT_S = 300.0
REGISTER_WAIT_S = 60.0
# Written by the local cluster's kubelet on the runtime pods it backs (lab/kubelet/publish.py).
ENGINE_ANNOTATION, COMMIT_ANNOTATION = "mmgitops.io/mesh-engine", "mmgitops.io/reference-commit"
PORTS = {"grpc": 8033, "rest": 8008, "metrics": 2112, "probes": 8089}


class ClusterTarget:
    def __init__(self, session: Session, runtime: dict[str, Any], min_churn_age_ms: int,
                 resolver: resolve.Resolver) -> None:
        self.session, self.min_churn_age_ms, self.resolver = session, min_churn_age_ms, resolver
        self.runtime = runtime["metadata"]["name"]
        self.runtime_body = runtime
        self.replicas = int(runtime["spec"]["replicas"])
        self._channels: dict[str, grpc.Channel] = {}
        self._inference: dict[str, clients.Inference] = {}
        self._pods: tuple[float, list[str]] = (0.0, [])
        self._lock = threading.RLock()
        self._serving_pods: set[str] = set()
        self._seen_pods: set[str] = set()
        self._scraper = clients.MetricsScraper()
        self.deployment = f"modelmesh-serving-{self.runtime}"  # the controller's name for the runtime's Deployment
        self._scale_up: ScaleUp | None = None

    # ---- setup ------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the runtime and bring up its pods. ModelMesh-serving keeps a runtime no InferenceService uses at
        zero pods, so a placeholder InferenceService brings them up; how that went is kept for the controller
        group's check (`scale_up`), and the placeholder is removed once it is Loaded on ready pods."""
        s = self.session
        try:
            s.custom.create_namespaced_custom_object(*RUNTIMES[:2], s.namespace, RUNTIMES[2], self.runtime_body)
        except ApiException as error:
            if error.status == 403:
                raise Forbidden(reason(error)) from None
            raise ToolError(f"cannot create ServingRuntime {s.namespace}/{self.runtime}: {reason(error)}") from None
        s.progress(f"waiting for the controller to make Deployment {self.deployment}")
        before = self._replicas(wait_s=POD_WAIT_S)
        placeholder = f"{self.runtime}-up"
        self._create_isvc(placeholder, s.samples[0])
        s.progress(f"waiting for {self.replicas} serving pod(s) of runtime {self.runtime}")
        self._scale_up = bringup.watch(
            lambda: self._status_or_none(placeholder), lambda: len(self._ready_pods()) >= self.replicas,
            POD_WAIT_S, f"ServingRuntime {s.namespace}/{self.runtime} with InferenceService {placeholder}",
            self.runtime, self.replicas, before, self._replicas)
        self.undeploy(placeholder)

    def _replicas(self, wait_s: float = 0.0) -> int:
        """The runtime Deployment's spec.replicas, waiting up to `wait_s` for the controller to make it."""
        s = self.session
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return int(s.apps.read_namespaced_deployment(self.deployment, s.namespace).spec.replicas or 0)
            except ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise api_error(error, f"Deployment {s.namespace}/{self.deployment}") from None
            time.sleep(0.5)

    # ---- what the target offers -------------------------------------------------------------
    def samples(self) -> list[SampleRef]:
        return list(self.session.samples)

    def pods(self) -> list[str]:
        # Listed at most once a second: a client round-robins over pods() on every request.
        with self._lock:
            if time.monotonic() - self._pods[0] > 1.0:
                self._pods = (time.monotonic(), self._ready_pods())
            return list(self._pods[1])

    def _runtime_pods(self) -> list[Any]:
        prefix = f"modelmesh-serving-{self.runtime}-"
        try:
            items = self.session.core.list_namespaced_pod(self.session.namespace).items
        except ApiException as error:
            raise api_error(error, f"pods in namespace {self.session.namespace}") from None
        listed = [p for p in items if p.metadata.name.startswith(prefix)]
        with self._lock:
            self._seen_pods.update(p.metadata.name for p in listed)
        return [p for p in listed if p.metadata.deletion_timestamp is None]

    def _ready_pods(self) -> list[str]:
        """Pods that are Ready and whose ModelMesh answers its readiness probe through the resolver. On a real
        cluster Ready means the probe passed; the second look covers a pod that turns Ready before its ModelMesh
        listens (kwok's pods do) and a pod the resolver cannot reach yet."""
        return [name for name in sorted(p.metadata.name for p in self._runtime_pods() if pod_ready(p))
                if self._serving(name)]

    def _serving(self, pod: str) -> bool:
        if pod in self._serving_pods:
            return True
        try:
            if self.probe_ready(pod):
                self._serving_pods.add(pod)
                return True
        except TargetError:
            pass
        self._drop(pod)  # a fresh channel next time: a failed one backs off for up to minutes
        return False

    def _pod(self, pod: str | None) -> str:
        """The pod named, or any ready one; a runtime ModelMesh scaled to zero comes back once a model needs it."""
        if pod is not None:
            return pod
        deadline = time.monotonic() + POD_WAIT_S
        while not (pods := self.pods()):
            if time.monotonic() > deadline:
                raise TargetError("UNAVAILABLE", f"runtime {self.runtime} has no ready pod after {POD_WAIT_S:.0f} s")
            time.sleep(1)
        return pods[0]

    def _channel(self, pod: str) -> grpc.Channel:
        with self._lock:
            if pod not in self._channels:
                self._channels[pod] = grpc.insecure_channel(self.resolver.address(pod, PORTS["grpc"]))
                self._inference[pod] = clients.Inference(self._channels[pod])
            return self._channels[pod]

    def _inference_of(self, pod: str) -> clients.Inference:
        self._channel(pod)
        return self._inference[pod]

    def _drop(self, pod: str) -> None:
        with self._lock:
            channel = self._channels.pop(pod, None)
            self._inference.pop(pod, None)
            self._serving_pods.discard(pod)
        if channel is not None:
            channel.close()

    def _management(self, pod: str | None = None) -> clients.Management:
        return clients.Management(self._channel(self._pod(pod)))

    # ---- models -----------------------------------------------------------------------------
    def _create_isvc(self, name: str, sample: SampleRef, runtime: str | None = None) -> None:
        key = json.loads(sample.key)
        s = self.session
        body = objects.inference_service(name, s.namespace, s.run_id, self.runtime if runtime is None else runtime,
                                         sample.type, key["storage_key"], key["storage_params"]["bucket"],
                                         sample.path)
        try:
            s.custom.create_namespaced_custom_object(*ISVC[:2], s.namespace, ISVC[2], body)
        except ApiException as error:
            raise api_error(error, f"InferenceService {s.namespace}/{name}", "INVALID_ARGUMENT") from None

    def deploy(self, name: str, sample: SampleRef, load: bool = True, runtime: str | None = None) -> Deployed:
        """Create the InferenceService (ModelMesh loads it at once, whatever `load` says) and learn the concrete
        model id the controller registered for it."""
        self._create_isvc(name, sample, runtime)
        return Deployed(name, self._registered(name, lambda target: bool(target)), sample)

    def update(self, name: str, sample: SampleRef) -> Deployed:
        """Edit the InferenceService's model (format and storage), as a user edits it; the controller registers
        the new spec as a new concrete model (`concreteModelName`: the spec's hash) and makes it the vmodel's
        target."""
        s = self.session
        before = self.vmodel(name).target
        key = json.loads(sample.key)
        patch = {"spec": {"predictor": {"model": objects.model_spec(
            self.runtime, sample.type, key["storage_key"], key["storage_params"]["bucket"], sample.path)}}}
        try:
            s.custom.patch_namespaced_custom_object(*ISVC[:2], s.namespace, ISVC[2], name, patch)
        except ApiException as error:
            raise api_error(error, f"InferenceService {s.namespace}/{name}", "INVALID_ARGUMENT") from None
        return Deployed(name, self._registered(name, lambda target: bool(target) and target != before), sample)

    def _registered(self, name: str, wanted: Callable[[str], bool]) -> str:
        """The vmodel's target model id once `wanted` holds for it; the controller registers within seconds."""
        try:
            return str(tenacity.Retrying(
                stop=tenacity.stop_after_delay(REGISTER_WAIT_S), wait=tenacity.wait_fixed(0.5),
                retry=tenacity.retry_if_result(lambda found: not wanted(found))
                | tenacity.retry_if_exception_type(TargetError))(lambda: self.vmodel(name).target))
        except tenacity.RetryError:
            raise TargetError("DEADLINE_EXCEEDED", f"InferenceService {name}: the controller registered no "
                                                   f"model for its spec within {REGISTER_WAIT_S:.0f} s") from None

    def vmodel(self, name: str) -> VModel:
        status = self._management().vmodel_status(name)
        return VModel(str(status.activeModelId), str(status.targetModelId))

    def concrete_state(self, model_id: str) -> str:
        return clients.status_name(self._management().model_status(model_id).status)

    def undeploy(self, name: str) -> None:
        s = self.session
        try:
            s.custom.delete_namespaced_custom_object(*ISVC[:2], s.namespace, ISVC[2], name)
        except ApiException as error:
            if error.status != 404:
                raise api_error(error, f"InferenceService {s.namespace}/{name}", "INTERNAL") from None

    def _isvc(self, name: str) -> dict[str, Any] | None:
        s = self.session
        try:
            return s.custom.get_namespaced_custom_object(*ISVC[:2], s.namespace, ISVC[2], name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise api_error(error, f"InferenceService {s.namespace}/{name}") from None

    def model_state(self, name: str) -> str:
        isvc = self._isvc(name)
        if isvc is None:
            return GONE
        return str(get(isvc, "status", "modelStatus", "states", "activeModelState"))

    def _status_or_none(self, name: str) -> ServiceStatus | None:
        isvc = self._isvc(name)
        return bringup.service_status(isvc) if isvc is not None and isvc.get("status") else None

    def service_status(self, name: str) -> ServiceStatus:
        isvc = self._isvc(name)
        if isvc is None:
            raise TargetError("NOT_FOUND", f"InferenceService {self.session.namespace}/{name} not found")
        return bringup.service_status(isvc)

    def scale_up(self) -> ScaleUp:
        if self._scale_up is None:
            raise TargetError("FAILED_PRECONDITION", f"runtime {self.runtime} was not brought up by this target")
        return self._scale_up

    def copy_locations(self, name: str) -> list[str]:
        status = self._management().vmodel_status(name)
        return sorted(self._pod_of(copy.location) for copy in status.activeModelStatus.modelCopyInfos)

    def _pod_of(self, location: str) -> str:
        """ModelMesh names a copy's location by instance id, the last 12 characters of the pod's name. Matched
        against every runtime pod this run has seen, so a copy on a pod that is already gone still names it;
        an id no pod ends with is returned as it is."""
        pod = self._seen_pod_ending(location)
        if pod is None:
            self._runtime_pods()  # a pod that started since the last listing
            pod = self._seen_pod_ending(location)
        return pod or location

    def _seen_pod_ending(self, instance_id: str) -> str | None:
        with self._lock:
            matches = [pod for pod in self._seen_pods if pod.endswith(instance_id)]
        return matches[0] if len(matches) == 1 else None

    # ---- requests ---------------------------------------------------------------------------
    def infer(self, name: str, pod: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> InferResult:
        return self._inference_of(self._pod(pod)).infer(name, headers)

    def infer_rest(self, name: str, pod: str | None = None) -> InferResult:
        return clients.Rest(f"http://{self.resolver.address(self._pod(pod), PORTS['rest'])}").infer(name)

    def metrics(self, pod: str) -> dict[str, Any]:
        return self._scraper.scrape(pod, self.resolver.address(pod, PORTS["metrics"]))

    def probe_ready(self, pod: str) -> bool:
        return clients.probe_ready(f"http://{self.resolver.address(pod, PORTS['probes'])}")

    def kill_pod(self, pod: str) -> None:
        """Delete the pod with no grace period: its containers get SIGKILL, as on a node loss."""
        s = self.session
        try:
            s.core.delete_namespaced_pod(pod, s.namespace, grace_period_seconds=0)
        except ApiException as error:
            raise api_error(error, f"pod {s.namespace}/{pod}", "INTERNAL") from None
        with self._lock:
            self._pods = (0.0, [])
        self._drop(pod)

    # ---- readiness --------------------------------------------------------------------------
    def backing(self) -> dict[str, str]:
        """What runs in the runtime pods when this project's local cluster backs them (the annotations its kubelet
        writes: the embedded mesh or reference pods, and the reference's commit); {} on a real cluster."""
        for pod in self._runtime_pods():
            notes = pod.metadata.annotations or {}
            if notes.get(ENGINE_ANNOTATION):
                return {"mesh_engine": notes[ENGINE_ANNOTATION],
                        **({"reference_commit": notes[COMMIT_ANNOTATION]} if notes.get(COMMIT_ANNOTATION) else {})}
        return {}

    def platform(self) -> Platform:
        return platform.read(self.session, self.runtime_body, self._runtime_pods())

    def declared_room(self) -> int | None:
        return objects.declared_room(self.runtime_body)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def open_target(session: Session, runtime: dict[str, Any], min_churn_age_ms: int, resolver_kind: str
                ) -> ClusterTarget:
    target = ClusterTarget(session, runtime, min_churn_age_ms,
                           resolve.make(resolver_kind, session.core, session.namespace))
    target.open()
    return target
