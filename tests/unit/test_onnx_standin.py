"""The ONNX stand-in (onnxruntime behind MLServer's custom-runtime API) and the profile's sample models it serves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import joblib
import numpy as np
import onnx
import pytest
from mlserver.errors import InferenceError
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, RequestInput
from mmgitops.errors import ToolError
from mmgitops.lab.cluster import profile_storage
from mmgitops.lab.mesh import adapter
from mmgitops.lab.mesh.onnx_standin import OnnxModel
from mmgitops.modelmesh.storage import StorageEntry, parse_entry
from onnx import numpy_helper

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return profile_storage.build_onnx_mnist(tmp_path_factory.mktemp("onnx") / "onnx" / "mnist.onnx")


def loaded(path: Path) -> OnnxModel:
    model = OnnxModel(ModelSettings(name="onnx-mnist", implementation=OnnxModel,
                                    parameters=ModelParameters(uri=str(path))))
    assert asyncio.run(model.load()) is True
    return model


def request(x: np.ndarray, name: str = "input", datatype: str = "FP32") -> InferenceRequest:
    return InferenceRequest(inputs=[RequestInput(name=name, shape=list(x.shape), datatype=datatype,
                                                 data=x.ravel().tolist())])


def test_the_onnx_sample_is_a_checked_model_of_mnist_shape(onnx_file):
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model, full_check=True)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*model.graph.input, *model.graph.output)]
    assert dims == [["N", 784], ["N", 10]]
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    # Fixed weights: built twice, the same bytes.
    again = profile_storage.build_onnx_mnist(onnx_file.with_name("again.onnx"))
    assert again.read_bytes() == onnx_file.read_bytes()


def test_the_stand_in_loads_the_sample_and_answers_x_times_w_plus_b(onnx_file):
    model = loaded(onnx_file)
    assert [(t.name, t.datatype, t.shape) for t in model.inputs] == [("input", "FP32", [-1, 784])]
    assert [(t.name, t.datatype, t.shape) for t in model.outputs] == [("output", "FP32", [-1, 10])]
    x = np.random.default_rng(7).random((3, 784), dtype=np.float32)
    response = asyncio.run(model.predict(request(x)))
    assert response.model_name == "onnx-mnist"
    (output,) = response.outputs
    assert (output.name, output.datatype, output.shape) == ("output", "FP32", [3, 10])
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_file)).graph.initializer}
    expected = x @ weights["weights"] + weights["bias"]
    np.testing.assert_allclose(np.array(output.data.root if hasattr(output.data, "root") else output.data,
                                        dtype=np.float32).reshape(3, 10), expected, rtol=1e-4, atol=1e-5)


def test_fp64_input_is_cast_to_the_graph_type_and_a_lone_input_may_have_another_name(onnx_file):
    model = loaded(onnx_file)
    x = np.ones((2, 784))
    (output,) = asyncio.run(model.predict(request(x, name="pixels", datatype="FP64"))).outputs
    assert (output.shape, output.datatype) == ([2, 10], "FP32")


def test_a_wrong_shape_is_one_line_naming_the_model(onnx_file):
    model = loaded(onnx_file)
    with pytest.raises(InferenceError) as error:
        asyncio.run(model.predict(request(np.ones((1, 4), dtype=np.float32))))
    assert str(error.value).startswith("model onnx-mnist: ") and "\n" not in str(error.value)


def test_the_adapter_gives_onnx_models_to_the_stand_in():
    module, _, name = adapter.IMPLEMENTATIONS["onnx"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is OnnxModel
    key = json.dumps({"storage_key": "localMinIO", "model_type": {"name": "onnx"}})
    assert adapter.model_format_of("rt:triton-gpu", key) == "onnx"


def test_the_sklearn_sample_is_an_svm_of_mnist_shape(tmp_path):
    path = profile_storage.build_sklearn_mnist(tmp_path / "sklearn" / "mnist-svm.joblib")
    svm = joblib.load(path)
    assert type(svm).__name__ == "SVC" and svm.n_features_in_ == 784 and list(svm.classes_) == list(range(10))
    assert svm.predict(np.zeros((2, 784), dtype=np.float32)).shape == (2,)


def test_the_samples_come_from_the_profiles_manifests():
    found = {s.name: (s.namespace, s.model_format, s.storage_key, s.path, s.bucket)
             for s in profile_storage.sample_services(ROOT)}
    assert found == {
        "sklearn-mnist": ("modelmesh-models", "sklearn", "localMinIO", "sklearn/mnist-svm.joblib", "profile-samples"),
        "onnx-mnist": ("modelmesh-models", "onnx", "localMinIO", "onnx/mnist.onnx", "profile-samples")}


def test_a_sample_of_an_unknown_format_is_one_line(tmp_path):
    samples = tmp_path / "components" / "modelmesh" / "samples-x"
    samples.mkdir(parents=True)
    (samples / "pmml.yaml").write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"
        "metadata: {name: pmml-model, namespace: modelmesh-models}\n"
        "spec: {predictor: {model: {modelFormat: {name: pmml}, storage: {key: s, path: p/model.pmml}}}}\n")
    with pytest.raises(ToolError, match=r"^components/modelmesh/samples-x/pmml.yaml: InferenceService pmml-model: "
                                        r"no sample model for format 'pmml'"):
        profile_storage.sample_services(tmp_path)


def test_the_secret_names_each_storage_key_as_the_local_s3_with_the_samples_bucket():
    local = StorageEntry(key="localS3", type="s3", access_key_id="a" * 20, secret_access_key="s" * 40,
                         endpoint_url="http://127.0.0.1:9", bucket="models")
    data = profile_storage.secret_data(local, ["localMinIO", "localMinIO"])
    assert list(data) == ["localMinIO"]
    entry = parse_entry("secret", "localMinIO", data["localMinIO"])
    assert (entry.endpoint_url, entry.bucket, entry.access_key_id) == ("http://127.0.0.1:9", "profile-samples",
                                                                        "a" * 20)
