"""The ModelMesh controller stand-in: the status it writes is valid against the pinned InferenceService CRD, and
it reads model-serving-config and picks runtimes as the real controller does."""

from __future__ import annotations

import pytest
from mmgitops.schemas import catalog
from mmgitops.standins.modelmesh import config, deployments, status
from mmgitops.standins.modelmesh.status import Copy, MeshView

pytestmark = pytest.mark.unit
NS = "models"


@pytest.fixture(scope="module")
def isvc_schema():
    _, validator = catalog.build().validator("serving.kserve.io", "v1beta1", "InferenceService")
    assert validator is not None, "the pinned KServe module has no InferenceService v1beta1 CRD"
    return validator


def with_status(found: dict) -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": NS},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                             "storage": {"key": "s", "path": "p"}}}},
            "status": found}


def errors(validator, found: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(with_status(found))]


LOADED = MeshView("DEFINED", "m__isvc-0123456789", "LOADED", "LOADED", [Copy("abc-1", "LOADED")])
FAILED = MeshView("DEFINED", "m__isvc-0123456789", "LOADING_FAILED", "LOADING_FAILED",
                  [Copy("abc-1", "LOADING_FAILED")], ["load of m failed: no such key"])
STANDBY = MeshView("DEFINED", "m__isvc-0123456789", "NOT_LOADED", "NOT_LOADED")
MOVING = MeshView("TRANSITIONING", "m__isvc-9999999999", "LOADED", "LOADING", [Copy("abc-1", "LOADED")])

BUILT = {
    "loaded": status.from_mesh(NS, 1, LOADED, was_ready=False),
    "failed": status.from_mesh(NS, 1, FAILED, was_ready=False),
    "standby": status.from_mesh(NS, 1, STANDBY, was_ready=True),
    "transitioning": status.from_mesh(NS, 2, MOVING, was_ready=True),
    "pending": status.pending(NS, 1),
    "no-runtime": status.invalid(NS, 1, "NoSupportingRuntime", "No ServingRuntime supports specified model type"),
}


@pytest.mark.parametrize("case", sorted(BUILT))
def test_every_status_the_standin_writes_is_valid_against_the_crd(isvc_schema, case):
    assert errors(isvc_schema, BUILT[case]) == []


def test_the_crd_schema_rejects_a_state_outside_its_enum(isvc_schema):
    bad = status.from_mesh(NS, 1, LOADED, was_ready=False)
    bad["modelStatus"]["states"]["activeModelState"] = "Ready"
    assert [e.split(":")[0] for e in errors(isvc_schema, bad)] == ["status.modelStatus.states.activeModelState"]


def test_a_loaded_model_is_up_to_date_with_one_copy_and_ready():
    found = BUILT["loaded"]
    assert found["modelStatus"] == {"transitionStatus": "UpToDate",
                                    "states": {"activeModelState": "Loaded", "targetModelState": ""},
                                    "copies": {"failedCopies": 0, "totalCopies": 1}}
    assert {c["type"]: c["status"] for c in found["conditions"]} == {"PredictorReady": "True", "Ready": "True"}
    assert found["components"]["predictor"]["grpcUrl"] == f"grpc://modelmesh-serving.{NS}:8033"
    assert found["components"]["predictor"]["restUrl"] == f"http://modelmesh-serving.{NS}:8008"


def test_a_failed_load_names_model_load_failed_the_location_and_the_error():
    info = BUILT["failed"]["modelStatus"]["lastFailureInfo"]
    assert (BUILT["failed"]["modelStatus"]["states"]["activeModelState"], info["reason"], info["location"],
            info["message"], info["modelRevisionName"]) == (
        "FailedToLoad", "ModelLoadFailed", "abc-1", "load of m failed: no such key", "m__isvc-0123456789")


def test_a_standby_model_stays_ready():
    found = BUILT["standby"]
    assert found["modelStatus"]["states"]["activeModelState"] == "Standby"
    assert {c["type"]: c["status"] for c in found["conditions"]}["Ready"] == "True"


def test_a_new_target_loading_is_in_progress_with_both_states():
    assert BUILT["transitioning"]["modelStatus"]["transitionStatus"] == "InProgress"
    assert BUILT["transitioning"]["modelStatus"]["states"] == {"activeModelState": "Loaded",
                                                               "targetModelState": "Loading"}


