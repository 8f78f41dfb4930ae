"""The conformance profile's own sample InferenceServices on the local cluster: FailedToLoad on the placeholder
storage, Loaded once `profile_storage.stage` has put their models in the cluster's S3 server (the sklearn SVM on
mlserver-1.x, the ONNX model on triton-gpu, served by the ONNX stand-in), and answering through a port-forward."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from kubernetes import client, config
from mmgitops.conformance.cluster.resolve import PortForward
from mmgitops.lab.cluster import profile_storage
from mmgitops.modelmesh import stubs

from tests.integration.conftest import ROOT, mmgitops

pytestmark = pytest.mark.integration
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
NAMESPACE = "modelmesh-models"
SAMPLES = ("onnx-mnist", "sklearn-mnist")
WITHIN_S = 420  # two loads on 2 busy cores, behind whatever else the tier runs
v2_pb, v2_grpc = stubs.v2()


@pytest.fixture(scope="module")
def kube(cluster: dict) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=cluster["kubeconfig"])
    yield api
    api.close()


def states(kube: client.ApiClient) -> dict[str, tuple[str, str]]:
    items = client.CustomObjectsApi(kube).list_namespaced_custom_object(*ISVC[:2], NAMESPACE, ISVC[2])["items"]
    out = {}
    for item in items:
        model = (item.get("status") or {}).get("modelStatus") or {}
        out[item["metadata"]["name"]] = (str((model.get("states") or {}).get("activeModelState") or ""),
                                         str((model.get("lastFailureInfo") or {}).get("message") or ""))
    return out


def wait_for(kube: client.ApiClient, wanted: str, within_s: float = WITHIN_S) -> dict[str, tuple[str, str]]:
    deadline = time.monotonic() + within_s
    while True:
        seen = states(kube)
        if all(seen.get(name, ("",))[0] == wanted for name in SAMPLES):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"not all of {SAMPLES} {wanted} after {within_s:.0f} s: {seen}")
        time.sleep(2)


def runtime_pods(kube: client.ApiClient) -> list[str]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(NAMESPACE, label_selector="modelmesh-service=modelmesh-serving")
    return sorted(p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None)


@pytest.fixture(scope="module")
def staged(cluster: dict, cluster_env: dict, kube: client.ApiClient) -> dict:
    run = mmgitops("apply", "overlays/conformance", "--kubeconfig", cluster["kubeconfig"], "--timeout", "300",
                   env=cluster_env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    before = wait_for(kube, "FailedToLoad")
    messages: list[str] = []
    names = profile_storage.stage(ROOT, cluster, messages.append)
    return {"before": before, "names": names, "messages": messages, "after": wait_for(kube, "Loaded")}


def test_the_placeholder_storage_fails_both_samples_and_staging_loads_them(staged, cluster):
    # The profile's Secret names the example's MinIO (minio.minio.svc), which does not exist here.
    assert all("minio.minio.svc" in message for _, message in staged["before"].values()), staged["before"]
    assert sorted(staged["names"]) == sorted(SAMPLES)
    assert {name: state for name, (state, _) in staged["after"].items() if name in SAMPLES} == dict.fromkeys(
        SAMPLES, "Loaded")
    text = "\n".join(staged["messages"])
    assert "re-creating" in text and "restarting" not in text  # the pods read the new Secret at their next load
    assert "secret_access_key" not in text and "access_key_id" not in text


def test_the_secret_points_each_storage_key_at_the_local_s3_and_names_no_placeholder(staged, cluster, kube):
    secret = client.CoreV1Api(kube).read_namespaced_secret("storage-config", NAMESPACE)
    data = {k: json.loads(base64.b64decode(v)) for k, v in secret.data.items()}
    assert list(data) == ["localMinIO"]
    assert (data["localMinIO"]["endpoint_url"], data["localMinIO"]["bucket"]) == (cluster["s3"], "profile-samples")
    assert "REPLACE_ME" not in json.dumps(data)


def test_both_samples_answer_through_a_port_forward_to_one_runtime_pod(staged, kube):
    core = client.CoreV1Api(kube)
    pod = next(p for p in runtime_pods(kube) if p.startswith("modelmesh-serving-mlserver-1.x-"))
    forward = PortForward(core, NAMESPACE)
    x = np.random.default_rng(5).random((1, 784), dtype=np.float32)
    try:
        with grpc.insecure_channel(forward.address(pod, 8033)) as channel:
            stub = v2_grpc.GRPCInferenceServiceStub(channel)
            answers = {}
            for name, tensor in (("sklearn-mnist", "predict"), ("onnx-mnist", "input")):
                response = stub.ModelInfer(v2_pb.ModelInferRequest(model_name=name, inputs=[
                    v2_pb.ModelInferRequest.InferInputTensor(name=tensor, datatype="FP32", shape=[1, 784],
                                                             contents=v2_pb.InferTensorContents(
                                                                 fp32_contents=x.ravel()))]), timeout=60)
                answers[name] = (response.outputs[0].datatype, list(response.outputs[0].shape))
    finally:
        forward.close()
    # The SVM answers a digit; the ONNX model (on the triton-gpu pod, reached through this one) ten scores.
    assert answers == {"sklearn-mnist": ("INT64", [1, 1]), "onnx-mnist": ("FP32", [1, 10])}


def test_applying_the_profile_again_leaves_the_samples_unchanged_and_staging_again_restarts_nothing(
        staged, cluster, cluster_env, kube):
    run = mmgitops("apply", "overlays/conformance", "--kubeconfig", cluster["kubeconfig"], env=cluster_env)
    assert run.returncode == 0, run.stdout[-3000:]
    lines = set(run.stdout.splitlines())
    assert {f"InferenceService/{name} unchanged" for name in SAMPLES} <= lines, run.stdout
    assert "Secret/storage-config configured" in lines  # the placeholder is back: the profile owns it
    pods = runtime_pods(kube)
    messages: list[str] = []
    assert sorted(profile_storage.stage(ROOT, cluster, messages.append)) == sorted(SAMPLES)
    assert not any("re-creating" in m or "restarting" in m for m in messages), messages
    assert runtime_pods(kube) == pods
    assert {name: states(kube)[name][0] for name in SAMPLES} == dict.fromkeys(SAMPLES, "Loaded")
