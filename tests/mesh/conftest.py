"""Local meshes for the mesh tier, started through the CLI and stopped by it, with small clients for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from mmgitops.lab.mesh import sampleset
from mmgitops.modelmesh import metrics as prometheus
from mmgitops.modelmesh import samples, stubs

ROOT = Path(__file__).resolve().parents[2]
mesh_pb, mesh_grpc = stubs.mesh()
v2_pb, v2_grpc = stubs.v2()
Status = mesh_pb.ModelStatusInfo


def mmgitops(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmgitops", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


@contextmanager
def local_mesh(tmp: Path, name: str, *flags: str) -> Iterator[Mesh]:
    # Its own name and state directory: a user's `mmgitops` mesh is never touched.
    env = {**os.environ, "MMGITOPS_MESH_NAME": name, "MMGITOPS_STATE": str(tmp)}
    mmgitops("local", "mesh", "down", env=env)
    up = mmgitops("local", "mesh", "up", "--format", "json", *flags, env=env)
    if up.returncode != 0:
        pytest.fail(f"local mesh up failed: {up.stderr.strip()[-2000:]}")
    mesh = Mesh(json.loads(up.stdout), env)
    try:
        yield mesh
    finally:
        mesh.close()
        mmgitops("local", "mesh", "down", env=env)


class Mesh:
    def __init__(self, state: dict[str, Any], env: dict[str, str]) -> None:
        self.state = state
        self.env = env
        self.channels = [grpc.insecure_channel(i["grpc"]) for i in state["instances"]]
        self.samples = {s["name"]: s for s in state["samples"]}

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def ids(self) -> list[str]:
        return [i["id"] for i in self.state["instances"]]

    def v2(self, instance: int = 0) -> v2_grpc.GRPCInferenceServiceStub:
        return v2_grpc.GRPCInferenceServiceStub(self.channels[instance])

    def mm(self, instance: int = 0) -> Any:
        return mesh_grpc.ModelMeshStub(self.channels[instance])

    def register(self, vmodel: str, sample: str | dict[str, Any], load: bool = True, path: str | None = None,
                 instance: int = 0, model_type: str = sampleset.SAMPLE_TYPE, sync: bool = True) -> Any:
        """As ModelMesh-serving registers an InferenceService: a vmodel whose target is a new concrete model
        (type mt:sklearn, as it registers an sklearn predictor). Returns the concrete model id; the
        setVModel reply is kept in `last_reply`."""
        base = self.samples[sample] if isinstance(sample, str) else sample
        chosen = dict(base, path=path or base["path"])
        model_id, self.last_reply = sampleset.register(self.mm(instance), vmodel, chosen, load, 60, model_type, sync)
        return model_id

    def upload_padded(self, tmp: Path, count: int, pad_bytes: int, first: int = 0) -> list[dict[str, Any]]:
        """Samples that weigh pad_bytes on disk, uploaded to this mesh's S3 under models-padded/."""
        return sampleset.upload_padded(self.state, tmp, count, pad_bytes, first)

    def status(self, model_id: str, instance: int = 0) -> Any:
        return self.mm(instance).getModelStatus(mesh_pb.GetStatusRequest(modelId=model_id), timeout=10)

    def infer(self, name: str = "", instance: int = 0, metadata: tuple[tuple[str, Any], ...] = ()
              ) -> tuple[int, str]:
        """(the model's answer to the probe, the model id the response names)."""
        response = self.v2(instance).ModelInfer(samples.probe_request(name), metadata=metadata, timeout=60)
        return samples.answer(response), response.model_name

    def metrics(self, instance: int) -> prometheus.Families:
        return prometheus.parse(requests.get(self.state["instances"][instance]["metrics"], timeout=10).text)

    def sample_value(self, instance: int, name: str, **labels: str) -> float:
        """One sample's value, or the sum over samples matching the labels; 0 when absent."""
        return prometheus.value(self.metrics(instance), name, **labels) or 0.0

    def total(self, name: str) -> float:
        """A sample summed over every instance."""
        return prometheus.total((self.metrics(i) for i in range(len(self.channels))), name)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value
