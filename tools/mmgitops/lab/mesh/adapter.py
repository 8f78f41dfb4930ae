"""The `mmesh.ModelRuntime` SPI in front of a real MLServer: what ModelMesh's runtime adapter does.

loadModel writes an MLServer model-settings.json for the model and asks MLServer to load it
through its repository API; sizes follow ModelMesh's rule (size on disk x 1.25). When the model key
names a storage ({"storage_key": ...}), the puller first downloads the model from S3, as ModelMesh's
runtime adapter does; without one, the model path is a local path.
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

from mmgitops.lab.mesh.modelserver import ModelServer
from mmgitops.lab.mesh.sizing import DEFAULT_MODEL_SIZE_BYTES
from mmgitops.lab.mesh.storage import Puller, PullError
from mmgitops.modelmesh import stubs
from mmgitops.modelmesh.storage import ModelKey, parse_model_key

pb, pb_grpc = stubs.runtime()

MODELSIZE_MULTIPLIER = 1.25
# MLServer implementations by ModelMesh model type: the formats of the built-in mlserver-1.x runtime, and ONNX.
IMPLEMENTATIONS = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
    # Not an MLServer format: RHOAI serves ONNX with Triton (the triton-gpu runtime). The local mesh's stand-in for
    # it is onnxruntime behind MLServer (onnx_standin.py). Every instance can load it; ModelMesh's type constraints
    # send an ONNX model only to pods of a runtime that lists onnx (or that the InferenceService names).
    "onnx": "mmgitops.lab.mesh.onnx_standin.OnnxModel",
}
# Inference methods whose request field 1 (model_name) carries the model id.
METHODS = ("inference.GRPCInferenceService/ModelInfer", "inference.GRPCInferenceService/ModelMetadata")


def model_format_of(model_type: str, model_key: str) -> str:
    """The MLServer format of a load: the model key's model_type (its name), else the request's type, as the
    runtime adapter reads it (util.GetModelType), lower-cased and cut at ':'. ModelMesh passes the
    registered type label (`mt:sklearn`, `mt:sklearn:0|pv:grpc-v2`); modelmesh-serving also puts model_type
    in the key. A bare label without a key entry is read here as its format, so that models registered
    with a type label alone still load."""
    chosen = model_type
    try:
        key = json.loads(model_key) if model_key.strip() else {}
    except json.JSONDecodeError:
        key = {}
    named = key.get("model_type") if isinstance(key, dict) else None
    if isinstance(named, dict) and isinstance(named.get("name"), str):
        chosen = named["name"]
    elif isinstance(named, str):
        chosen = named
    chosen = chosen.split("|", 1)[0]
    if chosen.startswith("mt:"):
        chosen = chosen[3:]
    return chosen.split(":", 1)[0].lower()


@dataclass
class RuntimeConfig:
    capacity_bytes: int
    max_loading_concurrency: int = 2
    loading_timeout_ms: int = 90_000
    default_model_size_bytes: int = DEFAULT_MODEL_SIZE_BYTES  # the adapter's DEFAULT_MODELSIZE environment variable


@dataclass
class Adapter(pb_grpc.ModelRuntimeServicer):  # type: ignore[misc, name-defined]
    server: ModelServer
    config: RuntimeConfig
    sizes: dict[str, int] = field(default_factory=dict)
    lock: Lock = field(default_factory=Lock)
    puller: Puller | None = None
    # Where pulled models go; by default beside the MLServer repository, one directory per repository.
    download_root: Path | None = None

    @property
    def downloads(self) -> Path:
        models = self.server.models_dir
        return self.download_root or models.with_name(f"{models.name}.pulled")

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
            defaultModelSizeInBytes=self.config.default_model_size_bytes,
            runtimeVersion=f"mlserver-{mlserver.__version__}",
            methodInfos={m: pb.RuntimeStatusResponse.MethodInfo(idInjectionPath=[1]) for m in METHODS},
        )

    def loadModel(self, request, context):
        model_format = model_format_of(request.modelType, request.modelKey)
        implementation = IMPLEMENTATIONS.get(model_format)
        if implementation is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"model type {request.modelType!r} is not supported")
        path = self._pull(request, context)
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
            self._remove_pulled(request.modelId)
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
        self._remove_pulled(request.modelId)
        with self.lock:
            self.sizes.pop(request.modelId, None)
        return pb.UnloadModelResponse()

    def predictModelSize(self, request, context):
        return pb.PredictModelSizeResponse(sizeInBytes=self._predicted_size(request))

    def _pull(self, request, context) -> Path:
        """The local path to load: the model path itself, or where the puller put the model."""
        try:
            key = parse_model_key(request.modelKey)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INTERNAL, f"model {request.modelId}: path {request.modelPath}: {exc}")
        if key.storage_key is None:
            return Path(request.modelPath)
        if self.puller is None:
            context.abort(grpc.StatusCode.INTERNAL, f"model {request.modelId}: storage {key.storage_key!r}: "
                          f"path {request.modelPath}: this runtime has no storage config")
        try:
            return self.puller.pull(request.modelId, request.modelPath, request.modelKey, self.downloads)
        except PullError as exc:
            context.abort(grpc.StatusCode.INTERNAL, str(exc))

    def _remove_pulled(self, model_id: str) -> None:
        pulled = self.downloads / model_id
        # The id comes off the wire: only ever a directory directly under the download root.
        if pulled.parent == self.downloads and pulled.name not in ("", ".", ".."):
            shutil.rmtree(pulled, ignore_errors=True)

    def _predicted_size(self, request) -> int:
        """ModelMesh's order: the key's disk_size_bytes, then the storage's size, then the local path's."""
        try:
            key = parse_model_key(request.modelKey)
        except ValueError:
            key = ModelKey()  # a size estimate is best effort: a bad key fails at load time
        on_disk = key.disk_size_bytes
        if on_disk is None and key.storage_key is not None and self.puller is not None:
            try:
                on_disk = self.puller.size(request.modelPath, request.modelKey, request.modelId)
            except PullError:
                on_disk = None
        if on_disk is None and key.storage_key is None and request.modelPath:
            path = Path(request.modelPath)
            on_disk = self.size_on_disk(path) if path.exists() else None
        return int(on_disk * MODELSIZE_MULTIPLIER) if on_disk is not None else self.config.default_model_size_bytes

    def modelSize(self, request, context):
        with self.lock:
            size = self.sizes.get(request.modelId)
        if size is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.modelId} is not loaded")
        return pb.ModelSizeResponse(sizeInBytes=size)


@dataclass
class Served:
    """The SPI server and the port it got (the one asked for, or a free one for 0)."""

    server: grpc.Server
    port: int

    def stop(self, grace: float | None) -> object:
        return self.server.stop(grace)


def serve(adapter: Adapter, port: int) -> Served:
    """The SPI on 127.0.0.1:port; port 0 lets the kernel pick one, which no other process can take first."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ModelRuntimeServicer_to_server(adapter, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    server.start()
    return Served(server, bound)
