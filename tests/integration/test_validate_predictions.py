"""What `mmgitops validate` predicts of an InferenceService, seen on the local cluster's real modelmesh-serving
controller: the bad case shows the rule's symptom, its good twin does not, and validate flags the one and not the
other (docs/validation.md, ModelMesh rules). mm-isvc-runtime-match's proof is in test_suite_in_cluster_mode.py
(an unsupported format)."""

from __future__ import annotations

import time

import pytest
import tenacity
from kubernetes import client, config

from tests.integration.conftest import predicted

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
        tenacity.Retrying(stop=tenacity.stop_after_delay(120), wait=tenacity.wait_fixed(1),
                          retry=tenacity.retry_if_result(lambda s: not s))(lambda: status_of(api, "predict-s3"))
        time.sleep(10)  # ten more seconds of retries (the controller requeues with backoff from 5 ms)
        assert status_of(api, "predict-hf") == {}
    finally:
        for body in (bad, twin):
            api.delete_namespaced_custom_object(*ISVC[:2], NAMESPACE, ISVC[2], body["metadata"]["name"])
