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
from mlserver.grpc import dataplane_pb2_grpc as v2_grpc
from mmgitops.lab.mesh import control
from mmgitops.lab.mesh.peers import mesh_grpc, mesh_pb
from mmgitops.modelmesh import samples
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
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
                 instance: int = 0, model_type: str = control.SAMPLE_TYPE) -> Any:
        """As ModelMesh-serving registers an InferenceService: a vmodel whose target is a new concrete model
        (type mt:sklearn, as it registers an sklearn predictor). Returns the concrete model id; the
        setVModel reply is kept in `last_reply`."""
        base = self.samples[sample] if isinstance(sample, str) else sample
        chosen = dict(base, path=path or base["path"])
        model_id = control.concrete_id(vmodel, chosen["path"])
        self.last_reply = self.mm(instance).setVModel(mesh_pb.SetVModelRequest(
            vModelId=vmodel, targetModelId=model_id, loadNow=load, sync=True, autoDeleteTargetModel=True,
            modelInfo=mesh_pb.ModelInfo(type=model_type, path=chosen["path"], key=control.model_key(chosen))),
            timeout=60)
        return model_id

    def upload_padded(self, tmp: Path, count: int, pad_bytes: int, first: int = 0) -> list[dict[str, Any]]:
        """Samples that weigh pad_bytes on disk, uploaded to this mesh's S3 under models-padded/."""
        from mmgitops.lab.mesh import storage

        entry = storage.load_config(control.state_dir(self.state["name"], Path(self.env["MMGITOPS_STATE"]))
                                    / "storage-config.json")[control.STORAGE_KEY]
        trained = samples.upload(samples.train(tmp, count, pad_bytes, first), entry, control.BUCKET,
                                 prefix="models-padded")
        return [{"name": s.name, "expected": s.expected, "path": s.s3_path, "size": s.size} for s in trained]

    def status(self, model_id: str, instance: int = 0) -> Any:
        return self.mm(instance).getModelStatus(mesh_pb.GetStatusRequest(modelId=model_id), timeout=10)

    def infer(self, name: str = "", instance: int = 0, metadata: tuple[tuple[str, Any], ...] = ()
              ) -> tuple[int, str]:
        """(the model's answer to the probe, the model id the response names)."""
        response = self.v2(instance).ModelInfer(samples.probe_request(name), metadata=metadata, timeout=60)
        return samples.answer(response), response.model_name

    def metrics(self, instance: int) -> dict[str, Any]:
        text = requests.get(self.state["instances"][instance]["metrics"], timeout=10).text
        return {family.name: family for family in text_string_to_metric_families(text)}

    def sample_value(self, instance: int, name: str, **labels: str) -> float:
        """One sample's value, or the sum over samples matching the labels; 0 when absent."""
        found = [s.value for f in self.metrics(instance).values() for s in f.samples
                 if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        return float(sum(found))


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
