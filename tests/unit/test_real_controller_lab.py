"""The lab around the real modelmesh-serving controller, without a cluster: what the RHOAI stand-in applies of the
ODH overlay, how a container's paths and images map onto this machine, the etcd pod's init container, and the
hosts file that stands in for cluster DNS."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from mmgitops.lab.controller import overlay
from mmgitops.lab.kubelet import images
from mmgitops.lab.kubelet.backer import Backer

pytestmark = pytest.mark.unit


def obj(kind: str, name: str, namespace: str | None = "opendatahub", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **extra}


RENDERED = [
    obj("CustomResourceDefinition", "predictors.serving.kserve.io", None),
    obj("CustomResourceDefinition", "servingruntimes.serving.kserve.io", None),
    obj("Deployment", "modelmesh-controller", spec={"replicas": 3}),
    obj("ClusterRoleBinding", "modelmesh-controller-rolebinding", None,
        subjects=[{"kind": "ServiceAccount", "name": "modelmesh-controller", "namespace": "opendatahub"}]),
    obj("ServiceMonitor", "controller-manager-metrics-monitor"),
    obj("ValidatingWebhookConfiguration", "modelmesh-servingruntime.serving.kserve.io", None),
]


def test_the_overlay_moves_to_the_applications_namespace_with_one_controller_replica() -> None:
    adapted = {o["kind"]: o for o in overlay.adapt(RENDERED, "redhat-ods-applications", set())}
    assert adapted["Deployment"]["metadata"]["namespace"] == "redhat-ods-applications"
    assert adapted["Deployment"]["spec"]["replicas"] == 1
    assert adapted["ClusterRoleBinding"]["subjects"][0]["namespace"] == "redhat-ods-applications"
    assert "ServiceMonitor" not in adapted and "ValidatingWebhookConfiguration" not in adapted
    assert RENDERED[2]["spec"]["replicas"] == 3  # the rendered objects are not changed in place


def test_the_overlay_leaves_crds_the_cluster_serves_and_adds_the_ones_it_lacks() -> None:
    adapted = overlay.adapt(RENDERED, "ns", {"servingruntimes.serving.kserve.io"})
    assert [o["metadata"]["name"] for o in adapted if o["kind"] == "CustomResourceDefinition"] == [
        "predictors.serving.kserve.io"]


def test_a_tree_without_the_overlay_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(overlay.ToolError, match=r"config/overlays/odh: no kustomization\.yaml"):
        overlay.render(tmp_path)


@pytest.mark.parametrize(("image", "name"), [
    ("quay.io/opendatahub/modelmesh-controller:v0.12.0-rc0-latest", "modelmesh-controller"),
    ("registry.redhat.io/openshift4/ose-etcd-rhel9:v4.19", "ose-etcd-rhel9"),
    ("registry.example/ose-cli-rhel9@sha256:abc", "ose-cli-rhel9"),
    ("modelmesh-controller", "modelmesh-controller"),
])
def test_an_image_is_known_by_its_repository_name(image: str, name: str) -> None:
    assert images.image_name(image) == name


def container(tmp_path: Path, mounts: dict[str, Path] | None = None, **spec: Any) -> images.Container:
    pod = {"metadata": {"name": "p", "namespace": "apps"}, "spec": {"containers": [spec]}}
    return images.Container({"name": "c", **spec}, pod, {}, mounts or {}, tmp_path / "tmp", tmp_path / "kubeconfig")


def test_a_containers_paths_map_to_its_mounts_then_its_own_tmp(tmp_path: Path) -> None:
    certs = tmp_path / "volumes" / "cert"
    c = container(tmp_path, {"/tmp/k8s-webhook-server/serving-certs": certs, "/etc/cfg": tmp_path / "cfg"})
    assert images.container_path("/tmp/k8s-webhook-server/serving-certs/tls.crt", c) == str(certs / "tls.crt")
    assert images.container_path("/etc/cfg", c) == str(tmp_path / "cfg")
    assert images.container_path("/tmp/etcd.data", c) == str(tmp_path / "tmp" / "etcd.data")
    assert images.container_path("/etcetera", c) == "/etcetera"  # a prefix of a name is not a mount


def test_the_etcd_container_keeps_its_command_line_with_its_data_in_its_own_tmp(tmp_path: Path) -> None:
    c = container(tmp_path, image="ose-etcd-rhel9", command=["etcd", "--listen-client-urls", "http://0.0.0.0:2379",
                                                             "--data-dir", "/tmp/etcd.data"])
    program = images.etcd(c)
    assert program.argv[0].endswith("/etcd")
    assert program.argv[1:] == ["--listen-client-urls", "http://0.0.0.0:2379", "--data-dir",
                                str(tmp_path / "tmp" / "etcd.data")]


def test_the_controller_finds_its_webhook_certificates_under_tmpdir(tmp_path: Path) -> None:
    certs = tmp_path / "volumes" / "cert"
    certs.mkdir(parents=True)
    c = container(tmp_path, {"/tmp/k8s-webhook-server/serving-certs": certs}, image="modelmesh-controller",
                  args=["--enable-leader-election"])
    c.tmp.mkdir()
    program = images.modelmesh_controller(c)
    assert program.argv[1:] == ["--enable-leader-election"]
    assert program.env["NAMESPACE"] == "apps" and program.env["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    assert (Path(program.env["TMPDIR"]) / "k8s-webhook-server" / "serving-certs").resolve() == certs
    assert program.cwd.name == "src"  # the source tree: it reads config/internal relative to its working directory


def test_a_pod_runs_here_only_when_every_image_has_a_program() -> None:
    etcd = {"spec": {"initContainers": [{"image": "x/ose-cli-rhel9:v4.19"}],
                     "containers": [{"image": "x/ose-etcd-rhel9:v4.19"}]}}
    runtime = {"spec": {"containers": [{"image": "x/modelmesh:v1"}, {"image": "x/ose-etcd-rhel9:v4.19"}]}}
    assert images.runs_here(etcd) and not images.runs_here(runtime) and not images.runs_here({"spec": {}})


class FakeCore:
    """Secrets of one namespace, as the API would keep them (data base64)."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = {name: {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
                        for name, data in secrets.items()}

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if name not in self.secrets:
            raise ApiException(status=404)
        return SimpleNamespace(data=self.secrets[name])

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self.secrets[body["metadata"]["name"]] = {k: base64.b64encode(v.encode()).decode()
                                                  for k, v in body["stringData"].items()}


