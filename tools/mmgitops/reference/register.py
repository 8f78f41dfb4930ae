"""Register samples as modelmesh-serving registers an InferenceService (controllers/predictor_controller.go
setVModel): vmodel = the InferenceService name, owner "isvc", type from GetPredictorTypeLabel and the key
as its ModelKeyInfo JSON."""

from __future__ import annotations

from typing import Any

import grpc

from mmgitops.mesh import control, samples
from mmgitops.mesh.peers import mesh_grpc, mesh_pb

OWNER = "isvc"  # InferenceServiceCRSourceId; also the `__isvc-` in the concrete model id
MODEL_TYPE = "mt:sklearn"  # modelFormat {name: sklearn}, no version, no runtime, no protocolVersion


def model_key(bucket: str = control.BUCKET) -> str:
    return samples.controller_model_key(control.STORAGE_KEY, bucket, samples.MODEL_FORMAT)


def register_samples(state: dict[str, Any], timeout: float = 120.0) -> None:
    with grpc.insecure_channel(state["instances"][0]["grpc"]) as channel:
        stub = mesh_grpc.ModelMeshStub(channel)
        for sample in state["samples"]:
            stub.setVModel(mesh_pb.SetVModelRequest(
                vModelId=sample["name"], targetModelId=sample["model_id"], owner=OWNER, loadNow=True, sync=True,
                autoDeleteTargetModel=True, modelInfo=mesh_pb.ModelInfo(
                    type=MODEL_TYPE, path=sample["path"], key=model_key())), timeout=timeout)
