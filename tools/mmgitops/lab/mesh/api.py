"""The two gRPC services an instance serves on one port: KServe v2 inference and `mmesh.ModelMesh`.

Inference is routed as ModelMesh routes it under the dataplane config modelmesh-serving writes
(ModelInfer and ModelMetadata extract field 1 as a VMODEL id; every other method is allowed but has no
extraction, so it needs an `mm-model-id` or `mm-vmodel-id` header: ModelMeshApi.startCall and
getModelIdsFromHeaders). A request reaches the model server with the concrete id in its field 1, and
the response carries that id. The MLServer adapter lists only ModelInfer and ModelMetadata in its
methodInfos, so any other method that gets that far fails UNIMPLEMENTED where the model is served
(SidecarModelMesh.callCustomMethod) — after routing, and after a load on a cache miss.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from mmgitops.lab.mesh import vmodels
from mmgitops.lab.mesh.errors import MeshError, as_mesh_error
from mmgitops.lab.mesh.instance import Instance
from mmgitops.lab.mesh.peers import LOCAL_HEADER
from mmgitops.lab.mesh.registry import ModelRecord, initial_last_used
from mmgitops.lab.mesh.status import status_info
from mmgitops.modelmesh import stubs

mesh_pb, mesh_grpc = stubs.mesh()
_, v2_grpc = stubs.v2()
Status = mesh_pb.ModelStatusInfo
VStatus = mesh_pb.VModelStatusInfo
SERVICE = "inference.GRPCInferenceService"
# The methods the MLServer adapter lets through to MLServer (its runtimeStatus methodInfos).
RUNTIME_METHODS = ("ModelInfer", "ModelMetadata")
PLACED_WITHIN_S = 5.0  # how long an async load's reply waits for the copy to be placed


def _header(metadata: dict[str, Any], name: str) -> str | None:
    value = metadata.get(name, metadata.get(f"{name}-bin"))
    return value.decode() if isinstance(value, bytes) else value


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's remaining time, passed on; a call without a deadline reports an infinite one."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e6 else None


def _abort(context: grpc.ServicerContext, error: MeshError | grpc.RpcError) -> None:
    if isinstance(error, MeshError):
        context.abort(error.code, str(error))
    context.abort(error.code(), error.details() or "")


def ids_from_headers(metadata: dict[str, Any]) -> tuple[str, bool]:
    """ModelMeshApi.getModelIdsFromHeaders (then validateModelId): (id, is a vmodel id)."""
    model_id, vmodel_id = _header(metadata, "mm-model-id"), _header(metadata, "mm-vmodel-id")
    if vmodel_id is None and model_id is None:
        raise MeshError(grpc.StatusCode.INVALID_ARGUMENT, "must include mm-model-id header")
    if vmodel_id is not None and model_id is not None:
        raise MeshError(grpc.StatusCode.INVALID_ARGUMENT, "must include only one of model id and vmodel id")
    wanted, is_vmodel = (vmodel_id, True) if vmodel_id is not None else (model_id or "", False)
    if not wanted:
        raise MeshError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"provided {'vmodel' if is_vmodel else 'model'}-id header must be non-empty")
    return wanted, is_vmodel


class Inference(v2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, instance: Instance, data: grpc.Channel) -> None:
        self.mesh = instance
        self.data = v2_grpc.GRPCInferenceServiceStub(data)

    def model_of(self, wanted: str, is_vmodel: bool) -> str:
        """The concrete model id: a vmodel's active model (VModelManager.resolveVModelId), or the id itself."""
        return vmodels.resolve(self.mesh.registry, wanted) if is_vmodel else wanted

    def _wrong_model(self, model_id: str) -> str:
        others = sorted(m for m in self.mesh.registry.snapshot().models if m != model_id)
        return others[0] if others else model_id

    def _call(self, method: str, name: str | None, request: Any, context: grpc.ServicerContext) -> Any:
        """One inference-service call; name: the extracted field-1 id, or None for a method without extraction."""
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata())
        internal = LOCAL_HEADER in metadata
        try:
            if internal:  # a peer forwarded it here with the concrete id: serve it here
                wanted, is_vmodel = _header(metadata, "mm-model-id") or "", False
            elif name:
                wanted, is_vmodel = name, True
            else:
                wanted, is_vmodel = ids_from_headers(metadata)
        except MeshError as error:
            # Closed before the call is invoked: ModelMesh records no request metrics for it.
            _abort(context, error)
        request_bytes = request.ByteSize()
        model_id = vmodel_id = ""
        try:
            model_id = self.model_of(wanted, is_vmodel)
            vmodel_id = wanted if is_vmodel else ""
            try:
                response = self._serve_model(method, name, model_id, request, context, internal, started)
            except (MeshError, grpc.RpcError) as error:
                # ModelMeshApi.callModel: a vmodel resolved to a model that is gone (a transition deleted it after
                # this instance's view was read) is resolved once more and called again.
                if not is_vmodel or as_mesh_error(error).code != grpc.StatusCode.NOT_FOUND:
                    raise
                model_id = vmodels.resolve(self.mesh.registry, wanted, not_found=model_id)
                response = self._serve_model(method, name, model_id, request, context, internal, started)
        except (MeshError, grpc.RpcError) as error:
            failure = as_mesh_error(error)
            if not internal:
                self.mesh.metrics.api_request(method, failure.code.name, (time.perf_counter() - started) * 1000,
                                              req_bytes=request_bytes, model_id=model_id, vmodel_id=vmodel_id)
            _abort(context, failure)
        if not internal:
            # ModelMeshApi logs request metrics for external calls only, with both payload sizes on success.
            self.mesh.metrics.api_request(method, "OK", (time.perf_counter() - started) * 1000,
                                          req_bytes=request_bytes, resp_bytes=response.ByteSize(),
                                          model_id=model_id, vmodel_id=vmodel_id)
        return response

    def _serve_model(self, method: str, name: str | None, model_id: str, request: Any, context: grpc.ServicerContext,
                     internal: bool, started: float) -> Any:
        if self.mesh.faults.wrong_model:
            model_id = self._wrong_model(model_id)
        if self.mesh.faults.update_gap and name and (vmodel := self.mesh.registry.vmodel(name)) \
                and vmodel.active != vmodel.target:
            raise MeshError(grpc.StatusCode.UNAVAILABLE, f"vmodel {name} is moving to {vmodel.target}")
        if name is not None:  # the runtime gets the concrete id in field 1 (its idInjectionPath)
            setattr(request, "model_name" if method == "ModelInfer" else "name", model_id)
        return self._serve(method, model_id, request, context, internal, started)

    def _serve(self, method: str, model_id: str, request: Any, context: grpc.ServicerContext, internal: bool,
               started: float) -> Any:
        holder = self.mesh.id if internal else self.mesh.holder(model_id)
        if holder == self.mesh.id:
            return self._invoke_here(method, model_id, request, context, started)
        if holder is not None:
            return self._forward(method, holder, model_id, request, context)
        # A cache miss: place a copy; the chosen instance loads and serves it.
        result: list[Any] = []

        def attempt(target: str) -> None:
            if target == self.mesh.id:
                result.append(self._invoke_here(method, model_id, request, context, started))
            else:
                result.append(self._forward(method, target, model_id, request, context))

        self.mesh.load_anywhere(model_id, self.mesh.clock(), attempt)
        return result[0]

    def _invoke_here(self, method: str, model_id: str, request: Any, context: grpc.ServicerContext,
                     started: float) -> Any:
        if self.mesh.ensure_local(model_id, self.mesh.clock()):
            self.mesh.metrics.cache_miss((time.perf_counter() - started) * 1000)
        if method not in RUNTIME_METHODS:
            raise MeshError(grpc.StatusCode.UNIMPLEMENTED, f"Method not found or not permitted: {SERVICE}/{method}")
        invoked = time.perf_counter()
        response = getattr(self.data, method)(request, timeout=_deadline(context))
        self.mesh.metrics.invoke_model(method, "OK", (time.perf_counter() - invoked) * 1000)
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
        return self._call("ModelInfer", request.model_name, request, context)

    def ModelMetadata(self, request, context):
        return self._call("ModelMetadata", request.name, request, context)

    # Not in the dataplane config's rpcConfigs: allowed (allowOtherRpcs), ids from headers only.
    def ServerLive(self, request, context):
        return self._call("ServerLive", None, request, context)

    def ServerReady(self, request, context):
        return self._call("ServerReady", None, request, context)

    def ModelReady(self, request, context):
        return self._call("ModelReady", None, request, context)

    def ServerMetadata(self, request, context):
        return self._call("ServerMetadata", None, request, context)


