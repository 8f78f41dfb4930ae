"""The ModelMesh runtime rules (mm-runtime-*): each behaviour on a ServingRuntime built inline, with a good twin that
gives no finding. The base runtimes follow modelmesh-serving's config/runtimes (as the repository's do)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mmgitops.errors import Finding
from mmgitops.gitops.checks import rules
from mmgitops.gitops.checks.modelmesh import capacity, runtime, wiring  # noqa: F401  (registers the rules)
from mmgitops.gitops.checks.modelmesh.capacity import min_capacity
from mmgitops.gitops.checks.modelmesh.context import MeshContext
from mmgitops.gitops.objects import K8sObject

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MINE = {"mm-runtime-adapter-contract", "mm-runtime-capacity", "mm-runtime-endpoints", "mm-runtime-layout",
        "mm-runtime-name-length", "mm-runtime-scaling"}
BUFFER = 134217728


def mlserver() -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
        "metadata": {"name": "mlserver-1.x", "namespace": "models", "annotations": {"maxLoadingConcurrency": "2"}},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": "0", "autoSelect": True}],
            "protocolVersions": ["grpc-v2"], "multiModel": True,
            "grpcEndpoint": "port:8085", "grpcDataEndpoint": "port:8001",
            "containers": [{
                "name": "mlserver", "image": "docker.io/seldonio/mlserver:1.3.2",
                "env": [{"name": "MLSERVER_MODELS_DIR", "value": "/models/_mlserver_models/"},
                        {"name": "MLSERVER_GRPC_PORT", "value": "8001"},
                        {"name": "MLSERVER_HTTP_PORT", "value": "8002"},
                        {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
            }],
            "builtInAdapter": {"serverType": "mlserver", "runtimeManagementPort": 8001, "memBufferBytes": BUFFER,
                               "modelLoadingTimeoutMillis": 90000},
        },
    }


def triton() -> dict[str, Any]:
    body = mlserver()
    body["metadata"]["name"] = "triton-2.x"
    body["spec"]["containers"] = [{
        "name": "triton", "image": "nvcr.io/nvidia/tritonserver:23.05-py3", "command": ["/bin/sh"],
        "args": ["-c", 'mkdir -p /models/_triton_models; exec tritonserver "--model-repository=/models/_triton_models" '
                 '"--model-control-mode=explicit" "--strict-model-config=false"'],
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    }]
    body["spec"]["builtInAdapter"]["serverType"] = "triton"
    return body


def ovms_template() -> dict[str, Any]:
    """The ServingRuntime of RHOAI's OpenShift Template `ovms` (odh-model-controller
    config/runtimes/ovms-mm-template.yaml) as shipped, before the dashboard puts a size in."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
        "metadata": {"name": "ovms", "namespace": "models"},
        "spec": {
            "builtInAdapter": {"env": [{"name": "OVMS_FORCE_TARGET_DEVICE", "value": "AUTO"}],
                               "memBufferBytes": BUFFER, "modelLoadingTimeoutMillis": 90000,
                               "runtimeManagementPort": 8888, "serverType": "ovms"},
            "containers": [{
                "args": ["--port=8001", "--rest_port=8888", "--config_path=/models/model_config_list.json",
                         "--file_system_poll_wait_seconds=0", "--grpc_bind_address=0.0.0.0",
                         "--rest_bind_address=0.0.0.0"],
                "image": "quay.io/modh/openvino_model_server:2025.2.1", "name": "ovms",
                "resources": {"limits": {"cpu": "0", "memory": "0Gi"}, "requests": {"cpu": "0", "memory": "0Gi"}},
            }],
            "grpcDataEndpoint": "port:8001", "grpcEndpoint": "port:8085", "multiModel": True,
            "protocolVersions": ["grpc-v1"], "replicas": 1,
            "supportedModelFormats": [{"autoSelect": True, "name": "onnx", "version": "1"}],
        },
    }


def config_map(config: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "model-serving-config", "namespace": "x"},
            "data": {"config.yaml": config}}


def check(body: dict[str, Any], *others: dict[str, Any]) -> list[Finding]:
    obj = K8sObject(body, file="sr.yaml")
    mesh = MeshContext.from_objects([obj, *(K8sObject(o, file="other.yaml") for o in others)])
    ctx = rules.Context(catalog=None, namespaces={}, mesh=mesh)  # type: ignore[arg-type]  (unused here)
    return [f for r in rules.RULES if r.name in MINE for f in r.check(obj, ctx)]


