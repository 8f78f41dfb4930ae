"""The stand-in's calls to its namespace's mesh, as modelmesh-serving's controller makes them.

setVModel (predictor_controller.go) on every reconcile, deleteVModel for a deleted InferenceService, both
with owner "isvc"; getVModelStatus only to notice that the mesh changed, where the real controller gets an
etcd watch event on the vmodel and model records (pkg/mmesh/modelmesh_events.go).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mmgitops.lab.mesh import constraints
from mmgitops.lab.standins.modelmesh.predictor import Predictor
from mmgitops.lab.standins.modelmesh.status import CopyInfo, ModelView, VModelView
from mmgitops.modelmesh import ids, stubs

mesh_pb, mesh_grpc = stubs.mesh()

TIMEOUT_S = 10.0  # GrpcRequestTimeout

_status_name = mesh_pb.ModelStatusInfo.ModelStatus.Name
_vmodel_name = mesh_pb.VModelStatusInfo.VModelStatus.Name


def model_view(info: Any) -> ModelView:
    return ModelView(_status_name(info.status), tuple(info.errors),
                     tuple(CopyInfo(c.location, _status_name(c.copyStatus), int(c.time)) for c in info.modelCopyInfos))


def vmodel_view(found: Any) -> VModelView:
    return VModelView(
        status=_vmodel_name(found.status), active_id=found.activeModelId, target_id=found.targetModelId,
        active=model_view(found.activeModelStatus) if found.HasField("activeModelStatus") else None,
        target=model_view(found.targetModelStatus) if found.HasField("targetModelStatus") else None)


def set_vmodel(channel: Any, predictor: Predictor, model_id: str, load_now: bool) -> VModelView:
    request = ids.set_vmodel_request(mesh_pb, predictor.name, model_id, predictor.type_label(), predictor.path,
                                     predictor.model_key(), load_now)
    return vmodel_view(mesh_grpc.ModelMeshStub(channel).setVModel(request, timeout=TIMEOUT_S))


def fingerprint(channel: Any, name: str) -> bytes:
    """What the mesh holds for the vmodel now; a change stands in for the controller's etcd watch event."""
    found = mesh_grpc.ModelMeshStub(channel).getVModelStatus(
        mesh_pb.GetVModelStatusRequest(vModelId=name, owner=ids.ISVC_OWNER), timeout=TIMEOUT_S)
    return bytes(found.SerializeToString(deterministic=True))


def delete_vmodel(channel: Any, name: str) -> None:
    mesh_grpc.ModelMeshStub(channel).deleteVModel(mesh_pb.DeleteVModelRequest(vModelId=name, owner=ids.ISVC_OWNER),
                                                   timeout=TIMEOUT_S)


def no_home(model_type: str, table: Mapping[str, tuple[str, ...]], live_labels: Iterable[Iterable[str]]) -> str:
    """ModelMesh's verifyLocalTypeConstraintsBeforeLoad against the namespace's type-constraints table: the
    message a load of the type fails with at once, or "" when a running instance may hold it."""
    required = set(constraints.required_labels(model_type, table))
    if any(required <= set(labels) for labels in live_labels):
        return ""
    return constraints.no_instance_message(model_type, table)


def with_load_check(view: VModelView, message: str) -> VModelView:
    """The reply of a setVModel with loadNow when no running instance may hold the type: ModelMesh runs the
    type check in its cache-miss loop before it dispatches even an asynchronous load, so the reply carries the
    failure (LOADING_FAILED and the message). Applied here because the embedded mesh checks only inside its
    background load, and its table lists the labels of live instances, where the controller's lists every
    runtime of the namespace (so a runtime still starting reads "waiting", not "no runtime")."""
    if not message:
        return view
    target = view.active if view.active_id == view.target_id else view.target
    if target is None or target.status in ("LOADED", "LOADING"):
        return view  # a live copy: no cache miss, no check
    errors = target.errors if message in target.errors else (message, *target.errors)
    failed = ModelView("LOADING_FAILED", errors, target.copies)
    if view.active_id == view.target_id:
        return VModelView(view.status, view.active_id, view.target_id, failed, view.target)
    return VModelView(view.status, view.active_id, view.target_id, view.active, failed)
