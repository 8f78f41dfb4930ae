"""A runtime pod's environment, resolved from the pod spec the modelmesh-serving controller writes, as the kubelet
resolves it (makeEnvironmentVariables, the expansion package, the downward API)."""

from __future__ import annotations

import base64
import copy
from fractions import Fraction
from typing import Any

import pytest
from mmgitops.gitops.quantities import quantity
from mmgitops.lab.kubelet import KubeletError, MissingReference, Objects
from mmgitops.lab.kubelet.podenv import expand, resolve

pytestmark = pytest.mark.unit
POD_NAME = "modelmesh-serving-mlserver-1.x-7d9f8c6b5-x2k4p"
SECRET_VALUE = "s3cr3t-password"


def field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def runtime_pod() -> dict[str, Any]:
    """The mlserver-1.x runtime pod as the controller renders it (modelmesh-serving-rendered-deployments.yaml),
    cut to what env resolution reads, after the scheduler and kwok gave it a node and addresses."""
    return {
        "metadata": {"name": POD_NAME, "namespace": "modelmesh-models", "uid": "5f0c6a1e-uid",
                     "labels": {"name": "modelmesh-serving-mlserver-1.x", "modelmesh-service": "modelmesh-serving"},
                     "annotations": {"prometheus.io/port": "2112"}},
        "spec": {
            "nodeName": "cpu-worker-0", "serviceAccountName": "modelmesh-serving-sa",
            "containers": [
                {"name": "mlserver", "env": [{"name": "MLSERVER_GRPC_PORT", "value": "8001"}],
                 "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                               "requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "mlserver-adapter",
                 "env": [{"name": "ADAPTER_PORT", "value": "8085"},
                         {"name": "CONTAINER_MEM_REQ_BYTES", "valueFrom": {"resourceFieldRef": {
                             "containerName": "mlserver", "divisor": "0", "resource": "requests.memory"}}},
                         {"name": "MEM_BUFFER_BYTES", "value": "134217728"}],
                 "resources": {"limits": {"cpu": "2", "memory": "512Mi"},
                               "requests": {"cpu": "50m", "memory": "96Mi"}}},
                {"name": "mm",
                 "env": [{"name": "MM_SERVICE_NAME", "value": "modelmesh-serving"},
                         {"name": "WKUBE_POD_NAME", **field("metadata.name")},
                         {"name": "WKUBE_POD_IPADDR", **field("status.podIP")},
                         {"name": "MM_LOCATION", **field("status.hostIP")},
                         {"name": "KV_STORE", "value": "etcd:/opt/kserve/mmesh/etcd/etcd_connection"}],
                 "resources": {"limits": {"cpu": "3", "memory": "448Mi"},
                               "requests": {"cpu": "300m", "memory": "448Mi"}}},
            ],
        },
        "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}]},
    }


def with_env(env: list[dict[str, Any]], env_from: list[dict[str, Any]] | None = None,
             resources: dict[str, Any] | None = None) -> dict[str, Any]:
    """The runtime pod with one more container, `probe`, holding exactly this env."""
    pod = runtime_pod()
    container: dict[str, Any] = {"name": "probe", "env": env, "envFrom": env_from or []}
    if resources is not None:
        container["resources"] = resources
    pod["spec"]["containers"].append(container)
    return pod


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBJECTS = Objects(
    config_maps={"model-serving-config": {"metadata": {"name": "model-serving-config"},
                                          "data": {"podsPerRuntime": "2", "scaleToZero": "true"},
                                          "binaryData": {"blob": b64("binary")}}},
    secrets={"storage-config": {"metadata": {"name": "storage-config"},
                                "data": {"localMinIO": b64('{"type": "s3"}'), "password": b64(SECRET_VALUE)}}},
)


