"""The ModelMesh controller stand-in's loop, one pass per call of `reconcile`.

Per namespace labelled `modelmesh-enabled=true`: each ServingRuntime in use gets its Deployment (scaled to
zero after the grace period when no InferenceService uses it, if model-serving-config says so) and the
namespace its `modelmesh-serving` Service; each running runtime pod gets a mesh instance; each
InferenceService with `deploymentMode: ModelMesh` is registered through `setVModel` and its status written.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError
from mmgitops.mesh.control import concrete_id
from mmgitops.mesh.peers import mesh_grpc, mesh_pb
from mmgitops.standins.kube import Kube
from mmgitops.standins.modelmesh import config, deployments, status
from mmgitops.standins.modelmesh.fleet import Fleet, Instance

ENDPOINTS_ANNOTATION = "mmgitops.io/endpoints"  # read by the conformance suite's annotation resolver
NAMESPACE_LABEL = "modelmesh-enabled=true"
MODE = "serving.kserve.io/deploymentMode"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
RUNTIMES = ("serving.kserve.io", "v1alpha1", "servingruntimes")
PORT_FORWARD = ("kwok.x-k8s.io", "v1alpha1", "portforwards")


@dataclass(frozen=True)
class Registered:
    runtime: str
    model_id: str
    generation: int


class Controller:
    def __init__(self, state: Path) -> None:
        self.fleet = Fleet(state / "modelmesh")
        self.registered: dict[tuple[str, str], Registered] = {}
        self.last_used: dict[tuple[str, str], float] = {}

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
                _log(f"namespace {ns.metadata.name}: {str(error).splitlines()[0] if str(error) else error!r}")
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
                    kube.custom.list_namespaced_custom_object(*RUNTIMES[:2], ns, RUNTIMES[2])["items"]}
        isvcs = [i for i in kube.custom.list_namespaced_custom_object(*ISVC[:2], ns, ISVC[2])["items"]
                 if (i["metadata"].get("annotations") or {}).get(MODE) == "ModelMesh"
                 and not i["metadata"].get("deletionTimestamp")]
        chosen = {i["metadata"]["name"]: config.choose_runtime(i, runtimes) for i in isvcs}
        now = time.monotonic()
        for runtime in {c[0] for c in chosen.values() if c[0]}:
            self.last_used[(ns, runtime)] = now
        for name, runtime in runtimes.items():
            settings = config.runtime_settings(runtime, serving)
            idle = now - self.last_used.get((ns, name), -1e9)
            in_use = idle <= (serving.grace_period_s if serving.scale_to_zero else float("inf"))
            self._ensure_deployment(kube, ns, runtime, settings.replicas if in_use else 0, settings.server_type)
        if runtimes:
            kube.ensure(kube.core.create_namespaced_service, kube.core.read_namespaced_service,
                        deployments.service(ns), ns)
        storage_dir = self._storage(kube, ns, serving)
        ready = self._pods(kube, ns, runtimes, serving, storage_dir)
        for isvc in isvcs:
            self._inference_service(kube, ns, isvc, chosen[isvc["metadata"]["name"]], ready)
        live = {i["metadata"]["name"] for i in isvcs}
        for key in [k for k in self.registered if k[0] == ns and k[1] not in live]:
            instance = ready.get(self.registered[key].runtime)
            if instance is not None:
                _management(instance).deleteVModel(mesh_pb.DeleteVModelRequest(vModelId=key[1]), timeout=10)
            del self.registered[key]

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
    def _pods(self, kube: Kube, ns: str, runtimes: dict[str, dict[str, Any]], serving: config.ServingConfig,
              storage_dir: Path) -> dict[str, Instance]:
        """Start and stop instances with the pods; returns a ready instance per runtime."""
        pods = kube.core.list_namespaced_pod(ns, label_selector=f"{deployments.POD_LABEL}={deployments.SERVICE}").items
        running = {}
        for pod in pods:
            runtime = (pod.metadata.labels or {}).get("modelmesh-service-runtime", "")
            if pod.metadata.deletion_timestamp is not None:
                self.fleet.stop((ns, pod.metadata.name), kill=not pod.metadata.deletion_grace_period_seconds)
            elif pod.status and pod.status.phase == "Running" and runtime in runtimes:
                running[pod.metadata.name] = (pod, runtime)
        for key in [k for k in self.fleet.instances if k[0] == ns and k[1] not in running]:
            self.fleet.stop(key, kill=True)  # the pod object is gone: deleted with no grace period
        ready: dict[str, Instance] = {}
        for name, (pod, runtime) in sorted(running.items()):
            instance = self.fleet.instances.get((ns, name))
            if instance is None:
                settings = config.runtime_settings(runtimes[runtime], serving)
                instance = self.fleet.start(ns, name, runtime, deployments.instance_id(name), settings,
                                            serving.min_churn_age_ms(settings.load_timeout_ms), storage_dir)
            if self.fleet.poll(instance):
                ready.setdefault(runtime, instance)
                # The annotation goes last: it marks the pod as reachable both ways.
                if (pod.metadata.annotations or {}).get(ENDPOINTS_ANNOTATION) != json.dumps(instance.endpoints()):
                    _ensure_port_forward(kube, pod, instance)
                    kube.core.patch_namespaced_pod(name, ns, {"metadata": {"annotations": {
                        ENDPOINTS_ANNOTATION: json.dumps(instance.endpoints())}}})
            elif instance.failed:
                _log(f"pod {ns}/{name}: {instance.failed}")
        return ready

    # ---- InferenceServices ----------------------------------------------------------------------
    def _inference_service(self, kube: Kube, ns: str, isvc: dict[str, Any], chosen: tuple[str | None, str, str],
                           ready: dict[str, Instance]) -> None:
        generation = int(isvc["metadata"].get("generation", 1))
        runtime, reason, message = chosen
        old = isvc.get("status") or {}
        if runtime is None:
            new = status.invalid(ns, generation, reason, message)
        elif runtime not in ready:
            new = status.pending(ns, generation)
        else:
            view = self._register(ns, isvc, runtime, generation, ready[runtime])
            was_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in old.get("conditions") or [])
            new = status.from_mesh(ns, generation, view, was_ready)
        if not status.same(old, new):
            if "lastFailureInfo" in (old.get("modelStatus") or {}) and "lastFailureInfo" not in new["modelStatus"]:
                new["modelStatus"]["lastFailureInfo"] = None  # a merge patch keeps what it does not name
            kube.patch_status(isvc, "inferenceservices", new)

    def _register(self, ns: str, isvc: dict[str, Any], runtime: str, generation: int,
                  instance: Instance) -> status.MeshView:
        name = isvc["metadata"]["name"]
        known = self.registered.get((ns, name))
        stub = _management(instance)
        if known is None or known.generation != generation or known.runtime != runtime:
            model_type, path, key = _model_info(isvc)
            model_id = concrete_id(name, path)
            stub.setVModel(mesh_pb.SetVModelRequest(
                vModelId=name, targetModelId=model_id, owner=ns, loadNow=True, sync=False,
                autoDeleteTargetModel=True, modelInfo=mesh_pb.ModelInfo(type=model_type, path=path, key=key)),
                timeout=30)
            self.registered[(ns, name)] = Registered(runtime, model_id, generation)
        found = stub.getVModelStatus(mesh_pb.GetVModelStatusRequest(vModelId=name), timeout=10)
        vmodel = mesh_pb.VModelStatusInfo.VModelStatus.Name(found.status)
        model_id = found.targetModelId or self.registered[(ns, name)].model_id
        if vmodel == "NOT_FOUND":  # the mesh lost it (all its pods restarted): register again next pass
            del self.registered[(ns, name)]
        name_of = mesh_pb.ModelStatusInfo.ModelStatus.Name
        active, target = found.activeModelStatus, found.targetModelStatus
        return status.MeshView(
            vmodel=vmodel, model_id=model_id, active=name_of(active.status), target=name_of(target.status),
            copies=[status.Copy(c.location, name_of(c.copyStatus)) for c in active.modelCopyInfos]
            + [status.Copy(c.location, name_of(c.copyStatus)) for c in target.modelCopyInfos
               if found.targetModelId != found.activeModelId],
            errors=[*active.errors, *target.errors])


def _ensure_port_forward(kube: Kube, pod: Any, instance: Instance) -> None:
    """kwok's PortForward for the pod: `kubectl port-forward` (and the suite's default resolver) then reach the
    instance through the real API server, as on a real cluster. Owned by the pod, so it goes with it."""
    meta = pod.metadata
    body = {"apiVersion": f"{PORT_FORWARD[0]}/{PORT_FORWARD[1]}", "kind": "PortForward",
            "metadata": {"name": meta.name, "namespace": meta.namespace, "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": meta.name, "uid": meta.uid}]},
            "spec": {"forwards": [{"ports": [int(port)], "target": {"address": address.rsplit(":", 1)[0],
                                                                    "port": int(address.rsplit(":", 1)[1])}}
                                  for port, address in instance.endpoints().items()]}}
    try:
        kube.custom.create_namespaced_custom_object(*PORT_FORWARD[:2], meta.namespace, PORT_FORWARD[2], body)
    except ApiException as error:
        if error.status == 409:
            kube.custom.patch_namespaced_custom_object(*PORT_FORWARD[:2], meta.namespace, PORT_FORWARD[2],
                                                       meta.name, {"spec": body["spec"]})
        elif error.status != 404:  # 404: a cluster started without kwok's PortForward CRD
            raise


def _model_info(isvc: dict[str, Any]) -> tuple[str, str, str]:
    """(model type, path, model key JSON) from `spec.predictor.model`, as the controller passes them on."""
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    storage = model.get("storage") or {}
    key: dict[str, Any] = {}
    if storage:
        path = str(storage.get("path", ""))
        key["storage_key"] = storage.get("key") or "default"
        if (storage.get("parameters") or {}).get("bucket"):
            key["bucket"] = storage["parameters"]["bucket"]
    else:  # storageUri: s3://bucket/path, with the storage named by the secretKey annotation
        uri = str(model.get("storageUri", ""))
        bucket, _, path = uri.removeprefix("s3://").partition("/")
        key = {"storage_key": (isvc["metadata"].get("annotations") or {}).get("serving.kserve.io/secretKey",
                                                                                "default"), "bucket": bucket}
    return config.model_format(isvc), path, json.dumps(key)


def _management(instance: Instance) -> Any:
    return mesh_grpc.ModelMeshStub(instance.channel())


def _log(text: str) -> None:
    print(f"modelmesh: {text}", file=sys.stderr, flush=True)
