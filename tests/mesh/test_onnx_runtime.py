"""An ONNX model through the ModelRuntime SPI in front of a real MLServer: what a triton-gpu pod of the local cluster
serves in place of Triton (mmgitops.lab.mesh.onnx_standin)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import onnx
import pytest
from mmgitops.lab.cluster import profile_storage
from mmgitops.lab.mesh import adapter, modelserver
from mmgitops.modelmesh import stubs
from onnx import numpy_helper

pytestmark = pytest.mark.mesh
pb = adapter.pb
v2_pb, v2_grpc = stubs.v2()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    work = tmp_path_factory.mktemp("onnx-runtime")
    server = modelserver.start(work / "models", work / "mlserver.log")
    spi = adapter.serve(adapter.Adapter(server, adapter.RuntimeConfig(capacity_bytes=64 * 2**20)), 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{spi.port}")
    data = grpc.insecure_channel(server.grpc_target)
    try:
        yield adapter.pb_grpc.ModelRuntimeStub(channel), v2_grpc.GRPCInferenceServiceStub(data), work
    finally:
        channel.close()
        data.close()
        spi.stop(1)
        server.stop()


def test_an_onnx_model_loads_as_the_triton_runtime_is_asked_and_answers_through_mlserver(runtime):
    spi, data, work = runtime
    path = profile_storage.build_onnx_mnist(work / "onnx" / "mnist.onnx")
    # As ModelMesh asks a triton-gpu pod: the type label names the runtime, the key the model format.
    key = json.dumps({"model_type": {"name": "onnx"}})
    loaded = spi.loadModel(pb.LoadModelRequest(modelId="onnx-mnist__isvc-0123456789", modelType="rt:triton-gpu",
                                               modelPath=str(path), modelKey=key), timeout=60)
    assert loaded.sizeInBytes == int(path.stat().st_size * adapter.MODELSIZE_MULTIPLIER)
    metadata = data.ModelMetadata(v2_pb.ModelMetadataRequest(name="onnx-mnist__isvc-0123456789"), timeout=10)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("input", "FP32", [-1, 784])]
    x = np.random.default_rng(3).random((2, 784), dtype=np.float32)
    response = data.ModelInfer(v2_pb.ModelInferRequest(model_name="onnx-mnist__isvc-0123456789", inputs=[
        v2_pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2, 784],
                                                 contents=v2_pb.InferTensorContents(fp32_contents=x.ravel()))]),
        timeout=30)
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output", "FP32", [2, 10])
    got = (np.frombuffer(response.raw_output_contents[0], dtype=np.float32) if response.raw_output_contents
           else np.array(output.contents.fp32_contents, dtype=np.float32)).reshape(2, 10)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    np.testing.assert_allclose(got, x @ weights["weights"] + weights["bias"], rtol=1e-4, atol=1e-5)
    spi.unloadModel(pb.UnloadModelRequest(modelId="onnx-mnist__isvc-0123456789"), timeout=30)
