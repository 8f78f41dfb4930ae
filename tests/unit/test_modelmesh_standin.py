"""The ModelMesh controller stand-in, checked against what modelmesh-serving (rhoai-2.25) does: what it registers
(predictor_controller.go setVModel, model_type_labels.go, inferenceservice_registry.go), what its runtime pods
carry (GetServingRuntimeLabelSet, DEFAULT_MODELSIZE, one mesh per namespace) and the status it writes
(updatePredictorStatusFromVModel), validated against the pinned InferenceService CRD."""

from __future__ import annotations

import json
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from mmgitops.gitops.schemas import catalog
from mmgitops.lab.mesh import constraints
from mmgitops.lab.standins.modelmesh import config, controller, deployments, fleet, meshcalls, predictor, status
from mmgitops.lab.standins.modelmesh.status import CopyInfo, ModelView, VModelView
from mmgitops.modelmesh import defaults, stubs

mesh_pb, mesh_grpc = stubs.mesh()
pytestmark = pytest.mark.unit
NS = "models"
ROOT = Path(__file__).resolve().parents[2]
MLSERVER_TEMPLATE = ROOT / "components/modelmesh/serving-runtimes/mlserver-cpu/servingruntime.yaml"
NOW = 1_700_000_000.0
MID = "m__isvc-0123456789"


# ---- 1. registration ------------------------------------------------------------------------------------------
def isvc(model: dict | None = None, annotations: dict | None = None, **predictor_fields) -> dict:
    spec = {"model": model} if model is not None else {}
    return {"metadata": {"name": "m", "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh",
                                                      **(annotations or {})}},
            "spec": {"predictor": {**spec, **predictor_fields}}}


def model(fmt: str = "sklearn", **extra) -> dict:
    return {"modelFormat": {"name": fmt, **({"version": extra.pop("version")} if "version" in extra else {})},
            "storage": extra.pop("storage", {"key": "local-s3", "path": "models/m", "parameters": {"bucket": "b"}}),
            **extra}


@pytest.mark.parametrize(("spec", "label"), [
    (model(), "mt:sklearn"),
    (model(version="0"), "mt:sklearn:0"),
    (model(protocolVersion="grpc-v2"), "mt:sklearn|pv:grpc-v2"),
    (model(version="8.3", protocolVersion="v2"), "mt:sklearn:8.3|pv:v2"),
    (model(runtime="conf-cpu", protocolVersion="grpc-v2"), "rt:conf-cpu"),  # a named runtime constrains alone
])
def test_the_model_type_is_get_predictor_type_label(spec, label):
    assert predictor.build(isvc(spec)).type_label() == label


def test_the_key_is_the_model_key_info_json_the_controller_marshals():
    found = predictor.build(isvc(model(version="1", storage={"key": "local-s3", "path": "models/m",
                                                             "parameters": {"bucket": "b", "a": "z"},
                                                             "schemaPath": "s/schema.json"})))
    assert found.path == "models/m"
    assert found.model_key() == ('{"storage_key":"local-s3","storage_params":{"a":"z","bucket":"b"},'
                                 '"model_type":{"name":"sklearn","version":"1"},"schema_path":"s/schema.json"}')


def test_a_storage_uri_gives_its_bucket_and_type_and_the_secret_key_annotation_names_the_storage():
    found = predictor.build(isvc({"modelFormat": {"name": "sklearn"}, "storageUri": "s3://bucket-1/dir/model"},
                                 annotations={"serving.kserve.io/secretKey": "s3-key"}))
    assert (found.path, json.loads(found.model_key())) == (
        "dir/model", {"storage_key": "s3-key", "storage_params": {"bucket": "bucket-1", "type": "s3"},
                      "model_type": {"name": "sklearn"}})


def test_no_storage_key_and_no_parameters_are_left_out_of_the_key():
    found = predictor.build(isvc(model(storage={"path": "p"})))
    assert found.model_key() == '{"model_type":{"name":"sklearn"}}'


def test_an_old_framework_predictor_takes_its_runtime_from_the_annotation():
    found = predictor.build(isvc(None, annotations={"serving.kserve.io/servingRuntime": "rt-a"},
                                 sklearn={"storageUri": "s3://b/p"}))
    assert (found.model_format, found.type_label()) == ("sklearn", "rt:rt-a")


