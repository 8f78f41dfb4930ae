"""A local mesh's sample models: where either engine puts them (a storage and a bucket), how the mesh's state
lists them, and their registration as modelmesh-serving registers InferenceServices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from mmgitops.errors import ToolError
from mmgitops.modelmesh import ids, samples, stubs
from mmgitops.modelmesh.storage import StorageEntry, load_config

mesh_pb, mesh_grpc = stubs.mesh()
STORAGE_KEY = "local-s3"
BUCKET = "modelmesh-example-models"
# modelmesh-serving registers an sklearn InferenceService with the type label mt:sklearn (GetPredictorTypeLabel).
SAMPLE_TYPE = ids.model_type(samples.MODEL_FORMAT)


def storage_entry(config: Path) -> StorageEntry:
    """The storage the samples live in: the one named STORAGE_KEY in a storage config."""
    entries = load_config(config)
    if STORAGE_KEY not in entries:
        raise ToolError(f"{config}: no storage named {STORAGE_KEY!r} (the mesh uploads its samples there); "
                        f"storages found: {', '.join(sorted(entries)) or 'none'}")
    return entries[STORAGE_KEY]


def upload(work: Path, count: int, entry: StorageEntry, pad_bytes: int = 0, first: int = 0,
           prefix: str = "models") -> list[dict[str, Any]]:
    """Train `count` samples under `work` and upload them to the bucket; their records, as the state lists them:
    what registering one takes (path, key, concrete id) and its answer to the probe."""
    uploaded = samples.upload(samples.train(work, count, pad_bytes, first), entry, BUCKET, prefix=prefix)
    return [{"name": s.name, "expected": s.expected, "path": s.s3_path, "size": s.size,
             "model_id": ids.concrete_id(s.name, str(s.s3_path)), "key": s.model_key(STORAGE_KEY)} for s in uploaded]


def upload_padded(state: dict[str, Any], work: Path, count: int, pad_bytes: int, first: int = 0
                  ) -> list[dict[str, Any]]:
    """More samples for a mesh that is up, each pad_bytes heavier on disk, in its bucket under models-padded/."""
    return upload(work, count, storage_entry(Path(state["storage_config"])), pad_bytes, first, "models-padded")


def register(stub: Any, vmodel_id: str, sample: dict[str, Any], load_now: bool, timeout: float,
             model_type: str = SAMPLE_TYPE, sync: bool = True) -> tuple[str, Any]:
    """A sample registered as modelmesh-serving registers an InferenceService (controllers/predictor_controller.go
    setVModel): a vmodel whose target is the concrete model of the sample's path. (concrete id, setVModel reply)"""
    model_id = ids.concrete_id(vmodel_id, sample["path"])
    reply = stub.setVModel(ids.set_vmodel_request(mesh_pb, vmodel_id, model_id, model_type, sample["path"],
                                                  sample["key"], load_now, sync=sync), timeout=timeout)
    return model_id, reply


def register_all(state: dict[str, Any], timeout: float = 120.0) -> None:
    """Each of the state's samples as a vmodel named after it, loaded now."""
    with grpc.insecure_channel(state["instances"][0]["grpc"]) as channel:
        stub = mesh_grpc.ModelMeshStub(channel)
        for sample in state["samples"]:
            register(stub, sample["name"], sample, True, timeout)
