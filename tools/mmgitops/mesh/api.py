"""The two gRPC services an instance serves on one port: KServe v2 inference and `mmesh.ModelMesh`.

Inference is routed as ModelMesh routes it: `model_name` (or the `mm-vmodel-id` header) names a
vmodel, `mm-model-id` a concrete model; the request reaches the model server with the concrete id in
its field 1, and the response carries that id. Health calls are answered here, never forwarded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from mlserver.grpc import dataplane_pb2 as v2
from mlserver.grpc import dataplane_pb2_grpc as v2_grpc

from mmgitops.mesh.instance import Instance, MeshError
from mmgitops.mesh.peers import LOCAL_HEADER, mesh_grpc, mesh_pb
from mmgitops.mesh.registry import HOUR_MS, CopyRecord, ModelRecord, VModelRecord, now_ms

Status = mesh_pb.ModelStatusInfo
VStatus = mesh_pb.VModelStatusInfo


def _header(metadata: dict[str, Any], name: str) -> str:
    value = metadata.get(name) or metadata.get(f"{name}-bin")
    return value.decode() if isinstance(value, bytes) else (value or "")


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's remaining time, passed on; a call without a deadline reports an infinite one."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e6 else None


def _abort(context: grpc.ServicerContext, error: MeshError | grpc.RpcError) -> None:
    if isinstance(error, MeshError):
        context.abort(error.code, str(error))
    context.abort(error.code(), error.details() or "")


class Inference(v2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, instance: Instance, data: grpc.Channel, ready: Callable[[], bool]) -> None:
        self.mesh = instance
        self.data = v2_grpc.GRPCInferenceServiceStub(data)
        self.ready = ready

    def resolve(self, name: str, metadata: dict[str, Any]) -> str:
        vmodel_id, model_id = _header(metadata, "mm-vmodel-id"), _header(metadata, "mm-model-id")
        if vmodel_id and model_id:
            raise MeshError(grpc.StatusCode.INVALID_ARGUMENT, "only one of mm-model-id and mm-vmodel-id may be set")
        if model_id:
            return model_id
        wanted = vmodel_id or name
        if not wanted:
            raise MeshError(grpc.StatusCode.INVALID_ARGUMENT,
                            "no model id: set model_name, or the mm-vmodel-id or mm-model-id header")
        registry = self.mesh.registry
        vmodel = registry.view.vmodels.get(wanted) or registry.read_vmodel(wanted)
        if vmodel is not None:
            return vmodel.active
        # A bare model id in model_name also routes: models registered without an alias stay reachable.
        if not vmodel_id and (wanted in registry.view.models or registry.read_model(wanted)):
            return wanted
        raise MeshError(grpc.StatusCode.NOT_FOUND, f"vmodel {wanted} not found")

    def _wrong_model(self, model_id: str) -> str:
        others = sorted(m for m in self.mesh.registry.view.models if m != model_id)
        return others[0] if others else model_id

    def _route(self, method: str, name: str, request: Any, context: grpc.ServicerContext, field: str) -> Any:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata())
        try:
            model_id = self.resolve(name, metadata)
            if self.mesh.faults.wrong_model:
                model_id = self._wrong_model(model_id)
            setattr(request, field, model_id)
            local = LOCAL_HEADER in metadata or self.mesh.has_copy(model_id)
            target = self.mesh.id if local else self.mesh.target_for(model_id)
            if target == self.mesh.id:
                if self.mesh.ensure_local(model_id, now_ms()):
                    self.mesh.metrics.cache_miss((time.perf_counter() - started) * 1000)
                invoked = time.perf_counter()
                response = getattr(self.data, method)(request, timeout=_deadline(context))
                self.mesh.metrics.invoke_model(method, "OK", (time.perf_counter() - invoked) * 1000)
            else:
                response = self._forward(method, target, model_id, request, context)
        except (MeshError, grpc.RpcError) as error:
            code = error.code if isinstance(error, MeshError) else error.code()
            self.mesh.metrics.api_request(method, code.name, (time.perf_counter() - started) * 1000)
            _abort(context, error)
        self.mesh.metrics.api_request(method, "OK", (time.perf_counter() - started) * 1000)
        return response

    def _forward(self, method: str, target: str, model_id: str, request: Any, context: grpc.ServicerContext) -> Any:
        if self.mesh.faults.no_forward:
            raise MeshError(grpc.StatusCode.UNAVAILABLE, f"model {model_id} is on {target}; forwarding is off")
        endpoint = self.mesh.endpoint_of(target)
        if endpoint is None:
            raise MeshError(grpc.StatusCode.UNAVAILABLE, f"instance {target} left the mesh")
        stub = self.mesh.peers.inference(endpoint)
        return getattr(stub, method)(request, timeout=_deadline(context),
                                     metadata=[("mm-model-id", model_id), (LOCAL_HEADER, self.mesh.id)])

    def ModelInfer(self, request, context):
        return self._route("ModelInfer", request.model_name, request, context, "model_name")

    def ModelMetadata(self, request, context):
        return self._route("ModelMetadata", request.name, request, context, "name")

    def ServerLive(self, request, context):
        return v2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return v2.ServerReadyResponse(ready=self.ready())

    def ServerMetadata(self, request, context):
        return v2.ServerMetadataResponse(name="mmgitops-local-mesh", version="1")

    def ModelReady(self, request, context):
        try:
            model_id = self.resolve(request.name, dict(context.invocation_metadata()))
        except MeshError as error:
            _abort(context, error)
        loaded = any(c.status == "LOADED" for c in self.mesh.copies(model_id).values())
        return v2.ModelReadyResponse(ready=loaded)


class Management(mesh_grpc.ModelMeshServicer):  # type: ignore[name-defined, misc]
    def __init__(self, instance: Instance) -> None:
        self.mesh = instance
        self.registry = instance.registry

    # ---- status -----------------------------------------------------------------------------
    def status(self, model_id: str) -> Any:
        if not model_id or self.registry.read_model(model_id) is None:
            return Status(status=Status.NOT_FOUND)
        copies = self.registry.read_copies(model_id)
        return _status_of(copies)

    def _load(self, model_id: str, last_used: int, sync: bool, local: bool) -> None:
        """Load where ModelMesh would: here when asked by a peer, else at the model's copy or placement."""
        def run() -> None:
            target = self.mesh.id if local else self.mesh.target_for(model_id)
            if target == self.mesh.id:
                self.mesh.ensure_local(model_id, last_used)
            else:
                self.mesh.load_elsewhere(target, model_id, last_used)

        if sync:
            run()
        else:
            threading.Thread(target=_quietly(run), daemon=True).start()

    # ---- models -----------------------------------------------------------------------------
    def registerModel(self, request, context):
        if not request.modelId or not request.modelInfo.type:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "modelId and modelInfo.type must be set")
        info = request.modelInfo
        record = ModelRecord(info.type, info.path, info.key, request.lastUsedTime or now_ms() - HOUR_MS)
        if not self.registry.create_model(request.modelId, record):
            existing = self.registry.read_model(request.modelId)
            if existing and (existing.type, existing.path, existing.key) != (info.type, info.path, info.key):
                context.abort(grpc.StatusCode.ALREADY_EXISTS,
                              f"model {request.modelId} is already registered with other model info")
        if request.loadNow:
            self._sync_load(context, request.modelId, record.last_used, request.sync)
        return self.status(request.modelId)

    def _sync_load(self, context: grpc.ServicerContext, model_id: str, last_used: int, sync: bool) -> None:
        """A failed load is reported in the returned status (LOADING_FAILED), not as an error."""
        try:
            self._load(model_id, last_used, sync, LOCAL_HEADER in dict(context.invocation_metadata()))
        except MeshError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                _abort(context, error)
        except grpc.RpcError:
            pass

    def unregisterModel(self, request, context):
        self.registry.delete_model(request.modelId)
        return mesh_pb.UnregisterModelResponse()

    def getModelStatus(self, request, context):
        return self.status(request.modelId)

    def ensureLoaded(self, request, context):
        if self.registry.read_model(request.modelId) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.modelId} not found")
        local = LOCAL_HEADER in dict(context.invocation_metadata())
        if local:  # a peer placed the model here: failures go back to it as errors
            try:
                self.mesh.ensure_local(request.modelId, request.lastUsedTime or now_ms())
            except MeshError as error:
                _abort(context, error)
        else:
            self._sync_load(context, request.modelId, request.lastUsedTime or now_ms(), request.sync)
        return self.status(request.modelId)

    # ---- vmodels ----------------------------------------------------------------------------
    def setVModel(self, request, context):
        if not request.vModelId or not request.targetModelId:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "vModelId and targetModelId must be set")
        current = self.registry.read_vmodel(request.vModelId)
        if current is None and request.updateOnly:
            context.abort(grpc.StatusCode.NOT_FOUND, f"vmodel {request.vModelId} not found")
        if current is not None and request.owner and current.owner != request.owner:
            context.abort(grpc.StatusCode.ALREADY_EXISTS,
                          f"vmodel {request.vModelId} exists with owner {current.owner!r}")
        if request.expectedTargetModelId and (current.target if current else request.targetModelId) \
                != request.expectedTargetModelId:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"vmodel {request.vModelId} target is not {request.expectedTargetModelId}")
        if request.HasField("modelInfo") and request.modelInfo.type:
            info = request.modelInfo
            self.registry.create_model(request.targetModelId, ModelRecord(
                info.type, info.path, info.key, now_ms() - HOUR_MS, request.autoDeleteTargetModel))
        elif self.registry.read_model(request.targetModelId) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"target model {request.targetModelId} not found")
        if current is None or request.force:
            vmodel = VModelRecord(request.targetModelId, request.targetModelId, request.owner)
        else:
            vmodel = VModelRecord(current.active, request.targetModelId, current.owner)
        self.registry.put_vmodel(request.vModelId, vmodel)
        if request.loadNow or vmodel.active != vmodel.target:
            self._sync_load(context, request.targetModelId, now_ms() - HOUR_MS, request.sync)
        return self.vmodel_status(request.vModelId)

    def vmodel_status(self, vmodel_id: str, owner: str = "") -> Any:
        vmodel = self.registry.read_vmodel(vmodel_id)
        if vmodel is None or (owner and vmodel.owner != owner):
            return VStatus(status=VStatus.NOT_FOUND, activeModelStatus=Status(status=Status.NOT_FOUND))
        target_status = self.status(vmodel.target)
        if target_status.status == Status.LOADED:
            vmodel = self.mesh.promote(vmodel_id, vmodel)
        active_status = target_status if vmodel.active == vmodel.target else self.status(vmodel.active)
        if vmodel.active == vmodel.target:
            state = VStatus.DEFINED
        elif target_status.status == Status.LOADING_FAILED:
            state = VStatus.TRANSITION_FAILED
        else:
            state = VStatus.TRANSITIONING
        out = VStatus(status=state, activeModelId=vmodel.active, targetModelId=vmodel.target,
                      activeModelStatus=active_status, owner=vmodel.owner)
        if vmodel.active != vmodel.target:
            out.targetModelStatus.CopyFrom(target_status)
        return out

    def getVModelStatus(self, request, context):
        return self.vmodel_status(request.vModelId, request.owner)

    def deleteVModel(self, request, context):
        vmodel = self.registry.read_vmodel(request.vModelId)
        if vmodel is None or (request.owner and vmodel.owner != request.owner):
            return mesh_pb.DeleteVModelResponse()
        self.registry.delete_vmodel(request.vModelId)
        still_used = {v.active for v in self.registry.view.vmodels.values()} | \
                     {v.target for v in self.registry.view.vmodels.values()}
        for model_id in {vmodel.active, vmodel.target} - still_used:
            record = self.registry.read_model(model_id)
            if record and record.auto_delete:
                self.registry.delete_model(model_id)
        return mesh_pb.DeleteVModelResponse()


STATES = {"LOADED": Status.LOADED, "LOADING": Status.LOADING, "LOADING_FAILED": Status.LOADING_FAILED}


def _status_of(copies: dict[str, CopyRecord]) -> Any:
    present = {c.status for c in copies.values()}
    overall = next((STATES[s] for s in ("LOADED", "LOADING", "LOADING_FAILED") if s in present), Status.NOT_LOADED)
    return Status(
        status=overall,
        errors=[c.error for c in copies.values() if c.status == "LOADING_FAILED" and c.error],
        modelCopyInfos=[Status.ModelCopyInfo(location=i, copyStatus=STATES[c.status], time=c.time)
                        for i, c in sorted(copies.items(), key=lambda kv: -kv[1].time)])


def _quietly(run: Callable[[], None]) -> Callable[[], None]:
    """A background load's failure is recorded in the registry; the thread has no one to tell."""
    def wrapped() -> None:
        with contextlib.suppress(MeshError, grpc.RpcError):
            run()
    return wrapped