def one(findings: list[Finding], rule: str, field: str, text: str, severity: str = "error") -> Finding:
    hits = [f for f in findings if f.rule == rule and f.field == field]
    assert len(hits) == 1, findings
    assert text in hits[0].message, hits[0].message
    assert hits[0].severity == severity
    return hits[0]


def server(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["containers"][0]


def env_without(body: dict[str, Any], name: str) -> dict[str, Any]:
    server(body)["env"] = [e for e in server(body)["env"] if e["name"] != name]
    return body


# --- good twins ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [mlserver, triton])
def test_a_runtime_laid_out_like_upstreams_gives_no_finding(make):
    assert check(make()) == []


@pytest.mark.parametrize("spec", [{"multiModel": False}, {"multiModel": None}, {"disabled": True}])
def test_a_runtime_modelmesh_builds_no_pods_for_is_not_checked(spec):
    body = mlserver()
    body["spec"].update({"grpcEndpoint": None, "containers": [], **spec})
    assert check(body) == []


def test_the_repositorys_runtimes_give_no_error():
    files = ROOT.glob("components/modelmesh/serving-runtimes/*/servingruntime.yaml")
    bodies = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in files]
    assert bodies
    assert [f for b in bodies for f in check(b) if f.severity == "error"] == []


# --- mm-runtime-adapter-contract --------------------------------------------------------------------------------

def test_server_type_outside_built_in_server_types_is_refused():
    narrowed = config_map("builtInServerTypes: [triton]\n")
    one(check(mlserver(), narrowed), "mm-runtime-adapter-contract", "spec.builtInAdapter.serverType",
        "'mlserver' is not one of model-serving-config's builtInServerTypes (triton)")
    assert check(triton(), narrowed) == []


def test_no_container_named_after_the_server_type_is_refused():
    body = mlserver()
    server(body)["name"] = "server"
    one(check(body), "mm-runtime-adapter-contract", "spec.containers", "no container is named 'mlserver'")


@pytest.mark.parametrize("name", ["mm", "rest-proxy", "puller", "mm-sidecar"])
def test_reserved_container_names_are_refused(name):
    body = mlserver()
    body["spec"]["containers"].append({"name": name, "image": "quay.io/me/helper:1"})
    one(check(body), "mm-runtime-adapter-contract", "spec.containers[1].name", "builds no Deployment")


@pytest.mark.parametrize("key", ["readinessProbe", "lifecycle"])
def test_readiness_probe_and_lifecycle_are_refused(key):
    body = mlserver()
    server(body)[key] = {"exec": {"command": ["true"]}}
    one(check(body), "mm-runtime-adapter-contract", f"spec.containers[0].{key}", f"{key} is ModelMesh's to manage")


