"""The ModelRuntime SPI in front of a real MLServer behaves as ModelMesh expects of a runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import joblib
import numpy as np
import pytest
from mmgitops.lab.mesh import adapter, modelserver
from mmgitops.lab.ports import free_port
from mmgitops.modelmesh import stubs
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.mesh
pb = adapter.pb
dataplane_pb2, dataplane_pb2_grpc = stubs.v2()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    work = tmp_path_factory.mktemp("runtime")
    server = modelserver.start(work / "models", work / "mlserver.log")
    port = free_port()
    spi = adapter.serve(adapter.Adapter(server, adapter.RuntimeConfig(capacity_bytes=64 * 2**20)), port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield (pb_stub(channel), dataplane_pb2_grpc.GRPCInferenceServiceStub(
            grpc.insecure_channel(server.grpc_target)), server, work)
    finally:
        channel.close()
        spi.stop(1)
        server.stop()


def pb_stub(channel: grpc.Channel):
    return adapter.pb_grpc.ModelRuntimeStub(channel)


def train(path: Path, flip: bool) -> Path:
    """A tiny classifier whose answer for [1, 1, 1, 1] is 1, or 0 when flipped."""
    x = np.array([[0, 0, 0, 0], [1, 1, 1, 1]] * 10, dtype=np.float32)
    y = np.array([1, 0] * 10 if flip else [0, 1] * 10)
    joblib.dump(LogisticRegression().fit(x, y), path)
    return path


def infer(stub, model: str) -> int:
    request = dataplane_pb2.ModelInferRequest(model_name=model, inputs=[
        dataplane_pb2.ModelInferRequest.InferInputTensor(
            name="predict", datatype="FP32", shape=[1, 4],
            contents=dataplane_pb2.InferTensorContents(fp32_contents=[1, 1, 1, 1]))])
    response = stub.ModelInfer(request, timeout=10)
    return int(np.frombuffer(response.raw_output_contents[0], dtype=np.int64)[0]) if response.raw_output_contents \
        else int(response.outputs[0].contents.int64_contents[0])


def test_runtime_status_reports_ready_with_capacity_and_id_injection(runtime):
    spi, *_ = runtime
    status = spi.runtimeStatus(pb.RuntimeStatusRequest(), timeout=5)
    assert status.status == pb.RuntimeStatusResponse.READY
    assert status.capacityInBytes == 64 * 2**20
    assert status.modelLoadingTimeoutMs == 90_000
    assert list(status.methodInfos["inference.GRPCInferenceService/ModelInfer"].idInjectionPath) == [1]


def test_load_serves_the_model_and_reports_size_on_disk_times_1_25(runtime, tmp_path):
    spi, data, *_ = runtime
    path = train(tmp_path / "model.joblib", flip=False)
    loaded = spi.loadModel(pb.LoadModelRequest(modelId="m-a__isvc-0000000001", modelType="sklearn",
                                               modelPath=str(path)), timeout=30)
    assert loaded.sizeInBytes == int(path.stat().st_size * 1.25)
    assert infer(data, "m-a__isvc-0000000001") == 1
    assert spi.modelSize(pb.ModelSizeRequest(modelId="m-a__isvc-0000000001")).sizeInBytes == loaded.sizeInBytes


def test_two_models_answer_differently(runtime, tmp_path):
    spi, data, *_ = runtime
    for name, flip in (("m-b", False), ("m-c", True)):
        spi.loadModel(pb.LoadModelRequest(modelId=name, modelType="sklearn",
                                          modelPath=str(train(tmp_path / f"{name}.joblib", flip))), timeout=30)
    assert (infer(data, "m-b"), infer(data, "m-c")) == (1, 0)


def test_unload_removes_the_model_from_the_server(runtime, tmp_path):
    spi, data, *_ = runtime
    spi.loadModel(pb.LoadModelRequest(modelId="m-d", modelType="sklearn",
                                      modelPath=str(train(tmp_path / "d.joblib", False))), timeout=30)
    spi.unloadModel(pb.UnloadModelRequest(modelId="m-d"), timeout=30)
    ready = data.ModelReady(dataplane_pb2.ModelReadyRequest(name="m-d"), timeout=5).ready \
        if _exists(data, "m-d") else False
    assert ready is False
    with pytest.raises(grpc.RpcError) as err:
        spi.modelSize(pb.ModelSizeRequest(modelId="m-d"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    spi.unloadModel(pb.UnloadModelRequest(modelId="never-loaded"), timeout=5)  # unknown: returns at once


def _exists(data, name: str) -> bool:
    try:
        data.ModelReady(dataplane_pb2.ModelReadyRequest(name=name), timeout=5)
        return True
    except grpc.RpcError:
        return False


def test_a_bad_model_path_fails_the_load_with_internal(runtime, tmp_path):
    spi, data, *_ = runtime
    with pytest.raises(grpc.RpcError) as err:
        spi.loadModel(pb.LoadModelRequest(modelId="m-bad", modelType="sklearn",
                                          modelPath=str(tmp_path / "missing.joblib")), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "does not exist" in err.value.details()
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a model")
    with pytest.raises(grpc.RpcError) as err:
        spi.loadModel(pb.LoadModelRequest(modelId="m-broken", modelType="sklearn", modelPath=str(broken)), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert not _exists(data, "m-broken") or not data.ModelReady(
        dataplane_pb2.ModelReadyRequest(name="m-broken"), timeout=5).ready


def test_an_unknown_model_type_is_invalid_argument(runtime, tmp_path):
    spi, *_ = runtime
    with pytest.raises(grpc.RpcError) as err:
        spi.loadModel(pb.LoadModelRequest(modelId="m-x", modelType="tensorrt", modelPath=str(tmp_path)), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