def probe(env: list[dict[str, Any]], env_from: list[dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, str]:
    return resolve(with_env(env, env_from), "probe", OBJECTS, **kwargs)


# ---- the runtime pod's own env ---------------------------------------------------------------------------


def test_mm_sees_its_pod_name_pod_address_and_node_address():
    env = resolve(runtime_pod(), "mm", OBJECTS)
    assert env == {"MM_SERVICE_NAME": "modelmesh-serving", "WKUBE_POD_NAME": POD_NAME,
                   "WKUBE_POD_IPADDR": "10.0.0.7", "MM_LOCATION": "10.0.0.1",
                   "KV_STORE": "etcd:/opt/kserve/mmesh/etcd/etcd_connection"}
    assert list(env) == ["MM_SERVICE_NAME", "WKUBE_POD_NAME", "WKUBE_POD_IPADDR", "MM_LOCATION", "KV_STORE"]


def test_the_adapter_reads_the_runtime_containers_memory_request_in_bytes():
    # divisor "0" is what the controller writes; the kubelet reads a zero divisor as 1.
    env = resolve(runtime_pod(), "mlserver-adapter", OBJECTS)
    assert env["CONTAINER_MEM_REQ_BYTES"] == str(1024**3)
    assert int(env["CONTAINER_MEM_REQ_BYTES"]) - int(env["MEM_BUFFER_BYTES"]) == 1024**3 - 128 * 1024**2


def test_the_pod_address_falls_back_to_podIP_when_podIPs_is_absent():
    pod = runtime_pod()
    del pod["status"]["podIPs"]
    assert resolve(pod, "mm", OBJECTS)["WKUBE_POD_IPADDR"] == "10.0.0.7"


@pytest.mark.parametrize(("path", "expected"), [
    ("metadata.namespace", "modelmesh-models"),
    ("metadata.uid", "5f0c6a1e-uid"),
    ("metadata.labels['name']", "modelmesh-serving-mlserver-1.x"),
    ("metadata.annotations['prometheus.io/port']", "2112"),
    ("metadata.labels['absent']", ""),
    ("spec.nodeName", "cpu-worker-0"),
    ("spec.serviceAccountName", "modelmesh-serving-sa"),
    ("status.podIPs", "10.0.0.7"),
])
def test_field_refs_read_the_pod(path: str, expected: str):
    assert probe([{"name": "V", **field(path)}]) == {"V": expected}


# ---- resourceFieldRef ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("resource", "divisor", "expected"), [
    ("requests.cpu", None, "1"),  # 300m rounds up to one core
    ("requests.cpu", "1m", "300"),
    ("limits.cpu", "1", "3"),
    ("requests.memory", "1Mi", "448"),
    ("limits.memory", "1Gi", "1"),  # 448Mi rounds up to 1Gi
    ("requests.memory", "1M", "470"),  # 469.76 MB, rounded up
])
def test_resource_values_are_divided_and_rounded_up(resource: str, divisor: str | None, expected: str):
    selector: dict[str, Any] = {"containerName": "mm", "resource": resource}
    if divisor is not None:
        selector["divisor"] = divisor
    assert probe([{"name": "V", "valueFrom": {"resourceFieldRef": selector}}]) == {"V": expected}