def test_reserved_volume_mounts_and_volumes_are_refused():
    body = mlserver()
    server(body)["volumeMounts"] = [{"name": "tc-config", "mountPath": "/x"}]
    body["spec"]["volumes"] = [{"name": "models-dir", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
    findings = check(body)
    one(findings, "mm-runtime-adapter-contract", "spec.containers[0].volumeMounts[0].name", "'tc-config' is reserved")
    one(findings, "mm-runtime-adapter-contract", "spec.volumes[0].name", "'models-dir' is reserved")
    assert len(findings) == 2


@pytest.mark.parametrize(("port", "field", "text"), [
    ({"containerPort": 8080}, "containerPort", "port 8080 is reserved"),
    ({"containerPort": 11890}, "containerPort", "port 11890 is reserved"),
    ({"containerPort": 8002, "name": "grpc"}, "name", "port name 'grpc' is reserved"),
])
def test_reserved_ports_and_port_names_are_refused(port, field, text):
    body = mlserver()
    server(body)["ports"] = [port]
    one(check(body), "mm-runtime-adapter-contract", f"spec.containers[0].ports[0].{field}", text)


def test_a_declared_port_of_the_servers_own_gives_no_finding():
    body = mlserver()
    server(body)["ports"] = [{"containerPort": 8002, "name": "rest"}]
    assert check(body) == []


def test_a_container_named_like_the_adapter_makes_the_deployment_invalid():
    body = mlserver()
    body["spec"]["containers"].append({"name": "mlserver-adapter", "image": "quay.io/me/helper:1"})
    one(check(body), "mm-runtime-adapter-contract", "spec.containers[1].name", "rejects a Deployment with two")


def test_a_proxy_tls_volume_makes_the_deployment_invalid():
    body = mlserver()
    body["spec"]["volumes"] = [{"name": "proxy-tls", "emptyDir": {}}]
    one(check(body), "mm-runtime-adapter-contract", "spec.volumes[0].name", "already has the volume 'proxy-tls'")


def test_an_oauth_proxy_container_replaces_the_controllers_and_is_a_warning():
    body = mlserver()
    body["spec"]["containers"].append({"name": "oauth-proxy", "image": "quay.io/me/proxy:1"})
    one(check(body), "mm-runtime-adapter-contract", "spec.containers[1].name", "replaces its oauth-proxy",
        "warning")


def test_unset_runtime_management_port_leaves_the_adapter_unconnected():
    body = mlserver()
    del body["spec"]["builtInAdapter"]["runtimeManagementPort"]
    one(check(body), "mm-runtime-adapter-contract", "spec.builtInAdapter.runtimeManagementPort",
        "the controller sends RUNTIME_PORT=0")


@pytest.mark.parametrize(("timeout", "text"), [(None, "is unset: the controller sends LOADTIME_TIMEOUT=0"),
                                               (50, "is 50 ms")])
def test_a_loading_timeout_under_100_ms_stops_modelmesh(timeout, text):
    body = mlserver()
    body["spec"]["builtInAdapter"]["modelLoadingTimeoutMillis"] = timeout
    finding = one(check(body), "mm-runtime-adapter-contract", "spec.builtInAdapter.modelLoadingTimeoutMillis", text)
    assert "ModelMesh refuses to start (\"Loading timeout must be >= 100 ms\")" in finding.message


def test_loading_concurrency_annotation_below_one_stops_modelmesh():
    body = mlserver()
    body["metadata"]["annotations"]["maxLoadingConcurrency"] = "0"
    one(check(body), "mm-runtime-adapter-contract", "metadata.annotations.maxLoadingConcurrency",
        "Model loading concurrency must be >= 1")


def test_a_non_integer_loading_concurrency_annotation_exits_the_adapter():
    body = mlserver()
    body["metadata"]["annotations"]["maxLoadingConcurrency"] = "two"
    one(check(body), "mm-runtime-adapter-contract", "metadata.annotations.maxLoadingConcurrency",
        "maxLoadingConcurrency 'two' is not an integer: the adapter exits at start")


def test_a_non_integer_adapter_env_override_exits_the_adapter():
    body = mlserver()
    body["spec"]["builtInAdapter"]["env"] = [{"name": "CONTAINER_MEM_REQ_BYTES", "value": "16Gi"}]
    one(check(body), "mm-runtime-adapter-contract", "spec.builtInAdapter.env[0].value",
        "CONTAINER_MEM_REQ_BYTES '16Gi' is not an integer: the adapter exits at start")


@pytest.mark.parametrize("helper", [None, {"disabled": True}])
def test_a_stock_model_server_without_adapter_never_gets_ready(helper):
    body = mlserver()
    del body["spec"]["builtInAdapter"]
    body["spec"]["storageHelper"] = helper
    one(check(body), "mm-runtime-adapter-contract", "spec.containers[0].image",
        "mlserver does not speak ModelMesh's model-runtime SPI")


def test_a_custom_runtime_without_adapter_gives_no_finding():
    body = mlserver()
    del body["spec"]["builtInAdapter"]
    server(body).update(image="quay.io/me/spi-runtime:1.0", env=[])
    assert check(body) == []


# --- mm-runtime-name-length ------------------------------------------------------------------------------------

def test_a_runtime_name_over_45_characters_gets_no_deployment():
    body = mlserver()
    body["metadata"]["name"] = "r" * 46
    one(check(body), "mm-runtime-name-length", "metadata.name", f"name=modelmesh-serving-{'r' * 46} (64 > 63)")
    body["metadata"]["name"] = "r" * 45
    assert check(body) == []


# --- mm-runtime-endpoints --------------------------------------------------------------------------------------

def test_a_missing_grpc_endpoint_panics_the_controller():
    body = mlserver()
    del body["spec"]["grpcEndpoint"]
    one(check(body), "mm-runtime-endpoints", "spec.grpcEndpoint", "panics")


def test_the_adapters_grpc_endpoint_must_be_a_tcp_port():
    body = mlserver()
    body["spec"]["grpcEndpoint"] = "unix:/tmp/mm/adapter.sock"
    one(check(body), "mm-runtime-endpoints", "spec.grpcEndpoint", "Built-in adapter grpcEndpoint must be of the form")


@pytest.mark.parametrize(("endpoint", "findings"), [("8085", 1), ("port:8085", 0), ("unix:/var/run/rt.sock", 0)])
def test_the_pullers_grpc_endpoint_must_be_a_port_or_a_socket(endpoint, findings):
    body = mlserver()
    del body["spec"]["builtInAdapter"]
    server(body).update(image="quay.io/me/spi-runtime:1.0", env=[])
    body["spec"]["grpcEndpoint"] = endpoint
    if findings:
        one(check(body), "mm-runtime-endpoints", "spec.grpcEndpoint", "Invaid Endpoint")
    else:
        assert check(body) == []


@pytest.mark.parametrize("endpoint", ["8001", "localhost:8001"])
def test_a_data_endpoint_without_port_prefix_is_a_socket_path(endpoint):
    body = mlserver()
    body["spec"]["grpcDataEndpoint"] = endpoint
    one(check(body), "mm-runtime-endpoints", "spec.grpcDataEndpoint", 'write "port:8001"')


def test_a_data_endpoint_port_without_a_number_stops_modelmesh():
    body = mlserver()
    body["spec"]["grpcDataEndpoint"] = "port:grpc"
    one(check(body), "mm-runtime-endpoints", "spec.grpcDataEndpoint", "ModelMesh parses it as one and fails to start")


def test_a_missing_data_endpoint_sends_inference_to_the_adapter():
    body = mlserver()
    del body["spec"]["grpcDataEndpoint"]
    one(check(body), "mm-runtime-endpoints", "spec.grpcDataEndpoint", "inference to the mlserver-adapter")


def test_sockets_in_two_directories_are_refused():
    body = mlserver()
    del body["spec"]["builtInAdapter"]
    server(body).update(image="quay.io/me/spi-runtime:1.0", env=[])
    body["spec"].update(storageHelper={"disabled": True}, grpcEndpoint="unix:/run/a/mgmt.sock",
                        grpcDataEndpoint="unix:/run/b/data.sock")
    one(check(body), "mm-runtime-endpoints", "spec.grpcDataEndpoint", "Only one unix domain socket path is allowed")
    body["spec"]["grpcDataEndpoint"] = "unix:/run/a/data.sock"
    assert check(body) == []


def test_a_data_endpoint_on_a_pod_port_does_not_reach_the_server():
    body = mlserver()
    body["spec"]["grpcDataEndpoint"] = "port:8033"
    one(check(body), "mm-runtime-endpoints", "spec.grpcDataEndpoint", "port 8033 is ModelMesh's gRPC port")


def test_an_adapter_endpoint_on_a_pod_port_fails_to_bind():
    body = mlserver()
    body["spec"]["grpcEndpoint"] = "port:8080"
    one(check(body), "mm-runtime-endpoints", "spec.grpcEndpoint", "port 8080 is ModelMesh's LiteLinks port")


# --- mm-runtime-capacity ---------------------------------------------------------------------------------------

def test_rhoai_ovms_template_as_shipped_stops_modelmesh():
    finding = one(check(ovms_template()), "mm-runtime-capacity", "spec.containers[0].resources.requests.memory",
                  "model capacity is -128 MiB")
    assert "Reported model capacity ... too small" in finding.message
    assert check(ovms_template()) == [finding]


def test_a_server_without_memory_stops_modelmesh():
    body = mlserver()
    del server(body)["resources"]
    one(check(body), "mm-runtime-capacity", "spec.containers[0].resources", "has no memory request or limit")


def test_a_memory_limit_alone_is_the_request():
    body = mlserver()
    del server(body)["resources"]["requests"]["memory"]
    assert check(body) == []


def test_a_capacity_below_modelmeshs_minimum_stops_modelmesh():
    body = mlserver()
    least = min_capacity(1_000_000)
    assert least == 10 * 123 * 8192  # ten default models of 1,000,000 bytes, in whole 8 KiB units
    server(body)["resources"] = {"requests": {"memory": str(BUFFER + least - 1)}}
    one(check(body), "mm-runtime-capacity", "spec.containers[0].resources.requests.memory",
        "below ModelMesh's minimum of 9.609 MiB")
    server(body)["resources"] = {"requests": {"memory": str(BUFFER + least)}}
    assert check(body) == []


def test_a_default_model_size_override_sets_the_minimum():
    body = mlserver()
    body["spec"]["builtInAdapter"]["env"] = [{"name": "DEFAULT_MODELSIZE", "value": "8192"}]
    server(body)["resources"] = {"requests": {"memory": str(BUFFER + 10 * 8192)}}
    assert check(body) == []


def test_a_container_mem_req_bytes_override_replaces_the_request():
    body = ovms_template()
    body["spec"]["builtInAdapter"]["env"].append({"name": "CONTAINER_MEM_REQ_BYTES", "value": "1073741824"})
    assert check(body) == []
    body["spec"]["builtInAdapter"]["env"][-1]["value"] = "1000"
    one(check(body), "mm-runtime-capacity", "spec.builtInAdapter.env[1].value", "(CONTAINER_MEM_REQ_BYTES 1000 B")


def test_an_unset_mem_buffer_is_a_warning():
    body = mlserver()
    del body["spec"]["builtInAdapter"]["memBufferBytes"]
    one(check(body), "mm-runtime-capacity", "spec.builtInAdapter.memBufferBytes",
        "the controller sends MEM_BUFFER_BYTES=0", "warning")


def test_a_gpu_without_a_capacity_override_is_a_warning():
    body = triton()
    server(body)["resources"]["limits"]["nvidia.com/gpu"] = "1"
    one(check(body), "mm-runtime-capacity", "spec.containers[0].resources",
        "fill 3.875 GiB per pod, whatever the GPU holds", "warning")
    body["spec"]["builtInAdapter"]["env"] = [{"name": "CONTAINER_MEM_REQ_BYTES", "value": str(5 * 2**30)}]
    assert check(body) == []


def test_a_cache_larger_than_the_models_emptydir_is_a_warning():
    body = triton()
    body["spec"]["builtInAdapter"]["env"] = [{"name": "CONTAINER_MEM_REQ_BYTES", "value": str(64 * 2**30)}]
    one(check(body), "mm-runtime-capacity", "spec.builtInAdapter.env[0].value",
        "more than the /models emptyDir's sizeLimit 6 GiB", "warning")


# --- mm-runtime-layout -----------------------------------------------------------------------------------------

def test_triton_outside_the_adapters_model_repository_fails_every_load():
    body = triton()
    server(body)["args"][1] = server(body)["args"][1].replace("/models/_triton_models\"", "/models\"")
    one(check(body), "mm-runtime-layout", "spec.containers[0].args", "--model-repository is /models, while")


def test_triton_without_explicit_model_control_fails_every_load():
    body = triton()
    server(body)["args"][1] = server(body)["args"][1].replace('"--model-control-mode=explicit"', "")
    one(check(body), "mm-runtime-layout", "spec.containers[0].args", "--model-control-mode is not given (none)")


def test_triton_on_its_images_default_command_is_an_error():
    body = triton()
    del server(body)["command"], server(body)["args"]
    one(check(body), "mm-runtime-layout", "spec.containers[0].command", "runs its image's default command")


def test_triton_grpc_port_must_be_the_management_and_data_port():
    body = triton()
    server(body)["args"][1] += " --grpc-port=9001"
    findings = check(body)
    one(findings, "mm-runtime-layout", "spec.builtInAdapter.runtimeManagementPort",
        "runtimeManagementPort 8001 is not triton's gRPC port (--grpc-port) 9001")
    one(findings, "mm-runtime-layout", "spec.grpcDataEndpoint", "port 8001 is not triton's gRPC port")


@pytest.mark.parametrize(("value", "text"), [(None, "is unset (the image serves /mnt/models)"),
                                             ("/mnt/models", "is /mnt/models")])
def test_mlserver_serving_another_directory_fails_every_load(value, text):
    body = env_without(mlserver(), "MLSERVER_MODELS_DIR")
    if value:
        server(body)["env"].append({"name": "MLSERVER_MODELS_DIR", "value": value})
    field = "spec.containers[0].env" + ("[3].value" if value else "")
    one(check(body), "mm-runtime-layout", field, "while the mlserver adapter writes models under")


def test_mlservers_default_grpc_port_is_not_the_management_port():
    body = env_without(mlserver(), "MLSERVER_GRPC_PORT")
    one(check(body), "mm-runtime-layout", "spec.builtInAdapter.runtimeManagementPort",
        "is not mlserver's gRPC port (MLSERVER_GRPC_PORT) 8081")


def test_mlservers_default_http_port_collides_with_litelinks():
    body = env_without(mlserver(), "MLSERVER_HTTP_PORT")
    one(check(body), "mm-runtime-layout", "spec.containers[0].env",
        "HTTP port (MLSERVER_HTTP_PORT) 8080 is also ModelMesh's LiteLinks port")


@pytest.mark.parametrize(("old", "new", "field", "text"), [
    ("--config_path=/models/model_config_list.json", "--config_path=/config.json", "spec.containers[0].args",
     "--config_path is /config.json"),
    ("--rest_port=8888", "--log_level=INFO", "spec.containers[0].args", "--rest_port is not given"),
    ("--rest_port=8888", "--rest_port=9999", "spec.builtInAdapter.runtimeManagementPort",
     "runtimeManagementPort 8888 is not ovms's REST port (--rest_port) 9999"),
])
def test_ovms_must_read_the_adapters_config_and_serve_rest_on_the_management_port(old, new, field, text):
    body = ovms_template()
    server(body)["resources"] = {"requests": {"memory": "4Gi"}}
    args = server(body)["args"]
    args[args.index(old)] = new
    one(check(body), "mm-runtime-layout", field, text)


def test_a_declared_port_the_pod_already_uses_fails_to_bind():
    body = mlserver()
    server(body)["ports"] = [{"containerPort": 8008}]
    one(check(body), "mm-runtime-layout", "spec.containers[0].ports[0].containerPort",
        "port 8008 is also the rest-proxy's port")
    assert check(body, config_map("restProxy:\n  enabled: false\n")) == []


# --- mm-runtime-scaling ----------------------------------------------------------------------------------------

def annotated(**notes: str) -> dict[str, Any]:
    body = mlserver()
    body["metadata"]["annotations"].update({f"serving.kserve.io/{k.replace('_', '-')}": v for k, v in notes.items()})
    return body


def test_an_autoscaler_class_other_than_hpa_is_denied():
    one(check(annotated(autoscalerClass="external")), "mm-runtime-scaling",
        "metadata.annotations.serving.kserve.io/autoscalerClass", "is not 'hpa'")


def test_hpa_together_with_replicas_is_denied():
    body = annotated(autoscalerClass="hpa")
    body["spec"]["replicas"] = 2
    one(check(body), "mm-runtime-scaling", "spec.replicas", "You can not set both")
    del body["spec"]["replicas"]
    assert check(body) == []


def test_an_hpa_metric_other_than_cpu_or_memory_is_denied():
    one(check(annotated(autoscalerClass="hpa", metrics="gpu")), "mm-runtime-scaling",
        "metadata.annotations.serving.kserve.io/metrics", "metric 'gpu' is neither cpu nor memory")


@pytest.mark.parametrize("target", ["0", "101", "half"])
def test_a_target_utilization_outside_1_to_100_is_denied(target):
    one(check(annotated(autoscalerClass="hpa", targetUtilizationPercentage=target)), "mm-runtime-scaling",
        "metadata.annotations.serving.kserve.io/targetUtilizationPercentage", "is not an integer from 1 to 100")


def test_a_min_scale_above_the_default_max_scale_is_denied():
    one(check(annotated(autoscalerClass="hpa", min_scale="2")), "mm-runtime-scaling",
        "metadata.annotations.serving.kserve.io/max-scale", "min-scale 2 is above max-scale 1, its default")
    assert check(annotated(autoscalerClass="hpa", min_scale="2", max_scale="3")) == []


def test_scaling_annotations_without_the_hpa_class_are_ignored():
    one(check(annotated(max_scale="3")), "mm-runtime-scaling", "metadata.annotations.serving.kserve.io/max-scale",
        "the controller makes no HPA and ignores this", "warning")


def test_rule_docs_stay_short():
    for r in rules.RULES:
        if r.name in MINE:
            assert all(0 < len(text) <= 220 for text in (r.reason, r.source, r.symptom, r.fix)), r.name