@pytest.mark.parametrize(("body", "message"), [
    (isvc({"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/p", "storage": {"path": "p"}}),
     "cannot have both the storageUri and the storage.path"),
    (isvc({"modelFormat": {"name": "sklearn"}}), "must have either the storageUri or the storage.path"),
    (isvc({"modelFormat": {"name": "sklearn"}, "storageUri": "ftp://h/p"}), "unsupported storageUri scheme ftp"),
    (isvc(model(), sklearn={}), "cannot have both the model spec and a framework spec (sklearn)"),
])
def test_a_spec_the_controller_rejects_gives_one_line(body, message):
    with pytest.raises(ValueError) as error:
        predictor.build(body)
    assert message in str(error.value) and "\n" not in str(error.value)


class Recorder(mesh_grpc.ModelMeshServicer):  # type: ignore[name-defined, misc]
    def __init__(self) -> None:
        self.requests: list = []

    def setVModel(self, request, context):
        self.requests.append(request)
        return mesh_pb.VModelStatusInfo(
            status=mesh_pb.VModelStatusInfo.DEFINED, activeModelId=request.targetModelId,
            targetModelId=request.targetModelId, owner=request.owner,
            activeModelStatus=mesh_pb.ModelStatusInfo(status=mesh_pb.ModelStatusInfo.LOADING))


def test_set_vmodel_sends_what_the_controller_sends_for_an_inference_service():
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    mesh_grpc.add_ModelMeshServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            view = meshcalls.set_vmodel(channel, predictor.build(isvc(model(runtime="conf-cpu"))), MID, load_now=True)
    finally:
        server.stop(0)
    sent = recorder.requests[0]
    assert (sent.vModelId, sent.owner, sent.targetModelId, sent.autoDeleteTargetModel, sent.loadNow, sent.sync) == (
        "m", "isvc", MID, True, True, False)
    assert (sent.modelInfo.type, sent.modelInfo.path) == ("rt:conf-cpu", "models/m")
    assert json.loads(sent.modelInfo.key)["storage_params"] == {"bucket": "b"}
    assert (view.status, view.active.status, view.target) == ("DEFINED", "LOADING", None)


# ---- 2. runtime pods: labels, default model size, one mesh per namespace --------------------------------------
def template() -> dict:
    return next(d for d in yaml.safe_load_all(MLSERVER_TEMPLATE.read_text()) if d.get("kind") == "ServingRuntime")


def test_mlserver_pods_carry_the_labels_the_controller_gives_them():
    # controllers/testdata/servingruntime_controller.golden (REST proxy off there) for mlserver-1.x:
    golden = "mt:lightgbm,mt:lightgbm:3,mt:sklearn,mt:sklearn:0,mt:xgboost,mt:xgboost:1,pv:grpc-v2,rt:mlserver-1.x"
    assert ",".join(config.runtime_labels(template(), rest_proxy=False)) == golden
    assert config.runtime_labels(template(), rest_proxy=True) == constraints.runtime_labels()  # + pv:v2


def test_only_auto_selectable_formats_become_labels():
    labels = config.runtime_labels(runtime("cpu", ("sklearn", True), ("xgboost", False)), rest_proxy=True)
    assert labels == ("mt:sklearn", "rt:cpu")  # no protocolVersions: no pv: labels


def test_the_default_model_size_comes_from_built_in_adapter_env():
    body = runtime("cpu", ("sklearn", True))
    assert config.default_model_size(body) == 1_000_000
    body["spec"]["builtInAdapter"]["env"] = [{"name": "DEFAULT_MODELSIZE", "value": "8192"}]
    assert config.runtime_settings(body, config.ServingConfig()).default_model_size_bytes == 8192
    body["spec"]["builtInAdapter"]["env"] = [{"name": "DEFAULT_MODELSIZE", "value": "1MB"}]
    with pytest.raises(ValueError, match="DEFAULT_MODELSIZE: '1MB' is not a whole number of bytes"):
        config.default_model_size(body)