def test_the_container_name_defaults_to_the_container_itself():
    pod = with_env([{"name": "MINE", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}],
                   resources={"requests": {"memory": "1.5Gi"}, "limits": {"memory": "2Gi"}})
    assert resolve(pod, "probe", OBJECTS) == {"MINE": str(3 * 1024**3 // 2)}


def test_a_missing_limit_is_the_node_allocatable_and_a_missing_request_is_zero():
    env = [{"name": "LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}},
           {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
           {"name": "REQUEST", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}]
    pod = with_env(env, resources={})
    assert resolve(pod, "probe", OBJECTS) == {"LIMIT": "64", "CPU": "16", "REQUEST": "0"}
    assert resolve(pod, "probe", OBJECTS, allocatable={"cpu": "3500m", "memory": "8Gi"}) == {
        "LIMIT": "8", "CPU": "4", "REQUEST": "0"}


@pytest.mark.parametrize(("text", "expected"), [
    ("1.5Gi", Fraction(3 * 2**29)), ("500m", Fraction(1, 2)), ("1e3", Fraction(1000)), ("1E", Fraction(10**18)),
    (".5k", Fraction(500)), ("2", Fraction(2)),
])
def test_quantities_parse_exactly(text: str, expected: Fraction):
    assert quantity(text, "here") == expected


# ---- value expansion -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [  # expansion's own test table (expand_test.go), in part
    ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
    ("$(VAR_REF)", "$(VAR_A)"),  # a value is not expanded twice
    ("foo$(VAR_EMPTY)bar", "foobar"),
    ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
    ("$VAR_A", "$VAR_A"),
    ("${VAR_A}", "${VAR_A}"),
    ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$$$$$$$(VAR_A)", "$$$A"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("$(VAR_C)_______$(", "C_______$("),
    ("$(VAR_A)foobarzab$", "Afoobarzab$"),
    ("--$($($($($--", "--$($($($($--"),
])
def test_expansion_follows_the_kubelets_rules(text: str, expected: str):
    context = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
    assert expand(text, context.get) == expected


def test_a_value_sees_only_the_variables_declared_before_it():
    env = probe([{"name": "ADAPTER", "value": "port:$(RUNTIME_PORT)"},
                 {"name": "RUNTIME_PORT", "value": "8001"},
                 {"name": "ENDPOINT", "value": "port:$(RUNTIME_PORT)"},
                 {"name": "ESCAPED", "value": "$$(RUNTIME_PORT)"}])
    assert env == {"ADAPTER": "port:$(RUNTIME_PORT)", "RUNTIME_PORT": "8001", "ENDPOINT": "port:8001",
                   "ESCAPED": "$(RUNTIME_PORT)"}


def test_values_can_refer_to_envFrom_keys_and_service_links():
    env = probe([{"name": "PODS", "value": "$(CFG_podsPerRuntime)x"}, {"name": "MESH", "value": "$(MM_HOST):1"}],
                [{"configMapRef": {"name": "model-serving-config"}, "prefix": "CFG_"}],
                service_env={"MM_HOST": "10.96.0.5", "PODS": "service link loses to env"})
    assert env["PODS"] == "2x"
    assert env["MESH"] == "10.96.0.5:1"
    assert env["MM_HOST"] == "10.96.0.5"


def test_a_field_ref_value_is_not_expanded():
    pod = with_env([{"name": "A", "value": "x"}, {"name": "B", **field("metadata.annotations['v']")}])
    pod["metadata"]["annotations"]["v"] = "$(A)"
    assert resolve(pod, "probe", OBJECTS)["B"] == "$(A)"


# ---- ConfigMaps and Secrets ------------------------------------------------------------------------------


def test_key_refs_read_configmap_data_and_decoded_secret_data():
    env = probe([{"name": "PODS", "valueFrom": {"configMapKeyRef": {"name": "model-serving-config",
                                                                    "key": "podsPerRuntime"}}},
                 {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "storage-config", "key": "password"}}}])
    assert env == {"PODS": "2", "PASSWORD": SECRET_VALUE}


def test_envFrom_takes_every_key_with_its_prefix_and_env_wins():
    env = probe([{"name": "CFG_scaleToZero", "value": "false"}],
                [{"configMapRef": {"name": "model-serving-config"}, "prefix": "CFG_"},
                 {"secretRef": {"name": "storage-config"}}])
    # binaryData is not a source of variables; an env entry overrides the envFrom key in place.
    assert env == {"CFG_podsPerRuntime": "2", "CFG_scaleToZero": "false", "localMinIO": '{"type": "s3"}',
                   "password": SECRET_VALUE}


def test_optional_references_that_are_missing_leave_the_variable_unset():
    env = probe([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}},
                 {"name": "B", "valueFrom": {"secretKeyRef": {"name": "storage-config", "key": "absent",
                                                              "optional": True}}},
                 {"name": "C", "value": "[$(A)]"}],
                [{"secretRef": {"name": "absent", "optional": True}},
                 {"configMapRef": {"name": "absent", "optional": True}}])
    assert env == {"C": "[$(A)]"}


# ---- what the kubelet refuses ----------------------------------------------------------------------------


