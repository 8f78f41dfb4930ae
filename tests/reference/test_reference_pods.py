"""Real ModelMesh pods: ready by their probe, routing by model_name through either pod, REST through
rest-proxy, Prometheus gauges, and `down` leaving nothing behind. The last test stops the mesh."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from mmgitops import procs
from mmgitops.modelmesh import samples, stubs

from tests.reference.conftest import mmgitops

pytestmark = pytest.mark.reference
_, v2_grpc = stubs.v2()


def test_every_pod_is_ready_by_its_probe(reference_mesh: dict[str, Any]) -> None:
    assert reference_mesh["engine"] == "reference"
    for pod in reference_mesh["instances"]:
        assert requests.get(f"{pod['probes']}/ready", timeout=5).status_code == 200, pod["id"]


def test_a_sample_answers_by_model_name_through_both_pods(reference_mesh: dict[str, Any]) -> None:
    for sample in reference_mesh["samples"]:
        for pod in reference_mesh["instances"]:
            with grpc.insecure_channel(pod["grpc"]) as channel:
                stub = v2_grpc.GRPCInferenceServiceStub(channel)
                response = stub.ModelInfer(samples.probe_request(sample["name"]), timeout=60)
            assert samples.answer(response) == sample["expected"], (pod["id"], sample["name"])
            assert response.model_name == sample["model_id"]


def test_rest_infer_through_rest_proxy(reference_mesh: dict[str, Any]) -> None:
    sample = reference_mesh["samples"][-1]
    pod = reference_mesh["instances"][-1]
    response = requests.post(f"{pod['rest']}/v2/models/{sample['name']}/infer", data=samples.PROBE_JSON,
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [sample["expected"]]


def test_metrics_carry_the_instance_capacity(reference_mesh: dict[str, Any]) -> None:
    for pod in reference_mesh["instances"]:
        text = requests.get(pod["metrics"], timeout=5).text
        assert "modelmesh_instance_capacity_bytes" in text, pod["id"]


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _descendants(roots: list[int]) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier.extend(children)
    return sorted(found)


def test_down_leaves_no_process_and_no_port(reference_mesh: dict[str, Any], reference_env: dict[str, str]) -> None:
    # The pods' containers (java, rest-proxy, adapter, MLServer) too, not only the recorded launchers.
    pids = _descendants([p["pid"] for p in reference_mesh["instances"]])
    assert len(pids) >= 5 * len(reference_mesh["instances"])
    pids += [reference_mesh[part]["pid"] for part in ("bridge", "etcd", "s3", "netns")]
    done = mmgitops("local", "mesh", "down", env=reference_env)
    assert done.returncode == 0, done.stderr
    assert [pid for pid in pids if procs.alive(pid)] == []
    ends = [(p["address"], port) for p in reference_mesh["instances"] for port in (8033, 8008, 2112, 8089)]
    assert [end for end in ends if _listening(*end)] == []
