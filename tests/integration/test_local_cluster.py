"""The manifests against a real API server: server-side validation and wave-ordered apply."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.integration.conftest import ROOT, mmgitops

pytestmark = pytest.mark.integration
PROFILES = sorted(p.name for p in (ROOT / "overlays").iterdir())
assert PROFILES, f"no profiles under {ROOT / 'overlays'}"


def listening(pids: set[int]) -> list[str]:
    """host:port of every TCP socket the given processes listen on, from /proc."""
    inodes: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes[fields[9]] = fields[1]
    found = []
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.is_dir() else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.append(_address(inodes[target[8:-1]]))
    return found


def _address(raw: str) -> str:
    """host:port from /proc/net/tcp{,6}'s hex (32-bit words in host byte order); an IPv4-mapped IPv6 address as
    its IPv4 address."""
    host, port = raw.split(":")
    packed = b"".join(bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, len(host), 8))
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return f"{ip}:{int(port, 16)}"


def loopback(address: str) -> bool:
    return ipaddress.ip_address(address.rpartition(":")[0]).is_loopback


def status(env: dict[str, str]) -> dict:
    return json.loads(mmgitops("local", "cluster", "status", "--format", "json", env=env).stdout)


def api(info: dict) -> client.ApiClient:
    return config.new_client_from_config(config_file=info["kubeconfig"])


def test_cluster_components_listen_on_loopback_only(cluster, cluster_env):
    processes = status(cluster_env)["processes"]
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller",
            "operator-standins"} <= set(processes)
    assert all(p["running"] for p in processes.values())
    addresses = listening({p["pid"] for p in processes.values()})
    assert addresses, "no listening socket found"
    assert all(loopback(a) for a in addresses), addresses


def test_gpu_workers_carry_gpu_capacity_and_labels(cluster):
    nodes = client.CoreV1Api(api(cluster)).list_node().items
    gpu = [n for n in nodes if (n.metadata.labels or {}).get("nvidia.com/gpu.present") == "true"]
    assert len(gpu) == 2 and len(nodes) == 4
    for node in gpu:
        assert node.status.capacity["nvidia.com/gpu"] == "4"
        assert node.metadata.labels["feature.node.kubernetes.io/pci-10de.present"] == "true"


def test_openshift_route_api_is_served(cluster):
    groups = client.ApisApi(api(cluster)).get_api_versions().groups
    assert "route.openshift.io" in {g.name for g in groups}


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_passes_server_dry_run(cluster, cluster_env, profile):
    run = mmgitops("apply", f"overlays/{profile}", "--kubeconfig", cluster["kubeconfig"], "--dry-run=server",
                   env=cluster_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "objects checked by the server (dry run)" in run.stdout
    assert "skipped" not in run.stdout


@pytest.mark.parametrize(("fixture", "field", "message"), [
    ("unknown-field", "spec.components.modelmeshserving.podsPerRuntime", "unknown field"),
    ("cel-violation", "spec.monitoring.metrics", "Replicas can only be set to non-zero value"),
])
def test_server_dry_run_rejects_what_the_crd_rejects(cluster, cluster_env, fixture, field, message):
    run = mmgitops("apply", f"tests/integration/fixtures/{fixture}", "--kubeconfig", cluster["kubeconfig"],
                   "--dry-run=server", env=cluster_env)
    errors = [line for line in run.stdout.splitlines() if line.endswith("[server]")]
    assert run.returncode == 1
    assert len(errors) == 1, run.stdout
    assert f": {field}: " in errors[0] and message in errors[0]
    assert "Traceback" not in run.stderr


def test_apply_serving_gpu_reaches_healthy(cluster, cluster_env):
    run = mmgitops("apply", "overlays/serving-gpu", "--kubeconfig", cluster["kubeconfig"], "--timeout", "120",
                   env=cluster_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "20 objects applied: 20 created" in run.stdout
    custom = client.CustomObjectsApi(api(cluster))
    dsc = custom.get_cluster_custom_object("datasciencecluster.opendatahub.io", "v1", "datascienceclusters",
                                           "default-dsc")
    conditions = {c["type"]: c["status"] for c in dsc["status"]["conditions"]}
    assert dsc["status"]["phase"] == "Ready" and conditions["ModelMeshServingReady"] == "True"
    policy = custom.get_cluster_custom_object("nvidia.com", "v1", "clusterpolicies", "gpu-cluster-policy")
    assert policy["status"]["state"] == "ready"
    subs = custom.list_cluster_custom_object("operators.coreos.com", "v1alpha1", "subscriptions")["items"]
    assert {s["metadata"]["name"]: s["status"]["state"] for s in subs} == {
        "rhods-operator": "AtLatestKnown", "nfd": "AtLatestKnown", "gpu-operator-certified": "AtLatestKnown"}
    isvcs = custom.list_namespaced_custom_object("serving.kserve.io", "v1beta1", "modelmesh-models",
                                                 "inferenceservices")["items"]
    assert sorted(i["metadata"]["name"] for i in isvcs) == ["onnx-mnist", "sklearn-mnist"]
    controller = client.AppsV1Api(api(cluster)).read_namespaced_deployment("modelmesh-controller",
                                                                           "redhat-ods-applications")
    assert controller.status.available_replicas == 1


def test_second_apply_changes_nothing(cluster, cluster_env):
    run = mmgitops("apply", "overlays/serving-gpu", "--kubeconfig", cluster["kubeconfig"], env=cluster_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "20 objects applied: 0 created, 0 configured, 20 unchanged" in run.stdout


def test_down_leaves_no_process_and_no_listening_port(cluster, cluster_env):
    pids = {p["pid"] for p in status(cluster_env)["processes"].values()}
    down = mmgitops("local", "cluster", "down", env=cluster_env)
    assert down.returncode == 0, down.stderr
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"]
    assert alive == []
    assert listening(pids) == []
    assert status(cluster_env) == {"up": False}