def test_every_runtime_of_a_namespace_shares_one_registry_and_one_constraint_table():
    assert config.registry_prefix("a") == "modelmesh-serving/mm_ns/a/mm/modelmesh-serving/"
    assert config.registry_prefix("a") != config.registry_prefix("b")
    table = config.namespace_constraints({"cpu": ("mt:sklearn", "pv:grpc-v2", "rt:cpu"), "gpu": ("mt:onnx", "rt:gpu")})
    assert {"rt:cpu", "rt:gpu", "mt:sklearn", "mt:onnx", "mt:sklearn|pv:grpc-v2", "_default"} == set(table)
    assert table["_default"] == ("_no_runtime",)


def test_a_pod_instance_gets_its_runtime_labels_default_size_and_the_namespace_prefix(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(fleet.control, "start_instance", lambda cfg, work: started.append(cfg) or {"pid": 1})
    monkeypatch.setattr(fleet.Fleet, "_ensure_etcd", lambda self: "http://127.0.0.1:2379")
    monkeypatch.setattr(fleet.Fleet, "_warmup_model", lambda self: "")
    body = runtime("cpu", ("sklearn", True))
    body["spec"]["builtInAdapter"]["env"] = [{"name": "DEFAULT_MODELSIZE", "value": "8192"}]
    settings = config.runtime_settings(body, config.ServingConfig())
    instance = fleet.Fleet(tmp_path).start(NS, "modelmesh-serving-cpu-abc", "cpu", "cpu-abc", settings, 1500,
                                           tmp_path / "storage")
    cfg = started[0]
    assert (cfg.labels, cfg.default_model_size_bytes, cfg.prefix) == (
        ["mt:sklearn", "rt:cpu"], 8192, config.registry_prefix(NS))
    assert instance.labels == ("mt:sklearn", "rt:cpu")


def test_only_multi_model_runtimes_that_are_not_disabled_get_pods():
    body = runtime("cpu", ("sklearn", True))
    assert config.serves_models(body)
    body["spec"]["disabled"] = True
    assert not config.serves_models(body)
    del body["spec"]["multiModel"]
    assert not config.serves_models({**body, "spec": {**body["spec"], "disabled": False}})


def test_a_runtime_is_in_use_when_it_has_every_label_of_a_predictor_type():
    cpu = config.runtime_labels(runtime("cpu", ("sklearn", True), ("xgboost", False)), rest_proxy=True)
    assert predictor.build(isvc(model())).supported_by(cpu)
    assert not predictor.build(isvc(model("xgboost"))).supported_by(cpu)  # not autoSelect: it must be named
    assert predictor.build(isvc(model("xgboost", runtime="cpu"))).supported_by(cpu)
    assert not predictor.build(isvc(model(protocolVersion="grpc-v2"))).supported_by(cpu)


# ---- 3. status -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def isvc_schema():
    _, validator = catalog.build().validator("serving.kserve.io", "v1beta1", "InferenceService")
    assert validator is not None, "the pinned KServe module has no InferenceService v1beta1 CRD"
    return validator


def errors(validator, found: dict) -> list[str]:
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": NS}, "spec": {"predictor": {"model": model()}}, "status": found}
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def one(state: str, copies=(), errs=()) -> ModelView:
    return ModelView(state, tuple(errs), tuple(copies))


def defined(active: ModelView) -> VModelView:
    return VModelView("DEFINED", MID, MID, active)


def computed(view: VModelView, before: status.PredictorStatus | None = None) -> dict:
    found = before or status.PredictorStatus()
    status.update_from_vmodel(found, view, status.endpoints(NS), NOW)
    return status.to_isvc(found, "2024-01-01T00:00:00Z")


NO_HOME = "There are no running instances that meet the label requirements of type "
FAILED_COPY = CopyInfo("pod-b", "LOADING_FAILED", 1_700_000_000_500)
VIEWS = {
    "loaded": defined(one("LOADED", [CopyInfo("pod-a", "UNKNOWN", 5)])),
    "loaded-dead-copy-lingers": defined(one("LOADED", [CopyInfo("pod-a", "UNKNOWN", 9),
                                                       CopyInfo("gone", "UNKNOWN", 5)])),
    "failed": defined(one("LOADING_FAILED", [FAILED_COPY], ["load of m failed: no such key"])),
    "standby": defined(one("NOT_LOADED")),
    "loading": defined(one("LOADING", [CopyInfo("pod-a", "UNKNOWN", 5)])),
    "no-runtime": defined(one("LOADING_FAILED", errs=[NO_HOME + "mt:pmml: [_no_runtime]"])),
    "runtime-unknown": defined(one("LOADING_FAILED", errs=[NO_HOME + "rt:nope: [_no_runtime]"])),
    "runtime-starting": defined(one("LOADING_FAILED", errs=[NO_HOME + "rt:gpu: [rt:gpu]"])),
    "transitioning": VModelView("TRANSITIONING", MID, "m__isvc-9999999999", one("LOADED", [CopyInfo("a", "UNKNOWN")]),
                                one("LOADING", [CopyInfo("b", "UNKNOWN")])),
}
BUILT = {name: computed(view) for name, view in VIEWS.items()}


@pytest.mark.parametrize("case", sorted(BUILT))
def test_every_status_the_standin_writes_is_valid_against_the_crd(isvc_schema, case):
    assert errors(isvc_schema, BUILT[case]) == []


def test_the_crd_schema_rejects_a_state_outside_its_enum(isvc_schema):
    bad = computed(VIEWS["loaded"])
    bad["modelStatus"]["states"]["activeModelState"] = "Ready"
    assert [e.split(":")[0] for e in errors(isvc_schema, bad)] == ["status.modelStatus.states.activeModelState"]


def test_a_loaded_model_counts_every_listed_copy_and_is_ready_with_urls():
    found = BUILT["loaded"]
    assert found["modelStatus"] == {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded"},
                                    "copies": {"failedCopies": 0, "totalCopies": 1}}
    assert {c["type"]: c["status"] for c in found["conditions"]} == {"PredictorReady": "True", "Ready": "True"}
    assert found["components"]["predictor"] == {"url": f"grpc://modelmesh-serving.{NS}:8033",
                                                "grpcUrl": f"grpc://modelmesh-serving.{NS}:8033",
                                                "restUrl": f"http://modelmesh-serving.{NS}:8008"}
    assert found["url"] == f"grpc://modelmesh-serving.{NS}:8033"


def test_a_dead_pods_copy_still_counts_in_total_copies_as_the_mesh_still_lists_it():
    assert BUILT["loaded-dead-copy-lingers"]["modelStatus"]["copies"] == {"failedCopies": 0, "totalCopies": 2}


def test_a_failed_load_names_the_copy_its_time_and_the_error_and_is_not_ready():
    found = BUILT["failed"]
    assert found["modelStatus"]["lastFailureInfo"] == {
        "location": "pod-b", "reason": "ModelLoadFailed", "message": "load of m failed: no such key",
        "modelRevisionName": MID, "time": "2023-11-14T22:13:20Z"}
    assert found["modelStatus"]["copies"] == {"failedCopies": 1, "totalCopies": 1}
    assert found["modelStatus"]["states"]["activeModelState"] == "FailedToLoad"
    assert {c["type"]: c["status"] for c in found["conditions"]} == {"PredictorReady": "False", "Ready": "False"}
    assert "components" not in found and "url" not in found


def test_standby_and_loading_stay_ready_and_standby_lists_no_copy():
    assert BUILT["standby"]["modelStatus"] == {"transitionStatus": "UpToDate",
                                               "states": {"activeModelState": "Standby"},
                                               "copies": {"failedCopies": 0}}
    for case in ("standby", "loading"):
        assert {c["type"]: c["status"] for c in BUILT[case]["conditions"]}["Ready"] == "True"


@pytest.mark.parametrize(("case", "state", "reason", "message"), [
    ("no-runtime", "FailedToLoad", "NoSupportingRuntime",
     "No ServingRuntime supports specified model type and/or protocol"),
    ("runtime-unknown", "FailedToLoad", "RuntimeNotRecognized", "Specified runtime name not recognized"),
    ("runtime-starting", "Loading", "RuntimeUnhealthy", "Waiting for supporting runtime Pod to become available"),
])
def test_a_model_with_nowhere_to_load_is_decoded_from_the_mesh_message(case, state, reason, message):
    found = BUILT[case]["modelStatus"]
    assert (found["states"]["activeModelState"], found["lastFailureInfo"]["reason"],
            found["lastFailureInfo"]["message"]) == (state, reason, message)
    assert found["lastFailureInfo"]["time"] == "2023-11-14T22:13:20Z"  # now: not a copy's failure
    assert found["copies"] == {"failedCopies": 0}  # no copy counted for these reasons
    assert {c["type"]: c["status"] for c in BUILT[case]["conditions"]}["Ready"] == "False"


def test_a_new_target_shows_both_states_and_counts_both_models_copies():
    found = BUILT["transitioning"]["modelStatus"]
    assert (found["transitionStatus"], found["states"], found["copies"]) == (
        "InProgress", {"activeModelState": "Loaded", "targetModelState": "Loading"},
        {"failedCopies": 0, "totalCopies": 2})


def test_a_blocked_transition_whose_target_loads_again_is_in_progress():
    view = VModelView("TRANSITION_FAILED", MID, "m__isvc-9999999999", one("LOADED"), one("LOADING"))
    assert computed(view)["modelStatus"]["transitionStatus"] == "InProgress"
    view = VModelView("TRANSITION_FAILED", MID, "m__isvc-9999999999", one("LOADED"),
                      one("LOADING_FAILED", [FAILED_COPY], ["boom"]))
    assert computed(view)["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"


def test_no_pod_behind_the_service_waits_for_a_runtime_and_keeps_the_rest():
    found = status.from_isvc({})
    status.no_addresses(found, MID)
    built = status.to_isvc(found)
    assert built["modelStatus"]["lastFailureInfo"] == {"reason": "RuntimeUnhealthy", "modelRevisionName": MID,
                                                       "message": "Waiting for runtime Pod to become available"}
    assert built["modelStatus"]["states"] == {"activeModelState": "Pending"}
    assert status.load_now(found)


def test_a_runtime_wait_keeps_its_failure_while_the_model_loads_then_clears_it():
    waiting = status.from_isvc(computed(VIEWS["runtime-starting"]))
    assert waiting.waiting_for_runtime() and status.load_now(waiting)
    after = computed(defined(one("LOADING")), waiting)
    assert after["modelStatus"]["lastFailureInfo"]["reason"] == "RuntimeUnhealthy"
    assert computed(VIEWS["loaded"], status.from_isvc(after))["modelStatus"].get("lastFailureInfo") is None


def test_a_failure_not_tied_to_a_copy_keeps_its_time_for_20_s():
    first = status.from_isvc(computed(VIEWS["no-runtime"]))
    status.update_from_vmodel(first, VIEWS["no-runtime"], status.endpoints(NS), NOW + 5)
    assert first.failure is not None and first.failure.time == "2023-11-14T22:13:20Z"
    status.update_from_vmodel(first, VIEWS["no-runtime"], status.endpoints(NS), NOW + 25)
    assert first.failure.time == "2023-11-14T22:13:45Z"


def test_the_status_round_trips_through_the_inference_service():
    for case, built in BUILT.items():
        assert status.same(status.to_isvc(status.from_isvc(built)), built), case


def test_the_written_patch_removes_what_the_new_status_leaves_out():
    patch = status.replacing(BUILT["loaded"], BUILT["failed"])
    assert patch["components"] is None and patch["url"] is None
    assert patch["modelStatus"]["lastFailureInfo"]["location"] == "pod-b"
    assert status.replacing(BUILT["failed"], BUILT["loaded"])["modelStatus"]["lastFailureInfo"] is None


def test_unchanged_status_but_for_timestamps_is_the_same():
    again = computed(VIEWS["failed"])
    again["conditions"][0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    again["modelStatus"]["lastFailureInfo"]["time"] = "2000-01-01T00:00:00Z"
    assert status.same(BUILT["failed"], again)
    assert not status.same(BUILT["failed"], BUILT["loaded"])


def test_a_load_with_nowhere_to_go_fails_at_once_in_the_reply():
    table = config.namespace_constraints({"cpu": ("mt:sklearn", "rt:cpu"), "gpu": ("mt:onnx", "rt:gpu")})
    cpu_only = [("mt:sklearn", "rt:cpu")]
    assert meshcalls.no_home("rt:cpu", table, cpu_only) == ""
    assert meshcalls.no_home("rt:gpu", table, cpu_only) == NO_HOME + "rt:gpu: [rt:gpu]"
    assert meshcalls.no_home("mt:pmml", table, cpu_only) == NO_HOME + "mt:pmml: [_no_runtime]"
    checked = meshcalls.with_load_check(defined(one("NOT_LOADED")), NO_HOME + "rt:gpu: [rt:gpu]")
    assert computed(checked)["modelStatus"]["states"]["activeModelState"] == "Loading"
    live = defined(one("LOADED", [CopyInfo("a", "UNKNOWN")]))
    assert meshcalls.with_load_check(live, NO_HOME + "rt:gpu: [rt:gpu]") == live


# ---- 4. reaching the pod -------------------------------------------------------------------------------------
def test_the_port_forward_and_the_annotation_carry_the_probe_port():
    instance = fleet.Instance(NS, "pod", "cpu", "pod", {"grpc": "127.0.0.1:1", "rest": "http://127.0.0.1:2",
                                                         "metrics": "http://127.0.0.1:3/metrics",
                                                         "probes": "http://127.0.0.1:4"})
    assert instance.endpoints() == {"8033": "127.0.0.1:1", "8008": "127.0.0.1:2", "2112": "127.0.0.1:3",
                                    "8089": "127.0.0.1:4"}
    body = controller.port_forward("pod", NS, "uid-1", instance.endpoints())
    assert {f["ports"][0]: (f["target"]["address"], f["target"]["port"]) for f in body["spec"]["forwards"]} == {
        2112: ("127.0.0.1", 3), 8008: ("127.0.0.1", 2), 8033: ("127.0.0.1", 1), 8089: ("127.0.0.1", 4)}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


# ---- configuration and Deployments ---------------------------------------------------------------------------
def test_the_churn_age_comes_from_custom_jvm_args_else_modelmesh_default():
    lowered = config.ServingConfig.parse(
        "internalModelMeshEnvVars:\n  - name: CUSTOM_JVM_ARGS\n    value: -Xmx1g -Dtas.min_churn_age_ms=1500\n")
    assert lowered.min_churn_age_ms(90_000) == 1500
    assert config.ServingConfig.parse("podsPerRuntime: 3\n").min_churn_age_ms(90_000) == 300_000
    assert config.ServingConfig.parse("").pods_per_runtime == 2
    assert not config.ServingConfig.parse("restProxy:\n  enabled: false\n").rest_proxy


def runtime(name: str, *formats: tuple[str, bool], replicas: int | None = None) -> dict:
    spec: dict = {"supportedModelFormats": [{"name": f, "autoSelect": auto} for f, auto in formats],
                  "multiModel": True,
                  "containers": [{"name": "mlserver", "resources": {"requests": {"memory": "1Gi"}}}],
                  "builtInAdapter": {"serverType": "mlserver", "memBufferBytes": 2**30 - 5 * 8192}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"metadata": {"name": name}, "spec": spec}


def test_runtime_settings_size_the_cache_and_the_replicas():
    serving = config.ServingConfig(pods_per_runtime=2)
    cpu = runtime("cpu", ("sklearn", True))
    assert config.runtime_settings(cpu, serving).capacity_bytes == 5 * 8192
    assert config.runtime_settings(cpu, serving).replicas == 2
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
    assert defaults.instance_id("modelmesh-serving-gpu-5d8f7c9b4-x7k2p") == "f7c9b4-x7k2p"
    assert defaults.instance_id("modelmesh-serving-mlserver-1.x-6b9f7d5c48-q2w8z") == "7d5c48-q2w8z"
    assert defaults.instance_id("short-pod") == "short-pod"


def test_an_unknown_engine_is_refused_in_one_line_before_anything_starts():
    from mmgitops.errors import ToolError
    from mmgitops.lab.cluster import cluster
    from mmgitops.lab.standins.modelmesh import engines

    with pytest.raises(ToolError, match=r"^--engine bogus: choose one of embedded, reference$"):
        cluster.up(lambda _text: None, "bogus")
    with pytest.raises(ValueError, match="unknown mesh engine 'bogus'"):
        engines.make_fleet("bogus", Path("/nonexistent"))
