"""How modelmesh-serving names and describes an InferenceService's model to ModelMesh
(controllers/predictor_controller.go setVModel), and the request that registers it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# The owner modelmesh-serving gives an InferenceService's vmodel (InferenceServiceCRSourceId).
ISVC_OWNER = "isvc"


def concrete_id(vmodel_id: str, path: str) -> str:
    """The concrete model behind an InferenceService's vmodel: `<isvc>__isvc-<10 hex>`."""
    return f"{vmodel_id}__isvc-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def model_type(model_format: str) -> str:
    """The type modelmesh-serving registers an InferenceService's model with when it names no runtime:
    `mt:<format>` (controllers/modelmesh/model_type_labels.go GetPredictorTypeLabel). ModelMesh loads a model only
    on pods whose labels meet its type's constraints (TypeConstraintManager): a bare `sklearn` fails to load."""
    return f"mt:{model_format}"


def model_key_info(storage_key: str | None, storage_params: Mapping[str, str] | None, model_format: str,
                   model_version: str | None = None, schema_path: str | None = None) -> str:
    """The ModelInfo.key modelmesh-serving sends (ModelKeyInfo through Go's json.Marshal): fields in struct
    order, `omitempty` ones left out when unset or empty (storage_key and schema_path are pointers, so "" is
    kept), map keys sorted, no spaces, and <, >, & escaped as Go does."""
    info: dict[str, object] = {}
    if storage_key is not None:
        info["storage_key"] = storage_key
    if storage_params:
        info["storage_params"] = dict(sorted(storage_params.items()))
    info["model_type"] = {"name": model_format, **({"version": model_version} if model_version is not None else {})}
    if schema_path is not None:
        info["schema_path"] = schema_path
    text = json.dumps(info, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def bucket_model_key(storage_key: str, bucket: str, model_format: str) -> str:
    """ModelKeyInfo of a model in an S3 bucket: storage_key, storage_params.bucket, model_type.name."""
    return model_key_info(storage_key, {"bucket": bucket}, model_format)


def set_vmodel_request(mesh_pb: Any, vmodel_id: str, model_id: str, model_type: str, path: str, key: str,
                       load_now: bool, sync: bool = False) -> Any:
    """The SetVModelRequest modelmesh-serving sends for an InferenceService: owner `isvc`, the target model deleted
    with the vmodel. The controller sets no `sync` (a load it asks for runs on after the reply); a caller that
    needs the load done when setVModel returns sets it."""
    return mesh_pb.SetVModelRequest(
        vModelId=vmodel_id, targetModelId=model_id, owner=ISVC_OWNER, loadNow=load_now, sync=sync,
        autoDeleteTargetModel=True, modelInfo=mesh_pb.ModelInfo(type=model_type, path=path, key=key))