def refusal(env: list[dict[str, Any]], env_from: list[dict[str, Any]] | None = None,
            pod: dict[str, Any] | None = None) -> KubeletError:
    with pytest.raises(KubeletError) as caught:
        resolve(pod or with_env(env, env_from), "probe", OBJECTS)
    message = str(caught.value)
    assert "\n" not in message and SECRET_VALUE not in message and b64(SECRET_VALUE) not in message
    return caught.value


@pytest.mark.parametrize(("ref", "missing"), [
    ({"configMapKeyRef": {"name": "tc-config", "key": "type_constraints"}}, "ConfigMap tc-config not found"),
    ({"configMapKeyRef": {"name": "model-serving-config", "key": "blob"}},
     "key blob not found in ConfigMap model-serving-config"),
    ({"secretKeyRef": {"name": "model-serving-etcd", "key": "etcd_connection"}},
     "Secret model-serving-etcd not found"),
    ({"secretKeyRef": {"name": "storage-config", "key": "passwd"}}, "key passwd not found in Secret storage-config"),
])
def test_a_missing_required_key_ref_names_pod_container_variable_and_what(ref: dict[str, Any], missing: str):
    error = refusal([{"name": "NEEDED", "valueFrom": ref}])
    assert isinstance(error, MissingReference)
    assert str(error) == f"pod modelmesh-models/{POD_NAME}: container probe: env NEEDED: {missing}"


def test_a_missing_required_envFrom_source_names_it():
    error = refusal([], [{"secretRef": {"name": "storage-config"}}, {"configMapRef": {"name": "absent"}}])
    assert isinstance(error, MissingReference)
    assert str(error) == f"pod modelmesh-models/{POD_NAME}: container probe: envFrom: ConfigMap absent not found"


def test_a_pod_without_an_address_yet_is_refused_rather_than_given_an_empty_one():
    pod = runtime_pod()
    pod["status"] = {"phase": "Pending"}
    with pytest.raises(KubeletError, match=r"container mm: env WKUBE_POD_IPADDR: status.podIP is not set yet"):
        resolve(pod, "mm", OBJECTS)


@pytest.mark.parametrize(("env", "message"), [
    ([{"name": "V", **field("spec.containers")}], "env V: fieldRef 'spec.containers' is not a field"),
    ([{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}}}],
     "env V: resourceFieldRef 'limits.nvidia.com/gpu' is not one of"),
    ([{"name": "V", "valueFrom": {"resourceFieldRef": {"containerName": "triton", "resource": "limits.cpu"}}}],
     "env V: no container triton in the pod"),
    ([{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "lots"}}}],
     "env V: resourceFieldRef limits.cpu divisor: 'lots' is not a Kubernetes quantity"),
    ([{"name": "V", "valueFrom": {"fileKeyRef": {"path": "a", "key": "b"}}}], "env V: valueFrom has none of"),
])
def test_what_the_kubelet_cannot_resolve_is_named(env: list[dict[str, Any]], message: str):
    error = refusal(env)
    assert not isinstance(error, MissingReference)
    assert str(error).startswith(f"pod modelmesh-models/{POD_NAME}: container probe: {message}")


def test_an_unknown_container_is_named():
    with pytest.raises(KubeletError, match=r"container triton: no container triton in the pod"):
        resolve(runtime_pod(), "triton", OBJECTS)


def test_a_secret_that_is_not_base64_is_named_by_key_never_by_value():
    secrets = {"storage-config": {"metadata": {"name": "storage-config"}, "data": {"password": SECRET_VALUE}}}
    pod = with_env([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "storage-config", "key": "password"}}}])
    with pytest.raises(KubeletError) as caught:
        resolve(pod, "probe", Objects(secrets=secrets))
    assert str(caught.value).endswith("env P: Secret storage-config: data key password is not base64")
    assert SECRET_VALUE not in str(caught.value)


def test_resolving_leaves_the_pod_as_it_was():
    pod = runtime_pod()
    before = copy.deepcopy(pod)
    resolve(pod, "mlserver-adapter", OBJECTS)
    assert pod == before
