"""The ModelMesh controller stand-in's loop, one pass per call of `reconcile`.

Per namespace labelled `modelmesh-enabled=true`: each multi-model ServingRuntime gets its Deployment (scaled
to zero after the grace period when no InferenceService needs it, if model-serving-config says so) and the
namespace its `modelmesh-serving` Service; each running runtime pod gets a mesh instance (all of a
namespace's pods form one mesh, as in ModelMesh); each InferenceService with `deploymentMode: ModelMesh` is
registered through `setVModel` and its status computed as the controller computes it.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError
from mmgitops.lab.kubelet.publish import (  # noqa: F401 - the stand-in's tests and the suite's read these here
    COMMIT_ANNOTATION,
    ENDPOINTS_ANNOTATION,
    ENGINE_ANNOTATION,
    PORT_FORWARD,
    port_forward,
    publish,
)
from mmgitops.lab.standins.kube import Kube
from mmgitops.lab.standins.modelmesh import config, deployments, engines, meshcalls, predictor, status
from mmgitops.lab.standins.modelmesh.fleet import Instance
from mmgitops.modelmesh import defaults, ids

NAMESPACE_LABEL = "modelmesh-enabled=true"
MODE = "serving.kserve.io/deploymentMode"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
RUNTIMES = ("serving.kserve.io", "v1alpha1", "servingruntimes")
# ModelMesh does not retry a load that failed on an instance for this long (ModelMesh.LOAD_FAILURE_EXPIRY_MS);
# the embedded mesh would, so the stand-in does not ask it to while the failure is this recent.
LOAD_FAILURE_EXPIRY_S = 900.0


@dataclass(frozen=True)
class Registered:
    model_id: str
    generation: int
    seen: bytes  # the mesh's view of the vmodel when it was last reconciled
    uid: str = ""  # the InferenceService object's: a new object under the same name is a new InferenceService


class Controller:
    def __init__(self, state: Path, engine: str | None = None) -> None:
        self.engine = engine or os.environ.get(engines.ENGINE_ENV) or engines.EMBEDDED
        self.fleet = engines.make_fleet(self.engine, state / "modelmesh")
        self.registered: dict[tuple[str, str], Registered] = {}
        self.last_used: dict[tuple[str, str], float] = {}
        self._complaints: set[str] = set()

    def reconcile(self, kube: Kube) -> None:
        serving = self._serving_config(kube)
        seen = set()
        for ns in kube.core.list_namespace(label_selector=NAMESPACE_LABEL).items:
            if ns.status and ns.status.phase == "Terminating":
                continue
            seen.add(ns.metadata.name)
            try:
                self._namespace(kube, ns.metadata.name, serving)
            except (ApiException, grpc.RpcError, OSError, ValueError, ToolError) as error:
                # One namespace's bad object (e.g. a runtime whose memory request is not a quantity) must not
                # stop the controller serving the others.
                self._complain(f"namespace {ns.metadata.name}: {_first_line(error)}")
        for key in [k for k in self.fleet.instances if k[0] not in seen]:
            self.fleet.stop(key, kill=True)  # the namespace is going: so are its pods
        for key in [k for k in self.registered if k[0] not in seen]:
            del self.registered[key]

    def stop(self) -> None:
        self.fleet.stop_all()

    # ---- reading --------------------------------------------------------------------------------
    def _serving_config(self, kube: Kube) -> config.ServingConfig:
        dscis = kube.list("dscinitialization.opendatahub.io", "v1", "dscinitializations")
        apps = next(((d.get("spec") or {}).get("applicationsNamespace") for d in dscis
                     if (d.get("spec") or {}).get("applicationsNamespace")), config.DEFAULT_APPLICATIONS_NAMESPACE)
        try:
            found = kube.core.read_namespaced_config_map(config.CONFIGMAP, apps)
        except ApiException as error:
            if error.status == 404:
                return config.ServingConfig()
            raise
        return config.ServingConfig.parse((found.data or {}).get("config.yaml", ""))

    def _namespace(self, kube: Kube, ns: str, serving: config.ServingConfig) -> None:
        runtimes = {r["metadata"]["name"]: r for r in
                    kube.custom.list_namespaced_custom_object(*RUNTIMES[:2], ns, RUNTIMES[2])["items"]
                    if config.serves_models(r)}
        settings = {name: config.runtime_settings(r, serving) for name, r in runtimes.items()}
        predictors = self._predictors(kube, ns)
        now = time.monotonic()
        for name, s in settings.items():
            if any(p.supported_by(s.labels) for _, p in predictors.values()):
                self.last_used[(ns, name)] = now
        for name, runtime in runtimes.items():
            idle = now - self.last_used.get((ns, name), -1e9)
            in_use = idle <= (serving.grace_period_s if serving.scale_to_zero else float("inf"))
            self._ensure_deployment(kube, ns, runtime, settings[name].replicas if in_use else 0,
                                    settings[name].server_type)
        if runtimes:
            kube.ensure(kube.core.create_namespaced_service, kube.core.read_namespaced_service,
                        deployments.service(ns), ns)
        storage_dir = self._storage(kube, ns, serving)
        table = config.namespace_constraints({name: s.labels for name, s in settings.items()})
        self.fleet.sync_namespace(ns, table, storage_dir)
        ready = self._pods(kube, ns, settings, serving, storage_dir)
        for isvc, found in predictors.values():
            if runtimes:  # no runtime, no Service: the controller has no mesh client for the namespace
                self._inference_service(kube, ns, isvc, found, ready, table)
        for key in [k for k in self.registered if k[0] == ns and k[1] not in predictors]:
            if ready:
                meshcalls.delete_vmodel(ready[0].channel(), key[1])
            del self.registered[key]

    def _predictors(self, kube: Kube, ns: str) -> dict[str, tuple[dict[str, Any], predictor.Predictor]]:
        out = {}
        for isvc in kube.custom.list_namespaced_custom_object(*ISVC[:2], ns, ISVC[2])["items"]:
            meta = isvc["metadata"]
            if (meta.get("annotations") or {}).get(MODE) != "ModelMesh" or meta.get("deletionTimestamp"):
                continue
            try:
                out[meta["name"]] = (isvc, predictor.build(isvc))
            except ValueError as error:  # the controller's reconcile errors out; the status stays as it is
                self._complain(f"InferenceService {ns}/{meta['name']}: {error}")
        return out

    def _ensure_deployment(self, kube: Kube, ns: str, runtime: dict[str, Any], replicas: int,
                           server_type: str) -> None:
        body = deployments.deployment(ns, runtime, replicas, server_type)
        name = body["metadata"]["name"]
        try:
            current = kube.apps.read_namespaced_deployment(name, ns)
        except ApiException as error:
            if error.status != 404:
                raise
            kube.apps.create_namespaced_deployment(ns, body)
            return
        if current.spec.replicas != replicas:
            kube.apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": replicas}})

    def _storage(self, kube: Kube, ns: str, serving: config.ServingConfig) -> Path:
        """The storage Secret as ModelMesh mounts it: one file per key, readable by this user only."""
        where = self.fleet.root / ns / "storage-config"
        try:
            secret = kube.core.read_namespaced_secret(serving.storage_secret, ns)
        except ApiException as error:
            if error.status != 404:
                raise
            return where
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        for key, value in (secret.data or {}).items():
            path = where / key
            text = base64.b64decode(value)
            if not path.is_file() or path.read_bytes() != text:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(text)
        return where

    # ---- pods and their instances ---------------------------------------------------------------
    def _pods(self, kube: Kube, ns: str, settings: dict[str, config.RuntimeSettings], serving: config.ServingConfig,
              storage_dir: Path) -> list[Instance]:
        """Start and stop instances with the pods; returns the namespace's ready instances, by pod name."""
        pods = kube.core.list_namespaced_pod(ns, label_selector=f"{deployments.POD_LABEL}={config.SERVICE}").items
        running = {}
        for pod in pods:
            runtime = (pod.metadata.labels or {}).get("modelmesh-service-runtime", "")
            if pod.metadata.deletion_timestamp is not None:
                self.fleet.stop((ns, pod.metadata.name), kill=not pod.metadata.deletion_grace_period_seconds)
            elif pod.status and pod.status.phase == "Running" and runtime in settings:
                running[pod.metadata.name] = (pod, runtime)
        for key in [k for k in self.fleet.instances if k[0] == ns and k[1] not in running]:
            self.fleet.stop(key, kill=True)  # the pod object is gone: deleted with no grace period
        ready: list[Instance] = []
        for name, (pod, runtime) in sorted(running.items()):
            instance = self.fleet.instances.get((ns, name))
            if instance is None:
                s = settings[runtime]
                instance = self.fleet.start(ns, name, runtime, defaults.instance_id(name), s,
                                            serving.min_churn_age_ms(s.load_timeout_ms), storage_dir)
            if self.fleet.poll(instance):
                ready.append(instance)
                self._publish(kube, pod, instance)
            elif instance.failed:
                self._complain(f"pod {ns}/{name}: {instance.failed}")
        return ready

    def _publish(self, kube: Kube, pod: Any, instance: Instance) -> None:
        """The pod's PortForward, then its annotations; the endpoints annotation goes last: it marks the pod
        as reachable both ways."""
        meta = pod.metadata
        publish(kube, meta.name, meta.namespace, meta.uid, meta.annotations or {}, instance.endpoints(), self.engine,
                str(instance.process.get("reference_commit") or ""))

    # ---- InferenceServices ----------------------------------------------------------------------
    def _inference_service(self, kube: Kube, ns: str, isvc: dict[str, Any], found: predictor.Predictor,
                           ready: list[Instance], table: dict[str, tuple[str, ...]]) -> None:
        """One reconcile of ReconcilePredictor, when the real controller would run one: a new or changed spec,
        its requeues (waiting for a runtime pod, loading), or a change in the mesh (its etcd watch)."""
        old = isvc.get("status") or {}
        current = status.from_isvc(old)
        key, generation = (ns, found.name), int(isvc["metadata"].get("generation", 1))
        uid = str(isvc["metadata"].get("uid") or "")
        model_id = ids.concrete_id(found.name, found.path)
        if not ready:  # no pod behind the Service: setVModel fails with "produced zero addresses"
            status.no_addresses(current, model_id)
        else:
            channel = ready[0].channel()
            known = self.registered.get(key)
            if known is not None and known.uid != uid:
                # Deleted and created again between two passes: the controller reconciles the delete event
                # (handlePredictorNotFound: deleteVModel) before the create event, so the new InferenceService
                # starts from a new vmodel, not from the old one's failed loads.
                meshcalls.delete_vmodel(channel, found.name)
                del self.registered[key]
                known = None
            seen = meshcalls.fingerprint(channel, found.name)
            if (known is not None and (known.model_id, known.generation, known.seen) == (model_id, generation, seen)
                    and not current.waiting_for_runtime() and current.active != "Loading"):
                return
            load = status.load_now(current) and not _recent_load_failure(current)
            try:
                view = meshcalls.set_vmodel(channel, found, model_id, load)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:  # type: ignore[attr-defined]
                    raise
                status.already_exists(current)
            else:
                if load:
                    view = meshcalls.with_load_check(view, meshcalls.no_home(
                        found.type_label(), table, [i.labels for i in ready]))
                status.update_from_vmodel(current, view, status.endpoints(ns), time.time())
            self.registered[key] = Registered(model_id, generation, seen, uid)
        new = status.to_isvc(current)
        if not status.same(old, new):
            kube.patch_status(isvc, "inferenceservices", status.replacing(old, new))

    def _complain(self, text: str) -> None:
        """Log a problem once, not on every pass."""
        if text not in self._complaints:
            self._complaints.add(text)
            print(f"modelmesh: {text}", file=sys.stderr, flush=True)


def _recent_load_failure(current: status.PredictorStatus) -> bool:
    failure = current.failure
    return (current.active == "FailedToLoad" and failure is not None and failure.reason == "ModelLoadFailed"
            and bool(failure.time) and time.time() - status.parse_time(failure.time) < LOAD_FAILURE_EXPIRY_S)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else repr(error)