def run_init(tmp_path: Path, core: FakeCore) -> dict[str, dict[str, str]]:
    c = container(tmp_path)
    images.etcd_secret_creator(images.Container(c.spec, c.pod, {}, {}, c.tmp, c.kubeconfig,
                                                SimpleNamespace(core=core)))
    return {n: {k: base64.b64decode(v).decode() for k, v in d.items()} for n, d in core.secrets.items()}


def test_the_etcd_init_container_makes_both_secrets_with_one_password(tmp_path: Path) -> None:
    made = run_init(tmp_path, FakeCore({}))
    connection = json.loads(made["model-serving-etcd"]["etcd_connection"])
    assert connection["endpoints"] == "http://etcd:2379" and connection["root_prefix"] == "modelmesh-serving"
    assert connection["userid"] == "root"
    assert connection["password"] == made["etcd-passwords"]["root"] and len(connection["password"]) == 32


def test_the_etcd_init_container_keeps_an_existing_password(tmp_path: Path) -> None:
    made = run_init(tmp_path, FakeCore({"etcd-passwords": {"root": "kept"}}))
    assert json.loads(made["model-serving-etcd"]["etcd_connection"])["password"] == "kept"
    connection = json.dumps({"endpoints": "http://etcd:2379", "password": "other"})
    made = run_init(tmp_path, FakeCore({"model-serving-etcd": {"etcd_connection": connection}}))
    assert made["etcd-passwords"]["root"] == "other"
    assert made["model-serving-etcd"]["etcd_connection"] == connection  # not rewritten


def service(name: str, namespace: str, ip: str) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(name=name, namespace=namespace),
                           spec=SimpleNamespace(cluster_ip=ip))


def test_the_hosts_file_names_services_as_cluster_dns_does(tmp_path: Path) -> None:
    services = [service("etcd", "apps", "10.96.0.5"), service("modelmesh-serving", "models", "None"),
                service("s3", "other", "10.96.0.9")]
    kube = SimpleNamespace(core=SimpleNamespace(list_service_for_all_namespaces=lambda: SimpleNamespace(
        items=services)))
    backer = Backer(tmp_path, 1, lambda *a: "", lambda *a: tmp_path)
    lines = backer._hosts(kube, "apps", tmp_path / "hosts").read_text().splitlines()
    assert "10.96.0.5 etcd.apps.svc.cluster.local etcd.apps.svc etcd.apps etcd" in lines
    assert "10.96.0.9 s3.other.svc.cluster.local s3.other.svc s3.other" in lines  # no short name from elsewhere
    assert not any("modelmesh-serving" in line for line in lines)  # headless: no ClusterIP to map


def test_without_root_cluster_up_is_refused_in_one_line_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mmgitops.errors import ToolError
    from mmgitops.lab import prereqs
    from mmgitops.lab.cluster import cluster

    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)
    with pytest.raises(ToolError, match=r"`local cluster up` needs what this machine lacks: .*root") as refused:
        cluster.up(lambda _text: None)
    assert "\n" not in str(refused.value) and "local mesh up" in str(refused.value)
    assert not (tmp_path / "state").exists()


def test_a_probe_port_is_a_number_or_the_name_of_a_container_port() -> None:
    from mmgitops.lab.kubelet import network

    container = {"name": "manager", "ports": [{"name": "webhook", "containerPort": 9443}]}
    assert network._port(8081, container) == 8081 and network._port("8081", container) == 8081
    assert network._port("webhook", container) == 9443
    with pytest.raises(network.ToolError, match="probe port 'metrics' names no port of the container"):
        network._port("metrics", container)


