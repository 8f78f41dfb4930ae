"""The `mmesh.ModelRuntime` SPI in front of a real MLServer: what ModelMesh's runtime adapter does.

loadModel writes an MLServer model-settings.json for the model and asks MLServer to load it
through its repository API; sizes follow ModelMesh's rule (size on disk x 1.25).
"""

from __future__ import annotations

import json
import shutil
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock

import grpc
import mlserver
from mlserver.grpc import model_repository_pb2, model_repository_pb2_grpc

from mmgitops.mesh import stubs
from mmgitops.mesh.modelserver import ModelServer

pb, pb_grpc = stubs.load("model-runtime")

MODELSIZE_MULTIPLIER = 1.25
DEFAULT_MODELSIZE = 1_000_000
# MLServer implementations by ModelMesh model type (the formats of the built-in mlserver-1.x runtime).
IMPLEMENTATIONS = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
}
# Inference methods whose request field 1 (model_name) carries the model id.
METHODS = ("inference.GRPCInferenceService/ModelInfer", "inference.GRPCInferenceService/ModelMetadata")


@dataclass
class RuntimeConfig:
    capacity_bytes: int
    max_loading_concurrency: int = 2
    loading_timeout_ms: int = 90_000


@dataclass
class Adapter(pb_grpc.ModelRuntimeServicer):  # type: ignore[misc, name-defined]
    server: ModelServer
    config: RuntimeConfig
    sizes: dict[str, int] = field(default_factory=dict)
    lock: Lock = field(default_factory=Lock)

    def _repository(self) -> model_repository_pb2_grpc.ModelRepositoryServiceStub:
        return model_repository_pb2_grpc.ModelRepositoryServiceStub(grpc.insecure_channel(self.server.grpc_target))

    @staticmethod
    def size_on_disk(path: Path) -> int:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size

    def runtimeStatus(self, request, context):
        return pb.RuntimeStatusResponse(
            status=pb.RuntimeStatusResponse.READY if self.server.process.poll() is None
            else pb.RuntimeStatusResponse.FAILING,
            capacityInBytes=self.config.capacity_bytes,
            maxLoadingConcurrency=self.config.max_loading_concurrency,
            modelLoadingTimeoutMs=self.config.loading_timeout_ms,
            defaultModelSizeInBytes=DEFAULT_MODELSIZE,
            runtimeVersion=f"mlserver-{mlserver.__version__}",
            methodInfos={m: pb.RuntimeStatusResponse.MethodInfo(idInjectionPath=[1]) for m in METHODS},
        )

    def loadModel(self, request, context):
        implementation = IMPLEMENTATIONS.get(request.modelType)
        if implementation is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"model type {request.modelType!r} is not supported")
        path = Path(request.modelPath)
        if not path.exists():
            context.abort(grpc.StatusCode.INTERNAL, f"model path {request.modelPath} does not exist")
        model_dir = self.server.models_dir / request.modelId
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": request.modelId, "implementation": implementation,
            "parameters": {"uri": str(path.resolve())},
        }), encoding="utf-8")
        try:
            self._repository().RepositoryModelLoad(
                model_repository_pb2.RepositoryModelLoadRequest(model_name=request.modelId),
                timeout=self.config.loading_timeout_ms / 1000)
        except grpc.RpcError as exc:
            shutil.rmtree(model_dir, ignore_errors=True)
            context.abort(grpc.StatusCode.INTERNAL, f"MLServer could not load {request.modelId}: {exc.details()}")
        size = int(self.size_on_disk(path) * MODELSIZE_MULTIPLIER)
        with self.lock:
            self.sizes[request.modelId] = size
        return pb.LoadModelResponse(sizeInBytes=size)

    def unloadModel(self, request, context):
        model_dir = self.server.models_dir / request.modelId
        if model_dir.exists():
            try:
                self._repository().RepositoryModelUnload(
                    model_repository_pb2.RepositoryModelUnloadRequest(model_name=request.modelId), timeout=30)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    context.abort(grpc.StatusCode.INTERNAL, f"unload of {request.modelId}: {exc.details()}")
            shutil.rmtree(model_dir, ignore_errors=True)
        with self.lock:
            self.sizes.pop(request.modelId, None)
        return pb.UnloadModelResponse()

    def predictModelSize(self, request, context):
        path = Path(request.modelPath)
        size = int(self.size_on_disk(path) * MODELSIZE_MULTIPLIER) if path.exists() else DEFAULT_MODELSIZE
        return pb.PredictModelSizeResponse(sizeInBytes=size)

    def modelSize(self, request, context):
        with self.lock:
            size = self.sizes.get(request.modelId)
        if size is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.modelId} is not loaded")
        return pb.ModelSizeResponse(sizeInBytes=size)


def serve(adapter: Adapter, port: int) -> grpc.Server:
    """The SPI on 127.0.0.1:port; the caller stops it with server.stop(grace)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_ModelRuntimeServicer_to_server(adapter, server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    server.start()
    return server