def test_unchanged_status_but_for_timestamps_is_the_same():
    again = status.from_mesh(NS, 1, FAILED, was_ready=False)
    again["conditions"][0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    again["modelStatus"]["lastFailureInfo"]["time"] = "2000-01-01T00:00:00Z"
    assert status.same(BUILT["failed"], again)
    assert not status.same(BUILT["failed"], BUILT["loaded"])


def test_the_churn_age_comes_from_custom_jvm_args_else_modelmesh_default():
    lowered = config.ServingConfig.parse(
        "internalModelMeshEnvVars:\n  - name: CUSTOM_JVM_ARGS\n    value: -Xmx1g -Dtas.min_churn_age_ms=1500\n")
    assert lowered.min_churn_age_ms(90_000) == 1500
    assert config.ServingConfig.parse("podsPerRuntime: 3\n").min_churn_age_ms(90_000) == 300_000
    assert config.ServingConfig.parse("").pods_per_runtime == 2


def runtime(name: str, *formats: tuple[str, bool], replicas: int | None = None) -> dict:
    spec: dict = {"supportedModelFormats": [{"name": f, "autoSelect": auto} for f, auto in formats],
                  "containers": [{"name": "mlserver", "resources": {"requests": {"memory": "1Gi"}}}],
                  "builtInAdapter": {"serverType": "mlserver", "memBufferBytes": 2**30 - 5 * 8192}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"metadata": {"name": name}, "spec": spec}


def isvc(model_format: str, named: str | None = None) -> dict:
    model: dict = {"modelFormat": {"name": model_format}}
    if named:
        model["runtime"] = named
    return {"metadata": {"name": "m"}, "spec": {"predictor": {"model": model}}}


RUNTIMES = {"cpu": runtime("cpu", ("sklearn", True), ("xgboost", False)), "gpu": runtime("gpu", ("onnx", True))}


@pytest.mark.parametrize(("model", "chosen"), [
    (isvc("sklearn"), ("cpu", "")),
    (isvc("xgboost"), (None, "NoSupportingRuntime")),  # not autoSelect: it must be named
    (isvc("xgboost", "cpu"), ("cpu", "")),
    (isvc("onnx", "cpu"), (None, "NoSupportingRuntime")),
    (isvc("sklearn", "missing"), (None, "RuntimeNotRecognized")),
    (isvc("pmml"), (None, "NoSupportingRuntime")),
])
def test_runtime_selection_and_its_failure_reasons(model, chosen):
    assert config.choose_runtime(model, RUNTIMES)[:2] == chosen


def test_runtime_settings_size_the_cache_and_the_replicas():
    serving = config.ServingConfig(pods_per_runtime=2)
    assert config.runtime_settings(RUNTIMES["cpu"], serving).capacity_bytes == 5 * 8192
    assert config.runtime_settings(RUNTIMES["cpu"], serving).replicas == 2
    assert config.runtime_settings(runtime("one", ("onnx", True), replicas=1), serving).replicas == 1


def test_the_runtime_deployment_carries_modelmesh_names_containers_and_the_gpu():
    gpu = runtime("gpu", ("onnx", True))
    gpu["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "1"
    body = deployments.deployment(NS, gpu, 1, "triton")
    pod = body["spec"]["template"]["spec"]
    assert body["metadata"]["name"] == "modelmesh-serving-gpu"
    assert body["spec"]["template"]["metadata"]["labels"]["modelmesh-service"] == "modelmesh-serving"
    assert [c["name"] for c in pod["containers"]] == ["mm", "rest-proxy", "mlserver", "triton-adapter"]
    assert pod["containers"][2]["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_the_instance_id_is_the_last_12_characters_of_the_pod_name():
    assert deployments.instance_id("modelmesh-serving-gpu-5d8f7c9b4-x7k2p") == "f7c9b4-x7k2p"
    assert deployments.instance_id("modelmesh-serving-mlserver-1.x-6b9f7d5c48-q2w8z") == "7d5c48-q2w8z"
    assert deployments.instance_id("short-pod") == "short-pod"