def test_a_runtime_pods_embedded_instance_takes_its_settings_from_the_pod_spec(tmp_path: Path) -> None:
    from mmgitops.lab.kubelet import runtimepod

    etcd_dir, storage = tmp_path / "etcd-config", tmp_path / "storage-config"
    etcd_dir.mkdir()
    (etcd_dir / "etcd_connection").write_text(json.dumps({"endpoints": "http://etcd.apps:2379",
                                                          "root_prefix": "modelmesh-serving/mm_ns/models"}))
    pod = {"metadata": {"name": "modelmesh-serving-rt-7d9f8c6b5-x2k4p", "namespace": "models"},
           "spec": {"containers": [{"name": "mm", "image": "quay.io/opendatahub/modelmesh:v0.12.0"}]}}
    envs = {"mm": {"WKUBE_POD_NAME": "modelmesh-serving-rt-7d9f8c6b5-x2k4p", "MM_LABELS": "mt:sklearn,rt:rt",
                   "KV_STORE": "etcd:/opt/kserve/mmesh/etcd/etcd_connection", "MM_SERVICE_NAME": "modelmesh-serving",
                   "CUSTOM_JVM_ARGS": "-Dtas.min_churn_age_ms=1500"},
            "mlserver-adapter": {"CONTAINER_MEM_REQ_BYTES": "1073741824", "MEM_BUFFER_BYTES": "134217728",
                                 "LOADTIME_TIMEOUT": "90000", "LOADING_CONCURRENCY": "2"}}
    mounts = {"mm": {"/opt/kserve/mmesh/etcd": etcd_dir}, "mlserver-adapter": {"/storage-config": storage}}
    assert runtimepod.is_runtime_pod(pod)
    config = runtimepod.instance_config(runtimepod.settings(pod, envs, mounts), "http://127.0.0.1:1", tmp_path / "work")
    assert config.instance_id == "7d9f8c6b5-x2k4p"[-12:] and config.labels == ["mt:sklearn", "rt:rt"]
    assert config.capacity_bytes == 1073741824 - 134217728 and config.min_churn_age_ms == 1500
    assert (config.load_timeout_ms, config.max_loading_concurrency) == (90000, 2)
    assert config.prefix == "modelmesh-serving/mm_ns/models/mm/modelmesh-serving/"
    assert config.storage_config == str(storage) and config.etcd == "http://127.0.0.1:1"
    envs["mm"]["CUSTOM_JVM_ARGS"] = ""  # ModelMesh's default: 10 x max(3 s, load timeout / 3)
    assert runtimepod.settings(pod, envs, mounts).min_churn_age_ms == 300000


def test_an_unknown_engine_is_refused_in_one_line_before_anything_starts(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    from mmgitops.errors import ToolError
    from mmgitops.lab.cluster import cluster

    monkeypatch.setenv("MMGITOPS_STATE", str(tmp_path / "state"))
    with pytest.raises(ToolError, match=r"^--engine bogus: choose one of embedded, reference$"):
        cluster.up(lambda _text: None, "bogus")
    assert not (tmp_path / "state").exists()


def test_the_instance_id_is_the_last_12_characters_of_the_pod_name() -> None:
    from mmgitops.modelmesh import defaults

    assert defaults.instance_id("modelmesh-serving-gpu-5d8f7c9b4-x7k2p") == "f7c9b4-x7k2p"
    assert defaults.instance_id("modelmesh-serving-mlserver-1.x-6b9f7d5c48-q2w8z") == "7d5c48-q2w8z"
    assert defaults.instance_id("short-pod") == "short-pod"


def test_a_runtime_pods_port_forward_names_each_pod_port_and_its_owner() -> None:
    from mmgitops.lab.kubelet import publish

    endpoints = {"8033": "127.0.0.1:1", "8008": "127.0.0.1:2", "2112": "127.0.0.1:3", "8089": "127.0.100.7:8089"}
    body = publish.port_forward("pod", "models", "uid-1", endpoints)
    assert {f["ports"][0]: (f["target"]["address"], f["target"]["port"]) for f in body["spec"]["forwards"]} == {
        2112: ("127.0.0.1", 3), 8008: ("127.0.0.1", 2), 8033: ("127.0.0.1", 1), 8089: ("127.0.100.7", 8089)}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


@pytest.mark.parametrize("models", [1, 9, 24])
def test_the_room_a_runtime_declares_is_the_room_the_suite_gave_it(models: int) -> None:
    """What room_per_pod takes for a pod that has published no capacity yet: the runtime's memory request minus
    memBufferBytes, in ModelMesh's units, less its one-unit unload buffer (9 units made "capacity=9" on a
    reference pod of a runtime made for 9)."""
    from mmgitops.conformance.cluster import objects

    for kind in ("cpu", "gpu"):
        runtime = objects.serving_runtime(objects.read_template(kind), "rt", "ns", "run", 1, models, gpu=kind == "gpu")
        assert objects.declared_room(runtime) == models
    runtime["spec"]["builtInAdapter"]["memBufferBytes"] = 0  # the whole request is cache
    memory = objects._memory_request(runtime)
    assert objects.declared_room(runtime) == memory // objects.UNIT_BYTES - 1