class Management(mesh_grpc.ModelMeshServicer):  # type: ignore[name-defined, misc]
    def __init__(self, instance: Instance) -> None:
        self.mesh = instance
        self.registry = instance.registry

    # ---- status -----------------------------------------------------------------------------
    def status(self, model_id: str, load_error: str = "") -> Any:
        """load_error: a load that failed before any instance recorded it (type constraints, churn), which
        ModelMesh reports in the reply of the call that asked for the load (makeStatusInfo with the exception)."""
        if not model_id or self.registry.read_model(model_id) is None:
            return Status(status=Status.NOT_FOUND)
        return status_info(self.registry.read_copies(model_id), self.mesh.alive(), load_error)

    def _load(self, model_id: str, last_used: int, sync: bool, local: bool) -> None:
        def run() -> None:
            self.mesh.load(model_id, last_used, here=local)

        if sync:
            run()
            return
        if not local:
            # ModelMesh checks the type's constraints in the calling thread even when it does not wait for the
            # load (ensureLoadedInternal's invokeModel, verifyLocalTypeConstraintsBeforeLoad): a type no running
            # instance may hold is LOADING_FAILED in this call's reply, where the controller reads
            # NoSupportingRuntime or RuntimeNotRecognized (predictor_controller.go decodeModelState).
            self.mesh.check_type(self.mesh.record_of(model_id).type)
        loading = threading.Thread(target=_quietly(run), daemon=True)
        loading.start()
        if not local:
            # ModelMesh replies to a load it does not wait for once the copy is placed: the chosen instance answers
            # SI_LOADING as soon as its cache entry exists (ModelMesh._invokeLocalModel, `!syncRequest &&
            # !ce.isDone()`), which the controller writes as Loading, not Standby.
            deadline = time.monotonic() + PLACED_WITHIN_S
            while loading.is_alive() and not self.registry.read_copies(model_id) and time.monotonic() < deadline:
                time.sleep(0.02)

    # ---- models -----------------------------------------------------------------------------
    def registerModel(self, request, context):
        if not request.modelId or not request.modelInfo.type:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "modelId and modelInfo.type must be set")
        info = request.modelInfo
        now = self.mesh.clock()
        record = ModelRecord(info.type, info.path, info.key, initial_last_used(request.lastUsedTime,
                                                                               request.loadNow, now))
        if not self.registry.create_model(request.modelId, record):
            existing = self.registry.read_model(request.modelId)
            if existing and (existing.type, existing.path, existing.key) != (info.type, info.path, info.key):
                context.abort(grpc.StatusCode.ALREADY_EXISTS,
                              f"model {request.modelId} is already registered with other model info")
        error = ""
        if request.loadNow:
            error = self._sync_load(context, request.modelId, record.last_used, request.sync)
        return self.status(request.modelId, error)

    def _sync_load(self, context: grpc.ServicerContext, model_id: str, last_used: int, sync: bool) -> str:
        """A failed load is reported in the returned status (LOADING_FAILED), not as an error; returns the
        failure's message."""
        try:
            self._load(model_id, last_used, sync, LOCAL_HEADER in dict(context.invocation_metadata()))
        except (MeshError, grpc.RpcError) as error:
            failure = as_mesh_error(error)
            if failure.code == grpc.StatusCode.NOT_FOUND:
                _abort(context, failure)
            return str(failure)
        return ""

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
                self.mesh.ensure_local(request.modelId, request.lastUsedTime or self.mesh.clock())
            except MeshError as error:
                _abort(context, error)
            return self.status(request.modelId)
        error = self._sync_load(context, request.modelId, request.lastUsedTime or self.mesh.clock(), request.sync)
        return self.status(request.modelId, error)

    # ---- vmodels: the rules are in vmodels.py ---------------------------------------------------
    def setVModel(self, request, context):
        info = request.modelInfo if request.HasField("modelInfo") else mesh_pb.ModelInfo()
        call = vmodels.SetVModel(
            request.vModelId, request.targetModelId, request.owner, info.type, info.path, info.key,
            request.autoDeleteTargetModel and not self.mesh.faults.keep_replaced, request.loadNow,
            request.updateOnly, request.force, request.expectedTargetModelId)
        try:
            error = vmodels.set_vmodel(
                self.registry, call, self.mesh.clock(), alive=self.mesh.alive,
                load=lambda model_id, last_used: self._sync_load(context, model_id, last_used, request.sync))
        except MeshError as failure:
            _abort(context, failure)
        return self.vmodel_status(request.vModelId, load_error=error)

    def vmodel_status(self, vmodel_id: str, owner: str = "", load_error: str = "") -> Any:
        vmodel = vmodels.read(self.registry, vmodel_id, owner)
        if vmodel is None:
            return VStatus(status=VStatus.NOT_FOUND, activeModelStatus=Status(status=Status.NOT_FOUND))
        target_status = self.status(vmodel.target, load_error)
        moving = vmodel.active != vmodel.target
        state = vmodels.transition(vmodel, Status.ModelStatus.Name(target_status.status))
        out = VStatus(status=VStatus.VModelStatus.Value(state), activeModelId=vmodel.active,
                      targetModelId=vmodel.target, owner=vmodel.owner,
                      activeModelStatus=self.status(vmodel.active) if moving else target_status)
        if moving:
            out.targetModelStatus.CopyFrom(target_status)
        return out

    def getVModelStatus(self, request, context):
        return self.vmodel_status(request.vModelId, request.owner)

    def deleteVModel(self, request, context):
        vmodels.delete(self.registry, request.vModelId, request.owner)
        return mesh_pb.DeleteVModelResponse()


def _quietly(run: Callable[[], None]) -> Callable[[], None]:
    """A background load's failure is recorded in the registry; the thread has no one to tell."""
    def wrapped() -> None:
        with contextlib.suppress(MeshError, grpc.RpcError):
            run()
    return wrapped
