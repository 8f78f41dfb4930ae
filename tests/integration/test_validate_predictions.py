"""What `mmgitops validate` predicts of an InferenceService, seen on the local cluster's real modelmesh-serving
controller: the bad case shows the rule's symptom, its good twin does not, and validate flags the one and not the
other (docs/validation.md, ModelMesh rules). mm-isvc-runtime-match's proof is in test_suite_in_cluster_mode.py
(an unsupported format)."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import pytest
import tenacity
import yaml
from kubernetes import client, config
from mmgitops.conformance.cluster import objects

from tests.integration.conftest import CONTROLLER_ACTS_WITHIN_S, flagged, mmgitops, predicted

pytestmark = pytest.mark.integration
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
NAMESPACE = "modelmesh-models"  # the conformance profile's, with its runtimes and storage-config


def isvc(name: str, model: dict) -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}},
            "spec": {"predictor": {"model": model}}}


@pytest.fixture(scope="module")
def api(cluster: dict, demo: dict) -> client.CustomObjectsApi:
    # `demo` installed the conformance profile: its runtimes and storage-config are in NAMESPACE.
    return client.CustomObjectsApi(config.new_client_from_config(config_file=cluster["kubeconfig"]))


def status_of(api: client.CustomObjectsApi, name: str) -> dict:
    return api.get_namespaced_custom_object(*ISVC[:2], NAMESPACE, ISVC[2], name).get("status") or {}


def test_a_storage_uri_scheme_the_controller_does_not_read_is_predicted_and_never_gets_a_status(
        api, cluster_env, tmp_path):
    bad = isvc("predict-hf", {"modelFormat": {"name": "sklearn"}, "storageUri": "hf://team/mnist"})
    twin = isvc("predict-s3", {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/sklearn/m.joblib",
                               "storage": {"key": "localMinIO"}})
    prediction = predicted(tmp_path, cluster_env, bad, twin)
    assert "mm-isvc-silent-spec" in prediction["predict-hf"] and "mm-isvc-silent-spec" not in prediction["predict-s3"]
    for body in (bad, twin):
        api.create_namespaced_custom_object(*ISVC[:2], NAMESPACE, ISVC[2], body)
    try:
        # The twin gets a status from the controller's first reconcile; the bad one never does
        # (inferenceservice_registry.go processInferenceServiceStorage fails before predictor_controller.go writes).
        tenacity.Retrying(stop=tenacity.stop_after_delay(CONTROLLER_ACTS_WITHIN_S), wait=tenacity.wait_fixed(1),
                          retry=tenacity.retry_if_result(lambda s: not s))(lambda: status_of(api, "predict-s3"))
        time.sleep(10)  # ten more seconds of retries (the controller requeues with backoff from 5 ms)
        assert status_of(api, "predict-hf") == {}
    finally:
        for body in (bad, twin):
            api.delete_namespaced_custom_object(*ISVC[:2], NAMESPACE, ISVC[2], body["metadata"]["name"])


def test_validate_against_the_cluster_reads_its_runtimes_and_storage_and_prints_no_secret_value(
        cluster, cluster_env, api, tmp_path):
    served = isvc("sklearn-elsewhere", {"modelFormat": {"name": "sklearn"},
                                        "storage": {"key": "localMinIO", "path": "sklearn/mnist-svm.joblib"}})
    unserved = isvc("pmml-elsewhere", {"modelFormat": {"name": "pmml"}, "storage": {"key": "localMinIO", "path": "m"}})
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "isvcs.yaml").write_text(yaml.safe_dump_all([served, unserved]), encoding="utf-8")
    alone = mmgitops("validate", str(tmp_path / "team"), env=cluster_env, timeout=300)
    # The repository of InferenceServices alone defines no runtime: a warning, not a verdict.
    assert "InferenceService/sklearn-elsewhere: spec.predictor.model.modelFormat.name: warning: " in alone.stdout
    checked = mmgitops("validate", str(tmp_path / "team"), "--cluster", "--kubeconfig", cluster["kubeconfig"],
                       env=cluster_env, timeout=300)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = [line for line in checked.stdout.splitlines() if "[mm-" in line]
    assert [line.split(": ")[1] for line in lines] == ["InferenceService/pmml-elsewhere"], lines
    assert lines[0].endswith("[mm-isvc-runtime-match]") and ": warning: " not in lines[0]
    # The cluster's storage-config was read (its key localMinIO resolved both), and none of its values printed.
    secret = client.CoreV1Api(api.api_client).read_namespaced_secret("storage-config", NAMESPACE)
    values = {str(v) for entry in secret.data.values() for v in json.loads(base64.b64decode(entry)).values()}
    assert not [v for v in values if len(v) > 3 and v in checked.stdout + checked.stderr]


# Runtimes the controller gives no Deployment. Each case is (rule, what breaks it) in a namespace of its own; its twin,
# the same objects unbroken, gets modelmesh-serving-<runtime> (servingruntime_controller.go Reconcile).
def runtime_case(case: str, twin: bool) -> list[dict]:
    ns = f"predict-{case}-{'good' if twin else 'bad'}"
    runtime = objects.read_template("cpu")
    runtime["metadata"] = {"name": "mlserver-1.x", "namespace": ns}
    labels = {"modelmesh-enabled": "true"}
    entries = {"localMinIO": json.dumps({"type": "s3", "access_key_id": "k", "secret_access_key": "s", "region": "r",
                                         "endpoint_url": "http://127.0.0.1:1", "bucket": "b"})}
    if not twin and case == "namespace":
        labels = {"modelmesh-enabled": "yes"}  # mm-namespace-ready: exactly "true", utils.go modelMeshEnabled
    if not twin and case == "entry":
        entries["public"] = json.dumps({"type": "http", "url": "https://example.com/m", "headers": {"a": "b"}})
    if not twin and case == "name":
        runtime["metadata"]["name"] = "mlserver-1-x-for-the-scikit-learn-models-of-team-a"  # 50 characters
    if not twin and case == "adapter":
        runtime["spec"]["containers"][0]["name"] = "server"  # no container named builtInAdapter.serverType
    if not twin and case == "endpoint":
        runtime["spec"]["grpcEndpoint"] = "unix:/tmp/mmesh/grpc.sock"  # the built-in adapter needs port:N
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "storage-config", "namespace": ns},
             "stringData": entries}, runtime]


RUNTIME_CASES = {"namespace": "mm-namespace-ready", "entry": "mm-storage-entry-shape",
                 "name": "mm-runtime-name-length", "adapter": "mm-runtime-adapter-contract",
                 "endpoint": "mm-runtime-endpoints"}


@pytest.mark.parametrize("case", sorted(RUNTIME_CASES))
def test_a_runtime_the_controller_gives_no_deployment_is_predicted(case, cluster, cluster_env, api, tmp_path):
    bad, twin = runtime_case(case, twin=False), runtime_case(case, twin=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "twin").mkdir()
    assert RUNTIME_CASES[case] in flagged(cluster_env, tmp_path / "bad", bad)
    assert flagged(cluster_env, tmp_path / "twin", twin) == set()
    kube = config.new_client_from_config(config_file=cluster["kubeconfig"])
    try:
        for namespace, secret, runtime in (bad, twin):
            client.CoreV1Api(kube).create_namespace(namespace)
            client.CoreV1Api(kube).create_namespaced_secret(secret["metadata"]["namespace"], secret)
            client.CustomObjectsApi(kube).create_namespaced_custom_object(
                "serving.kserve.io", "v1alpha1", runtime["metadata"]["namespace"], "servingruntimes", runtime)
        apps = client.AppsV1Api(kube)

        def deployments(docs: list[dict]) -> list[str]:
            return [d.metadata.name for d in apps.list_namespaced_deployment(docs[0]["metadata"]["name"]).items]

        tenacity.Retrying(stop=tenacity.stop_after_delay(CONTROLLER_ACTS_WITHIN_S), wait=tenacity.wait_fixed(1),
                          retry=tenacity.retry_if_result(lambda found: not found))(lambda: deployments(twin))
        time.sleep(10)  # the controller has long reconciled the bad runtime too, and requeues its errors
        assert deployments(twin) == ["modelmesh-serving-mlserver-1.x"]
        assert deployments(bad) == []
    finally:
        for docs in (bad, twin):
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(kube).delete_namespace(docs[0]["metadata"]["name"])
